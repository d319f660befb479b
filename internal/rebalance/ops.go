package rebalance

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Source says which probe of the read rule produced a reply.
type Source uint8

const (
	// FromNew: the first probe on new found the key or its marker.
	FromNew Source = iota + 1
	// FromOld: new had neither, old had the key.
	FromOld
	// FromNewRecheck: neither had it; the reply is the third probe, on new
	// again (the key may have moved between the first two probes, R6).
	FromNewRecheck
)

func (s Source) String() string {
	switch s {
	case FromNew:
		return "new"
	case FromOld:
		return "old"
	case FromNewRecheck:
		return "new-recheck"
	}
	return "none"
}

// inTx queues cmds (without their MULTI/EXEC, which TxPipeline adds) and
// runs them as one transaction. The queued command at index raw (counting
// only the commands between MULTI and EXEC; -1 for none) is queued as a
// *redis.RawCmd, so its reply stays the exact RESP bytes the node sent; the
// others are *redis.Cmd. A network failure is returned as error; reply
// errors stay in the individual commands.
func inTx(ctx context.Context, n Node, cmds []Command, raw int) ([]redis.Cmder, error) {
	pipe := n.TxPipeline()
	out := make([]redis.Cmder, 0, len(cmds))
	for _, c := range cmds {
		if name := string(c[0]); name == "MULTI" || name == "EXEC" {
			continue
		}
		if len(out) == raw {
			rc := redis.NewRawCmd(ctx, c.args()...)
			_ = pipe.Process(ctx, rc) // queues; errors come with Exec
			out = append(out, rc)
			continue
		}
		out = append(out, pipe.Do(ctx, c.args()...))
	}
	if _, err := pipe.Exec(ctx); err != nil && !isReply(err) {
		return nil, err
	}
	return out, nil
}

// intOf is the integer reply of a queued *redis.Cmd.
func intOf(c redis.Cmder) (int64, error) { return c.(*redis.Cmd).Int64() }

// rawReply is the reply a client would have got for c, a *redis.RawCmd that
// ran in a transaction: the exact RESP bytes the node sent (values, nil
// replies and runtime error replies such as WRONGTYPE alike), or, when the
// command was refused when queued (its error is in Err), that error line.
func rawReply(c redis.Cmder) []byte {
	rc := c.(*redis.RawCmd)
	if err := rc.Err(); err != nil {
		return []byte("-" + err.Error() + "\r\n")
	}
	return rc.Val()
}

// aborted reports whether a transaction was discarded (EXECABORT) because
// the client's command r[i] was refused when queued (wrong arity, unknown
// command): its error is then the reply to pass on.
func aborted(r []redis.Cmder, i int) bool {
	isAbort := func(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "EXECABORT") }
	if ei := r[i].Err(); ei == nil || !isReply(ei) || isAbort(ei) {
		return false
	}
	for j, c := range r {
		if j != i && isAbort(c.Err()) {
			return true
		}
	}
	return false
}

