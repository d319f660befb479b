package backend

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/stats"
)

// Options configure the data-path connections. Zero values mean the default.
type Options struct {
	ConnsPerNode   int           // multiplexed connections per node (default 1)
	DialTimeout    time.Duration // default 1s: a dead node must fail fast
	RequestTimeout time.Duration // default 2s, below go-redis's 3s ReadTimeout
	RetryMin       time.Duration // first redial delay after a failure (default 50ms)
	RetryMax       time.Duration // redial delay cap (default 1s, so recovery is quick)
	// Linger: while some connection still owes replies, the flusher waits
	// up to this long for them before writing the others (0 = never
	// waits). See flusher.
	Linger time.Duration
	// MaxDedicated bounds a node's dedicated connections (see Node.Borrow),
	// borrowed and idle together (default 1024).
	MaxDedicated int
	// IdleDedicated is how many released dedicated connections a node keeps
	// for reuse (default 8; negative: none).
	IdleDedicated int
	// Dialer opens a connection; tests and TLS replace it. Default: net.Dialer.
	Dialer func(addr string, timeout time.Duration) (net.Conn, error)
}

func (o Options) withDefaults() Options {
	if o.ConnsPerNode <= 0 {
		o.ConnsPerNode = 1
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 50 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Second
	}
	if o.Dialer == nil {
		o.Dialer = dialTCP
	}
	if o.MaxDedicated <= 0 {
		o.MaxDedicated = 1024
	}
	if o.IdleDedicated == 0 {
		o.IdleDedicated = 8
	}
	o.IdleDedicated = min(max(o.IdleDedicated, 0), o.MaxDedicated)
	return o
}

func dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlivePeriod(30 * time.Second)
	}
	return nc, nil
}

// Node is one Redis backend, its multiplexed connections and its dedicated
// ones.
type Node struct {
	addr   string
	opts   Options
	dialer func(string, time.Duration) (net.Conn, error)
	conns  []*mconn
	// conns3 are the multiplexed connections that speak RESP3 (HELLO 3),
	// for clients that switched to it: their replies then pass through
	// untouched too. Dialled on a RESP3 client's first request.
	conns3 atomic.Pointer[[]*mconn]
	mu3    sync.Mutex
	stop   <-chan struct{} // the pool's: closed by Close
	gone   atomic.Bool     // Retain dropped the node: open nothing more to it
	up     atomic.Bool
	// fleetDown: the fleet's health verdict marks the node down; new
	// requests fail at once with ErrFleetDown (one atomic load per batch).
	fleetDown atomic.Bool
	wg        *sync.WaitGroup
	fl        *flusher
	ded       dedicatedSet

	// Stats counts the node's requests (one per reply awaited), the ones that
	// failed for want of the node, and the time from queueing to reply.
	Stats stats.Op
}

// Addr returns the node's address.
func (n *Node) Addr() string { return n.addr }

// Up reports whether the last connection attempt to the node succeeded.
func (n *Node) Up() bool { return n.up.Load() }

func (n *Node) setUp(v bool) { n.up.Store(v) }

// FleetDown reports whether the fleet's verdict marks the node down.
func (n *Node) FleetDown() bool { return n.fleetDown.Load() }

// failFleetDown fails calls with ErrFleetDown if the fleet marks the node
// down, and reports whether it did.
func (n *Node) failFleetDown(calls []*Call) bool {
	if !n.fleetDown.Load() {
		return false
	}
	n.conns[0].failAll(calls, &NodeError{n.addr, ErrFleetDown})
	return true
}

// Enqueue queues calls (already attached to a Group), whose encoded
// requests are payload, on the node's connection number pick (any integer;
// a session passes a stable value so its requests to one node keep their
// order). The pool's flusher writes them at the end of the current
// scheduling round. now is the request's start time (unix nanos), for the
// latency statistics and the stall detector.
//
// While the fleet marks the node down (Pool.SetFleetDown) the calls fail at
// once with ErrFleetDown, whatever this pod's own connection state.
func (n *Node) Enqueue(pick uint32, payload []byte, calls []*Call, now int64) {
	if n.failFleetDown(calls) {
		return
	}
	n.conns[int(pick%uint32(len(n.conns)))].enqueue(payload, calls, now)
}

// Enqueue3 is Enqueue on the node's RESP3 connections (the replies come in
// RESP3, as the node sends them to a client that said HELLO 3).
func (n *Node) Enqueue3(pick uint32, payload []byte, calls []*Call, now int64) {
	if n.failFleetDown(calls) {
		return
	}
	cs := n.conns3.Load()
	if cs == nil {
		cs = n.openResp3()
	}
	(*cs)[int(pick%uint32(len(*cs)))].enqueue(payload, calls, now)
}

func (n *Node) openResp3() *[]*mconn {
	n.mu3.Lock()
	defer n.mu3.Unlock()
	if cs := n.conns3.Load(); cs != nil {
		return cs
	}
	cs := make([]*mconn, len(n.conns))
	for i := range cs {
		cs[i] = n.newConn(3)
	}
	n.conns3.Store(&cs)
	return &cs
}

// newConn returns a connection speaking RESP proto, dialling unless the
// pool is closed.
func (n *Node) newConn(proto uint8) *mconn {
	c := &mconn{node: n, proto: proto}
	if n.gone.Load() {
		c.closed = true
		return c
	}
	select {
	case <-n.stop:
		c.closed = true
	default:
		c.mu.Lock()
		c.startDialLocked()
		c.mu.Unlock()
	}
	return c
}

