package test

import (
	"fmt"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
)

// TestStandaloneDormantClients: real clients' pooled connections that sit
// idle past the dormancy threshold (1s) lose their goroutines inside
// jupiter (seen on /metrics) and keep working: go-redis with default
// options (its pool keeps the HELLO/SETINFO connections), a redigo
// connection with a Send/Flush/Receive pipeline, and a raw connection
// holding CLIENT SETNAME state.
func TestStandaloneDormantClients(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	j := e.c.Jupiter

	for i := range 20 {
		if err := e.j.Set(ctx, fmt.Sprintf("dorm:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	rg := dialRedigo(t, j.Addr)
	if _, err := rg.Do("SET", "dorm:redigo", "r"); err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, j.Addr)
	if r := raw.do("CLIENT", "SETNAME", "napper"); r.String() != "+OK" {
		t.Fatalf("SETNAME: %s", r)
	}

	// Every client connection open now goes dormant after 1s of silence.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := scrape(t, j.AdminAddr)
		open, _ := value(t, fams, "jupiter_client_connections", "", "")
		dormant, ok := value(t, fams, "jupiter_client_connections_dormant", "", "")
		if !ok {
			t.Fatal("/metrics has no jupiter_client_connections_dormant")
		}
		if open >= 3 && dormant == open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of %v client connections dormant after 10s", dormant, open)
		}
		time.Sleep(200 * time.Millisecond)
	}

	vals, err := e.j.MGet(ctx, "dorm:0", "dorm:7", "dorm:19", "dorm:missing").Result()
	if err != nil {
		t.Fatalf("go-redis MGET after dormancy: %v", err)
	}
	if fmt.Sprint(vals) != "[0 7 19 <nil>]" {
		t.Fatalf("go-redis MGET after dormancy: %v", vals)
	}
	for _, c := range [][]any{{"GET", "dorm:redigo"}, {"GET", "dorm:3"}, {"PING"}} {
		if err := rg.Send(c[0].(string), c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	if err := rg.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"r", "3", "PONG"} {
		got, err := redigo.String(rg.Receive())
		if err != nil || got != want {
			t.Fatalf("redigo pipeline reply %d after dormancy: %q, %v; want %q", i, got, err, want)
		}
	}
	if r := raw.do("CLIENT", "GETNAME"); r.String() != `"napper"` {
		t.Fatalf("CLIENT GETNAME after dormancy: %s", r)
	}
}
