package proxy

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/merge"
	"github.com/alphauslabs/jupiter/internal/rawio"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

const (
	smallReadBuf = 256      // inline read buffer: an idle client costs little, small commands need no more
	keptReadBuf  = 16 << 10 // a grown read buffer up to this size stays with the session
	keptBuf      = 64 << 10 // scratch larger than this is dropped after a batch
	maxAhead     = 1 << 20  // most the read buffer grows beyond the bytes received
)

// entry kinds
const (
	kLocal   uint8 = iota // reply already in s.local[lo:hi]
	kForward              // reply is the single call's reply, untouched
	kMerge                // reply merged from calls by policy
	kSlow                 // the rebalance path runs it (s.slow); always the batch's last entry
	kConn                 // runs on a connection of its own (s.conn); always the batch's last entry
)

// entry is one command of the batch and where its reply will come from.
type entry struct {
	kind     uint8
	policy   command.Policy
	lo, hi   int32  // local reply bytes
	c0, cn   int32  // calls s.calls[c0:c0+cn]
	p0, pn   int32  // MGET positions s.pos[p0:p0+pn]
	scanNode int32  // SCAN: fan position of the node the call went to
	scanN    int32  // SCAN: number of fan nodes when planned
	cmd      int32  // index into Server.cmdStats
	scanTag  uint16 // SCAN: the view's scanTag
	aux      int32  // INFO: the sections asked for
	r0, r1   int32  // the command's bytes in the read buffer (observe.go)
	sampled  bool   // fed to the hot-key sketch
}

// nodeShare is what one batch sends to one node.
type nodeShare struct {
	payload []byte
	calls   []*backend.Call
}

// batch is the scratch state of executing commands. A session borrows one
// from the server's pool only while it has commands to run, so an idle
// connection holds none of it, and busy connections share a few.
type batch struct {
	argv   [][]byte
	cmds   []entry
	local  []byte
	out    []byte
	calls  []*backend.Call
	ncall  int
	group  *backend.Group
	shares []nodeShare
	pos    []merge.Pos
	parts  [][]byte
	elems  [][]byte
	keys   []int
	owners []int32
	enc    []byte
	fwd    [][]byte
	// orig and origRaw are the command being planned, as received.
	orig    [][]byte
	origRaw []byte
	// rawWrite is writeOut bound to this batch (one closure per batch, not
	// per write); outOff and outFailed are its progress and result.
	rawWrite  func(uintptr) bool
	outOff    int
	outFailed bool
	// slow is the batch's command for the rebalance path (entry kSlow).
	// Like orig, it lives in the batch, not the session: an idle
	// connection should not carry the bytes.
	slow slowReq
	// conn is the batch's command for a dedicated connection (entry kConn).
	conn connOp

	// Observation (observe.go). start is when the batch began (its bytes
	// arrived, or the previous batch ended), in unix nanos; cmdLo/cmdHi
	// the read-buffer bytes of the command being planned; callNode the
	// node of each Call; tail the batch's kSlow/kConn entry while it runs.
	start        int64
	cmdLo, cmdHi int32
	callNode     []int32
	tail         entry
	sampler      hotkeys.Sampler
	obsArgv      [][]byte
	obsKeys      []int
}

// trim drops buffers a large batch grew, before the batch goes back to the pool.
func (b *batch) trim() {
	// They point into the session's read buffer.
	b.orig, b.origRaw, b.slow, b.conn = nil, nil, slowReq{}, connOp{}
	// A batch whose write failed still holds its replies: they must never
	// reach the next session that borrows it.
	b.out = b.out[:0]
	if cap(b.out) > keptBuf {
		b.out = nil
	}
	if cap(b.local) > keptBuf {
		b.local = nil
	}
	for i := range b.shares {
		if cap(b.shares[i].payload) > keptBuf {
			b.shares[i].payload = nil
		}
	}
	for _, c := range b.calls {
		if cap(c.Reply) > keptBuf {
			c.Reply = nil
		}
	}
	if len(b.calls) > 4096 {
		b.calls, b.callNode = nil, nil
	}
	// Arguments parsed again for the observers point into the session's
	// read buffer, which must not outlive it here.
	clear(b.obsArgv[:cap(b.obsArgv)])
}

