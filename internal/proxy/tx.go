package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/tidwall/redcon"
)

// Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//
// A transaction runs on one node: the one every key it queues or watches
// lives on (CROSSSLOT otherwise, as in Redis Cluster). The proxy queues the
// commands itself, answering +QUEUED once a command passed the checks Redis
// makes when queueing (known command, arity) and jupiter's placement check,
// and sends the whole transaction at EXEC:
//
//   - without WATCH, MULTI + the queued commands + EXEC go in one write on
//     the node's multiplexed connection. Bytes one session enqueues are
//     contiguous, so nothing of another client comes between MULTI and EXEC,
//     and EXEC leaves the connection as it found it; the transaction costs
//     what a pipeline of the same commands costs.
//   - WATCH needs the node to remember the client between round trips: the
//     session borrows a dedicated connection (backend.Dedicated) for the
//     node at WATCH and gives it back at EXEC, DISCARD, UNWATCH or when the
//     client goes away.
//
// Deviations from one redis-server: a command refused by the node when
// queued (e.g. OOM) was already answered +QUEUED by the proxy; EXEC's reply
// (EXECABORT) still says the transaction did not run. Commands the proxy
// answers itself (CLIENT, INFO, CONFIG…) and every-node commands without
// hash= are refused inside MULTI, which discards the transaction.
//
// During a rebalance (see the package doc) a transaction touching a moving
// key follows the rule of multi-key commands: in FREEZE its EXEC is held
// until the stage changes (at most HoldMax, then -TRYAGAIN, nothing run); in
// MIGRATING every key is moved to its new owner first (Ensure), and the
// transaction runs there with a marker per key, then the old copies are
// unlinked. A WATCH is valid only while the keys it watches are written
// where it watches them: when a stage change moves their writes to another
// node, EXEC answers as for a touched key (nil), and the client's retry
// watches the new place.

const (
	replyQueued  = "+QUEUED\r\n"
	errExecAbort = "EXECABORT Transaction discarded because of previous errors."
	errTxMoved   = "EXECABORT Transaction discarded: its keys no longer share one node (jupiter ring change); retry it"
)

// connState is the connection state that commands set up (CLIENT
// SETNAME, transactions): allocated at the first such command, so a
// connection that never sends one pays a pointer for all of it.
type connState struct {
	name  string
	tx    txState
	blk   *blockState // the blocking command being waited for
	ps    *pubsub     // subscriptions
	resp3 bool        // HELLO 3
	// held: replies kept back while the server drains (session.hold),
	// since heldAt (unix nanos).
	held   []byte
	heldAt int64
}

func (s *session) state() *connState {
	if s.cs == nil {
		s.cs = &connState{}
	}
	return s.cs
}

func (s *session) clientName() string {
	if s.cs == nil {
		return ""
	}
	return s.cs.name
}

// txState is a session's transaction.
type txState struct {
	multi bool   // between MULTI and EXEC/DISCARD
	dirty bool   // a command was refused while queueing: EXEC aborts
	queue []byte // the queued commands, encoded (hash= overrides stripped)
	n     int    // commands in queue
	// sync holds the placement-record syncs of queued placed writes
	// (placed.go), nsync of them; they run after the queue.
	sync  []byte
	nsync int
	// slots holds the slot of every key watched and queued (the hash=
	// key's for an override): they must all live on one node.
	slots []uint16
	// watch is the dedicated connection holding the WATCHes, watchView the
	// view the first of them was routed by, watchN how many of slots are
	// watched (they come first: WATCH is refused inside MULTI).
	watch     *backend.Dedicated
	watchView *view
	watchN    int
}

// connOp is a batch command run on a connection of its own (entry kConn).
type connOp struct {
	op   uint8
	spec *command.Spec
	args [][]byte // into the read buffer: valid until the batch ends
	hkey []byte
	tIdx int  // opBlock: the timeout argument
	tMS  bool // opBlock: the timeout is in milliseconds
}

const (
	opWatch uint8 = iota + 1
	opExec
	opBlock
	opPubSub
)

