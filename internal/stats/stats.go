// Package stats holds the few counters the request path updates: plain
// atomics and a fixed-bucket latency histogram, so that recording costs a
// handful of atomic adds and no allocation, lock or map lookup. The metrics
// endpoint reads them at scrape time (telemetry turns them into Prometheus
// series); nothing here knows about Prometheus.
package stats

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Buckets is the number of histogram buckets: upper bounds 16µs·2^i for
// i = 0..Buckets-2 (16µs … about 4.2s), and +Inf.
const Buckets = 20

// minBucketShift makes bucket 0 end at 2^14 ns ≈ 16µs.
const minBucketShift = 14

// UpperBound returns bucket i's upper bound in seconds (+Inf for the last).
func UpperBound(i int) float64 {
	if i >= Buckets-1 {
		return inf
	}
	return float64(uint64(1)<<(minBucketShift+i)) / 1e9
}

var inf = func() float64 { var z float64; return 1 / z }()

// Histogram counts durations in power-of-two buckets.
type Histogram struct {
	counts [Buckets]atomic.Uint64
	sumNs  atomic.Uint64
}

// Observe records d.
func (h *Histogram) Observe(d time.Duration) {
	ns := uint64(max(d, 0))
	i := bits.Len64(ns >> minBucketShift)
	if ns>>minBucketShift != 0 && ns&(ns-1) == 0 {
		i-- // an exact power of two belongs to the bucket it bounds
	}
	i = min(i, Buckets-1)
	h.counts[i].Add(1)
	h.sumNs.Add(ns)
}

// Snapshot returns per-bucket (not cumulative) counts, the total count and
// the sum in seconds.
func (h *Histogram) Snapshot() (counts [Buckets]uint64, total uint64, sumSeconds float64) {
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	return counts, total, float64(h.sumNs.Load()) / 1e9
}

// Op counts one kind of operation: how many, how many failed, how long.
type Op struct {
	Count   atomic.Uint64
	Errors  atomic.Uint64
	Latency Histogram
}
