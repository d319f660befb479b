// Package merge builds the one reply a client expects from the replies of the
// several nodes a command was split across. It works on raw RESP bytes and
// copies elements through untouched; it never decodes values.
//
// Every function appends to dst and returns it, so the session can build all
// of a batch's replies in one reused buffer. Error replies from a node win
// over everything else: a client asking MGET of ten keys gets the node's error
// rather than a reply that silently lacks some keys.
//
// The package is pure: no I/O, no clock.
package merge

import (
	"strconv"

	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

// Pos locates one element of the client's reply: element Index of the array
// reply of part Part.
type Pos struct {
	Part  int32
	Index int32
}

// firstError returns the first error reply among parts, if any.
func firstError(parts [][]byte) []byte {
	for _, p := range parts {
		if resp.IsError(p) {
			return p
		}
	}
	return nil
}

func unexpected(dst []byte, what string) []byte {
	return redcon.AppendError(dst, "ERR jupiter: unexpected reply from a node to "+what)
}

// Sum adds the integer replies of parts (DEL, UNLINK, EXISTS, TOUCH, DBSIZE).
func Sum(dst []byte, parts [][]byte) []byte {
	if e := firstError(parts); e != nil {
		return append(dst, e...)
	}
	var total int64
	for _, p := range parts {
		n, ok := resp.Int(p)
		if !ok {
			return unexpected(dst, "a summed command")
		}
		total += n
	}
	return redcon.AppendInt(dst, total)
}

// AllOK replies +OK when every part is +OK (MSET, FLUSHDB…).
func AllOK(dst []byte, parts [][]byte) []byte {
	if e := firstError(parts); e != nil {
		return append(dst, e...)
	}
	for _, p := range parts {
		if !resp.IsOK(p) {
			return unexpected(dst, "a command sent to several nodes")
		}
	}
	return append(dst, "+OK\r\n"...)
}

// First replies with the first part when no part is an error (SCRIPT LOAD:
// every node returns the same SHA).
func First(dst []byte, parts [][]byte) []byte {
	if e := firstError(parts); e != nil {
		return append(dst, e...)
	}
	if len(parts) == 0 {
		return unexpected(dst, "a command sent to several nodes")
	}
	return append(dst, parts[0]...)
}

// Concat concatenates the array replies of parts (KEYS).
func Concat(dst []byte, parts [][]byte, scratch [][]byte) ([]byte, [][]byte) {
	if e := firstError(parts); e != nil {
		return append(dst, e...), scratch
	}
	total := 0
	all := scratch[:0]
	for _, p := range parts {
		var ok bool
		before := len(all)
		all, _, ok = resp.Elements(p, all)
		if !ok {
			return unexpected(dst, "a concatenated command"), scratch
		}
		total += len(all) - before
	}
	dst = redcon.AppendArray(dst, total)
	for _, e := range all {
		dst = append(dst, e...)
	}
	return dst, all
}

// MGet reassembles an array in the client's order: element i of the reply is
// element pos[i].Index of part pos[i].Part.
func MGet(dst []byte, parts [][]byte, pos []Pos, scratch [][]byte) ([]byte, [][]byte) {
	if e := firstError(parts); e != nil {
		return append(dst, e...), scratch
	}
	// Elements of every part, flattened; starts[i] is where part i begins.
	var startsBuf [16]int
	starts := startsBuf[:0]
	all := scratch[:0]
	for _, p := range parts {
		starts = append(starts, len(all))
		var ok bool
		all, _, ok = resp.Elements(p, all)
		if !ok {
			return unexpected(dst, "a split multi-key read"), all
		}
	}
	starts = append(starts, len(all))
	base := len(dst)
	dst = redcon.AppendArray(dst, len(pos))
	for _, q := range pos {
		if q.Part < 0 || int(q.Part) >= len(parts) || q.Index < 0 ||
			starts[q.Part]+int(q.Index) >= starts[q.Part+1] {
			return unexpected(dst[:base], "a split multi-key read"), all
		}
		i := starts[q.Part] + int(q.Index)
		dst = append(dst, all[i]...)
	}
	return dst, all
}

// Scan rewrites the cursor of a SCAN reply from a node ("*2 $cursor *keys")
// into the proxy's cursor, keeping the keys untouched. next is computed by the
// caller from the node's cursor, which ScanCursor extracts.
func Scan(dst []byte, reply []byte, next uint64) []byte {
	if resp.IsError(reply) {
		return append(dst, reply...)
	}
	var buf [2][]byte
	elems, _, ok := resp.Elements(reply, buf[:0])
	if !ok || len(elems) != 2 {
		return unexpected(dst, "SCAN")
	}
	dst = redcon.AppendArray(dst, 2)
	var num [20]byte
	dst = redcon.AppendBulk(dst, strconv.AppendUint(num[:0], next, 10))
	return append(dst, elems[1]...)
}

// ScanCursor returns the node cursor of a SCAN reply.
func ScanCursor(reply []byte) (uint64, bool) {
	var buf [2][]byte
	elems, _, ok := resp.Elements(reply, buf[:0])
	if !ok || len(elems) != 2 {
		return 0, false
	}
	b, null, ok := resp.Bulk(elems[0])
	if !ok || null {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}
