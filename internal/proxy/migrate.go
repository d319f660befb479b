package proxy

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/merge"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// The rebalance path ("slow path"): commands touching a key that moves
// during FREEZE or MIGRATING, and SCAN/KEYS/RANDOMKEY during MIGRATING. It
// runs one command at a time, synchronously, through go-redis control
// clients and the rebalance package's operations (the same commands the
// migrator's package documents), after the batch's other commands are done.

const (
	errHold        = "TRYAGAIN jupiter: rebalancing, retry"
	errMultiMoving = "TRYAGAIN Multiple keys request during rebalancing"
)

// slowReq is the command of a batch that takes the rebalance path.
type slowReq struct {
	spec *command.Spec
	args [][]byte // the hash= override stripped
	hkey []byte   // the hash= override's key; nil when none
	orig [][]byte // as received, to plan again under a new view
	raw  []byte
}

// slowEntry makes the command being planned the batch's last entry, for
// the rebalance path.
func (s *session) slowEntry(spec *command.Spec, args [][]byte, hkey []byte) {
	s.slow = slowReq{spec: spec, args: args, hkey: hkey, orig: s.orig, raw: s.origRaw}
	s.cmds = append(s.cmds, entry{kind: kSlow})
	s.slowNext = true
}

type slowAct uint8

const (
	actFast slowAct = iota // the view no longer needs the rebalance path for it: plan it again
	actHold                // FREEZE: wait for the next view
	actRun                 // run it on the rebalance path
)

// keylessSlow: the keyless commands that take the rebalance path during
// MIGRATING.
func keylessSlow(spec *command.Spec) bool {
	return spec.Policy == command.PolicyScan || spec.Policy == command.PolicyAllConcat || spec == specRandomKey
}

// decide says what req needs under v. It agrees with plan: when it says
// actFast, planning req under v takes a fast path.
func (s *session) decide(v *view, req *slowReq) slowAct {
	m := v.mig
	if m == nil {
		return actFast
	}
	if req.hkey == nil && keylessSlow(req.spec) {
		if m.stage == stMigrating {
			return actRun
		}
		return actFast
	}
	if req.hkey != nil && (req.spec.Policy == command.PolicyScan || req.spec.Policy == command.PolicyAllConcat) {
		if hashedScan(v, req.spec) && v.slowSlot(ring.Slot(req.hkey)) {
			return actRun
		}
		return actFast
	}
	moving := false
	if req.hkey != nil {
		moving = v.slowSlot(ring.Slot(req.hkey))
	} else {
		keys, _ := req.spec.KeyIndexes(req.args, s.keys[:0])
		s.keys = keys[:0]
		for _, k := range keys {
			if v.slowSlot(ring.Slot(req.args[k])) {
				moving = true
				break
			}
		}
	}
	switch {
	case !moving:
		return actFast
	case m.stage == stMigrating || freezeRead(req):
		return actRun
	}
	return actHold
}

// freezeRead reports whether FREEZE serves req with the read rule instead of
// holding it: a read of one key, or a split read (MGET, EXISTS, TOUCH),
// which the read rule serves key by key.
func freezeRead(req *slowReq) bool {
	if req.spec.ClassFor(req.args) != command.ClassRead {
		return false
	}
	if p := req.spec.Policy; p == command.PolicyMGet || p == command.PolicySum {
		return true
	}
	keys, err := req.spec.KeyIndexes(req.args, nil)
	return err == nil && len(distinct(req.args, keys)) == 1
}

// distinct returns the keys at positions idx, each once, in order.
func distinct(args [][]byte, idx []int) [][]byte {
	out := make([][]byte, 0, len(idx))
next:
	for _, i := range idx {
		for _, k := range out {
			if bytes.Equal(k, args[i]) {
				continue next
			}
		}
		out = append(out, args[i])
	}
	return out
}

