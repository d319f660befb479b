package cluster

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/template"

	database "cloud.google.com/go/spanner/admin/database/apiv1"
	"cloud.google.com/go/spanner/admin/database/apiv1/databasepb"
	instance "cloud.google.com/go/spanner/admin/instance/apiv1"
	"cloud.google.com/go/spanner/admin/instance/apiv1/instancepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TableNames names the Spanner tables cluster mode uses. They are
// configurable so that several jupiter deployments (or jupiter next to other
// hedge users) can share one database.
type TableNames struct {
	// Lock is spindle's lock table (leader election).
	Lock string
	// Log is hedge's append-only key/value log table. jupiter does not
	// route from it, but hedge requires it (Put/Get, semaphores).
	Log string
	// Ring holds one authoritative row per ring name: the current ring.
	Ring string
	// History holds every ring version ever committed, for audit.
	History string
}

// DefaultTableNames returns the table names used when none are configured.
func DefaultTableNames() TableNames {
	return TableNames{
		Lock:    "jupiter_lock",
		Log:     "jupiter_log",
		Ring:    "jupiter_ring",
		History: "jupiter_ring_history",
	}
}

// Members is the member lease registry table: the ring table's name with
// "_members" (derived, so existing deployments need no new setting).
func (n TableNames) Members() string { return n.Ring + "_members" }

// Progress is the rebalance checkpoint table: the ring table's name with
// "_progress".
func (n TableNames) Progress() string { return n.Ring + "_progress" }

var identRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,118}$`) // room for "_progress"

// Validate reports whether every name is a plain Spanner identifier. The
// names are interpolated into SQL, so anything else is refused.
func (n TableNames) Validate() error {
	seen := map[string]string{}
	for _, f := range []struct{ field, v string }{
		{"lock", n.Lock}, {"log", n.Log}, {"ring", n.Ring}, {"history", n.History},
		{"members (ring + _members)", n.Members()}, {"progress (ring + _progress)", n.Progress()},
	} {
		if !identRe.MatchString(f.v) {
			return fmt.Errorf("cluster: %s table name %q is not a Spanner identifier", f.field, f.v)
		}
		if prev, ok := seen[strings.ToLower(f.v)]; ok {
			return fmt.Errorf("cluster: %s and %s tables have the same name %q", prev, f.field, f.v)
		}
		seen[strings.ToLower(f.v)] = f.field
	}
	return nil
}

// ddlTemplate is the canonical schema. ddl/jupiter.sql is this template
// rendered with DefaultTableNames (a test keeps the two identical), so the
// file operators read is exactly what ApplyDDL creates.
//
// The lock and log tables are byte-for-byte the schemas spindle v2.2.0 and
// hedge v2.0.1 ship in their testdata/emuddl.sql; their code addresses the
// columns by name, so only the table names may change.
const ddlTemplate = `-- jupiter cluster-mode schema (Cloud Spanner, GoogleSQL dialect).
-- Statements are separated by ';'. Generated from internal/cluster/ddl.go
-- with the default table names; ` + "`jupiter ddl`" + ` prints it with custom names.

-- spindle lock table (leader election), schema of spindle v2.2.0.
-- hedge names its lock row 'hedge/spindle/lockname/<lock name>'. token is the
-- commit timestamp of the winning lock transaction: spindle's fencing token
-- (HasLock returns xxhash64 of it in RFC 3339 nano UTC form), writer is the
-- leader's hedge address (host:port). Rows '<name>_<token>' are transient.
CREATE TABLE {{.Lock}} (
    name STRING(MAX) NOT NULL,
    heartbeat TIMESTAMP OPTIONS (allow_commit_timestamp=true),
    token TIMESTAMP OPTIONS (allow_commit_timestamp=true),
    writer STRING(MAX)
) PRIMARY KEY (name);

-- hedge append-only log table (Put/Get, semaphores), schema of hedge v2.0.1.
-- jupiter never routes from it: the ring lives in {{.Ring}}.
CREATE TABLE {{.Log}} (
    id STRING(MAX),
    key STRING(MAX),
    value STRING(MAX),
    leader STRING(MAX),
    timestamp TIMESTAMP OPTIONS (allow_commit_timestamp=true)
) PRIMARY KEY (key, id);

