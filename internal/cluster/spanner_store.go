package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/spanner"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/cespare/xxhash/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
)

// HedgeLockRow is the name of the spindle lock row hedge uses for lockName:
// hedge v2.0.1 (hedge.go, Op.Run) creates its spindle lock as
// spindle.New(client, lockTable, "hedge/spindle/lockname/"+lockName, ...).
func HedgeLockRow(lockName string) string { return "hedge/spindle/lockname/" + lockName }

// SpindleToken computes the fencing token spindle v2.2.0 derives from the
// lock row's token column (the commit timestamp of the winning lock
// transaction): xxhash64 of the timestamp in UTC RFC 3339 nano form. It is
// the value spindle's HasLock returns.
func SpindleToken(t time.Time) uint64 {
	return xxhash.Sum64String(t.UTC().Format(time.RFC3339Nano))
}

// SpannerStore is the Spanner Store: one authoritative row per ring name in
// the ring table, every version appended to the history table, both written
// in the same read-write transaction that checks spindle's lock row.
type SpannerStore struct {
	client  *spanner.Client
	tables  TableNames
	lockRow string // spindle lock row name (HedgeLockRow(lockName))
	name    string // ring row name
}

// NewSpannerStore returns a Store on client. lockRow is the spindle lock
// row the fence reads (HedgeLockRow(cfg.LockName) when the lock is
// hedge's); ringName is the ring's row key (e.g. "default").
func NewSpannerStore(client *spanner.Client, tables TableNames, lockRow, ringName string) (*SpannerStore, error) {
	if err := tables.Validate(); err != nil {
		return nil, err
	}
	if client == nil || lockRow == "" || ringName == "" {
		return nil, errors.New("cluster: NewSpannerStore needs a client, a lock row and a ring name")
	}
	return &SpannerStore{client: client, tables: tables, lockRow: lockRow, name: ringName}, nil
}

var ringCols = []string{"version", "stage", "ring", "leader", "leader_token", "request_id", "updated_at"}

// Load implements Store with a strong single read.
func (s *SpannerStore) Load(ctx context.Context) (*State, error) {
	row, err := s.client.Single().ReadRow(ctx, s.tables.Ring, spanner.Key{s.name}, ringCols)
	if errors.Is(err, spanner.ErrRowNotFound) {
		// Only a missing row means "no ring": a lost session or a missing
		// database is also codes.NotFound, and must read as an outage.
		return nil, ErrNoRing
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: load ring: %w", err)
	}
	var (
		version   int64
		stage     string
		blob      []byte
		leader    spanner.NullString
		token     spanner.NullInt64
		requestID spanner.NullString
		updated   time.Time
	)
	if err := row.Columns(&version, &stage, &blob, &leader, &token, &requestID, &updated); err != nil {
		return nil, fmt.Errorf("cluster: load ring: %w", err)
	}
	st, err := decodeState(blob, uint64(version))
	if err != nil {
		return nil, err
	}
	st.Stage = stage
	st.RequestID = requestID.StringVal
	st.Leader = leader.StringVal
	st.Token = uint64(token.Int64)
	st.UpdatedAt = updated
	return st, nil
}

// lockRowToken reads spindle's lock row inside txn with spindle's own query
// (spindle.Lock.getCurrentToken: "select token, writer from <table> where
// name = @name") and returns the token as spindle computes it.
func (s *SpannerStore) lockRowToken(ctx context.Context, txn *spanner.ReadWriteTransaction) (tok uint64, writer string, ok bool, err error) {
	stmt := spanner.Statement{
		SQL:    "select token, writer from " + s.tables.Lock + " where name = @name",
		Params: map[string]any{"name": s.lockRow},
	}
	iter := txn.Query(ctx, stmt)
	defer iter.Stop()
	for {
		row, err := iter.Next()
		if err == iterator.Done {
			return tok, writer, ok, nil
		}
		if err != nil {
			return 0, "", false, err
		}
		var t spanner.NullTime
		var w spanner.NullString
		if err := row.Columns(&t, &w); err != nil {
			return 0, "", false, err
		}
		if t.Valid {
			tok, writer, ok = SpindleToken(t.Time), w.StringVal, true
		}
	}
}

