package rebalance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/resp"
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
// short: a default batch is one call of 32 keys (about 150 µs of a node
// for 100-byte values).
const (
	scriptKeys  = 32
	scriptBytes = 64 << 10
)

// Defaults for Mover. A batch's pipelines are what hold the nodes: Redis
// runs every command of a client's read (up to 16 KB) before it serves
// anyone else, so a GET that arrives behind a snapshot or restore pipeline
// waits for all of it. 32 keys and 256 KiB keep that wait near 100-200 µs
// for small values; 200 keys and 4 MiB (before) made it 1-3 ms, the
// clients' p99 during a migration 5-10 times steady, for a quarter more
// keys/s (BenchmarkMigrateLatency, bench/README.md).
const (
	DefaultMinTTL     = 5 * time.Millisecond
	DefaultBatchKeys  = 32
	DefaultBatchBytes = 256 << 10
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
	// pipelines by payload bytes); 0 means the defaults (32 keys, 256 KiB).
	BatchKeys, BatchBytes int

	// oldWire and newWire, if set, replace the Nodes' go-redis pipelines
	// for MoveBatch (the migrator's raw connections, wire.go).
	oldWire, newWire wire

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
// Commands: on old `MULTI; DUMP k; PTTL k; GET pk; EXEC`; then (unless the
// key is missing or expiring) on new `EVALSHA <sha> 3 k mk(k) pk <T> <ttl>
// <payload> <place>` (with `SCRIPT LOAD` and one retry on -NOSCRIPT); then
// on old `UNLINK k pk` unless the result is Missing or Failed.
func (m *Mover) Move(ctx context.Context, key []byte) (Result, error) {
	out, err := m.MoveBatch(ctx, [][]byte{key})
	if out[0].Err != nil {
		return out[0].Result, out[0].Err
	}
	return out[0].Result, err
}

// MoveBatch moves keys with the same per-key semantics as Move, in
// pipelines. Per chunk of keys: one pipeline to old with a `MULTI; DUMP k;
// PTTL k; GET PlaceKey(k); EXEC` block per at most 64 keys, then pipelines
// to new of the EVALSHA restores (at most ~BatchBytes of payload each),
// then one `UNLINK k1 … kn pk1 … pkn` to old for every key that is now on
// new, was refused by new, or expired.
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
	return m.moveBatch(ctx, keys, nil)
}

