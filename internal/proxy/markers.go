package proxy

import (
	"bytes"
	"strconv"

	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

// Marker keys (rebalance.MarkerKey) live in the nodes next to client keys
// from MIGRATING until CLEANUP. Clients may neither name them nor see them.

const (
	errMarkerKey  = "ERR jupiter: keys starting with \"\\xff__jrb:\" are reserved for rebalancing markers"
	errScanCursor = "ERR jupiter: a node returned a SCAN cursor too large to encode"
)

// policyRandomKey is a proxy-internal merge: RANDOMKEY's reply, with a
// marker answered as nil.
const policyRandomKey command.Policy = 201

var markerPrefix = []byte(rebalance.MarkerPrefix)

// isMarkerKey reports whether a client's key is in the marker namespace.
// Only keys starting with 0xff pay for the prefix comparison.
func isMarkerKey(k []byte) bool {
	return len(k) > 0 && k[0] == 0xff && bytes.HasPrefix(k, markerPrefix)
}

// anyMarker reports whether any reply may hold a marker key: the common
// case, none, costs one substring search and no parsing.
func anyMarker(parts [][]byte) bool {
	for _, p := range parts {
		if bytes.Contains(p, markerPrefix) {
			return true
		}
	}
	return false
}

// keepKey is the filter for key lists: markers never pass; drop, when set,
// removes more (the index is the key's position in its list).
func keepKey(elem []byte, i int, drop []bool) bool {
	k, null, ok := resp.Bulk(elem)
	if !ok || null {
		return true
	}
	return !isMarkerKey(k) && (drop == nil || !drop[i])
}

// appendKeys appends the elements of the array reply arr that keepKey
// passes to out.
func appendKeys(out [][]byte, arr []byte, drop []bool, scratch [][]byte) ([][]byte, [][]byte, bool) {
	elems, _, ok := resp.Elements(arr, scratch[:0])
	if !ok {
		return out, elems, false
	}
	for i, e := range elems {
		if keepKey(e, i, drop) {
			out = append(out, e)
		}
	}
	return out, elems, true
}

// concatKeys is KEYS's merge without markers: the array replies of parts
// concatenated, minus marker keys (and, when drops is set, minus the keys
// drops[i] marks in part i).
func concatKeys(dst []byte, parts [][]byte, drops [][]bool, scratch [][]byte) ([]byte, [][]byte) {
	for _, p := range parts {
		if resp.IsError(p) {
			return append(dst, p...), scratch
		}
	}
	var keep [][]byte
	var tmp [][]byte
	for i, p := range parts {
		var drop []bool
		if drops != nil {
			drop = drops[i]
		}
		var ok bool
		keep, tmp, ok = appendKeys(keep, p, drop, tmp)
		if !ok {
			return redcon.AppendError(dst, "ERR jupiter: unexpected reply from a node to a concatenated command"), scratch
		}
	}
	dst = redcon.AppendArray(dst, len(keep))
	for _, e := range keep {
		dst = append(dst, e...)
	}
	return dst, scratch
}

// scanReply rewrites a node's SCAN reply with the proxy cursor next,
// without marker keys (and without the keys drop marks).
func scanReply(dst, reply []byte, next uint64, drop []bool, scratch [][]byte) ([]byte, [][]byte) {
	if resp.IsError(reply) {
		return append(dst, reply...), scratch
	}
	var buf [2][]byte
	elems, _, ok := resp.Elements(reply, buf[:0])
	if !ok || len(elems) != 2 {
		return redcon.AppendError(dst, "ERR jupiter: unexpected reply from a node to SCAN"), scratch
	}
	keep, scratch, ok := appendKeys(nil, elems[1], drop, scratch)
	if !ok {
		return redcon.AppendError(dst, "ERR jupiter: unexpected reply from a node to SCAN"), scratch
	}
	dst = redcon.AppendArray(dst, 2)
	var num [20]byte
	dst = redcon.AppendBulk(dst, strconv.AppendUint(num[:0], next, 10))
	dst = redcon.AppendArray(dst, len(keep))
	for _, e := range keep {
		dst = append(dst, e...)
	}
	return dst, scratch
}

// randomKeyReply passes RANDOMKEY's reply on, answering a marker as nil.
func randomKeyReply(dst, reply []byte, resp3 bool) []byte {
	if k, null, ok := resp.Bulk(reply); ok && !null && isMarkerKey(k) {
		return appendNull(dst, resp3)
	}
	return append(dst, reply...)
}
