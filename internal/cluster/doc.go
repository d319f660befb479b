// Package cluster is jupiter's control plane in cluster mode: the adapter
// to hedge/spindle on Cloud Spanner and the ring's home in Spanner.
//
// Every pod runs a Member (a hedge.Op): spindle elects one leader through
// the lock table; hedge gives Send (pod → leader) and Broadcast (leader →
// pods). The ring is stored by a Store; only the leader writes it, through
// the Controller, and every pod follows it with a Syncer:
//
//	any pod:  Cluster.Submit(AdminRequest) ──hedge SendToLeader──▶ leader
//	leader:   Controller.Apply: load ring → dedupe request id → Plan
//	          (validate: address, duplicate, last node, weight) → ping new
//	          node → Fence (spindle HasLock → token) → Store.CompareAndSwap
//	          (one Spanner transaction: lock row token == ours, stored
//	          version == expected, write ring row + history row) →
//	          Broadcast RingUpdated{version} (best-effort, bounded) → reply
//	every pod: Syncer: on RingUpdated, every PollInterval and at start,
//	          Store.Load → Prepare → ring.Holder.Store → Publish when newer
//
// How `jupiter serve --spanner-db …` (cmd/jupiter/cluster.go) uses it:
//
//   - Options.Publish hands every applied ring to the proxy Router, before
//     the Syncer counts the version as applied; so a pod that reports
//     ring_version N routes by N. The first Publish makes /readyz answer
//     200: until then the pod is not ready and keyed commands get
//     -TRYAGAIN. --backends is Options.Seed: written by the leader only
//     when Spanner has no ring, ignored (stale or not) once one exists.
//   - AdminController is the admin.Controller of cluster mode: `JUPITER
//     STATUS|NODES` and GET /v1/status|/v1/nodes answer from this pod's
//     view without reading Spanner; ADD/REMOVE/WEIGHT (RESP, HTTP or
//     `jupiter ctl`, on any pod) go to the leader with Submit and reply
//     once the leader committed the change (and this pod applied it). The
//     leader's refusals keep their message and the ring is unchanged.
//   - The leader's Controller.Apply broadcasts the new version and waits
//     (BroadcastTimeout) for the pods' acks, which they send once they
//     route by it; so when an admin change returns +OK, every pod the
//     leader knows already serves it (measured: median 30-40 ms from
//     command to all 3 pods on the emulator; BenchmarkClusterConvergence).
//   - Shutdown bounds stopping hedge: on SIGTERM the pod drains clients,
//     then stops the member (at most 5s; without Spanner hedge cannot stop
//     cleanly, and the lock lease expires on its own).
//
// Why this shape:
//
//   - The ring row is changed only by a compare-and-set fenced by spindle's
//     token, in the same serializable transaction. hedge's own Put appends
//     to its log table without any check and readers take the latest row by
//     timestamp, so a deposed leader could still win; a CAS on an explicit
//     version cannot fork, and the token check refuses a leader whose lock
//     was taken over.
//   - Broadcast is a hint; Spanner is the truth. hedge's Broadcast reaches
//     only members in its current list, so pods also poll: a missed
//     broadcast delays a pod by at most PollInterval, never forks it.
//   - hedge's SendToLeader retries, so the leader deduplicates by request
//     id (the ring row and the history table remember which request made
//     which version).
//   - Spanner down: pods keep the last ring they applied (availability of
//     the cache first); admin changes fail with ERROR_CODE_UNAVAILABLE.
//     The Spanner client retries an unreachable server until its context
//     ends, so each sync is bounded (SyncerConfig.SyncTimeout, default
//     max(5s, 2*PollInterval)); a failed read sets Syncer.StoreError
//     (STATUS spanner_error), and while it is set AdminController refuses
//     changes at once ("Spanner is unreachable …") instead of waiting on
//     hedge, whose leader lookup reads Spanner without a deadline. The
//     pod stays ready: it serves its last ring.
//
// Rebalancing (rebalancer.go): in the default staged mode an ADD, REMOVE or
// WEIGHT writes a "prepare" record (routed ring R, Target R', Epoch) instead
// of switching rings; the leader's Rebalancer then walks freeze, migrating
// (the rebalance package's migrators, checkpointed through ProgressStore),
// commit and back to stable, one fenced version per stage, each only once
// every pod with a live lease in the member Registry has applied the
// previous one (its registry heartbeat or its broadcast ack says so). Pods register in the Registry before their first ring
// read, so a barrier that does not see a pod cannot be overtaken by it.
// Config.Immediate (--rebalance=remap) keeps the old one-step switch.
//
// Fleet load (load.go): with Options.PodLoad set (the capacity gatherer
// runs), the leader broadcasts a CapacityPoll every capacity interval and
// sums the per-node request rates every pod answers with; the next poll
// carries the sums to every pod, so JUPITER NODES ops_fleet on any pod is
// the whole fleet's rate, at most about two intervals old. It rides on
// hedge Broadcast only: no Spanner traffic.
//
// History: every version is appended to the history table (default
// jupiter_ring_history) in the same transaction as the ring row, with a
// human-readable ring_text and change, so operators audit with plain SQL.
// jupiter does not write ring copies into hedge's log table: the history
// table is the auditable record (DESIGN.md allows either).
//
// The schema is DDL (ddl/jupiter.sql is its rendering with default table
// names); ApplyDDL creates what is missing.
//
// Messages on the wire are the protobufs of proto/v1 (LeaderMessage,
// BroadcastMessage …), dispatched on their oneof.
package cluster
