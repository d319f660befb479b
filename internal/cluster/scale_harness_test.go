package cluster

// The scale harness: N real cluster members (hedge + spindle + Syncer +
// Controller + Rebalancer, each with its own Spanner client and hedge
// ports) in one process, on the emulator, in front of real redis-servers,
// with no proxy listener. Used by TestScaleSmoke (10 members, correctness)
// and BenchmarkClusterScale (100 members, timings; `make bench-cluster`).

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"github.com/alphauslabs/jupiter/test/emulator"
	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// scaleEnv is one cluster of in-process members.
type scaleEnv struct {
	tb    testing.TB
	db    string
	cfg   Config // template: SpannerDB and the intervals; HedgeAddr per member
	redis []*testenv.Redis
	seed  []ring.Node
	log   *slog.Logger

	ctlMu   sync.Mutex
	clients map[string]*redis.Client

	// noBroadcast drops every ring announcement (broadcast lost: pods
	// converge by polling only).
	noBroadcast atomic.Bool

	mu      sync.Mutex
	members []*scaleMember
}

// scaleMember is one member and when it applied each ring version.
type scaleMember struct {
	c      *Cluster
	cancel context.CancelFunc
	gone   atomic.Bool

	mu      sync.Mutex
	applied map[uint64]appliedVersion
}

type appliedVersion struct {
	at    time.Time
	stage string
}

// appliedAt returns when m applied version v (zero: not yet) and its stage.
func (m *scaleMember) appliedAt(v uint64) (time.Time, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.applied[v]
	return a.at, a.stage
}

// toggledBroadcaster is the Controller's Broadcaster with an off switch.
type toggledBroadcaster struct {
	b   Broadcaster
	off *atomic.Bool
}

func (t toggledBroadcaster) Broadcast(ctx context.Context, msg []byte) []BroadcastResult {
	if t.off.Load() {
		return nil
	}
	return t.b.Broadcast(ctx, msg)
}

// newScaleEnv creates a database and nRedis redis-servers; the first two
// seed the ring.
func newScaleEnv(tb testing.TB, nRedis int, cfg Config) *scaleEnv {
	tb.Helper()
	testenv.Need(tb, "redis-server")
	db := emulator.Database(tb, "scale")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ApplyDDL(ctx, db, DDL(DefaultTableNames())); err != nil {
		tb.Fatalf("ApplyDDL: %v", err)
	}
	cfg.SpannerDB = db
	e := &scaleEnv{tb: tb, db: db, cfg: cfg, clients: map[string]*redis.Client{}, log: slog.New(slog.DiscardHandler)}
	if p := os.Getenv("JUPITER_SCALE_LOG"); p != "" {
		// Every member's warnings and errors, for a run that went wrong.
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { f.Close() })
		e.log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for i := range nRedis {
		r := testenv.StartRedis(tb)
		e.redis = append(e.redis, r)
		if i < 2 {
			e.seed = append(e.seed, ring.Node{Addr: r.Addr, Weight: 1})
		}
	}
	tb.Cleanup(e.stopAll)
	return e
}

func (e *scaleEnv) controlNode(addr string) (rebalance.Node, error) {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	if c := e.clients[addr]; c != nil {
		return c, nil
	}
	c, err := rebalance.NewClient(addr, backend.Security{}, 0)
	if err != nil {
		return nil, err
	}
	e.clients[addr] = c
	return c, nil
}

// start starts n members, at most 10 at a time, and returns them once each
// hedge listens (not yet ready: see waitReady).
func (e *scaleEnv) start(n int) []*scaleMember {
	e.tb.Helper()
	out := make([]*scaleMember, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = e.startOne()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			e.tb.Fatal(err)
		}
	}
	e.mu.Lock()
	e.members = append(e.members, out...)
	e.mu.Unlock()
	return out
}

func (e *scaleEnv) startOne() (*scaleMember, error) {
	port, err := emulator.FreePortPair()
	if err != nil {
		return nil, err
	}
	cfg := e.cfg
	cfg.HedgeAddr = "127.0.0.1:" + strconv.Itoa(port)
	m := &scaleMember{applied: map[uint64]appliedVersion{}}
	c, err := Open(cfg, Options{
		Logger:      e.log,
		Seed:        e.seed,
		ControlNode: e.controlNode,
		Pinger:      DialPinger{Timeout: 2 * time.Second},
		Publish: func(st *State) {
			m.mu.Lock()
			m.applied[st.Version] = appliedVersion{time.Now(), stageOr(st.Stage)}
			m.mu.Unlock()
		},
	})
	if err != nil {
		return nil, err
	}
	c.Controller.cfg.Broadcaster = toggledBroadcaster{b: c.Member, off: &e.noBroadcast}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		cancel()
		c.Member.Stop()
		return nil, err
	}
	m.c, m.cancel = c, cancel
	return m, nil
}

// kill stops m abruptly, like SIGKILL: no registry Leave, no lock release
// (spindle never releases; its lease runs out). Its sockets close.
func (m *scaleMember) kill() {
	if m.gone.Swap(true) {
		return
	}
	m.cancel()
	m.c.wg.Wait()
	m.c.Member.Stop()
}

// stop is a clean shutdown (Cluster.Stop: leaves the registry).
func (m *scaleMember) stop() {
	if m.gone.Swap(true) {
		return
	}
	m.c.Stop()
	m.cancel()
}

func (e *scaleEnv) stopAll() {
	var wg sync.WaitGroup
	for _, m := range e.live() {
		wg.Add(1)
		go func() { defer wg.Done(); m.kill() }()
	}
	wg.Wait()
	for _, c := range e.clients {
		c.Close()
	}
}