// runSlow answers the batch's rebalance-path command (s.slow), appending
// its reply to s.out, with v the batch's view. In FREEZE, a write is held
// until the view changes (then decided again: MIGRATING runs it, a
// view without the rebalance plans it normally) or until HoldMax, when it
// is refused with TRYAGAIN without having run anywhere. The replies of the
// commands before it are sent before it is held.
func (s *session) runSlow(v *view, id int32) {
	req := &s.slow
	defer func() { s.slow = slowReq{} }()
	start := time.Now()
	deadline := start.Add(s.srv.opts.HoldMax)
	held := false
decide:
	for act := s.decide(v, req); act != actRun; act = s.decide(v, req) {
		if act == actFast {
			s.begin(len(v.nodes))
			s.plan(v, req.orig, req.raw)
			if n := len(s.cmds); n == 0 || s.cmds[n-1].kind != kSlow {
				s.execute(v) // counts the command
				return
			}
			s.cmds = s.cmds[:0] // planned for this path after all (decide and plan disagree): run it here
			break decide
		}
		if !held {
			held = true
			s.srv.Stats.Held.Add(1)
			if !s.flush() { // the replies before the held command go out now
				return // the client is gone
			}
		}
		if !waitChange(v.changed, deadline) {
			s.srv.Stats.TryAgain.Add(1)
			at := len(s.out)
			s.out = redcon.AppendError(s.out, errHold)
			s.count(id, at, time.Since(start))
			s.srv.Stats.Commands.Add(1)
			s.noteRun(v, at, start, 0) // held, never sent
			return
		}
		v = s.acquire()
	}
	s.srv.Stats.Rebalance.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.ControlTimeout)
	at := len(s.out)
	s.out = s.execSlow(ctx, v, req, s.out)
	cancel()
	s.count(id, at, time.Since(start))
	s.srv.Stats.Commands.Add(1)
	s.noteRun(v, at, start, -1)
}

// waitChange waits until changed is closed (true) or deadline passes.
func waitChange(changed <-chan struct{}, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		select {
		case <-changed:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
		return true
	case <-t.C:
		return false
	}
}

func (s *session) execSlow(ctx context.Context, v *view, req *slowReq, dst []byte) []byte {
	fan, tag := v.fan, v.scanTag
	if req.hkey != nil { // SCAN/KEYS hash=X: X's old and new owner
		fan, tag = hashFan(v, req.hkey)
	}
	switch {
	case req.spec.Policy == command.PolicyScan:
		return s.slowScan(ctx, v, fan, tag, req.args, dst)
	case req.spec.Policy == command.PolicyAllConcat:
		return s.slowKeys(ctx, v, fan, req.args, dst)
	case req.hkey == nil && req.spec == specRandomKey:
		return s.slowRandomKey(ctx, v, dst)
	}
	return s.slowKeyed(ctx, v, req, dst)
}

// slowKeyed runs a keyed command touching a moving key (rebalance.md §4.4):
// reads by the read rule (new, old, new); blind overwrites on new with a
// marker; read-modify-writes, TTL changes and GETDEL after moving the key
// to new; multi-key commands after moving every key, with a marker each;
// split commands (MGET, MSET, DEL, EXISTS, TOUCH, UNLINK) key by key.
func (s *session) slowKeyed(ctx context.Context, v *view, req *slowReq, dst []byte) []byte {
	spec, args, m := req.spec, req.args, v.mig
	keyIdx, err := spec.KeyIndexes(args, nil)
	if err != nil {
		return redcon.AppendError(dst, err.Error())
	}
	split := spec.Policy == command.PolicyMGet || spec.Policy == command.PolicySum || spec.Policy == command.PolicyMSet
	keys := distinct(args, keyIdx)
	var old, dest int
	switch {
	case req.hkey != nil: // every key lives where the override key does
		slot := ring.Slot(req.hkey)
		old, dest = v.ring.SlotOwner(slot), int(m.dest[slot])
		if split && m.stage == stFreeze { // a split read: the read rule per key
			return s.slowSplit(ctx, v, spec, args, keyIdx, []int{old, dest}, dst)
		}
	case split:
		return s.slowSplit(ctx, v, spec, args, keyIdx, nil, dst)
	default:
		for i, k := range keys {
			slot := ring.Slot(k)
			o, d := v.ring.SlotOwner(slot), int(m.dest[slot])
			if i == 0 {
				old, dest = o, d
				continue
			}
			if o != old {
				return redcon.AppendError(dst, errCrossNode)
			}
			if d != dest {
				return redcon.AppendError(dst, errMultiMoving)
			}
		}
	}
	mv, err := s.srv.mover(v, old, dest, s.resp3())
	if err != nil {
		return s.nodeError(dst, err)
	}
	if s.placedKeys(spec, args, req.hkey) != nil {
		mv.Place = req.hkey // writes keep the keys' placement records
	}
	c := rebalance.Command(args)
	var reply []byte
	if len(keys) == 1 && !split {
		switch spec.ClassFor(args) {
		case command.ClassRead:
			reply, _, err = mv.ReadRule(ctx, keys[0], c)
		case command.ClassWrite:
			reply, err = mv.WriteMarked(ctx, keys[0], c)
		default: // RMW, TTL changes, GETDEL, scripts
			reply, err = mv.UpdateMarked(ctx, keys[0], c)
		}
	} else {
		reply, err = mv.MultiMarked(ctx, keys, c)
	}
	if err != nil && (reply == nil || !errors.Is(err, rebalance.ErrUnlink)) {
		return s.nodeError(dst, err)
	}
	return append(dst, reply...)
}

