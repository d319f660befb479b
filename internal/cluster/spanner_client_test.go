package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"cloud.google.com/go/spanner"
	"cloud.google.com/go/spanner/apiv1/spannerpb"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/test/emulator"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// deleteSessions deletes every session of db on the emulator, as a server
// that lost them (a restart, a recreated database) would have.
func deleteSessions(t *testing.T, db string) int {
	t.Helper()
	conn, err := grpc.NewClient(os.Getenv("SPANNER_EMULATOR_HOST"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := spannerpb.NewSpannerClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.ListSessions(ctx, &spannerpb.ListSessionsRequest{Database: db})
	if err != nil {
		t.Fatalf("list sessions: %v", err)
	}
	for _, s := range res.GetSessions() {
		if _, err := c.DeleteSession(ctx, &spannerpb.DeleteSessionRequest{Name: s.GetName()}); err != nil {
			t.Fatalf("delete session %s: %v", s.GetName(), err)
		}
	}
	return len(res.GetSessions())
}

// TestSessionHealer: after the server lost the client's session, the
// Member's client fails once with "Session not found", replaces the
// session by itself and works again (reads, queries and read-write
// transactions), without a new client.
func TestSessionHealer(t *testing.T) {
	db, _ := newEmulatorDB(t, "heal")
	c, h, err := newSpannerClient(context.Background(), db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	write := func(v string) error {
		_, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, txn *spanner.ReadWriteTransaction) error {
			if _, err := txn.ReadRow(ctx, "jupiter_lock", spanner.Key{"heal"}, []string{"name"}); err != nil && !errors.Is(err, spanner.ErrRowNotFound) {
				return err
			}
			return txn.BufferWrite([]*spanner.Mutation{spanner.InsertOrUpdate("jupiter_lock", []string{"name", "writer"}, []any{"heal", v})})
		})
		return err
	}
	read := func() (string, error) {
		row, err := c.Single().ReadRow(ctx, "jupiter_lock", spanner.Key{"heal"}, []string{"writer"})
		if err != nil {
			return "", err
		}
		var w spanner.NullString
		err = row.Columns(&w)
		return w.StringVal, err
	}
	if err := write("a"); err != nil {
		t.Fatal(err)
	}

	for round := 1; round <= 2; round++ { // the replacement can be lost too
		if n := deleteSessions(t, db); n == 0 {
			t.Fatal("the client has no session on the emulator")
		}
		_, err := read()
		if !sessionNotFound(err) {
			t.Fatalf("round %d: read after the sessions were deleted: %v, want Session not found", round, err)
		}
		start := time.Now()
		var got string
		waitUntil(t, 10*time.Second, "reads to work again", func() bool {
			got, err = read()
			return err == nil
		})
		took := time.Since(start)
		if got != "a" || h.Replaced() != int64(round) {
			t.Fatalf("round %d: read %q, %d replacements", round, got, h.Replaced())
		}
		if err := write("a"); err != nil {
			t.Fatalf("round %d: read-write transaction on the new session: %v", round, err)
		}
		var n int64
		if err := c.Single().Query(ctx, spanner.Statement{SQL: "SELECT COUNT(*) FROM jupiter_lock"}).Do(func(r *spanner.Row) error {
			return r.Columns(&n)
		}); err != nil || n != 1 {
			t.Fatalf("round %d: query on the new session: %d %v", round, n, err)
		}
		t.Logf("round %d: session replaced, reads work again %v after the first failure", round, took.Round(time.Millisecond))
	}
}

// TestMemberRecreatesLockRow: a lock row missing for 2 lock durations is
// written back vacant and expired, and spindle elects a leader from it by
// its ordinary takeover (no process has to be able to insert it afresh).
func TestMemberRecreatesLockRow(t *testing.T) {
	db, client := newEmulatorDB(t, "lockrow")
	port, err := emulator.FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{SpannerDB: db, HedgeAddr: fmt.Sprintf("127.0.0.1:%d", port), LockName: "lr",
		LockDuration: 2 * time.Second, SyncInterval: 2 * time.Second}, testLogger(t), Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	row := func() (writer string, heartbeat time.Time, ok bool) {
		r, err := client.Single().ReadRow(context.Background(), "jupiter_lock", spanner.Key{HedgeLockRow("lr")}, []string{"writer", "heartbeat"})
		if errors.Is(err, spanner.ErrRowNotFound) {
			return "", time.Time{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		var w spanner.NullString
		var hb spanner.NullTime
		if err := r.Columns(&w, &hb); err != nil {
			t.Fatal(err)
		}
		return w.StringVal, hb.Time, true
	}

	m.lockRowMissing() // first sighting: remembered, nothing written
	if _, _, ok := row(); ok {
		t.Fatal("lock row written at the first sighting")
	}
	m.lockGone = time.Now().Add(-2 * m.cfg.LockDuration)
	m.lockRowMissing()
	w, hb, ok := row()
	if !ok || w != "" || time.Since(hb) < 59*time.Minute {
		t.Fatalf("re-created lock row: ok=%v writer=%q heartbeat=%v", ok, w, hb)
	}
	m.lockGone = time.Now().Add(-2 * m.cfg.LockDuration)
	m.lockRowMissing() // the row exists: a no-op
	if w2, hb2, _ := row(); w2 != w || !hb2.Equal(hb) {
		t.Fatalf("second attempt changed the row: %q %v", w2, hb2)
	}

	// A pod started on the vacant row becomes the leader.
	start := time.Now()
	c := startCluster(t, db, "lr", []ring.Node{{Addr: "10.9.0.1:6379"}})
	waitUntil(t, 20*time.Second, "a leader from the vacant lock row", c.Member.IsLeader)
	if w, _, _ := row(); w != c.Member.Self() {
		t.Fatalf("lock row writer %q, want %s", w, c.Member.Self())
	}
	t.Logf("leader elected from the vacant lock row after %v", time.Since(start).Round(time.Millisecond))
}
