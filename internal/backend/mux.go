// Package backend owns jupiter's connections to the Redis nodes.
//
// The data path uses multiplexed connections: a small fixed number per node,
// shared by every client session. A session appends its requests' bytes to a
// connection's write buffer and queues one Call per expected reply. A
// session that finds the connection idle (nothing being written, no reply
// owed) becomes its flusher and writes everything queued, by every session,
// in one system call. While the node owes replies, new requests wait in the
// buffer: the reader goroutine, which frames the replies (resp.Scanner) and
// hands them back in FIFO order, writes them in one go once the owed replies
// are in. So a busy connection carries one write per round trip with
// everything that arrived meanwhile — the batching twemproxy's event loop
// gets from epoll — the cost of a backend round trip is shared by all
// clients instead of paid per client batch, and no goroutine hand-off is
// needed on the write side.
//
//	session A ─┐  append bytes + Calls              ┌──────────────┐
//	session B ─┼─────────► wbuf ──(one write)──────►│ redis-server │
//	session C ─┘  written by an idle-finding        └──────┬───────┘
//	   ▲          session, or by the reader                │ replies,
//	   │          when owed replies arrive                 │ in order
//	   └──── Call.Reply filled, Group done ◄── reader ◄────┘
//
// A connection that fails (dial error, read/write error, a reply that is not
// RESP, a request older than the request timeout) fails every Call queued on
// it with an error naming the node, and is redialled in the background with
// backoff. While a node is down, new Calls fail at once instead of waiting, so
// only that node's keys see errors and they see them fast.
//
// go-redis clients (see Health) serve the control path only.
package backend

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// Call is one request whose single reply is awaited. A session owns its Calls
// and reuses them, and with them the Reply buffers, across batches.
type Call struct {
	// Reply holds the raw RESP reply once the Call's group is done and Err is nil.
	Reply []byte
	// Err is set instead of Reply when the node could not answer.
	Err   error
	group *Group
}

// Group counts the outstanding Calls of one client batch.
type Group struct {
	pending  atomic.Int32
	attached int // Calls attached since the last Wait; owner goroutine only
	done     chan struct{}
}

// NewGroup returns a reusable Group.
func NewGroup() *Group { return &Group{done: make(chan struct{}, 1)} }

// Attach adds c to g. All Calls must be attached before any is submitted.
func (g *Group) Attach(c *Call) {
	c.group = g
	c.Err = nil
	c.Reply = c.Reply[:0]
	g.attached++
	g.pending.Add(1)
}

// Wait blocks until every attached Call has a reply or an error. It is
// bounded: every queued Call is completed by its connection's reader, or
// failed when the connection dies or the watchdog finds it too old.
//
// The done signal is consumed even when the last reply came before Wait was
// called, so a Group can be reused for the next batch.
func (g *Group) Wait() {
	if g.attached == 0 {
		return
	}
	g.attached = 0
	<-g.done
}

func (g *Group) finish() {
	if g.pending.Add(-1) == 0 {
		g.done <- struct{}{}
	}
}

func (c *Call) complete(reply []byte, err error) {
	if err != nil {
		c.Err = err
	} else {
		c.Reply = append(c.Reply[:0], reply...)
	}
	c.group.finish()
}

// NodeError is the error a Call gets when its node cannot answer.
type NodeError struct {
	Addr string
	Err  error
}

func (e *NodeError) Error() string { return fmt.Sprintf("backend %s: %v", e.Addr, e.Err) }
func (e *NodeError) Unwrap() error { return e.Err }

var (
	errTimeout = errors.New("request timed out")
	errDesync  = errors.New("reply without a request")
	errClosed  = errors.New("connection closed by jupiter")
)

// queued is a Call waiting for its reply, with the time it was queued.
type queued struct {
	call *Call
	at   int64 // unix nanos
}

// fifo is a growable ring buffer of queued Calls.
type fifo struct {
	buf        []queued
	head, size int
}

