package rebalance

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/alphauslabs/jupiter/internal/resp"
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
// with k's expiry and deleted with k. The proxy keeps it with the write
// (RecordCommand: a plain mirror sent right before it, or SyncScript right
// after it in one MULTI), so a record exists whenever its key does;
// commands without hash= never touch records.
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
// (deleted without hash=, evicted) stays where its hash key lives (nothing
// can tell it from one whose key is being written: the proxy sends the
// record first); RemoveLeftovers deletes those of hash keys placed
// elsewhere, and everything on a removed node.

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
// expiry → the record is X without expiry; k expiring → the record is X
// expiring at k's deadline (PEXPIRETIME, Redis 7; before that PTTL − 1 ms,
// as the clock may tick inside the script). Returns the number of pairs.
//
// Never later than the key: a record that outlived its key could be kept
// by a later SET pk X NX for the key re-created without expiry. Never
// meaningfully earlier either; and a key within MinTTL of its deadline is
// not restored by a move anyway.
const SyncScript = `for i = 1, #KEYS, 2 do
  local t = redis.call('PTTL', KEYS[i])
  if t == -2 then redis.call('DEL', KEYS[i+1])
  elseif t == -1 then redis.call('SET', KEYS[i+1], ARGV[1])
  else
    local e = redis.pcall('PEXPIRETIME', KEYS[i])
    if type(e) == 'number' and e > 0 then redis.call('SET', KEYS[i+1], ARGV[1], 'PXAT', e)
    elseif t > 1 then redis.call('SET', KEYS[i+1], ARGV[1], 'PX', t - 1)
    else redis.call('DEL', KEYS[i+1]) end
  end
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

// GCScript deletes the placement records whose key no longer exists
// (RemoveLeftovers: only records of keys the proxy does not write on that
// node). KEYS = [k1, PlaceKey(k1), …]. Returns how many were deleted.
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
func placesOf(ctx context.Context, w wire, keys [][]byte) ([][]byte, error) {
	args := make(Command, 0, 1+len(keys))
	args = append(args, []byte("MGET"))
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
	err := w.roundTrip(ctx, []Command{args}, func(r [][]byte) error {
		v, _, ok := resp.Elements(r[0], nil)
		if !ok || len(v) != len(idx) {
			return fmt.Errorf("%s for %d keys", replyText(r[0]), len(idx))
		}
		for j, x := range v {
			if b, null, ok := resp.Bulk(x); ok && !null {
				out[idx[j]] = bytes.Clone(b)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("MGET placement records: %w", err)
	}
	return out, nil
}

// Places is placesOf for callers outside the package (the proxy's SCAN and
// KEYS during MIGRATING, which judge a source's keys by their placement).
func Places(ctx context.Context, node Node, keys [][]byte) ([][]byte, error) {
	return placesOf(ctx, clientWire{node}, keys)
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

// RecordCommand returns the command that keeps the placement records of
// keys (every key argument of write, in order, duplicates included; write
// is a command carrying hash=place with its override removed) in line with
// the keys: sent right BEFORE write when before is true (no MULTI needed),
// else right after it in one MULTI with it. A "before" command mirrors with
// plain commands what write does to its keys' existence and expiry, which
// costs a Redis node far less than a script; the others are SyncCommand,
// which reads the keys' expiry after the fact:
//
//	DEL/UNLINK k…                 DEL pk…
//	SET k v [opts]                SET pk X [the same opts]
//	SETEX/PSETEX k t v            SETEX/PSETEX pk t X
//	SETNX k v                     SETNX pk X
//	MSET/MSETNX k v …             MSET/MSETNX pk X …
//	[P]EXPIRE[AT] k t [cond]      the same on pk
//	PERSIST k                     PERSIST pk
//	any other one-key write       SET pk X NX   (it creates the key without
//	that cannot empty its key     expiry, or keeps it and its expiry)
//	anything else (pops and       SyncCommand: the script reads each key's
//	removes; GETDEL, GETEX,       PTTL after the fact
//	GETSET, SET … GET, which
//	fail on another type without
//	writing; RENAME, COPY,
//	*STORE, LMOVE, RESTORE, EVAL,
//	FCALL, several keys …)
//
// A mirror runs first, so the record exists before the key does and its
// relative expiry starts no later than the key's (a node's clock ticks
// between two commands): a record may expire a millisecond before its
// key, never after it. Its conditions (NX, XX, GT…) see the record in the
// state the key is in. A record thus exists exactly while its key does
// (TestRecordCommandsMirror), whatever another client runs between the
// two.
// c is nil when write has no keys.
func RecordCommand(write Command, keys [][]byte, place []byte) (c Command, before bool) {
	if len(keys) == 0 || len(write) == 0 {
		return nil, false
	}
	one := len(keys) == 1 // COPY k k is not a one-key write
	keys = distinctKeys(keys)
	pks := make([][]byte, len(keys))
	for i, k := range keys {
		pks[i] = PlaceKey(k)
	}
	name := strings.ToLower(string(write[0]))
	args := write[1:]
	switch name {
	case "del", "unlink":
		return cmd("DEL", pks...), true
	case "set":
		if len(args) < 2 {
			break
		}
		c = cmd("SET", pks[0], place)
		for _, o := range args[2:] {
			if strings.EqualFold(string(o), "GET") {
				return SyncCommand(place, keys...), false // fails on a non-string, without setting
			}
			c = append(c, o)
		}
		return c, true
	case "setex", "psetex":
		if len(args) == 3 {
			return cmd(strings.ToUpper(name), pks[0], args[1], place), true
		}
	case "setnx":
		return cmd("SETNX", pks[0], place), true
	case "mset", "msetnx":
		c = cmd(strings.ToUpper(name))
		for _, pk := range pks {
			c = append(c, pk, place)
		}
		return c, true
	case "expire", "pexpire", "expireat", "pexpireat":
		if len(args) >= 2 {
			return append(cmd(strings.ToUpper(name), pks[0]), args[1:]...), true
		}
	case "persist":
		return cmd("PERSIST", pks[0]), true
	case "getdel", "getex", "getset", "restore", "restore-asking", "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
	default:
		if one && !mayEmpty[name] {
			return cmd("SET", pks[0], place, []byte("NX")), true
		}
	}
	return SyncCommand(place, keys...), false
}

func distinctKeys(keys [][]byte) [][]byte {
	out := make([][]byte, 0, len(keys))
next:
	for _, k := range keys {
		for _, o := range out {
			if string(o) == string(k) {
				continue next
			}
		}
		out = append(out, k)
	}
	return out
}

// mayEmpty lists the one-key writes that can delete their key by
// emptying it: they keep records with SyncCommand, so a record never
// outlives its key (a leftover record with an expiry could otherwise be
// kept by a later SET pk X NX for a key re-created without one, and expire
// under it).
var mayEmpty = map[string]bool{
	"lpop": true, "rpop": true, "lmpop": true, "blpop": true, "brpop": true, "blmpop": true,
	"lrem": true, "ltrim": true, "srem": true, "spop": true, "hdel": true,
	"zrem": true, "zpopmin": true, "zpopmax": true, "bzpopmin": true, "bzpopmax": true,
	"zmpop": true, "bzmpop": true, "zremrangebyscore": true, "zremrangebyrank": true,
	"zremrangebylex": true,
}
