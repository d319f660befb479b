package proxy

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// blockedOn returns the node's blocked_clients (INFO clients).
func blockedOn(t *testing.T, addr string) int {
	t.Helper()
	info := testenv.Cli(t, addr, "INFO", "clients")
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "blocked_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no blocked_clients in %q", info)
	return 0
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBlockingCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	px := startProxy(t, []string{r.Addr}, backend.Options{})
	a, b := dial(t, px.addr), dial(t, px.addr)
	node := px.pool.Node(r.Addr)

	t.Run("WokenByPush", func(t *testing.T) {
		a.send(cmd("BLPOP", "q1", "q2", "0") + cmd("PING") + cmd("ECHO", "after"))
		waitFor(t, "BLPOP blocked on the node", func() bool { return blockedOn(t, r.Addr) == 1 })
		if r := b.do("RPUSH", "q2", "x"); r != ":1\r\n" {
			t.Fatal(r)
		}
		// The commands pipelined behind BLPOP run after it, in order.
		if got := strings.Join(a.replies(3), ""); got != "*2\r\n$2\r\nq2\r\n$1\r\nx\r\n+PONG\r\n$5\r\nafter\r\n" {
			t.Fatalf("replies %q", got)
		}
		if n := node.DedicatedInUse(); n != 0 {
			t.Errorf("dedicated connections in use after the reply: %d", n)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		start := time.Now()
		if r := a.do("BRPOP", "q3", "0.2"); r != "*-1\r\n" {
			t.Fatalf("BRPOP timeout = %q", r)
		}
		if d := time.Since(start); d < 190*time.Millisecond {
			t.Errorf("BRPOP 0.2 returned after %v", d)
		}
		if r := a.do("BLMOVE", "q3", "q4", "LEFT", "RIGHT", "0.05"); r != "*-1\r\n" {
			t.Fatalf("BLMOVE timeout = %q", r)
		}
	})
	t.Run("Disconnect", func(t *testing.T) {
		c := dial(t, px.addr)
		c.send(cmd("BLPOP", "q5", "0"))
		waitFor(t, "BLPOP blocked on the node", func() bool { return blockedOn(t, r.Addr) == 1 })
		c.nc.Close()
		waitFor(t, "the node to unblock it", func() bool { return blockedOn(t, r.Addr) == 0 })
		waitFor(t, "the dedicated connection back", func() bool { return node.DedicatedInUse() == 0 })
		if r := b.do("RPUSH", "q5", "kept"); r != ":1\r\n" {
			t.Fatal(r)
		}
		if r := b.do("LLEN", "q5"); r != ":1\r\n" {
			t.Fatalf("LLEN after the blocked client left = %q: a gone client popped it", r)
		}
		if n := px.srv.Stats.Blocked.Load(); n != 0 {
			t.Errorf("Stats.Blocked = %d", n)
		}
	})
	t.Run("ClientUnblock", func(t *testing.T) {
		id := strings.TrimSpace(strings.TrimPrefix(a.do("CLIENT", "ID"), ":"))
		a.send(cmd("BLPOP", "q6", "0"))
		waitFor(t, "blocked", func() bool { return px.srv.Stats.Blocked.Load() == 1 })
		if r := b.do("CLIENT", "UNBLOCK", id); r != ":1\r\n" {
			t.Fatalf("CLIENT UNBLOCK = %q", r)
		}
		if r := a.reply(); r != "*-1\r\n" {
			t.Fatalf("unblocked BLPOP = %q", r)
		}
		a.send(cmd("BZPOPMIN", "z6", "0"))
		waitFor(t, "blocked", func() bool { return px.srv.Stats.Blocked.Load() == 1 })
		if r := b.do("CLIENT", "UNBLOCK", id, "ERROR"); r != ":1\r\n" {
			t.Fatalf("CLIENT UNBLOCK ERROR = %q", r)
		}
		if r := a.reply(); !strings.HasPrefix(r, "-UNBLOCKED") {
			t.Fatalf("BZPOPMIN unblocked with ERROR = %q", r)
		}
		if r := b.do("CLIENT", "UNBLOCK", id); r != ":0\r\n" {
			t.Errorf("CLIENT UNBLOCK of a client not blocked = %q", r)
		}
		if r := b.do("CLIENT", "UNBLOCK", id, "MAYBE"); !strings.HasPrefix(r, "-ERR") {
			t.Errorf("CLIENT UNBLOCK with a bad reason = %q", r)
		}
	})
	t.Run("InsideMulti", func(t *testing.T) {
		a.send(cmd("MULTI") + cmd("BLPOP", "q7", "0") + cmd("EXEC"))
		if got := strings.Join(a.replies(3), ""); got != "+OK\r\n+QUEUED\r\n*1\r\n*-1\r\n" {
			t.Fatalf("BLPOP inside MULTI = %q (must not block)", got)
		}
	})
	t.Run("XReadBlock", func(t *testing.T) {
		a.send(cmd("XREAD", "BLOCK", "0", "STREAMS", "s1", "$"))
		waitFor(t, "blocked", func() bool { return blockedOn(t, r.Addr) == 1 })
		if r := b.do("XADD", "s1", "1-1", "f", "v"); r != "$3\r\n1-1\r\n" {
			t.Fatal(r)
		}
		if got := a.reply(); got != "*1\r\n*2\r\n$2\r\ns1\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n" {
			t.Fatalf("XREAD BLOCK = %q", got)
		}
	})
}