// live returns the members that run.
func (e *scaleEnv) live() []*scaleMember {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*scaleMember
	for _, m := range e.members {
		if !m.gone.Load() {
			out = append(out, m)
		}
	}
	return out
}

// remove forgets stopped members (churn).
func (e *scaleEnv) forget(ms []*scaleMember) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.members = slices.DeleteFunc(e.members, func(m *scaleMember) bool { return slices.Contains(ms, m) })
}

// scaleWait polls cond every 5ms until it holds or within passes.
func scaleWait(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// leader returns the live member that leads (nil: none yet).
func (e *scaleEnv) leader() *scaleMember {
	for _, m := range e.live() {
		if m.c.Member.IsLeader() {
			return m
		}
	}
	return nil
}

// waitReady waits until every live member serves a ring, one member leads
// and every member knows the leader and is in the leader's hedge member
// list (so a broadcast reaches it).
func (e *scaleEnv) waitReady(within time.Duration) {
	e.tb.Helper()
	ok := scaleWait(within, func() bool {
		l := e.leader()
		if l == nil {
			return false
		}
		known := map[string]bool{}
		for _, a := range l.c.Member.Members() {
			known[a] = true
		}
		for _, m := range e.live() {
			if !m.c.Ready() || m.c.Member.Leader() != l.c.Member.Self() || !known[m.c.Member.Self()] {
				return false
			}
		}
		return true
	})
	if !ok {
		l := e.leader()
		e.tb.Fatalf("cluster not ready within %v (leader %v, %d live)", within, l != nil, len(e.live()))
	}
}

// waitStable waits until every member of ms that runs serves a stable
// ring above version v and returns one's state (nil: not within).
func waitStable(ms []*scaleMember, v uint64, within time.Duration) *State {
	var last *State
	ok := scaleWait(within, func() bool {
		last = nil
		for _, m := range ms {
			if m.gone.Load() {
				continue
			}
			st := m.c.State()
			if st == nil || st.Version <= v || stageOr(st.Stage) != StageStable {
				return false
			}
			last = st
		}
		return last != nil
	})
	if !ok {
		return nil
	}
	return last
}

// stuck describes why a rebalance did not finish, from the leader's view.
func (e *scaleEnv) stuck() string {
	l := e.leader()
	if l == nil {
		return "no leader"
	}
	st := l.c.State()
	return fmt.Sprintf("leader %s at v%d %s (%s); rebalancer error %q; waiting for %v",
		l.c.Member.Self(), st.Version, st.Stage, st.Change, l.c.Rebalancer.LastError(), l.c.Rebalancer.Waiting())
}

// submit sends an admin request through m, retrying transient failures
// (not leader, conflict, unavailable) with the same request id.
func submit(ctx context.Context, m *scaleMember, req *jupiterv1.AdminRequest) (*jupiterv1.AdminReply, error) {
	req.RequestId = NewRequestID()
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rep, err := m.c.Submit(actx, req)
		cancel()
		if err == nil {
			if rerr := ReplyError(rep); rerr == nil {
				return rep, nil
			} else if ae, ok := rerr.(*AdminError); !ok || !ae.Temporary() {
				return rep, rerr
			} else {
				err = rerr
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func removeReq(addr string) *jupiterv1.AdminRequest {
	return &jupiterv1.AdminRequest{Op: &jupiterv1.AdminRequest_Remove{Remove: &jupiterv1.RemoveNode{Addr: addr}}}
}

// changeTimes is one ring change through its versions v, v+1, …
type changeTimes struct {
	// reach[k] is from the admin command to the last member applying
	// version v+k (k=0: the change itself, the prepare record).
	reach []time.Duration
	// spread[k] is from the first to the last member applying v+k.
	spread []time.Duration
	// stage[k] is from the first member applying v+k to the first applying
	// v+k+1: one whole stage (fan-out, acks, barrier, stage work, CAS);
	// names[k] is the stage of v+k.
	stage []time.Duration
	names []string
}

// measureChange times the versions v..last over the members ms, from t0.
// Members that stopped are left out; it fails if one that runs skipped a
// version.
func measureChange(ms []*scaleMember, t0 time.Time, v, last uint64) (changeTimes, bool) {
	var ct changeTimes
	var firsts []time.Time
	for ver := v; ver <= last; ver++ {
		var first, lastAt time.Time
		name := ""
		for _, m := range ms {
			at, stage := m.appliedAt(ver)
			if at.IsZero() {
				if m.gone.Load() {
					continue
				}
				return ct, false
			}
			name = stage
			if first.IsZero() || at.Before(first) {
				first = at
			}
			if at.After(lastAt) {
				lastAt = at
			}
		}
		firsts = append(firsts, first)
		ct.names = append(ct.names, name)
		ct.reach = append(ct.reach, lastAt.Sub(t0))
		ct.spread = append(ct.spread, lastAt.Sub(first))
	}
	for k := 1; k < len(firsts); k++ {
		ct.stage = append(ct.stage, firsts[k].Sub(firsts[k-1]))
	}
	ct.names = ct.names[:len(ct.stage)]
	return ct, true
}

// rpcTotals sums the Spanner calls of ms.
func rpcTotals(ms []*scaleMember) (all, leader SpannerRPCs) {
	for _, m := range ms {
		r := m.c.Member.SpannerRPCs()
		all = all.Add(r)
		if m.c.Member.IsLeader() {
			leader = r
		}
	}
	return all, leader
}

// percentile returns the p-th percentile (0..100, nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
