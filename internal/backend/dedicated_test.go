package backend

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// startRedis starts a redis-server without persistence on a free loopback
// port and returns its address; it is killed when the test ends. A missing
// redis-server skips the test, except under CI, which must never pass by
// skipping.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is required in CI but not on PATH")
		}
		t.Skip("redis-server not on PATH")
	}
	// The free port may be taken again before redis-server binds it: retry.
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		var log bytes.Buffer
		cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--protected-mode", "no", "--dir", t.TempDir())
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { _ = cmd.Process.Kill(); <-exited }
		if waitAccepting(addr, exited, 10*time.Second) {
			t.Cleanup(stop)
			return addr
		}
		stop()
		if attempt == 2 {
			t.Fatalf("redis-server on %s did not start:\n%s", addr, log.String())
		}
	}
}

func waitAccepting(addr string, exited <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func cmd(args ...string) []byte {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	return resp.AppendCommand(nil, b...)
}

func soon() time.Time { return time.Now().Add(5 * time.Second) }

// doOne runs one command on d and returns its reply as a string.
func doOne(t *testing.T, d *Dedicated, args ...string) string {
	t.Helper()
	r, err := d.Do(cmd(args...), 1, soon())
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return string(r[0])
}

func borrow(t *testing.T, n *Node) *Dedicated {
	t.Helper()
	d, err := n.Borrow()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// muxUp returns the node for addr once its multiplexed connection is
// established, so the fake's connection counts are the dedicated ones plus
// exactly one.
func muxUp(t *testing.T, p *Pool, addr string) *Node {
	t.Helper()
	n := p.Node(addr)
	waitFor(t, func() bool { return n.Connected() == 1 })
	return n
}

func checkCounts(t *testing.T, n *Node, inUse, idle int) {
	t.Helper()
	if u, i := n.DedicatedInUse(), n.DedicatedIdle(); u != inUse || i != idle {
		t.Fatalf("in use %d idle %d, want %d and %d", u, i, inUse, idle)
	}
}

// TestDedicatedReuse: a released connection is the one the next Borrow
// gets (the node sees the same client), pipelined replies are framed one by
// one across Do and Receive, and a reply larger than the buffer is whole.
func TestDedicatedReuse(t *testing.T) {
	addr := startRedis(t)
	p := newPool(t, Options{})
	n := p.Node(addr)
	d := borrow(t, n)
	if d.Addr() != addr {
		t.Fatalf("Addr %q", d.Addr())
	}
	checkCounts(t, n, 1, 0)
	id := doOne(t, d, "CLIENT", "ID")
	if _, ok := resp.Int([]byte(id)); !ok {
		t.Fatalf("CLIENT ID: %q", id)
	}

	big := strings.Repeat("v", 100<<10)
	payload := append(cmd("SET", "big", big), cmd("GET", "big")...)
	payload = append(payload, cmd("PING", "after")...)
	r, err := d.Do(payload, 2, soon()) // the third reply is left for Receive
	if err != nil {
		t.Fatal(err)
	}
	if string(r[0]) != "+OK\r\n" {
		t.Fatalf("SET: %q", r[0])
	}
	if v, _, ok := resp.Bulk(r[1]); !ok || string(v) != big {
		t.Fatalf("GET big: %d bytes, ok %v", len(v), ok)
	}
	last, err := d.Receive(soon())
	if err != nil || string(last) != "$5\r\nafter\r\n" {
		t.Fatalf("Receive: %q %v", last, err)
	}
	d.Release(false)
	checkCounts(t, n, 0, 1)
	if d.c.fr.Buf != nil {
		t.Fatalf("a %d-byte read buffer was kept on Release", cap(d.c.fr.Buf))
	}
	if _, err := d.Receive(soon()); err == nil {
		t.Fatal("Receive through a released handle succeeded")
	}

	d2 := borrow(t, n)
	checkCounts(t, n, 1, 0)
	if id2 := doOne(t, d2, "CLIENT", "ID"); id2 != id {
		t.Fatalf("second borrow is client %q, first was %q: connection not reused", id2, id)
	}
	// A late Close through the old handle must not reach the new borrower.
	d.Close()
	if got := doOne(t, d2, "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after a stale Close: %q", got)
	}
	d2.Release(false)
	checkCounts(t, n, 0, 1)
}

// TestDedicatedRESP3: aggregate RESP3 replies (maps, sets, doubles) are
// framed whole.
func TestDedicatedRESP3(t *testing.T) {
	addr := startRedis(t)
	p := newPool(t, Options{})
	d := borrow(t, p.Node(addr))
	defer d.Close() // HELLO 3 is state Release does not undo
	if r := doOne(t, d, "HELLO", "3"); !strings.HasPrefix(r, "%") {
		t.Fatalf("HELLO 3: %q", r)
	}
	r, err := d.Do(append(append(cmd("HSET", "h", "a", "1", "b", "2"), cmd("HGETALL", "h")...),
		cmd("INCRBYFLOAT", "f", "1.5")...), 3, soon())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(r[1]), "%2\r\n") || strings.Count(string(r[1]), "$1\r\n") != 4 {
		t.Fatalf("HGETALL: %q", r[1])
	}
	if string(r[2]) != "$3\r\n1.5\r\n" {
		t.Fatalf("INCRBYFLOAT: %q", r[2])
	}
}

