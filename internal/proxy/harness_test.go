package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// adminStub answers every JUPITER command with +OK.
type adminStub struct{}

func (adminStub) Command(context.Context, [][]byte) []byte { return []byte("+OK\r\n") }

// panicLog records the session-panic messages the server logs, so tests can
// tell that a recovered panic happened.
type panicLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *panicLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *panicLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *panicLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *panicLog) WithGroup(string) slog.Handler      { return l }
func (l *panicLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

type testProxy struct {
	addr string
	srv  *Server
	pool *backend.Pool
	log  *panicLog
}

// startProxy runs a proxy.Server on 127.0.0.1:0 routing over a ring of the
// given backend addresses, torn down when the test ends.
func startProxy(tb testing.TB, backends []string, popts backend.Options) *testProxy {
	tb.Helper()
	return startProxyRing(tb, ringOf(tb, 1, backends...), popts, Options{HashPrefix: "hash="})
}

// ringOf is the ring of version v over the given addresses.
func ringOf(tb testing.TB, v uint64, addrs ...string) *ring.Ring {
	tb.Helper()
	nodes := make([]ring.Node, len(addrs))
	for i, a := range addrs {
		nodes[i] = ring.Node{Addr: a}
	}
	r, err := ring.New(v, nodes)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// startProxyRing is startProxy with a given ring and front-end options.
func startProxyRing(tb testing.TB, r *ring.Ring, popts backend.Options, opts Options) *testProxy {
	tb.Helper()
	return startProxyAdmin(tb, r, popts, opts, func(*Router) Admin { return adminStub{} })
}

// startProxyAdmin is startProxyRing answering JUPITER with the Admin that
// adm makes for the proxy's router.
func startProxyAdmin(tb testing.TB, r *ring.Ring, popts backend.Options, opts Options, adm func(*Router) Admin) *testProxy {
	tb.Helper()
	pool := backend.NewPool(popts)
	router := NewRouter(pool, r)
	pl := &panicLog{}
	srv := New(opts, router, adm(router), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.log = slog.New(pl)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
		if err := pool.Close(ctx); err != nil {
			tb.Errorf("pool Close: %v", err)
		}
		if msgs := pl.errors(); len(msgs) > 0 {
			tb.Errorf("server logged errors:\n%s", strings.Join(msgs, "\n"))
		}
	})
	return &testProxy{addr: ln.Addr().String(), srv: srv, pool: pool, log: pl}
}

// client is a raw RESP connection that frames replies with resp.Scanner.
type client struct {
	tb  testing.TB
	nc  net.Conn
	buf []byte
	tmp []byte
}

func dial(tb testing.TB, addr string) *client {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	return &client{tb: tb, nc: nc, tmp: make([]byte, 64<<10)}
}

func (c *client) send(s string) {
	c.tb.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.tb.Fatalf("write: %v", err)
	}
}

// next returns the next complete reply, or an error (io.EOF when the server
// closed the connection between replies).
func (c *client) next(timeout time.Duration) (string, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, err := resp.ReplyLen(c.buf)
		if err != nil {
			return "", err
		}
		if n > 0 {
			r := string(c.buf[:n])
			c.buf = c.buf[:copy(c.buf, c.buf[n:])]
			return r, nil
		}
		m, err := c.nc.Read(c.tmp)
		c.buf = append(c.buf, c.tmp[:m]...)
		if err != nil {
			if errors.Is(err, io.EOF) && len(c.buf) > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}

func (c *client) reply() string {
	c.tb.Helper()
	r, err := c.next(10 * time.Second)
	if err != nil {
		c.tb.Fatalf("reading reply: %v", err)
	}
	return r
}

func (c *client) replies(n int) []string {
	c.tb.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = c.reply()
	}
	return out
}

func (c *client) do(cmd ...string) string {
	c.tb.Helper()
	bs := make([][]byte, len(cmd))
	for i, a := range cmd {
		bs[i] = []byte(a)
	}
	c.send(string(resp.AppendCommand(nil, bs...)))
	return c.reply()
}

// expectClosed fails unless the server closes the connection (after any
// replies still buffered).
func (c *client) expectClosed() {
	c.tb.Helper()
	r, err := c.next(5 * time.Second)
	if err == nil {
		c.tb.Fatalf("connection still open, got %q", r)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.tb.Fatal("connection still open (read timed out)")
	}
}

func cmd(args ...string) string {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return string(resp.AppendCommand(nil, bs...))
}
