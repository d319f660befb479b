// Package backend owns jupiter's connections to the Redis nodes.
//
// The data path uses multiplexed connections: a small fixed number per node,
// shared by every client session. A session appends its requests' bytes to a
// connection's write buffer and queues one Call per expected reply; it never
// writes to the node itself. The pool's flusher goroutine does, once per
// scheduling round: it yields first, so every session the netpoller woke in
// this round has appended its requests, then writes each connection's buffer
// in one system call — the batching twemproxy's event loop gets from one
// epoll_wait (and, while other connections still owe replies, it lingers up
// to Options.Linger for them, so the nodes' batches line up; see flusher).
// A connection carries one batch at a time: while the node owes
// replies, new requests wait in its buffer, and the reader goroutine, which
// frames the replies (resp.Scanner) and hands them back in FIFO order, gives
// the connection back to the flusher once the owed replies are in.
//
// Why: on loopback and in VMs the cost of a request to Redis is dominated by
// the per-read and per-wakeup cost on both sides, not by the command (a
// measured ~50 µs of backend CPU per extra read batch under redis-benchmark
// -c 50). Fewer, fuller writes are what keep the backends' CPU per command
// at or below twemproxy's; see the README's benchmark table.
//
//	session A ─┐  append bytes + Calls              ┌──────────────┐
//	session B ─┼─────────► wbuf ──(one write)──────►│ redis-server │
//	session C ─┘  written by the flusher once       └──────┬───────┘
//	   ▲          per round, when no reply is owed         │ replies,
//	   │                                                   │ in order
//	   └──── Call.Reply filled, Group done ◄── reader ◄────┘
//
// A write that would block (a large request, a node that reads slowly) is
// finished by a goroutine of its own, so one node never delays the others'
// writes.
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
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alphauslabs/jupiter/internal/rawio"
	"github.com/alphauslabs/jupiter/internal/resp"
)

