-- jupiter cluster-mode schema (Cloud Spanner, GoogleSQL dialect).
-- Statements are separated by ';'. Generated from internal/cluster/ddl.go
-- with the default table names; `jupiter ddl` prints it with custom names.

-- spindle lock table (leader election), schema of spindle v2.2.0.
-- hedge names its lock row 'hedge/spindle/lockname/<lock name>'. token is the
-- commit timestamp of the winning lock transaction: spindle's fencing token
-- (HasLock returns xxhash64 of it in RFC 3339 nano UTC form), writer is the
-- leader's hedge address (host:port). Rows '<name>_<token>' are transient.
CREATE TABLE jupiter_lock (
    name STRING(MAX) NOT NULL,
    heartbeat TIMESTAMP OPTIONS (allow_commit_timestamp=true),
    token TIMESTAMP OPTIONS (allow_commit_timestamp=true),
    writer STRING(MAX)
) PRIMARY KEY (name);

-- hedge append-only log table (Put/Get, semaphores), schema of hedge v2.0.1.
-- jupiter never routes from it: the ring lives in jupiter_ring.
CREATE TABLE jupiter_log (
    id STRING(MAX),
    key STRING(MAX),
    value STRING(MAX),
    leader STRING(MAX),
    timestamp TIMESTAMP OPTIONS (allow_commit_timestamp=true)
) PRIMARY KEY (key, id);

-- The authoritative ring: one row per ring name ('default'). Only the leader
-- writes it, in a read-write transaction that checks its spindle token
-- against jupiter_lock and the expected version (compare-and-set).
-- ring is a protobuf jupiter.v1.RingState; leader_token is spindle's token as
-- a two's-complement INT64.
CREATE TABLE jupiter_ring (
    name STRING(MAX) NOT NULL,
    version INT64 NOT NULL,
    stage STRING(MAX) NOT NULL,
    ring BYTES(MAX) NOT NULL,
    leader STRING(MAX),
    leader_token INT64,
    request_id STRING(MAX),
    updated_at TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp=true)
) PRIMARY KEY (name);

-- Every committed ring version, appended in the same transaction as the
-- jupiter_ring write. Audit with plain SQL, e.g.
--   SELECT version, ring_text, change, leader, committed_at
--   FROM jupiter_ring_history WHERE name = 'default' ORDER BY version DESC;
CREATE TABLE jupiter_ring_history (
    name STRING(MAX) NOT NULL,
    version INT64 NOT NULL,
    stage STRING(MAX) NOT NULL,
    ring BYTES(MAX) NOT NULL,
    ring_text STRING(MAX) NOT NULL,
    change STRING(MAX),
    leader STRING(MAX),
    leader_token INT64,
    request_id STRING(MAX),
    committed_at TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp=true)
) PRIMARY KEY (name, version);

-- Finds the version an admin request produced (idempotent retries).
CREATE INDEX jupiter_ring_history_by_request_id ON jupiter_ring_history (name, request_id);

-- Member lease registry: every pod upserts the ring version it routes by
-- every poll interval; its lease runs lease_ms from updated_at (Spanner's
-- clock). The leader advances a rebalance stage only when every pod with a
-- live lease has applied it. A pod deletes its row on clean shutdown.
CREATE TABLE jupiter_ring_members (
    name STRING(MAX) NOT NULL,
    pod STRING(MAX) NOT NULL,
    applied_version INT64 NOT NULL,
    stage STRING(MAX) NOT NULL,
    lease_ms INT64 NOT NULL,
    updated_at TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp=true)
) PRIMARY KEY (name, pod);

-- Rebalance checkpoints: per rebalance epoch and source node, the
-- migrator's progress (JSON of rebalance.Progress: phase, SCAN cursor,
-- counters), written by the leader (fenced by its spindle token) so that a
-- new leader resumes where the old one stopped.
CREATE TABLE jupiter_ring_progress (
    name STRING(MAX) NOT NULL,
    epoch INT64 NOT NULL,
    source STRING(MAX) NOT NULL,
    progress BYTES(MAX) NOT NULL,
    updated_at TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp=true)
) PRIMARY KEY (name, epoch, source);
