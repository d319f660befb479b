package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// TestRouterWithoutRing: before a ring is known, local commands work and
// keyed ones get TRYAGAIN; once Apply publishes one, they are routed; an
// older ring is ignored.
func TestRouterWithoutRing(t *testing.T) {
	be := startStaticBackend(t)
	pool := backend.NewPool(backend.Options{})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pool.Close(ctx)
	}()
	rt := NewRouter(pool, nil)
	if rt.Ring() != nil || len(rt.NodeUp()) != 0 {
		t.Fatal("router without a ring reports one")
	}
	srv := New(Options{HashPrefix: "hash="}, rt, adminStub{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	c := dial(t, ln.Addr().String())
	if r := c.do("PING"); r != "+PONG\r\n" {
		t.Fatalf("PING without a ring: %q", r)
	}
	for _, args := range [][]string{{"GET", "k"}, {"MGET", "a", "b"}, {"DBSIZE"}, {"SCAN", "0"}, {"GET", "k", "hash=x"}} {
		if r := c.do(args...); !strings.HasPrefix(r, "-TRYAGAIN") {
			t.Errorf("%q without a ring: %q, want TRYAGAIN", args, r)
		}
	}
	r2, err := ring.New(2, []ring.Node{{Addr: be}})
	if err != nil {
		t.Fatal(err)
	}
	if !rt.Apply(r2) {
		t.Fatal("Apply of the first ring refused")
	}
	if r := c.do("GET", "k"); r != "$5\r\nvalue\r\n" {
		t.Fatalf("GET after Apply: %q", r)
	}
	other := freePort(t)
	r1, _ := ring.New(1, []ring.Node{{Addr: other}})
	if rt.Apply(r1) || rt.Ring() != r2 {
		t.Fatal("an older ring replaced a newer one")
	}
	if rt.Apply(nil) {
		t.Fatal("Apply(nil) accepted")
	}
	for deadline := time.Now().Add(2 * time.Second); !rt.NodeUp()[be]; {
		if time.Now().After(deadline) {
			t.Fatalf("NodeUp = %v", rt.NodeUp())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