// session is one client connection. All its state is owned by the one
// goroutine that runs serve, so nothing in it needs a lock.
type session struct {
	*batch // borrowed while commands run, nil while idle

	srv      *Server
	nc       net.Conn
	id       uint32
	stopping atomic.Bool

	buf    []byte // s.small[:] or a grown buffer
	rs, re int
	small  [smallReadBuf]byte

	rng     uint64
	cs      *connState // nil until a command sets connection state
	closing bool
	authed  bool // passed AUTH (or no password is configured)
	oneCmd  bool // the last batch held one command (see serve)
	admin   bool // passed AUTH admin <admin-password>
	// slowNext ends the batch after its rebalance-path command (batch.slow).
	slowNext bool
	// writeFailed: a write to the client failed; the session ends.
	writeFailed bool
	rawWait     bool // serveRaw: the last read drained the socket
	gone        bool // the client closed or reset the connection (seen while blocked)
	graceful    bool // leaving at a command boundary while the server drains: FIN first
	sleepFailed bool // going dormant failed since the client's last bytes

	// using is the view of the batch being executed (nil between batches),
	// so ApplyStage can wait for batches routed by an older view.
	using atomic.Pointer[view]
	// serveRaw's state (unix nanos): the last bytes received (serve's
	// too), the read deadline set on the socket (0: none), the
	// end-of-stream check's interval.
	rawLast, rawDeadline int64
	rawCheck             time.Duration
	// rawConn is the plain-TCP client's socket, which flush writes
	// through (batch.rawWrite); nil for TLS clients.
	rawConn syscall.RawConn
}

func (s *session) stop() {
	s.stopping.Store(true)
	_ = s.nc.SetReadDeadline(time.Now())
}

// drainNow reports (and records) that the session should end now because
// the server drains and it is at a command boundary: nothing received that
// is not executed and answered, no transaction or WATCH open, no blocked
// command, no bytes waiting in the socket, and the client waiting for us:
// it sent nothing for drainQuiet since its last bytes arrived and since
// the replies of its last batch were held back (hold). A client sending
// one batch in several writes sends the next write without waiting for
// replies, so a client that stays quiet with its replies held has sent
// all it meant to: the connection closes right after them, and whatever
// the client sends later is a new request, which it retries elsewhere.
// A busy request/response client is quiet too, since it waits for its
// replies; a client that never pauses is closed at a boundary in the
// drain's last phase (Server.drainFinal), without the quiet. A subscriber
// is at a boundary between messages: it reconnects and resubscribes
// elsewhere.
func (s *session) drainNow() bool {
	srv := s.srv
	if !srv.draining.Load() || s.rs != s.re || s.blocked() {
		return false
	}
	if s.cs != nil && (s.cs.tx.multi || s.cs.tx.watch != nil) {
		return false
	}
	if !srv.drainFinal.Load() && time.Now().UnixNano()-s.quietSince() < int64(drainQuiet) {
		return false
	}
	if s.rawConn != nil && s.pending() {
		return false
	}
	s.graceful = true
	return true
}

// quietSince is when the client last had reason to send without waiting:
// its last bytes arrived, or its last replies were held back.
func (s *session) quietSince() int64 {
	if s.cs != nil {
		return max(s.rawLast, s.cs.heldAt)
	}
	return s.rawLast
}

// pending reports whether the client's socket holds bytes not read yet.
func (s *session) pending() bool {
	p := false
	_ = s.rawConn.Control(func(fd uintptr) { p = rawio.Pending(fd) })
	return p
}

// holdable reports whether the replies of a batch that consumed every byte
// received are held back (hold) rather than written: while the server
// drains (before its last phase), by a session drainNow may end: no
// transaction or WATCH open (its client waits for replies and stays open
// anyway), no blocked command, no subscription (whose messages the nodes'
// readers write to the client themselves).
func (s *session) holdable() bool {
	srv := s.srv
	if !srv.draining.Load() || srv.drainFinal.Load() || s.closing || s.blocked() {
		return false
	}
	cs := s.cs
	return cs == nil || (!cs.tx.multi && cs.tx.watch == nil && cs.ps == nil)
}