-- The authoritative ring: one row per ring name ('default'). Only the leader
-- writes it, in a read-write transaction that checks its spindle token
-- against {{.Lock}} and the expected version (compare-and-set).
-- ring is a protobuf jupiter.v1.RingState; leader_token is spindle's token as
-- a two's-complement INT64.
CREATE TABLE {{.Ring}} (
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
-- {{.Ring}} write. Audit with plain SQL, e.g.
--   SELECT version, ring_text, change, leader, committed_at
--   FROM {{.History}} WHERE name = 'default' ORDER BY version DESC;
CREATE TABLE {{.History}} (
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
CREATE INDEX {{.History}}_by_request_id ON {{.History}} (name, request_id);

-- Member lease registry: every pod upserts the ring version it routes by
-- every poll interval; its lease runs lease_ms from updated_at (Spanner's
-- clock). The leader advances a rebalance stage only when every pod with a
-- live lease has applied it. A pod deletes its row on clean shutdown.
CREATE TABLE {{.Ring}}_members (
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
CREATE TABLE {{.Ring}}_progress (
    name STRING(MAX) NOT NULL,
    epoch INT64 NOT NULL,
    source STRING(MAX) NOT NULL,
    progress BYTES(MAX) NOT NULL,
    updated_at TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp=true)
) PRIMARY KEY (name, epoch, source);
`

var ddlTmpl = template.Must(template.New("ddl").Option("missingkey=error").Parse(ddlTemplate))

// RenderDDL returns the schema as a commented SQL script for the given table
// names (what ddl/jupiter.sql holds for the defaults). It panics if names are
// invalid; call Validate first for user input.
func RenderDDL(names TableNames) string {
	if err := names.Validate(); err != nil {
		panic(err)
	}
	var b strings.Builder
	if err := ddlTmpl.Execute(&b, names); err != nil {
		panic(err) // the template is a constant; only a programming error gets here
	}
	return b.String()
}

// DDL returns the schema statements for names, without comments or
// terminating semicolons, ready for the Spanner admin API.
func DDL(names TableNames) []string {
	return ParseDDL(RenderDDL(names))
}

// ParseDDL splits a SQL script into statements: "--" comments are removed,
// statements are separated by ';' and blank statements are dropped. Quotes
// (', ", `) are honoured, so ';' or "--" inside a literal do not split.
func ParseDDL(script string) []string {
	var (
		stmts []string
		cur   strings.Builder
		quote rune
	)
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			stmts = append(stmts, normalizeSpace(s))
		}
		cur.Reset()
	}
	rs := []rune(script)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote != 0:
			cur.WriteRune(c)
			if c == '\\' && i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
			cur.WriteRune(c)
		case c == '-' && i+1 < len(rs) && rs[i+1] == '-':
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
			cur.WriteRune('\n')
		case c == ';':
			flush()
		default:
			cur.WriteRune(c)
		}
	}
	flush()
	return stmts
}

