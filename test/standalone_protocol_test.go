package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
)

// TestStandaloneProtocolErrors sends malformed and over-limit RESP. Each
// offending client must get one "-ERR Protocol error" line and be
// disconnected, while a client connected before keeps working and no stored
// data is lost. A second jupiter on the same nodes runs with
// --max-arg-bytes 4096 for the argument-size limit.
func TestStandaloneProtocolErrors(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	small := testenv.StartJupiter(t, nil, "--backends", strings.Join(e.c.Addrs(), ","), "--max-arg-bytes", "4096")

	// Data and a bystander connection on each jupiter, opened before the abuse.
	for i := 0; i < 60; i++ {
		if err := e.j.Set(ctx, fmt.Sprintf("pe:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	bystanders := map[string]*rawConn{e.c.Jupiter.Addr: dialRaw(t, e.c.Jupiter.Addr), small.Addr: dialRaw(t, small.Addr)}
	for addr, b := range bystanders {
		if r := b.do("CLIENT", "SETNAME", "bystander"); r.String() != "+OK" {
			t.Fatalf("%s: bystander setup: %v", addr, r)
		}
	}

	big := strings.Repeat("x", 10*1024)
	for _, tc := range []struct {
		name    string
		small   bool   // send to the --max-arg-bytes 4096 jupiter
		payload string // sent in one write
		before  []string
	}{
		{name: "BadBulkLength", payload: "*1\r\n$x\r\n"},
		{name: "IntegerInsteadOfBulk", payload: "*2\r\n$3\r\nGET\r\n:1\r\n"},
		{name: "HugeBulkHeader", payload: "*1\r\n$9999999999\r\n"},
		{name: "HugeMultibulkHeader", payload: "*99999999999\r\n"},
		{name: "NegativeBulkLength", payload: "*2\r\n$3\r\nGET\r\n$-5\r\n"},
		{name: "BulkNotTerminated", payload: "*1\r\n$4\r\nPINGXX\r\n"},
		{name: "LongHeaderDigits", payload: "*1\r\n$" + strings.Repeat("1", 40) + "\r\n"},
		{name: "ArgOverLimit", small: true, payload: encode("SET", "pe:big", big)},
		{name: "InlineUnbalancedQuotes", payload: "SET \"pe:q v\r\n"},
		{name: "InlineTooLong", payload: strings.Repeat("A", 70*1024)}, // no newline in 70 KiB
		{name: "TooManyArgs", payload: "*2000000\r\n"},
		// Valid commands in the same write are answered first, in order.
		{name: "AfterValidCommands", payload: encode("SET", "pe:ok", "1") + encode("GET", "pe:ok") + "*1\r\n$x\r\n",
			before: []string{"+OK", `"1"`}},
		{name: "ArgOverLimitAfterValid", small: true, payload: encode("PING") + encode("SET", "pe:big2", big),
			before: []string{"+PONG"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := e.c.Jupiter.Addr
			if tc.small {
				addr = small.Addr
			}
			c := dialRaw(t, addr)
			c.send(tc.payload)
			for _, want := range tc.before {
				if r := c.read(); r.String() != want {
					t.Errorf("reply before the protocol error = %v, want %s", r, want)
				}
			}
			r, err := c.tryRead()
			if err != nil {
				t.Fatalf("no reply to %q: %v (want -ERR Protocol error, not a hang)", trunc(tc.payload), err)
			}
			wantErrPrefix(t, trunc(tc.payload), r, "ERR Protocol error")
			c.expectClosed()
			// The bystander on the same jupiter is unaffected.
			b := bystanders[addr]
			if r := b.do("GET", "pe:7"); r.String() != `"7"` {
				t.Errorf("bystander GET pe:7 = %v", r)
			}
			if r := b.do("CLIENT", "GETNAME"); r.str != "bystander" {
				t.Errorf("bystander lost its connection state: %v", r)
			}
		})
	}

	t.Run("UnderLimitStillWorks", func(t *testing.T) {
		c := dialRaw(t, small.Addr)
		v := strings.Repeat("y", 4000)
		if r := c.do("SET", "pe:under", v); r.String() != "+OK" {
			t.Fatalf("SET of 4000 bytes under a 4096 limit = %v", r)
		}
		if r := c.do("GET", "pe:under"); r.str != v {
			t.Errorf("GET pe:under: %d bytes", len(r.str))
		}
		// The default jupiter takes the 10 KiB argument the small one refused.
		d := dialRaw(t, e.c.Jupiter.Addr)
		if r := d.do("SET", "pe:big", big); r.String() != "+OK" {
			t.Errorf("SET 10 KiB on the default jupiter = %v", r)
		}
	})

	// Nothing stored was lost, and nothing of the refused commands was stored.
	for i := 0; i < 60; i++ {
		if v, err := e.j.Get(ctx, fmt.Sprintf("pe:%d", i)).Int(); err != nil || v != i {
			t.Errorf("pe:%d = %d, %v after the protocol errors", i, v, err)
		}
	}
	if n, _ := e.j.Exists(ctx, "pe:big2").Result(); n != 0 {
		t.Errorf("the refused over-limit SET pe:big2 was stored")
	}
	if n, err := e.j.DBSize(ctx).Result(); err != nil || n != 60+3 { // pe:ok pe:under pe:big
		t.Errorf("DBSIZE = %d, %v, want 63", n, err)
	}
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// TestStandaloneClientVanishes: clients that write a big pipeline and
// disconnect without reading their replies must cost jupiter nothing but
// their own connections. Every other client, including one connected
// before, must keep getting exactly the replies to its own commands.
func TestStandaloneClientVanishes(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	for i := 0; i < 60; i++ {
		if err := e.j.Set(ctx, fmt.Sprintf("cv:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	bystander := dialRaw(t, e.c.Jupiter.Addr)
	if r := bystander.do("GET", "cv:1"); r.str != "1" {
		t.Fatalf("bystander GET cv:1 = %v", r)
	}
	for i := 0; i < 5; i++ {
		c := dialRaw(t, e.c.Jupiter.Addr)
		var b strings.Builder
		for j := 0; j < 3000; j++ {
			b.WriteString(encode("GET", fmt.Sprintf("cv:%d", j%60)))
		}
		c.send(b.String())
		c.nc.Close()
	}
	time.Sleep(100 * time.Millisecond) // let jupiter notice the closed sockets
	select {
	case <-e.c.Jupiter.Exited():
		t.Fatalf("jupiter exited:\n%s", e.c.Jupiter.Log())
	default:
	}
	// Old connection, new raw connections and a go-redis client: each reply
	// must be the value of the key that connection asked for.
	clients := []*rawConn{bystander, dialRaw(t, e.c.Jupiter.Addr), dialRaw(t, e.c.Jupiter.Addr)}
	for round := 0; round < 3; round++ {
		for ci, c := range clients {
			for i := 0; i < 20; i++ {
				k := fmt.Sprintf("cv:%d", (i*7+ci)%60)
				if r := c.do("GET", k); r.str != fmt.Sprint((i*7+ci)%60) {
					t.Fatalf("client %d: GET %s = %v: a reply that belongs to another client", ci, k, r)
				}
			}
		}
	}
	for i := 0; i < 60; i++ {
		if v, err := e.j.Get(ctx, fmt.Sprintf("cv:%d", i)).Int(); err != nil || v != i {
			t.Fatalf("go-redis GET cv:%d = %d, %v", i, v, err)
		}
	}
}