// Call is one request whose single reply is awaited. A session owns its Calls
// and reuses them, and with them the Reply buffers, across batches.
type Call struct {
	// Reply holds the raw RESP reply once the Call's group is done and Err is nil.
	Reply []byte
	// Err is set instead of Reply when the node could not answer.
	Err error
	// Done is when the reply (or the error) came, in unix nanoseconds:
	// the time the reader received the bytes that completed it. With the
	// time the Call was queued it tells how long its node took (the slow
	// log's node wait).
	Done  int64
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

func (c *Call) complete(reply []byte, err error, at int64) {
	c.Done = at
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

func (e *NodeError) Error() string {
	if e.Err == ErrFleetDown {
		return "node " + e.Addr + " is down (fleet)"
	}
	return fmt.Sprintf("backend %s: %v", e.Addr, e.Err)
}
func (e *NodeError) Unwrap() error { return e.Err }

// ErrFleetDown is the NodeError cause of a request to a node the fleet's
// health verdict marks down (Pool.SetFleetDown): it fails at once, on every
// pod alike, and reads "node <addr> is down (fleet)".
var ErrFleetDown = errors.New("node is down (fleet)")

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
	node  *Node
	proto uint8 // 2, or 3: HELLO 3 after the dial

	mu       sync.Mutex
	nc       net.Conn   // nil while down
	rw       *rawWriter // nc's non-blocking writer; nil unless nc is plain TCP
	gen      uint64     // incremented on every (re)connect; stale writers check it
	wbuf     []byte
	unsent   int // Calls in inflight whose requests are still in wbuf
	spare    []byte
	writing  bool // a writeRest goroutine is finishing a write
	due      bool // in the flusher's list
	held     bool // wbuf waits for the owed replies (or writeRest); then it is due
	owing    bool // counted in the flusher's owing: replies are owed
	inflight fifo
	dialing  bool
	dialDone chan struct{}
	lastErr  error
	retryAt  time.Time
	backoff  time.Duration
	closed   bool

	lastIO atomic.Int64 // unix nanos of the last bytes received, or of a large write's progress
}

// maxKeptBuf is the largest write buffer kept for reuse; a 1 MiB value
// should not pin 1 MiB per connection forever.
const maxKeptBuf = 256 << 10

// enqueue appends the requests of calls (already attached to a Group),
// encoded in payload, one reply each, in order, to the write buffer, and
// makes sure the flusher will write them.
func (c *mconn) enqueue(payload []byte, calls []*Call, now int64) {
	c.mu.Lock()
	for c.nc == nil {
		if c.closed {
			c.mu.Unlock()
			c.failAll(calls, &NodeError{c.node.addr, errClosed})
			return
		}
		if !c.dialing {
			if time.Now().Before(c.retryAt) {
				err := c.lastErr
				c.mu.Unlock()
				c.failAll(calls, &NodeError{c.node.addr, err})
				return
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
			return
		}
	}
	c.wbuf = append(c.wbuf, payload...)
	c.unsent += len(calls)
	for _, call := range calls {
		c.inflight.push(queued{call, now})
	}
	due := c.scheduleLocked()
	c.mu.Unlock()
	if due {
		c.node.fl.add(c)
	}
}

// scheduleLocked decides who writes the queued requests: the flusher (it
// returns true and the caller must add c to it), or, while a batch is
// being written or its replies are owed, whoever ends that (held).
func (c *mconn) scheduleLocked() bool {
	if c.due || c.held || len(c.wbuf) == 0 || c.nc == nil {
		return false
	}
	if c.writing || c.awaitingLocked() > 0 {
		c.held = true
		return false
	}
	c.due = true
	return true
}

// releaseLocked is called when a batch's write finished or replies arrived:
// held requests become due once nothing is owed any more.
func (c *mconn) releaseLocked() bool {
	if !c.held || c.writing || c.awaitingLocked() > 0 {
		return false
	}
	c.held = false
	return c.scheduleLocked()
}

// awaitingLocked is the number of Calls written (or being written) whose
// replies have not been read.
func (c *mconn) awaitingLocked() int { return c.inflight.size - c.unsent }

// flusher writes the connections that have requests due, once per
// scheduling round (see the package comment). One per Pool.
//
// Linger: when a round ends while some connection still owes replies, the
// flusher waits for them (at most linger) before it writes. Under load the
// replies arrive within tens of microseconds and the wait aligns the nodes'
// batches: the requests a reply wakes (an MSET that waited for all three
// nodes, say) go out with the others' instead of in a write of their own.
// Measured with redis-benchmark -c 50 MSET: backend reads per client MSET
// 0.36 → 0.21 and 12% less CPU per MSET in proxy and backends together. With
// nothing owed (a lone client, an idle proxy) it never waits, so it adds no
// latency there; the wait can exceed linger only when no other event comes
// (Go's netpoller sleeps in milliseconds), i.e. when the owing node is slow.
type flusher struct {
	mu        sync.Mutex
	due       []*mconn
	spare     []*mconn // flusher goroutine only
	scheduled bool     // a wake is sent and not yet acted on
	wake      chan struct{}

	linger    time.Duration
	owing     atomic.Int32 // connections with replies owed
	lingering atomic.Bool
	nudge     chan struct{} // the last owed reply arrived while lingering
}

func newFlusher(linger time.Duration) *flusher {
	return &flusher{wake: make(chan struct{}, 1), nudge: make(chan struct{}, 1), linger: linger}
}

// settled is called when a connection no longer owes replies.
func (f *flusher) settled() {
	if f.owing.Add(-1) == 0 && f.lingering.Load() {
		select {
		case f.nudge <- struct{}{}:
		default:
		}
	}
}

// wait lingers while replies are owed, at most f.linger (see flusher).
func (f *flusher) wait(t *time.Timer, stop <-chan struct{}) (stopped bool) {
	if f.linger <= 0 || f.owing.Load() == 0 {
		return false
	}
	f.lingering.Store(true)
	if f.owing.Load() > 0 { // settled may have run before lingering was set
		t.Reset(f.linger)
		select {
		case <-f.nudge:
		case <-t.C:
		case <-stop:
			stopped = true
		}
		t.Stop()
	}
	f.lingering.Store(false)
	select {
	case <-f.nudge:
	default:
	}
	// The sessions the last replies woke queue their requests first.
	runtime.Gosched()
	return stopped
}

func (f *flusher) add(c *mconn) {
	f.mu.Lock()
	f.due = append(f.due, c)
	wake := !f.scheduled
	f.scheduled = true
	f.mu.Unlock()
	if wake {
		f.wake <- struct{}{} // never blocks: the flusher drained it before clearing scheduled
	}
}

func (f *flusher) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-f.wake:
		}
		// Let every goroutine that is runnable now — the sessions and
		// readers woken by the same netpoll — queue its requests first.
		runtime.Gosched()
		if f.wait(t, stop) {
			return
		}
		f.mu.Lock()
		list := f.due
		f.due = f.spare[:0]
		f.scheduled = false
		f.mu.Unlock()
		for _, c := range list {
			c.flush()
		}
		clear(list)
		f.spare = list[:0]
	}
}