// normalizeSpace trims every line and drops empty ones, so that the same
// statement written with different indentation compares equal.
func normalizeSpace(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var (
	dbPathRe     = regexp.MustCompile(`^projects/([^/]+)/instances/([^/]+)/databases/([^/]+)$`)
	createObjRe  = regexp.MustCompile(`(?is)^\s*CREATE\s+(?:UNIQUE\s+)?(?:NULL_FILTERED\s+)?(TABLE|INDEX)\s+(?:IF\s+NOT\s+EXISTS\s+)?` + "`?" + `([A-Za-z_][A-Za-z0-9_]*)`)
	emulatorHost = func() string { return os.Getenv("SPANNER_EMULATOR_HOST") }
)

// ApplyDDL creates whatever of stmts is missing in database db
// ("projects/P/instances/I/databases/D"). It is meant for first-time setup
// and is idempotent: a CREATE TABLE or CREATE INDEX whose object already
// exists is skipped (by name — existing tables are not compared column by
// column). Other statements are always applied.
//
// Against the emulator (SPANNER_EMULATOR_HOST set) it also creates the
// instance and the database when they are missing. Against real Spanner it
// never creates instances or databases: that is an infrastructure decision
// with billing and IAM consequences, so a missing database is an error.
func ApplyDDL(ctx context.Context, db string, stmts []string) error {
	m := dbPathRe.FindStringSubmatch(db)
	if m == nil {
		return fmt.Errorf("cluster: database %q is not projects/P/instances/I/databases/D", db)
	}
	project, inst := m[1], m[2]
	instPath := "projects/" + project + "/instances/" + inst
	emulator := emulatorHost() != ""

	if emulator {
		if err := ensureEmulatorInstance(ctx, project, instPath); err != nil {
			return err
		}
	}

	dac, err := database.NewDatabaseAdminClient(ctx)
	if err != nil {
		return fmt.Errorf("cluster: database admin client: %w", err)
	}
	defer dac.Close()

	_, err = dac.GetDatabase(ctx, &databasepb.GetDatabaseRequest{Name: db})
	switch {
	case status.Code(err) == codes.NotFound && emulator:
		op, err := dac.CreateDatabase(ctx, &databasepb.CreateDatabaseRequest{
			Parent:          instPath,
			CreateStatement: "CREATE DATABASE `" + m[3] + "`",
			ExtraStatements: stmts,
		})
		if err == nil {
			_, err = op.Wait(ctx)
		}
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.AlreadyExists { // else: a concurrent setup won; continue below
			return fmt.Errorf("cluster: create database %s: %w", db, err)
		}
	case err != nil:
		return fmt.Errorf("cluster: get database %s: %w", db, err)
	}

	cur, err := dac.GetDatabaseDdl(ctx, &databasepb.GetDatabaseDdlRequest{Database: db})
	if err != nil {
		return fmt.Errorf("cluster: read schema of %s: %w", db, err)
	}
	existing := map[string]bool{}
	for _, s := range cur.GetStatements() {
		if kind, name := createdObject(s); name != "" {
			existing[kind+" "+strings.ToLower(name)] = true
		}
	}
	var todo []string
	for _, s := range stmts {
		if kind, name := createdObject(s); name != "" && existing[kind+" "+strings.ToLower(name)] {
			continue
		}
		todo = append(todo, s)
	}
	if len(todo) == 0 {
		return nil
	}
	op, err := dac.UpdateDatabaseDdl(ctx, &databasepb.UpdateDatabaseDdlRequest{Database: db, Statements: todo})
	if err != nil {
		return fmt.Errorf("cluster: update schema of %s: %w", db, err)
	}
	if err := op.Wait(ctx); err != nil {
		return fmt.Errorf("cluster: update schema of %s: %w", db, err)
	}
	return nil
}

// createdObject returns ("TABLE"|"INDEX", name) for a CREATE TABLE/INDEX
// statement and ("", "") for anything else.
func createdObject(stmt string) (kind, name string) {
	m := createObjRe.FindStringSubmatch(stmt)
	if m == nil {
		return "", ""
	}
	return strings.ToUpper(m[1]), m[2]
}

// ensureEmulatorInstance creates instPath on the emulator if it is missing.
func ensureEmulatorInstance(ctx context.Context, project, instPath string) error {
	iac, err := instance.NewInstanceAdminClient(ctx)
	if err != nil {
		return fmt.Errorf("cluster: instance admin client: %w", err)
	}
	defer iac.Close()
	_, err = iac.GetInstance(ctx, &instancepb.GetInstanceRequest{Name: instPath})
	if err == nil {
		return nil
	}
	if status.Code(err) != codes.NotFound {
		return fmt.Errorf("cluster: get instance %s: %w", instPath, err)
	}
	op, err := iac.CreateInstance(ctx, &instancepb.CreateInstanceRequest{
		Parent:     "projects/" + project,
		InstanceId: instPath[strings.LastIndexByte(instPath, '/')+1:],
		Instance: &instancepb.Instance{
			Config:      "projects/" + project + "/instanceConfigs/emulator-config",
			DisplayName: "jupiter emulator",
			NodeCount:   1,
		},
	})
	if err != nil {
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return fmt.Errorf("cluster: create instance %s: %w", instPath, err)
	}
	if _, err := op.Wait(ctx); err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("cluster: create instance %s: %w", instPath, err)
	}
	return nil
}
