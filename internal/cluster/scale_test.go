package cluster

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScaleSmoke is BenchmarkClusterScale's harness at 10 members, with
// the short intervals of the end-to-end tests, asserting correctness only:
// a change reaches every member and every member applies every stage of
// its rebalance (the barriers wait for all), with broadcast and with
// broadcast lost; after the leader is killed another member leads and
// accepts a change.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 10 cluster members")
	}
	cfg := Config{LockDuration: 3 * time.Second, SyncInterval: 2 * time.Second,
		PollInterval: 500 * time.Millisecond, MemberLease: 2 * time.Second}.WithDefaults()
	e := newScaleEnv(t, 3, cfg)
	base := e.start(10)
	e.waitReady(2 * time.Minute)
	extra := e.redis[2].Addr

	change := func(what string, via *scaleMember, wantIn bool) {
		t.Helper()
		req := addReq(extra)
		if !wantIn {
			req = removeReq(extra)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		t0 := time.Now()
		rep, err := submit(ctx, via, req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		v := rep.GetVersion()
		st := waitStable(e.live(), v, 2*time.Minute)
		if st == nil {
			t.Fatalf("%s: not stable after v%d on every member within 2m: %s", what, v, e.stuck())
		}
		if st.Version != v+4 || !strings.HasPrefix(st.Change, "DONE") {
			t.Fatalf("%s: rebalance ended at v%d with %q, want v%d DONE", what, st.Version, st.Change, v+4)
		}
		if _, ok := measureChange(e.live(), t0, v, st.Version); !ok {
			t.Fatalf("%s: a live member skipped a stage version of v%d..v%d", what, v, st.Version)
		}
		for _, m := range e.live() {
			if in := findNode(m.c.State().Ring, extra) >= 0; in != wantIn {
				t.Fatalf("%s: member %s has %s in its ring: %v, want %v", what, m.c.Member.Self(), extra, in, wantIn)
			}
		}
	}
	var follower *scaleMember
	for _, m := range base {
		if !m.c.Member.IsLeader() {
			follower = m
			break
		}
	}
	change("ADD with broadcast", follower, true)
	e.noBroadcast.Store(true)
	change("REMOVE with broadcast lost", follower, false)
	e.noBroadcast.Store(false)

	l := e.leader()
	l.kill()
	if !scaleWait(time.Minute, func() bool { nl := e.leader(); return nl != nil && nl != l }) {
		t.Fatal("no new leader within 1m of killing the leader")
	}
	for _, m := range e.live() {
		if !m.c.Member.IsLeader() {
			follower = m
			break
		}
	}
	change("ADD after the leader was killed", follower, true)
}

// TestScaleKilledChurn: members killed without Leave (like SIGKILL: their
// registry leases stay) before and during a rebalance. The member lease
// (45s) is longer than the prepare timeout (30s), so a barrier that waited
// for the killed members' leases would abort the rebalance; their hedge
// addresses refuse connections, so the barriers count them as gone and the
// rebalance completes.
func TestScaleKilledChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts cluster members")
	}
	cfg := Config{LockDuration: 3 * time.Second, SyncInterval: 2 * time.Second, PollInterval: 500 * time.Millisecond,
		MemberLease: 45 * time.Second, FreezeTimeout: 2 * time.Second}.WithDefaults()
	e := newScaleEnv(t, 3, cfg)
	base := e.start(5)
	e.waitReady(2 * time.Minute)
	extra := e.redis[2].Addr

	// Killed before the change, once registered with the ring applied.
	doomed := e.start(3)
	if !scaleWait(time.Minute, func() bool { return !slices.ContainsFunc(doomed, func(m *scaleMember) bool { return !m.c.Ready() }) }) {
		t.Fatal("the members to kill did not become ready within 1m")
	}
	for _, m := range doomed {
		m.kill()
	}
	e.forget(doomed)

	// Killed during the change: 2 members at a time, each killed once ready
	// (it routes by the current stage and will be waited for at the next),
	// then 500ms without a member starting (a live member that has not read
	// the ring yet must be waited for: without a gap, a slow machine could
	// hold the prepare barrier for ever), until the rebalance is over.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var ms []*scaleMember
			for range 2 {
				m, err := e.startOne()
				if err != nil {
					t.Errorf("churn: %v", err)
					return
				}
				e.mu.Lock()
				e.members = append(e.members, m)
				e.mu.Unlock()
				ms = append(ms, m)
			}
			scaleWait(30*time.Second, func() bool {
				select {
				case <-stop:
					return true
				default:
				}
				return !slices.ContainsFunc(ms, func(m *scaleMember) bool { return !m.c.Ready() })
			})
			for _, m := range ms {
				m.kill()
			}
			e.forget(ms)
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	var via *scaleMember
	for _, m := range base {
		if !m.c.Member.IsLeader() {
			via = m
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := submit(ctx, via, addReq(extra))
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	st := waitStable(base, rep.GetVersion(), 2*time.Minute)
	if st == nil {
		t.Fatalf("not stable after v%d on every member within 2m: %s", rep.GetVersion(), e.stuck())
	}
	if !strings.HasPrefix(st.Change, "DONE") || findNode(st.Ring, extra) < 0 {
		t.Fatalf("rebalance ended at v%d with %q, want DONE with %s in the ring", st.Version, st.Change, extra)
	}
	var gone int64
	for _, m := range base {
		gone += m.c.Rebalancer.GoneCounted()
	}
	if gone < int64(len(doomed)) {
		t.Fatalf("barriers counted %d killed members as gone, want at least the %d killed before the change", gone, len(doomed))
	}
	t.Logf("rebalance v%d..v%d done; barriers counted killed members gone %d times", rep.GetVersion(), st.Version, gone)
}
