package proxy

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/merge"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/tidwall/redcon"
)

// Error texts jupiter writes itself, in one place.
const (
	errCrossNode = "CROSSSLOT Keys in request don't hash to the same node (jupiter: give them a common {tag} or a trailing hash=<key>)"
	errCursor    = "ERR invalid cursor"
	errNoRing    = "TRYAGAIN jupiter: this pod has not loaded the ring yet"
	errNoAuth    = "NOAUTH Authentication required."
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
)

// A proxy SCAN cursor is, from the low bits up: the position of the node
// in the view's fan order (scanNodeBits: a ring has at most 1024 nodes, and
// R ∪ R' during a rebalance at most twice as many), the view's
// scanTag (scanTagBits), and the node's own cursor above them (a Redis
// cursor is below its hash table's size: 2^40 buckets would be far more
// keys than any node holds). The tag lets a cursor made under another fan
// order (a ring change or rebalance stage between two SCAN calls) restart
// the iteration instead of skipping or repeating nodes out of order: SCAN
// may return duplicates, never miss a key. The tag is a hash of the fan, so
// two orders share one with probability 2^-13: then, and only then, a
// cursor carried across that change resumes where it was and may skip
// keys (9 bits made that 1 in 512; TestPlacedScanMigrating hit it).
const (
	scanNodeBits = 11
	scanTagBits  = 13
	scanShift    = scanNodeBits + scanTagBits
)

// plan decides where one command goes and records how its reply is built.
// raw is the command's exact bytes when they can be forwarded as they are
// (nil for inline commands and when hash= was stripped).
func (s *session) plan(v *view, args [][]byte, raw []byte) {
	n := len(s.cmds)
	s.orig, s.origRaw = args, raw
	spec := s.route(v, args, raw)
	if len(s.cmds) > n {
		id := int32(len(s.srv.cmdStats) - 1) // unknown or unusable command
		if spec != nil {
			id = int32(spec.ID)
		}
		e := &s.cmds[n]
		e.cmd = id
		e.r0, e.r1 = s.cmdLo, s.cmdHi
		e.sampled = s.sampler.Pick(s.srv.hotN)
	}
}

