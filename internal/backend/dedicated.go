// Dedicated connections.
//
// The multiplexed connections interleave every session's commands, so
// nothing that leaves state on the connection may go through them: WATCH
// and MULTI would apply to whatever the other sessions send next, and a
// blocking command (BLPOP) would stall every reply queued behind it. A
// session that needs such a command borrows a connection of its own from
// the node (Node.Borrow), talks to it synchronously (Send, Receive, Do) and
// gives it back when the client is done (Release), or closes it when the
// state cannot be undone (Close).
//
// The pool per node is bounded (Options.MaxDedicated, borrowed and idle
// together) so a flood of clients blocking on BLPOP cannot exhaust the
// node's maxclients: at the bound Borrow fails at once rather than queue,
// because the borrowers it would wait for may be blocked for ever. Only a
// few idle connections are kept (Options.IdleDedicated): dedicated use is
// the exception, and a dial on a LAN costs less than holding connections
// (and node memory) for peaks.
//
// No goroutine is involved: the borrower reads and writes the socket itself,
// bounded by the deadlines it passes.

package backend

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// ErrDedicatedLimit is wrapped in the error Borrow returns when the node
// already has Options.MaxDedicated dedicated connections.
var ErrDedicatedLimit = errors.New("too many dedicated connections")

const (
	dedicatedBuf     = 4 << 10  // first read buffer of a dedicated connection
	maxDedicatedKept = 64 << 10 // larger read buffers are dropped on Release
)

// resetCmds undoes MULTI and WATCH. Not RESET: it also logs the connection
// out, and a password-protected node would then refuse everything.
var resetCmds = []byte("*1\r\n$7\r\nDISCARD\r\n*1\r\n$7\r\nUNWATCH\r\n")

// dedicatedSet is a node's dedicated connections.
type dedicatedSet struct {
	mu       sync.Mutex
	idle     []*dconn                // LIFO: the most recently used is the least likely to be stale
	borrowed map[*Dedicated]struct{} // so Pool.Close can unblock their readers
	dialing  int                     // slots reserved by Borrows that are dialling
	dropped  bool                    // the node left the ring: keep nothing idle
	closed   bool                    // Pool.Close or the end of Retain's grace: no more Borrows
}

// dconn is the connection itself; it outlives the Dedicated handles that
// borrow it. Only the current borrower touches its fields other than nc.
type dconn struct {
	nc      net.Conn
	proto   int         // the RESP version the node speaks on it (HELLO)
	fr      resp.Framer // what was read; fr.Buf[fr.R:fr.W] not yet returned
	replies [][]byte
	bounds  []int
}

// Dedicated is one connection to a node owned by one client session at a
// time. Each Borrow returns a new handle, so a Close or Release that comes
// late through an old handle (a disconnect watcher racing the session's own
// Release, say) cannot reach the connection's next borrower.
type Dedicated struct {
	node *Node
	c    *dconn
	// done: Released or Closed. Set under node.ded.mu; read without it by
	// the borrower so a stale handle fails instead of using a lent-out conn.
	done atomic.Bool
	// broken: a Send or Receive failed, so replies may be owed or a command
	// half written; the connection must not be reused. Borrower only.
	broken atomic.Bool
	// err is sticky: the connection cannot carry another exchange. Under
	// mu, since a Send may run while another goroutine Receives (a
	// subscriber's reader).
	mu  sync.Mutex
	err error
}

// DedicatedInUse returns how many dedicated connections to the node are
// borrowed (or being dialled for a Borrow) now.
func (n *Node) DedicatedInUse() int {
	s := &n.ded
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.borrowed) + s.dialing
}

// DedicatedIdle returns how many dedicated connections to the node wait for
// reuse.
func (n *Node) DedicatedIdle() int {
	s := &n.ded
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle)
}

// Borrow returns an idle dedicated connection to the node, or dials a new
// one with the node's dialer (TLS and AUTH included). It fails at once,
// with an error wrapping ErrDedicatedLimit, when the node has
// Options.MaxDedicated connections borrowed and idle; dial errors come as a
// *NodeError. It blocks at most for the dial timeout. While the fleet marks
// the node down it fails at once with a NodeError of ErrFleetDown.
func (n *Node) Borrow() (*Dedicated, error) { return n.BorrowProto(2) }

// BorrowProto is Borrow for a client speaking RESP proto (2 or 3): the
// connection is switched with HELLO first when it speaks the other one.
func (n *Node) BorrowProto(proto int) (*Dedicated, error) {
	d, err := n.borrow()
	if err != nil || d.c.proto == proto || (proto == 2 && d.c.proto == 0) {
		return d, err
	}
	if err := hello(d.c.nc, proto, time.Now().Add(n.opts.DialTimeout)); err != nil {
		d.Close()
		return nil, &NodeError{n.addr, err}
	}
	d.c.proto = proto
	return d, nil
}

