package rebalance

import (
	"context"
	"fmt"
	"strconv"
)

// Placement records: how keys written with a hash=<key> override move with
// their hash key.
//
// The proxy places a command carrying a trailing hash=X on X's node, so a
// key k written that way lives where X's slot is, not where k's own slot
// is, and nothing in k's name says so. A rebalance finds keys by SCAN and
// would move k by its own slot (or leave it behind): after the resize,
// `GET k hash=X` misses. So every write with hash=X of a key whose slot
// differs from X's keeps a placement record next to the key, on the same
// node: the string key PlaceKey(k) = MarkerPrefix + "p:" + k, holding X,
// with k's expiry (plus 1 ms) and deleted with k. The proxy updates it in
// the same MULTI as the write (SyncScript), so whenever k exists its
// record does; commands without hash= never touch records.
//
// The migrator and RemoveLeftovers read the records of the keys SCAN
// returns (one MGET per SCAN batch) and place each key by its record's X;
// a move (snapshot, restore script) carries the record with the key and
// its TTL; UNLINKs on the old owner take the record along. Records start
// with MarkerPrefix, so the proxy already refuses them as client keys and
// hides them from SCAN, KEYS and RANDOMKEY; the migrator skips them like
// markers. They are counted by DBSIZE and INFO keyspace (one per placed
// key).
//
// A record is an ordinary key: under an eviction policy it can be evicted
// apart from its key, which then moves by its own slot on the next
// rebalance and misses like an evicted key. A record whose key is gone
// (deleted without hash=, evicted) is removed by GCScript when a migrator
// or RemoveLeftovers meets it.

// placeInfix follows MarkerPrefix in a placement record's name. A marker
// has a decimal epoch there, so the two never collide and MarkerPattern
// never matches a record.
const placeInfix = "p:"

// PlaceKey is the placement record of key.
func PlaceKey(key []byte) []byte {
	pk := make([]byte, 0, len(MarkerPrefix)+len(placeInfix)+len(key))
	pk = append(pk, MarkerPrefix...)
	pk = append(pk, placeInfix...)
	return append(pk, key...)
}

// IsPlace reports whether k is a placement record.
func IsPlace(k []byte) bool {
	return len(k) >= len(MarkerPrefix)+len(placeInfix) && IsMarker(k) &&
		string(k[len(MarkerPrefix):len(MarkerPrefix)+len(placeInfix)]) == placeInfix
}

// PlacedKey is the key a placement record belongs to; ok is false when pk
// is not a record.
func PlacedKey(pk []byte) (key []byte, ok bool) {
	if !IsPlace(pk) {
		return nil, false
	}
	return pk[len(MarkerPrefix)+len(placeInfix):], true
}

// SyncScript brings the placement records of keys in line with the keys
// after a write with hash=X. KEYS = [k1, PlaceKey(k1), k2, PlaceKey(k2) …],
// ARGV = [X]. For each pair: k gone → the record is deleted; k without
// expiry → the record is X without expiry; k expiring in t ms → the record
// is X expiring in t+1 ms (so it never expires before its key). Returns
// the number of pairs.
const SyncScript = `for i = 1, #KEYS, 2 do
  local t = redis.call('PTTL', KEYS[i])
  if t == -2 then redis.call('DEL', KEYS[i+1])
  elseif t < 0 then redis.call('SET', KEYS[i+1], ARGV[1])
  else redis.call('SET', KEYS[i+1], ARGV[1], 'PX', t + 1) end
end
return #KEYS / 2
`

// SyncCommand is `EVAL <SyncScript> 2n k1 pk1 … kn pkn X`. EVAL rather
// than EVALSHA: it runs inside the proxy's MULTI, where a -NOSCRIPT (empty
// script cache after a failover) would leave the write without its record;
// Redis caches the compiled script, so a repeat costs hashing its text.
func SyncCommand(place []byte, keys ...[]byte) Command {
	c := make(Command, 0, 4+2*len(keys))
	c = append(c, []byte("EVAL"), []byte(SyncScript), strconv.AppendInt(nil, int64(2*len(keys)), 10))
	for _, k := range keys {
		c = append(c, k, PlaceKey(k))
	}
	return append(c, place)
}

// PresetCommand is `EVAL <PresetScript> 2n k1 pk1 … kn pkn X`, sent before
// a write that cannot share a MULTI with its SyncCommand (a blocking
// command on its own connection): it creates the missing records, so a key
// the write creates has its record before the SyncCommand that follows.
func PresetCommand(place []byte, keys ...[]byte) Command {
	c := SyncCommand(place, keys...)
	c[1] = []byte(PresetScript)
	return c
}

// PresetScript sets each record that does not exist yet to ARGV[1], without
// expiry (SyncScript gives it the key's afterwards).
const PresetScript = `for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i+1]) == 0 then redis.call('SET', KEYS[i+1], ARGV[1]) end
end
return #KEYS / 2
`

// GCScript deletes the placement records whose key no longer exists,
// atomically: a write in the proxy's MULTI either ran before (the key
// exists: the record stays) or runs after (and writes the record again).
// KEYS = [k1, PlaceKey(k1), …]. Returns how many were deleted.
const GCScript = `local n = 0
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 0 then n = n + redis.call('DEL', KEYS[i+1]) end
end
return n
`

// gc runs GCScript over the records recs on node.
func gc(ctx context.Context, node Node, recs [][]byte) (int64, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 3+2*len(recs))
	args = append(args, "EVAL", GCScript, 2*len(recs))
	for _, r := range recs {
		k, _ := PlacedKey(r)
		args = append(args, k, r)
	}
	return node.Do(ctx, args...).Int64()
}

// placesOf returns, for each key, the hash key its placement record names
// (nil: the key has none and is placed by its own name), with one
// `MGET pk1 … pkn` on node. Markers and records get nil.
func placesOf(ctx context.Context, node Node, keys [][]byte) ([][]byte, error) {
	args := make([]any, 0, 1+len(keys))
	args = append(args, "MGET")
	idx := make([]int, 0, len(keys))
	for i, k := range keys {
		if IsMarker(k) {
			continue
		}
		args = append(args, PlaceKey(k))
		idx = append(idx, i)
	}
	out := make([][]byte, len(keys))
	if len(idx) == 0 {
		return out, nil
	}
	v, err := node.Do(ctx, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("MGET placement records: %w", err)
	}
	if len(v) != len(idx) {
		return nil, fmt.Errorf("MGET placement records: %d replies for %d keys", len(v), len(idx))
	}
	for j, x := range v {
		if s, ok := x.(string); ok {
			out[idx[j]] = []byte(s)
		}
	}
	return out, nil
}

// Places is placesOf for callers outside the package (the proxy's SCAN and
// KEYS during MIGRATING, which judge a source's keys by their placement).
func Places(ctx context.Context, node Node, keys [][]byte) ([][]byte, error) {
	return placesOf(ctx, node, keys)
}

// placeOr is the key that decides where k lives: its record's hash key, or
// k itself.
func placeOr(k, place []byte) []byte {
	if place != nil {
		return place
	}
	return k
}

// withRecords appends the placement record of every key to keys (for an
// UNLINK on the old owner, which must take the records along).
func withRecords(keys [][]byte) [][]byte {
	out := make([][]byte, 0, 2*len(keys))
	out = append(out, keys...)
	for _, k := range keys {
		out = append(out, PlaceKey(k))
	}
	return out
}
