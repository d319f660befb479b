package proxy

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/rebalance"
)

func TestExecPrefix(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"*3\r\n:1\r\n+OK\r\n+OK\r\n", 1, "*1\r\n:1\r\n"},
		{"*4\r\n$1\r\na\r\n*2\r\n:1\r\n:2\r\n+OK\r\n+OK\r\n", 2, "*2\r\n$1\r\na\r\n*2\r\n:1\r\n:2\r\n"},
		{"*2\r\n-WRONGTYPE x\r\n+OK\r\n", 1, "*1\r\n-WRONGTYPE x\r\n"},
		{"*-1\r\n", 1, "*-1\r\n"},
		{"-EXECABORT Transaction discarded\r\n", 1, "-EXECABORT Transaction discarded\r\n"},
		{"*1\r\n+OK\r\n", 0, "*0\r\n"},
		{"*1\r\n$5\r\nab", 1, "*1\r\n$5\r\nab"}, // truncated: passed on as it is
	} {
		if got := string(execPrefix([]byte(tt.in), tt.n)); got != tt.want {
			t.Errorf("execPrefix(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestTxMultiNode: a transaction runs on the node of its keys; keys of two
// nodes are CROSSSLOT and discard it; WATCH holds a dedicated connection
// that EXEC gives back.
func TestTxMultiNode(t *testing.T) {
	e := newMigEnv(t, Options{})
	p := dial(t, e.px.addr)
	tag := e.key("t", false)
	a, b := "{"+tag+"}a", "{"+tag+"}b"
	p.send(cmd("MULTI") + cmd("SET", a, "1") + cmd("INCR", a) + cmd("RPUSH", b, "x") + cmd("PING") + cmd("EXEC"))
	if got, want := strings.Join(p.replies(6), ""), "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n+OK\r\n:2\r\n:1\r\n+PONG\r\n"; got != want {
		t.Fatalf("transaction replies %q, want %q", got, want)
	}
	if get(t, e.owner(e.R, a), a) != "2" {
		t.Error("the transaction's write is not on the keys' node")
	}
	// Two keys of different nodes.
	var other string
	for i := 0; other == ""; i++ {
		if k := e.key("o"+strings.Repeat("x", i), false); e.R.Owner([]byte(k)) != e.R.Owner([]byte(a)) {
			other = k
		}
	}
	p.send(cmd("MULTI") + cmd("SET", a, "9") + cmd("SET", other, "9") + cmd("EXEC"))
	r := p.replies(4)
	if r[1] != "+QUEUED\r\n" || !strings.HasPrefix(r[2], "-CROSSSLOT") || !strings.HasPrefix(r[3], "-EXECABORT") {
		t.Fatalf("cross-node transaction: %q", r)
	}
	if get(t, e.owner(e.R, a), a) != "2" {
		t.Error("a discarded transaction ran")
	}
	if r := p.do("WATCH", a, other); !strings.HasPrefix(r, "-CROSSSLOT") {
		t.Fatalf("WATCH over two nodes = %q", r)
	}
	node := e.px.pool.Node(e.R.Node(e.R.Owner([]byte(a))).Addr)
	if r := p.do("WATCH", a); r != "+OK\r\n" {
		t.Fatalf("WATCH = %q", r)
	}
	if n := node.DedicatedInUse(); n != 1 {
		t.Errorf("dedicated connections in use after WATCH: %d, want 1", n)
	}
	if r := p.do("WATCH", other); !strings.HasPrefix(r, "-CROSSSLOT") {
		t.Errorf("WATCH of another node's key while watching = %q", r)
	}
	p.send(cmd("MULTI") + cmd("INCR", a) + cmd("EXEC"))
	if got := strings.Join(p.replies(3), ""); got != "+OK\r\n+QUEUED\r\n*1\r\n:3\r\n" {
		t.Fatalf("watched transaction = %q", got)
	}
	if n := node.DedicatedInUse(); n != 0 {
		t.Errorf("dedicated connections in use after EXEC: %d, want 0", n)
	}
}

// TestTxMigrating: during MIGRATING a transaction on moving keys runs on
// their new owner, after moving them there, with a marker per key; old
// copies are unlinked.
func TestTxMigrating(t *testing.T) {
	e := newMigEnv(t, Options{})
	p := dial(t, e.px.addr)
	tag := e.key("m", true)
	a, b := "{"+tag+"}a", "{"+tag+"}b"
	if r := p.do("SET", a, "10"); r != "+OK\r\n" {
		t.Fatal(r)
	}
	e.stage(t, StagePrepare, 3)
	e.stage(t, StageFreeze, 3)
	e.stage(t, StageMigrating, 3)
	p.send(cmd("MULTI") + cmd("INCR", a) + cmd("SET", b, "x") + cmd("GET", a) + cmd("EXEC"))
	if got, want := strings.Join(p.replies(5), ""), "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:11\r\n+OK\r\n$2\r\n11\r\n"; got != want {
		t.Fatalf("transaction in MIGRATING: %q, want %q", got, want)
	}
	old, nw := e.owner(e.R, a), e.owner(e.T, a)
	if has(t, old, a) || get(t, nw, a) != "11" || get(t, nw, b) != "x" {
		t.Error("the transaction's keys are not on the new owner alone")
	}
	for _, k := range []string{a, b} {
		if !has(t, nw, string(rebalance.MarkerKey(3, []byte(k)))) {
			t.Errorf("no marker for %s on the new owner", k)
		}
	}
}

// TestTxFreezeHeld: EXEC of a transaction on a moving key waits in FREEZE
// and runs once MIGRATING arrives; past HoldMax it is TRYAGAIN and nothing
// ran.
func TestTxFreezeHeld(t *testing.T) {
	e := newMigEnv(t, Options{HoldMax: 3 * time.Second})
	p := dial(t, e.px.addr)
	k := e.key("f", true)
	e.stage(t, StagePrepare, 4)
	e.stage(t, StageFreeze, 4)
	p.send(cmd("MULTI") + cmd("SET", k, "v") + cmd("EXEC"))
	if got := strings.Join(p.replies(2), ""); got != "+OK\r\n+QUEUED\r\n" {
		t.Fatalf("MULTI/queue replies %q", got)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.rt.ApplyStage(e.R, &Migration{Stage: StageMigrating, Target: e.T, Epoch: 4})
	}()
	if r := p.reply(); r != "*1\r\n+OK\r\n" {
		t.Fatalf("held EXEC = %q", r)
	}
	if get(t, e.owner(e.T, k), k) != "v" || has(t, e.owner(e.R, k), k) {
		t.Error("the held transaction did not run on the new owner")
	}

	e2 := newMigEnv(t, Options{HoldMax: 100 * time.Millisecond})
	p2 := dial(t, e2.px.addr)
	k2 := e2.key("g", true)
	e2.stage(t, StagePrepare, 5)
	e2.stage(t, StageFreeze, 5)
	p2.send(cmd("MULTI") + cmd("SET", k2, "v") + cmd("EXEC"))
	if r := p2.replies(3); !strings.HasPrefix(r[2], "-TRYAGAIN") {
		t.Fatalf("EXEC held past HoldMax = %q", r[2])
	}
	if has(t, e2.owner(e2.R, k2), k2) || has(t, e2.owner(e2.T, k2), k2) {
		t.Error("a transaction answered TRYAGAIN ran")
	}
}

// TestWatchAcrossStages: a WATCH made before writes of its key moved to
// the new owner fails EXEC (nil), as if the key was touched; a WATCH made
// during MIGRATING watches the new owner, where the key was moved first,
// and a concurrent write there trips it.
func TestWatchAcrossStages(t *testing.T) {
	e := newMigEnv(t, Options{})
	p, q := dial(t, e.px.addr), dial(t, e.px.addr)
	k := e.key("w", true)
	if r := p.do("SET", k, "1"); r != "+OK\r\n" {
		t.Fatal(r)
	}
	if r := p.do("WATCH", k); r != "+OK\r\n" {
		t.Fatal(r)
	}
	e.stage(t, StagePrepare, 6)
	e.stage(t, StageFreeze, 6)
	e.stage(t, StageMigrating, 6)
	p.send(cmd("MULTI") + cmd("SET", k, "2") + cmd("EXEC"))
	if r := p.replies(3); r[2] != "*-1\r\n" {
		t.Fatalf("EXEC of a WATCH made before MIGRATING = %q, want a nil array", r[2])
	}
	if r := p.do("GET", k); r != "$1\r\n1\r\n" {
		t.Fatalf("GET after the aborted transaction = %q", r)
	}
	// Watched during MIGRATING: on the new owner.
	if r := p.do("WATCH", k); r != "+OK\r\n" {
		t.Fatal(r)
	}
	if nw := e.owner(e.T, k); get(t, nw, k) != "1" {
		t.Fatal("WATCH in MIGRATING did not move the key to its new owner first")
	}
	p.send(cmd("MULTI") + cmd("INCR", k) + cmd("EXEC"))
	if r := p.replies(3); r[2] != "*1\r\n:2\r\n" {
		t.Fatalf("EXEC of a WATCH made in MIGRATING = %q", r[2])
	}
	if r := p.do("WATCH", k); r != "+OK\r\n" {
		t.Fatal(r)
	}
	if r := q.do("SET", k, "x"); r != "+OK\r\n" {
		t.Fatal(r)
	}
	p.send(cmd("MULTI") + cmd("SET", k, "y") + cmd("EXEC"))
	if r := p.replies(3); r[2] != "*-1\r\n" {
		t.Fatalf("EXEC after another client wrote the watched key = %q", r[2])
	}
	if r := p.do("GET", k); r != "$1\r\nx\r\n" {
		t.Fatalf("GET = %q", r)
	}
}

// TestTxMigratingConcurrent: many clients run transactions on moving keys
// in MIGRATING at once, on the dedicated connections of one new owner,
// which pass from one client to the next: every EXEC reply is the client's
// own (a reply read after its connection went back to the pool would be
// another client's bytes; the race detector watches the buffer too).
func TestTxMigratingConcurrent(t *testing.T) {
	e := newMigEnv(t, Options{})
	tag := e.key("cc", true)
	e.stage(t, StagePrepare, 5)
	e.stage(t, StageFreeze, 5)
	e.stage(t, StageMigrating, 5)
	const clients, rounds = 8, 30
	errs := make(chan string, clients)
	for g := range clients {
		go func() {
			c := dial(t, e.px.addr)
			k := "{" + tag + "}n" + strconv.Itoa(g)
			for i := 1; i <= rounds; i++ {
				c.send(cmd("HELLO", strconv.Itoa(2+i%2)) + cmd("MULTI") + cmd("INCR", k) + cmd("EXEC"))
				r := c.replies(4)
				if want := "*1\r\n:" + strconv.Itoa(i) + "\r\n"; r[3] != want {
					errs <- k + ": EXEC = " + strconv.Quote(r[3]) + ", want " + strconv.Quote(want)
					return
				}
			}
			errs <- ""
		}()
	}
	for range clients {
		if msg := <-errs; msg != "" {
			t.Fatal(msg)
		}
	}
}