// ReadRule runs a single-key read command during FREEZE or MIGRATING with
// the three-probe rule (rebalance.md §4.4 †), returning the raw RESP reply of
// the probe that decided and which probe that was:
//
//  1. new: `MULTI; EXISTS k; EXISTS mk(k); <read>; EXEC`, and at the same
//     time old: `MULTI; EXISTS k; <read>; EXEC`. If k or mk(k) exists on
//     new, new is authoritative: return its <read> reply (FromNew).
//  2. Else, if k exists on old, return old's reply (FromOld).
//  3. Else new again, as in 1, and return its reply whatever it is
//     (FromNewRecheck).
//
// The first two probes run concurrently (one round trip instead of two),
// which keeps the rule: data flows only old → new and a key on new stays
// there, so a key that exists throughout and was on neither node at the
// two probes must have moved after the probe of new, and the third probe
// finds it (R6); and old's copy, when returned, was authoritative when new
// was probed (nobody writes old in these stages), so the read is
// linearizable at that moment.
//
// read must be a read of key only. The reply is exactly what the node sent
// for <read> ("$-1\r\n" for a nil, "-WRONGTYPE …\r\n" for an error reply),
// or the error line of a <read> refused when queued (wrong arity): a proxy
// passes it to its client untouched. The error return is only for failures
// to talk to a node.
func (m *Mover) ReadRule(ctx context.Context, key []byte, read Command) ([]byte, Source, error) {
	onNew, onOld := ReadCommands(m.Epoch, key, read)
	probeNew := func() ([]byte, bool, error) {
		r, err := inTx(ctx, m.New, onNew, 2)
		if err != nil {
			return nil, false, fmt.Errorf("read rule on new: %w", err)
		}
		if aborted(r, 2) {
			return rawReply(r[2]), true, nil // the read itself was refused (syntax): that is the reply
		}
		nk, err1 := intOf(r[0])
		nm, err2 := intOf(r[1])
		if err := errors.Join(err1, err2, r[2].Err()); err != nil {
			return nil, false, fmt.Errorf("read rule on new: %w", err)
		}
		return rawReply(r[2]), nk > 0 || nm > 0, nil
	}
	type probe struct {
		reply []byte
		ok    bool
		err   error
	}
	first := make(chan probe, 1)
	go func() {
		c, ok, err := probeNew()
		first <- probe{c, ok, err}
	}()
	r, oerr := inTx(ctx, m.Old, onOld, 1)
	pn := <-first
	if pn.err != nil || pn.ok {
		return pn.reply, FromNew, pn.err
	}
	if oerr != nil {
		return nil, 0, fmt.Errorf("read rule on old: %w", oerr)
	}
	if aborted(r, 1) {
		return rawReply(r[1]), FromOld, nil
	}
	nk, err := intOf(r[0])
	if err == nil {
		err = r[1].Err()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read rule on old: %w", err)
	}
	if nk > 0 {
		return rawReply(r[1]), FromOld, nil
	}
	c, _, err := probeNew()
	return c, FromNewRecheck, err
}

// WriteMarked runs a write of key on new during MIGRATING and retires old's
// copy (rebalance.md §4.4, blind overwrite row):
//
//	new: MULTI; <write>; SET mk(k) 1 PX T; EXEC
//	old: UNLINK k          (only after EXEC succeeded)
//
// write is sent as given; it must write key (and only keys owned by the
// same new node, each needing its own marker: use MultiMarked for several).
// A blind overwrite (SET without NX/XX/GET/KEEPTTL, SETEX, PSETEX, the MSET
// part) can go straight here; a read-modify-write must call Ensure first
// (UpdateMarked does both).
//
// The returned reply is <write>'s raw RESP reply, including an error reply:
// a runtime error (WRONGTYPE) still sets the marker (new stays
// authoritative); a command refused when queued (arity, unknown command)
// aborts the transaction, so nothing is written, old is left alone, and the
// reply is that refusal's error line. The error return is a failure to run
// the transaction (nothing known about the write: the caller must not
// acknowledge it) or wraps ErrUnlink (the write succeeded and the reply is
// valid; old's stale copy lingers harmlessly).
func (m *Mover) WriteMarked(ctx context.Context, key []byte, write Command) ([]byte, error) {
	return m.writeMarked(ctx, [][]byte{key}, write)
}

func (m *Mover) writeMarked(ctx context.Context, keys [][]byte, write Command) ([]byte, error) {
	onNew, onOld := MultiWriteCommands(m.Epoch, keys, write, m.MarkerTTL, m.Place)
	r, err := inTx(ctx, m.New, onNew, 0)
	if err != nil {
		return nil, fmt.Errorf("write on new: %w", err)
	}
	if aborted(r, 0) {
		return rawReply(r[0]), nil // the write was refused when queued: nothing ran, that error is the reply
	}
	for _, mk := range r[1:] {
		if err := mk.Err(); err != nil { // SET mk, the records' sync: an EXECABORT (e.g. OOM) means nothing ran
			return nil, fmt.Errorf("write on new: marker: %w", err)
		}
	}
	if err := r[0].Err(); err != nil {
		return nil, fmt.Errorf("write on new: %w", err)
	}
	reply := rawReply(r[0])
	if m.LeaveOld {
		return reply, nil
	}
	if err := m.Old.Do(ctx, onOld.args()...).Err(); err != nil {
		return reply, fmt.Errorf("%w: %v", ErrUnlink, err)
	}
	return reply, nil
}