// hold keeps the batch's replies in the session instead of writing them,
// while the server drains: a client that then sends nothing for drainQuiet
// waits for them, so its batch is complete, and drainNow closes the
// connection right after writing them (flushHeld). Bytes arriving first
// write them at once (drain) and run as usual.
func (s *session) hold() {
	cs := s.state()
	cs.held = append(cs.held, s.out...)
	cs.heldAt = time.Now().UnixNano()
	s.out = s.out[:0]
}

// flushHeld writes the replies hold kept, as the session ends.
func (s *session) flushHeld() {
	if s.cs == nil || len(s.cs.held) == 0 {
		return
	}
	if !s.writeFailed {
		_ = s.nc.SetWriteDeadline(time.Now().Add(drainLinger))
		if _, err := s.nc.Write(s.cs.held); err != nil {
			s.writeFailed = true
		}
	}
	s.cs.held = nil
}

// serve runs the session until it ends, or until it went dormant (true):
// then its goroutine must end without touching it.
func (s *session) serve() bool {
	lim := s.srv.opts.Limits
	idle := s.srv.opts.IdleTimeout
	s.buf = s.small[:]
	s.authed = s.srv.opts.Password == ""
	if tc, ok := s.nc.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			s.rawConn = rc
			s.rawLast, s.rawCheck = time.Now().UnixNano(), eofCheckMin
			return s.serveRaw(rc)
		}
	}
	for !s.stopping.Load() && !s.drainNow() {
		if s.re == len(s.buf) {
			s.makeRoom(0)
		}
		if idle > 0 && !s.blocked() {
			_ = s.nc.SetReadDeadline(time.Now().Add(idle))
			if s.stopping.Load() || s.drainNow() {
				return false // Shutdown's immediate deadline may have just been overwritten
			}
		}
		if s.srv.draining.Load() && !s.blocked() {
			// Look again once the client was quiet long enough (drainNow).
			if d := s.quietSince() + int64(drainQuiet); d > time.Now().UnixNano() {
				_ = s.nc.SetReadDeadline(time.Unix(0, d))
				if s.stopping.Load() || s.drainNow() {
					return false
				}
			}
		}
		if s.oneCmd {
			// A client that sends one command at a time is still reading
			// our reply: reading now would almost always find nothing (a
			// wasted system call, then a park in the netpoller). Letting
			// the other sessions run first gives its next command time to
			// arrive, the way an event loop reads a socket only once epoll
			// reports it.
			runtime.Gosched()
		}
		n, err := s.nc.Read(s.buf[s.re:])
		filled := n > 0 && s.re+n == len(s.buf)
		s.re += n
		if n > 0 {
			s.rawLast = time.Now().UnixNano()
		}
		if n > 0 && !s.drain(lim) {
			return false
		}
		if filled && len(s.buf) < keptReadBuf {
			// The client sent more than the buffer holds: its pipelines
			// were cut and paid extra round trips. Adapt for the next one.
			s.grow()
		}
		if err != nil {
			if s.blocked() && errors.Is(err, os.ErrDeadlineExceeded) && !s.stopping.Load() {
				if !s.resumeBlocked() {
					return false
				}
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && s.srv.draining.Load() && !s.stopping.Load() {
				// Shutdown's wake-up: leave at a boundary, else read on
				// until the command in progress is complete.
				_ = s.nc.SetReadDeadline(time.Time{})
				continue
			}
			return false
		}
	}
	return false
}

// resumeBlocked handles a wake-up while blocked (a read deadline fired):
// the blocking command's answer, or an old deadline. False: the session
// must end.
func (s *session) resumeBlocked() bool {
	if !s.cs.blk.done.Load() {
		// An old deadline: clear it, then look again, since the wait
		// goroutine may have set its wake-up deadline just before.
		s.rawDeadline = 0
		_ = s.nc.SetReadDeadline(time.Time{})
		if !s.cs.blk.done.Load() {
			return true
		}
	}
	return s.finishBlock()
}