func (n *Node) borrow() (*Dedicated, error) {
	if n.fleetDown.Load() {
		return nil, &NodeError{n.addr, ErrFleetDown}
	}
	s := &n.ded
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, &NodeError{n.addr, errClosed}
		}
		if k := len(s.idle); k > 0 {
			c := s.idle[k-1]
			s.idle[k-1] = nil
			s.idle = s.idle[:k-1]
			d := s.lendLocked(n, c)
			s.mu.Unlock()
			// The node may have closed it while idle (restart, its idle
			// timeout, CLIENT KILL): one non-blocking peek spares the client
			// an error on its first command.
			if alive(c.nc) {
				return d, nil
			}
			d.Close()
			continue
		}
		if len(s.borrowed)+s.dialing >= n.opts.MaxDedicated {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w to node %s (max %d): raise --max-dedicated-conns",
				ErrDedicatedLimit, n.addr, n.opts.MaxDedicated)
		}
		s.dialing++
		s.mu.Unlock()
		nc, err := n.dialer(n.addr, n.opts.DialTimeout)
		s.mu.Lock()
		s.dialing--
		if err == nil && s.closed {
			err = errClosed
			nc.Close()
		}
		if err != nil {
			s.mu.Unlock()
			return nil, &NodeError{n.addr, err}
		}
		d := s.lendLocked(n, &dconn{nc: nc})
		s.mu.Unlock()
		return d, nil
	}
}

func (s *dedicatedSet) lendLocked(n *Node, c *dconn) *Dedicated {
	d := &Dedicated{node: n, c: c}
	if s.borrowed == nil {
		s.borrowed = map[*Dedicated]struct{}{}
	}
	s.borrowed[d] = struct{}{}
	return d
}

// alive reports whether an idle connection can still be used: the peer has
// not closed it and has sent nothing (an idle connection owes no reply, so
// any byte means it is out of step). Under TLS that includes records the
// server sends unasked (a late TLS 1.3 session ticket): the cost is a
// redial, never a reply read out of place. Connections that are not
// sockets (test wrappers) are assumed alive.
func alive(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = e == syscall.EAGAIN
		return true // never wait
	})
	return err == nil && ok
}

// Addr is the node's address.
func (d *Dedicated) Addr() string { return d.node.addr }

// Send writes payload (one or more encoded commands) whole, bounded by
// deadline (zero: none). It may run while another goroutine is in Receive
// on the same connection (a subscriber sends SUBSCRIBE while its reader
// waits for messages); Sends must not overlap each other.
func (d *Dedicated) Send(payload []byte, deadline time.Time) error {
	if err := d.usable(); err != nil {
		return err
	}
	nc := d.c.nc
	if err := nc.SetWriteDeadline(deadline); err != nil {
		return d.fail(err)
	}
	if _, err := nc.Write(payload); err != nil {
		// Part of a command may be out: nothing sent later would parse.
		return d.setErr(d.fail(err))
	}
	return nil
}

// Receive reads one complete reply (RESP2 or RESP3) and returns its raw
// bytes, valid until the next Receive, Do or Release. It waits until
// deadline (zero: for ever, as BLPOP 0 needs). A reply that is not RESP
// is an error. After a timeout Receive may be called again to keep waiting
// for the same reply, but the connection is no longer reused on Release.
func (d *Dedicated) Receive(deadline time.Time) ([]byte, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	d.c.compact()
	if err := d.c.nc.SetReadDeadline(deadline); err != nil {
		return nil, d.fail(err)
	}
	start, end, err := d.frame()
	if err != nil {
		return nil, err
	}
	return d.c.fr.Buf[start:end:end], nil
}

// Buffered reports whether bytes read from the node already wait for the
// next Receive (a reader that sees none has drained what arrived at once).
func (d *Dedicated) Buffered() bool { return d.c.fr.Buffered() }

// Do sends payload and receives n replies, valid until the next Receive, Do
// or Release.
func (d *Dedicated) Do(payload []byte, n int, deadline time.Time) ([][]byte, error) {
	if err := d.Send(payload, deadline); err != nil {
		return nil, err
	}
	c := d.c
	c.compact()
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return nil, d.fail(err)
	}
	// Offsets, not slices: the buffer may grow (and move) before the last
	// reply is in. It is not compacted meanwhile, so the offsets hold.
	c.bounds = c.bounds[:0]
	for range n {
		start, end, err := d.frame()
		if err != nil {
			return nil, err
		}
		c.bounds = append(c.bounds, start, end)
	}
	c.replies = c.replies[:0]
	for i := 0; i < len(c.bounds); i += 2 {
		c.replies = append(c.replies, c.fr.Buf[c.bounds[i]:c.bounds[i+1]:c.bounds[i+1]])
	}
	return c.replies, nil
}

