package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/spanner"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"github.com/alphauslabs/jupiter/test/emulator"
	"google.golang.org/protobuf/proto"
)

// Tests in this file need the Cloud Spanner emulator (see test/emulator):
// they skip without one, and fail without one when CI is set.

func TestMain(m *testing.M) {
	code := m.Run()
	emulator.Stop()
	os.Exit(code)
}

// newEmulatorDB creates a fresh database with the schema and returns its
// path and a client.
func newEmulatorDB(t *testing.T, prefix string) (string, *spanner.Client) {
	t.Helper()
	db := emulator.Database(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ApplyDDL(ctx, db, DDL(DefaultTableNames())); err != nil {
		t.Fatalf("ApplyDDL: %v", err)
	}
	client, err := spanner.NewClient(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return db, client
}

// setLock writes spindle's lock row the way spindle does (token = commit
// timestamp) and returns the token spindle's HasLock would report.
func setLock(t *testing.T, client *spanner.Client, lockRow, writer string) uint64 {
	t.Helper()
	ts, err := client.Apply(context.Background(), []*spanner.Mutation{
		spanner.InsertOrUpdate("jupiter_lock", []string{"name", "heartbeat", "token", "writer"},
			[]any{lockRow, spanner.CommitTimestamp, spanner.CommitTimestamp, writer}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return SpindleToken(ts)
}

func mustNewRing(t *testing.T, v uint64, addrs ...string) *ring.Ring {
	t.Helper()
	var ns []ring.Node
	for _, a := range addrs {
		ns = append(ns, ring.Node{Addr: a, Weight: 1})
	}
	r, err := ring.New(v, ns)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestApplyDDLIdempotent(t *testing.T) {
	db := emulator.Database(t, "ddl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// First-time setup of a database that already has some of the tables
	// (e.g. an existing hedge deployment's lock table).
	stmts := DDL(DefaultTableNames())
	if err := ApplyDDL(ctx, db, stmts[:1]); err != nil {
		t.Fatalf("create db with lock table: %v", err)
	}
	if err := ApplyDDL(ctx, db, stmts); err != nil {
		t.Fatalf("apply rest: %v", err)
	}
	if err := ApplyDDL(ctx, db, stmts); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if err := ApplyDDL(ctx, "bad/path", stmts); err == nil {
		t.Fatal("bad database path accepted")
	}
}

func TestSpannerStore(t *testing.T) {
	ctx := context.Background()
	_, client := newEmulatorDB(t, "store")
	lockRow := HedgeLockRow("store")
	s, err := NewSpannerStore(client, DefaultTableNames(), lockRow, "default")
	if err != nil {
		t.Fatal(err)
	}
	const me, other = "10.0.0.1:7000", "10.0.0.2:7000"

	if _, err := s.Load(ctx); !errors.Is(err, ErrNoRing) {
		t.Fatalf("Load on empty db: %v", err)
	}
	// No lock row at all: nobody may write.
	if err := s.CompareAndSwap(ctx, 0, mustNewRing(t, 1, "a:1"), Commit{Leader: me, Token: 1}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("CAS without a lock row: %v", err)
	}

	tok := setLock(t, client, lockRow, me)
	c1 := Commit{Change: "SEED a:1=1", Leader: me, Token: tok}
	if err := s.CompareAndSwap(ctx, 0, mustNewRing(t, 1, "a:1"), c1); err != nil {
		t.Fatalf("first CAS: %v", err)
	}
	st, err := s.Load(ctx)
	if err != nil || st.Version != 1 || st.Leader != me || st.Token != tok || st.Stage != StageStable || RingText(st.Ring.Nodes()) != "a:1=1" {
		t.Fatalf("Load = %+v, %v", st, err)
	}

	// Version conflict: someone expected a stale version.
	if err := s.CompareAndSwap(ctx, 0, mustNewRing(t, 1, "b:1"), c1); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale CAS: %v", err)
	}
	// Fence: right writer, wrong token; right token, wrong writer.
	if err := s.CompareAndSwap(ctx, 1, mustNewRing(t, 2, "a:1", "b:1"), Commit{Leader: me, Token: tok + 1}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("wrong token: %v", err)
	}
	if err := s.CompareAndSwap(ctx, 1, mustNewRing(t, 2, "a:1", "b:1"), Commit{Leader: other, Token: tok}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("wrong writer: %v", err)
	}
	c2 := Commit{Change: "ADD b:1 w=1", RequestID: "req-2", Leader: me, Token: tok}
	if err := s.CompareAndSwap(ctx, 1, mustNewRing(t, 2, "a:1", "b:1"), c2); err != nil {
		t.Fatalf("second CAS: %v", err)
	}

	// Another pod takes the lock (spindle writes a new token): the deposed
	// leader's token no longer passes, even with the right version.
	tok2 := setLock(t, client, lockRow, other)
	if tok2 == tok {
		t.Fatal("new lock token equals the old one")
	}
	if err := s.CompareAndSwap(ctx, 2, mustNewRing(t, 3, "a:1"), Commit{Leader: me, Token: tok}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed leader wrote: %v", err)
	}
	if err := s.CompareAndSwap(ctx, 2, mustNewRing(t, 3, "a:1"), Commit{Change: "REMOVE b:1", RequestID: "req-3", Leader: other, Token: tok2}); err != nil {
		t.Fatalf("new leader CAS: %v", err)
	}

	h, err := s.History(ctx, 0)
	if err != nil || len(h) != 3 || h[0].Version != 3 || h[2].Version != 1 {
		t.Fatalf("History = %+v, %v", h, err)
	}
	if h1, _ := s.History(ctx, 1); len(h1) != 1 || h1[0].Version != 3 {
		t.Fatalf("History(limit 1) = %+v", h1)
	}
	if e, err := s.FindRequest(ctx, "req-2"); err != nil || e == nil || e.Version != 2 || e.RingText != "a:1=1,b:1=1" {
		t.Fatalf("FindRequest = %+v, %v", e, err)
	}
	if e, err := s.FindRequest(ctx, "nope"); err != nil || e != nil {
		t.Fatalf("FindRequest(nope) = %+v, %v", e, err)
	}

	// The audit trail is readable with plain SQL.
	iter := client.Single().Query(ctx, spanner.Statement{SQL: `SELECT version, ring_text, change, leader
		FROM jupiter_ring_history WHERE name = 'default' ORDER BY version`})
	var rows []string
	err = iter.Do(func(r *spanner.Row) error {
		var v int64
		var text, change, leader string
		if err := r.Columns(&v, &text, &change, &leader); err != nil {
			return err
		}
		rows = append(rows, fmt.Sprintf("%d|%s|%s|%s", v, text, change, leader))
		return nil
	})
	want := []string{
		"1|a:1=1|SEED a:1=1|" + me,
		"2|a:1=1,b:1=1|ADD b:1 w=1|" + me,
		"3|a:1=1|REMOVE b:1|" + other,
	}
	if err != nil || !slices.Equal(rows, want) {
		t.Fatalf("SQL audit = %q, %v; want %q", rows, err, want)
	}
}

// startCluster opens and starts one jupiter pod's cluster mode.
func startCluster(t *testing.T, db, lockName string, seed []ring.Node) *Cluster {
	t.Helper()
	port, err := emulator.FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(Config{
		SpannerDB:        db,
		HedgeAddr:        fmt.Sprintf("127.0.0.1:%d", port),
		LockName:         lockName,
		LockDuration:     2 * time.Second, // hedge's minimum
		SyncInterval:     2 * time.Second, // hedge's minimum
		PollInterval:     200 * time.Millisecond,
		BroadcastTimeout: 3 * time.Second,
		SendRetries:      3,
		Immediate:        true, // fake node addresses: nothing to move
	}, Options{
		Holder: ring.NewHolder(nil),
		Seed:   seed,
		Pinger: fakePinger{},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTwoMembers(t *testing.T) {
	db, client := newEmulatorDB(t, "two")
	seed := []ring.Node{{Addr: "10.9.0.1:6379"}}
	start := time.Now()
	a := startCluster(t, db, "two", seed)
	b := startCluster(t, db, "two", seed)
	pods := []*Cluster{a, b}

	leaders := func() (n int, l *Cluster) {
		for _, p := range pods {
			if p.Member.IsLeader() {
				n++
				l = p
			}
		}
		return n, l
	}
	waitUntil(t, 20*time.Second, "a leader", func() bool { n, _ := leaders(); return n == 1 })
	_, leader := leaders()
	follower := a
	if leader == a {
		follower = b
	}
	t.Logf("leader %s elected after %v", leader.Member.Self(), time.Since(start))

	// Exactly one pod passes the fence.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if id, _, err := leader.Member.Fence(ctx); err != nil || id != leader.Member.Self() {
		t.Fatalf("leader fence: %q %v", id, err)
	}
	if _, _, err := follower.Member.Fence(ctx); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower fence: %v", err)
	}

	// The leader seeds; both pods become ready with v1.
	waitUntil(t, 10*time.Second, "both ready", func() bool { return a.Ready() && b.Ready() })
	waitUntil(t, 10*time.Second, "follower knows the leader", func() bool { return follower.Member.Leader() == leader.Member.Self() })

	// An admin change sent from the follower is executed by the leader.
	rep, err := follower.Submit(ctx, add("two-add-1", "10.9.0.2:6379", 1))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	wantOK(t, rep, 2)
	if rep.GetLeader() != leader.Member.Self() {
		t.Fatalf("reply from %q, want the leader %q", rep.GetLeader(), leader.Member.Self())
	}
	if v := follower.Syncer.Version(); v != 2 {
		t.Fatalf("follower serves v%d after Submit returned", v)
	}
	// A retry of the same request does not apply it twice.
	rep, err = follower.Submit(ctx, add("two-add-1", "10.9.0.2:6379", 1))
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, rep, 2)
	// Refusals come back as replies.
	rep, err = follower.Submit(ctx, remove("", "10.9.9.9:6379"))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, rep, jupiterv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	waitUntil(t, 5*time.Second, "leader at v2", func() bool { return leader.Syncer.Version() == 2 })

	// Broadcast reaches both pods once hedge's member lists have synced.
	waitUntil(t, 15*time.Second, "leader knows 2 members", func() bool { return len(leader.Member.Members()) == 2 })
	msg, _ := proto.Marshal(&jupiterv1.BroadcastMessage{Msg: &jupiterv1.BroadcastMessage_RingUpdated{RingUpdated: &jupiterv1.RingUpdated{Version: 2}}})
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Second)
	res := leader.Member.Broadcast(bctx, msg)
	bcancel()
	var acked []string
	for _, r := range res {
		var br jupiterv1.BroadcastReply
		if r.Err != nil || proto.Unmarshal(r.Reply, &br) != nil {
			t.Fatalf("broadcast to %s: %v", r.ID, r.Err)
		}
		if br.GetRingAck().GetAppliedVersion() != 2 {
			t.Fatalf("ack from %s: %v", r.ID, br.GetRingAck())
		}
		acked = append(acked, br.GetRingAck().GetPod())
	}
	slices.Sort(acked)
	want := []string{a.Member.Self(), b.Member.Self()}
	slices.Sort(want)
	if !slices.Equal(acked, want) {
		t.Fatalf("broadcast acked by %v, want %v", acked, want)
	}

	// Status reflects it all without Spanner reads.
	for _, p := range pods {
		s := p.Status()
		if s.Leader != leader.Member.Self() || s.RingVersion != 2 || s.Stage != StageStable || len(s.Nodes) != 2 || !s.Ready {
			t.Fatalf("status of %s: %+v", p.Member.Self(), s)
		}
	}

	// The history names the leader that wrote each version.
	var writers []string
	err = client.Single().Query(ctx, spanner.Statement{SQL: "SELECT leader FROM jupiter_ring_history ORDER BY version"}).Do(func(r *spanner.Row) error {
		var l string
		if err := r.Columns(&l); err != nil {
			return err
		}
		writers = append(writers, l)
		return nil
	})
	if err != nil || strings.Join(writers, ",") != leader.Member.Self()+","+leader.Member.Self() {
		t.Fatalf("history writers %v, %v", writers, err)
	}
	t.Logf("two-member scenario took %v", time.Since(start))

	// The follower's own controller cannot write: the fence refuses it.
	wantCode(t, follower.Controller.Apply(ctx, add("two-direct", "10.9.0.3:6379", 1)), jupiterv1.ErrorCode_ERROR_CODE_NOT_LEADER)

	// Failover: the leader stops; the follower takes the lock after the
	// lease and accepts changes; the old leader's token is refused.
	_, oldTok, err := leader.Member.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldSelf := leader.Member.Self()
	leader.Stop()
	failStart := time.Now()
	waitUntil(t, 20*time.Second, "failover", follower.Member.IsLeader)
	t.Logf("failover took %v", time.Since(failStart))
	rep, err = follower.Submit(ctx, add("two-add-3", "10.9.0.3:6379", 1))
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, rep, 3)
	if rep.GetLeader() != follower.Member.Self() {
		t.Fatalf("v3 written by %q", rep.GetLeader())
	}
	err = follower.Store.CompareAndSwap(ctx, 3, mustNewRing(t, 4, "10.9.0.1:6379"), Commit{Leader: oldSelf, Token: oldTok})
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed leader's CAS: %v", err)
	}
}