// moveBatch is MoveBatch; places, if not nil, are the keys' placement
// records as the caller read them on old in this MIGRATING stage (nil
// entries: none). Records on old cannot appear or change then (nobody
// writes old, I0), so the snapshot need not read them again, and the
// UNLINK names only the records that exist: the migrator's path.
func (m *Mover) moveBatch(ctx context.Context, keys, places [][]byte) ([]Outcome, error) {
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
		var pl [][]byte
		if places != nil {
			pl = places[i:j]
		}
		if err := m.moveChunk(ctx, out[i:j], pl); err != nil {
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

// wires returns how the mover reaches old and new: the migrator's raw
// connections if it set them, else the Nodes' go-redis pipelines.
func (m *Mover) wires() (old, new wire) {
	old, new = m.oldWire, m.newWire
	if old == nil {
		old = clientWire{m.Old}
	}
	if new == nil {
		new = clientWire{m.New}
	}
	return old, new
}

// snapshot is one key's DUMP/PTTL and placement record as read from old.
type snapshot struct {
	payload []byte
	pttl    int64
	place   []byte // the record's hash key; nil: none
}

func (m *Mover) moveChunk(ctx context.Context, out []Outcome, places [][]byte) error {
	oldW, newW := m.wires()
	// 1. Snapshot on old: MULTI blocks of DUMP/PTTL (and GET record, when
	// the records are not known) per key, pipelined. A block is atomic, so
	// it is kept short like a restore script call (scriptKeys keys,
	// ~scriptBytes at the mean payload size), letting other clients in
	// between blocks.
	per := scriptKeys
	if avg := int(m.avgBytes.Load()); avg > 0 {
		per = max(1, min(per, scriptBytes/avg))
	}
	stride := 3
	if places != nil {
		stride = 2
	}
	cmds := make([]Command, 0, len(out)*stride+2*(len(out)/per+1))
	for i := 0; i < len(out); i += per {
		cmds = append(cmds, cmd("MULTI"))
		for _, o := range out[i:min(i+per, len(out))] {
			cmds = append(cmds, cmd("DUMP", o.Key), cmd("PTTL", o.Key))
			if places == nil {
				cmds = append(cmds, cmd("GET", PlaceKey(o.Key)))
			}
		}
		cmds = append(cmds, cmd("EXEC"))
	}
	// t0 is taken when the snapshot is sent, not when its reply arrives:
	// the elapsed time subtracted from PTTL then includes the snapshot's
	// whole latency, which can only shorten the TTL (the restore side is
	// discussed in the package doc).
	t0 := time.Now()
	snaps := make([]snapshot, len(out))
	var todo []int
	err := oldW.roundTrip(ctx, cmds, func(replies [][]byte) error {
		var elems [][]byte
		at := 0 // the reply of the current block's MULTI
		for b := 0; b*per < len(out); b++ {
			keys := min(per, len(out)-b*per)
			exec := replies[at+1+keys*stride]
			at += 2 + keys*stride
			var ok bool
			elems, _, ok = resp.Elements(exec, elems[:0])
			for j := range keys {
				i := b*per + j
				if !ok || len(elems) != keys*stride {
					out[i].Err = fmt.Errorf("snapshot on old: EXEC replied %s", replyText(exec))
					continue
				}
				s, res, err := parseSnapshot(elems[j*stride : (j+1)*stride])
				if err != nil {
					out[i].Err = err
					continue
				}
				if res == Missing {
					out[i].Result = Missing
					continue
				}
				if places != nil {
					s.place = places[i]
				}
				snaps[i] = s
				out[i].Bytes = len(s.payload)
				todo = append(todo, i)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("snapshot on old: %w", err)
	}

	if m.beforeRestore != nil {
		m.beforeRestore()
	}

	// 2+3. TTL and conditional restore on new, pipelined by payload bytes.
	var retry []int
	for len(todo) > 0 {
		nosc, err := m.restore(ctx, newW, out, snaps, todo, t0)
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
	// expired), with its placement record. Safe without a check: in
	// MIGRATING nobody writes old, so old's copy is the one just
	// snapshotted or an older one.
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
	if len(gone) == 0 {
		return nil
	}
	unlink := withRecords(gone)
	if places != nil {
		unlink = gone
		for _, i := range idx {
			if places[i] != nil {
				unlink = append(unlink, PlaceKey(out[i].Key))
			}
		}
	}
	var refused string // the node's error reply, if any: the keys are handled, old keeps a stale copy
	err = oldW.roundTrip(ctx, []Command{UnlinkCommand(unlink...)}, func(r [][]byte) error {
		if resp.IsError(r[0]) {
			refused = replyText(r[0])
		}
		return nil
	})
	switch {
	case err != nil:
		for _, i := range idx {
			out[i].Err = fmt.Errorf("%w: %v", ErrUnlink, err)
		}
		return fmt.Errorf("%w: %v", ErrUnlink, err)
	case refused != "":
		for _, i := range idx {
			out[i].Err = fmt.Errorf("%w: %s", ErrUnlink, refused)
		}
	}
	return nil
}

// restore sends the restores for todo, one RestoreCommand per
// scriptKeys keys or ~scriptBytes of payload, all in one pipeline, and
// returns the keys that got -NOSCRIPT.
func (m *Mover) restore(ctx context.Context, w wire, out []Outcome, snaps []snapshot, todo []int, t0 time.Time) (noscript []int, err error) {
	minTTL := m.minTTL()
	var calls []Command
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
			rs = append(rs, Restore{Key: out[i].Key, Payload: s.payload, Place: place, TTL: ttl})
			idx = append(idx, i)
			size += len(s.payload)
		}
		if len(rs) == 0 {
			continue
		}
		calls = append(calls, RestoreCommand(m.Epoch, m.MarkerTTL, rs...))
		sent = append(sent, idx)
	}
	if len(calls) == 0 {
		return nil, nil
	}
	err = w.roundTrip(ctx, calls, func(replies [][]byte) error {
		var v [][]byte
		for n, r := range replies {
			if resp.IsError(r) {
				text := replyText(r)
				if strings.HasPrefix(text, "NOSCRIPT") {
					noscript = append(noscript, sent[n]...)
					continue
				}
				for _, i := range sent[n] {
					out[i].Err = fmt.Errorf("restore on new: %s", text)
				}
				continue
			}
			var ok bool
			v, _, ok = resp.Elements(r, v[:0])
			if !ok || len(v) != len(sent[n]) {
				for _, i := range sent[n] {
					out[i].Err = fmt.Errorf("restore script returned %s for %d keys", replyText(r), len(sent[n]))
				}
				continue
			}
			for j, i := range sent[n] {
				if x, ok := resp.Int(v[j]); ok {
					if x == 1 {
						out[i].Result = Moved
					} else {
						out[i].Result = AlreadyOnNew
					}
					continue
				}
				x, _, ok := resp.Bulk(v[j])
				switch {
				case !ok:
					out[i].Err = fmt.Errorf("restore script returned %s", replyText(v[j]))
				case strings.Contains(string(x), "payload version or checksum"):
					out[i].Err = fmt.Errorf("%w: %s", ErrPayloadVersion, x)
				default:
					out[i].Err = fmt.Errorf("restore on new: %s", x)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restore on new: %w", err)
	}
	return noscript, nil
}

// parseSnapshot reads one key's [payload|nil, pttl(, record|nil)] from a
// snapshot block's EXEC reply. The payload and record are copied: the
// replies belong to the wire.
func parseSnapshot(v [][]byte) (snapshot, Result, error) {
	for _, x := range v {
		if resp.IsError(x) {
			return snapshot{}, Failed, fmt.Errorf("snapshot: %s", replyText(x))
		}
	}
	pttl, ok := resp.Int(v[1])
	if !ok {
		return snapshot{}, Failed, fmt.Errorf("snapshot: PTTL replied %s", replyText(v[1]))
	}
	p, null, ok := resp.Bulk(v[0])
	if !ok {
		return snapshot{}, Failed, fmt.Errorf("snapshot: DUMP replied %s", replyText(v[0]))
	}
	if null || pttl == -2 {
		return snapshot{}, Missing, nil
	}
	s := snapshot{payload: bytes.Clone(p), pttl: pttl}
	if len(v) > 2 {
		if r, null, ok := resp.Bulk(v[2]); ok && !null {
			s.place = bytes.Clone(r)
		}
	}
	return s, Moved, nil
}

// replyText renders a raw reply for an error message: an error reply's
// text, anything else quoted and cut short.
func replyText(r []byte) string {
	if resp.IsError(r) {
		return string(bytes.TrimRight(r[1:], "\r\n"))
	}
	if len(r) > 64 {
		return strconv.Quote(string(r[:64])) + "…"
	}
	return strconv.Quote(string(r))
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
