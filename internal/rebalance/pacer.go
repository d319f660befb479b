package rebalance

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Latency-aware pacing.
//
// The throttles (KeysPerSec, BytesPerSec) fix a rate in advance; the right
// rate depends on what else the nodes and the machine are doing. With
// Config.TargetDelay set, the migrator behaves as a background transfer
// instead, the idea of LEDBAT (RFC 6817): while it runs, a prober PINGs the
// source and every destination every probeEvery on another connection.
// Each round trip is what a client's command to that node waits right now
// (the node's queue, a batch of ours running on it, the CPU it shares);
// the smallest one seen in the last baseWindow is the node's base, and what
// a PING takes beyond it is the delay the migration may be adding. Every
// decideEvery probes the pacer looks at the 90th percentile of the recent
// delays: above TargetDelay the pause before each batch and each SCAN
// doubles (from minGap, up to maxGap); at or below it, it shrinks by a
// quarter until it is gone. SCANs are smaller too (PacedScanCount): a
// SCAN holds the source for its whole reply. So the migrator runs at full
// speed on an idle fleet and backs off within a few tens of milliseconds
// once clients would notice it. The fixed throttles still apply on top. On
// a node that stays busy with others' work the pause stays at maxGap: the
// migration goes on at one SCAN reply (about 100 keys) per two pauses,
// about 250 keys/s per source, rather than stop. A target below what the
// nodes' round trips jitter by anyway (about 1 ms on a loaded machine)
// keeps it there.

const (
	probeEvery  = 5 * time.Millisecond
	decideEvery = 16               // probes per decision
	recentN     = 64               // delays the percentile is taken over
	baseWindow  = 10 * time.Second // how long a base round trip is remembered
	baseSlots   = 10               // the window's one-second slots
	minGap      = time.Millisecond
	maxGap      = 200 * time.Millisecond
)

// pacer turns probe round trips into the pause before each batch. Safe
// for concurrent use (the prober observes, batches read the pause).
type pacer struct {
	target time.Duration
	mu     sync.Mutex
	gap    time.Duration
	bases  map[any]*minWindow // per probed node
	recent [recentN]time.Duration
	n      int // delays recorded
	since  int // delays since the last decision
}

func newPacer(target time.Duration) *pacer {
	if target <= 0 {
		return nil
	}
	return &pacer{target: target, bases: map[any]*minWindow{}}
}

// observe records one probe of node: its round trip rtt, measured at now.
func (p *pacer) observe(now time.Time, node any, rtt time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.bases[node]
	if w == nil {
		w = &minWindow{}
		p.bases[node] = w
	}
	p.recent[p.n%recentN] = rtt - w.add(now, rtt)
	p.n++
	if p.since++; p.since < decideEvery {
		return
	}
	p.since = 0
	d := append([]time.Duration(nil), p.recent[:min(p.n, recentN)]...)
	slices.Sort(d)
	if d[len(d)*9/10] > p.target {
		p.gap = min(max(2*p.gap, minGap), maxGap)
	} else if p.gap -= p.gap / 4; p.gap < minGap/4 {
		p.gap = 0
	}
}

// pause is the pause before the next batch (0 for a nil pacer).
func (p *pacer) pause() time.Duration {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gap
}

// minWindow is the minimum of the values added in the last baseWindow, in
// one-second slots (a slot is reused once its second has passed).
type minWindow struct {
	slot [baseSlots]time.Duration
	at   [baseSlots]int64 // the second each slot holds; slot unused when 0
}

// add records v at now and returns the window's minimum.
func (w *minWindow) add(now time.Time, v time.Duration) time.Duration {
	sec := now.Unix()
	i := int(sec % baseSlots)
	if w.at[i] != sec {
		w.slot[i], w.at[i] = v, sec
	} else if v < w.slot[i] {
		w.slot[i] = v
	}
	m := v
	for j := range w.slot {
		if w.at[j] != 0 && sec-w.at[j] < baseSlots {
			m = min(m, w.slot[j])
		}
	}
	return m
}

// probeLoop PINGs nodes every probeEvery until ctx ends, feeding p.
func (p *pacer) probeLoop(ctx context.Context, nodes []Node) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range nodes {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			start := time.Now()
			err := n.Do(pctx, "PING").Err()
			cancel()
			if err == nil {
				p.observe(time.Now(), n, time.Since(start))
			}
		}
	}
}
