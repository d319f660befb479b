package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
)

func dialRedigo(t *testing.T, addr string, opts ...redigo.DialOption) redigo.Conn {
	t.Helper()
	opts = append([]redigo.DialOption{
		redigo.DialConnectTimeout(2 * time.Second),
		redigo.DialReadTimeout(5 * time.Second),
		redigo.DialWriteTimeout(5 * time.Second),
	}, opts...)
	c, err := redigo.Dial("tcp", addr, opts...)
	if err != nil {
		t.Fatalf("redigo dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStandaloneRedigo drives jupiter with redigo v1.9: dial options that send
// CLIENT SETNAME and SELECT 0 at connect, Do, and Send/Flush/Receive
// pipelines whose keys span every node.
func TestStandaloneRedigo(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	addr := e.c.Jupiter.Addr
	spread := e.keysPerNode(t, "rg:spread:", 4)

	t.Run("DialOptions", func(t *testing.T) {
		c := dialRedigo(t, addr, redigo.DialClientName("rg-client"), redigo.DialDatabase(0), redigo.DialPassword("any"))
		name, err := redigo.String(c.Do("CLIENT", "GETNAME"))
		if err != nil || name != "rg-client" {
			t.Fatalf("CLIENT GETNAME = %q, %v (DialClientName sent CLIENT SETNAME)", name, err)
		}
		// The name belongs to this connection only.
		other := dialRedigo(t, addr)
		if v, err := other.Do("CLIENT", "GETNAME"); err != nil || v != nil {
			t.Errorf("CLIENT GETNAME on another connection = %v, %v, want nil", v, err)
		}
		// DialDatabase(1) must fail: jupiter has database 0 only.
		if c1, err := redigo.Dial("tcp", addr, redigo.DialDatabase(1), redigo.DialReadTimeout(2*time.Second)); err == nil {
			c1.Close()
			t.Errorf("dial with DialDatabase(1) succeeded, want SELECT 1 refused")
		}
	})

	t.Run("Do", func(t *testing.T) {
		c := dialRedigo(t, addr, redigo.DialClientName("rg-do"), redigo.DialDatabase(0))
		if v, err := redigo.String(c.Do("SET", "rg:k", "v1")); err != nil || v != "OK" {
			t.Fatalf("SET = %q, %v", v, err)
		}
		if v, err := redigo.String(c.Do("GET", "rg:k")); err != nil || v != "v1" {
			t.Fatalf("GET = %q, %v", v, err)
		}
		if _, err := redigo.String(c.Do("GET", "rg:none")); err != redigo.ErrNil {
			t.Fatalf("GET missing: %v, want ErrNil", err)
		}
		if v, err := redigo.Int(c.Do("INCRBY", "rg:n", 7)); err != nil || v != 7 {
			t.Fatalf("INCRBY = %d, %v", v, err)
		}
		if _, err := c.Do("HSET", "rg:h", "f1", "a", "f2", "b"); err != nil {
			t.Fatal(err)
		}
		if m, err := redigo.StringMap(c.Do("HGETALL", "rg:h")); err != nil || m["f1"] != "a" || m["f2"] != "b" || len(m) != 2 {
			t.Fatalf("HGETALL = %v, %v", m, err)
		}
		// MGET across every node through Do, with a missing key in the middle.
		args := redigo.Args{}
		for n := range spread {
			if _, err := c.Do("SET", spread[n][0], "node"+fmt.Sprint(n)); err != nil {
				t.Fatal(err)
			}
			args = args.Add(spread[n][0], "rg:none")
		}
		vals, err := redigo.Values(c.Do("MGET", args...))
		if err != nil || len(vals) != 2*len(spread) {
			t.Fatalf("MGET = %v, %v", vals, err)
		}
		for n := range spread {
			if v, _ := redigo.String(vals[2*n], nil); v != "node"+fmt.Sprint(n) {
				t.Errorf("MGET[%d] = %v, want node%d", 2*n, vals[2*n], n)
			}
			if vals[2*n+1] != nil {
				t.Errorf("MGET[%d] (missing) = %v, want nil", 2*n+1, vals[2*n+1])
			}
		}
		// An error reply is a redigo.Error and the connection stays usable.
		if _, err := c.Do("NOSUCHCMD"); err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("unknown command: err = %v", err)
		}
		if c.Err() != nil {
			t.Fatalf("connection broken after an error reply: %v", c.Err())
		}
		if v, err := redigo.String(c.Do("PING")); err != nil || v != "PONG" {
			t.Errorf("PING after error = %q, %v", v, err)
		}
	})

	t.Run("SendFlushReceive50", func(t *testing.T) {
		c := dialRedigo(t, addr, redigo.DialClientName("rg-pipe"), redigo.DialDatabase(0))
		var keys []string
		for i := 0; i < 25; i++ {
			keys = append(keys, fmt.Sprintf("rg:pipe:%d", i))
		}
		// 50 commands: SET k_i then GET k_(i-1), interleaved, one flush.
		for i, k := range keys {
			if err := c.Send("SET", k, "pv"+fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			prev := "rg:never"
			if i > 0 {
				prev = keys[i-1]
			}
			if err := c.Send("GET", prev); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if v, err := redigo.String(c.Receive()); err != nil || v != "OK" {
				t.Fatalf("reply %d (SET) = %q, %v", 2*i, v, err)
			}
			v, err := c.Receive()
			if err != nil {
				t.Fatalf("reply %d (GET): %v", 2*i+1, err)
			}
			if i == 0 {
				if v != nil {
					t.Errorf("GET rg:never = %v, want nil", v)
				}
				continue
			}
			if s, _ := redigo.String(v, nil); s != "pv"+fmt.Sprint(i-1) {
				t.Errorf("reply %d (GET %s) = %q, want pv%d: replies out of order", 2*i+1, keys[i-1], s, i-1)
			}
		}
		own := e.owners(t, keys)
		seen := map[int]bool{}
		for _, o := range own {
			seen[o] = true
		}
		if len(seen) != len(e.nodes) {
			t.Errorf("pipeline keys reached %d nodes, want %d", len(seen), len(e.nodes))
		}
		// Do with no command flushes and receives every pending reply.
		for i := 0; i < 10; i++ {
			c.Send("INCR", "rg:pipe:n")
		}
		vals, err := redigo.Values(c.Do(""))
		if err != nil || len(vals) != 10 {
			t.Fatalf(`Do("") = %v, %v`, vals, err)
		}
		for i, v := range vals {
			if v != int64(i+1) {
				t.Errorf("INCR #%d = %v", i+1, v)
			}
		}
	})

	t.Run("Pool", func(t *testing.T) {
		pool := &redigo.Pool{
			MaxIdle: 4, IdleTimeout: time.Minute,
			Dial: func() (redigo.Conn, error) {
				return redigo.Dial("tcp", addr, redigo.DialClientName("rg-pool"), redigo.DialDatabase(0),
					redigo.DialReadTimeout(5*time.Second))
			},
			TestOnBorrow: func(c redigo.Conn, _ time.Time) error { _, err := c.Do("PING"); return err },
		}
		defer pool.Close()
		for i := 0; i < 20; i++ {
			c := pool.Get()
			k := fmt.Sprintf("rg:pool:%d", i)
			if _, err := c.Do("SET", k, i); err != nil {
				t.Fatal(err)
			}
			if v, err := redigo.Int(c.Do("GET", k)); err != nil || v != i {
				t.Fatalf("GET %s = %d, %v", k, v, err)
			}
			c.Close()
		}
		if st := pool.Stats(); st.ActiveCount > 1 {
			t.Errorf("pool grew to %d connections for sequential use: connections were not reusable", st.ActiveCount)
		}
	})
}
