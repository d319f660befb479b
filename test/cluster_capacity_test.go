package test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestClusterFleetCapacity: 2 pods on the Spanner emulator, load through
// one of them only. The other pod's JUPITER NODES shows its own rate near
// zero and the fleet's rate well above it for every node — the leader's
// sums of both pods' reports, handed back over hedge — and STATUS counts 2
// pods in the fleet on both; on the loaded pod the fleet's rate is about
// its own.
func TestClusterFleetCapacity(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster end-to-end test; skipped with -short")
	}
	e := startClEnv(t, 2)
	seeds := e.addrs(0, 1)
	idle := e.startPod(seeds, "--capacity-interval", "500ms")
	busy := e.startPod(seeds, "--capacity-interval", "500ms")
	e.waitRingV1(t)

	ctx, stop := context.WithTimeout(context.Background(), 90*time.Second)
	defer stop()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 100000 && ctx.Err() == nil; n++ { // bounded in count and time
				p := busy.rdb.Pipeline()
				for k := range 20 {
					p.Get(ctx, fmt.Sprint("fleet:", (n*20+k+w)%500))
				}
				_, _ = p.Exec(ctx)
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()

	num := func(l capLine, k string) float64 {
		v, err := strconv.ParseFloat(l.f[k], 64)
		if err != nil {
			return -1
		}
		return v
	}
	clWait(t, e, 60*time.Second, "the idle pod sees the busy pod's load as the fleet's", func() string {
		for _, p := range []*clPod{idle, busy} {
			if st := p.status(); st["fleet_pods"] != "2" {
				return fmt.Sprintf("pod %s: fleet_pods=%s", p.Hedge, st["fleet_pods"])
			}
		}
		lines, _ := capNodes(t, idle.rdb)
		mine, _ := capNodes(t, busy.rdb)
		for _, a := range seeds {
			l, m := lines[a], mine[a]
			if own, fleet := num(l, "ops_pod"), num(l, "ops_fleet"); own < 0 || own > 5 || fleet < 100 {
				return fmt.Sprintf("idle pod, node %s: ops_pod=%s ops_fleet=%s", a, l.f["ops_pod"], l.f["ops_fleet"])
			}
			if own, fleet := num(m, "ops_pod"), num(m, "ops_fleet"); own < 100 || fleet < own*0.5 || fleet > own*1.5 {
				return fmt.Sprintf("busy pod, node %s: ops_pod=%s ops_fleet=%s", a, m.f["ops_pod"], m.f["ops_fleet"])
			}
		}
		return ""
	})
}
