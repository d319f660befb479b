package rebalance

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestMinWindow(t *testing.T) {
	var w minWindow
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at   time.Duration
		v    time.Duration
		want time.Duration
	}{
		{0, 300, 300},
		{100 * time.Millisecond, 200, 200},            // same slot, smaller
		{time.Second, 500, 200},                       // next slot, the older minimum holds
		{9 * time.Second, 400, 200},                   // still inside the window
		{10*time.Second + 1, 450, 400},                // the first slot left the window
		{19*time.Second + time.Millisecond, 600, 450}, // 1 s and 9 s expired: the 10 s and 19 s slots remain
		{40 * time.Second, 700, 700},                  // everything expired
	}
	for i, s := range steps {
		if got := w.add(t0.Add(s.at), s.v); got != s.want {
			t.Fatalf("step %d: min = %v, want %v", i, got, s.want)
		}
	}
}

// TestPacer: delays at or under the target never pause; a 90th percentile
// over it doubles the pause per decision up to maxGap; back under it, the
// pause decays to nothing.
func TestPacer(t *testing.T) {
	p := newPacer(time.Millisecond)
	if newPacer(0) != nil || (*pacer)(nil).pause() != 0 {
		t.Fatal("a zero target must disable pacing")
	}
	now := time.Unix(1000, 0)
	feed := func(n int, rtt func(i int) time.Duration) {
		for i := range n {
			now = now.Add(probeEvery)
			p.observe(now, "src", rtt(i))
		}
	}
	const base = 100 * time.Microsecond
	// Quiet, with an occasional spike (below the 90th percentile).
	feed(10*decideEvery, func(i int) time.Duration {
		if i%20 == 0 {
			return base + 5*time.Millisecond
		}
		return base + time.Duration(i%3)*100*time.Microsecond
	})
	if g := p.pause(); g != 0 {
		t.Fatalf("quiet node: pause %v, want 0", g)
	}
	// Busy: most probes wait 3 ms beyond the base.
	var last time.Duration
	for d := range 12 {
		feed(decideEvery, func(int) time.Duration { return base + 3*time.Millisecond })
		g := p.pause()
		if d > 3 && g != min(2*last, maxGap) && g != maxGap {
			t.Fatalf("decision %d: pause %v after %v, want doubled", d, g, last)
		}
		last = g
	}
	if last != maxGap {
		t.Fatalf("busy node: pause %v, want maxGap %v", last, maxGap)
	}
	// Quiet again: the pause decays to 0.
	for range 100 {
		feed(decideEvery, func(int) time.Duration { return base })
	}
	if g := p.pause(); g != 0 {
		t.Fatalf("after recovery: pause %v, want 0", g)
	}
}

// TestMigratorPaced: with TargetDelay, a migrator whose source is kept busy
// by someone else's slow scripts pauses between batches, and still moves
// every key.
func TestMigratorPaced(t *testing.T) {
	// Enough keys that the migration outlasts the pacer's first decisions
	// (16 probes 5 ms apart each): the raw-wire migrator moved 600 in 0.17 s.
	const keys = 2000
	src, dst := twoNodes(t, keys, 10)
	ctx := tctx(t, 60*time.Second)
	m, err := NewMigrator(Config{Source: src.c, Dests: map[int]Node{0: dst.c}, Moving: allMoving, Epoch: 1,
		BatchKeys: 20, TargetDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	busy, stop := context.WithCancel(ctx)
	defer stop()
	go func() { // the node runs a 2-5 ms script back to back
		for busy.Err() == nil {
			src.c.Eval(busy, "local i = 0 while i < 300000 do i = i + 1 end return i", nil)
		}
	}()
	var most atomic.Int64
	go func() {
		for busy.Err() == nil {
			most.Store(max(most.Load(), int64(m.pace.pause())))
			time.Sleep(time.Millisecond)
		}
	}()
	p, err := m.Run(ctx)
	stop()
	if err != nil || p.KeysMoved != keys {
		t.Fatalf("Run: %v, moved %d", err, p.KeysMoved)
	}
	if time.Duration(most.Load()) < minGap {
		t.Fatalf("the pacer never paused (largest pause %v) while the source was busy", time.Duration(most.Load()))
	}
	t.Logf("moved %d keys at %.0f keys/s, largest pause %v", p.KeysMoved, p.KeysPerSec, time.Duration(most.Load()))
}