// route plans one command and returns its spec (nil if unknown).
func (s *session) route(v *view, args [][]byte, raw []byte) *command.Spec {
	spec := command.Lookup(args)
	if !s.authed && (spec == nil || !preAuth(spec.Name)) {
		s.refuse(errNoAuth)
		return spec
	}
	if spec == nil {
		if len(args) > 1 && command.IsContainer(args[0]) {
			s.refuse("ERR unknown subcommand '" + resp.Printable(args[1]) + "'. Try " +
				strings.ToUpper(resp.Printable(args[0])) + " HELP.")
			return spec
		}
		s.refuse(unknownCommand(args))
		return spec
	}
	var hkey []byte
	hashed := false
	if p := s.srv.opts.HashPrefix; p != "" {
		if k, ok := command.HashOverride(spec, args, p); ok {
			hkey, hashed = k, true
			args, raw = args[:len(args)-1], nil
		}
	}
	if !spec.CheckArity(len(args)) {
		s.refuse("ERR wrong number of arguments for '" + spec.Name + "' command")
		return spec
	}
	if msg, refused := spec.Refuses(args); refused {
		s.refuse(msg)
		return spec
	}
	if s.subscribed() && !s.subAllowed(spec, args) {
		return spec
	}
	if spec.Policy == command.PolicyAllOK && s.srv.opts.AdminPassword != "" && !s.admin && adminOnly(spec) {
		s.refuse(errNotAdmin)
		return spec
	}
	if spec.Policy == command.PolicyTransaction {
		s.txCommand(v, spec, args, hkey)
		return spec
	}
	if s.inMulti() && spec.Name != "quit" && spec.Name != "reset" {
		s.queueTx(v, spec, args, hkey, hashed)
		return spec
	}
	if v.ring == nil && spec.Policy != command.PolicyLocal && spec.Policy != command.PolicyRefuse {
		s.errorReply(errNoRing)
		return spec
	}
	if idx, ms := spec.BlockTimeout(args); idx >= 0 {
		s.block(v, spec, args, hkey, idx, ms)
		return spec
	}
	switch spec.Policy {
	case command.PolicyPubSub:
		s.pubsubCommand(v, spec, args, raw)
	case command.PolicyLocal:
		if hashed && v.ring != nil && (spec.Name == "ping" || spec.Name == "echo") {
			s.forward(v, v.ring.Owner(hkey), args, raw)
			return spec
		}
		s.answerLocal(v, spec, args)
	case command.PolicyRefuse:
		s.errorReply(spec.Refusal)
	case command.PolicySingle:
		if hashed {
			s.hashed(v, spec, hkey, args, raw)
			return spec
		}
		if spec == specRandomKey {
			s.randomKey(v, spec, args, raw)
			return spec
		}
		s.single(v, spec, args, raw)
	case command.PolicyMGet, command.PolicySum, command.PolicyMSet:
		if hashed {
			s.hashed(v, spec, hkey, args, raw)
			return spec
		}
		s.split(v, spec, args, raw)
	case command.PolicyScan:
		if hashed {
			s.hashed(v, spec, hkey, args, raw)
			return spec
		}
		s.scan(v, spec, args)
	default: // every all-nodes policy
		if hashed {
			s.hashed(v, spec, hkey, args, raw)
			return spec
		}
		if spec.Policy == command.PolicyAllConcat && v.mig != nil && v.mig.stage == stMigrating {
			s.slowEntry(spec, args, nil) // KEYS: sources' moving keys checked against new
			return spec
		}
		s.fanout(v, spec.Policy, args, raw)
	}
	return spec
}

// specRandomKey is RANDOMKEY's spec: its reply is checked for markers.
var specRandomKey = command.Lookup([][]byte{[]byte("randomkey")})

// hashed routes a command carrying a hash=<key> override to that key's
// node. During FREEZE/MIGRATING a keyed command whose override key moves
// takes the rebalance path with the override's old and new owners.
func (s *session) hashed(v *view, spec *command.Spec, hkey []byte, args [][]byte, raw []byte) {
	slot := ring.Slot(hkey)
	if slow := v.slowSlot(slot); slow || anyFF(args) {
		keys, err := spec.KeyIndexes(args, s.keys[:0])
		s.keys = keys[:0]
		if err != nil {
			s.errorReply(err.Error())
			return
		}
		for _, k := range keys {
			if isMarkerKey(args[k]) {
				s.errorReply(errMarkerKey)
				return
			}
		}
		if slow && (len(keys) > 0 || hashedScan(v, spec)) {
			s.slowEntry(spec, args, hkey)
			return
		}
	}
	if keys := s.placedKeys(spec, args, hkey); keys != nil {
		s.placedWrite(v.ring.SlotOwner(slot), args, keys, hkey)
		return
	}
	switch {
	case spec.Policy == command.PolicyScan:
		fan, tag := hashFan(v, hkey)
		s.scanFan(v, fan, tag, args)
	case spec.Policy == command.PolicyAllConcat, spec == specRandomKey:
		// KEYS, RANDOMKEY: markers and placement records are dropped from
		// the reply, as without hash=.
		policy := spec.Policy
		if spec == specRandomKey {
			policy = policyRandomKey
		}
		node := v.ring.SlotOwner(slot)
		c0 := s.ncall
		s.newCall(node)
		s.shares[node].payload = appendArgs(s.shares[node].payload, args, raw)
		s.cmds = append(s.cmds, entry{kind: kMerge, policy: policy, c0: int32(c0), cn: 1})
	default:
		s.forward(v, v.ring.SlotOwner(slot), args, raw)
	}
}