// TestDedicatedLimit: at MaxDedicated Borrow fails at once with an error
// wrapping ErrDedicatedLimit that says what to do; Release and Close free
// the slot, and borrowed plus idle never exceed the bound.
func TestDedicatedLimit(t *testing.T) {
	f := newFake(t, echoHandler)
	p := newPool(t, Options{MaxDedicated: 2, IdleDedicated: 2})
	n := p.Node(f.addr)
	a, b := borrow(t, n), borrow(t, n)
	start := time.Now()
	_, err := n.Borrow()
	if !errors.Is(err, ErrDedicatedLimit) {
		t.Fatalf("third Borrow: %v, want ErrDedicatedLimit", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Borrow at the bound took %v", d)
	}
	for _, want := range []string{f.addr, "max 2", "--max-dedicated-conns"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	a.Release(false)
	checkCounts(t, n, 1, 1)
	c := borrow(t, n)
	checkCounts(t, n, 2, 0)
	if c.c != a.c {
		t.Fatal("Borrow dialled although a connection was idle")
	}
	if _, err := n.Borrow(); !errors.Is(err, ErrDedicatedLimit) {
		t.Fatalf("Borrow with one idle taken: %v", err)
	}
	c.Close()
	c.Close() // idempotent: must not free a second slot
	c.Release(false)
	checkCounts(t, n, 1, 0)
	d := borrow(t, n)
	if _, err := n.Borrow(); !errors.Is(err, ErrDedicatedLimit) {
		t.Fatalf("double Close freed two slots: %v", err)
	}
	b.Release(false)
	d.Release(false)
	checkCounts(t, n, 0, 2)
}

// TestDedicatedLimitConcurrent: borrowers racing for a few slots never see
// more than MaxDedicated connections, and every slot comes back.
func TestDedicatedLimitConcurrent(t *testing.T) {
	f := newFake(t, echoHandler)
	const maxConns = 4
	p := newPool(t, Options{MaxDedicated: maxConns, IdleDedicated: 2})
	n := p.Node(f.addr)
	var wg sync.WaitGroup
	var ok, limited atomic.Int64
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				d, err := n.Borrow()
				if err != nil {
					if !errors.Is(err, ErrDedicatedLimit) {
						t.Error(err)
						return
					}
					limited.Add(1)
					continue
				}
				if tot := n.DedicatedInUse() + n.DedicatedIdle(); tot > maxConns {
					t.Errorf("%d dedicated connections, max %d", tot, maxConns)
				}
				r, err := d.Do(pingCmd("x"), 1, soon())
				if err != nil || string(r[0]) != echoed("x") {
					t.Errorf("PING: %q %v", r, err)
				}
				ok.Add(1)
				if i%3 == 0 {
					d.Close()
				} else {
					d.Release(i%2 == 0)
				}
			}
		}()
	}
	wg.Wait()
	if n.DedicatedInUse() != 0 || n.DedicatedIdle() > 2 {
		t.Fatalf("after the run: in use %d idle %d", n.DedicatedInUse(), n.DedicatedIdle())
	}
	if ok.Load() == 0 {
		t.Fatal("no Borrow succeeded")
	}
	t.Logf("%d borrows, %d at the limit", ok.Load(), limited.Load())
}