// connEntry makes op the batch's last entry (like slowEntry): it runs
// after the batch's other replies are ready, synchronously.
func (s *session) connEntry(op connOp) {
	s.conn = op
	s.cmds = append(s.cmds, entry{kind: kConn})
	s.slowNext = true
}

func (s *session) inMulti() bool { return s.cs != nil && s.cs.tx.multi }

// refuse answers a command with an error; inside MULTI that also discards
// the transaction at EXEC, as Redis flags it.
func (s *session) refuse(msg string) {
	if s.inMulti() {
		s.cs.tx.dirty = true
	}
	s.errorReply(msg)
}

// txCommand plans MULTI, EXEC, DISCARD, WATCH and UNWATCH.
func (s *session) txCommand(v *view, spec *command.Spec, args [][]byte, hkey []byte) {
	tx := &s.state().tx
	switch spec.Name {
	case "multi":
		if tx.multi {
			s.errorReply("ERR MULTI calls can not be nested")
			return
		}
		tx.multi, tx.dirty = true, false
		s.localReply([]byte("+OK\r\n"))
	case "discard":
		if !tx.multi {
			s.errorReply("ERR DISCARD without MULTI")
			return
		}
		s.txReset()
		s.localReply([]byte("+OK\r\n"))
	case "unwatch":
		if tx.multi { // queued, as Redis does: EXEC's array holds its OK
			tx.queue = resp.AppendCommand(tx.queue, args...)
			tx.n++
			s.localReply([]byte(replyQueued))
			return
		}
		s.unwatch()
		s.localReply([]byte("+OK\r\n"))
	case "watch":
		if tx.multi {
			s.errorReply("ERR WATCH inside MULTI is not allowed")
			return
		}
		if v.ring == nil {
			s.errorReply(errNoRing)
			return
		}
		n := len(tx.slots)
		if !s.txPlace(v, spec, args, hkey) {
			tx.slots = tx.slots[:n]
			return
		}
		tx.slots = tx.slots[:n] // runWatch adds them once the node said OK
		s.connEntry(connOp{op: opWatch, spec: spec, args: args, hkey: hkey})
	case "exec":
		s.planExec(v)
	}
}

// queueTx queues a command inside MULTI.
func (s *session) queueTx(v *view, spec *command.Spec, args [][]byte, hkey []byte, hashed bool) {
	tx := &s.cs.tx
	switch spec.Policy {
	case command.PolicyLocal:
		if (spec.Name != "ping" && spec.Name != "echo") || (len(args) > 2 && spec.Name == "ping") {
			s.refuse("ERR jupiter: " + spec.DisplayName() + " inside MULTI is not supported (the proxy answers it itself)")
			return
		}
	case command.PolicySingle, command.PolicyMGet, command.PolicySum, command.PolicyMSet, command.PolicyBlocking:
	case command.PolicyRefuse:
		s.refuse(spec.Refusal)
		return
	case command.PolicyPubSub:
		s.refuse("ERR jupiter: " + spec.DisplayName() + " inside MULTI is not supported")
		return
	default: // every-node commands
		if !hashed {
			s.refuse("ERR jupiter: " + spec.DisplayName() + " inside MULTI would need every node: add hash=<key>")
			return
		}
	}
	if v.ring == nil {
		s.refuse(errNoRing)
		return
	}
	if !s.txPlace(v, spec, args, hkey) {
		return
	}
	tx.queue = resp.AppendCommand(tx.queue, args...)
	tx.n++
	if sc := s.placedSync(spec, args, hkey); sc != nil {
		tx.sync = append(tx.sync, sc...)
		tx.nsync++
	}
	s.localReply([]byte(replyQueued))
}

// txPlace adds the slots of args's keys (or of hkey) to the transaction's
// and checks they all live on one node under v; it answers the error and
// returns false when they do not.
func (s *session) txPlace(v *view, spec *command.Spec, args [][]byte, hkey []byte) bool {
	tx := &s.cs.tx
	slots, msg := s.keySlots(spec, args, hkey, tx.slots)
	tx.slots = slots
	if msg == "" {
		msg = sameHome(v, tx.slots)
	}
	if msg != "" {
		s.refuse(msg)
		return false
	}
	return true
}

