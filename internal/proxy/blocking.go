package proxy

import (
	"bytes"
	"context"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

// Blocking commands: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN,
// BZPOPMAX, BZMPOP, and XREAD/XREADGROUP with BLOCK.
//
// A blocking command runs on a dedicated connection to the node of its
// keys (all on one node, CROSSSLOT otherwise), so it never delays the
// multiplexed connections. While it waits, a goroutine of its own (wait)
// owns that connection, and the session keeps reading its client only to
// notice a disconnect (commands the client pipelines behind the blocking
// one are kept and run after it, as Redis does). wait ends with the reply,
// or early when:
//
//   - the client disconnects or the proxy closes it: the node is told to
//     unblock the connection (CLIENT UNBLOCK, where the node allows CLIENT;
//     else the connection is closed), and the connection is given back;
//   - the proxy's drain reaches its last phase, shortly before
//     --shutdown-timeout runs out (Server.drainLast): the same, and the
//     client gets -UNBLOCKED … jupiter is shutting down (errShutdown),
//     then the connection closes; until then a blocked command may
//     complete as usual while the proxy drains;
//   - another client sends CLIENT UNBLOCK <id> [TIMEOUT|ERROR] naming this
//     client's jupiter id: the same, answering as Redis would (nil, or
//     -UNBLOCKED);
//   - a ring or rebalance stage change moves where the keys are written:
//     unblocked on the old node and blocked again on the new one with the
//     time left (in FREEZE it waits for MIGRATING first; in MIGRATING the
//     keys are moved to the new owner before it blocks there). An element
//     the old node handed out before it was unblocked is the reply: nothing
//     is popped and dropped.
//
// Inside MULTI a blocking command is queued like any other, and the node
// runs it without blocking, as Redis does.
//
// The number of clients blocked on one node is bounded by the dedicated
// connections per node (--max-dedicated-conns): past it the command gets
// an error at once.

const (
	errUnblocked = "UNBLOCKED client unblocked via CLIENT UNBLOCK"
	// errShutdown answers a command still blocked when jupiter's drain
	// reaches its last phase (Server.drainLast). Redis says UNBLOCKED
	// when it must force a blocked client out (a failover); the command
	// ran nowhere, so a client may retry it on another connection.
	errShutdown = "UNBLOCKED force unblock from blocking operation, jupiter is shutting down"
	// unblockWait bounds the wait for a blocked command's reply after the
	// node was told to unblock it.
	unblockWait = 5 * time.Second
)

// Why a blocked command was cancelled (blockState.why).
const (
	whyGone     int32 = iota + 1 // the client disconnected, or its session ended
	whyTimeout                   // CLIENT UNBLOCK … TIMEOUT
	whyError                     // CLIENT UNBLOCK … ERROR
	whyShutdown                  // the drain's last phase (Server.drainLast)
)

// blockState is one blocked command, shared by the session and its wait
// goroutine: the session reads reply only after done is set.
type blockState struct {
	srv   *Server
	nc    net.Conn // the client's: wait wakes the session through its read deadline
	id    uint32
	cmd   int32 // command statistics index
	start time.Time
	spec  *command.Spec
	args  [][]byte // owned copies: the read buffer may move while blocked
	hkey  []byte
	tIdx  int  // the timeout argument
	tMS   bool // milliseconds (XREAD BLOCK), else seconds
	proto int  // the client's RESP version
	until time.Time
	slots []uint16
	// placed are the keys (into args) whose placement records a hash=
	// override makes it keep (placed.go): preset before blocking, synced
	// after.
	placed [][]byte

	cancel chan struct{}
	once   sync.Once
	why    atomic.Int32
	done   atomic.Bool
	reply  []byte
}

func (b *blockState) stop(why int32) {
	b.once.Do(func() {
		b.why.Store(why)
		close(b.cancel)
	})
}

// blocked reports whether the session waits for a blocking command.
func (s *session) blocked() bool { return s.cs != nil && s.cs.blk != nil }

// block plans a blocking command: its keys must share a node, then it
// becomes the batch's kConn entry.
func (s *session) block(v *view, spec *command.Spec, args [][]byte, hkey []byte, tIdx int, ms bool) {
	if v.ring == nil {
		s.errorReply(errNoRing)
		return
	}
	var buf [8]uint16
	slots, msg := s.keySlots(spec, args, hkey, buf[:0])
	switch {
	case msg != "":
	case len(slots) == 0:
		msg = "ERR syntax error"
	default:
		msg = sameHome(v, slots)
	}
	if msg != "" {
		s.errorReply(msg)
		return
	}
	s.connEntry(connOp{op: opBlock, spec: spec, args: args, hkey: hkey, tIdx: tIdx, tMS: ms})
}

// startBlock hands the batch's blocking command to a wait goroutine. The
// session then waits (serveRaw/serve) until it is done, and finishBlock
// answers it.
func (s *session) startBlock(v *view, op connOp, id int32) {
	b := &blockState{srv: s.srv, nc: s.nc, id: s.id, cmd: id, start: time.Now(), spec: op.spec,
		tIdx: op.tIdx, tMS: op.tMS, proto: s.proto(), cancel: make(chan struct{})}
	for _, a := range op.args {
		b.args = append(b.args, bytes.Clone(a))
	}
	if op.hkey != nil {
		b.hkey = bytes.Clone(op.hkey)
	}
	b.slots, _ = s.keySlots(op.spec, b.args, b.hkey, nil) // checked when planned
	b.placed = s.placedKeys(op.spec, b.args, b.hkey)
	if t, ok := parseTimeout(b.args[b.tIdx], b.tMS); ok && t > 0 {
		b.until = b.start.Add(t)
	}
	s.state().blk = b
	s.srv.blockedAdd(b)
	if s.srv.drainFinal.Load() {
		b.stop(whyShutdown) // after blockedAdd: drainLast either saw b or set the flag first
	}
	s.srv.wg.Add(1)
	go b.wait(v)
}

// parseTimeout reads a blocking timeout (0 = forever). A value Redis would
// refuse is reported !ok: the node answers it with its own error.
func parseTimeout(a []byte, ms bool) (time.Duration, bool) {
	if ms {
		n, err := strconv.ParseInt(string(a), 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		return time.Duration(n) * time.Millisecond, true
	}
	f, err := strconv.ParseFloat(string(a), 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// finishBlock answers the finished blocking command and runs what the
// client pipelined behind it. False: the session must end.
func (s *session) finishBlock() bool {
	b := s.cs.blk
	s.cs.blk = nil
	s.batch = s.srv.getBatch()
	at := len(s.out)
	s.out = append(s.out, b.reply...)
	s.count(b.cmd, at, time.Since(b.start))
	s.srv.Stats.Commands.Add(1)
	ok := s.flush()
	s.srv.putBatch(s.batch)
	s.batch = nil
	if !ok {
		return false
	}
	s.rawWait = false
	if s.rs == s.re {
		s.resetBuf()
		return true
	}
	return s.drainFrom(s.srv.opts.Limits, s.stamp()) // the wait is not the next commands' time
}

// endBlock cancels a blocked command when the session ends.
func (s *session) endBlock() {
	if s.blocked() {
		s.cs.blk.stop(whyGone)
		s.cs.blk = nil
	}
}

// wait runs the blocking command until it has a reply, then wakes the
// session.
func (b *blockState) wait(v *view) {
	defer b.srv.wg.Done()
	b.reply = b.run(v)
	b.srv.blockedDel(b)
	b.done.Store(true)
	_ = b.nc.SetReadDeadline(time.Now())
}

// blockResult is what the reading goroutine got.
type blockResult struct {
	reply []byte
	err   error
}

func (b *blockState) run(v *view) []byte {
	srv := b.srv
	for tries := 0; ; tries++ {
		for frozenAny(v, b.slots) {
			select {
			case <-v.changed:
				v = srv.router.load()
			case <-b.cancel:
				return b.cancelled()
			}
		}
		if v.ring == nil {
			return redcon.AppendError(nil, errNoRing)
		}
		select {
		case <-b.cancel: // not sent to a node yet
			return b.cancelled()
		default:
		}
		args := b.args
		if !b.until.IsZero() && tries > 0 {
			// Blocked again elsewhere with the time left. (The first try
			// always goes out as sent: even a 1 ms timeout returns data
			// the key already holds.)
			left := time.Until(b.until)
			if left < time.Millisecond {
				return b.nilReply()
			}
			args = append([][]byte(nil), b.args...)
			if b.tMS {
				args[b.tIdx] = strconv.AppendInt(nil, left.Milliseconds(), 10)
			} else {
				args[b.tIdx] = strconv.AppendFloat(nil, left.Seconds(), 'f', 3, 64)
			}
		}
		slot := b.slots[0]
		node := v.ring.SlotOwner(slot)
		if m := v.mig; m != nil && m.stage == stMigrating && m.moves(slot) {
			node = int(m.dest[slot])
			ctx, cancel := context.WithTimeout(context.Background(), srv.opts.ControlTimeout)
			err := srv.ensureKeys(ctx, v, slot, b.spec, [][][]byte{b.args})
			cancel()
			if err != nil {
				return srv.nodeError(nil, err)
			}
		}
		d, err := v.nodes[node].BorrowProto(b.proto)
		if err != nil {
			return srv.nodeError(nil, err)
		}
		// CLIENT ID first, in the same write: the id lets another
		// connection unblock this one without closing it. A node that
		// refuses CLIENT (Memorystore) answers an error: then closing the
		// connection is the way to unblock it.
		payload := resp.AppendCommand(nil, []byte("CLIENT"), []byte("ID"))
		if b.placed != nil {
			payload = resp.AppendCommand(payload, rebalance.PresetCommand(b.hkey, b.placed...)...)
		}
		payload = resp.AppendCommand(payload, args...)
		var cid int64
		// err, not a new one: a failed or late CLIENT ID or preset must
		// reach the check below, or the blocking read would take its
		// late reply for the command's.
		if err = d.Send(payload, time.Now().Add(srv.opts.ControlTimeout)); err == nil {
			var r []byte
			if r, err = d.Receive(time.Now().Add(srv.opts.ControlTimeout)); err == nil && len(r) > 1 && r[0] == ':' {
				cid, _ = strconv.ParseInt(string(bytes.TrimSpace(r[1:])), 10, 64)
			}
			if err == nil && b.placed != nil {
				_, err = d.Receive(time.Now().Add(srv.opts.ControlTimeout)) // the preset's reply
			}
		}
		if err != nil {
			d.Close()
			return srv.nodeError(nil, err)
		}
		got := make(chan blockResult, 1)
		go func() {
			r, err := d.Receive(time.Time{})
			got <- blockResult{bytes.Clone(r), err}
		}()
		place0 := place(v, slot)
	waiting:
		for {
			select {
			case r := <-got:
				return b.finish(d, r)
			case <-v.changed:
				nv := srv.router.load()
				if place(nv, slot) == place0 {
					v = nv
					continue
				}
				if r := b.interrupt(d, cid, got); r.err != nil || !isNilReply(r.reply) {
					return b.finish(d, r) // handed out before the unblock
				}
				b.release(d)
				v = nv
				break waiting
			case <-b.cancel:
				r := b.interrupt(d, cid, got)
				if r.err == nil && !isNilReply(r.reply) {
					return b.finish(d, r)
				}
				if r.err == nil {
					b.release(d)
				} else {
					d.Close()
				}
				return b.cancelled()
			}
		}
	}
}

// finish gives the connection back (or closes it after an error) and
// returns the reply for the client.
func (b *blockState) finish(d *backend.Dedicated, r blockResult) []byte {
	if r.err != nil {
		d.Close()
		return b.srv.nodeError(nil, r.err)
	}
	b.release(d)
	return r.reply
}

// release gives the connection back after the command returned, first
// syncing the placement records it keeps (the command may have created,
// emptied or deleted its keys).
func (b *blockState) release(d *backend.Dedicated) {
	if b.placed != nil {
		sync := resp.AppendCommand(nil, rebalance.SyncCommand(b.hkey, b.placed...)...)
		if _, err := d.Do(sync, 1, time.Now().Add(b.srv.opts.ControlTimeout)); err != nil {
			b.srv.log.Warn("blocking command with hash=: syncing its keys' placement records failed", "err", err)
			d.Close()
			return
		}
	}
	d.Release(false)
}

// interrupt unblocks the command on the node and waits for its reply: the
// timeout reply, or an element handed out just before. Without a client id
// the connection is closed instead (r.err set).
func (b *blockState) interrupt(d *backend.Dedicated, cid int64, got chan blockResult) blockResult {
	if cid > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), b.srv.opts.ControlTimeout)
		_, err := b.srv.direct(ctx, d.Addr(), [][]byte{[]byte("CLIENT"), []byte("UNBLOCK"), strconv.AppendInt(nil, cid, 10), []byte("TIMEOUT")}, false)
		cancel()
		if err == nil {
			t := time.NewTimer(unblockWait)
			defer t.Stop()
			select {
			case r := <-got:
				return r
			case <-t.C:
			}
		}
	}
	d.Close() // makes the reader's Receive fail
	return <-got
}

// cancelled is the reply for a command cancelled by CLIENT UNBLOCK, by the
// drain's last phase, or by a disconnect (when nobody reads it).
func (b *blockState) cancelled() []byte {
	switch b.why.Load() {
	case whyError:
		return redcon.AppendError(nil, errUnblocked)
	case whyShutdown:
		b.srv.Stats.ErrReplies.Add(1)
		return redcon.AppendError(nil, errShutdown)
	}
	return b.nilReply()
}

// nilReply is what a blocking command answers when its timeout expires:
// a null array for every one of them, BLMOVE included (RESP2), or RESP3's
// null.
func (b *blockState) nilReply() []byte { return appendNullArray(nil, b.proto == 3) }

func isNilReply(r []byte) bool {
	return string(r) == "*-1\r\n" || string(r) == "$-1\r\n" || string(r) == "_\r\n"
}

func frozenAny(v *view, slots []uint16) bool {
	m := v.mig
	if m == nil || m.stage != stFreeze {
		return false
	}
	for _, sl := range slots {
		if m.moves(sl) {
			return true
		}
	}
	return false
}

// blockedAdd and blockedDel keep the blocked commands by client id, for
// CLIENT UNBLOCK.
func (s *Server) blockedAdd(b *blockState) {
	s.mu.Lock()
	s.blockedBy[b.id] = b
	s.mu.Unlock()
	s.Stats.Blocked.Add(1)
}

func (s *Server) blockedDel(b *blockState) {
	s.mu.Lock()
	if s.blockedBy[b.id] == b {
		delete(s.blockedBy, b.id)
	}
	s.mu.Unlock()
	s.Stats.Blocked.Add(-1)
}

// unblock is CLIENT UNBLOCK: it reports whether client id was blocked.
func (s *Server) unblock(id uint32, why int32) bool {
	s.mu.Lock()
	b := s.blockedBy[id]
	s.mu.Unlock()
	if b == nil || b.done.Load() {
		return false
	}
	b.stop(why)
	return true
}

// clientUnblock answers CLIENT UNBLOCK <id> [TIMEOUT|ERROR].
func (s *session) clientUnblock(args [][]byte) {
	id, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		s.errorReply("ERR value is not an integer or out of range")
		return
	}
	why := whyTimeout
	if len(args) == 4 {
		switch {
		case bytes.EqualFold(args[3], []byte("timeout")):
		case bytes.EqualFold(args[3], []byte("error")):
			why = whyError
		default:
			s.errorReply("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
			return
		}
	} else if len(args) > 4 {
		s.errorReply("ERR syntax error")
		return
	}
	n := int64(0)
	if id >= 0 && id <= math.MaxUint32 && s.srv.unblock(uint32(id), why) {
		n = 1
	}
	s.localReply(redcon.AppendInt(s.enc[:0], n))
}
