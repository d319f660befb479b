package rebalance

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Command is one Redis command as its raw arguments (name first). The
// builders below return exactly what this package sends, so the proxy can
// encode the same commands on its own multiplexed back-end path.
type Command [][]byte

// String renders c for logs and docs, arguments quoted Go-style.
func (c Command) String() string {
	var b strings.Builder
	for i, a := range c {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i == 0 {
			b.Write(a)
			continue
		}
		b.WriteString(strconv.Quote(string(a)))
	}
	return b.String()
}

func (c Command) args() []any {
	a := make([]any, len(c))
	for i, x := range c {
		a[i] = x
	}
	return a
}

func cmd(name string, args ...[]byte) Command {
	c := make(Command, 0, 1+len(args))
	c = append(c, []byte(name))
	return append(c, args...)
}

// RestoreScript is the conditional restore run on the new owner (rebalance.md
// §4.6 step 3), for a batch of keys at once (one script call costs a node
// far more than the commands inside it). KEYS = [k, mk(k), PlaceKey(k)] per
// key; ARGV = [marker TTL ms], then [ttl ms (0 = no expiry), DUMP payload,
// hash key of k's placement record ("" = none)] per key. Per key it answers
// 0 without writing if k or mk(k) exists (a newer write, a delete, or
// another mover won), else it sets the placement record (with k's TTL,
// first, so the record's deadline is never later than the key's), RESTOREs
// k without REPLACE and sets the marker: 1. A RESTORE the node refuses
// (payload version…) answers its error text and leaves nothing written for
// that key. The checks and the writes of a key happen atomically inside the
// script, which is what makes any number of concurrent movers safe (R7)
// and keeps deletes and newer writes from being overwritten by an older
// snapshot (R3, R4, R5).
//
// The existence checks start with one EXISTS over every key and marker of
// the call: in a migration nearly every batch finds none, and then the
// per-key EXISTS calls, a third of the script's redis.call()s, are skipped
// (a key named twice in one call is then caught by the done table).
const RestoreScript = `local out, n, done = {}, #KEYS / 3, {}
local check = true
if n > 0 and n <= 256 then
  local km = {}
  for i = 0, n - 1 do km[2*i+1], km[2*i+2] = KEYS[3*i+1], KEYS[3*i+2] end
  check = redis.call('EXISTS', unpack(km)) ~= 0
end
for i = 0, n - 1 do
  local k, mk, pk = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local ttl, payload, place = ARGV[3*i+2], ARGV[3*i+3], ARGV[3*i+4]
  if done[k] or (check and redis.call('EXISTS', k, mk) ~= 0) then out[i+1] = 0
  else
    if place ~= '' then
      if ttl == '0' then redis.call('SET', pk, place) else redis.call('SET', pk, place, 'PX', ttl) end
    end
    local r = redis.pcall('RESTORE', k, ttl, payload)
    if type(r) == 'table' and r.err then
      if place ~= '' then redis.call('DEL', pk) end
      out[i+1] = r.err
    else
      redis.call('SET', mk, '1', 'PX', ARGV[1])
      done[k] = true
      out[i+1] = 1
    end
  end
end
return out
`

// RestoreScriptSHA is the SHA1 of RestoreScript, the name EVALSHA uses.
var RestoreScriptSHA = func() string {
	h := sha1.Sum([]byte(RestoreScript))
	return hex.EncodeToString(h[:])
}()

func ms(d time.Duration) []byte { return strconv.AppendInt(nil, d.Milliseconds(), 10) }

func markerTTLOr(t time.Duration) time.Duration {
	if t <= 0 {
		return DefaultMarkerTTL
	}
	return t
}

// SetMarkerCommand is `SET mk(k) 1 PX T`, run on the new owner.
func SetMarkerCommand(epoch uint64, key []byte, markerTTL time.Duration) Command {
	return cmd("SET", MarkerKey(epoch, key), []byte("1"), []byte("PX"), ms(markerTTLOr(markerTTL)))
}

// SnapshotCommands is the atomic snapshot of keys on the old owner:
// `MULTI`, then `DUMP k`, `PTTL k`, `GET PlaceKey(k)` per key, `EXEC`.
// EXEC's reply holds [payload|nil, pttl, hash key|nil] per key.
func SnapshotCommands(keys ...[]byte) []Command {
	out := make([]Command, 0, 2+3*len(keys))
	out = append(out, cmd("MULTI"))
	for _, k := range keys {
		out = append(out, cmd("DUMP", k), cmd("PTTL", k), cmd("GET", PlaceKey(k)))
	}
	return append(out, cmd("EXEC"))
}

// ScriptLoadCommand is `SCRIPT LOAD <RestoreScript>`.
func ScriptLoadCommand() Command {
	return cmd("SCRIPT", []byte("LOAD"), []byte(RestoreScript))
}

