//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// startDormantProxy is a proxy over three real redis-servers whose silent
// clients go dormant after `after`.
func startDormantProxy(t *testing.T, after, idle time.Duration) *testProxy {
	t.Helper()
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	var addrs []string
	for range 3 {
		addrs = append(addrs, testenv.StartRedis(t).Addr)
	}
	return startProxyRing(t, ringOf(t, 1, addrs...), backend.Options{},
		Options{HashPrefix: "hash=", DormantAfter: after, IdleTimeout: idle})
}

// waitStat waits until st reads want; it fails the test after 5s.
func waitStat(t *testing.T, name string, st func() int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for st() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", name, st(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDormantSessionWakes: a silent client loses its goroutine and keeps
// its connection; its next command (single, pipelined, split across nodes,
// or cut in two around a dormancy period) is answered as before, and the
// session's state (here CLIENT SETNAME) survives.
func TestDormantSessionWakes(t *testing.T) {
	px := startDormantProxy(t, 30*time.Millisecond, 0)
	dormant := px.srv.Stats.Dormant.Load
	c := dial(t, px.addr)
	if r := c.do("CLIENT", "SETNAME", "sleeper"); r != "+OK\r\n" {
		t.Fatalf("SETNAME: %q", r)
	}
	for round := range 5 {
		waitStat(t, "dormant", dormant, 1)
		k := "k" + strconv.Itoa(round)
		c.send(cmd("SET", k, "v"+k) + cmd("MSET", "a"+k, "1", "b"+k, "2", "c"+k, "3") + cmd("MGET", k, "a"+k, "c"+k) + cmd("CLIENT", "GETNAME"))
		got := c.replies(4)
		want := []string{"+OK\r\n", "+OK\r\n", "*3\r\n$" + strconv.Itoa(len(k)+1) + "\r\nv" + k + "\r\n$1\r\n1\r\n$1\r\n3\r\n", "$7\r\nsleeper\r\n"}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("round %d reply %d: %q, want %q", round, i, got[i], want[i])
			}
		}
	}
	// A partial command keeps the session awake (its bytes stay in the
	// read buffer); the rest completes it.
	waitStat(t, "dormant", dormant, 1)
	full := cmd("ECHO", "split")
	c.send(full[:7])
	time.Sleep(150 * time.Millisecond)
	if n := dormant(); n != 0 {
		t.Fatalf("session with a partial command went dormant (%d)", n)
	}
	c.send(full[7:])
	if r := c.reply(); r != "$5\r\nsplit\r\n" {
		t.Fatalf("ECHO across the wait: %q", r)
	}
	if n := px.srv.Stats.Connected.Load(); n != 1 {
		t.Fatalf("connected = %d, want 1", n)
	}
}

// TestDormantSessionEnds: a dormant client that closes, one that never
// sent anything, and one past the idle timeout are all forgotten; an idle
// timeout closes dormant clients too.
func TestDormantSessionEnds(t *testing.T) {
	// The idle timeout leaves the test time to see both clients dormant
	// before it closes them, even on a loaded machine under -race.
	px := startDormantProxy(t, 20*time.Millisecond, 1500*time.Millisecond)
	connected := px.srv.Stats.Connected.Load
	dormant := px.srv.Stats.Dormant.Load

	quitter := dial(t, px.addr)
	quitter.do("PING")
	silent := dial(t, px.addr) // never sends
	waitStat(t, "dormant", dormant, 2)
	quitter.nc.Close()
	waitStat(t, "connected", connected, 1)
	if n := dormant(); n != 1 {
		t.Fatalf("dormant = %d after one closed, want 1", n)
	}
	start := time.Now()
	silent.expectClosed() // by the idle timeout, while dormant
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("idle timeout closed a dormant client after %v", d)
	}
	waitStat(t, "connected", connected, 0)
	waitStat(t, "dormant", dormant, 0)
}