// slowSplit runs a split command key by key and merges the replies as the
// fast path would: each key not moving goes to its owner as a one-key
// command; a moving one is read by the read rule, written with a marker
// (the MSET part is a blind overwrite) or deleted with a tombstone. pair,
// when set, is the old and new owner of every key (hash= override).
func (s *session) slowSplit(ctx context.Context, v *view, spec *command.Spec, args [][]byte, keyIdx []int, pair []int, dst []byte) []byte {
	m := v.mig
	class := spec.ClassFor(args)
	parts := make([][]byte, 0, len(keyIdx))
	var pos []merge.Pos
	for _, ki := range keyIdx {
		k := args[ki]
		sub := rebalance.Command{args[0], k}
		if spec.Policy == command.PolicyMSet {
			if ki+1 >= len(args) {
				return redcon.AppendError(dst, "ERR wrong number of arguments for '"+spec.Name+"' command")
			}
			sub = append(sub, args[ki+1])
		}
		slot := ring.Slot(k)
		old, dest, moving := v.ring.SlotOwner(slot), int(m.dest[slot]), m.moves(slot)
		if pair != nil {
			old, dest, moving = pair[0], pair[1], true
		}
		var reply []byte
		var err error
		if !moving {
			reply, err = s.srv.onNode(ctx, v, old, sub, s.resp3())
		} else {
			mv, merr := s.srv.mover(v, old, dest, s.resp3())
			if merr != nil {
				return s.nodeError(dst, merr)
			}
			switch {
			case class == command.ClassRead || m.stage == stFreeze:
				reply, _, err = mv.ReadRule(ctx, k, sub)
			case class == command.ClassDelete:
				var existed bool
				existed, err = mv.DeleteMarked(ctx, k)
				reply = []byte(":0\r\n")
				if existed {
					reply = []byte(":1\r\n")
				}
			default:
				reply, err = mv.WriteMarked(ctx, k, sub)
			}
		}
		if err != nil && (reply == nil || !errors.Is(err, rebalance.ErrUnlink)) {
			return s.nodeError(dst, err)
		}
		if spec.Policy == command.PolicyMGet {
			pos = append(pos, merge.Pos{Part: int32(len(parts))})
		}
		parts = append(parts, reply)
	}
	switch spec.Policy {
	case command.PolicyMGet:
		dst, s.elems = merge.MGet(dst, parts, pos, s.elems)
	case command.PolicySum:
		dst = merge.Sum(dst, parts)
	default:
		dst = merge.AllOK(dst, parts)
	}
	return dst
}