// Restore is one key of a RestoreCommand: its remaining TTL (0: none),
// DUMP payload and placement record's hash key (nil: none).
type Restore struct {
	Key, Payload, Place []byte
	TTL                 time.Duration
}

// RestoreCommand is the conditional restore of keys on the new owner:
// `EVALSHA <RestoreScriptSHA> 3n k1 mk(k1) pk1 … <T ms> <ttl1 ms> <payload1>
// <place1|""> …`. On `-NOSCRIPT` send ScriptLoadCommand and retry (a
// failover or restart empties the script cache).
func RestoreCommand(epoch uint64, markerTTL time.Duration, rs ...Restore) Command {
	c := make(Command, 0, 4+6*len(rs))
	c = append(c, []byte("EVALSHA"), []byte(RestoreScriptSHA), strconv.AppendInt(nil, int64(3*len(rs)), 10))
	for _, r := range rs {
		c = append(c, r.Key, MarkerKey(epoch, r.Key), PlaceKey(r.Key))
	}
	c = append(c, ms(markerTTLOr(markerTTL)))
	for _, r := range rs {
		place := r.Place
		if place == nil {
			place = []byte{}
		}
		c = append(c, ms(r.TTL), r.Payload, place)
	}
	return c
}

// EnsureCheckCommand is `EXISTS k mk(k)` on the new owner: a reply > 0 means
// the new owner is already authoritative for k and nothing needs moving.
func EnsureCheckCommand(epoch uint64, key []byte) Command {
	return cmd("EXISTS", key, MarkerKey(epoch, key))
}

// UnlinkCommand is `UNLINK k…` on the old owner.
func UnlinkCommand(keys ...[]byte) Command { return cmd("UNLINK", keys...) }

// WriteCommands is a write of k during MIGRATING. On the new owner, in one
// transaction: `MULTI`, <write>, `SET mk(k) 1 PX T`, `EXEC`; then, only after
// EXEC succeeded, `UNLINK k` on the old owner. For a read-modify-write
// command (INCR, APPEND, LPUSH, SET NX/XX/GET/KEEPTTL, EXPIRE …) run Ensure
// on k first (rebalance.md §4.4 ‡).
func WriteCommands(epoch uint64, key []byte, write Command, markerTTL time.Duration) (onNew []Command, onOld Command) {
	return MultiWriteCommands(epoch, [][]byte{key}, write, markerTTL, nil)
}

// MultiWriteCommands is a command over several keys sharing their old and
// new owners during MIGRATING (after Ensure of every key). On the new owner,
// in one transaction: `MULTI`, <c>, `SET mk(k) 1 PX T` for every key in
// order, `EXEC`; then, only after EXEC succeeded, `UNLINK k1 … kn` on the
// old owner. With place (the command's hash= key, for keys placed by it),
// SyncCommand(place, keys…) follows the markers in the transaction, and
// the UNLINK on the old owner takes the keys' placement records too.
func MultiWriteCommands(epoch uint64, keys [][]byte, c Command, markerTTL time.Duration, place []byte) (onNew []Command, onOld Command) {
	onNew = make([]Command, 0, len(keys)+4)
	onNew = append(onNew, cmd("MULTI"), c)
	for _, k := range keys {
		onNew = append(onNew, SetMarkerCommand(epoch, k, markerTTL))
	}
	if place != nil {
		return append(onNew, SyncCommand(place, keys...), cmd("EXEC")), UnlinkCommand(withRecords(keys)...)
	}
	return append(onNew, cmd("EXEC")), UnlinkCommand(keys...)
}

// DeleteCommands is a delete of k during MIGRATING. On the new owner:
// `MULTI`, `EXISTS mk(k)`, `DEL k`, `SET mk(k) 1 PX T`, `EXEC`; then `UNLINK k`
// on the old owner. The key existed if DEL on new returned 1, or if there
// was no marker before and UNLINK on old returned 1 (rebalance.md §4.4).
func DeleteCommands(epoch uint64, key []byte, markerTTL time.Duration) (onNew []Command, onOld Command) {
	return []Command{cmd("MULTI"), cmd("EXISTS", MarkerKey(epoch, key)), cmd("DEL", key),
			SetMarkerCommand(epoch, key, markerTTL), cmd("EXEC")},
		UnlinkCommand(key)
}

// ReadCommands is the read rule's probes (rebalance.md §4.4 †). First (and,
// if needed, third) on the new owner: `MULTI`, `EXISTS k`, `EXISTS mk(k)`,
// <read>, `EXEC`. Second, on the old owner: `MULTI`, `EXISTS k`, <read>,
// `EXEC`. See Mover.Read for how the replies are combined.
func ReadCommands(epoch uint64, key []byte, read Command) (onNew, onOld []Command) {
	return []Command{cmd("MULTI"), cmd("EXISTS", key), cmd("EXISTS", MarkerKey(epoch, key)), read, cmd("EXEC")},
		[]Command{cmd("MULTI"), cmd("EXISTS", key), read, cmd("EXEC")}
}
