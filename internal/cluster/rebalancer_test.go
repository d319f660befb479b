package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// lockedFence is a Fencer safe for the rebalancer's goroutines.
type lockedFence struct {
	mu     sync.Mutex
	leader string
	token  uint64
}

func (f *lockedFence) Fence(context.Context) (string, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader, f.token, nil
}

// rbEnv is a leader's control plane on a MemStore with real redis-servers,
// and simulated pods that apply whatever the store holds and heartbeat it.
type rbEnv struct {
	t       *testing.T
	store   *MemStore
	ctl     *Controller
	reb     *Rebalancer
	srv     []*testenv.Redis
	clients map[string]*redis.Client
	stages  []string // stages seen by the first pod, in order
	mu      sync.Mutex
}

func newRbEnv(t *testing.T, redisN int, ringN int, pods ...string) *rbEnv {
	t.Helper()
	return newRbEnvWith(t, nil, redisN, ringN, pods...)
}

// newRbEnvWith is newRbEnv with the Rebalancer's configuration adjusted by
// with (if not nil) before it starts.
func newRbEnvWith(t *testing.T, with func(*RebalancerConfig), redisN int, ringN int, pods ...string) *rbEnv {
	t.Helper()
	e := &rbEnv{t: t, store: NewMemStore(), clients: map[string]*redis.Client{}}
	fence := &lockedFence{leader: "10.0.0.1:7000", token: 7}
	e.store.SetLock(fence.leader, fence.token)
	for range redisN {
		s := testenv.StartRedis(t)
		e.srv = append(e.srv, s)
		c, err := rebalance.NewClient(s.Addr, backend.Security{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		e.clients[s.Addr] = c
	}
	var nodes []ring.Node
	for _, s := range e.srv[:ringN] {
		nodes = append(nodes, ring.Node{Addr: s.Addr, Weight: 1})
	}
	var err error
	e.ctl, err = NewController(ControllerConfig{Store: e.store, Fencer: fence, Self: fence.leader})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ctl.Seed(context.Background(), nodes); err != nil {
		t.Fatal(err)
	}
	rc := RebalancerConfig{
		Controller: e.ctl, Registry: e.store, Progress: e.store, IsLeader: func() bool { return true },
		Node: func(addr string) (rebalance.Node, error) {
			if c := e.clients[addr]; c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("no node %s", addr)
		},
		Tick: 20 * time.Millisecond, PrepareTimeout: time.Second, FreezeTimeout: time.Second,
		Migrator: rebalance.Config{CheckpointEvery: 50 * time.Millisecond},
	}
	if with != nil {
		with(&rc)
	}
	e.reb, err = NewRebalancer(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, pod := range pods {
		wg.Add(1)
		go func() { // a pod: apply the stored record, heartbeat it
			defer wg.Done()
			for ctx.Err() == nil {
				if st, err := e.store.Load(ctx); err == nil {
					_ = e.store.Heartbeat(ctx, pod, st.Version, st.Stage, time.Second)
					if i == 0 {
						e.mu.Lock()
						if n := len(e.stages); n == 0 || e.stages[n-1] != st.Stage {
							e.stages = append(e.stages, st.Stage)
						}
						e.mu.Unlock()
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); e.reb.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return e
}

func (e *rbEnv) state() *State {
	st, err := e.store.Load(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *rbEnv) waitStable(within time.Duration) *State {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if st := e.state(); st.Stage == StageStable && st.Target == nil {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("not stable after %v: %+v (rebalancer error %q)", within, e.state(), e.reb.LastError())
	return nil
}

func (e *rbEnv) apply(req *jupiterv1.AdminRequest) *jupiterv1.AdminReply {
	e.t.Helper()
	rep := e.ctl.Apply(context.Background(), req)
	if !rep.GetOk() {
		e.t.Fatalf("%v: %s", req, rep.GetError())
	}
	return rep
}

func addReq(addr string) *jupiterv1.AdminRequest {
	return &jupiterv1.AdminRequest{RequestId: "add-" + addr, Op: &jupiterv1.AdminRequest_Add{Add: &jupiterv1.AddNode{Addr: addr}}}
}

// TestRebalancerAddThenRemove drives two complete rebalances on real
// redis-servers: every key ends on its owner under the new ring with its
// TTL, no marker is left, the removed node is empty, and every stage was
// its own version in the history.
func TestRebalancerAddThenRemove(t *testing.T) {
	e := newRbEnv(t, 3, 2, "pod-a", "pod-b")
	ctx := context.Background()
	r0 := e.state().Ring
	const n = 3000
	for i := range n {
		k := fmt.Sprintf("k:%d", i)
		c := e.clients[r0.Node(r0.Owner([]byte(k))).Addr]
		ttl := time.Duration(0)
		if i%3 == 0 {
			ttl = time.Hour
		}
		if err := c.Set(ctx, k, fmt.Sprint(i), ttl).Err(); err != nil {
			t.Fatal(err)
		}
	}
	rep := e.apply(addReq(e.srv[2].Addr))
	if rep.GetRing().GetStage() != StagePrepare || len(rep.GetRing().GetTarget()) != 3 || len(rep.GetRing().GetNodes()) != 2 {
		t.Fatalf("ADD did not start a rebalance: %v", rep.GetRing())
	}
	// A second change while one runs is refused.
	if r := e.ctl.Apply(ctx, addReq("10.1.1.1:6379")); r.GetOk() || !strings.Contains(r.GetError(), "in progress") {
		t.Fatalf("ADD during a rebalance: %v", r)
	}
	st := e.waitStable(30 * time.Second)
	check := func(st *State, removed string) {
		t.Helper()
		for i := range n {
			k := fmt.Sprintf("k:%d", i)
			owner := st.Ring.Node(st.Ring.Owner([]byte(k))).Addr
			c := e.clients[owner]
			v, err := c.Get(ctx, k).Result()
			if err != nil || v != fmt.Sprint(i) {
				t.Fatalf("%s on its owner %s: %q %v", k, owner, v, err)
			}
			ttl := c.PTTL(ctx, k).Val()
			if i%3 == 0 && (ttl < 59*time.Minute || ttl > time.Hour) || i%3 != 0 && ttl != -1 {
				t.Fatalf("%s: TTL %v not kept", k, ttl)
			}
		}
		var total int64
		for addr, c := range e.clients {
			keys := c.Keys(ctx, "*").Val()
			for _, k := range keys {
				if rebalance.IsMarker([]byte(k)) {
					t.Fatalf("marker %q left on %s", k, addr)
				}
			}
			if addr == removed && len(keys) != 0 {
				t.Fatalf("removed node %s still holds %d keys", addr, len(keys))
			}
			total += int64(len(keys))
		}
		if total != n {
			t.Fatalf("%d keys in all nodes, want %d (copies left behind)", total, n)
		}
	}
	if st.Ring.Len() != 3 {
		t.Fatalf("after ADD: %s", RingText(st.Ring.Nodes()))
	}
	check(st, "")
	e.mu.Lock()
	got := strings.Join(e.stages, ",")
	e.mu.Unlock()
	if got != "stable,prepare,freeze,migrating,commit,stable" {
		t.Fatalf("pod saw stages %s", got)
	}

	e.apply(&jupiterv1.AdminRequest{RequestId: "rm", Op: &jupiterv1.AdminRequest_Remove{Remove: &jupiterv1.RemoveNode{Addr: e.srv[0].Addr}}})
	st = e.waitStable(30 * time.Second)
	if st.Ring.Len() != 2 || st.Ring.Index(e.srv[0].Addr) >= 0 {
		t.Fatalf("after REMOVE: %s", RingText(st.Ring.Nodes()))
	}
	check(st, e.srv[0].Addr)

	hist, _ := e.store.History(ctx, 0)
	var stages []string
	for i := len(hist) - 1; i >= 0; i-- {
		stages = append(stages, hist[i].Stage)
	}
	if want := "stable,prepare,freeze,migrating,commit,stable,prepare,freeze,migrating,commit,stable"; strings.Join(stages, ",") != want {
		t.Fatalf("history stages %v, want %s", stages, want)
	}
	prog, _ := e.store.LoadProgress(ctx, hist[4].Version) // the second rebalance's epoch is its prepare version
	if len(prog) == 0 {
		t.Fatal("no checkpoint was stored for the second rebalance")
	}
}

// TestRebalancerBarrierTimeoutAborts: a live pod that never applies the
// prepare record holds the barrier; past PrepareTimeout the rebalance is
// aborted back to the old ring, with nothing moved.
func TestRebalancerBarrierTimeoutAborts(t *testing.T) {
	e := newRbEnv(t, 3, 2, "pod-a")
	ctx := context.Background()
	stop := make(chan struct{})
	go func() { // a stuck pod: alive, but stays on version 1
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = e.store.Heartbeat(ctx, "stuck", 1, StageStable, time.Second)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer close(stop)
	e.apply(addReq(e.srv[2].Addr))
	st := e.waitStable(10 * time.Second)
	if st.Ring.Len() != 2 || !strings.HasPrefix(st.Change, "ABORT") || !strings.Contains(st.Change, "stuck@v1") {
		t.Fatalf("want an abort naming the stuck pod, got v%d %s %q", st.Version, RingText(st.Ring.Nodes()), st.Change)
	}
	if n := e.clients[e.srv[2].Addr].DBSize(ctx).Val(); n != 0 {
		t.Fatalf("the new node got %d keys from an aborted rebalance", n)
	}
}

// TestRebalancerActions: PAUSE holds the migrator (and survives in the
// record), ABORT is refused once keys move, RESUME completes.
func TestRebalancerActions(t *testing.T) {
	e := newRbEnv(t, 3, 2, "pod-a")
	ctx := context.Background()
	r0 := e.state().Ring
	for i := range 500 {
		k := fmt.Sprintf("p:%d", i)
		_ = e.clients[r0.Node(r0.Owner([]byte(k))).Addr].Set(ctx, k, "v", 0).Err()
	}
	act := func(a string) *jupiterv1.AdminReply {
		return e.ctl.Apply(ctx, &jupiterv1.AdminRequest{Op: &jupiterv1.AdminRequest_Rebalance{Rebalance: &jupiterv1.Rebalance{Action: a}}})
	}
	if r := act("pause"); r.GetOk() || !strings.Contains(r.GetError(), "no rebalance") {
		t.Fatalf("pause with nothing running: %v", r)
	}
	e.apply(addReq(e.srv[2].Addr))
	if r := act("pause"); !r.GetOk() {
		t.Fatalf("pause: %v", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.state().Stage != StageMigrating && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := e.state(); st.Stage != StageMigrating || !st.Paused {
		t.Fatalf("want paused in migrating, got %s paused=%v", st.Stage, st.Paused)
	}
	time.Sleep(300 * time.Millisecond)
	if st := e.state(); st.Stage != StageMigrating {
		t.Fatalf("paused rebalance advanced to %s", st.Stage)
	}
	if r := act("abort"); r.GetOk() || !strings.Contains(r.GetError(), "can only complete") {
		t.Fatalf("abort in migrating: %v", r)
	}
	if r := act("frob"); r.GetOk() || r.GetCode() != jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Fatalf("bad action: %v", r)
	}
	if r := act("resume"); !r.GetOk() {
		t.Fatalf("resume: %v", r)
	}
	if st := e.waitStable(20 * time.Second); st.Ring.Len() != 3 {
		t.Fatalf("after resume: %s", RingText(st.Ring.Nodes()))
	}
}

func TestBarrierWaiting(t *testing.T) {
	live := func(pod string, applied uint64) Lease { return Lease{Pod: pod, Applied: applied, Live: true} }
	dead := func(pod string, applied uint64) Lease { return Lease{Pod: pod, Applied: applied} }
	for _, c := range []struct {
		name  string
		ms    []Lease
		acked map[string]uint64
		want  []string
	}{
		{"empty registry", nil, nil, nil},
		{"all heartbeated", []Lease{live("a", 5), live("b", 6)}, nil, nil},
		{"one behind", []Lease{live("a", 5), live("b", 4)}, nil, []string{"b@v4"}},
		{"behind but acked", []Lease{live("a", 5), live("b", 4)}, map[string]uint64{"b": 5}, nil},
		{"acked a later version", []Lease{live("b", 4)}, map[string]uint64{"b": 9}, nil},
		{"acked an older version", []Lease{live("b", 3)}, map[string]uint64{"b": 4}, []string{"b@v4"}},
		{"expired lease ignored", []Lease{live("a", 5), dead("b", 1)}, nil, nil},
		{"ack of a pod not registered does not pass others", []Lease{live("a", 4)}, map[string]uint64{"z": 5}, []string{"a@v4"}},
		{"new pod registered at 0", []Lease{live("a", 5), live("n", 0)}, map[string]uint64{"a": 5}, []string{"n@v0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, l := range barrierWaiting(c.ms, 5, c.acked) {
				got = append(got, fmt.Sprintf("%s@v%d", l.Pod, l.Applied))
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("barrierWaiting = %v, want %v", got, c.want)
			}
		})
	}
}

// dieAtFreeze runs a pod that heartbeats (with lease) every record it sees
// until freeze is written, then dies without Leave; the channel closes
// when it has.
func (e *rbEnv) dieAtFreeze(pod string, lease time.Duration) <-chan struct{} {
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			st, err := e.store.Load(ctx)
			if err == nil && st.Stage == StageFreeze {
				return
			}
			if err == nil {
				_ = e.store.Heartbeat(ctx, pod, st.Version, st.Stage, lease)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return done
}

// TestRebalancerFreezeTimeoutRetreats: a pod that dies right after the
// prepare barrier keeps its lease past the freeze timeout; the rebalance
// goes back to prepare, waits the lease out there and completes instead of
// aborting.
func TestRebalancerFreezeTimeoutRetreats(t *testing.T) {
	e := newRbEnv(t, 3, 2, "pod-a")
	ctx := context.Background()
	done := e.dieAtFreeze("dying", 1500*time.Millisecond)
	e.apply(addReq(e.srv[2].Addr))
	<-done
	st := e.waitStable(20 * time.Second)
	if st.Ring.Len() != 3 || !strings.HasPrefix(st.Change, "DONE") {
		t.Fatalf("want the rebalance done on 3 nodes, got v%d %s %q", st.Version, RingText(st.Ring.Nodes()), st.Change)
	}
	hist, err := e.store.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	for i := len(hist) - 1; i >= 0; i-- {
		stages = append(stages, hist[i].Stage)
	}
	if !strings.Contains(strings.Join(stages, ","), "freeze,prepare,freeze") {
		t.Fatalf("want a retreat freeze → prepare → freeze in the history, got %v", stages)
	}
}

// TestRebalancerKilledPodsCountedGone: pods killed without Leave keep their
// leases (30s here), but their hedge addresses refuse connections: every
// barrier counts them as gone, so the rebalance completes in far less than
// a lease, without retreating. A pod whose address does not refuse (a
// timeout proves nothing) is still waited for (TestRebalancerFreezeTimeoutRetreats).
func TestRebalancerKilledPodsCountedGone(t *testing.T) {
	e := newRbEnvWith(t, func(c *RebalancerConfig) {
		c.Probe = func(_ context.Context, addr string) bool { return strings.HasPrefix(addr, "killed") }
		c.FreezeTimeout = 3 * time.Second // ProbeAfter, with room for a loaded machine
	}, 3, 2, "pod-a")
	ctx := context.Background()
	// Killed before the change: registered at v1 with a long lease.
	if err := e.store.Heartbeat(ctx, "killed-1", 1, StageStable, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	done := e.dieAtFreeze("killed-2", 30*time.Second) // killed after the prepare barrier
	t0 := time.Now()
	e.apply(addReq(e.srv[2].Addr))
	<-done
	st := e.waitStable(20 * time.Second)
	if st.Ring.Len() != 3 || !strings.HasPrefix(st.Change, "DONE") {
		t.Fatalf("want the rebalance done on 3 nodes, got v%d %s %q", st.Version, RingText(st.Ring.Nodes()), st.Change)
	}
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("rebalance took %v: the killed pods were waited for", d)
	}
	hist, err := e.store.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	freezes := 0
	for _, h := range hist {
		if h.Stage == StageFreeze {
			freezes++
		}
	}
	if freezes != 1 {
		t.Fatalf("freeze written %d times, want once (no retreat)", freezes)
	}
	// killed-1 is counted gone at prepare, freeze, migrating and commit;
	// killed-2 at least at freeze, migrating and commit.
	if n := e.reb.GoneCounted(); n < 7 {
		t.Fatalf("GoneCounted = %d, want at least 7 (each killed pod at every barrier it was waited for at)", n)
	}
}

// TestRebalancerFreezeStuckPodAborts: a live pod that applies every stage
// but freeze holds up every freeze barrier; after MaxFreezeRetreats
// retreats the rebalance is aborted, naming it.
func TestRebalancerFreezeStuckPodAborts(t *testing.T) {
	e := newRbEnv(t, 3, 2, "pod-a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() { // heartbeats every version but the freeze records
		defer close(done)
		var v uint64
		for ctx.Err() == nil {
			if st, err := e.store.Load(ctx); err == nil && st.Stage != StageFreeze {
				v = st.Version
			}
			_ = e.store.Heartbeat(ctx, "stuck", v, StagePrepare, time.Second)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	e.apply(addReq(e.srv[2].Addr))
	st := e.waitStable(30 * time.Second)
	if st.Ring.Len() != 2 || !strings.HasPrefix(st.Change, "ABORT") ||
		!strings.Contains(st.Change, fmt.Sprintf("pod stuck held up %d freeze barriers in a row", MaxFreezeRetreats+1)) {
		t.Fatalf("want an abort naming the stuck pod, got v%d %s %q", st.Version, RingText(st.Ring.Nodes()), st.Change)
	}
}