// TestShutdownWakesDormant: Shutdown ends dormant sessions promptly (the
// ones with a goroutine it stops, the dormant ones it wakes) and their
// clients see the connection closed.
func TestShutdownWakesDormant(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	pool := backend.NewPool(backend.Options{})
	t.Cleanup(func() { _ = pool.Close(context.Background()) })
	srv := New(Options{DormantAfter: 20 * time.Millisecond}, NewRouter(pool, ringOf(t, 1, r.Addr)), adminStub{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var cs []*client
	for range 20 {
		c := dial(t, ln.Addr().String())
		c.do("PING")
		cs = append(cs, c)
	}
	waitStat(t, "dormant", srv.Stats.Dormant.Load, 20)
	awake := dial(t, ln.Addr().String())
	awake.do("PING") // accepted (a connection still in the listen backlog at Shutdown is reset)
	set := cmd("SET", "drainkey", "v")
	awake.send(set[:10]) // a partial command: this one keeps its goroutine
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Shutdown drains: a command the session had begun to receive is
	// completed, run and answered before its connection closes; one it had
	// not read yet is never run (the client sees the close and retries).
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = awake.nc.Write([]byte(set[10:])) // may find the connection closed: judged below
	}()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	reply, err := awake.next(5 * time.Second)
	stored := reply == "+OK\r\n"
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("the command in progress at Shutdown: %v", err)
	}
	if got := testenv.Cli(t, r.Addr, "EXISTS", "drainkey"); (got == "(integer) 1") != stored {
		t.Fatalf("SET in progress at Shutdown: reply %q, %v; key stored: %s", reply, err, got)
	}
	for _, c := range cs {
		c.expectClosed()
	}
	if stored {
		awake.expectClosed()
	}
	if n := srv.Stats.Connected.Load(); n != 0 {
		t.Fatalf("connected = %d after Shutdown", n)
	}
}

// TestDormantRaces: clients that pause for random times around the
// dormancy threshold (so commands arrive while their sessions are going to
// sleep, sleeping, or waking) get every reply, in order.
func TestDormantRaces(t *testing.T) {
	px := startDormantProxy(t, 5*time.Millisecond, 0)
	const clients, rounds = 40, 30
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			nc, err := net.Dial("tcp", px.addr)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			c := &client{tb: t, nc: nc, tmp: make([]byte, 4096)}
			for r := range rounds {
				time.Sleep(time.Duration(rng.IntN(12000)) * time.Microsecond)
				k := fmt.Sprintf("race:%d:%d", i, r)
				n := 1 + rng.IntN(3)
				var batch string
				for j := range n {
					batch += cmd("SET", k+strconv.Itoa(j), k)
				}
				batch += cmd("GET", k+"0")
				if _, err := nc.Write([]byte(batch)); err != nil {
					errs <- err
					return
				}
				for j := range n + 1 {
					got, err := c.next(10 * time.Second)
					want := "+OK\r\n"
					if j == n {
						want = "$" + strconv.Itoa(len(k)) + "\r\n" + k + "\r\n"
					}
					if err != nil || got != want {
						errs <- fmt.Errorf("client %d round %d reply %d: %q, %v; want %q", i, r, j, got, err, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// waitAtLeast waits until st reads at least want; it fails the test after
// 5s. (Under -race on a loaded machine a session now and then misses its
// dormancy check's window; what matters here is the burst.)
func waitAtLeast(t *testing.T, name string, st func() int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for st() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want at least %d", name, st(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDormantStackReclaim: once a burst of sessions went dormant and
// settled, one forced collection returns their stacks (StackReclaims),
// not before the burst is quiet, and not again without a new burst.
func TestDormantStackReclaim(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	px := startProxyRing(t, ringOf(t, 1, testenv.StartRedis(t).Addr), backend.Options{},
		Options{HashPrefix: "hash=", DormantAfter: 20 * time.Millisecond,
			reclaim: &reclaimPolicy{after: 40, quiet: 300 * time.Millisecond, every: 0, tick: 20 * time.Millisecond}})
	reclaims := px.srv.Stats.StackReclaims.Load
	var cs []*client
	for range 30 {
		c := dial(t, px.addr)
		c.do("PING")
		cs = append(cs, c)
	}
	waitAtLeast(t, "dormant", px.srv.Stats.Dormant.Load, 28)
	time.Sleep(500 * time.Millisecond)
	if n := reclaims(); n != 0 {
		t.Fatalf("%d reclaims after 30 sessions went dormant (threshold 40)", n)
	}
	for range 20 {
		c := dial(t, px.addr)
		c.do("PING")
		cs = append(cs, c)
	}
	waitAtLeast(t, "dormant", px.srv.Stats.Dormant.Load, 45)
	waitStat(t, "stack reclaims", reclaims, 1)
	time.Sleep(500 * time.Millisecond)
	if n := reclaims(); n != 1 {
		t.Fatalf("%d reclaims without a new burst", n)
	}
	for _, c := range cs {
		c.nc.Close()
	}
}