// flush writes the connection's due requests. What the socket does not take
// at once is finished by writeRest, so the flusher never waits for one node.
func (c *mconn) flush() {
	c.mu.Lock()
	c.due = false
	if len(c.wbuf) == 0 || c.nc == nil {
		c.mu.Unlock()
		return
	}
	if c.writing || c.awaitingLocked() > 0 {
		c.held = true
		c.mu.Unlock()
		return
	}
	buf, nc, rw, gen := c.wbuf, c.nc, c.rw, c.gen
	c.wbuf = c.spare[:0]
	c.spare = nil
	c.unsent = 0
	c.writing = true
	if !c.owing {
		c.owing = true
		c.node.fl.owing.Add(1)
	}
	c.mu.Unlock()
	n, err := c.tryWrite(nc, rw, buf)
	if err == nil && n < len(buf) {
		c.node.wg.Add(1)
		go c.writeRest(nc, gen, buf, n)
		return
	}
	c.wrote(gen, buf, err)
}

// tryWrite writes what the socket takes without waiting. Connections that
// are not plain TCP (TLS; rw is nil) write small buffers whole — with no
// reply owed the node has read everything sent before, so the socket buffer
// is empty — and leave large ones to writeRest.
func (c *mconn) tryWrite(nc net.Conn, rw *rawWriter, buf []byte) (int, error) {
	if rw == nil {
		if len(buf) > inlineWrite {
			return 0, nil
		}
		if err := c.write(nc, buf); err != nil {
			return 0, err
		}
		return len(buf), nil
	}
	n, err := rw.write(buf)
	if err == nil && n > 0 {
		c.lastIO.Store(time.Now().UnixNano())
	}
	return n, err
}

// rawWriter makes one non-blocking write(2) on a TCP socket. It is built
// once per connection, so a write allocates nothing; one flush uses it at a
// time (mconn.writing).
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(uintptr) bool
	buf []byte
	n   int
	err error
}

func newRawWriter(nc net.Conn) *rawWriter {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.fn = w.step
	return w
}

func (w *rawWriter) step(fd uintptr) bool {
	w.n, w.err = rawio.Write(fd, w.buf)
	return true // never wait: what is left goes to writeRest
}

// write returns how much the socket took (0 when it was full).
func (w *rawWriter) write(buf []byte) (int, error) {
	w.buf = buf
	err := w.rc.Write(w.fn)
	w.buf = nil
	switch {
	case err != nil:
		return 0, err
	case w.err == syscall.EAGAIN:
		return 0, nil
	case w.err != nil:
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: w.err}
	}
	return w.n, nil
}

// rawReader is the reader's read(2) on a plain TCP connection, made
// without entering the scheduler's syscall state (see package rawio).
type rawReader struct {
	rc  syscall.RawConn
	fn  func(uintptr) bool
	buf []byte
	n   int
	err error
}

// newRawReader returns nil unless nc is plain TCP; read then uses nc.Read.
func newRawReader(nc net.Conn) *rawReader {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawReader{rc: rc}
	r.fn = r.step
	return r
}

func (r *rawReader) step(fd uintptr) bool {
	r.n, r.err = rawio.Read(fd, r.buf)
	return r.err != syscall.EAGAIN // wait for the netpoller, then read again
}

