// Package rebalance is the data-moving half of jupiter's online rebalancing
// (DESIGN.md "Rebalancing", research/rebalance.md §4): it moves the keys
// whose owner changes between two rings from their old node to their new
// node while clients keep reading and writing them, and it gives the proxy
// the client-side operations of the MIGRATING stage. The stage machine
// (Spanner, barriers) and the proxy's routing call into it; this package
// decides nothing about stages itself.
//
// # Why it looks like this
//
// Memorystore blocks MIGRATE (and CLIENT, CONFIG, OBJECT…), so a key cannot
// be moved atomically by the server as Redis Cluster or Codis do. The move
// is client-side and therefore not atomic: snapshot on old (DUMP + PTTL in
// one MULTI), restore on new, unlink on old. What makes that safe is:
//
//   - Markers. mk(k) = MarkerKey(epoch, k) is a small key on the new owner
//     meaning "new is authoritative for k": every move, write and delete
//     during MIGRATING sets it, and it doubles as the tombstone of a delete.
//     The logical value of a moving key is new's if new has k or mk(k),
//     else old's (invariant I1).
//   - Restore-if-absent. The restore is one Lua script (RestoreScript,
//     SCRIPT LOAD + EVALSHA, both allowed on Memorystore) that refuses when
//     k or mk(k) already exists on new, and otherwise RESTOREs without
//     REPLACE and sets the marker, atomically. A newer write (R4), a delete
//     (R3) or a write that has since expired (R5) always beats an older
//     snapshot.
//   - Idempotence. Because of the above, any number of movers — the
//     migrator, per-request Ensure on many pods, a deposed leader's
//     migrator — can move the same key at once: exactly one restore wins
//     and every other sees the key or marker (R7). UNLINK on old is
//     unconditional and idempotent; it is safe because in MIGRATING nobody
//     writes old (I0, I2), so old's copy is at most as new as the snapshot.
//
// # Operations and the exact commands they send
//
// The proxy runs the client operations (ReadRule, WriteMarked,
// UpdateMarked, MultiMarked, DeleteMarked, Ensure) for commands on moving
// keys through control clients (NewClient, ClientOptions); their replies are
// the client command's raw RESP bytes, exactly as the node sent them, so
// the proxy passes them on untouched. The Command builders
// (SnapshotCommands, RestoreCommand, WriteCommands, MultiWriteCommands,
// DeleteCommands, ReadCommands, EnsureCheckCommand, SetMarkerCommand,
// UnlinkCommand, ScriptLoadCommand) return exactly what the functions here
// send. T is the marker TTL in ms (default 7 days), mk is MarkerKey(epoch,
// k), pk is PlaceKey(k), the placement record of a key written with a
// hash= override (place.go). With Mover.Place set, WriteMarked,
// UpdateMarked and MultiMarked add SyncCommand to their transaction on new
// and UNLINK the records on old too; DeleteMarked deletes the record.
//
//	Move(k)         old: MULTI; DUMP k; PTTL k; GET pk; EXEC
//	                new: EVALSHA <sha> 2 k mk <ttl ms|0> <payload> T
//	                     (a key with a placement record X, or Mover.Place:
//	                     EVALSHA <sha> 3 k mk pk <ttl ms|0> <payload> T X)
//	                     (-NOSCRIPT: SCRIPT LOAD <script>, then EVALSHA again)
//	                old: UNLINK k pk   (unless Missing or failed)
//	MoveBatch(ks)   the same, batched: snapshot MULTI blocks of ≤ 32 keys
//	                (~64 KB) in one pipeline, then restore script calls of
//	                ≤ 32 keys (~64 KB) in one pipeline (EVALSHA <sha> 3n
//	                k1 mk1 pk1 … T ttl1 payload1 place1 …), then one
//	                UNLINK k1 … kn pk1 … pkn
//	Ensure(k)       new: EXISTS k mk   (> 0: done) — else Move(k)
//	WriteMarked     new: MULTI; <write>; SET mk 1 PX T; EXEC
//	                old: UNLINK k   (after EXEC succeeded; not with
//	                Mover.LeaveOld, which the proxy sets: the migrator
//	                unlinks the stale copy, and Ensure's Move skips it too)
//	UpdateMarked    Ensure(k), then WriteMarked
//	MultiMarked     Ensure(k1) … Ensure(kn), then
//	                new: MULTI; <cmd>; SET mk1 1 PX T; …; SET mkn 1 PX T; EXEC
//	                old: UNLINK k1 … kn   (after EXEC succeeded)
//	DeleteMarked    old: EXISTS k   (for the reply: a migrator may unlink it next)
//	                new: MULTI; EXISTS mk; DEL k; SET mk 1 PX T; EXEC
//	                old: UNLINK k
//	ReadRule        new: MULTI; EXISTS k; EXISTS mk; <read>; EXEC
//	                old: MULTI; EXISTS k; <read>; EXEC   (at the same time)
//	                new: as the first probe    (if new had neither, old no k)
//	Migrator        source: DBSIZE; SCAN <cursor> COUNT 200; MGET pk…; then
//	                MoveBatch with the records just read (snapshot blocks
//	                without GET pk, UNLINK naming only existing records);
//	                EVAL <GCScript> … for records whose key is gone. Its
//	                pipelines use raw RESP connections made from the Nodes'
//	                go-redis options (wire.go), everything else go-redis
//	Cleanup         node: SCAN <cursor> MATCH <MarkerPattern(epoch)> COUNT 200; UNLINK …
//	RemoveLeftovers node: SCAN <cursor> COUNT 200; MGET pk…; UNLINK …;
//	                EVAL <GCScript> …
//	CheckDrained    node: DBSIZE
//	LoadScript      node: SCRIPT LOAD <RestoreScript>
//
// Nothing here sends CLIENT, CONFIG, MIGRATE, OBJECT or any other command
// Memorystore blocks; NewClient builds go-redis clients with Protocol 2 and
// DisableIdentity (no CLIENT SETINFO), and the same AUTH/TLS as the data
// path (backend.Security).
//
// # Invariants each part upholds (rebalance.md §4.1, §4.8)
//
//   - Move/MoveBatch: never overwrite anything on new (restore only if
//     neither k nor mk exists: I1, R3, R4, R5, R7); set mk with every
//     restore, so a key that later expires on new is not revived from a
//     leftover on old (R9); carry the TTL (relative, see below); only remove
//     from old (I2).
//   - Ensure/UpdateMarked: an RMW never starts from an empty base while the
//     value is still on old (R8).
//   - WriteMarked/DeleteMarked: writes and deletes go to new only and set
//     mk in the same transaction, before old is touched (I1; R3 needs the
//     tombstone before the UNLINK, R5 needs the marker to outlive the
//     value).
//   - ReadRule: new and old at once, then new (R6): a key that exists
//     throughout is never reported missing, and a tombstone on new hides a
//     stale copy on old.
//   - Migrator: one full SCAN pass sees every key still on the source (I2);
//     the verification passes make COMMIT exact (I3): Run returns nil only
//     after a full pass that found no moving key. Progress is checkpointed
//     so a new leader resumes (R11 is the caller's fencing).
//   - Cleanup/RemoveLeftovers: run only after the COMMIT barrier, when no
//     pod consults markers or old copies any more.
//
// # Stages: who calls what, when
//
//   - PREPARE: NewClient for every node of both rings (primary endpoints);
//     LoadScript on every destination (also the pre-flight check that
//     EVALSHA and RESTORE are allowed there).
//   - FREEZE: reads of moving keys may already use ReadRule (new is empty
//     or clean, so it falls back to old). Writes are held by the proxy.
//   - MIGRATING, proxy, per moving key (old = owner under the old ring,
//     new = owner under the new ring, epoch = the new ring's version, the
//     SAME epoch on every pod and in the migrator): reads → ReadRule; blind
//     overwrites → WriteMarked; RMW/TTL/blocking → UpdateMarked (or Ensure,
//     then the command plus SET mk in one MULTI); deletes → DeleteMarked;
//     multi-key same-node commands → MultiMarked (Ensure every key, run on
//     new, set mk for every key, UNLINK their old copies). Refuse
//     client keys for which IsMarker is true and filter them from SCAN,
//     KEYS and RANDOMKEY. Do not retry a non-idempotent write whose reply
//     was lost.
//   - MIGRATING, leader (after every pod acknowledged MIGRATING): Plan,
//     NewMigrator per source (From = the stored checkpoint, if any), Run
//     them concurrently, store each Checkpoint in rebalance_progress, show
//     Progress in STATUS. After a source failover resume that source with
//     Cursor 0. Pause/Resume for operator control or memory pressure, Abort
//     to stop.
//   - COMMIT: only when every migrator's Run returned nil (PhaseDone).
//   - CLEANUP (after the COMMIT barrier): Cleanup(node, epoch) on every
//     node; RemoveLeftovers(node, owner-under-new-ring ≠ node) where
//     failovers may have lost UNLINKs; CheckDrained on a removed node
//     before dropping it.
//
// # Deviations from research/rebalance.md
//
//   - TTL: t0 is taken when the snapshot is SENT, not when its reply
//     arrives, so the snapshot's latency can only shorten the TTL. The
//     restore side can lengthen it by the time between computing the TTL
//     and the server running RESTORE (well under 1 ms on an idle loopback,
//     tens of ms only under CPU starvation). ABSTTL is not used: it would
//     depend on the two servers' clocks agreeing. A key whose remaining
//     TTL is below MinTTL (5 ms) is not restored (Expired) and is unlinked.
//   - The restore script is run with EVALSHA first (its SHA is a constant)
//     and loaded with SCRIPT LOAD on -NOSCRIPT, which covers the empty
//     script cache after a failover without a per-node "loaded" state.
//   - The UNLINKs of a batch are one multi-key UNLINK, not one per key.
//   - "busy" and "marker" refusals are one counter (AlreadyOnNew): the
//     script returns 0 for both.
//   - The migrator only moves keys the source owns under the old ring
//     (MovingFrom). A key on the source that it does not own is a leftover:
//     restoring it on its owner could resurrect a deleted value, so it is
//     left for RemoveLeftovers.
//   - Batches of 32 keys / 256 KiB, Config.Inflight (default 2) in flight
//     per destination node across all sources (rebalance.md suggests 2 per
//     source) and twice that per source, streamed across SCAN replies
//     (stream.go) with SCAN and the MGET of records running up to 4
//     replies ahead; sources run in parallel. Only the leader
//     migrates, so the fleet-wide bound is the leader's: no semaphore
//     across pods is needed. The rate limits are static token buckets; the
//     adaptive parts (halve on p99, pause at 85% destination memory) and
//     moving big keys last are left to the caller (Pause/Resume), as is
//     the pre-flight big-key scan.
//   - A verification pass that finds moving keys moves them, and another
//     verification pass follows (at most MaxVerifyPasses, default 10,
//     then ErrNotConverged with the stuck keys in Progress).
//   - The marker prefix is "\xff__jrb:" (DESIGN.md's example was
//     "\xff__rb:").
package rebalance