// compact moves the unread bytes to the front; the replies returned before
// are no longer referenced.
func (c *dconn) compact() { c.fr.Compact() }

// frame reads until a whole reply starts at c.fr.R and consumes it.
func (d *Dedicated) frame() (start, end int, err error) {
	start, end, err = d.c.fr.Next(d.c.nc.Read, dedicatedBuf)
	switch {
	case err == nil:
		return start, end, nil
	case errors.Is(err, resp.ErrBadReply):
		return 0, 0, d.setErr(d.fail(err))
	}
	err = d.fail(err)
	// A timeout leaves the stream intact (the Framer keeps its place), so
	// the borrower may wait on; anything else ends it.
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		d.setErr(err)
	}
	return 0, 0, err
}

func (d *Dedicated) usable() error {
	if d.done.Load() {
		return &NodeError{d.node.addr, errClosed}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *Dedicated) setErr(err error) error {
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
	return err
}

// fail marks the connection unfit for reuse and names the node in err.
func (d *Dedicated) fail(err error) error {
	d.broken.Store(true)
	if d.done.Load() {
		err = errClosed // Close from another goroutine; say so, not "use of closed network connection"
	}
	return &NodeError{d.node.addr, err}
}

// Release gives the connection back for reuse by the node's next Borrow,
// or closes it when IdleDedicated are already idle, the node was dropped,
// the pool is closed, or an exchange on it failed. dirty means it may hold
// WATCH or MULTI state: DISCARD and UNWATCH are sent first (error replies
// are fine), bounded by the dial timeout. Release undoes nothing else: a
// connection with other state (SELECT, HELLO 3, SUBSCRIBE, CLIENT REPLY) or
// with replies still owed must be Closed instead. Release after Release or
// Close does nothing.
func (d *Dedicated) Release(dirty bool) {
	if d.done.Load() {
		return
	}
	c := d.c
	keep := !d.broken.Load() && d.usable() == nil && !c.fr.Buffered() // unread bytes: out of step
	if keep && dirty {
		r, err := d.Do(resetCmds, 2, time.Now().Add(d.node.opts.DialTimeout))
		keep = err == nil && !resp.IsError(r[1]) && !c.fr.Buffered()
	}
	if keep {
		// A deadline that passes while idle would fail alive's peek.
		keep = c.nc.SetDeadline(time.Time{}) == nil
	}
	c.fr.Reset(maxDedicatedKept)
	clear(c.replies) // they pin the buffer
	if c.fr.Buf == nil {
		c.replies = nil
	}
	s := &d.node.ded
	s.mu.Lock()
	if d.done.Load() { // Closed meanwhile, by its watcher or the pool
		s.mu.Unlock()
		return
	}
	d.done.Store(true)
	delete(s.borrowed, d)
	keep = keep && !s.dropped && !s.closed && len(s.idle) < d.node.opts.IdleDedicated
	if keep {
		s.idle = append(s.idle, c)
	}
	s.mu.Unlock()
	if !keep {
		c.nc.Close()
	}
}

// Close closes the connection for good and frees its slot. It may be called
// from any goroutine, also while the borrower is blocked in Receive (which
// then fails). Close after Close or Release does nothing.
func (d *Dedicated) Close() {
	s := &d.node.ded
	s.mu.Lock()
	if d.done.Load() {
		s.mu.Unlock()
		return
	}
	d.done.Store(true)
	delete(s.borrowed, d)
	s.mu.Unlock()
	d.c.nc.Close()
}

// dropDedicated is called when the node leaves the ring: its idle
// connections are closed, and borrowed ones are closed on Release instead
// of kept. Borrow still works, like the multiplexed connections do during
// Retain's grace period, for sessions that planned with the old ring.
func (n *Node) dropDedicated() {
	s := &n.ded
	s.mu.Lock()
	s.dropped = true
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// closeDedicated closes every dedicated connection, the borrowed ones too:
// a client blocked in BLPOP on a node that left the ring would otherwise
// wait for ever for a push that now goes to another node, and Pool.Close
// must not wait for blocked clients. Their Receive fails; the borrower's
// Release or Close is then a no-op. Later Borrows fail.
func (n *Node) closeDedicated() {
	s := &n.ded
	s.mu.Lock()
	s.dropped, s.closed = true, true
	idle := s.idle
	s.idle = nil
	var lent []*dconn
	for d := range s.borrowed {
		d.done.Store(true)
		lent = append(lent, d.c)
	}
	s.borrowed = nil
	s.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
	for _, c := range lent {
		c.nc.Close()
	}
}