// each calls f for every multiplexed connection of the node.
func (n *Node) each(f func(*mconn)) {
	for _, c := range n.conns {
		f(c)
	}
	if cs := n.conns3.Load(); cs != nil {
		for _, c := range *cs {
			f(c)
		}
	}
}

// Inflight returns the number of Calls waiting for replies on the node.
func (n *Node) Inflight() int {
	t := 0
	n.each(func(c *mconn) { t += c.queueLen() })
	return t
}

// Pool holds a Node per backend address. Nodes are created on demand and kept
// until Retain drops them, so a ring change reuses connections to nodes that
// stay.
type Pool struct {
	opts Options

	mu    sync.Mutex
	nodes map[string]*Node
	// fleetDown is the fleet's verdict (SetFleetDown), applied to nodes
	// created later too.
	fleetDown map[string]bool
	wg        sync.WaitGroup // every reader, dialer and the watchdog
	stop      chan struct{}
	once      sync.Once
	fl        *flusher
}

// NewPool starts a pool, its watchdog and its flusher; Close stops them.
func NewPool(opts Options) *Pool {
	p := &Pool{opts: opts.withDefaults(), nodes: map[string]*Node{}, stop: make(chan struct{})}
	p.fl = newFlusher(p.opts.Linger)
	p.wg.Add(2)
	go p.watchdog()
	go func() {
		defer p.wg.Done()
		p.fl.run(p.stop)
	}()
	return p
}

// Node returns the node for addr, creating it (and starting its dials) on
// first use.
func (p *Pool) Node(addr string) *Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.nodes[addr]; ok {
		return n
	}
	n := &Node{addr: addr, opts: p.opts, dialer: p.opts.Dialer, wg: &p.wg, fl: p.fl, stop: p.stop}
	n.conns = make([]*mconn, p.opts.ConnsPerNode)
	n.fleetDown.Store(p.fleetDown[addr])
	select {
	case <-p.stop:
		n.ded.closed = true
	default:
	}
	for i := range n.conns {
		n.conns[i] = n.newConn(2)
	}
	p.nodes[addr] = n
	return n
}

// SetFleetDown applies the fleet's health verdict: the nodes in down fail
// new requests at once with ErrFleetDown (Node.Enqueue, Node.Borrow), every
// other node serves as usual. Nothing is remapped: a down node keeps its
// slots. It returns the nodes whose state changed.
func (p *Pool) SetFleetDown(down map[string]bool) (changed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fleetDown = make(map[string]bool, len(down))
	for a, d := range down {
		if d {
			p.fleetDown[a] = true
		}
	}
	for a, n := range p.nodes {
		if n.fleetDown.Swap(p.fleetDown[a]) != p.fleetDown[a] {
			changed = append(changed, a)
		}
	}
	return changed
}

// Retain closes and forgets every node whose address is not in keep.
func (p *Pool) Retain(keep []string) {
	set := make(map[string]bool, len(keep))
	for _, a := range keep {
		set[a] = true
	}
	p.mu.Lock()
	var drop []*Node
	for a, n := range p.nodes {
		if !set[a] {
			drop = append(drop, n)
			delete(p.nodes, a)
		}
	}
	p.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	for _, n := range drop {
		n.gone.Store(true)
		n.dropDedicated()
	}
	// Batches planned with the previous ring may still be queued on these
	// connections or about to submit: close them once those are answered
	// (a request lives at most RequestTimeout), not under their feet.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTimer(p.opts.RequestTimeout + time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.stop:
		}
		for _, n := range drop {
			n.each((*mconn).close)
			n.closeDedicated()
		}
	}()
}

// Close closes every connection and waits for all goroutines, bounded by ctx.
func (p *Pool) Close(ctx context.Context) error {
	p.once.Do(func() { close(p.stop) })
	p.mu.Lock()
	nodes := make([]*Node, 0, len(p.nodes))
	for _, n := range p.nodes {
		nodes = append(nodes, n)
	}
	p.mu.Unlock()
	for _, n := range nodes {
		n.each((*mconn).close)
		n.closeDedicated()
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchdog enforces the request timeout and redials idle-down connections so
// a node that comes back is noticed without waiting for traffic.
func (p *Pool) watchdog() {
	defer p.wg.Done()
	tick := time.NewTicker(max(p.opts.RequestTimeout/10, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case t := <-tick.C:
			now := t.UnixNano()
			p.mu.Lock()
			for _, n := range p.nodes {
				n.each(func(c *mconn) {
					c.expire(now, p.opts.RequestTimeout)
					c.redialIfDue(t)
				})
			}
			p.mu.Unlock()
		}
	}
}

func (c *mconn) redialIfDue(now time.Time) {
	c.mu.Lock()
	if c.nc == nil && !c.dialing && !c.closed && !now.Before(c.retryAt) {
		c.startDialLocked()
	}
	c.mu.Unlock()
}

// Nodes returns the pool's nodes, for metrics.
func (p *Pool) Nodes() []*Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Node, 0, len(p.nodes))
	for _, n := range p.nodes {
		out = append(out, n)
	}
	return out
}

// Connected returns how many of the node's connections are open.
func (n *Node) Connected() int {
	t := 0
	n.each(func(c *mconn) {
		c.mu.Lock()
		if c.nc != nil {
			t++
		}
		c.mu.Unlock()
	})
	return t
}
