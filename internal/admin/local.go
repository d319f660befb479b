package admin

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
)

// Pinger checks that a Redis node answers before it joins the ring.
type Pinger interface {
	Ping(ctx context.Context, addr string) error
}

// RingSource is the routing state a controller reads and changes
// (proxy.Router implements it).
type RingSource interface {
	Ring() *ring.Ring
	Apply(r *ring.Ring) bool
	NodeUp() map[string]bool
}

// Local is the standalone-mode controller: the ring lives in this process
// only. A change switches routing at once; keys whose slot moves become
// cache misses (online rebalancing needs cluster mode).
type Local struct {
	Router RingSource
	Self   string
	Pinger Pinger
	// DBSize returns a node's key count (DBSIZE), for Plan's estimates.
	// nil: Pinger's DBSize method if it has one (DBSizer), else every
	// node's size is unknown and Plan reports slots only.
	DBSize func(ctx context.Context, addr string) (int64, error)
	// Capacity, if set, adds each node's capacity figures to Status (and
	// so to JUPITER NODES and GET /v1/nodes).
	Capacity CapacitySource
	// Health, if set, adds each node's health (this pod's own view) to
	// Status.
	Health HealthSource

	mu sync.Mutex // serialises changes: version N+1 is always built from N
}

// Status implements Controller.
func (l *Local) Status(context.Context) Status {
	st := StatusOf("standalone", l.Self, "self", l.Router.Ring(), l.Router.NodeUp(), []string{l.Self})
	AddCapacity(&st, l.Capacity)
	AddHealth(&st, l.Health)
	return st
}

// StatusOf builds a Status from a ring and the reachability of its nodes.
func StatusOf(mode, self, leader string, r *ring.Ring, up map[string]bool, members []string) Status {
	st := Status{Mode: mode, Self: self, Leader: leader, Stage: "stable", Members: members}
	if r == nil {
		return st
	}
	st.RingVersion = r.Version()
	counts := r.SlotCounts()
	for i, n := range r.Nodes() {
		st.Nodes = append(st.Nodes, NodeStatus{Addr: n.Addr, Weight: n.Weight, Slots: counts[i], Up: up[n.Addr]})
	}
	return st
}

// Apply implements Controller.
func (l *Local) Apply(ctx context.Context, c Change) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.Router.Ring()
	next, err := NextRing(ctx, cur, c, l.Pinger)
	if err != nil {
		return cur.Version(), err
	}
	l.Router.Apply(next)
	return next.Version(), nil
}

// NextRing validates c against cur and returns the ring version cur+1. A
// node being added must answer PING first: adding an unreachable node would
// turn a share of all keys into errors.
func NextRing(ctx context.Context, cur *ring.Ring, c Change, p Pinger) (*ring.Ring, error) {
	if err := CheckAddr(c.Addr); err != nil {
		return nil, err
	}
	v := cur.Version() + 1
	switch c.Op {
	case "add":
		if cur.Index(c.Addr) >= 0 {
			return nil, fmt.Errorf("%s is already in the ring", c.Addr)
		}
		if p != nil {
			if err := p.Ping(ctx, c.Addr); err != nil {
				return nil, fmt.Errorf("%s does not answer PING: %v", c.Addr, err)
			}
		}
		return cur.Add(v, ring.Node{Addr: c.Addr, Weight: c.Weight})
	case "remove":
		if cur.Index(c.Addr) < 0 {
			return nil, fmt.Errorf("%s is not in the ring", c.Addr)
		}
		if cur.Len() == 1 {
			return nil, fmt.Errorf("%s is the last node; a ring needs at least one", c.Addr)
		}
		return cur.Remove(v, c.Addr)
	case "weight":
		if cur.Index(c.Addr) < 0 {
			return nil, fmt.Errorf("%s is not in the ring", c.Addr)
		}
		return cur.SetWeight(v, c.Addr, c.Weight)
	}
	return nil, fmt.Errorf("unknown change %q", c.Op)
}

// DBSizer is an optional interface of Local.Pinger: a node's DBSIZE.
type DBSizer interface {
	DBSize(ctx context.Context, addr string) (int64, error)
}

// planSizeTimeout bounds one node's DBSIZE during Plan; planSizeConc is how
// many nodes are asked at once.
const (
	planSizeTimeout = 2 * time.Second
	planSizeConc    = 16
)

// RebalanceStatus implements Rebalancer: standalone mode switches rings at
// once, so it is always stable.
func (l *Local) RebalanceStatus(context.Context) (RebalanceStatus, error) {
	return RebalanceStatus{Stage: StageStable, ETASeconds: -1}, nil
}

// RebalanceAction implements Rebalancer: there is never a rebalance to act
// on in standalone mode.
func (l *Local) RebalanceAction(_ context.Context, action string) error {
	switch action {
	case ActionAbort, ActionPause, ActionResume:
		return ErrNotRunning
	}
	return Refusal(ErrInvalid, fmt.Sprintf("unknown rebalance action %q", action))
}

// Plan implements Rebalancer: the ring c would produce, diffed against the
// current one, with key estimates from each node's DBSIZE. It changes
// nothing and does not PING a node being added.
func (l *Local) Plan(ctx context.Context, c Change) (PlanResult, error) {
	cur := l.Router.Ring()
	next, err := NextRing(ctx, cur, c, nil)
	if err != nil {
		return PlanResult{}, err
	}
	return ComputePlan(c.String(), cur, next, l.sizes(ctx, cur, next)), nil
}

// sizes asks every node of either ring for its DBSIZE (concurrently, each
// bounded); nodes that fail are left out (unknown).
func (l *Local) sizes(ctx context.Context, rings ...*ring.Ring) map[string]int64 {
	size := l.DBSize
	if size == nil {
		if s, ok := l.Pinger.(DBSizer); ok {
			size = s.DBSize
		}
	}
	out := map[string]int64{}
	if size == nil {
		return out
	}
	seen := map[string]bool{}
	var addrs []string
	for _, r := range rings {
		for _, n := range r.Nodes() {
			if !seen[n.Addr] {
				seen[n.Addr] = true
				addrs = append(addrs, n.Addr)
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, planSizeConc)
	for _, a := range addrs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			cctx, cancel := context.WithTimeout(ctx, planSizeTimeout)
			defer cancel()
			if n, err := size(cctx, a); err == nil && n >= 0 {
				mu.Lock()
				out[a] = n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}