// TestBlockingLimit: past the dedicated connections of a node, a blocking
// command gets an error at once and other clients are served.
func TestBlockingLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	px := startProxy(t, []string{r.Addr}, backend.Options{MaxDedicated: 2})
	for i := range 2 {
		c := dial(t, px.addr)
		c.send(cmd("BLPOP", "l"+strconv.Itoa(i), "0"))
	}
	waitFor(t, "two blocked", func() bool { return blockedOn(t, r.Addr) == 2 })
	c := dial(t, px.addr)
	if r := c.do("BLPOP", "l3", "0"); !strings.Contains(r, "too many dedicated connections") {
		t.Fatalf("third BLPOP = %q", r)
	}
	if r := c.do("SET", "x", "1"); r != "+OK\r\n" {
		t.Fatalf("SET while the node's dedicated connections are all blocked = %q", r)
	}
}

// TestBlockingFollowsRebalance: a client blocked on a key whose slot moves
// is unblocked on the old owner and blocked again on the new one, where a
// push made during MIGRATING wakes it.
func TestBlockingFollowsRebalance(t *testing.T) {
	e := newMigEnv(t, Options{})
	k := e.key("bq", true)
	a, b := dial(t, e.px.addr), dial(t, e.px.addr)
	oldAddr := e.R.Node(e.R.Owner([]byte(k))).Addr
	newAddr := e.T.Node(e.T.Owner([]byte(k))).Addr
	a.send(cmd("BLPOP", k, "0"))
	waitFor(t, "blocked on the old owner", func() bool { return blockedOn(t, oldAddr) == 1 })
	e.stage(t, StagePrepare, 8)
	e.stage(t, StageFreeze, 8)
	waitFor(t, "unblocked on the old owner", func() bool { return blockedOn(t, oldAddr) == 0 })
	e.stage(t, StageMigrating, 8)
	waitFor(t, "blocked on the new owner", func() bool { return blockedOn(t, newAddr) == 1 })
	if r := b.do("RPUSH", k, "moved"); r != ":1\r\n" {
		t.Fatal(r)
	}
	if got := a.reply(); got != "*2\r\n$"+strconv.Itoa(len(k))+"\r\n"+k+"\r\n$5\r\nmoved\r\n" {
		t.Fatalf("BLPOP across the rebalance = %q", got)
	}
	// Blocked with a timeout: the time left carries over.
	start := time.Now()
	a.send(cmd("BLPOP", k, "0.5"))
	waitFor(t, "blocked", func() bool { return blockedOn(t, newAddr) == 1 })
	if !e.rt.ApplyStage(e.T, nil) {
		t.Fatal("commit refused")
	}
	if got := a.reply(); got != "*-1\r\n" {
		t.Fatalf("BLPOP 0.5 = %q", got)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 3*time.Second {
		t.Errorf("BLPOP 0.5 answered after %v", d)
	}
}
