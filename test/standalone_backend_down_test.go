package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStandaloneBackendDown kills one redis-server behind a running jupiter:
// commands on its keys must fail fast (≤ 1 s) naming the node, keys on the
// other nodes keep working on the same client connections, commands spanning
// the dead node fail clearly, and after the node restarts its keys work again
// without restarting jupiter.
//
// Not parallel: the timing assertions must not compete with other tests for
// the 2 CPUs (Go runs every sequential test before the parallel ones).
func TestStandaloneBackendDown(t *testing.T) {
	e := startEnv(t)
	ctx := ctxT(t)
	spread := e.keysPerNode(t, "down:", 5)
	for _, ks := range spread {
		for _, k := range ks {
			if err := e.j.Set(ctx, k, "v:"+k, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	const dead = 1
	deadAddr := e.c.Redis[dead].Addr
	// One client, no retries, so every assertion sees jupiter's own answer
	// and its timing; and a raw connection opened before the failure.
	c := redis.NewClient(&redis.Options{Addr: e.c.Jupiter.Addr, MaxRetries: -1, PoolSize: 1})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, e.c.Jupiter.Addr)

	e.c.Redis[dead].Stop()

	// timed runs one command and fails the test when it takes over 1 s.
	timed := func(what string, f func(context.Context) error) error {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		err := f(cctx)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v, want ≤ 1s", what, d.Round(time.Millisecond))
		}
		return err
	}
	wantNodeErr := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s succeeded with node %s dead", what, deadAddr)
			return
		}
		if !strings.Contains(err.Error(), deadAddr) {
			t.Errorf("%s: error %q does not name the dead node %s", what, err, deadAddr)
		}
		if strings.Contains(err.Error(), "context deadline") || strings.Contains(err.Error(), "i/o timeout") {
			t.Errorf("%s: client-side timeout %q, want jupiter's error", what, err)
		}
	}

	t.Run("DeadNodeKeysFailFast", func(t *testing.T) {
		for round := 0; round < 2; round++ { // first hit (conn breaks) and later ones (node known down)
			for _, k := range spread[dead] {
				err := timed("GET "+k, func(ctx context.Context) error { return c.Get(ctx, k).Err() })
				wantNodeErr("GET "+k, err)
				err = timed("SET "+k, func(ctx context.Context) error { return c.Set(ctx, k, "new", 0).Err() })
				wantNodeErr("SET "+k, err)
			}
		}
		// Raw connection: the error is a plain -ERR line naming the node.
		r := raw.do("GET", spread[dead][0])
		if r.kind != '-' || !strings.Contains(r.str, deadAddr) {
			t.Errorf("raw GET on the dead node = %v", r)
		}
	})

	t.Run("LiveNodesKeepWorking", func(t *testing.T) {
		for n, ks := range spread {
			if n == dead {
				continue
			}
			for _, k := range ks {
				v, err := c.Get(ctx, k).Result()
				if err != nil || v != "v:"+k {
					t.Errorf("GET %s (node %d, alive) = %q, %v", k, n, v, err)
				}
				if l, err := c.Append(ctx, k, "+").Result(); err != nil || l != int64(len("v:"+k+"+")) {
					t.Errorf("APPEND %s (node %d, alive) = %d, %v", k, n, l, err)
				}
			}
		}
		if r := raw.do("GET", spread[0][0]); r.str != "v:"+spread[0][0]+"+" {
			t.Errorf("raw GET on a live node = %v", r)
		}
		// Same-node multi-key commands on live nodes work too.
		if v, err := c.MGet(ctx, spread[0][0], spread[0][1]).Result(); err != nil || v[0] != "v:"+spread[0][0]+"+" {
			t.Errorf("MGET on one live node = %v, %v", v, err)
		}
		if err := c.Ping(ctx).Err(); err != nil {
			t.Errorf("PING: %v", err)
		}
	})

	t.Run("SpanningCommandsFailClearly", func(t *testing.T) {
		keys := []string{spread[0][0], spread[dead][0], spread[2][0]}
		err := timed("MGET", func(ctx context.Context) error { return c.MGet(ctx, keys...).Err() })
		wantNodeErr("MGET spanning the dead node", err)
		err = timed("DBSIZE", func(ctx context.Context) error { return c.DBSize(ctx).Err() })
		wantNodeErr("DBSIZE", err)
		err = timed("DEL", func(ctx context.Context) error { return c.Del(ctx, spread[0][4], spread[dead][4]).Err() })
		wantNodeErr("DEL spanning the dead node", err)
		err = timed("MSET", func(ctx context.Context) error { return c.MSet(ctx, spread[2][3], "x", spread[dead][3], "y").Err() })
		wantNodeErr("MSET spanning the dead node", err)
		// In one pipeline, only the dead node's commands fail; order is kept.
		cmds, _ := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Get(ctx, spread[0][1])
			p.Get(ctx, spread[dead][1])
			p.Get(ctx, spread[2][1])
			return nil
		})
		if len(cmds) != 3 {
			t.Fatalf("pipeline: %d replies", len(cmds))
		}
		if v := cmds[0].(*redis.StringCmd).Val(); v != "v:"+spread[0][1]+"+" {
			t.Errorf("pipelined GET on node 0 = %q, %v", v, cmds[0].Err())
		}
		wantNodeErr("pipelined GET on the dead node", cmds[1].Err())
		if v := cmds[2].(*redis.StringCmd).Val(); v != "v:"+spread[2][1]+"+" {
			t.Errorf("pipelined GET on node 2 = %q, %v", v, cmds[2].Err())
		}
		// The connection survived all of it.
		if err := c.Set(ctx, spread[0][2], "still", 0).Err(); err != nil {
			t.Errorf("SET on a live node after errors: %v", err)
		}
	})

	t.Run("Status", func(t *testing.T) {
		// The operator's view says the node is down (nodes_up below 3) soon.
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := e.c.Jupiter.Status()
			if st["nodes_up"] == "2" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("JUPITER STATUS nodes_up = %q 5s after a node died, want 2", st["nodes_up"])
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("RecoversAfterRestart", func(t *testing.T) {
		e.c.Redis[dead].Restart() // empty: no persistence
		k := spread[dead][0]
		deadline := time.Now().Add(5 * time.Second)
		var err error
		for {
			if err = c.Set(ctx, k, "back", 0).Err(); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s restarted 5s ago, SET %s still fails: %v", deadAddr, k, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if v, err := c.Get(ctx, k).Result(); err != nil || v != "back" {
			t.Errorf("GET %s after restart = %q, %v", k, v, err)
		}
		if v, err := e.nodes[dead].Get(ctx, k).Result(); err != nil || v != "back" {
			t.Errorf("restarted node holds %s = %q, %v", k, v, err)
		}
		// Every key of the node works again, on the raw connection too.
		for _, k := range spread[dead] {
			if err := c.Set(ctx, k, "v2", 0).Err(); err != nil {
				t.Errorf("SET %s after restart: %v", k, err)
			}
		}
		if r := raw.do("GET", spread[dead][1]); r.str != "v2" {
			t.Errorf("raw GET after restart = %v", r)
		}
		want := int64(0)
		for _, s := range e.dbsizes(t) {
			want += s
		}
		if n, err := c.DBSize(ctx).Result(); err != nil || n != want {
			t.Errorf("DBSIZE after restart = %d, %v, want %d", n, err, want)
		}
		keys := []string{spread[0][0], spread[dead][1], spread[2][0]}
		if v, err := c.MGet(ctx, keys...).Result(); err != nil || fmt.Sprint(v) != fmt.Sprint([]any{"v:" + keys[0] + "+", "v2", "v:" + keys[2] + "+"}) {
			t.Errorf("MGET after restart = %v, %v", v, err)
		}
	})
}

// TestStandaloneBackendHung freezes one redis-server (SIGSTOP: connections
// stay open, nothing is answered). Commands on its keys must fail once
// jupiter's --request-timeout passes, naming the node; other clients' keys on
// the healthy nodes must not wait for it; and after SIGCONT the node serves
// again without restarting jupiter.
func TestStandaloneBackendHung(t *testing.T) {
	// The request timeout is long enough that a healthy command delayed by
	// the hung node (≥ 1.5s) cannot pass for scheduling noise (< 750ms).
	e := startEnv(t, "--request-timeout", "1500ms")
	ctx := ctxT(t)
	spread := e.keysPerNode(t, "hung:", 3)
	for _, ks := range spread {
		for _, k := range ks {
			if err := e.j.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	const hung = 2
	hungAddr := e.c.Redis[hung].Addr
	c := redis.NewClient(&redis.Options{Addr: e.c.Jupiter.Addr, MaxRetries: -1, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	other := redis.NewClient(&redis.Options{Addr: e.c.Jupiter.Addr, MaxRetries: -1})
	t.Cleanup(func() { other.Close() })
	other.Ping(ctx)

	e.c.Redis[hung].Pause()
	stop := make(chan struct{})
	slow := make(chan string, 100)
	go func() { // healthy keys, measured while the hung node's calls wait
		defer close(slow)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := spread[i%2][i%3]
			start := time.Now()
			err := other.Get(ctx, k).Err()
			if d := time.Since(start); err != nil || d > 750*time.Millisecond {
				slow <- fmt.Sprintf("GET %s on a healthy node: %v after %v", k, err, d.Round(time.Millisecond))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// The hung node's keys, concurrently: each fails after about the
	// request timeout with an error naming the node.
	errs := make(chan string, len(spread[hung]))
	for _, k := range spread[hung] {
		go func(k string) {
			start := time.Now()
			err := c.Get(ctx, k).Err()
			d := time.Since(start)
			switch {
			case err == nil || !strings.Contains(err.Error(), hungAddr):
				errs <- fmt.Sprintf("GET %s on the hung node: err = %v, want an error naming %s", k, err, hungAddr)
			case d > 3*time.Second:
				errs <- fmt.Sprintf("GET %s on the hung node took %v, want about the 1.5s request timeout", k, d.Round(time.Millisecond))
			default:
				errs <- ""
			}
		}(k)
	}
	for range spread[hung] {
		if msg := <-errs; msg != "" {
			t.Error(msg)
		}
	}
	close(stop)
	for s := range slow {
		t.Error(s)
	}

	e.c.Redis[hung].Resume()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := c.Get(ctx, spread[hung][0]).Result()
		if err == nil && v == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hung node resumed 5s ago, GET still = %q, %v", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Replies are matched to the right requests after the resume: the node
	// answers the old, abandoned requests on a connection jupiter dropped.
	for i, k := range spread[hung] {
		val := fmt.Sprint("after:", i)
		if err := c.Set(ctx, k, val, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx, k).Result(); err != nil || v != val {
			t.Errorf("GET %s after resume = %q, %v, want %q", k, v, err, val)
		}
	}
}
