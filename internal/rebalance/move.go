package rebalance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Result is what one move of one key did.
type Result uint8

const (
	// Failed: the move did not complete (see the error); the key stays on
	// old, where reads still find it, and a later pass retries it.
	Failed Result = iota
	// Moved: the key was restored on new with its remaining TTL, the marker
	// was set, and the key was unlinked from old.
	Moved
	// AlreadyOnNew: the key or its marker already existed on new (a newer
	// write or a delete won, or another mover was first); new was left
	// untouched and old's now-stale copy was unlinked.
	AlreadyOnNew
	// Missing: the key was not on old (already moved, deleted or expired).
	// Nothing was sent to new.
	Missing
	// Expired: the key's TTL ran out (below MinTTL) during the move; it was
	// not restored and old's copy was unlinked.
	Expired
)

func (r Result) String() string {
	switch r {
	case Moved:
		return "moved"
	case AlreadyOnNew:
		return "already-on-new"
	case Missing:
		return "missing"
	case Expired:
		return "expired"
	}
	return "failed"
}

var (
	// ErrPayloadVersion: new refused a DUMP payload from old (different
	// Redis versions, rebalance.md R17). Stop the rebalance: no retry helps.
	ErrPayloadVersion = errors.New("rebalance: DUMP payload version or checksum are wrong (mixed Redis versions?)")
	// ErrUnlink wraps a failed UNLINK on old after new became authoritative
	// (the key or its marker is on new). The operation itself succeeded; the
	// stale copy on old is harmless (reads prefer new) and the verification
	// pass or CLEANUP removes it.
	ErrUnlink = errors.New("rebalance: unlink on old failed")
)

func errScriptSHA(got string) error {
	return fmt.Errorf("rebalance: SCRIPT LOAD returned sha %q, want %q", got, RestoreScriptSHA)
}

// A restore script call holds its node for its whole run, so it is kept
// short (well under a millisecond on a loaded node): other clients get
// their turn between two calls of a pipeline.
const (
	scriptKeys  = 64
	scriptBytes = 64 << 10
)

// Defaults for Mover.
const (
	DefaultMinTTL     = 5 * time.Millisecond
	DefaultBatchKeys  = 200
	DefaultBatchBytes = 4 << 20
)

// Mover moves keys from one old owner to one new owner (rebalance.md §4.6)
// and implements the MIGRATING client operations for that pair (§4.4). A
// Mover holds no connection state: it is cheap to build per request, and any
// number of Movers, on any number of pods, may work on the same keys at
// once (R7).
//
// Use a Mover only while the stage is MIGRATING for the epoch given (FREEZE
// for ReadRule): it relies on nobody writing moving keys to old any more
// (invariants I0/I2), which the FREEZE barrier guarantees.
type Mover struct {
	Old, New Node
	// Epoch is the target ring version; it names the markers.
	Epoch uint64
	// MarkerTTL is the marker lifetime T; 0 means DefaultMarkerTTL.
	MarkerTTL time.Duration
	// MinTTL: a key whose remaining TTL at restore time is below this is
	// treated as Expired (not restored); 0 means DefaultMinTTL.
	MinTTL time.Duration
	// Place is the hash key of the command a proxy operation runs for (its
	// hash=<key> override) when that command places its keys by it: writes
	// then keep the keys' placement records (SyncCommand), and a moved key
	// without a record gets one naming Place. nil for keys placed by their
	// own names.
	Place []byte
	// LeaveOld skips the UNLINK of old's copy after a move (Ensure) or a
	// write on new (WriteMarked, UpdateMarked, MultiMarked): one round
	// trip less for a client command. The copy is stale but harmless: new
	// holds the key or its marker, which the read rule, SCAN/KEYS and
	// every mover prefer, and the migrator unlinks it when its SCAN meets
	// it (its restore is refused: AlreadyOnNew). Never set it on a
	// migrator's movers, which must empty the source.
	LeaveOld bool
	// BatchKeys and BatchBytes bound one MoveBatch pipeline (snapshot
	// pipelines by keys, and by bytes after the first chunk; restore
	// pipelines by payload bytes); 0 means the defaults (200 keys, 4 MiB).
	BatchKeys, BatchBytes int

	// beforeRestore, if set, runs after the snapshot and before the TTL is
	// computed and the restore sent (tests inject races here).
	beforeRestore func()
	// avgBytes is the mean payload size of the last chunk, which sizes the
	// next snapshot pipeline (kept across MoveBatch calls).
	avgBytes atomic.Int64
}