// keySlots appends to dst the slot of every key of args (or hkey's, for a
// hash= override); msg is the error to answer when the keys cannot be
// found or one is in the marker namespace.
func (s *session) keySlots(spec *command.Spec, args [][]byte, hkey []byte, dst []uint16) (_ []uint16, msg string) {
	if hkey != nil {
		return append(dst, ring.Slot(hkey)), ""
	}
	keys, err := spec.KeyIndexes(args, s.keys[:0])
	s.keys = keys[:0]
	if err != nil {
		return dst, err.Error()
	}
	for _, k := range keys {
		if isMarkerKey(args[k]) {
			return dst, errMarkerKey
		}
		dst = append(dst, ring.Slot(args[k]))
	}
	return dst, ""
}

// sameHome checks that every slot has one owner under v, and during a
// rebalance one new owner too; it returns the error to answer otherwise.
func sameHome(v *view, slots []uint16) string {
	if len(slots) < 2 {
		return ""
	}
	o, d := v.ring.SlotOwner(slots[0]), -1
	if v.mig != nil {
		d = int(v.mig.dest[slots[0]])
	}
	for _, sl := range slots[1:] {
		if v.ring.SlotOwner(sl) != o {
			return errCrossNode
		}
		if d >= 0 && int(v.mig.dest[sl]) != d {
			return errMultiMoving
		}
	}
	return ""
}

// planExec plans EXEC: an abort, the multiplexed path, or (WATCH, moving
// keys) the batch's kConn entry.
func (s *session) planExec(v *view) {
	tx := &s.cs.tx
	switch {
	case !tx.multi:
		s.errorReply("ERR EXEC without MULTI")
		return
	case tx.dirty:
		s.txReset()
		s.errorReply(errExecAbort)
		return
	case v.ring == nil:
		s.txReset()
		s.errorReply(errNoRing)
		return
	}
	if tx.watch != nil || s.txMoving(v) {
		s.connEntry(connOp{op: opExec})
		return
	}
	node := s.txNode(v)
	if node < 0 {
		s.txReset()
		s.errorReply(errTxMoved)
		return
	}
	// MULTI, the queued commands (and placement syncs) and EXEC in one
	// contiguous payload; the client gets EXEC's reply (the queued
	// commands' replies, or EXECABORT).
	sh := &s.shares[node]
	for range tx.n + tx.nsync + 1 {
		s.newCall(node)
	}
	c0 := s.ncall
	s.newCall(node)
	sh.payload = append(sh.payload, "*1\r\n$5\r\nMULTI\r\n"...)
	sh.payload = append(sh.payload, tx.queue...)
	sh.payload = append(sh.payload, tx.sync...)
	sh.payload = append(sh.payload, "*1\r\n$4\r\nEXEC\r\n"...)
	if tx.nsync == 0 {
		s.cmds = append(s.cmds, entry{kind: kForward, c0: int32(c0), cn: 1})
	} else {
		s.cmds = append(s.cmds, entry{kind: kMerge, policy: policyExecPrefix, c0: int32(c0), cn: 1, aux: int32(tx.n)})
	}
	s.txReset()
}

// txMoving reports whether a key of the transaction needs the rebalance
// path under v.
func (s *session) txMoving(v *view) bool {
	for _, sl := range s.cs.tx.slots {
		if v.slowSlot(sl) {
			return true
		}
	}
	return false
}

// txNode is the view node the transaction runs on when none of its keys
// moves: the keys' owner (checked again: the ring may have changed since
// they were queued), or a random node for a keyless transaction; -1 when
// the keys no longer share a node.
func (s *session) txNode(v *view) int {
	slots := s.cs.tx.slots
	if len(slots) == 0 {
		return s.random(v.ring.Len())
	}
	if sameHome(v, slots) != "" {
		return -1
	}
	return v.ring.SlotOwner(slots[0])
}