// hashedScan reports whether a keyless command with hash= whose slot moves
// takes the rebalance path: SCAN and KEYS during MIGRATING, which list the
// override's old and new owner (its keys are on both until the migration
// ends).
func hashedScan(v *view, spec *command.Spec) bool {
	return v.mig != nil && v.mig.stage == stMigrating &&
		(spec.Policy == command.PolicyScan || spec.Policy == command.PolicyAllConcat)
}

// anyFF reports whether an argument starts with 0xff, the first byte of
// every marker key (so only such commands pay for the key check).
func anyFF(args [][]byte) bool {
	for _, a := range args[1:] {
		if len(a) > 0 && a[0] == 0xff {
			return true
		}
	}
	return false
}

func unknownCommand(args [][]byte) string {
	msg := "ERR unknown command '" + resp.Printable(args[0]) + "', with args beginning with: "
	for i, a := range args[1:] {
		if i == 8 {
			break
		}
		msg += "'" + resp.Printable(a) + "' "
	}
	return msg
}

// appendArgs encodes args into dst, or copies raw when it is still valid.
func appendArgs(dst []byte, args [][]byte, raw []byte) []byte {
	if raw != nil {
		return append(dst, raw...)
	}
	return resp.AppendCommand(dst, args...)
}

func (s *session) errorReply(msg string) {
	s.srv.Stats.ErrReplies.Add(1)
	lo := len(s.local)
	s.local = redcon.AppendError(s.local, msg)
	s.cmds = append(s.cmds, entry{kind: kLocal, lo: int32(lo), hi: int32(len(s.local))})
}

func (s *session) localReply(reply []byte) {
	lo := len(s.local)
	s.local = append(s.local, reply...)
	s.cmds = append(s.cmds, entry{kind: kLocal, lo: int32(lo), hi: int32(len(s.local))})
}

// forward sends the command whole to one node; its reply passes through.
func (s *session) forward(v *view, node int, args [][]byte, raw []byte) {
	c0 := s.ncall
	s.newCall(node)
	s.shares[node].payload = appendArgs(s.shares[node].payload, args, raw)
	s.cmds = append(s.cmds, entry{kind: kForward, c0: int32(c0), cn: 1})
}

func (s *session) random(n int) int {
	if s.rng == 0 {
		s.rng = uint64(s.id)*0x9E3779B97F4A7C15 | 1
	}
	s.rng ^= s.rng << 13
	s.rng ^= s.rng >> 7
	s.rng ^= s.rng << 17
	return int(s.rng % uint64(n))
}

// single routes a command whose keys must all live on one node.
func (s *session) single(v *view, spec *command.Spec, args [][]byte, raw []byte) {
	keys, err := spec.KeyIndexes(args, s.keys[:0])
	s.keys = keys[:0]
	if err != nil {
		s.errorReply(err.Error())
		return
	}
	if len(keys) == 0 {
		s.forward(v, s.random(v.ring.Len()), args, raw)
		return
	}
	k0 := args[keys[0]]
	if isMarkerKey(k0) {
		s.errorReply(errMarkerKey)
		return
	}
	slot := ring.Slot(k0)
	node := v.ring.SlotOwner(slot)
	slow := v.slowSlot(slot)
	for _, k := range keys[1:] {
		if isMarkerKey(args[k]) {
			s.errorReply(errMarkerKey)
			return
		}
		sl := ring.Slot(args[k])
		if v.ring.SlotOwner(sl) != node {
			s.errorReply(errCrossNode)
			return
		}
		slow = slow || v.slowSlot(sl)
	}
	if slow {
		s.slowEntry(spec, args, nil)
		return
	}
	s.forward(v, node, args, raw)
}

