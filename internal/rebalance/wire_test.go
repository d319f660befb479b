package rebalance

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// TestRawPoolAuth: a raw pool reaches a node with the client's AUTH (an ACL
// user and the default user's password) and fails clearly with a wrong one.
func TestRawPoolAuth(t *testing.T) {
	srv := testenv.StartRedis(t, "--requirepass", "secret", "--user", "mig", "on", ">pw", "~*", "+@all")
	ctx := tctx(t, 10*time.Second)
	for _, c := range []struct {
		name, user, pass string
		ok               bool
	}{{"default user", "", "secret", true}, {"acl user", "mig", "pw", true}, {"wrong password", "", "nope", false}} {
		cl, err := NewClient(srv.Addr, backend.Security{Username: c.user, Password: c.pass}, 0)
		if err != nil {
			t.Fatal(err)
		}
		p := rawPoolFor(cl)
		if p == nil {
			t.Fatal("no raw pool for a go-redis client")
		}
		err = p.roundTrip(ctx, []Command{cmd("SET", []byte("k"), []byte("v")), cmd("GET", []byte("k"))}, func(r [][]byte) error {
			if string(r[0]) != "+OK\r\n" || string(r[1]) != "$1\r\nv\r\n" {
				t.Errorf("%s: replies %q", c.name, r)
			}
			return nil
		})
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), "AUTH")):
			t.Errorf("%s: err %v, want an AUTH error", c.name, err)
		}
		p.close()
		cl.Close()
	}
}

// TestRawPoolTLS: the raw pool dials with the client's TLS (Memorystore's
// in-transit encryption: a per-instance CA) and AUTH, and a Migrator moves
// keys between two TLS nodes over it.
func TestRawPoolTLS(t *testing.T) {
	ca := testenv.NewCA(t, "rawpool")
	cert := ca.Issue(testenv.CertSpec{CommonName: "127.0.0.1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	sec := backend.Security{CAFile: ca.File, Password: "secret"}
	var cs []*redis.Client
	for range 2 {
		srv := testenv.StartRedisTLS(t, cert, "--requirepass", "secret")
		c, err := NewClient(srv.Addr, sec, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	ctx := tctx(t, 20*time.Second)
	for i := range 500 {
		if err := cs[0].Set(ctx, fmtKey("tls", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if rawPoolFor(cs[0]) == nil {
		t.Fatal("no raw pool for a TLS client")
	}
	m, err := NewMigrator(Config{Source: cs[0], Dests: map[int]Node{0: cs[1]}, Moving: allMoving, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.Run(ctx)
	if err != nil || p.KeysMoved != 500 {
		t.Fatalf("Run over TLS: %v, moved %d", err, p.KeysMoved)
	}
	if n := cs[1].Exists(ctx, fmtKey("tls", 499)).Val(); n != 1 {
		t.Error("a moved key is not on the destination")
	}
}

// TestRawPoolReplies: replies of every kind the package reads, framed
// across a buffer that must grow, and error replies as replies.
func TestRawPoolReplies(t *testing.T) {
	n := startNode(t)
	ctx := tctx(t, 10*time.Second)
	p := rawPoolFor(n.c)
	defer p.close()
	big := bytes.Repeat([]byte("x"), 300<<10) // beyond the first 64 KB buffer
	cmds := []Command{cmd("SET", []byte("big"), big), cmd("GET", []byte("big")), cmd("GET", []byte("none")),
		cmd("INCR", []byte("n")), cmd("MGET", []byte("big"), []byte("none")), cmd("INCR", []byte("big"))}
	for round := range 2 { // the second round reuses the connection and its buffers
		err := p.roundTrip(ctx, cmds, func(r [][]byte) error {
			if len(r) != len(cmds) {
				t.Fatalf("%d replies", len(r))
			}
			if v, null, ok := resp.Bulk(r[1]); !ok || null || !bytes.Equal(v, big) {
				t.Errorf("GET big: %d bytes", len(v))
			}
			if string(r[2]) != "$-1\r\n" || string(r[3]) != ":"+string(rune('1'+round))+"\r\n" {
				t.Errorf("GET none / INCR: %q %q", r[2], r[3])
			}
			if len(r[4]) != len(r[1])+len("*2\r\n$-1\r\n") {
				t.Errorf("MGET: %d bytes", len(r[4]))
			}
			if !strings.HasPrefix(string(r[5]), "-ERR") {
				t.Errorf("INCR of a string: %q", r[5])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Both wires give the same bytes for what the movers read.
	var raw, viaClient [][]byte
	f := func(dst *[][]byte) func([][]byte) error {
		return func(r [][]byte) error {
			for _, x := range r {
				*dst = append(*dst, bytes.Clone(x))
			}
			return nil
		}
	}
	same := []Command{cmd("GET", []byte("big")), cmd("GET", []byte("none")), cmd("MGET", []byte("none"), []byte("big")),
		cmd("PTTL", []byte("big")), cmd("INCR", []byte("big"))}
	if err := p.roundTrip(ctx, same, f(&raw)); err != nil {
		t.Fatal(err)
	}
	if err := (clientWire{n.c}).roundTrip(ctx, same, f(&viaClient)); err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		if !bytes.Equal(raw[i], viaClient[i]) {
			t.Errorf("%s: raw %q, go-redis %q", same[i], trim(raw[i]), trim(viaClient[i]))
		}
	}
}

func trim(b []byte) []byte { return b[:min(len(b), 40)] }

// TestRawPoolCancel: cancelling the context interrupts a round trip that
// waits on the node at once, and the pool stays usable.
func TestRawPoolCancel(t *testing.T) {
	n := startNode(t)
	p := rawPoolFor(n.c)
	defer p.close()
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	time.AfterFunc(100*time.Millisecond, func() { cancel(stop) })
	start := time.Now()
	err := p.roundTrip(ctx, []Command{cmd("BLPOP", []byte("nothing"), []byte("5"))}, func([][]byte) error { return nil })
	if !errors.Is(err, stop) || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v, want the cancel cause at once", err, time.Since(start))
	}
	err = p.roundTrip(tctx(t, 5*time.Second), []Command{cmd("PING")}, func(r [][]byte) error {
		if string(r[0]) != "+PONG\r\n" {
			t.Errorf("PING: %q", r[0])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.close()
	if err := p.roundTrip(context.Background(), []Command{cmd("PING")}, func([][]byte) error { return nil }); !errors.Is(err, errRawPoolClosed) {
		t.Fatalf("after close: %v", err)
	}
}
