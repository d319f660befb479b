//go:build linux

package test

// Fault tests of cluster mode (issue "Security and resilience"): a leader
// that freezes and comes back after it was replaced (a "zombie" leader),
// and a Spanner that goes away and comes back empty. They use the cl*
// helpers of cluster_helpers_test.go: a dedicated emulator, real
// redis-server nodes and real jupiter processes.
//
// The file is Linux-only like the emulator binary it needs (gcloud's
// emulator_main); the emulator restart also relies on Pdeathsig so that a
// killed test run does not leave an emulator behind.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/spanner"
	"github.com/alphauslabs/jupiter/internal/cluster"
	"github.com/alphauslabs/jupiter/internal/ring"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/api/option/internaloption"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestClusterFaultLeaderPaused freezes the leader with SIGSTOP (a GC pause,
// a stalled VM, a partitioned node: the process is alive but silent, its
// ports still accept connections) and thaws it after the others replaced
// it. It proves:
//
//   - failover: the two other pods elect a new leader within a few lock
//     leases, and an admin change through a surviving follower is executed
//     by the new leader and reaches every surviving pod;
//   - a deposed leader cannot write the ring. What stops it is the fence:
//     every ring write is Store.CompareAndSwap, one Spanner read-write
//     transaction that re-reads spindle's lock row and requires its token
//     (xxhash of the commit timestamp of the lock transaction the writer
//     won) and writer to be the caller's, and the stored version to be the
//     expected one, before it writes the ring row and appends the history
//     row. The new leader's lock transaction changed the token, so any
//     write the zombie might still attempt — even one it had fenced
//     (HasLock) just before it froze — is refused inside the transaction.
//     The harness cannot freeze the zombie between its Fence and its CAS,
//     so the test shows it three ways: (1) a CAS with exactly the
//     zombie's credentials (its id and the token recorded with the version
//     it wrote) is refused with ErrNotLeader while the zombie is frozen,
//     and the same stale version with the new leader's credentials is
//     refused as a version conflict, i.e. it is the token that stops the
//     zombie; (2) after the zombie is thawed, the ring history in Spanner
//     has contiguous versions (no fork, no gap), every version after the
//     freeze written by the new leader with the new token, and the ring
//     row agrees with the history; the zombie logged no ring write;
//   - the zombie steps down: within a few seconds of SIGCONT it serves the
//     new leader's ring version and names the new leader (not itself) in
//     STATUS, and never claims is_leader:1 after the thaw (it was frozen
//     longer than 3 leases, after which its cached leader flag expires);
//   - requests reaching the zombie are executed by the real leader: one
//     admin change queued on the zombie's socket while it was frozen (it
//     runs the moment it thaws, before it has learnt it was deposed) and
//     one sent after it caught up; each increments the ring version exactly
//     once, on every pod, and is written by the new leader.
func TestClusterFaultLeaderPaused(t *testing.T) {
	start := time.Now()
	e := startClEnv(t, 3)
	seeds := e.addrs(0, 1)
	// --rebalance=remap: this test is about fencing, and counts one ring
	// version per change (a staged rebalance writes one per stage; the
	// rebalance tests cover that mode with a killed leader).
	for range 3 {
		e.startPod(seeds, "--rebalance", "remap")
	}
	var oldLeader string
	clWait(t, e, 30*time.Second, "one leader and ring v1 on all pods", func() string {
		l, v, nodes, why := clAgreed(e.pods)
		if why != "" {
			return why
		}
		if v != "1" || nodes != clSortedNodes(seeds...) {
			return fmt.Sprintf("v%s %s, want v1 %s", v, nodes, clSortedNodes(seeds...))
		}
		oldLeader = l
		return ""
	})
	var zombie *clPod
	var survivors []*clPod
	for _, p := range e.pods {
		if p.Hedge == oldLeader {
			zombie = p
		} else {
			survivors = append(survivors, p)
		}
	}
	sp := clSpannerClient(t, e.emu.Host, e.db)
	hist := clHistory(t, sp)
	if len(hist) != 1 || hist[0].Version != 1 || hist[0].Leader != oldLeader {
		t.Fatalf("history before the freeze = %+v, want v1 seeded by the leader %s", hist, oldLeader)
	}
	zombieToken := uint64(hist[0].Token) // the token the zombie wrote v1 with

	// Registered after the pod's own cleanup, so it runs first: a stopped
	// process would not act on the SIGTERM of the pod's Stop.
	t.Cleanup(func() { zombie.Signal(syscall.SIGCONT) })
	frozen := time.Now()
	zombie.Signal(syscall.SIGSTOP)
	t.Logf("froze the leader %s (lock lease %v)", oldLeader, clLockLease)

	var newLeader string
	took := clWait(t, e, 3*clLockLease+10*time.Second, "the survivors to agree on a new leader", func() string {
		l, _, _, why := clAgreed(survivors)
		if why != "" {
			return why
		}
		if l == oldLeader {
			return "still the frozen leader " + oldLeader
		}
		newLeader = l
		return ""
	})
	t.Logf("new leader %s agreed by the survivors %v after the freeze", newLeader, took.Round(time.Millisecond))
	var follower *clPod // a survivor that is not the new leader
	for _, p := range survivors {
		if p.Hedge != newLeader {
			follower = p
		}
	}

	// An admin change through the surviving follower: forwarded to the new
	// leader, committed, on every survivor.
	added := e.redis[2].Addr
	if r := follower.jupiterCmd("ADD", added); r != "OK" {
		t.Fatalf("ADD through a surviving follower while the old leader is frozen: %s\n%s", r, e.logs())
	}
	want2 := clSortedNodes(seeds[0], seeds[1], added)
	clWait(t, e, 10*time.Second, "the survivors on v2", func() string {
		l, v, nodes, why := clAgreed(survivors)
		if why == "" && (v != "2" || nodes != want2 || l != newLeader) {
			why = fmt.Sprintf("leader %s v%s %s", l, v, nodes)
		}
		return why
	})
	for _, p := range survivors {
		if st := p.status(); st["ring_leader"] != newLeader {
			t.Fatalf("survivor %s: v2 written by %q, want the new leader %s", p.Hedge, st["ring_leader"], newLeader)
		}
	}

	// (1) The fence, with the zombie's own credentials. The lock row now
	// names the new leader with a new token; the zombie's token is the one
	// it wrote v1 with. A CAS it would send now — whatever version it
	// expects — is refused inside the transaction.
	writer, lockToken := clLockHolder(t, sp)
	if writer != newLeader || lockToken == zombieToken {
		t.Fatalf("lock row: writer %s token %d; want the new leader %s with a token other than the zombie's %d",
			writer, lockToken, newLeader, zombieToken)
	}
	store, err := cluster.NewSpannerStore(sp, cluster.DefaultTableNames(), cluster.HedgeLockRow(cluster.DefaultLockName), cluster.DefaultRingName)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	zombieRing := clRing(t, 2, seeds[0]) // what a stale zombie might write: v1 → v2 "REMOVE"
	for _, expect := range []uint64{1, 2} {
		err := store.CompareAndSwap(ctx, expect, clRing(t, expect+1, seeds[0]),
			cluster.Commit{Change: "zombie write", Leader: oldLeader, Token: zombieToken})
		if !errors.Is(err, cluster.ErrNotLeader) {
			t.Fatalf("CAS v%d→v%d with the deposed leader's id and token: %v, want ErrNotLeader", expect, expect+1, err)
		}
	}
	// Control: the same stale write with the current holder's id and
	// token passes the fence and fails only on the version.
	if err := store.CompareAndSwap(ctx, 1, zombieRing,
		cluster.Commit{Change: "stale write", Leader: newLeader, Token: lockToken}); !errors.Is(err, cluster.ErrVersionConflict) {
		t.Fatalf("CAS v1→v2 with the leader's token but a stale version: %v, want ErrVersionConflict", err)
	}

	// Keep it frozen past 3 leases: its cached leader flag has then
	// expired, so after the thaw it must never claim is_leader:1.
	if d := 3*clLockLease + time.Second - time.Since(frozen); d > 0 {
		time.Sleep(d)
	}

	// An admin change queued on the zombie's socket while it is frozen: the
	// kernel accepted the connection, the process reads the command the
	// moment it thaws — before spindle told it that it lost the lock.
	queued := make(chan string, 1)
	go func() { queued <- zombie.jupiterCmd("WEIGHT", added, "2") }()
	time.Sleep(300 * time.Millisecond)
	thawed := time.Now()
	zombie.Signal(syscall.SIGCONT)
	t.Logf("thawed the old leader after %v", thawed.Sub(frozen).Round(time.Millisecond))

	var claimed []string // STATUS lines where the zombie called itself leader
	var queuedReply string
	gotQueued := false
	took = clWait(t, e, 10*time.Second, "the thawed pod to follow the new leader at v3", func() string {
		if !gotQueued {
			select {
			case queuedReply = <-queued:
				gotQueued = true
			default:
			}
		}
		st := zombie.status()
		if st == nil {
			return "thawed pod does not answer STATUS"
		}
		if st["is_leader"] == "1" || st["leader"] == oldLeader {
			claimed = append(claimed, fmt.Sprintf("+%v leader=%s is_leader=%s v%s",
				time.Since(thawed).Round(time.Millisecond), st["leader"], st["is_leader"], st["ring_version"]))
		}
		if !gotQueued {
			return "queued WEIGHT has not returned"
		}
		if st["leader"] != newLeader || st["is_leader"] != "0" || st["ring_version"] != "3" {
			return fmt.Sprintf("thawed pod: leader=%s is_leader=%s v%s", st["leader"], st["is_leader"], st["ring_version"])
		}
		l, v, _, why := clAgreed(e.pods)
		if why == "" && (l != newLeader || v != "3") {
			why = fmt.Sprintf("all pods: leader %s v%s", l, v)
		}
		return why
	})
	t.Logf("thawed pod at v3 following %s %v after SIGCONT", newLeader, took.Round(time.Millisecond))
	if queuedReply != "OK" {
		t.Fatalf("WEIGHT queued on the frozen leader's socket: %q, want OK (executed by the new leader)", queuedReply)
	}
	for _, c := range claimed {
		if strings.Contains(c, "is_leader=1") {
			t.Errorf("after the thaw the deposed pod claimed leadership: %v", claimed)
			break
		}
	}
	if len(claimed) > 0 {
		t.Logf("thawed pod named itself leader (stale cached leader address) in %d STATUS replies: %v", len(claimed), claimed)
	}

	// (2) The history: contiguous, no fork, everything after the freeze
	// written by the new leader with the new token.
	checkHistory := func(n int64) {
		t.Helper()
		hist := clHistory(t, sp)
		if int64(len(hist)) != n {
			t.Fatalf("history has %d versions, want %d: %+v", len(hist), n, hist)
		}
		for i, h := range hist {
			switch {
			case h.Version != int64(i+1):
				t.Fatalf("history versions not contiguous from 1: %+v", hist)
			case h.Version == 1 && (h.Leader != oldLeader || uint64(h.Token) != zombieToken):
				t.Fatalf("v1 written by %s token %d, want the old leader %s", h.Leader, uint64(h.Token), oldLeader)
			case h.Version > 1 && (h.Leader != newLeader || uint64(h.Token) != lockToken):
				t.Fatalf("v%d (%s) written by %s token %d after the freeze; want the new leader %s token %d\n%+v",
					h.Version, h.Change, h.Leader, uint64(h.Token), newLeader, lockToken, hist)
			}
		}
		st, err := store.Load(ctx)
		if err != nil || int64(st.Version) != n || st.Leader != newLeader || st.Token != lockToken {
			t.Fatalf("ring row: %+v %v; want v%d by %s", st, err, n, newLeader)
		}
		t.Logf("history: %d contiguous versions; v2..v%d by %s", n, n, newLeader)
	}
	checkHistory(3)

	// (3) A change sent to the thawed pod after it caught up: executed once
	// by the real leader, on every pod.
	if r := zombie.jupiterCmd("WEIGHT", added, "3"); r != "OK" {
		t.Fatalf("WEIGHT through the thawed pod: %s", r)
	}
	clWait(t, e, 10*time.Second, "every pod on v4", func() string {
		l, v, _, why := clAgreed(e.pods)
		if why == "" && (l != newLeader || v != "4") {
			why = fmt.Sprintf("leader %s v%s", l, v)
		}
		return why
	})
	for _, p := range e.pods {
		if st := p.status(); st["ring_leader"] != newLeader || st["ring_change"] != "WEIGHT "+added+" w=3" {
			t.Fatalf("pod %s: v4 %q by %q, want the WEIGHT by %s", p.Hedge, st["ring_change"], st["ring_leader"], newLeader)
		}
	}
	checkHistory(4)
	if strings.Contains(zombie.Log(), `"msg":"ring changed"`) {
		t.Fatalf("the deposed leader logged a ring write:\n%s", clTail(zombie.Log(), 40))
	}
	t.Logf("leader-paused scenario took %v", time.Since(start).Round(time.Millisecond))
}