// CompareAndSwap implements Store. One read-write transaction: (a) read the
// spindle lock row and require token and writer to be the caller's — a
// leader that lost the lock (its successor's lock transaction changed the
// token) is refused; (b) read the ring row and require version == expect;
// (c) write the ring row and insert the history row. Spanner's serializable
// transactions make (a)–(c) atomic with respect to spindle's lock takeover.
func (s *SpannerStore) CompareAndSwap(ctx context.Context, expect uint64, next *ring.Ring, c Commit) error {
	if err := checkNext(expect, next); err != nil {
		return err
	}
	blob, err := encodeRing(next, c)
	if err != nil {
		return err
	}
	stage := stageOr(c.Stage)
	text := RingText(next.Nodes())
	var reason error // sentinel failure, set inside the txn func (survives retries)
	_, err = s.readWrite(ctx, func(ctx context.Context, txn *spanner.ReadWriteTransaction) error {
		reason = nil
		tok, writer, ok, err := s.lockRowToken(ctx, txn)
		if err != nil {
			return err
		}
		if !ok || tok != c.Token || writer != c.Leader {
			reason = fmt.Errorf("%w: lock %q is held by %q, caller is %q (token match %v)",
				ErrNotLeader, s.lockRow, writer, c.Leader, ok && tok == c.Token)
			return reason
		}
		row, err := txn.ReadRow(ctx, s.tables.Ring, spanner.Key{s.name}, []string{"version"})
		var have int64
		switch {
		case errors.Is(err, spanner.ErrRowNotFound):
			have = 0
		case err != nil:
			return err
		default:
			if err := row.Columns(&have); err != nil {
				return err
			}
		}
		if uint64(have) != expect {
			reason = fmt.Errorf("%w: stored version %d, expected %d", ErrVersionConflict, have, expect)
			return reason
		}
		ringVals := []any{s.name, int64(next.Version()), stage, blob, c.Leader, int64(c.Token),
			nullString(c.RequestID), spanner.CommitTimestamp}
		ringMut := spanner.Update
		if expect == 0 {
			ringMut = spanner.Insert
		}
		return txn.BufferWrite([]*spanner.Mutation{
			ringMut(s.tables.Ring,
				[]string{"name", "version", "stage", "ring", "leader", "leader_token", "request_id", "updated_at"},
				ringVals),
			spanner.Insert(s.tables.History,
				[]string{"name", "version", "stage", "ring", "ring_text", "change", "leader", "leader_token", "request_id", "committed_at"},
				[]any{s.name, int64(next.Version()), stage, blob, text, c.Change, c.Leader, int64(c.Token),
					nullString(c.RequestID), spanner.CommitTimestamp}),
		})
	})
	switch {
	case err == nil:
		return nil
	case reason != nil:
		return reason
	case spanner.ErrCode(err) == codes.AlreadyExists:
		// A history row for next.Version() exists although the ring row said
		// otherwise (e.g. the ring row was edited by hand): not ours to fix.
		return fmt.Errorf("%w: history already has version %d: %v", ErrVersionConflict, next.Version(), err)
	default:
		return fmt.Errorf("cluster: compare-and-swap ring v%d→v%d: %w", expect, next.Version(), err)
	}
}

var historyCols = "version, stage, ring, ring_text, change, leader, request_id, committed_at"

// History implements Store.
func (s *SpannerStore) History(ctx context.Context, limit int) ([]HistoryEntry, error) {
	sql := "select " + historyCols + " from " + s.tables.History + " where name = @name order by version desc"
	params := map[string]any{"name": s.name}
	if limit > 0 {
		sql += " limit @limit"
		params["limit"] = int64(limit)
	}
	return s.queryHistory(ctx, spanner.Statement{SQL: sql, Params: params})
}

