package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

type fakeFencer struct {
	leader string
	token  uint64
	err    error
	calls  int
}

func (f *fakeFencer) Fence(ctx context.Context) (string, uint64, error) {
	f.calls++
	return f.leader, f.token, f.err
}

type fakePinger struct{ down map[string]bool }

func (p fakePinger) Ping(ctx context.Context, addr string) error {
	if p.down[addr] {
		return errors.New("connection refused")
	}
	return nil
}

// fakeBroadcaster delivers to Syncers in-process, like hedge would.
type fakeBroadcaster struct {
	mu   sync.Mutex
	msgs []*jupiterv1.BroadcastMessage
	pods []*Syncer
}

func (b *fakeBroadcaster) Broadcast(ctx context.Context, msg []byte) []BroadcastResult {
	var m jupiterv1.BroadcastMessage
	if err := proto.Unmarshal(msg, &m); err != nil {
		panic(err)
	}
	b.mu.Lock()
	b.msgs = append(b.msgs, &m)
	pods := b.pods
	b.mu.Unlock()
	var out []BroadcastResult
	for i, p := range pods {
		out = append(out, BroadcastResult{ID: fmt.Sprint("pod", i), Reply: p.HandleBroadcast(ctx, msg)})
	}
	return out
}

func (b *fakeBroadcaster) setPods(p ...*Syncer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pods = p
}

// versions returns the announced versions, sorted.
func (b *fakeBroadcaster) versions() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var vs []uint64
	for _, m := range b.msgs {
		vs = append(vs, m.GetRingUpdated().GetVersion())
	}
	slices.Sort(vs)
	return vs
}

type fixture struct {
	store  *MemStore
	fence  *fakeFencer
	bcast  *fakeBroadcaster
	pinger fakePinger
	ctl    *Controller
}