// clSpannerClient is a Spanner client of db on the emulator at host, for
// reading what the pods wrote (the test process's own SPANNER_EMULATOR_HOST
// may name another emulator, or none).
func clSpannerClient(t *testing.T, host, db string) *spanner.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := spanner.NewClientWithConfig(ctx, db, spanner.ClientConfig{DisableNativeMetrics: true},
		option.WithEndpoint("passthrough:///"+host),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(),
		internaloption.SkipDialSettingsValidation())
	if err != nil {
		t.Fatalf("spanner client for %s on %s: %v", db, host, err)
	}
	t.Cleanup(c.Close)
	return c
}

// clHistRow is one row of jupiter_ring_history.
type clHistRow struct {
	Version int64
	Leader  string
	Token   int64 // spindle token as two's-complement INT64
	Change  string
}

// clHistory reads the ring history, oldest first.
func clHistory(t *testing.T, c *spanner.Client) []clHistRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Single().Query(ctx, spanner.Statement{SQL: "SELECT version, leader, leader_token, change FROM " +
		cluster.DefaultTableNames().History + " WHERE name = @name ORDER BY version",
		Params: map[string]any{"name": cluster.DefaultRingName}})
	defer iter.Stop()
	var out []clHistRow
	for {
		row, err := iter.Next()
		if err == iterator.Done {
			return out
		}
		if err != nil {
			t.Fatalf("read the ring history: %v", err)
		}
		var h clHistRow
		var leader, change spanner.NullString
		var tok spanner.NullInt64
		if err := row.Columns(&h.Version, &leader, &tok, &change); err != nil {
			t.Fatal(err)
		}
		h.Leader, h.Token, h.Change = leader.StringVal, tok.Int64, change.StringVal
		out = append(out, h)
	}
}

// clLockHolder reads spindle's lock row: its writer (the leader's hedge
// address) and its fencing token as spindle's HasLock computes it.
func clLockHolder(t *testing.T, c *spanner.Client) (string, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	row, err := c.Single().ReadRow(ctx, cluster.DefaultTableNames().Lock,
		spanner.Key{cluster.HedgeLockRow(cluster.DefaultLockName)}, []string{"token", "writer"})
	if err != nil {
		t.Fatalf("read the lock row: %v", err)
	}
	var tok spanner.NullTime
	var w spanner.NullString
	if err := row.Columns(&tok, &w); err != nil {
		t.Fatal(err)
	}
	return w.StringVal, cluster.SpindleToken(tok.Time)
}

// clRing is a ring of version v with the given nodes (weight 1).
func clRing(t *testing.T, v uint64, addrs ...string) *ring.Ring {
	t.Helper()
	ns := make([]ring.Node, len(addrs))
	for i, a := range addrs {
		ns[i] = ring.Node{Addr: a, Weight: 1}
	}
	r, err := ring.New(v, ns)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