func (m *Mover) minTTL() time.Duration {
	if m.MinTTL > 0 {
		return m.MinTTL
	}
	return DefaultMinTTL
}

func (m *Mover) batchKeys() int {
	if m.BatchKeys > 0 {
		return m.BatchKeys
	}
	return DefaultBatchKeys
}

func (m *Mover) batchBytes() int {
	if m.BatchBytes > 0 {
		return m.BatchBytes
	}
	return DefaultBatchBytes
}

// Outcome is the result of one key in MoveBatch.
type Outcome struct {
	Key    []byte
	Result Result
	// Bytes is the size of the DUMP payload read from old (0 if Missing).
	Bytes int
	// Err is set when Result is Failed, or wraps ErrUnlink when the key was
	// handled but old's copy could not be unlinked.
	Err error
}

// Move moves one key: exactly MoveBatch with one key. The Result is valid
// even when err wraps ErrUnlink.
//
// Commands: on old `MULTI; DUMP k; PTTL k; EXEC`; then (unless the key is
// missing or expiring) on new `EVALSHA <sha> 2 k mk(k) <ttl> <payload> <T>`
// (with `SCRIPT LOAD` and one retry on -NOSCRIPT); then on old `UNLINK k`
// unless the result is Missing or Failed.
func (m *Mover) Move(ctx context.Context, key []byte) (Result, error) {
	out, err := m.MoveBatch(ctx, [][]byte{key})
	if out[0].Err != nil {
		return out[0].Result, out[0].Err
	}
	return out[0].Result, err
}

// MoveBatch moves keys with the same per-key semantics as Move, in
// pipelines. Per chunk of keys: one pipeline to old with a `MULTI; DUMP k;
// PTTL k; EXEC` block per key, then pipelines to new of the EVALSHA
// restores (at most ~BatchBytes of payload each), then one `UNLINK k1 … kn`
// to old for every key that is now on new, was refused by new, or expired.
//
// A chunk has at most BatchKeys keys, and fewer once payload sizes are
// known: its size follows the mean payload of the previous chunk (also
// across calls) to stay near BatchBytes. Sizes are only learnt from DUMP,
// so while they are unknown or jump, a snapshot pipeline may hold up to
// BatchKeys payloads: lower BatchKeys where many keys are huge.
//
// The returned slice has one Outcome per key, in order. A non-nil error is
// a batch-level failure (network, timeout, context): processing stopped,
// the keys not handled have Result Failed and Err set to it. Retrying is
// always safe.
func (m *Mover) MoveBatch(ctx context.Context, keys [][]byte) ([]Outcome, error) {
	out := make([]Outcome, len(keys))
	for i, k := range keys {
		out[i].Key = k
	}
	for i := 0; i < len(keys); {
		n := m.batchKeys()
		if avg := int(m.avgBytes.Load()); avg > 0 {
			n = max(1, min(n, m.batchBytes()/avg))
		}
		j := min(i+n, len(keys))
		if err := m.moveChunk(ctx, out[i:j]); err != nil {
			for k := i; k < len(out); k++ {
				if out[k].Result == Failed && out[k].Err == nil {
					out[k].Err = err
				}
			}
			return out, err
		}
		total := 0
		for _, o := range out[i:j] {
			total += o.Bytes
		}
		m.avgBytes.Store(int64(max(1, total/(j-i))))
		i = j
	}
	return out, nil
}

// snapshot is one key's DUMP/PTTL and placement record as read from old.
type snapshot struct {
	payload string
	pttl    int64
	place   []byte // the record's hash key; nil: none
}