// txReset ends MULTI (EXEC, DISCARD) and drops every WATCH, as Redis does.
func (s *session) txReset() {
	if s.cs == nil {
		return
	}
	tx := &s.cs.tx
	tx.multi, tx.dirty, tx.n, tx.nsync = false, false, 0, 0
	tx.queue, tx.sync = tx.queue[:0], tx.sync[:0]
	if cap(tx.queue) > keptBuf {
		tx.queue = nil
	}
	if cap(tx.sync) > keptBuf {
		tx.sync = nil
	}
	s.unwatch()
	tx.slots = tx.slots[:0]
}

// unwatch drops the WATCHes, giving their connection back.
func (s *session) unwatch() {
	if s.cs == nil {
		return
	}
	tx := &s.cs.tx
	if tx.watch != nil {
		tx.watch.Release(true)
		tx.watch, tx.watchView = nil, nil
	}
	if !tx.multi {
		tx.slots = tx.slots[:0]
	} else {
		tx.slots = append(tx.slots[:0], tx.slots[tx.watchN:]...)
	}
	tx.watchN = 0
}

// endTx releases what the transaction holds when the session ends.
func (s *session) endTx() {
	s.txReset()
}

// place is where writes of slot go under v: its owner, or during MIGRATING
// its new owner; "" while they are held (FREEZE).
func place(v *view, slot uint16) string {
	if m := v.mig; m != nil && m.moves(slot) {
		switch m.stage {
		case stFreeze:
			return ""
		case stMigrating:
			return v.addrs[m.dest[slot]]
		}
	}
	return v.addrs[v.ring.SlotOwner(slot)]
}

// runConn runs the batch's kConn command (s.conn) and appends its reply.
func (s *session) runConn(v *view, id int32) {
	op := s.conn
	s.conn = connOp{}
	if op.op == opBlock {
		s.startBlock(v, op, id) // answered and counted by finishBlock
		return
	}
	start := time.Now()
	at := len(s.out)
	switch op.op {
	case opWatch:
		s.runWatch(v, op)
	case opExec:
		s.runExec(v)
	case opPubSub:
		s.runPubSub(v, op)
	}
	s.count(id, at, time.Since(start))
	s.srv.Stats.Commands.Add(1)
	s.noteRun(v, at, start, -1)
}

// holdFrozen waits, while any of slots is frozen under v, for the view to
// change (at most HoldMax), flushing the replies before it first. It
// returns the view to go on with, or nil when the hold timed out or the
// client is gone (a TRYAGAIN was appended for the former).
func (s *session) holdFrozen(v *view, slots []uint16) *view {
	deadline := time.Now().Add(s.srv.opts.HoldMax)
	held := false
	for {
		if !frozenAny(v, slots) {
			return v
		}
		if !held {
			held = true
			s.srv.Stats.Held.Add(1)
			if !s.flush() {
				return nil
			}
		}
		if !waitChange(v.changed, deadline) {
			s.srv.Stats.TryAgain.Add(1)
			s.out = redcon.AppendError(s.out, errHold)
			return nil
		}
		v = s.acquire()
	}
}

// runWatch sends WATCH on the transaction's dedicated connection, borrowing
// one for the keys' node first. During MIGRATING a moving key is moved to
// its new owner before it is watched there, so the move itself cannot
// trip the WATCH later.
func (s *session) runWatch(v *view, op connOp) {
	tx := &s.cs.tx
	n := len(tx.slots)
	if !s.txPlace(v, op.spec, op.args, op.hkey) { // the slots again, for this view
		tx.slots = tx.slots[:n]
		return
	}
	slots := tx.slots[n:]
	if v = s.holdFrozen(v, slots); v == nil {
		tx.slots = tx.slots[:n]
		return
	}
	if msg := sameHome(v, tx.slots); msg != "" { // the view may have changed while held
		tx.slots = tx.slots[:n]
		s.out = redcon.AppendError(s.out, msg)
		return
	}
	slot := slots[0]
	addr := place(v, slot)
	node := v.ring.SlotOwner(slot)
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.ControlTimeout)
	defer cancel()
	if m := v.mig; m != nil && m.stage == stMigrating && m.moves(slot) {
		node = int(m.dest[slot])
		if err := s.srv.ensureKeys(ctx, v, slot, op.spec, [][][]byte{op.args}); err != nil {
			tx.slots = tx.slots[:n]
			s.out = s.nodeError(s.out, err)
			return
		}
	}
	if tx.watch != nil && tx.watch.Addr() != addr {
		tx.slots = tx.slots[:n]
		s.out = redcon.AppendError(s.out, errCrossNode)
		return
	}
	if tx.watch == nil {
		d, err := v.nodes[node].BorrowProto(s.proto())
		if err != nil {
			tx.slots = tx.slots[:n]
			s.out = s.nodeError(s.out, err)
			return
		}
		tx.watch, tx.watchView = d, v
	}
	replies, err := tx.watch.Do(resp.AppendCommand(s.enc[:0], op.args...), 1, time.Now().Add(s.srv.opts.ControlTimeout))
	if err != nil {
		tx.watch.Close()
		tx.watch, tx.watchView = nil, nil
		tx.slots, tx.watchN = tx.slots[:0], 0 // the node forgot every WATCH with the connection
		s.out = s.nodeError(s.out, err)
		return
	}
	if len(replies[0]) > 0 && replies[0][0] != '-' {
		tx.watchN = len(tx.slots)
	} else {
		tx.slots = tx.slots[:n]
	}
	s.out = append(s.out, replies[0]...)
}

