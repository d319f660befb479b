package cluster

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSyncerSeedOnlyByLeader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFixture(t) // no ring
	seed := []ring.Node{{Addr: "10.0.0.10:6379"}, {Addr: "10.0.0.11:6379"}}
	var leader atomic.Bool
	follower, _ := NewSyncer(SyncerConfig{Store: f.store, Holder: ring.NewHolder(nil), PollInterval: 10 * time.Millisecond,
		Seed: seed, Seeder: f.ctl.Seed, IsLeader: func() bool { return false }})
	h := ring.NewHolder(nil)
	lead, _ := NewSyncer(SyncerConfig{Store: f.store, Holder: h, PollInterval: 10 * time.Millisecond,
		Seed: seed, Seeder: f.ctl.Seed, IsLeader: leader.Load})

	if err := follower.SyncOnce(ctx); err == nil || follower.Ready() {
		t.Fatalf("follower without a ring: err=%v ready=%v", err, follower.Ready())
	}
	if err := lead.SyncOnce(ctx); err == nil || lead.Ready() {
		t.Fatalf("not-yet-leader seeded: err=%v", err)
	}
	if _, err := f.store.Load(ctx); !errors.Is(err, ErrNoRing) {
		t.Fatalf("store has a ring before the leader seeded: %v", err)
	}
	leader.Store(true)
	go lead.Run(ctx)
	go follower.Run(ctx)
	waitFor(t, "leader ready", lead.Ready)
	waitFor(t, "follower ready", follower.Ready)
	if r := h.Load(); r == nil || r.Version() != 1 || r.Len() != 2 {
		t.Fatalf("holder = %v", r)
	}
	if _, err := lead.LastSync(); err != nil {
		t.Fatalf("last sync error %v", err)
	}
}

func TestSyncerBroadcastPollAndOutage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFixture(t, "10.0.0.10:6379")
	h := ring.NewHolder(nil)
	// Long poll: only broadcasts can make it fast.
	s, _ := NewSyncer(SyncerConfig{Store: f.store, Holder: h, PollInterval: time.Hour, Self: "pod-a"})
	f.bcast.setPods(s)
	go s.Run(ctx)
	waitFor(t, "initial load", s.Ready)

	// The announcement is acknowledged only after the ring is applied.
	rep := f.ctl.Apply(ctx, add("a", "10.0.0.11:6379", 1))
	wantOK(t, rep, 2)
	if v := h.Load().Version(); v != 2 {
		t.Fatalf("holder at v%d right after the acknowledged change", v)
	}
	var br jupiterv1.BroadcastReply
	msg, _ := proto.Marshal(&jupiterv1.BroadcastMessage{Msg: &jupiterv1.BroadcastMessage_RingUpdated{RingUpdated: &jupiterv1.RingUpdated{Version: 2}}})
	if err := proto.Unmarshal(s.HandleBroadcast(ctx, msg), &br); err != nil || br.GetRingAck().GetAppliedVersion() != 2 || br.GetRingAck().GetPod() != "pod-a" {
		t.Fatalf("ack = %v, %v", br.GetRingAck(), err)
	}

	// Spanner down: keep serving the last ring, report the error.
	f.store.SetError(errors.New("spanner: unavailable"))
	if err := s.SyncOnce(ctx); err == nil {
		t.Fatal("SyncOnce succeeded with the store down")
	}
	if _, err := s.LastSync(); err == nil {
		t.Fatal("LastSync does not report the outage")
	}
	if h.Load().Version() != 2 || !s.Ready() {
		t.Fatal("ring dropped during the outage")
	}
	f.store.SetError(nil)

	// A missed broadcast: a change lands without announcement; polling
	// (SyncOnce here) picks it up.
	st, _ := f.store.Load(ctx)
	next, _ := st.Ring.Add(3, ring.Node{Addr: "10.0.0.12:6379"})
	if err := f.store.CompareAndSwap(ctx, 2, next, Commit{Leader: "10.0.0.1:7000", Token: 42}); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncOnce(ctx); err != nil || h.Load().Version() != 3 {
		t.Fatalf("poll: err=%v holder v%d", err, h.Load().Version())
	}
}

