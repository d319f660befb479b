package proxy

import (
	"sync/atomic"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// view is what one batch routes with: a ring and, for each of its nodes by
// index, the backend node holding the connections. Both change together, so
// they are swapped together with one atomic pointer.
type view struct {
	ring  *ring.Ring
	nodes []*backend.Node
}

// Router publishes ring changes to the sessions. Sessions load the current
// view once per batch, lock-free.
type Router struct {
	pool *backend.Pool
	v    atomic.Pointer[view]
}

// noRing is the view before any ring is known (cluster mode, before the
// first read from Spanner): local commands work, keyed ones are refused.
var noRing = &view{}

// NewRouter returns a router over pool serving r; r may be nil when the ring
// is not known yet (Apply publishes it later).
func NewRouter(pool *backend.Pool, r *ring.Ring) *Router {
	rt := &Router{pool: pool}
	rt.v.Store(noRing)
	if r != nil {
		rt.Apply(r)
	}
	return rt
}

// Apply makes r the ring new batches route by, opening connections to nodes
// it adds and closing those to nodes it drops. A ring older than the current
// one is ignored, so a late broadcast cannot roll routing back.
func (rt *Router) Apply(r *ring.Ring) bool {
	old := rt.v.Load()
	if r == nil || old.ring != nil && r.Version() < old.ring.Version() {
		return false
	}
	nodes := make([]*backend.Node, r.Len())
	addrs := make([]string, r.Len())
	for i := range nodes {
		addrs[i] = r.Node(i).Addr
		nodes[i] = rt.pool.Node(addrs[i])
	}
	rt.v.Store(&view{ring: r, nodes: nodes})
	rt.pool.Retain(addrs)
	return true
}

// Ring returns the ring currently routed by (nil before the first one).
func (rt *Router) Ring() *ring.Ring { return rt.v.Load().ring }

// NodeUp reports, per node of the current ring, whether jupiter can reach it.
func (rt *Router) NodeUp() map[string]bool {
	v := rt.v.Load()
	up := make(map[string]bool, len(v.nodes))
	if v.ring == nil {
		return up
	}
	for i, n := range v.nodes {
		up[v.ring.Node(i).Addr] = n.Up()
	}
	return up
}

func (rt *Router) load() *view { return rt.v.Load() }

// Nodes calls f for each node of the current ring with its backend.
func (rt *Router) Nodes(f func(addr string, n *backend.Node)) {
	v := rt.v.Load()
	for i, n := range v.nodes {
		f(v.ring.Node(i).Addr, n)
	}
}