// runExec runs a transaction that holds WATCHes or touches a moving key.
func (s *session) runExec(v *view) {
	tx := &s.cs.tx
	defer s.txReset()
	if tx.watch != nil {
		for _, sl := range tx.slots[:tx.watchN] {
			if place(tx.watchView, sl) != place(v, sl) {
				// Writes of a watched key go elsewhere now: the WATCH no
				// longer sees them, so the transaction must not run.
				s.out = appendNullArray(s.out, s.resp3())
				return
			}
		}
	} else if v = s.holdFrozen(v, tx.slots); v == nil {
		return
	}
	if !s.txMoving(v) {
		node := s.txNode(v)
		if node < 0 {
			s.out = redcon.AppendError(s.out, errTxMoved)
			return
		}
		s.out = s.txRun(v, node, nil, 0)
		return
	}
	// MIGRATING: move every key to the new owner, run the transaction there
	// with a marker per key, then unlink the old copies.
	if msg := sameHome(v, tx.slots); msg != "" {
		s.out = redcon.AppendError(s.out, msg)
		return
	}
	slot := tx.slots[0]
	old, dest := v.ring.SlotOwner(slot), int(v.mig.dest[slot])
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.ControlTimeout)
	defer cancel()
	cmds, specs, err := parseQueue(tx.queue, s.srv.opts.Limits)
	if err != nil {
		s.out = s.nodeError(s.out, err)
		return
	}
	keys, err := txKeys(cmds, specs)
	if err != nil {
		s.out = redcon.AppendError(s.out, err.Error())
		return
	}
	mv, err := s.srv.mover(v, old, dest, s.resp3())
	if err != nil {
		s.out = s.nodeError(s.out, err)
		return
	}
	for _, k := range keys {
		if _, err := mv.Ensure(ctx, k); err != nil {
			s.out = s.nodeError(s.out, err)
			return
		}
	}
	ttl := s.srv.opts.MarkerTTL
	if ttl <= 0 {
		ttl = rebalance.DefaultMarkerTTL
	}
	var markers []byte
	for _, k := range keys {
		markers = resp.AppendCommand(markers, rebalance.SetMarkerCommand(v.mig.epoch, k, ttl)...)
	}
	at := len(s.out)
	stale := keys
	if tx.nsync > 0 { // the old copies' placement records go with them
		stale = append([][]byte(nil), keys...)
		for _, k := range keys {
			stale = append(stale, rebalance.PlaceKey(k))
		}
	}
	s.out = s.txRun(v, dest, markers, len(keys))
	if len(keys) > 0 && len(s.out) > at && s.out[at] == '*' && s.out[at+1] != '-' {
		if _, err := mv.Old.Do(ctx, anyArgs(rebalance.UnlinkCommand(stale...))...).Result(); err != nil {
			s.srv.log.Warn("transaction ran on the new owner; unlinking the old copies failed (they are stale and shadowed)", "err", err)
		}
	}
}