func newFixture(t *testing.T, seed ...string) *fixture {
	t.Helper()
	f := &fixture{
		store:  NewMemStore(),
		fence:  &fakeFencer{leader: "10.0.0.1:7000", token: 42},
		bcast:  &fakeBroadcaster{},
		pinger: fakePinger{down: map[string]bool{}},
	}
	f.store.SetLock("10.0.0.1:7000", 42)
	var err error
	f.ctl, err = NewController(ControllerConfig{Store: f.store, Fencer: f.fence, Broadcaster: f.bcast, Pinger: f.pinger, Self: "10.0.0.1:7000", Immediate: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(seed) > 0 {
		var ns []ring.Node
		for _, a := range seed {
			ns = append(ns, ring.Node{Addr: a, Weight: 1})
		}
		if err := f.ctl.Seed(context.Background(), ns); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func add(rid, addr string, w int32) *jupiterv1.AdminRequest {
	return &jupiterv1.AdminRequest{RequestId: rid, Op: &jupiterv1.AdminRequest_Add{Add: &jupiterv1.AddNode{Addr: addr, Weight: w}}}
}

func remove(rid, addr string) *jupiterv1.AdminRequest {
	return &jupiterv1.AdminRequest{RequestId: rid, Op: &jupiterv1.AdminRequest_Remove{Remove: &jupiterv1.RemoveNode{Addr: addr}}}
}

func weight(rid, addr string, w int32) *jupiterv1.AdminRequest {
	return &jupiterv1.AdminRequest{RequestId: rid, Op: &jupiterv1.AdminRequest_Weight{Weight: &jupiterv1.SetWeight{Addr: addr, Weight: w}}}
}

func (f *fixture) mustRing(t *testing.T) *State {
	t.Helper()
	st, err := f.store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantOK(t *testing.T, rep *jupiterv1.AdminReply, version uint64) {
	t.Helper()
	if !rep.GetOk() || rep.GetVersion() != version {
		t.Fatalf("reply = %v, want ok at version %d", rep, version)
	}
}

func wantCode(t *testing.T, rep *jupiterv1.AdminReply, code jupiterv1.ErrorCode) {
	t.Helper()
	if rep.GetOk() || rep.GetCode() != code || rep.GetError() == "" {
		t.Fatalf("reply = %v, want error %v", rep, code)
	}
	var ae *AdminError
	if err := ReplyError(rep); !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("ReplyError = %v", err)
	}
}

func TestControllerAddRemoveWeight(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	if v := f.mustRing(t).Version; v != 1 {
		t.Fatalf("seeded version %d", v)
	}

	rep := f.ctl.Apply(ctx, add("r1", "10.0.0.11:6379", 2))
	wantOK(t, rep, 2)
	if got := RingText(f.mustRing(t).Ring.Nodes()); got != "10.0.0.10:6379=1,10.0.0.11:6379=2" {
		t.Fatalf("ring = %s", got)
	}
	if rep.GetLeader() != "10.0.0.1:7000" || len(rep.GetRing().GetNodes()) != 2 {
		t.Fatalf("reply ring/leader: %v", rep)
	}

	wantOK(t, f.ctl.Apply(ctx, weight("r2", "10.0.0.11:6379", 5)), 3)
	wantOK(t, f.ctl.Apply(ctx, remove("r3", "10.0.0.10:6379")), 4)
	st := f.mustRing(t)
	if got := RingText(st.Ring.Nodes()); got != "10.0.0.11:6379=5" {
		t.Fatalf("ring = %s", got)
	}
	if st.Leader != "10.0.0.1:7000" || st.Token != 42 || st.RequestID != "r3" || st.Change != "REMOVE 10.0.0.10:6379" {
		t.Fatalf("state metadata %+v", st)
	}

	// Same weight again: no new version.
	wantOK(t, f.ctl.Apply(ctx, weight("r4", "10.0.0.11:6379", 5)), 4)

	h, _ := f.store.History(ctx, 0)
	var changes []string
	for _, e := range h {
		changes = append(changes, e.Change)
	}
	want := "[REMOVE 10.0.0.10:6379 WEIGHT 10.0.0.11:6379 w=5 ADD 10.0.0.11:6379 w=2 SEED 10.0.0.10:6379=1]"
	if fmt.Sprint(changes) != want {
		t.Fatalf("history %v, want %s", changes, want)
	}
	// Every change was announced (the seed's asynchronously).
	waitFor(t, "4 announcements", func() bool { return fmt.Sprint(f.bcast.versions()) == "[1 2 3 4]" })
}

func TestControllerRejects(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	f.pinger.down["10.0.0.99:6379"] = true

	cases := []struct {
		name string
		req  *jupiterv1.AdminRequest
		code jupiterv1.ErrorCode
	}{
		{"duplicate", add("a", "10.0.0.10:6379", 1), jupiterv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS},
		{"bad addr", add("b", "not-an-address", 1), jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"bad port", add("b2", "10.0.0.12:0", 1), jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"empty addr", add("c", "", 1), jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"weight too big", add("d", "10.0.0.12:6379", 10001), jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"negative weight", add("e", "10.0.0.12:6379", -1), jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"unreachable", add("f", "10.0.0.99:6379", 1), jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION},
		{"last node", remove("g", "10.0.0.10:6379"), jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION},
		{"remove unknown", remove("h", "10.0.0.50:6379"), jupiterv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"weight unknown", weight("i", "10.0.0.50:6379", 2), jupiterv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"weight zero", weight("j", "10.0.0.10:6379", 0), jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"no op", &jupiterv1.AdminRequest{RequestId: "k"}, jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := f.ctl.Apply(ctx, c.req)
			wantCode(t, rep, c.code)
			if rep.GetVersion() != 1 && c.req.GetOp() != nil {
				t.Fatalf("reply version %d, want current 1", rep.GetVersion())
			}
		})
	}
	if st := f.mustRing(t); st.Version != 1 || st.Ring.Len() != 1 {
		t.Fatalf("ring changed by rejected requests: %+v", st)
	}
	if f.fence.calls != 1 { // only the seed fenced
		t.Fatalf("fence called %d times; rejected requests must not reach the fence", f.fence.calls)
	}
}

func TestControllerIdempotentRequestID(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	wantOK(t, f.ctl.Apply(ctx, add("same", "10.0.0.11:6379", 1)), 2)
	// Retry while it is still the current row.
	wantOK(t, f.ctl.Apply(ctx, add("same", "10.0.0.11:6379", 1)), 2)
	wantOK(t, f.ctl.Apply(ctx, add("other", "10.0.0.12:6379", 1)), 3)
	// Retry after a later change: found in the history, not re-applied
	// (a re-apply would be a duplicate error).
	rep := f.ctl.Apply(ctx, add("same", "10.0.0.11:6379", 1))
	wantOK(t, rep, 2)
	if rep.GetRing().GetVersion() != 3 {
		t.Fatalf("reply should carry the current ring v3, got %v", rep.GetRing())
	}
	if st := f.mustRing(t); st.Version != 3 {
		t.Fatalf("version %d, want 3", st.Version)
	}
}

// conflictStore makes the first n CompareAndSwap calls lose to a concurrent
// writer (another leader's change lands in between).
type conflictStore struct {
	*MemStore
	n      int
	writer func()
}

func (c *conflictStore) CompareAndSwap(ctx context.Context, expect uint64, next *ring.Ring, cm Commit) error {
	if c.n > 0 {
		c.n--
		c.writer()
	}
	return c.MemStore.CompareAndSwap(ctx, expect, next, cm)
}

func TestControllerCASConflict(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	other := 20
	cs := &conflictStore{MemStore: f.store, n: 2, writer: func() {
		other++
		st, _ := f.store.Load(ctx)
		next, err := st.Ring.Add(st.Version+1, ring.Node{Addr: fmt.Sprintf("10.0.0.%d:6379", other)})
		if err != nil {
			panic(err)
		}
		if err := f.store.CompareAndSwap(ctx, st.Version, next, Commit{Leader: "10.0.0.1:7000", Token: 42, Change: "concurrent"}); err != nil {
			panic(err)
		}
	}}
	ctl, _ := NewController(ControllerConfig{Store: cs, Fencer: f.fence, Pinger: f.pinger, Immediate: true})
	// Two conflicts, then success on the third attempt, re-planned on top of
	// the concurrent changes.
	rep := ctl.Apply(ctx, add("x", "10.0.0.11:6379", 1))
	wantOK(t, rep, 4)
	if got := RingText(f.mustRing(t).Ring.Nodes()); got != "10.0.0.10:6379=1,10.0.0.11:6379=1,10.0.0.21:6379=1,10.0.0.22:6379=1" {
		t.Fatalf("ring = %s", got)
	}

	// Conflicts beyond the retry budget are reported as CONFLICT.
	cs.n = 10
	ctl2, _ := NewController(ControllerConfig{Store: cs, Fencer: f.fence, Pinger: f.pinger, ConflictRetries: 1, Immediate: true})
	wantCode(t, ctl2.Apply(ctx, add("y", "10.0.0.12:6379", 1)), jupiterv1.ErrorCode_ERROR_CODE_CONFLICT)
}

func TestControllerFence(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")

	// HasLock says no.
	f.fence.err = fmt.Errorf("%w (leader is %q)", ErrNotLeader, "10.0.0.2:7000")
	wantCode(t, f.ctl.Apply(ctx, add("a", "10.0.0.11:6379", 1)), jupiterv1.ErrorCode_ERROR_CODE_NOT_LEADER)

	// HasLock said yes, but the lock was taken over before the write: the
	// store's token check refuses the deposed leader.
	f.fence.err = nil
	f.store.SetLock("10.0.0.2:7000", 43)
	wantCode(t, f.ctl.Apply(ctx, add("b", "10.0.0.11:6379", 1)), jupiterv1.ErrorCode_ERROR_CODE_NOT_LEADER)

	// Spanner down.
	f.store.SetLock("10.0.0.1:7000", 42)
	f.store.SetError(errors.New("spanner: unavailable"))
	wantCode(t, f.ctl.Apply(ctx, add("c", "10.0.0.11:6379", 1)), jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
	f.store.SetError(nil)
	if st := f.mustRing(t); st.Version != 1 {
		t.Fatalf("version %d after refused writes", st.Version)
	}
	wantOK(t, f.ctl.Apply(ctx, add("c", "10.0.0.11:6379", 1)), 2)
}

func TestControllerAddToEmptyAndStatus(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	st := f.ctl.Apply(ctx, &jupiterv1.AdminRequest{Op: &jupiterv1.AdminRequest_Status{Status: &jupiterv1.Status{}}})
	wantOK(t, st, 0)
	wantCode(t, f.ctl.Apply(ctx, remove("a", "10.0.0.10:6379")), jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION)
	wantOK(t, f.ctl.Apply(ctx, add("b", "10.0.0.10:6379", 0)), 1)
	st = f.ctl.Apply(ctx, &jupiterv1.AdminRequest{Op: &jupiterv1.AdminRequest_Status{Status: &jupiterv1.Status{}}})
	wantOK(t, st, 1)
	if n := st.GetRing().GetNodes(); len(n) != 1 || n[0].GetWeight() != 1 {
		t.Fatalf("status ring %v", st.GetRing())
	}
}

func TestHandleLeaderMessage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379")
	msg, _ := proto.Marshal(&jupiterv1.LeaderMessage{Msg: &jupiterv1.LeaderMessage_Admin{Admin: add("m", "10.0.0.11:6379", 1)}})
	var lr jupiterv1.LeaderReply
	if err := proto.Unmarshal(f.ctl.HandleLeaderMessage(ctx, msg), &lr); err != nil {
		t.Fatal(err)
	}
	wantOK(t, lr.GetAdmin(), 2)

	if err := proto.Unmarshal(f.ctl.HandleLeaderMessage(ctx, []byte{0xff, 0xff}), &lr); err != nil {
		t.Fatal(err)
	}
	wantCode(t, lr.GetAdmin(), jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
}

// TestRebalanceActionConflictRetried: the stage machine writing a new
// version between an action's read and its CAS (prepare → freeze in the
// CI failure) must not fail the operator's PAUSE; the action re-reads and
// applies on top.
func TestRebalanceActionConflictRetried(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379", "10.0.0.11:6379")
	st := f.mustRing(t)
	next, err := ring.New(st.Version+1, st.Ring.Nodes())
	if err != nil {
		t.Fatal(err)
	}
	target := append(st.Ring.Nodes(), ring.Node{Addr: "10.0.0.12:6379", Weight: 1})
	if err := f.store.CompareAndSwap(ctx, st.Version, next, Commit{Leader: "10.0.0.1:7000", Token: 42, Stage: StagePrepare, Change: "ADD", Target: target, Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	advances := []string{StageFreeze, StageMigrating}
	cs := &conflictStore{MemStore: f.store, n: len(advances), writer: func() {
		cur, _ := f.store.Load(ctx)
		nx, _ := ring.New(cur.Version+1, cur.Ring.Nodes())
		stage := advances[0]
		advances = advances[1:]
		if err := f.store.CompareAndSwap(ctx, cur.Version, nx, Commit{Leader: "10.0.0.1:7000", Token: 42, Stage: stage, Change: cur.Change, Target: cur.Target.Nodes(), Epoch: cur.Epoch}); err != nil {
			panic(err)
		}
	}}
	ctl, err := NewController(ControllerConfig{Store: cs, Fencer: f.fence, Self: "10.0.0.1:7000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRebalancer(RebalancerConfig{Controller: ctl, Registry: f.store, IsLeader: func() bool { return true },
		Node: func(string) (rebalance.Node, error) { return nil, errors.New("unused") }}); err != nil {
		t.Fatal(err)
	}
	rep := ctl.Apply(ctx, &jupiterv1.AdminRequest{Op: &jupiterv1.AdminRequest_Rebalance{Rebalance: &jupiterv1.Rebalance{Action: "pause"}}})
	if !rep.GetOk() {
		t.Fatalf("pause lost to the stage machine: %v", rep)
	}
	got := f.mustRing(t)
	if !got.Paused || got.Stage != StageMigrating || got.Version != 5 {
		t.Fatalf("want paused in migrating at v5 (2 concurrent advances + pause), got v%d %s paused=%v", got.Version, got.Stage, got.Paused)
	}
}