// UpdateMarked is Ensure(key) followed by WriteMarked: the path for
// read-modify-write and TTL commands (INCR, APPEND, LPUSH, HSET, EXPIRE,
// SET … NX/XX/GET/KEEPTTL, GETDEL, EVAL with one key …), which must see the
// key's current value, so the key is moved to new before the command runs
// there (R8). The reply is the command's raw RESP reply, as in WriteMarked.
func (m *Mover) UpdateMarked(ctx context.Context, key []byte, write Command) ([]byte, error) {
	if _, err := m.Ensure(ctx, key); err != nil {
		return nil, err
	}
	return m.WriteMarked(ctx, key, write)
}

// MultiMarked runs a command over several keys that share both their old
// and their new owner (RENAME, SMOVE, LMOVE, *STORE, SUNION, EVAL with
// keys, MSETNX …; rebalance.md §4.5): Ensure every key, then
//
//	new: MULTI; <c>; SET mk(k1) 1 PX T; …; SET mk(kn) 1 PX T; EXEC
//	old: UNLINK k1 … kn   (only after EXEC succeeded)
//
// Every key gets a marker, whether c reads, writes or deletes it: after the
// Ensures new is authoritative for all of them, and the marker records it
// (a RENAME source becomes a tombstone). keys must be distinct. The reply
// and errors are as in WriteMarked.
func (m *Mover) MultiMarked(ctx context.Context, keys [][]byte, c Command) ([]byte, error) {
	for _, k := range keys {
		if _, err := m.Ensure(ctx, k); err != nil {
			return nil, err
		}
	}
	return m.writeMarked(ctx, keys, c)
}

// DeleteMarked deletes key during MIGRATING, leaving a tombstone marker on
// new before touching old, so no mover can restore an older snapshot
// afterwards (R3):
//
//	old: EXISTS k
//	new: MULTI; EXISTS mk(k); DEL k; SET mk(k) 1 PX T; EXEC
//	old: UNLINK k
//
// With m.Place set (a delete with hash=), DEL PlaceKey(k) joins the
// transaction on new and UNLINK PlaceKey(k) follows on old.
//
// existed follows §4.4: the key existed if DEL on new removed it, or if
// there was no marker before and old had it (with a marker, old's copy was
// already superseded). Old is asked before the marker is set as well as
// unlinked after: a migrator that finds the marker unlinks old's copy by
// itself, and may do so between the two, which made a delete of an
// existing key answer 0. On an ErrUnlink, existed reflects new and the
// first look at old.
func (m *Mover) DeleteMarked(ctx context.Context, key []byte) (existed bool, err error) {
	onNew, onOld := DeleteCommands(m.Epoch, key, m.MarkerTTL)
	if m.Place != nil {
		onNew = append(onNew[:len(onNew)-1], cmd("DEL", PlaceKey(key)), cmd("EXEC"))
	}
	oldHad, err := m.Old.Do(ctx, "EXISTS", key).Int64()
	if err != nil {
		return false, fmt.Errorf("delete: exists on old: %w", err)
	}
	r, err := inTx(ctx, m.New, onNew, -1)
	if err != nil {
		return false, fmt.Errorf("delete on new: %w", err)
	}
	hadMarker, err1 := intOf(r[0])
	delNew, err2 := intOf(r[1])
	if err := errors.Join(err1, err2, r[2].Err()); err != nil {
		return false, fmt.Errorf("delete on new: %w", err)
	}
	delOld, err := m.Old.Do(ctx, onOld.args()...).Int64()
	if err == nil && m.Place != nil {
		err = m.Old.Do(ctx, "UNLINK", PlaceKey(key)).Err()
	}
	if err != nil {
		return delNew > 0 || (hadMarker == 0 && oldHad > 0), fmt.Errorf("%w: %v", ErrUnlink, err)
	}
	return delNew > 0 || (hadMarker == 0 && (oldHad > 0 || delOld > 0)), nil
}