// slowScan is SCAN during MIGRATING: nodes in fan order (sources first; for
// SCAN hash=X, X's old owner, then its new one), and
// from a source, the moving keys its destination already has (the key or
// its marker: moved, rewritten or deleted there) are dropped, so a deleted
// key's lingering copy is not listed and a moved one is listed once, by its
// destination. A key that moves between two SCAN calls may still be
// returned twice (SCAN allows duplicates).
func (s *session) slowScan(ctx context.Context, v *view, fan []int32, tag uint64, args [][]byte, dst []byte) []byte {
	pos, nodeCur, ok := scanStartIn(len(fan), tag, args[1])
	if !ok {
		return redcon.AppendError(dst, errCursor)
	}
	node := int(fan[pos])
	sub := make(rebalance.Command, len(args))
	copy(sub, args)
	sub[1] = strconv.AppendUint(nil, nodeCur, 10)
	reply, err := s.srv.onNode(ctx, v, node, sub, s.resp3())
	if err != nil {
		return s.nodeError(dst, err)
	}
	if resp.IsError(reply) {
		return append(dst, reply...)
	}
	cur, ok := merge.ScanCursor(reply)
	if !ok {
		return append(dst, reply...)
	}
	next, ok := nextScanCursor(cur, pos, len(fan), tag)
	if !ok {
		return redcon.AppendError(dst, errScanCursor)
	}
	var buf [2][]byte
	elems, _, _ := resp.Elements(reply, buf[:0])
	drop, err := s.srv.movedAway(ctx, v, node, elems[1])
	if err != nil {
		return s.nodeError(dst, err)
	}
	dst, s.elems = scanReply(dst, reply, next, drop, s.elems)
	return dst
}

// slowKeys is KEYS during MIGRATING: every node of R ∪ R', minus markers
// and minus sources' moving keys that their destination already has.
func (s *session) slowKeys(ctx context.Context, v *view, fan []int32, args [][]byte, dst []byte) []byte {
	parts := make([][]byte, 0, len(fan))
	drops := make([][]bool, 0, len(fan))
	for _, i := range fan {
		reply, err := s.srv.onNode(ctx, v, int(i), rebalance.Command(args), s.resp3())
		if err != nil {
			return s.nodeError(dst, err)
		}
		if resp.IsError(reply) {
			return append(dst, reply...)
		}
		drop, err := s.srv.movedAway(ctx, v, int(i), reply)
		if err != nil {
			return s.nodeError(dst, err)
		}
		parts = append(parts, reply)
		drops = append(drops, drop)
	}
	dst, s.elems = concatKeys(dst, parts, drops, s.elems)
	return dst
}

// slowRandomKey is RANDOMKEY during MIGRATING: the nodes of R ∪ R' from a
// random one on, each asked until it returns a key that is not a marker (at
// most 8 times: a destination may hold as many markers as keys), or nil
// (empty); nil if none returns a key. A source may still return a moving
// key's stale copy (deleted on its destination): RANDOMKEY is a sample.
func (s *session) slowRandomKey(ctx context.Context, v *view, dst []byte) []byte {
	first := s.random(len(v.fan))
	for j := range v.fan {
		i := v.fan[(first+j)%len(v.fan)]
		for range 8 {
			reply, err := s.srv.onNode(ctx, v, int(i), rebalance.Command{[]byte("RANDOMKEY")}, s.resp3())
			if err != nil {
				return s.nodeError(dst, err)
			}
			if resp.IsError(reply) {
				return append(dst, reply...)
			}
			k, null, ok := resp.Bulk(reply)
			if !ok || null {
				break // this node is empty
			}
			if !isMarkerKey(k) {
				return append(dst, reply...)
			}
		}
	}
	return appendNull(dst, s.resp3())
}