// txRun sends MULTI, the queue, markers (nmark commands), the placement
// syncs and EXEC to view node node, on the WATCH connection or a borrowed
// one, and appends EXEC's reply without the markers' and syncs' elements.
func (s *session) txRun(v *view, node int, markers []byte, nmark int) []byte {
	tx := &s.cs.tx
	d := tx.watch
	if d == nil {
		var err error
		if d, err = v.nodes[node].BorrowProto(s.proto()); err != nil {
			return s.nodeError(s.out, err)
		}
	}
	tx.watch, tx.watchView = nil, nil
	payload := append(s.enc[:0], "*1\r\n$5\r\nMULTI\r\n"...)
	payload = append(payload, tx.queue...)
	payload = append(payload, markers...)
	payload = append(payload, tx.sync...)
	payload = append(payload, "*1\r\n$4\r\nEXEC\r\n"...)
	s.enc = payload[:0]
	nmark += tx.nsync
	replies, err := d.Do(payload, tx.n+nmark+2, time.Now().Add(s.srv.opts.ControlTimeout))
	if err != nil {
		d.Close()
		return s.nodeError(s.out, err)
	}
	reply := replies[len(replies)-1]
	if nmark > 0 {
		reply = execPrefix(reply, tx.n)
	}
	out := append(s.out, reply...)
	// Only now: the reply lives in the connection's buffer, which its next
	// borrower reuses.
	d.Release(false) // EXEC ended MULTI and every WATCH
	return out
}

// execPrefix returns EXEC's array reply cut to its first n elements (the
// client's commands, without the markers queued after them); any other
// reply is returned as it is.
func execPrefix(reply []byte, n int) []byte {
	if len(reply) < 4 || reply[0] != '*' || reply[1] == '-' {
		return reply
	}
	off := 0
	for off < len(reply) && reply[off] != '\n' {
		off++
	}
	off++
	body := off
	for range n {
		var sc resp.Scanner
		m, err := sc.Scan(reply[off:])
		if err != nil || m == 0 {
			return reply
		}
		off += m
	}
	out := redcon.AppendArray(nil, n)
	return append(out, reply[body:off]...)
}

// parseQueue splits the queued commands back into arguments (the rebalance
// path needs their keys).
func parseQueue(q []byte, lim resp.Limits) ([][][]byte, []*command.Spec, error) {
	var cmds [][][]byte
	var specs []*command.Spec
	for len(q) > 0 {
		n, args, _, _, err := resp.ParseCommand(q, nil, lim)
		if err != nil || n == 0 {
			return nil, nil, errors.New("jupiter: cannot re-read the queued transaction")
		}
		q = q[n:]
		cmds = append(cmds, args)
		specs = append(specs, command.Lookup(args))
	}
	return cmds, specs, nil
}

// txKeys is every key the queued commands touch, each once.
func txKeys(cmds [][][]byte, specs []*command.Spec) ([][]byte, error) {
	var keys [][]byte
	for i, args := range cmds {
		if specs[i] == nil {
			continue
		}
		idx, err := specs[i].KeyIndexes(args, nil)
		if err != nil {
			return nil, err
		}
	next:
		for _, k := range idx {
			for _, have := range keys {
				if string(have) == string(args[k]) {
					continue next
				}
			}
			keys = append(keys, args[k])
		}
	}
	return keys, nil
}

// ensureKeys moves the keys of cmds (one command's, for WATCH) from their
// old owner to the new one of slot, so the new owner is authoritative for
// them.
func (srv *Server) ensureKeys(ctx context.Context, v *view, slot uint16, spec *command.Spec, cmds [][][]byte) error {
	old, dest := v.ring.SlotOwner(slot), int(v.mig.dest[slot])
	mv, err := srv.mover(v, old, dest, false)
	if err != nil {
		return err
	}
	specs := make([]*command.Spec, len(cmds))
	for i := range specs {
		specs[i] = spec
	}
	keys, err := txKeys(cmds, specs)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := mv.Ensure(ctx, k); err != nil && !errors.Is(err, rebalance.ErrUnlink) {
			return err
		}
	}
	return nil
}