// serveRaw is serve for a plain TCP client, run inside RawConn.Read so that
// the socket is read the way an event loop reads it: once a read drained it
// (returned less than the buffer holds), the next read waits until the
// netpoller reports new bytes. net.Conn.Read tries read(2) first and parks
// only on EAGAIN; for a client that sends one command and waits for the
// reply that try fails almost every time — a wasted system call (~1.3 µs
// here) per command, measured as 2.4 read calls per unpipelined command
// against twemproxy's 1.2.
//
// Why inside RawConn.Read: each call of it starts by clearing the socket's
// readiness mark, so skipping the read at the start of a call could miss
// bytes that arrived since the last one. Within one call the mark is only
// consumed by a wait, and every arrival after a read sets it again, so
// waiting instead of reading misses no bytes. It can miss an end of stream:
// a FIN that arrived together with the last bytes is reported by the read
// after them, not by a new mark. So a wait that skipped a read is bounded by
// a read deadline (eofCheck, doubling while the client stays silent) after
// which the socket is read once more. The read lock held meanwhile is the
// session's own; writes to the client take the write lock.
//
// A session silent for Options.DormantAfter goes dormant (dormant.go):
// serveRaw returns true and the goroutine ends; the socket's next bytes
// run serveRaw again on a new one.
func (s *session) serveRaw(rc syscall.RawConn) (dormant bool) {
	idle := s.srv.opts.IdleTimeout
	step := s.rawStep // one closure per goroutine
	for {
		err := rc.Read(step)
		if s.blocked() && !s.gone && !s.stopping.Load() && (err == nil || errors.Is(err, os.ErrDeadlineExceeded)) {
			if !s.resumeBlocked() {
				return false
			}
			continue
		}
		if err == nil || s.stopping.Load() || !errors.Is(err, os.ErrDeadlineExceeded) || s.drainNow() {
			return false
		}
		now := time.Now().UnixNano()
		if idle > 0 && now-s.rawLast >= int64(idle) {
			return false // idle timeout
		}
		// The end-of-stream check: read again (rawWait is false after a
		// timed-out wait), and wait longer next time if still silent.
		s.rawCheck = min(2*s.rawCheck, eofCheckMax)
		s.rawDeadline = 0
		_ = s.nc.SetReadDeadline(time.Time{})
		if s.stopping.Load() {
			return false
		}
		if after := s.srv.opts.DormantAfter; after > 0 && now-s.rawLast >= int64(after) && s.rs == s.re && (s.cs == nil || len(s.cs.held) == 0) {
			// Silent, with no partial command: sleep without a goroutine
			// and without a grown read buffer. The watcher's level-
			// triggered registration stands in for the end-of-stream
			// check.
			s.buf, s.rs, s.re = s.small[:], 0, 0
			if s.srv.sleep(s) {
				return true
			}
			s.sleepFailed = true // no immediate retry until the client sends again (park)
		}
	}
}

// rawStep is serveRaw's RawConn.Read callback: it reads and executes until
// it has to wait (false) or the session ends (true).
func (s *session) rawStep(fd uintptr) bool {
	for {
		if s.stopping.Load() || s.drainNow() {
			return true
		}
		if s.blocked() {
			if s.cs.blk.done.Load() {
				return true // serveRaw answers it
			}
			if s.re-s.rs >= maxBlockedBacklog {
				s.gone = true // a client that floods while blocked
				return true
			}
		}
		if s.rawWait {
			s.rawWait = false
			return s.park(true)
		}
		if s.re == len(s.buf) {
			s.makeRoom(0)
		}
		n, err := rawio.Read(fd, s.buf[s.re:])
		switch {
		case err == syscall.EAGAIN:
			return s.park(false)
		case err != nil || n <= 0:
			s.gone = true
			return true // reset, or the client closed
		}
		s.rawLast, s.rawCheck, s.sleepFailed = time.Now().UnixNano(), eofCheckMin, false
		filled := s.re+n == len(s.buf)
		s.re += n
		if !s.drain(s.srv.opts.Limits) {
			return true
		}
		if filled && len(s.buf) < keptReadBuf {
			s.grow()
		}
		// While blocked, every wait is a read: a disconnect must be seen
		// at once, not at the next end-of-stream check.
		s.rawWait = !filled && !s.blocked()
	}
}