func TestSyncerPrepareFailureKeepsRing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	h := ring.NewHolder(nil)
	fail := true
	s, _ := NewSyncer(SyncerConfig{Store: f.store, Holder: h, Prepare: func(ctx context.Context, next *State) error {
		if fail {
			return errors.New("cannot dial new node")
		}
		return nil
	}})
	if err := s.SyncOnce(ctx); err == nil || h.Load() != nil || s.Ready() {
		t.Fatal("ring published although Prepare failed")
	}
	fail = false
	if err := s.SyncOnce(ctx); err != nil || h.Load().Version() != 1 {
		t.Fatalf("err=%v", err)
	}
}

func TestSyncerPublishAndStoreError(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	var s *Syncer
	var published []uint64
	s, _ = NewSyncer(SyncerConfig{Store: f.store, Holder: ring.NewHolder(nil), Publish: func(st *State) {
		// Published before the version counts as applied.
		if s.Version() >= st.Version || s.Ready() && st.Version == 1 {
			t.Errorf("Publish(v%d) after the Syncer reported it (v%d)", st.Version, s.Version())
		}
		published = append(published, st.Version)
	}})
	if err := s.SyncOnce(ctx); err != nil || s.StoreError() != nil {
		t.Fatalf("sync: %v, store error %v", err, s.StoreError())
	}
	f.ctl.Apply(ctx, add("p", "10.0.0.11:6379", 1))
	s.SyncOnce(ctx)
	s.SyncOnce(ctx) // nothing new: no publish
	if len(published) != 2 || published[0] != 1 || published[1] != 2 {
		t.Fatalf("published %v", published)
	}

	f.store.SetError(errors.New("spanner: unavailable"))
	if err := s.SyncOnce(ctx); err == nil || s.StoreError() == nil {
		t.Fatalf("outage not reported: %v %v", err, s.StoreError())
	}
	f.store.SetError(nil)
	s.SyncOnce(ctx)
	if s.StoreError() != nil {
		t.Fatalf("store error not cleared: %v", s.StoreError())
	}

	// No ring yet is an answer, not an outage.
	empty, _ := NewSyncer(SyncerConfig{Store: newFixture(t).store, Holder: ring.NewHolder(nil)})
	if err := empty.SyncOnce(ctx); err == nil || empty.StoreError() != nil {
		t.Fatalf("empty store: %v, store error %v", err, empty.StoreError())
	}
}

// slowStore never answers until ctx ends, like the Spanner client retrying
// an unreachable server.
type slowStore struct{ *MemStore }

func (s slowStore) Load(ctx context.Context) (*State, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestSyncerRunBoundsEachSync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _ := NewSyncer(SyncerConfig{Store: slowStore{NewMemStore()}, Holder: ring.NewHolder(nil),
		PollInterval: 10 * time.Millisecond, SyncTimeout: 50 * time.Millisecond})
	go s.Run(ctx)
	waitFor(t, "the outage to be reported", func() bool { return s.StoreError() != nil })
	if err := s.StoreError(); !strings.Contains(err.Error(), "no answer from Spanner within the 50ms sync timeout") {
		t.Fatalf("store error %v", err)
	}
}