func (m *Mover) moveChunk(ctx context.Context, out []Outcome) error {
	// 1. Snapshot on old: MULTI blocks of DUMP/PTTL/GET record per key,
	// pipelined. A block is atomic, so it is kept short like a restore
	// script call (scriptKeys keys, ~scriptBytes at the mean payload
	// size), letting other clients in between blocks.
	per := scriptKeys
	if avg := int(m.avgBytes.Load()); avg > 0 {
		per = max(1, min(per, scriptBytes/avg))
	}
	pipe := m.Old.Pipeline()
	var execs []*redis.Cmd
	for i := 0; i < len(out); i += per {
		pipe.Do(ctx, "MULTI")
		for _, o := range out[i:min(i+per, len(out))] {
			pipe.Do(ctx, "DUMP", o.Key)
			pipe.Do(ctx, "PTTL", o.Key)
			pipe.Do(ctx, "GET", PlaceKey(o.Key))
		}
		execs = append(execs, pipe.Do(ctx, "EXEC"))
	}
	// t0 is taken when the snapshot is sent, not when its reply arrives:
	// the elapsed time subtracted from PTTL then includes the snapshot's
	// whole latency, which can only shorten the TTL (the restore side is
	// discussed in the package doc).
	t0 := time.Now()
	_, perr := pipe.Exec(ctx)
	snaps := make([]snapshot, len(out))
	var todo []int
	for b, c := range execs {
		v, err := c.Slice()
		if err != nil && !isReply(err) {
			return fmt.Errorf("snapshot on old: %w", err)
		}
		for j := range min(per, len(out)-b*per) {
			i := b*per + j
			if err != nil {
				out[i].Err = fmt.Errorf("snapshot on old: %w", err)
				continue
			}
			s, res, err := parseSnapshot(v, j)
			if err != nil {
				out[i].Err = err
				continue
			}
			if res == Missing {
				out[i].Result = Missing
				continue
			}
			snaps[i] = s
			out[i].Bytes = len(s.payload)
			todo = append(todo, i)
		}
	}
	if perr != nil && !isReply(perr) {
		return fmt.Errorf("snapshot on old: %w", perr)
	}

	if m.beforeRestore != nil {
		m.beforeRestore()
	}

	// 2+3. TTL and conditional restore on new, pipelined by payload bytes.
	var retry []int
	for len(todo) > 0 {
		nosc, err := m.restore(ctx, out, snaps, todo, t0)
		if err != nil {
			return err
		}
		if len(nosc) == 0 {
			break
		}
		if retry != nil { // NOSCRIPT again right after SCRIPT LOAD
			for _, i := range nosc {
				out[i].Err = errors.New("rebalance: NOSCRIPT after SCRIPT LOAD")
			}
			break
		}
		if err := LoadScript(ctx, m.New); err != nil {
			return fmt.Errorf("SCRIPT LOAD on new: %w", err)
		}
		retry, todo = nosc, nosc
	}

	// 4. UNLINK on old every key new is now authoritative for (or that
	// expired). Safe without a check: in MIGRATING nobody writes old, so
	// old's copy is the one just snapshotted or an older one.
	var gone [][]byte
	var idx []int
	for i, o := range out {
		if m.LeaveOld && o.Result != Expired {
			continue // new is authoritative: the migrator unlinks the stale copy
		}
		if o.Err == nil && (o.Result == Moved || o.Result == AlreadyOnNew || o.Result == Expired) {
			gone = append(gone, o.Key)
			idx = append(idx, i)
		}
	}
	if len(gone) > 0 {
		if err := m.Old.Do(ctx, UnlinkCommand(withRecords(gone)...).args()...).Err(); err != nil {
			for _, i := range idx {
				out[i].Err = fmt.Errorf("%w: %v", ErrUnlink, err)
			}
			if !isReply(err) {
				return fmt.Errorf("%w: %v", ErrUnlink, err)
			}
		}
	}
	return nil
}