// read is nc.Read: it waits until the node sent something.
func (r *rawReader) read(nc net.Conn, buf []byte) (int, error) {
	if r == nil {
		return nc.Read(buf)
	}
	r.buf = buf
	err := r.rc.Read(r.fn)
	r.buf = nil
	switch {
	case err != nil:
		return 0, err
	case r.err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: r.err}
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// inlineWrite is the largest write to a non-TCP connection the flusher
// makes itself.
const inlineWrite = 64 << 10

func (c *mconn) writeRest(nc net.Conn, gen uint64, buf []byte, off int) {
	defer c.node.wg.Done()
	c.wrote(gen, buf, c.write(nc, buf[off:]))
}

// wrote ends a batch's write: the buffer is kept for reuse, a failure tears
// the connection down, and requests held meanwhile become due if nothing
// is owed.
func (c *mconn) wrote(gen uint64, buf []byte, err error) {
	c.mu.Lock()
	c.writing = false
	if cap(buf) <= maxKeptBuf {
		c.spare = buf[:0]
	}
	if err != nil && c.gen == gen {
		c.failLocked(err)
	}
	due := c.releaseLocked()
	c.mu.Unlock()
	if due {
		c.node.fl.add(c)
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

// failLocked tears the connection down and fails every queued Call.
func (c *mconn) failLocked(err error) {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.lastErr = err
	c.wbuf = c.wbuf[:0]
	c.unsent = 0
	c.held = false
	if c.owing {
		c.owing = false
		c.node.fl.settled()
	}
	nerr := &NodeError{c.node.addr, err}
	c.node.Stats.Count.Add(uint64(c.inflight.size))
	c.node.Stats.Errors.Add(uint64(c.inflight.size))
	now := time.Now().UnixNano()
	for c.inflight.size > 0 {
		c.inflight.pop().call.complete(nil, nerr, now)
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
	now := time.Now().UnixNano()
	for _, call := range calls {
		call.complete(nil, err, now)
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
	if err == nil && c.proto == 3 {
		if err = hello(nc, 3, time.Now().Add(c.node.opts.DialTimeout)); err != nil {
			nc.Close()
		}
	}
	c.mu.Lock()
	defer func() {
		c.dialing = false
		close(c.dialDone)
		c.mu.Unlock()
	}()
	if err != nil {
		c.lastErr = err
		c.scheduleRetryLocked()
		c.setNodeUp(false)
		return
	}
	if c.closed {
		c.lastErr = errClosed
		nc.Close()
		return
	}
	c.nc = nc
	c.rw = newRawWriter(nc)
	c.gen++
	c.backoff = 0
	c.lastErr = nil
	c.setNodeUp(true)
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
	rr := newRawReader(nc)
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
		n, err := rr.read(nc, buf[end:])
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
		// The node has answered everything it owed: what queued up meanwhile
		// is written by the flusher at the end of this round, together with
		// what the sessions these replies wake will add.
		due := c.releaseLocked()
		settled := c.owing && c.awaitingLocked() == 0
		if settled {
			c.owing = false
		}
		c.mu.Unlock()
		if due {
			c.node.fl.add(c)
		}
		if settled {
			c.node.fl.settled()
		}
		now := c.lastIO.Load()
		st := &c.node.Stats
		st.Count.Add(uint64(len(ready)))
		for i, q := range ready {
			st.Latency.Observe(time.Duration(now - q.at))
			q.call.complete(buf[bounds[2*i]:bounds[2*i+1]], nil, now)
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
		c.setNodeUp(false)
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
			c.setNodeUp(false)
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

// setNodeUp records whether the node answers. Only the RESP2 connections
// say so: a RESP3 dial can fail for want of HELLO (Redis < 6), which must
// not mark down a node that serves everyone else.
func (c *mconn) setNodeUp(v bool) {
	if c.proto != 3 {
		c.node.setUp(v)
	}
}

// hello switches a fresh connection to RESP proto (HELLO proto) and reads
// the node's answer, bounded by deadline.
func hello(nc net.Conn, proto int, deadline time.Time) error {
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	cmd := "*2\r\n$5\r\nHELLO\r\n$1\r\n" + string(rune('0'+proto)) + "\r\n"
	if _, err := nc.Write([]byte(cmd)); err != nil {
		return err
	}
	var sc resp.Scanner
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if l, serr := sc.Scan(buf); serr != nil {
			return serr
		} else if l > 0 {
			if resp.IsError(buf[:l]) {
				return fmt.Errorf("HELLO %d refused: %s", proto, strings.TrimSpace(string(buf[1:l])))
			}
			return nc.SetDeadline(time.Time{})
		}
		if err != nil {
			return fmt.Errorf("HELLO %d: %w", proto, err)
		}
	}
}