// park sets the read deadline of the wait that follows (skipped: the wait
// replaces a read, see serveRaw) and returns false, which makes
// RawConn.Read wait for readability.
func (s *session) park(skipped bool) bool {
	if s.blocked() {
		return false // no deadline: the wait goroutine's wake-up must not be overwritten
	}
	var want int64
	var now int64
	if skipped {
		// The wait follows the batch read at rawLast: no second clock read
		// per command. Deadlines come out early by the batch's run time,
		// which costs at most an early wake-up.
		now = s.rawLast
		want = now + int64(s.rawCheck)
	} else {
		now = time.Now().UnixNano()
	}
	if after := s.srv.opts.DormantAfter; after > 0 {
		// Wake up to go dormant. When that moment has passed, it was
		// either while the session could not sleep (a partial command, no
		// epoll: no wake-up for it then) or while it was busy or not
		// scheduled after an early wake-up: then look again at once, or
		// it would wait without a deadline and never sleep.
		d := s.rawLast + int64(after)
		if d <= now && s.rs == s.re && (s.cs == nil || len(s.cs.held) == 0) && !s.sleepFailed && !s.srv.noSleep.Load() {
			d = now + 1
		}
		if d > now && (want == 0 || d < want) {
			want = d
		}
	}
	if idle := s.srv.opts.IdleTimeout; idle > 0 {
		if d := s.rawLast + int64(idle); want == 0 || d < want {
			want = d
		}
	}
	if s.srv.draining.Load() {
		// Look again once the client was quiet long enough (drainNow).
		if d := s.quietSince() + int64(drainQuiet); d > now && (want == 0 || d < want) {
			want = d
		}
	}
	// An armed deadline earlier than needed is left alone: it costs one
	// early wake-up, setting it costs a timer update per command.
	if want != 0 && (s.rawDeadline == 0 || s.rawDeadline > want || s.rawDeadline <= now) {
		s.rawDeadline = want
		_ = s.nc.SetReadDeadline(time.Unix(0, want))
		if s.stopping.Load() || s.drainNow() {
			return true // Shutdown's immediate deadline may have just been overwritten
		}
	}
	return false
}

// A wait that skipped a read is bounded first by eofCheckMin, doubling up
// to eofCheckMax while the client sends nothing (see serveRaw).
const (
	eofCheckMin = time.Second
	eofCheckMax = time.Minute
	// drainQuiet: while the server drains, a connection closes at a
	// command boundary once the client sent nothing for this long.
	drainQuiet = 20 * time.Millisecond
	// maxBlockedBacklog bounds what a blocked client may pipeline behind
	// its blocking command before the proxy closes the connection.
	maxBlockedBacklog = 64 << 20
)

// makeRoom makes space after s.re: by moving the unparsed bytes to the front,
// or by moving them to a larger buffer. need, when positive, is the total
// size the current command will have.
//
// The read buffer adapts to the client: it starts as the session's small
// inline array (an idle connection costs little) and grows to what the
// client's batches need — a pipelining client would otherwise have each
// pipeline cut into read-sized pieces, each costing a backend round trip.
// Buffers up to keptReadBuf stay with the session; larger ones, grown for one
// big command, are dropped once it is done (see resetBuf).
func (s *session) makeRoom(need int) {
	keep := s.re - s.rs
	if s.rs > 0 && keep < len(s.buf) && need <= len(s.buf) {
		copy(s.buf, s.buf[s.rs:s.re])
		s.rs, s.re = 0, keep
		return
	}
	// Grow geometrically, but never allocate more than maxAhead beyond the
	// bytes already received: a bare "$67108864" header must not make the
	// proxy reserve 64 MiB for a client that may never send them.
	want := max(need, keep+1)
	if want > keep+maxAhead {
		want = keep + maxAhead
	}
	size := 2 * len(s.buf)
	for size < want {
		size *= 2
	}
	if need > 0 && size > need && need > keptReadBuf {
		size = need // the command's exact size is known: no slack
	}
	nb := make([]byte, size)
	copy(nb, s.buf[s.rs:s.re])
	s.buf = nb
	s.rs, s.re = 0, keep
}