// restore sends the restores for todo, one RestoreCommand per
// scriptKeys keys or ~scriptBytes of payload, all in one pipeline, and
// returns the keys that got -NOSCRIPT.
func (m *Mover) restore(ctx context.Context, out []Outcome, snaps []snapshot, todo []int, t0 time.Time) (noscript []int, err error) {
	minTTL := m.minTTL()
	pipe := m.New.Pipeline()
	var calls []*redis.Cmd
	var sent [][]int // per call, the keys it restores
	elapsed := time.Since(t0)
	for len(todo) > 0 {
		var rs []Restore
		var idx []int
		size := 0
		for len(todo) > 0 && len(rs) < scriptKeys && (size == 0 || size+len(snaps[todo[0]].payload) <= scriptBytes) {
			i := todo[0]
			todo = todo[1:]
			s := snaps[i]
			var ttl time.Duration
			if s.pttl >= 0 {
				ttl = time.Duration(s.pttl)*time.Millisecond - elapsed
				if ttl < minTTL {
					out[i].Result = Expired
					continue
				}
			}
			place := s.place // the record on old wins; m.Place is for keys that have none yet
			if place == nil {
				place = m.Place
			}
			rs = append(rs, Restore{Key: out[i].Key, Payload: []byte(s.payload), Place: place, TTL: ttl})
			idx = append(idx, i)
			size += len(s.payload)
		}
		if len(rs) == 0 {
			continue
		}
		calls = append(calls, pipe.Do(ctx, RestoreCommand(m.Epoch, m.MarkerTTL, rs...).args()...))
		sent = append(sent, idx)
	}
	if len(calls) == 0 {
		return nil, nil
	}
	_, perr := pipe.Exec(ctx)
	for n, c := range calls {
		v, err := c.Slice()
		switch {
		case err == nil:
		case !isReply(err):
			return nil, fmt.Errorf("restore on new: %w", err)
		case strings.HasPrefix(err.Error(), "NOSCRIPT"):
			noscript = append(noscript, sent[n]...)
			continue
		default:
			for _, i := range sent[n] {
				out[i].Err = fmt.Errorf("restore on new: %w", err)
			}
			continue
		}
		if len(v) != len(sent[n]) {
			for _, i := range sent[n] {
				out[i].Err = fmt.Errorf("restore script returned %d results for %d keys", len(v), len(sent[n]))
			}
			continue
		}
		for j, i := range sent[n] {
			switch x := v[j].(type) {
			case int64:
				if x == 1 {
					out[i].Result = Moved
				} else {
					out[i].Result = AlreadyOnNew
				}
			case string:
				if strings.Contains(x, "payload version or checksum") {
					out[i].Err = fmt.Errorf("%w: %s", ErrPayloadVersion, x)
				} else {
					out[i].Err = fmt.Errorf("restore on new: %s", x)
				}
			default:
				out[i].Err = fmt.Errorf("restore script returned %T", x)
			}
		}
	}
	if perr != nil && !isReply(perr) {
		return nil, fmt.Errorf("restore on new: %w", perr)
	}
	return noscript, nil
}

// parseSnapshot reads the j-th key's [payload|nil, pttl, record|nil] from a
// snapshot block's EXEC reply.
func parseSnapshot(v []any, j int) (snapshot, Result, error) {
	if len(v) < 3*(j+1) {
		return snapshot{}, Failed, fmt.Errorf("snapshot: EXEC returned %d replies, want %d", len(v), 3*(j+1))
	}
	v = v[3*j : 3*j+3]
	for _, x := range v {
		if e, ok := x.(error); ok {
			return snapshot{}, Failed, fmt.Errorf("snapshot: %w", e)
		}
	}
	pttl, ok := v[1].(int64)
	if !ok {
		return snapshot{}, Failed, fmt.Errorf("snapshot: PTTL reply %T", v[1])
	}
	if v[0] == nil || pttl == -2 {
		return snapshot{}, Missing, nil
	}
	p, ok := v[0].(string)
	if !ok {
		return snapshot{}, Failed, fmt.Errorf("snapshot: DUMP reply %T", v[0])
	}
	var place []byte
	if r, ok := v[2].(string); ok {
		place = []byte(r)
	}
	return snapshot{payload: p, pttl: pttl, place: place}, Moved, nil
}

// isReply reports whether err is a reply from Redis (an error reply or
// nil), as opposed to a network, timeout or context failure.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// Ensure makes new authoritative for key before a read-modify-write,
// TTL-changing, blocking or multi-key command runs on new (rebalance.md
// §4.4 ‡): if key or mk(key) exists on new (`EXISTS k mk(k)`), it returns
// AlreadyOnNew; otherwise it runs Move. Missing and Expired mean the command
// should run on new against an absent key. A lingering copy on old (an
// ErrUnlink) is not reported: new already wins.
func (m *Mover) Ensure(ctx context.Context, key []byte) (Result, error) {
	n, err := m.New.Do(ctx, EnsureCheckCommand(m.Epoch, key).args()...).Int64()
	if err != nil {
		return Failed, fmt.Errorf("ensure check on new: %w", err)
	}
	if n > 0 {
		return AlreadyOnNew, nil
	}
	res, err := m.Move(ctx, key)
	if errors.Is(err, ErrUnlink) {
		err = nil
	}
	return res, err
}