// TestDedicatedDirtyReleaseClearsWatch: Release(true) undoes WATCH and
// MULTI, so the next borrower's transaction is its own. The control half
// shows the test would see a leftover WATCH: with Release(false) the EXEC
// is aborted.
func TestDedicatedDirtyReleaseClearsWatch(t *testing.T) {
	addr := startRedis(t)
	p := newPool(t, Options{})
	n := p.Node(addr)

	run := func(dirty bool) string {
		d := borrow(t, n)
		id := doOne(t, d, "CLIENT", "ID")
		if r := doOne(t, d, "WATCH", "k"); r != "+OK\r\n" {
			t.Fatalf("WATCH: %q", r)
		}
		d.Release(dirty)
		d = borrow(t, n)
		if got := doOne(t, d, "CLIENT", "ID"); got != id {
			t.Fatalf("not the same connection: %q vs %q", got, id)
		}
		other := borrow(t, n) // a new connection: the idle one is taken
		doOne(t, other, "SET", "k", "changed")
		other.Close()
		r, err := d.Do(append(append(cmd("MULTI"), cmd("SET", "k", "mine")...), cmd("EXEC")...), 3, soon())
		if err != nil {
			t.Fatal(err)
		}
		exec := string(r[2]) // Release reuses the reply buffer
		d.Release(true)
		return exec
	}
	if got := run(true); got != "*1\r\n+OK\r\n" {
		t.Fatalf("EXEC after a dirty Release: %q, want it to succeed", got)
	}
	if got := run(false); got != "*-1\r\n" {
		t.Fatalf("control: EXEC with the WATCH kept: %q, want it aborted", got)
	}

	// Inside MULTI: the next borrower's commands run, not queue.
	d := borrow(t, n)
	if r, err := d.Do(append(cmd("MULTI"), cmd("SET", "k", "queued")...), 2, soon()); err != nil || string(r[1]) != "+QUEUED\r\n" {
		t.Fatalf("MULTI: %q %v", r, err)
	}
	d.Release(true)
	checkCounts(t, n, 0, 1)
	d = borrow(t, n)
	if got := doOne(t, d, "GET", "k"); got != "$7\r\nchanged\r\n" {
		t.Fatalf("GET after a released MULTI: %q", got)
	}
	d.Release(false)
}

// TestDedicatedCloseUnblocksReceive: a client gone while its BLPOP k 0
// blocks: Close from another goroutine makes the Receive fail at once, and
// the node drops the blocked client.
func TestDedicatedCloseUnblocksReceive(t *testing.T) {
	addr := startRedis(t)
	p := newPool(t, Options{})
	n := p.Node(addr)
	d := borrow(t, n)
	if err := d.Send(cmd("BLPOP", "k", "0"), soon()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		r, err := d.Receive(time.Time{})
		if err == nil {
			err = fmt.Errorf("got %q", r)
		}
		done <- err
	}()
	info := borrow(t, n)
	defer info.Release(false)
	waitBlocked(t, info, "blocked_clients:1")
	select {
	case err := <-done:
		t.Fatalf("Receive returned before Close: %v", err)
	default:
	}
	start := time.Now()
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, errClosed) {
			t.Fatalf("Receive after Close: %v, want %v", err, errClosed)
		}
		checkNodeError(t, err, addr)
	case <-time.After(time.Second):
		t.Fatal("Receive still blocked 1s after Close")
	}
	t.Logf("unblocked in %v", time.Since(start))
	checkCounts(t, n, 1, 0) // info only
	d.Release(true)         // no-op after Close
	checkCounts(t, n, 1, 0)
	waitBlocked(t, info, "blocked_clients:0")
	// Nobody pops what is pushed now.
	doOne(t, info, "LPUSH", "k", "v")
	if got := doOne(t, info, "LLEN", "k"); got != ":1\r\n" {
		t.Fatalf("LLEN k: %q", got)
	}
}