// TestSyncerSessionLostAndRegistry: "Session not found" reads are timed
// (liveness), any other outcome resets the clock; with a Registry the pod
// registers before its first read and heartbeats the version it applied.
func TestSyncerSessionLostAndRegistry(t *testing.T) {
	ctx := context.Background()
	st := NewMemStore()
	st.SetLock("l", 1)
	r1, _ := ring.New(1, []ring.Node{{Addr: "10.0.0.1:6379"}})
	if err := st.CompareAndSwap(ctx, 0, r1, Commit{Leader: "l", Token: 1}); err != nil {
		t.Fatal(err)
	}
	sy, err := NewSyncer(SyncerConfig{Store: st, Holder: ring.NewHolder(nil), Registry: st, Self: "pod-1", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st.SetError(errors.New("spanner: code = NotFound desc = Session not found: projects/p/instances/i/databases/d/sessions/1"))
	if sy.SyncOnce(ctx) == nil || sy.SessionLostFor() <= 0 {
		t.Fatalf("session loss not noticed: %v", sy.SessionLostFor())
	}
	if ms, _ := (&MemStore{}).Members(ctx); len(ms) != 0 {
		t.Fatal("fresh store has members")
	}
	st.SetError(errors.New("spanner: deadline exceeded"))
	_ = sy.SyncOnce(ctx)
	if d := sy.SessionLostFor(); d != 0 {
		t.Fatalf("another error kept the session-loss clock: %v", d)
	}
	st.SetError(nil)
	if err := sy.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := st.Members(ctx)
	if err != nil || len(ms) != 1 || ms[0].Pod != "pod-1" || ms[0].Applied != 1 || !ms[0].Live {
		t.Fatalf("registry after a sync: %+v %v", ms, err)
	}
	if err := sy.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if ms, _ := st.Members(ctx); len(ms) != 0 {
		t.Fatalf("still registered after Leave: %+v", ms)
	}
}

// TestSyncerOutageLogsOnce: a Spanner outage fails every poll with errors
// that differ only in request ids; it is logged when it starts, not per
// poll, and its end is logged.
func TestSyncerOutageLogsOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	var buf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&buf, nil))
	s, _ := NewSyncer(SyncerConfig{Store: f.store, Holder: ring.NewHolder(nil), PollInterval: time.Hour, Self: "pod-a", Logger: lg})
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		f.store.SetError(status.Errorf(codes.Unavailable, "connection refused (requestID %d)", i))
		if err := s.SyncOnce(ctx); err == nil {
			t.Fatal("SyncOnce succeeded with the store down")
		}
	}
	f.store.SetError(errors.New("a different failure"))
	_ = s.SyncOnce(ctx)
	f.store.SetError(nil)
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, "ring sync failed"); n != 2 {
		t.Fatalf("%d failure lines for 20 polls of one outage and one other error, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "ring sync recovered") {
		t.Fatalf("no recovery line:\n%s", out)
	}
}

func TestHeartbeatDue(t *testing.T) {
	const lease, poll = 9 * time.Second, 2 * time.Second
	for _, c := range []struct {
		name                          string
		applied, hbVersion, announced uint64
		since                         time.Duration
		want                          bool
	}{
		{"nothing new, lease fresh", 5, 5, 0, time.Second, false},
		{"lease renewal due", 5, 5, 0, 3 * time.Second, true},
		{"renewal due even if announced", 6, 5, 6, 4 * time.Second, true},
		{"new version by polling", 6, 5, 5, time.Second, true},
		{"new version announced: the ack reports it", 6, 5, 6, time.Second, false},
		{"announced, a poll interval since the last heartbeat", 6, 5, 6, 2 * time.Second, true},
		{"announced a later one, applied this by polling first", 6, 5, 7, time.Second, false},
		{"first ring applied, never announced", 1, 0, 0, time.Second, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := heartbeatDue(c.applied, c.hbVersion, c.announced, c.since, lease, poll); got != c.want {
				t.Fatalf("heartbeatDue(%d, %d, %d, %v) = %v, want %v", c.applied, c.hbVersion, c.announced, c.since, got, c.want)
			}
		})
	}
}

func TestStoreMax(t *testing.T) {
	var a atomic.Uint64
	for _, c := range []struct{ v, prev, after uint64 }{{3, 0, 3}, {2, 3, 3}, {7, 3, 7}, {7, 7, 7}} {
		if prev := storeMax(&a, c.v); prev != c.prev || a.Load() != c.after {
			t.Fatalf("storeMax(%d) = %d, a = %d; want %d, %d", c.v, prev, a.Load(), c.prev, c.after)
		}
	}
}