// FindRequest implements Store (uses the <history>_by_request_id index).
func (s *SpannerStore) FindRequest(ctx context.Context, requestID string) (*HistoryEntry, error) {
	if requestID == "" {
		return nil, nil
	}
	hs, err := s.queryHistory(ctx, spanner.Statement{
		SQL: "select " + historyCols + " from " + s.tables.History +
			"@{FORCE_INDEX=" + s.tables.History + "_by_request_id}" +
			" where name = @name and request_id = @rid order by version limit 1",
		Params: map[string]any{"name": s.name, "rid": requestID},
	})
	if err != nil || len(hs) == 0 {
		return nil, err
	}
	return &hs[0], nil
}

func (s *SpannerStore) queryHistory(ctx context.Context, stmt spanner.Statement) ([]HistoryEntry, error) {
	iter := s.client.Single().Query(ctx, stmt)
	defer iter.Stop()
	var out []HistoryEntry
	for {
		row, err := iter.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: read ring history: %w", err)
		}
		var (
			version             int64
			stage, text         string
			blob                []byte
			change, leader, rid spanner.NullString
			at                  time.Time
		)
		if err := row.Columns(&version, &stage, &blob, &text, &change, &leader, &rid, &at); err != nil {
			return nil, fmt.Errorf("cluster: read ring history: %w", err)
		}
		r, _, err := decodeRing(blob, uint64(version))
		if err != nil {
			return nil, err
		}
		out = append(out, HistoryEntry{
			Version:     uint64(version),
			Stage:       stage,
			Nodes:       r.Nodes(),
			RingText:    text,
			Change:      change.StringVal,
			Leader:      leader.StringVal,
			RequestID:   rid.StringVal,
			CommittedAt: at,
		})
	}
}

func nullString(s string) spanner.NullString {
	return spanner.NullString{StringVal: s, Valid: s != ""}
}

// Heartbeat implements Registry: a blind upsert whose commit timestamp
// starts the lease. Pods register before their first ring read (see
// Syncer), which is what makes a barrier that does not see a pod safe: that
// pod's first read comes after the barrier's stage was committed.
func (s *SpannerStore) Heartbeat(ctx context.Context, pod string, applied uint64, stage string, lease time.Duration) error {
	_, err := s.client.Apply(ctx, []*spanner.Mutation{spanner.InsertOrUpdate(s.tables.Members(),
		[]string{"name", "pod", "applied_version", "stage", "lease_ms", "updated_at"},
		[]any{s.name, pod, int64(applied), stage, lease.Milliseconds(), spanner.CommitTimestamp})},
		// One commit RPC without a read-write transaction: an idempotent
		// upsert, and the emulator's one-transaction-at-a-time lock is held
		// as briefly as possible (spindle's lock rounds need it too).
		spanner.ApplyAtLeastOnce())
	if err != nil {
		return fmt.Errorf("cluster: member heartbeat: %w", err)
	}
	return nil
}

// Leave implements Registry.
func (s *SpannerStore) Leave(ctx context.Context, pod string) error {
	_, err := s.client.Apply(ctx, []*spanner.Mutation{spanner.Delete(s.tables.Members(), spanner.Key{s.name, pod})})
	if err != nil {
		return fmt.Errorf("cluster: leave member registry: %w", err)
	}
	return nil
}

// Members implements Registry. Liveness is computed by Spanner's clock.
func (s *SpannerStore) Members(ctx context.Context) ([]Lease, error) {
	iter := s.client.Single().Query(ctx, spanner.Statement{
		SQL: "select pod, applied_version, stage, updated_at, " +
			"TIMESTAMP_ADD(updated_at, INTERVAL lease_ms MILLISECOND) > CURRENT_TIMESTAMP() " +
			"from " + s.tables.Members() + " where name = @name order by pod",
		Params: map[string]any{"name": s.name},
	})
	defer iter.Stop()
	var out []Lease
	for {
		row, err := iter.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: read member registry: %w", err)
		}
		var (
			l       Lease
			applied int64
		)
		if err := row.Columns(&l.Pod, &applied, &l.Stage, &l.Updated, &l.Live); err != nil {
			return nil, fmt.Errorf("cluster: read member registry: %w", err)
		}
		l.Applied = uint64(applied)
		out = append(out, l)
	}
}