func waitBlocked(t *testing.T, d *Dedicated, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := doOne(t, d, "INFO", "clients")
		if strings.Contains(r, want+"\r\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("INFO clients never showed %s:\n%s", want, r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDedicatedReceiveDeadline: Receive gives up at its deadline with an
// error naming the node, may wait again for the same reply, and the
// connection is not reused afterwards (a reply was owed when it failed).
func TestDedicatedReceiveDeadline(t *testing.T) {
	f := newFake(t, func(args [][]byte) action {
		if string(args[0]) == "SLOW" {
			return action{reply: []byte("+LATE\r\n"), delay: 300 * time.Millisecond}
		}
		return echoHandler(args)
	})
	p := newPool(t, Options{})
	n := p.Node(f.addr)
	d := borrow(t, n)
	if err := d.Send(cmd("SLOW"), soon()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := d.Receive(time.Now().Add(50 * time.Millisecond))
	if el := time.Since(start); el < 40*time.Millisecond || el > time.Second {
		t.Fatalf("Receive with a 50ms deadline returned after %v", el)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Receive: %v, want a deadline error", err)
	}
	checkNodeError(t, err, f.addr)
	r, err := d.Receive(soon())
	if err != nil || string(r) != "+LATE\r\n" {
		t.Fatalf("second Receive: %q %v", r, err)
	}
	d.Release(false)
	checkCounts(t, n, 0, 0)
	waitFor(t, func() bool { return f.closes.Load() == 1 })
}

// TestDedicatedBadReply: bytes that are not RESP fail Receive with
// resp.ErrBadReply, and every later call on the connection fails too.
func TestDedicatedBadReply(t *testing.T) {
	f := newFake(t, func(args [][]byte) action { return action{reply: []byte("hello\r\n")} })
	p := newPool(t, Options{})
	n := p.Node(f.addr)
	d := borrow(t, n)
	_, err := d.Do(cmd("PING"), 1, soon())
	if !errors.Is(err, resp.ErrBadReply) {
		t.Fatalf("Do: %v, want ErrBadReply", err)
	}
	checkNodeError(t, err, f.addr)
	if err := d.Send(cmd("PING"), soon()); !errors.Is(err, resp.ErrBadReply) {
		t.Fatalf("Send after a bad reply: %v", err)
	}
	d.Release(false)
	checkCounts(t, n, 0, 0)
}

// TestDedicatedPeerClosed: the node closing the connection mid-exchange
// fails the exchange with a *NodeError, and the connection is not kept.
func TestDedicatedPeerClosed(t *testing.T) {
	f := newFake(t, func(args [][]byte) action {
		if string(args[0]) == "QUIT" {
			return action{close: true}
		}
		return echoHandler(args)
	})
	p := newPool(t, Options{})
	n := p.Node(f.addr)
	d := borrow(t, n)
	if _, err := d.Do(cmd("QUIT"), 1, soon()); err == nil {
		t.Fatal("Do succeeded on a connection the node closed")
	} else {
		checkNodeError(t, err, f.addr)
	}
	d.Release(false)
	checkCounts(t, n, 0, 0)
}

// TestDedicatedStaleIdle: an idle connection the node killed meanwhile is
// noticed by Borrow, which hands out a working one instead.
func TestDedicatedStaleIdle(t *testing.T) {
	addr := startRedis(t)
	p := newPool(t, Options{})
	n := p.Node(addr)
	a, b := borrow(t, n), borrow(t, n)
	ida := doOne(t, a, "CLIENT", "ID")
	a.Release(false)
	id, _ := resp.Int([]byte(ida))
	if r := doOne(t, b, "CLIENT", "KILL", "ID", fmt.Sprint(id)); r != ":1\r\n" {
		t.Fatalf("CLIENT KILL: %q", r)
	}
	time.Sleep(50 * time.Millisecond) // for the FIN to arrive
	c := borrow(t, n)
	if got := doOne(t, c, "CLIENT", "ID"); got == ida {
		t.Fatal("Borrow handed out the killed connection's id")
	}
	checkCounts(t, n, 2, 0)
	c.Release(false)
	b.Release(false)
}

// TestDedicatedDeadNode: Borrow from a node nobody listens on fails fast
// with a *NodeError and leaves no slot taken.
func TestDedicatedDeadNode(t *testing.T) {
	addr := freeAddr(t)
	p := newPool(t, Options{MaxDedicated: 1})
	n := p.Node(addr)
	for i := 0; i < 3; i++ { // a leaked slot would turn the second into a limit error
		start := time.Now()
		d, err := n.Borrow()
		if err == nil {
			d.Close()
			t.Fatal("Borrow from a dead port succeeded")
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("Borrow took %v", el)
		}
		checkNodeError(t, err, addr)
		if errors.Is(err, ErrDedicatedLimit) {
			t.Fatalf("Borrow %d: %v", i, err)
		}
	}
	checkCounts(t, n, 0, 0)
}

// TestDedicatedRetain: dropping a node closes its idle connections at once
// and a borrowed one on Release; Borrow works during the grace period, and
// at its end connections still borrowed are closed (a blocked Receive
// fails) and Borrow fails.
func TestDedicatedRetain(t *testing.T) {
	f := newFake(t, func(args [][]byte) action {
		if string(args[0]) == "HANG" {
			return action{} // never answered
		}
		return echoHandler(args)
	})
	p := newPool(t, Options{RequestTimeout: 100 * time.Millisecond})
	n := muxUp(t, p, f.addr)
	a, b := borrow(t, n), borrow(t, n)
	a.Release(false)
	checkCounts(t, n, 1, 1)
	p.Retain(nil)
	checkCounts(t, n, 1, 0)
	waitFor(t, func() bool { return f.closes.Load() == 1 })
	if got := doOne(t, b, "PING", "x"); got != echoed("x") {
		t.Fatalf("borrowed connection in the grace period: %q", got)
	}
	b.Release(false)
	checkCounts(t, n, 0, 0)
	waitFor(t, func() bool { return f.closes.Load() == 2 })

	c := borrow(t, n) // grace period: still allowed
	if err := c.Send(cmd("HANG"), soon()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Receive(time.Now().Add(10 * time.Second))
	if !errors.Is(err, errClosed) {
		t.Fatalf("Receive on a dropped node: %v, want %v", err, errClosed)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("blocked Receive ended after %v", el)
	}
	c.Release(false)
	checkCounts(t, n, 0, 0)
	if _, err := n.Borrow(); !errors.Is(err, errClosed) {
		t.Fatalf("Borrow after the grace period: %v", err)
	}
}

// TestDedicatedPoolClose: Pool.Close closes idle and borrowed connections
// (a blocked Receive fails) and later Borrows fail, also on nodes created
// after Close.
func TestDedicatedPoolClose(t *testing.T) {
	f := newFake(t, func(args [][]byte) action { return action{} })
	p := NewPool(Options{})
	n := muxUp(t, p, f.addr)
	a, b := borrow(t, n), borrow(t, n)
	a.Release(false)
	if err := b.Send(cmd("HANG"), soon()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := b.Receive(time.Time{}); done <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errClosed) {
			t.Fatalf("blocked Receive: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Receive still blocked after Pool.Close")
	}
	b.Release(false)
	checkCounts(t, n, 0, 0)
	// Both, and the multiplexed connection Pool.Node dialled.
	waitFor(t, func() bool { return f.closes.Load() == 3 })
	if _, err := n.Borrow(); !errors.Is(err, errClosed) {
		t.Fatalf("Borrow after Close: %v", err)
	}
	if _, err := p.Node(freeAddr(t)).Borrow(); !errors.Is(err, errClosed) {
		t.Fatalf("Borrow on a node made after Close: %v", err)
	}
}

// TestDedicatedDefaults: the documented defaults, and IdleDedicated never
// above MaxDedicated.
func TestDedicatedDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.MaxDedicated != 1024 || o.IdleDedicated != 8 {
		t.Fatalf("defaults: max %d idle %d", o.MaxDedicated, o.IdleDedicated)
	}
	if o := (Options{MaxDedicated: 3}).withDefaults(); o.IdleDedicated != 3 {
		t.Fatalf("idle %d above max 3", o.IdleDedicated)
	}
	if o := (Options{IdleDedicated: -1}).withDefaults(); o.IdleDedicated != 0 {
		t.Fatalf("negative idle gave %d", o.IdleDedicated)
	}
}
