package test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkClusterConvergence measures how fast a ring change reaches every
// pod of a 3-pod cluster (emulator, real redis-servers, lease 3s, poll
// 500ms). Each iteration sends JUPITER ADD or REMOVE (alternately, for one
// extra node) to a different pod — the leader or a follower — and times:
//
//	accept-ms   sending the command until +OK (the leader validated, wrote
//	            the ring to Spanner and announced it)
//	converge-ms +OK until all 3 pods report the new ring_version in STATUS
//	total-ms    the sum: command sent until every pod routes by the change
//
// It reports medians (and the worst total). Not a test: nothing is asserted
// about timing. Run:
//
//	go test ./test/ -run XXX -bench ClusterConvergence -benchtime 20x
func BenchmarkClusterConvergence(b *testing.B) {
	e := startClEnvB(b)
	pods := e.pods
	extra := e.redis[2].Addr
	var accept, converge, total []time.Duration
	in := false
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := pods[i%len(pods)]
		v0, _ := strconv.Atoi(p.status()["ring_version"])
		cmd := []string{"ADD", extra}
		if in {
			cmd = []string{"REMOVE", extra}
		}
		s := time.Now()
		if r := p.jupiterCmd(cmd...); r != "OK" {
			b.Fatalf("JUPITER %v via %s: %s\n%s", cmd, p.Hedge, r, e.logs())
		}
		ok := time.Now()
		in = !in
		// Converged: every pod stable on a later version (a staged
		// rebalance writes one version per stage).
		for {
			n := 0
			for _, q := range pods {
				st := q.status()
				if v, _ := strconv.Atoi(st["ring_version"]); v > v0 && st["stage"] == "stable" {
					n++
				}
			}
			if n == len(pods) {
				break
			}
			if time.Since(ok) > 30*time.Second {
				b.Fatalf("pods did not converge after v%d within 30s\n%s", v0, e.logs())
			}
			time.Sleep(time.Millisecond)
		}
		done := time.Now()
		accept = append(accept, ok.Sub(s))
		converge = append(converge, done.Sub(ok))
		total = append(total, done.Sub(s))
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(clMedian(accept)), "accept-ms")
	b.ReportMetric(ms(clMedian(converge)), "converge-ms")
	b.ReportMetric(ms(clMedian(total)), "total-ms")
	b.ReportMetric(ms(slices.Max(total)), "max-total-ms")
	b.ReportMetric(0, "ns/op") // wall time per op is total-ms; ns/op would include STATUS polling
}

func clMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// startClEnvB is startClEnv for a benchmark: 3 Redis nodes (2 seeds and
// one to add/remove) and 3 pods that agree on a leader and ring v1.
func startClEnvB(b *testing.B) *clEnv {
	b.Helper()
	e := startClEnv(b, 3)
	seeds := e.addrs(0, 1)
	for range 3 {
		e.startPod(seeds)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, v, _, why := clAgreed(e.pods)
		if why == "" && v == "1" {
			return e
		}
		if time.Now().After(deadline) {
			b.Fatalf("cluster did not settle: %s %s\n%s", why, fmt.Sprint("v", v), e.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
