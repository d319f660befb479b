package cluster

import (
	"context"
	"strings"
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