// split sends each node one sub-command holding its keys (and values, for
// MSET), and records how to merge the replies.
func (s *session) split(v *view, spec *command.Spec, args [][]byte, raw []byte) {
	keys, err := spec.KeyIndexes(args, s.keys[:0])
	s.keys = keys[:0]
	if err != nil {
		s.errorReply(err.Error())
		return
	}
	step := 1
	if spec.Policy == command.PolicyMSet {
		step = 2
		if (len(args)-1)%2 != 0 {
			s.errorReply("ERR wrong number of arguments for '" + spec.Name + "' command")
			return
		}
	}
	s.owners = s.owners[:0]
	same, slow := true, false
	for _, k := range keys {
		if isMarkerKey(args[k]) {
			s.errorReply(errMarkerKey)
			return
		}
		slot := ring.Slot(args[k])
		o := int32(v.ring.SlotOwner(slot))
		if len(s.owners) > 0 && o != s.owners[0] {
			same = false
		}
		slow = slow || v.slowSlot(slot)
		s.owners = append(s.owners, o)
	}
	if slow {
		s.slowEntry(spec, args, nil) // per key, on the rebalance path
		return
	}
	if same {
		// Every key on one node: no split, and the reply passes through.
		s.forward(v, int(s.owners[0]), args, raw)
		return
	}
	// Parts in order of first appearance; each node's keys in client order.
	c0 := s.ncall
	p0 := len(s.pos)
	var nodesBuf, countsBuf [16]int32 // no allocation for rings up to 16 nodes
	partNodes, counts := nodesBuf[:0], countsBuf[:0]
	for _, o := range s.owners {
		p := int32(-1)
		for i, n := range partNodes {
			if n == o {
				p = int32(i)
				break
			}
		}
		if p < 0 {
			partNodes = append(partNodes, o)
			counts = append(counts, 0)
			p = int32(len(partNodes) - 1)
		}
		if spec.Policy == command.PolicyMGet {
			s.pos = append(s.pos, merge.Pos{Part: p, Index: counts[p]})
		}
		counts[p]++
	}
	for p, o := range partNodes {
		s.newCall(int(o))
		sh := &s.shares[o]
		sh.payload = redcon.AppendArray(sh.payload, 1+int(counts[p])*step)
		sh.payload = redcon.AppendBulk(sh.payload, args[0])
		for j, k := range keys {
			if s.owners[j] != o {
				continue
			}
			sh.payload = redcon.AppendBulk(sh.payload, args[k])
			if step == 2 {
				sh.payload = redcon.AppendBulk(sh.payload, args[k+1])
			}
		}
	}
	s.cmds = append(s.cmds, entry{kind: kMerge, policy: spec.Policy,
		c0: int32(c0), cn: int32(len(partNodes)), p0: int32(p0), pn: int32(len(s.pos) - p0)})
}

// fanout sends a keyless command to every node.
func (s *session) fanout(v *view, policy command.Policy, args [][]byte, raw []byte) {
	c0 := s.ncall
	for _, i := range v.fan {
		s.newCall(int(i))
		s.shares[i].payload = appendArgs(s.shares[i].payload, args, raw)
	}
	s.cmds = append(s.cmds, entry{kind: kMerge, policy: policy, c0: int32(c0), cn: int32(len(v.fan))})
}

// randomKey sends RANDOMKEY to a random node; a marker it returns is
// answered as nil (randomKeyReply). During MIGRATING it takes the
// rebalance path, which tries other nodes.
func (s *session) randomKey(v *view, spec *command.Spec, args [][]byte, raw []byte) {
	if v.mig != nil && v.mig.stage == stMigrating {
		s.slowEntry(spec, args, nil)
		return
	}
	c0 := s.ncall
	node := s.random(v.ring.Len()) // R' nodes hold nothing of their own before MIGRATING
	s.newCall(node)
	s.shares[node].payload = appendArgs(s.shares[node].payload, args, raw)
	s.cmds = append(s.cmds, entry{kind: kMerge, policy: policyRandomKey, c0: int32(c0), cn: 1})
}