// movedAway marks, in the array reply arr of keys listed by node, the
// moving keys node loses whose destination already holds them or their
// marker (rebalance.EnsureCheckCommand, `EXISTS k mk(k)`, pipelined per
// destination). A key is judged by its placement (its record's hash key,
// read with one MGET on node). nil when node loses nothing.
func (srv *Server) movedAway(ctx context.Context, v *view, node int, arr []byte) ([]bool, error) {
	m := v.mig
	if node >= len(m.source) || !m.source[node] {
		return nil, nil
	}
	elems, _, ok := resp.Elements(arr, nil)
	if !ok {
		return nil, nil
	}
	byDest := map[int][]int{}
	keys := make([][]byte, len(elems))
	for i, e := range elems {
		if k, null, ok := resp.Bulk(e); ok && !null {
			keys[i] = k
		}
	}
	src, err := srv.ctl.Get(v.addrs[node])
	if err != nil {
		return nil, err
	}
	places, err := rebalance.Places(ctx, src, keys)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		if k == nil || isMarkerKey(k) {
			keys[i] = nil
			continue
		}
		pk := k
		if places[i] != nil {
			pk = places[i]
		}
		keys[i] = nil
		slot := ring.Slot(pk)
		if m.moves(slot) && v.ring.SlotOwner(slot) == node {
			d := int(m.dest[slot])
			byDest[d] = append(byDest[d], i)
			keys[i] = k
		}
	}
	if len(byDest) == 0 {
		return nil, nil
	}
	drop := make([]bool, len(elems))
	for d, idx := range byDest {
		c, err := srv.ctl.Get(v.addrs[d])
		if err != nil {
			return nil, err
		}
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, len(idx))
		for j, i := range idx {
			cmds[j] = pipe.Do(ctx, anyArgs(rebalance.EnsureCheckCommand(m.epoch, keys[i]))...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		for j, i := range idx {
			n, err := cmds[j].Int64()
			if err != nil {
				return nil, err
			}
			drop[i] = n > 0
		}
	}
	return drop, nil
}

// onNode is direct on the view's node i, failing at once, as the data path
// does, while the fleet marks that node down (docs/health.md).
func (srv *Server) onNode(ctx context.Context, v *view, i int, c rebalance.Command, resp3 bool) ([]byte, error) {
	if err := fleetDown(v, i); err != nil {
		return nil, err
	}
	return srv.direct(ctx, v.addrs[i], c, resp3)
}

// fleetDown is the data path's ErrFleetDown for the first of the view's
// nodes that the fleet marks down, nil if none is. The rebalance path's
// control clients have their own connections and timeouts: without this a
// moving key of a down node would wait out --request-timeout where every
// other key of it fails at once.
func fleetDown(v *view, nodes ...int) error {
	for _, i := range nodes {
		if i >= 0 && i < len(v.nodes) && v.nodes[i] != nil && v.nodes[i].FleetDown() {
			return &backend.NodeError{Addr: v.addrs[i], Err: backend.ErrFleetDown}
		}
	}
	return nil
}

// direct runs c on the node at addr and returns its raw reply (error
// replies included; err is a failure to talk to the node).
func (srv *Server) direct(ctx context.Context, addr string, c rebalance.Command, resp3 bool) ([]byte, error) {
	cl, err := srv.ctlFor(resp3).Get(addr)
	if err != nil {
		return nil, err
	}
	return cl.DoRaw(ctx, anyArgs(c)...).Result()
}

func anyArgs(c rebalance.Command) []any {
	a := make([]any, len(c))
	for i, x := range c {
		a[i] = x
	}
	return a
}

// mover is the rebalance operations between the view's nodes old and dest,
// with replies in RESP3 for a RESP3 client.
func (srv *Server) mover(v *view, old, dest int, resp3 bool) (*rebalance.Mover, error) {
	// A moving key needs both owners (the read rule probes both, an RMW
	// moves it first): either one down fails it like the data path does.
	if err := fleetDown(v, old, dest); err != nil {
		return nil, err
	}
	ctl := srv.ctlFor(resp3)
	o, err := ctl.Get(v.addrs[old])
	if err != nil {
		return nil, err
	}
	n, err := ctl.Get(v.addrs[dest])
	if err != nil {
		return nil, err
	}
	// LeaveOld: a client command does not wait for old's copy to be
	// unlinked; the migrator does that (rebalance.Mover.LeaveOld).
	return &rebalance.Mover{Old: o, New: n, Epoch: v.mig.epoch, MarkerTTL: srv.opts.MarkerTTL, LeaveOld: true}, nil
}

// ctlPoolSize is each control client's connection pool: the rebalance path
// runs one command per client connection at a time, synchronously.
const ctlPoolSize = 32

// ctlFor is the control clients whose raw replies suit the client.
func (srv *Server) ctlFor(resp3 bool) *rebalance.Clients {
	if resp3 {
		return srv.ctl3
	}
	return srv.ctl
}
