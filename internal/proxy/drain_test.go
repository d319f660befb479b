package proxy

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// shutdownAsync runs srv.Shutdown(ctx) and returns its result channel,
// once the drain has begun.
func shutdownAsync(t *testing.T, srv *Server, ctx context.Context) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	waitFor(t, "the drain to begin", srv.draining.Load)
	return done
}

// shutdownDone waits for Shutdown's result, at most within.
func shutdownDone(t *testing.T, done <-chan error, within time.Duration, why string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v (%s)", err, why)
		}
	case <-time.After(within):
		t.Fatalf("Shutdown still running after %v: %s", within, why)
	}
}

// TestDrainBusyClient: a client that sends its next command as soon as it
// has the reply is never quiet for drainQuiet, yet the drain closes it at
// a command boundary (its last replies are held until it waits for them):
// Shutdown without a deadline returns, the client sees an end of stream
// after a complete reply, and every INCR the node ran was answered.
func TestDrainBusyClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	px := startProxy(t, []string{r.Addr}, backend.Options{})
	c := dial(t, px.addr)
	incr := cmd("INCR", "busy")
	if got := c.do("INCR", "busy"); got != ":1\r\n" {
		t.Fatalf("INCR = %q", got)
	}
	type result struct {
		replies int
		err     error
	}
	res := make(chan result, 1)
	running := make(chan struct{})
	go func() {
		n := 1
		for {
			if n == 100 {
				close(running)
			}
			if _, err := c.nc.Write([]byte(incr)); err != nil {
				res <- result{n, err}
				return
			}
			got, err := c.next(10 * time.Second)
			if err != nil {
				res <- result{n, err}
				return
			}
			if got != ":"+strconv.Itoa(n+1)+"\r\n" {
				res <- result{n, errors.New("INCR replied " + strings.TrimSpace(got) + ", want " + strconv.Itoa(n+1))}
				return
			}
			n++
		}
	}()
	select {
	case <-running:
	case r := <-res:
		t.Fatalf("client stopped before the drain: %d replies, %v", r.replies, r.err)
	}
	// No deadline: only the drain's own rules can end the session.
	done := shutdownAsync(t, px.srv, context.Background())
	shutdownDone(t, done, 10*time.Second, "a busy client was never closed at a command boundary")
	var got result
	select {
	case got = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the client saw no close")
	}
	if !errors.Is(got.err, io.EOF) {
		t.Fatalf("client after %d replies: %v, want a clean end of stream", got.replies, got.err)
	}
	if v := testenv.Cli(t, r.Addr, "GET", "busy"); v != strconv.Quote(strconv.Itoa(got.replies)) {
		t.Fatalf("counter on the node = %s, want %d (every INCR run was answered, none after the close)", v, got.replies)
	}
	t.Logf("closed after %d INCRs", got.replies)
}

// TestDrainBatchInTwoWrites: a batch whose second write is already waiting
// in the socket when the first part's replies are ready is not cut in two,
// even when the first part ran longer than drainQuiet (the client's last
// bytes then look old): both parts run and are answered, then the
// connection closes.
func TestDrainBatchInTwoWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	px := startProxy(t, []string{r.Addr}, backend.Options{})
	c := dial(t, px.addr)
	c.do("PING")
	part := strings.Repeat(cmd("INCR", "two"), 10)
	r.Pause() // the first part waits on the node
	c.send(part)
	waitFor(t, "the first part sent to the node", func() bool { return px.pool.Node(r.Addr).Inflight() > 0 })
	done := shutdownAsync(t, px.srv, context.Background())
	time.Sleep(3 * drainQuiet) // the first part's bytes are now older than drainQuiet
	c.send(part)               // the rest of the batch, waiting in the socket
	r.Resume()
	for i := 1; i <= 20; i++ {
		got, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("reply %d of 20: %v (the batch was cut)", i, err)
		}
		if got != ":"+strconv.Itoa(i)+"\r\n" {
			t.Fatalf("reply %d = %q", i, got)
		}
	}
	c.expectClosed()
	shutdownDone(t, done, 10*time.Second, "the client was not closed after its batch")
	if v := testenv.Cli(t, r.Addr, "GET", "two"); v != `"20"` {
		t.Fatalf("counter on the node = %s, want 20", v)
	}
}

// TestDrainBlockedCommand: during the drain a blocked command still
// completes when its element arrives; one still blocked when the drain's
// last phase starts (shortly before Shutdown's deadline) gets a clean
// -UNBLOCKED error, nothing popped, then the close; Shutdown finishes
// within its deadline.
func TestDrainBlockedCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	px := startProxy(t, []string{r.Addr}, backend.Options{})
	served, starved := dial(t, px.addr), dial(t, px.addr)
	served.send(cmd("BLPOP", "qserved", "0"))
	starved.send(cmd("BLPOP", "qstarved", "0"))
	waitFor(t, "both BLPOPs blocked on the node", func() bool { return blockedOn(t, r.Addr) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := shutdownAsync(t, px.srv, ctx)

	// Still draining: an element pushed now reaches the blocked client.
	testenv.Cli(t, r.Addr, "RPUSH", "qserved", "x")
	if got := served.reply(); got != "*2\r\n$7\r\nqserved\r\n$1\r\nx\r\n" {
		t.Fatalf("BLPOP woken during the drain = %q", got)
	}
	served.expectClosed()

	if got := starved.reply(); got != "-"+errShutdown+"\r\n" {
		t.Fatalf("BLPOP still blocked at the drain's end = %q, want -%s", got, errShutdown)
	}
	starved.expectClosed()
	shutdownDone(t, done, 5*time.Second, "")
	if n := blockedOn(t, r.Addr); n != 0 {
		t.Fatalf("%d clients still blocked on the node", n)
	}
	// Nothing was popped for the cancelled command: a push stays.
	testenv.Cli(t, r.Addr, "RPUSH", "qstarved", "kept")
	if got := testenv.Cli(t, r.Addr, "LRANGE", "qstarved", "0", "-1"); got != `1) "kept"` {
		t.Fatalf("qstarved = %s", got)
	}
}

// TestDrainNeverQuietClient: a client that keeps sending without waiting
// for replies is never quiet; the drain's last phase closes it at a
// command boundary before Shutdown's deadline, and every INCR the node ran
// was answered (what it sent after the close never ran).
func TestDrainNeverQuietClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	px := startProxy(t, []string{r.Addr}, backend.Options{})
	c := dial(t, px.addr)
	c.do("PING")
	incr := []byte(cmd("INCR", "stream"))
	stop := make(chan struct{})
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if _, err := c.nc.Write(incr); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-writer }()
	replies := 0
	for replies < 20 { // running
		if got := c.reply(); got != ":"+strconv.Itoa(replies+1)+"\r\n" {
			t.Fatalf("INCR = %q", got)
		}
		replies++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := shutdownAsync(t, px.srv, ctx)
	for {
		got, err := c.next(10 * time.Second)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after %d replies: %v, want a clean end of stream", replies, err)
			}
			break
		}
		if got != ":"+strconv.Itoa(replies+1)+"\r\n" {
			t.Fatalf("INCR = %q, want :%d", got, replies+1)
		}
		replies++
	}
	shutdownDone(t, done, 5*time.Second, "")
	if v := testenv.Cli(t, r.Addr, "GET", "stream"); v != strconv.Quote(strconv.Itoa(replies)) {
		t.Fatalf("counter on the node = %s, want %d (every INCR run was answered)", v, replies)
	}
}
