package admin

import (
	"context"
	"fmt"
	"sync"

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

	mu sync.Mutex // serialises changes: version N+1 is always built from N
}

// Status implements Controller.
func (l *Local) Status(context.Context) Status {
	return StatusOf("standalone", l.Self, "self", l.Router.Ring(), l.Router.NodeUp(), []string{l.Self})
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