// Prune implements Registry with one DML statement: the lease test runs
// on Spanner's clock inside the transaction, so a row renewed since the
// caller last looked is not deleted.
func (s *SpannerStore) Prune(ctx context.Context, expiredFor time.Duration) (int64, error) {
	var n int64
	_, err := s.readWrite(ctx, func(ctx context.Context, txn *spanner.ReadWriteTransaction) error {
		var err error
		n, err = txn.Update(ctx, spanner.Statement{
			SQL: "delete from " + s.tables.Members() + " where name = @name and " +
				"TIMESTAMP_ADD(updated_at, INTERVAL lease_ms + @after MILLISECOND) < CURRENT_TIMESTAMP()",
			Params: map[string]any{"name": s.name, "after": expiredFor.Milliseconds()},
		})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cluster: prune member registry: %w", err)
	}
	return n, nil
}

// SaveProgress implements ProgressStore, fenced by the lock row like
// CompareAndSwap: a deposed leader's migrator cannot overwrite the new
// leader's checkpoints.
func (s *SpannerStore) SaveProgress(ctx context.Context, c Commit, epoch uint64, source string, progress []byte) error {
	var reason error
	_, err := s.readWrite(ctx, func(ctx context.Context, txn *spanner.ReadWriteTransaction) error {
		reason = nil
		tok, writer, ok, err := s.lockRowToken(ctx, txn)
		if err != nil {
			return err
		}
		if !ok || tok != c.Token || writer != c.Leader {
			reason = fmt.Errorf("%w: lock %q is held by %q, caller is %q", ErrNotLeader, s.lockRow, writer, c.Leader)
			return reason
		}
		return txn.BufferWrite([]*spanner.Mutation{spanner.InsertOrUpdate(s.tables.Progress(),
			[]string{"name", "epoch", "source", "progress", "updated_at"},
			[]any{s.name, int64(epoch), source, progress, spanner.CommitTimestamp})})
	})
	if reason != nil {
		return reason
	}
	if err != nil {
		return fmt.Errorf("cluster: save rebalance progress: %w", err)
	}
	return nil
}

// LoadProgress implements ProgressStore.
func (s *SpannerStore) LoadProgress(ctx context.Context, epoch uint64) (map[string][]byte, error) {
	iter := s.client.Single().Query(ctx, spanner.Statement{
		SQL:    "select source, progress from " + s.tables.Progress() + " where name = @name and epoch = @epoch",
		Params: map[string]any{"name": s.name, "epoch": int64(epoch)},
	})
	defer iter.Stop()
	out := map[string][]byte{}
	for {
		row, err := iter.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: read rebalance progress: %w", err)
		}
		var src string
		var p []byte
		if err := row.Columns(&src, &p); err != nil {
			return nil, fmt.Errorf("cluster: read rebalance progress: %w", err)
		}
		out[src] = p
	}
}

// readWrite is ReadWriteTransaction, retried when the Spanner emulator
// reports a transaction clash as FailedPrecondition ("Invalid transaction
// ID", "Transaction not found") instead of Aborted, which the client would
// retry by itself. The emulator runs one read-write transaction at a time;
// real Spanner answers Aborted. Bounded: 5 attempts.
func (s *SpannerStore) readWrite(ctx context.Context, f func(context.Context, *spanner.ReadWriteTransaction) error) (time.Time, error) {
	for attempt := 1; ; attempt++ {
		ts, err := s.client.ReadWriteTransaction(ctx, f)
		if err == nil || attempt == 5 || !emulatorClash(err) || ctx.Err() != nil {
			return ts, err
		}
		select {
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		case <-ctx.Done():
			return ts, err
		}
	}
}

func emulatorClash(err error) bool {
	if c := spanner.ErrCode(err); c != codes.FailedPrecondition && c != codes.NotFound {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "Invalid transaction ID") || strings.Contains(msg, "Transaction not found")
}
