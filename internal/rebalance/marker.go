package rebalance

import (
	"bytes"
	"strconv"
	"time"
)

// MarkerPrefix starts every marker key. It begins with 0xff, a byte no
// sensible text key starts with, and the proxy refuses client commands on
// any key with this prefix (IsMarker) and filters such keys out of KEYS,
// SCAN and RANDOMKEY replies.
const MarkerPrefix = "\xff__jrb:"

// DefaultMarkerTTL is the marker lifetime T when none is configured: well
// beyond any rebalance (rebalance.md §4.9: max(7 d, 3 × expected
// duration)). CLEANUP deletes markers long before that; the TTL only bounds
// the memory of markers a crashed rebalance leaves behind.
const DefaultMarkerTTL = 7 * 24 * time.Hour

// MarkerKey returns mk(k) for the rebalance to ring version epoch:
// MarkerPrefix + decimal epoch + ":" + key. The marker lives on the key's
// new owner (callers pick that node explicitly; the marker name is never
// hashed). Its presence means "the new owner is authoritative for key":
// either the key is there, or it was deleted there (a tombstone).
//
// The epoch in the name keeps markers of different rebalances apart, so a
// CLEANUP of one epoch (Cleanup) cannot touch the markers of the next, and
// a leftover marker of an old epoch never makes a later rebalance trust the
// wrong node.
func MarkerKey(epoch uint64, key []byte) []byte {
	mk := make([]byte, 0, len(MarkerPrefix)+20+1+len(key))
	mk = append(mk, MarkerPrefix...)
	mk = strconv.AppendUint(mk, epoch, 10)
	mk = append(mk, ':')
	return append(mk, key...)
}

// IsMarker reports whether key is in the reserved marker namespace (it
// starts with MarkerPrefix). The proxy must refuse such keys from clients:
// a client that could write or delete a marker could resurrect deleted keys
// or hide live ones during MIGRATING.
func IsMarker(key []byte) bool {
	return bytes.HasPrefix(key, []byte(MarkerPrefix))
}

// ParseMarker splits a marker key into its epoch and the key it marks.
// ok is false if mk is not a well-formed marker.
func ParseMarker(mk []byte) (epoch uint64, key []byte, ok bool) {
	if !IsMarker(mk) {
		return 0, nil, false
	}
	rest := mk[len(MarkerPrefix):]
	i := bytes.IndexByte(rest, ':')
	if i <= 0 {
		return 0, nil, false
	}
	e, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	return e, rest[i+1:], true
}

// MarkerPattern is the SCAN MATCH pattern for the markers of one epoch.
// The pattern has no glob metacharacters before the final '*', so it
// matches exactly the keys MarkerKey(epoch, ·) produces.
func MarkerPattern(epoch uint64) string {
	return MarkerPrefix + strconv.FormatUint(epoch, 10) + ":*"
}
