package proxy

import (
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// Stage names a Migration is in (the cluster's stage names).
const (
	StagePrepare   = "prepare"
	StageFreeze    = "freeze"
	StageMigrating = "migrating"
)

// Migration is the rebalance state a pod routes by while keys move from the
// routed ring to Target (DESIGN.md "Rebalancing").
type Migration struct {
	Stage  string     // StagePrepare, StageFreeze or StageMigrating
	Target *ring.Ring // R': the ring after the rebalance
	Epoch  uint64     // names the markers (rebalance.MarkerKey); the same on every pod and in the leader's migrator
}

// stage is a Migration's Stage, ordered.
type stage uint8

const (
	stPrepare stage = iota + 1
	stFreeze
	stMigrating
)

// migView is the routing state of a migration: which slots move, and where.
type migView struct {
	stage  stage
	target *ring.Ring
	epoch  uint64
	// moving has one bit per slot: the address owning it under R differs
	// from the one under target.
	moving [ring.Slots / 64]uint64
	// dest is, per slot, the view node index of its owner under target.
	dest [ring.Slots]uint16
	// source is, per view node, whether it loses slots.
	source []bool
}

func (m *migView) moves(slot uint16) bool { return m.moving[slot>>6]&(1<<(slot&63)) != 0 }

// view is what one batch routes with: a ring and, for each of its nodes by
// index, the backend node holding the connections. During a migration the
// target ring's nodes that R lacks follow R's. All of it changes together,
// so it is swapped with one atomic pointer.
type view struct {
	ring  *ring.Ring
	nodes []*backend.Node // R's nodes by ring index, then target-only nodes
	addrs []string        // the nodes' addresses
	// fan is the node indexes all-node commands (DBSIZE, KEYS, FLUSHDB,
	// SCAN …) go to, in SCAN order: R's nodes in ring order when stable;
	// R ∪ R' during a migration, nodes losing slots first.
	fan []int32
	// scanTag names the fan order in proxy SCAN cursors: a cursor made under
	// another order restarts rather than skipping nodes.
	scanTag uint64
	mig     *migView   // nil: no rebalance in progress
	m       *Migration // as applied, for Stage
	// changed is closed when this view is replaced (held writes wait on it).
	changed chan struct{}
}

// slowSlot reports whether a key of slot needs the rebalance path: it moves
// and writes to it are no longer plain (FREEZE, MIGRATING).
func (v *view) slowSlot(slot uint16) bool {
	m := v.mig
	return m != nil && m.stage >= stFreeze && m.moves(slot)
}

// Router publishes ring changes to the sessions. Sessions load the current
// view once per batch, lock-free.
type Router struct {
	pool *backend.Pool
	v    atomic.Pointer[view]

	mu sync.Mutex // serialises ApplyStage
	// inUse, set by the Server, reports whether a session still executes a
	// batch routed by a view for which old returns true.
	inUse func(old func(*view) bool) bool
	// drainMax bounds ApplyStage's wait for such batches.
	drainMax time.Duration
	// follow, set by the Server, moves subscriptions to where a new view
	// wants them, before ApplyStage returns (pubsub.go).
	follow func(*view)
}

// NewRouter returns a router over pool serving r; r may be nil when the ring
// is not known yet (Apply publishes it later): until then local commands
// work and keyed ones are refused.
func NewRouter(pool *backend.Pool, r *ring.Ring) *Router {
	rt := &Router{pool: pool, drainMax: 5 * time.Second}
	rt.v.Store(&view{changed: make(chan struct{})})
	if r != nil {
		rt.Apply(r)
	}
	return rt
}

// Apply makes r the ring new batches route by, with no rebalance in
// progress: ApplyStage(r, nil).
func (rt *Router) Apply(r *ring.Ring) bool { return rt.ApplyStage(r, nil) }

// ApplyStage makes r the routed ring (R) with m in progress (m nil = no
// rebalance), opening connections to nodes it adds (those of m.Target too)
// and closing those to nodes it drops. A ring older than the current one
// (by Version) is ignored, so a late broadcast cannot roll routing back; an
// unknown stage or a nil Target is refused. It reports whether it applied.
//
// When the new view changes how moving keys are routed, ApplyStage returns
// only once no batch routed the previous way is still running (bounded by
// the Server's HoldMax + ControlTimeout + 1s; backend calls time out before
// that), so what a pod acknowledges after it holds for every request:
//   - entering FREEZE or MIGRATING (from stable or PREPARE): no write of a
//     moving key to its old owner is in flight any more (rebalance.md I0);
//   - leaving them (COMMIT, or an abort): no rebalance-path command is in
//     flight any more, so CLEANUP cannot race one.
func (rt *Router) ApplyStage(r *ring.Ring, m *Migration) bool {
	if r == nil {
		return false
	}
	var st stage
	if m != nil {
		switch m.Stage {
		case StagePrepare:
			st = stPrepare
		case StageFreeze:
			st = stFreeze
		case StageMigrating:
			st = stMigrating
		default:
			return false
		}
		if m.Target == nil {
			return false
		}
		mc := *m
		m = &mc
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	old := rt.v.Load()
	if old.ring != nil && r.Version() < old.ring.Version() {
		return false
	}
	nv := rt.build(r, m, st)
	rt.v.Store(nv)
	close(old.changed)
	rt.pool.Retain(nv.addrs)
	if rt.follow != nil {
		rt.follow(nv)
	}
	// frozen: the view routes moving keys by the rebalance rules.
	frozen := func(u *view) bool { return u.mig != nil && u.mig.stage >= stFreeze }
	var wait func(u *view) bool
	switch {
	case frozen(nv) && !frozen(old):
		wait = func(u *view) bool { return u != nv && !frozen(u) } // batches that may write moving keys to their old owner
	case !frozen(nv) && frozen(old):
		wait = func(u *view) bool { return u != nv && frozen(u) } // rebalance-path commands still using markers and old owners
	}
	if wait != nil && rt.inUse != nil {
		for deadline := time.Now().Add(rt.drainMax); rt.inUse(wait) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	return true
}

// build computes the view of r with m in progress.
func (rt *Router) build(r *ring.Ring, m *Migration, st stage) *view {
	n := r.Len()
	v := &view{ring: r, m: m, changed: make(chan struct{})}
	index := make(map[string]int, n)
	for i := range n {
		a := r.Node(i).Addr
		index[a] = i
		v.addrs = append(v.addrs, a)
	}
	if m != nil {
		t := m.Target
		mv := &migView{stage: st, target: t, epoch: m.Epoch}
		tIdx := make([]int, t.Len())
		for i := range tIdx {
			a := t.Node(i).Addr
			j, ok := index[a]
			if !ok {
				j = len(v.addrs)
				index[a] = j
				v.addrs = append(v.addrs, a)
			}
			tIdx[i] = j
		}
		mv.source = make([]bool, len(v.addrs))
		for s := range ring.Slots {
			o, d := r.SlotOwner(uint16(s)), tIdx[t.SlotOwner(uint16(s))]
			mv.dest[s] = uint16(d)
			if o != d {
				mv.moving[s>>6] |= 1 << (s & 63)
				mv.source[o] = true
			}
		}
		v.mig = mv
		for i := range v.addrs { // sources first: SCAN never misses a key moving during it
			if mv.source[i] {
				v.fan = append(v.fan, int32(i))
			}
		}
		for i := range v.addrs {
			if !mv.source[i] {
				v.fan = append(v.fan, int32(i))
			}
		}
	} else {
		for i := range n {
			v.fan = append(v.fan, int32(i))
		}
	}
	v.nodes = make([]*backend.Node, len(v.addrs))
	for i, a := range v.addrs {
		v.nodes[i] = rt.pool.Node(a)
	}
	h := fnv.New64a()
	for _, i := range v.fan {
		h.Write([]byte(v.addrs[i]))
		h.Write([]byte{0})
	}
	v.scanTag = h.Sum64() & (1<<scanTagBits - 1)
	return v
}

// Ring returns the ring currently routed by (nil before the first one).
func (rt *Router) Ring() *ring.Ring { return rt.v.Load().ring }

// Stage returns the ring currently routed by and the migration in progress
// (nil when none), as last applied.
func (rt *Router) Stage() (*ring.Ring, *Migration) {
	v := rt.v.Load()
	if v.m == nil {
		return v.ring, nil
	}
	m := *v.m
	return v.ring, &m
}

// NodeUp reports, per node of the current ring, whether jupiter can reach it.
func (rt *Router) NodeUp() map[string]bool {
	v := rt.v.Load()
	up := make(map[string]bool, len(v.nodes))
	if v.ring == nil {
		return up
	}
	for i := range v.ring.Len() {
		up[v.addrs[i]] = v.nodes[i].Up()
	}
	return up
}

func (rt *Router) load() *view { return rt.v.Load() }

// Nodes calls f for each node of the current ring with its backend.
func (rt *Router) Nodes(f func(addr string, n *backend.Node)) {
	v := rt.v.Load()
	if v.ring == nil {
		return
	}
	for i := range v.ring.Len() {
		f(v.addrs[i], v.nodes[i])
	}
}