// grow doubles the read buffer, keeping the unparsed bytes.
func (s *session) grow() {
	nb := make([]byte, 2*len(s.buf))
	s.re = copy(nb, s.buf[s.rs:s.re])
	s.rs = 0
	s.buf = nb
}

// resetBuf is called when every received byte was consumed: a buffer grown
// for one large command goes back to the inline one.
func (s *session) resetBuf() {
	s.rs, s.re = 0, 0
	if len(s.buf) > keptReadBuf {
		s.buf = s.small[:]
	}
}

// drain executes every complete command in the read buffer, in batches. It
// returns false when the connection must be closed.
func (s *session) drain(lim resp.Limits) bool {
	start := s.rawLast // a plain-TCP client's last read
	if s.rawConn == nil {
		start = s.stamp()
	}
	return s.drainFrom(lim, start)
}

// drainFrom is drain for bytes that arrived at start (unix nanos; only the
// slow log reads it).
func (s *session) drainFrom(lim resp.Limits, start int64) bool {
	if s.blocked() {
		return true // the bytes wait until the blocking command is answered
	}
	s.batch = s.srv.getBatch()
	s.start = start
	defer func() {
		s.srv.putBatch(s.batch)
		s.batch = nil
	}()
	if s.cs != nil && len(s.cs.held) > 0 {
		// The client sent more while its replies were held (hold): they
		// go out now, ahead of the new ones.
		s.out = append(s.out, s.cs.held...)
		s.cs.held = s.cs.held[:0]
		if !s.flush() {
			return false
		}
	}
	for {
		v := s.acquire()
		s.begin(len(v.nodes))
		need, incomplete := 0, false
		var protoErr error
		// A command for the rebalance path ends the batch: it runs after the
		// batch's other commands are answered, and the commands after it are
		// planned only once it is done, so replies keep the request order and
		// nothing the client sent later runs before it.
		for s.rs < s.re && len(s.cmds) < s.srv.opts.MaxPipeline && !s.closing && !s.slowNext {
			n, args, inline, nd, err := resp.ParseCommand(s.buf[s.rs:s.re], s.argv, lim)
			s.argv = args[:0]
			if err != nil {
				protoErr = err
				break
			}
			if n == 0 {
				need, incomplete = nd, true
				break
			}
			raw := s.buf[s.rs : s.rs+n]
			s.cmdLo, s.cmdHi = int32(s.rs), int32(s.rs+n)
			s.rs += n
			if len(args) == 0 {
				continue
			}
			if inline {
				raw = nil
			}
			s.plan(v, args, raw)
		}
		if len(s.cmds) > 0 {
			s.execute(v)
		}
		s.using.Store(nil)
		s.slowNext = false
		s.orig, s.origRaw = nil, nil // they point into the read buffer
		s.oneCmd = len(s.cmds) == 1
		if protoErr != nil {
			s.srv.Stats.ProtoErrors.Add(1)
			s.out = redcon.AppendError(s.out, protoErr.Error())
		}
		if protoErr == nil && s.rs == s.re && s.holdable() {
			s.hold()
		} else if !s.flush() {
			return false
		}
		if protoErr != nil || s.closing {
			return false
		}
		if s.blocked() {
			if s.rs == s.re {
				s.resetBuf()
			}
			return true
		}
		if s.rs == s.re {
			s.resetBuf()
			return true
		}
		if incomplete {
			if need > len(s.buf)-s.rs || s.re == len(s.buf) {
				s.makeRoom(need)
			}
			return true
		}
	}
}

