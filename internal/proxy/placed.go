package proxy

import (
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// Placed writes: a write carrying hash=X whose keys' own slots are not X's
// also keeps the keys' placement records (rebalance.PlaceKey), so a
// rebalance moves the keys with X (see internal/rebalance/place.go). On
// the multiplexed connection the write goes as
//
//	<mirror>; <write>                     (SET, EXPIRE, DEL, INCR, HSET…)
//	MULTI; <write>; <sync>; EXEC          (pops, RENAME, EVAL…)
//
// in one contiguous payload (rebalance.RecordCommand says which), and the
// client gets <write>'s reply: its element of EXEC's array, or the error
// it got when queued. In a
// transaction the records' syncs run after the client's commands, before
// EXEC, and are cut from EXEC's reply. A blocking command presets the
// records before it blocks and syncs them after it returns (it runs alone
// on its connection). Reads, and writes without hash= or whose keys share
// X's slot, pay nothing.

// Merge policies of placed writes.
const (
	policyPlaced     command.Policy = 230 // calls MULTI, write, sync, EXEC: the write's reply
	policyExecPrefix command.Policy = 231 // EXEC cut to the client's commands (aux of them)
)

// placedKeys returns the keys of a write with hash=hkey (every key
// argument, in order) when one of them lives in another slot than hkey
// (they need placement records), else nil.
func (s *session) placedKeys(spec *command.Spec, args [][]byte, hkey []byte) [][]byte {
	if hkey == nil {
		return nil
	}
	switch spec.ClassFor(args) {
	case command.ClassWrite, command.ClassRMW, command.ClassDelete:
	default:
		return nil
	}
	idx, err := spec.KeyIndexes(args, s.keys[:0])
	s.keys = idx[:0]
	if err != nil || len(idx) == 0 {
		return nil
	}
	hs := ring.Slot(hkey)
	away := false
	for _, i := range idx {
		if ring.Slot(args[i]) != hs {
			away = true
			break
		}
	}
	if !away {
		return nil
	}
	keys := make([][]byte, len(idx))
	for i, j := range idx {
		keys[i] = args[j]
	}
	return keys
}

// placedWrite sends a placed write to node on the multiplexed path. A
// mirror goes right before the write, with no MULTI: the record then
// exists whenever the key does, and its deadline is no later than the
// key's, whatever comes between the two (a MULTI would cost the node two
// more commands per write: TestRecordCommandsMirror checks the plain
// pair). A sync must see the write's effect and so follows it inside
// MULTI … EXEC, where no other client's command can see the key without
// its record.
func (s *session) placedWrite(node int, args [][]byte, keys [][]byte, hkey []byte) {
	rc, before := rebalance.RecordCommand(args, keys, hkey)
	sh := &s.shares[node]
	if before {
		s.newCall(node) // the mirror's reply is not the client's
		c0 := s.ncall
		s.newCall(node)
		sh.payload = resp.AppendCommand(sh.payload, rc...)
		sh.payload = resp.AppendCommand(sh.payload, args...)
		s.cmds = append(s.cmds, entry{kind: kForward, c0: int32(c0), cn: 1})
		return
	}
	c0 := s.ncall
	for range 4 {
		s.newCall(node)
	}
	sh.payload = append(sh.payload, "*1\r\n$5\r\nMULTI\r\n"...)
	sh.payload = resp.AppendCommand(sh.payload, args...)
	sh.payload = resp.AppendCommand(sh.payload, rc...)
	sh.payload = append(sh.payload, "*1\r\n$4\r\nEXEC\r\n"...)
	s.cmds = append(s.cmds, entry{kind: kMerge, policy: policyPlaced, c0: int32(c0), cn: 4})
}

// placedReply is the client's reply to a write followed by its records'
// sync in MULTI: from the replies to MULTI, the write and the sync when
// queued, and EXEC.
func placedReply(dst []byte, parts [][]byte) []byte {
	if q := parts[1]; resp.IsError(q) { // the write refused when queued: nothing ran
		return append(dst, q...)
	}
	if q := parts[2]; resp.IsError(q) {
		return append(dst, q...)
	}
	elems, _, ok := resp.Elements(parts[3], nil)
	if !ok || len(elems) != 2 {
		return append(dst, parts[3]...) // EXEC's error (EXECABORT, OOM…)
	}
	return append(dst, elems[0]...)
}

// placedSync is the encoded SyncCommand of a queued or blocking command's
// placed keys, or nil when it places none.
func (s *session) placedSync(spec *command.Spec, args [][]byte, hkey []byte) []byte {
	keys := s.placedKeys(spec, args, hkey)
	if keys == nil {
		return nil
	}
	return resp.AppendCommand(nil, rebalance.SyncCommand(hkey, keys...)...)
}

// execCut returns EXEC's reply cut to its first n elements; any other reply
// is returned as it is.
func execCut(dst, reply []byte, n int) []byte {
	return append(dst, execPrefix(reply, n)...)
}