// scan continues a cross-node SCAN. The proxy cursor holds the position of
// a node in the view's fan order and that node's cursor (see scanNodeBits);
// nodes are visited in fan order, each to its end. During MIGRATING it takes
// the rebalance path, which drops sources' copies of keys already moved.
func (s *session) scan(v *view, spec *command.Spec, args [][]byte) {
	if v.mig != nil && v.mig.stage == stMigrating {
		s.slowEntry(spec, args, nil)
		return
	}
	s.scanFan(v, v.fan, v.scanTag, args)
}

// scanFan plans one step of a SCAN over the nodes fan (view indexes) in
// order, with cursors tagged tag.
func (s *session) scanFan(v *view, fan []int32, tag uint64, args [][]byte) {
	pos, nodeCur, ok := scanStartIn(len(fan), tag, args[1])
	if !ok {
		s.errorReply(errCursor)
		return
	}
	node := int(fan[pos])
	s.fwd = append(s.fwd[:0], args...)
	s.enc = strconv.AppendUint(s.enc[:0], nodeCur, 10)
	s.fwd[1] = s.enc
	c0 := s.ncall
	s.newCall(node)
	s.shares[node].payload = resp.AppendCommand(s.shares[node].payload, s.fwd...)
	s.cmds = append(s.cmds, entry{kind: kMerge, policy: command.PolicyScan, c0: int32(c0), cn: 1,
		scanNode: int32(pos), scanN: int32(len(fan)), scanTag: uint16(tag)})
}

// hashFan is the nodes a SCAN with hash= key hkey visits under v: the
// key's owner, and during MIGRATING of its slot its new owner after it;
// tag names that list in cursors (as view.scanTag names the view's fan), so
// a cursor made before a stage change restarts instead of skipping.
func hashFan(v *view, hkey []byte) (fan []int32, tag uint64) {
	slot := ring.Slot(hkey)
	fan = []int32{int32(v.ring.SlotOwner(slot))}
	if m := v.mig; m != nil && m.stage == stMigrating && m.moves(slot) {
		fan = append(fan, int32(m.dest[slot]))
	}
	h := fnv.New64a()
	for _, i := range fan {
		h.Write([]byte(v.addrs[i]))
		h.Write([]byte{0})
	}
	return fan, h.Sum64() & (1<<scanTagBits - 1)
}

// scanStart decodes a client's SCAN cursor under v: the fan position to
// visit and the cursor to send that node. A cursor made under another fan
// order (its tag differs) starts over from the first node.
func (v *view) scanStart(arg []byte) (pos int, nodeCur uint64, ok bool) {
	return scanStartIn(len(v.fan), v.scanTag, arg)
}

// scanStartIn is scanStart over n nodes under scan tag tag.
func scanStartIn(n int, tag uint64, arg []byte) (pos int, nodeCur uint64, ok bool) {
	cur, err := strconv.ParseUint(string(arg), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	pos = int(cur & (1<<scanNodeBits - 1))
	if pos >= n {
		return 0, 0, false
	}
	if cur>>scanNodeBits&(1<<scanTagBits-1) != tag {
		return 0, 0, true
	}
	return pos, cur >> scanShift, true
}

// nextScanCursor is the proxy cursor after the node at fan position pos (of
// n) returned cursor cur, under scan tag tag; ok is false when cur does not
// fit above the position and tag bits.
func nextScanCursor(cur uint64, pos, n int, tag uint64) (uint64, bool) {
	if cur != 0 {
		if cur>>(64-scanShift) != 0 {
			return 0, false
		}
		return cur<<scanShift | tag<<scanNodeBits | uint64(pos), true
	}
	if pos+1 < n {
		return tag<<scanNodeBits | uint64(pos+1), true
	}
	return 0, true
}

// preAuth lists what a client may send before AUTH, as redis-server does.
func preAuth(name string) bool {
	return name == "auth" || name == "hello" || name == "quit"
}