// flush writes the replies in s.out to the client. It returns false, now
// and on every later call, once a write failed.
func (s *session) flush() bool {
	if s.writeFailed {
		return false
	}
	if len(s.out) > 0 {
		if s.cs != nil && s.cs.ps != nil {
			// Subscribed: the nodes' readers write messages too.
			s.cs.ps.wmu.Lock()
			defer s.cs.ps.wmu.Unlock()
		}
		if idle := s.srv.opts.IdleTimeout; idle > 0 {
			// A client that stops reading is idle too: without this
			// deadline it would pin its session and replies forever.
			_ = s.nc.SetWriteDeadline(time.Now().Add(idle))
		}
		if s.rawConn != nil {
			b := s.batch
			b.outOff, b.outFailed = 0, false
			if err := s.rawConn.Write(b.rawWrite); err != nil || b.outFailed {
				s.writeFailed = true
			}
		} else if _, err := s.nc.Write(s.out); err != nil {
			s.writeFailed = true
		}
	}
	s.out = s.out[:0]
	return !s.writeFailed
}

// writeOut is flush's RawConn.Write callback (batch.rawWrite): it writes
// what is left of b.out and asks to wait (false) while the socket is full.
// It lives in the batch, with its progress, so an idle connection carries
// none of it.
func (b *batch) writeOut(fd uintptr) bool {
	for b.outOff < len(b.out) {
		n, err := rawio.Write(fd, b.out[b.outOff:])
		if err == syscall.EAGAIN {
			return false
		}
		if err != nil {
			b.outFailed = true
			return true
		}
		b.outOff += n
	}
	return true
}

// acquire loads the current view and publishes it as the one this session
// routes by. The second load closes the race with ApplyStage, which stores
// the new view before it looks at the sessions' views: either it sees this
// session's view, or this session sees the new one.
func (s *session) acquire() *view {
	rt := s.srv.router
	for {
		v := rt.load()
		s.using.Store(v)
		if rt.load() == v {
			return v
		}
	}
}

// begin resets the per-batch state.
func (s *session) begin(nodes int) {
	if s.group == nil {
		s.group = backend.NewGroup()
	}
	s.cmds = s.cmds[:0]
	s.local = s.local[:0]
	s.pos = s.pos[:0]
	s.ncall = 0
	if cap(s.shares) < nodes {
		s.shares = make([]nodeShare, nodes)
	}
	s.shares = s.shares[:nodes]
	for i := range s.shares {
		s.shares[i].payload = s.shares[i].payload[:0]
		s.shares[i].calls = s.shares[i].calls[:0]
	}
}

// newCall returns the next reusable Call of the batch, attached to the group
// and queued on node i's share.
func (s *session) newCall(node int) *backend.Call {
	if s.ncall == len(s.calls) {
		s.calls = append(s.calls, &backend.Call{})
		s.callNode = append(s.callNode, 0)
	}
	s.callNode[s.ncall] = int32(node)
	c := s.calls[s.ncall]
	s.ncall++
	s.group.Attach(c)
	s.shares[node].calls = append(s.shares[node].calls, c)
	return c
}

// execute sends every node its share, waits for all replies, and appends
// the batch's replies to s.out in request order.
func (s *session) execute(v *view) {
	start := time.Now()
	now := start.UnixNano()
	r3 := s.resp3()
	for i := range s.shares {
		sh := &s.shares[i]
		if len(sh.calls) == 0 {
			continue
		}
		if r3 {
			v.nodes[i].Enqueue3(s.id, sh.payload, sh.calls, now)
		} else {
			v.nodes[i].Enqueue(s.id, sh.payload, sh.calls, now)
		}
	}
	s.group.Wait()
	took := time.Since(start)
	n := len(s.cmds)
	if n > 0 && (s.cmds[n-1].kind == kSlow || s.cmds[n-1].kind == kConn) {
		n--
	}
	big := s.srv.bigMin
	for i := range n {
		e := &s.cmds[i]
		at := len(s.out)
		switch e.kind {
		case kLocal:
			s.out = append(s.out, s.local[e.lo:e.hi]...)
		case kForward:
			c := s.calls[e.c0]
			if c.Err != nil {
				s.out = s.nodeError(s.out, c.Err)
			} else {
				s.out = append(s.out, c.Reply...)
			}
		case kMerge:
			s.out = s.merge(v, s.out, e)
		}
		s.count(e.cmd, at, took)
		if e.sampled || len(s.out)-at >= big || int(e.r1-e.r0) >= big {
			s.observe(v, e, at, now)
		}
	}
	if s.srv.slowNs >= 0 {
		// The slow-log check: one clock read and one comparison per
		// batch, since no command of it took longer than the batch.
		end := time.Now().UnixNano()
		if end-s.start >= s.srv.slowNs {
			s.slowBatch(v, n, now, end)
		}
		s.start = end
	}
	s.srv.Stats.Commands.Add(int64(n))
	if n == len(s.cmds) {
		return
	}
	s.tail = s.cmds[n]
	if s.tail.kind == kConn {
		s.runConn(v, s.tail.cmd)
	} else {
		s.runSlow(v, s.tail.cmd) // may plan and execute again: s.cmds is not used after this
	}
}