func (q *fifo) push(c queued) {
	if q.size == len(q.buf) {
		n := len(q.buf) * 2
		if n == 0 {
			n = 64
		}
		nb := make([]queued, n)
		for i := 0; i < q.size; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = c
	q.size++
}

func (q *fifo) pop() queued {
	c := q.buf[q.head]
	q.buf[q.head] = queued{}
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return c
}

func (q *fifo) oldest() int64 {
	if q.size == 0 {
		return 0
	}
	return q.buf[q.head].at
}

// mconn is one multiplexed connection to a node.
type mconn struct {
	node *Node

	mu       sync.Mutex
	nc       net.Conn // nil while down
	gen      uint64   // incremented on every (re)connect; stale writers check it
	wbuf     []byte
	unsent   int // Calls in inflight whose requests are still in wbuf
	spare    []byte
	writing  bool
	inflight fifo
	dialing  bool
	dialDone chan struct{}
	lastErr  error
	retryAt  time.Time
	backoff  time.Duration
	closed   bool

	queued atomic.Uint64 // submits so far: a flusher yields while it grows
	lastIO atomic.Int64  // unix nanos of the last bytes received, or of a large write's progress
}

// maxKeptBuf is the largest write buffer kept for reuse; a 1 MiB value
// should not pin 1 MiB per connection forever.
const maxKeptBuf = 256 << 10

// enqueue appends the requests of calls (already attached to a Group),
// encoded in payload, one reply each, in order, to the write buffer. It returns c when the
// caller found the connection idle and so must flush it, else nil (a flusher
// is at work and will write them).
func (c *mconn) enqueue(payload []byte, calls []*Call, now int64) *mconn {
	c.mu.Lock()
	for c.nc == nil {
		if c.closed {
			c.mu.Unlock()
			c.failAll(calls, &NodeError{c.node.addr, errClosed})
			return nil
		}
		if !c.dialing {
			if time.Now().Before(c.retryAt) {
				err := c.lastErr
				c.mu.Unlock()
				c.failAll(calls, &NodeError{c.node.addr, err})
				return nil
			}
			c.startDialLocked()
		}
		ch := c.dialDone
		c.mu.Unlock()
		<-ch // bounded by the dial timeout
		c.mu.Lock()
		if c.nc == nil && !c.dialing {
			// The dial we waited for failed: fail fast rather than redial.
			err := c.lastErr
			c.mu.Unlock()
			c.failAll(calls, &NodeError{c.node.addr, err})
			return nil
		}
	}
	c.wbuf = append(c.wbuf, payload...)
	c.queued.Add(1)
	c.unsent += len(calls)
	for _, call := range calls {
		c.inflight.push(queued{call, now})
	}
	if c.writing || c.awaitingLocked() > 0 {
		// A flusher is at work, or the reader will flush when the replies
		// it awaits arrive (see read).
		c.mu.Unlock()
		return nil
	}
	c.writing = true
	c.mu.Unlock()
	return c
}

// Pending is a connection the caller must flush (FlushAll): its Enqueue
// found the connection idle. The zero Pending needs nothing.
type Pending struct{ c *mconn }

// FlushAll writes what each connection has queued, after letting other
// goroutines join the writes. A session enqueues its shares for every node
// first and then flushes them together, so that one wait serves them all
// and no node's share is held back while another's write waits.
//
// The wait: let the other sessions the netpoller just woke append their
// requests before writing, so one write carries many clients' requests,
// the way an event loop batches everything one epoll_wait returned. Yield
// again while the yields keep bringing requests (bounded): a backend's CPU
// per command falls with every request a read carries.
func FlushAll(ps []Pending) {
	var seen uint64
	some := false
	for _, p := range ps {
		if p.c != nil {
			seen += p.c.queued.Load()
			some = true
		}
	}
	if !some {
		return
	}
	for range maxYields {
		runtime.Gosched()
		var now uint64
		for _, p := range ps {
			if p.c != nil {
				now += p.c.queued.Load()
			}
		}
		if now == seen {
			break
		}
		seen = now
	}
	for _, p := range ps {
		if p.c != nil {
			p.c.mu.Lock()
			p.c.flushLocked(2)
		}
	}
}

// maxYields bounds how often a flusher yields to let others join its write.
const maxYields = 4

// awaitingLocked is the number of Calls written (or being written) whose
// replies have not been read.
func (c *mconn) awaitingLocked() int { return c.inflight.size - c.unsent }

// flushLocked writes everything queued. It is entered with c.mu held and
// c.writing set, and returns with c.mu released. After rounds writes it hands
// the remaining work to a new goroutine so that a client session is never
// kept writing for others indefinitely.
//
// Requests queued while replies are awaited are held back for the reader,
// which writes them as soon as replies arrive: one write per round trip per
// connection, carrying everything that came in meanwhile. Under load this
// is what keeps the backends' per-command cost low (a redis-server reading
// ten requests at once spends far less CPU than on ten reads); with nothing
// in flight a request is written at once, so an idle proxy adds no delay.
func (c *mconn) flushLocked(rounds int) {
	for i := 0; ; i++ {
		if len(c.wbuf) == 0 || c.nc == nil || (i > 0 && c.awaitingLocked() > 0) {
			c.writing = false
			c.mu.Unlock()
			return
		}
		if i == rounds {
			c.mu.Unlock()
			c.node.wg.Add(1)
			go c.flushAgain()
			return
		}
		buf, nc, gen := c.wbuf, c.nc, c.gen
		c.wbuf = c.spare[:0]
		c.unsent = 0
		c.mu.Unlock()
		err := c.write(nc, buf)
		c.mu.Lock()
		if cap(buf) <= maxKeptBuf {
			c.spare = buf[:0]
		} else {
			c.spare = nil
		}
		if err != nil && c.gen == gen {
			c.failLocked(err)
		}
	}
}

// writeChunk bounds one write call, so that a large request shows progress
// to the stall detector (expire) while it is being sent.
const writeChunk = 1 << 20

func (c *mconn) write(nc net.Conn, buf []byte) error {
	for len(buf) > 0 {
		n := min(len(buf), writeChunk)
		if _, err := nc.Write(buf[:n]); err != nil {
			return err
		}
		buf = buf[n:]
		c.lastIO.Store(time.Now().UnixNano())
	}
	return nil
}

func (c *mconn) flushAgain() {
	defer c.node.wg.Done()
	c.mu.Lock()
	c.flushLocked(1 << 30)
}

// failLocked tears the connection down and fails every queued Call.
func (c *mconn) failLocked(err error) {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.lastErr = err
	c.wbuf = c.wbuf[:0]
	c.unsent = 0
	nerr := &NodeError{c.node.addr, err}
	c.node.Stats.Count.Add(uint64(c.inflight.size))
	c.node.Stats.Errors.Add(uint64(c.inflight.size))
	for c.inflight.size > 0 {
		c.inflight.pop().call.complete(nil, nerr)
	}
	c.scheduleRetryLocked()
}

func (c *mconn) scheduleRetryLocked() {
	if c.backoff == 0 {
		c.backoff = c.node.opts.RetryMin
	} else if c.backoff *= 2; c.backoff > c.node.opts.RetryMax {
		c.backoff = c.node.opts.RetryMax
	}
	c.retryAt = time.Now().Add(c.backoff)
}

func (c *mconn) failAll(calls []*Call, err error) {
	c.node.Stats.Count.Add(uint64(len(calls)))
	c.node.Stats.Errors.Add(uint64(len(calls)))
	for _, call := range calls {
		call.complete(nil, err)
	}
}

// startDialLocked dials in the background; waiters block on dialDone.
func (c *mconn) startDialLocked() {
	c.dialing = true
	c.dialDone = make(chan struct{})
	c.node.wg.Add(1)
	go c.dial()
}

func (c *mconn) dial() {
	defer c.node.wg.Done()
	nc, err := c.node.dialer(c.node.addr, c.node.opts.DialTimeout)
	c.mu.Lock()
	defer func() {
		c.dialing = false
		close(c.dialDone)
		c.mu.Unlock()
	}()
	if err != nil {
		c.lastErr = err
		c.scheduleRetryLocked()
		c.node.setUp(false)
		return
	}
	if c.closed {
		c.lastErr = errClosed
		nc.Close()
		return
	}
	c.nc = nc
	c.gen++
	c.backoff = 0
	c.lastErr = nil
	c.node.setUp(true)
	c.node.wg.Add(1)
	go c.read(nc, c.gen)
}

// read frames replies and completes Calls in FIFO order.
func (c *mconn) read(nc net.Conn, gen uint64) {
	defer c.node.wg.Done()
	defer func() {
		// A bug here must cost this connection, never the process.
		if p := recover(); p != nil {
			c.readFailed(gen, fmt.Errorf("internal error: %v", p))
		}
	}()
	buf := make([]byte, 16<<10)
	start, end := 0, 0
	var sc resp.Scanner
	var ready []queued
	var bounds []int
	for {
		if end == len(buf) {
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			} else {
				nb := make([]byte, 2*len(buf))
				copy(nb, buf[:end])
				buf = nb
			}
		}
		n, err := nc.Read(buf[end:])
		if err != nil {
			c.readFailed(gen, err)
			return
		}
		c.lastIO.Store(time.Now().UnixNano())
		end += n
		bounds = bounds[:0]
		for start < end {
			l, err := sc.Scan(buf[start:end])
			if err != nil {
				c.readFailed(gen, err)
				return
			}
			if l == 0 {
				break
			}
			bounds = append(bounds, start, start+l)
			start += l
		}
		if len(bounds) == 0 {
			continue
		}
		ready = ready[:0]
		c.mu.Lock()
		if c.gen != gen {
			c.mu.Unlock()
			return
		}
		k := len(bounds) / 2
		if k > c.awaitingLocked() {
			c.failLocked(errDesync)
			c.mu.Unlock()
			return
		}
		for i := 0; i < k; i++ {
			ready = append(ready, c.inflight.pop())
		}
		// The node has answered everything it owed: send it what queued up
		// meanwhile (see flushLocked) before handing these replies out, so
		// it works while the sessions do.
		if len(c.wbuf) > 0 && !c.writing && c.awaitingLocked() == 0 {
			c.writing = true
			c.flushLocked(2)
		} else {
			c.mu.Unlock()
		}
		now := c.lastIO.Load()
		st := &c.node.Stats
		st.Count.Add(uint64(len(ready)))
		for i, q := range ready {
			st.Latency.Observe(time.Duration(now - q.at))
			q.call.complete(buf[bounds[2*i]:bounds[2*i+1]], nil)
		}
		if start == end {
			start, end = 0, 0
			if len(buf) > 64<<10 {
				buf = make([]byte, 16<<10)
			}
		}
	}
}

func (c *mconn) readFailed(gen uint64, err error) {
	c.mu.Lock()
	if c.gen == gen && c.nc != nil {
		c.failLocked(err)
		c.node.setUp(false)
	}
	c.mu.Unlock()
}

// expire fails the connection when it stalls: its oldest Call is older than
// the timeout and no byte moved (received, or a chunk of a large request
// sent) for as long. Replies come back in order, so
// one stuck reply stalls every Call behind it and the only way out is to drop
// the connection. A node that is busy streaming large replies is not stalled:
// measuring only the age of the oldest request would cut it off under load.
func (c *mconn) expire(now int64, timeout time.Duration) {
	c.mu.Lock()
	if o := c.inflight.oldest(); o != 0 && c.nc != nil {
		if last := max(o, c.lastIO.Load()); now-last > int64(timeout) {
			c.failLocked(errTimeout)
			c.node.setUp(false)
		}
	}
	c.mu.Unlock()
}

func (c *mconn) close() {
	c.mu.Lock()
	c.closed = true
	c.lastErr = errClosed
	if c.nc != nil {
		c.failLocked(errClosed)
	}
	c.mu.Unlock()
}

func (c *mconn) queueLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inflight.size
}