// count records one command whose reply starts at s.out[at].
func (s *session) count(cmd int32, at int, took time.Duration) {
	st := &s.srv.cmdStats[cmd]
	st.Count.Add(1)
	if len(s.out) > at && s.out[at] == '-' {
		st.Errors.Add(1)
	}
	st.Latency.Observe(took)
}

func (s *session) nodeError(dst []byte, err error) []byte { return s.srv.nodeError(dst, err) }

func (srv *Server) nodeError(dst []byte, err error) []byte {
	srv.Stats.ErrReplies.Add(1)
	return redcon.AppendError(dst, "ERR jupiter: "+err.Error())
}

// merge builds the reply of a split or all-nodes command.
func (s *session) merge(v *view, dst []byte, e *entry) []byte {
	if e.policy == policyInfo {
		return s.mergeInfo(v, dst, e)
	}
	s.parts = s.parts[:0]
	for _, c := range s.calls[e.c0 : e.c0+e.cn] {
		if c.Err != nil {
			return s.nodeError(dst, c.Err)
		}
		s.parts = append(s.parts, c.Reply)
	}
	switch e.policy {
	case command.PolicyAllOK, command.PolicyAllSum, command.PolicyAllFirst, command.PolicyAllConcat:
		// Sent to every node in fan order: an error names its node.
		if named := nodeNamed(v, s.parts); named != nil {
			return append(dst, named...)
		}
	}
	switch e.policy {
	case policyConfigGet:
		dst = s.configGetReply(dst, s.parts[0], s.local[e.lo:e.hi])
	case policyUnion, policyMaxPairs, policyMaxInt:
		dst = mergePubSub(dst, e.policy, s.parts)
	case command.PolicyMGet:
		dst, s.elems = merge.MGet(dst, s.parts, s.pos[e.p0:e.p0+e.pn], s.elems)
	case command.PolicySum, command.PolicyAllSum:
		dst = merge.Sum(dst, s.parts)
	case command.PolicyMSet, command.PolicyAllOK:
		dst = merge.AllOK(dst, s.parts)
	case command.PolicyAllConcat:
		if anyMarker(s.parts) {
			dst, s.elems = concatKeys(dst, s.parts, nil, s.elems)
		} else {
			dst, s.elems = merge.Concat(dst, s.parts, s.elems)
		}
	case command.PolicyScan:
		reply := s.parts[0]
		cur, ok := merge.ScanCursor(reply)
		if !ok {
			return append(dst, reply...)
		}
		next, ok := nextScanCursor(cur, int(e.scanNode), int(e.scanN), uint64(e.scanTag))
		if !ok {
			return redcon.AppendError(dst, errScanCursor)
		}
		if anyMarker(s.parts) {
			dst, s.elems = scanReply(dst, reply, next, nil, s.elems)
		} else {
			dst = merge.Scan(dst, reply, next)
		}
	case policyRandomKey:
		dst = randomKeyReply(dst, s.parts[0], s.resp3())
	case policyPlaced:
		dst = placedReply(dst, s.parts)
	case policyExecPrefix:
		dst = execCut(dst, s.parts[0], int(e.aux))
	default:
		dst = merge.First(dst, s.parts)
	}
	return dst
}
