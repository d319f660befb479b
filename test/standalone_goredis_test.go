package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStandaloneGoRedis drives jupiter with go-redis v9 and its DEFAULT
// options: the client opens every connection with HELLO 3 and CLIENT SETINFO,
// which jupiter must answer so that the client falls back to RESP2 and works.
func TestStandaloneGoRedis(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	c := e.j
	// Keys that provably live on every node, for the multi-key subtests.
	spread := e.keysPerNode(t, "gr:spread:", 6)

	t.Run("Basic", func(t *testing.T) {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING with default options (HELLO 3 handshake): %v", err)
		}
		if got, err := c.Set(ctx, "gr:s", "hello", 0).Result(); err != nil || got != "OK" {
			t.Fatalf("SET = %q, %v", got, err)
		}
		if got, err := c.Get(ctx, "gr:s").Result(); err != nil || got != "hello" {
			t.Fatalf("GET = %q, %v", got, err)
		}
		if _, err := c.Get(ctx, "gr:missing").Result(); err != redis.Nil {
			t.Fatalf("GET missing: err = %v, want redis.Nil", err)
		}
		for i := int64(1); i <= 5; i++ {
			if got, err := c.Incr(ctx, "gr:n").Result(); err != nil || got != i {
				t.Fatalf("INCR #%d = %d, %v", i, got, err)
			}
		}
		if got, err := c.IncrBy(ctx, "gr:n", 10).Result(); err != nil || got != 15 {
			t.Fatalf("INCRBY = %d, %v", got, err)
		}
		if got, err := c.HSet(ctx, "gr:h", "a", "1", "b", "2").Result(); err != nil || got != 2 {
			t.Fatalf("HSET = %d, %v", got, err)
		}
		if got, err := c.HGetAll(ctx, "gr:h").Result(); err != nil || len(got) != 2 || got["a"] != "1" || got["b"] != "2" {
			t.Fatalf("HGETALL = %v, %v", got, err)
		}
		if got, err := c.LPush(ctx, "gr:l", "x", "y", "z").Result(); err != nil || got != 3 {
			t.Fatalf("LPUSH = %d, %v", got, err)
		}
		if got, err := c.LRange(ctx, "gr:l", 0, -1).Result(); err != nil || !slices.Equal(got, []string{"z", "y", "x"}) {
			t.Fatalf("LRANGE = %v, %v", got, err)
		}
		if got, err := c.TTL(ctx, "gr:s").Result(); err != nil || got != -1 {
			t.Fatalf("TTL without expiry = %v, %v (want -1: go-redis reports -1ns)", got, err)
		}
		if ok, err := c.Expire(ctx, "gr:s", 100*time.Second).Result(); err != nil || !ok {
			t.Fatalf("EXPIRE = %v, %v", ok, err)
		}
		if got, err := c.TTL(ctx, "gr:s").Result(); err != nil || got <= 90*time.Second || got > 100*time.Second {
			t.Fatalf("TTL = %v, %v, want (90s,100s]", got, err)
		}
		if got, err := c.Del(ctx, "gr:s", "gr:n", "gr:h", "gr:l", "gr:missing").Result(); err != nil || got != 4 {
			t.Fatalf("DEL of 4 existing + 1 missing = %d, %v", got, err)
		}
		if got, err := c.Exists(ctx, "gr:s", "gr:n").Result(); err != nil || got != 0 {
			t.Fatalf("EXISTS after DEL = %d, %v", got, err)
		}
		// A wrong-type error from the node passes through as a Redis error.
		c.Set(ctx, "gr:str", "v", 0)
		if err := c.LPush(ctx, "gr:str", "x").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
			t.Fatalf("LPUSH on a string: err = %v, want WRONGTYPE", err)
		}
	})

	t.Run("ClientOptions", func(t *testing.T) {
		// After the HELLO error go-redis falls back to AUTH, SELECT and
		// CLIENT SETNAME on every new connection: all answered by jupiter.
		opt := newClientWith(t, &redis.Options{Addr: e.c.Jupiter.Addr, ClientName: "gr-app", Password: "any", DB: 0, PoolSize: 2})
		for i := 0; i < 4; i++ {
			if name, err := opt.ClientGetName(ctx).Result(); err != nil || name != "gr-app" {
				t.Fatalf("CLIENT GETNAME = %q, %v, want gr-app", name, err)
			}
		}
		if err := opt.Set(ctx, "gr:opt", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		db1 := newClientWith(t, &redis.Options{Addr: e.c.Jupiter.Addr, DB: 1, MaxRetries: -1})
		if err := db1.Get(ctx, "gr:opt").Err(); err == nil || err == redis.Nil {
			t.Errorf("client with DB 1: GET err = %v, want SELECT 1 refused", err)
		}
	})

	t.Run("Pipeline100", func(t *testing.T) {
		const n = 100
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("gr:pl:%d", i)
		}
		// 100 commands across many keys (and so every node), mixed types.
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				switch i % 4 {
				case 0, 1:
					p.Set(ctx, k, "v"+k, 0)
				case 2:
					p.IncrBy(ctx, k, int64(i))
				case 3:
					p.RPush(ctx, k, "a", "b")
				}
			}
			return nil
		})
		if err != nil || len(cmds) != n {
			t.Fatalf("pipeline: %d replies, %v", len(cmds), err)
		}
		for i, cmd := range cmds {
			switch i % 4 {
			case 0, 1:
				if v := cmd.(*redis.StatusCmd).Val(); v != "OK" {
					t.Errorf("reply %d (SET) = %q", i, v)
				}
			case 2:
				if v := cmd.(*redis.IntCmd).Val(); v != int64(i) {
					t.Errorf("reply %d (INCRBY %d) = %d: replies out of order?", i, i, v)
				}
			case 3:
				if v := cmd.(*redis.IntCmd).Val(); v != 2 {
					t.Errorf("reply %d (RPUSH) = %d", i, v)
				}
			}
		}
		own := e.owners(t, keys)
		for n := range e.nodes {
			if !slices.Contains(own, n) {
				t.Errorf("no pipeline key on node %d: the pipeline did not span all nodes", n)
			}
		}
		// Read them back in one pipeline: every reply matches its key.
		cmds, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				if i%4 == 3 {
					p.LLen(ctx, k)
				} else {
					p.Get(ctx, k)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read pipeline: %v", err)
		}
		for i, cmd := range cmds {
			switch i % 4 {
			case 0, 1:
				if v := cmd.(*redis.StringCmd).Val(); v != "v"+keys[i] {
					t.Errorf("GET %s = %q", keys[i], v)
				}
			case 2:
				if v := cmd.(*redis.StringCmd).Val(); v != fmt.Sprint(i) {
					t.Errorf("GET %s = %q, want %d", keys[i], v, i)
				}
			case 3:
				if v := cmd.(*redis.IntCmd).Val(); v != 2 {
					t.Errorf("LLEN %s = %d", keys[i], v)
				}
			}
		}
	})

	// A transaction over keys of two nodes is refused (CROSSSLOT when the
	// second key is queued, EXECABORT at EXEC, as Redis Cluster does); the
	// client stays in sync, and nothing of it ran.
	t.Run("TxPipelineCrossNode", func(t *testing.T) {
		a, b := spread[0][0], spread[1][0]
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, a, "1", 0)
			p.Set(ctx, b, "1", 0)
			return nil
		})
		if err == nil || !(strings.Contains(err.Error(), "CROSSSLOT") || strings.Contains(err.Error(), "EXECABORT")) {
			t.Fatalf("TxPipelined over two nodes: err %v, want CROSSSLOT/EXECABORT", err)
		}
		vals, err := c.MGet(ctx, a, b).Result()
		if err != nil {
			t.Fatal(err)
		}
		if vals[0] != nil || vals[1] != nil {
			t.Errorf("a refused transaction ran: %s=%v %s=%v", a, vals[0], b, vals[1])
		}
		for i := 0; i < 20; i++ {
			k := fmt.Sprintf("gr:tx:after:%d", i)
			if err := c.Set(ctx, k, k, 0).Err(); err != nil {
				t.Fatalf("SET after refused transaction: %v", err)
			}
			if v, err := c.Get(ctx, k).Result(); err != nil || v != k {
				t.Fatalf("GET after refused transaction = %q, %v: connection out of sync", v, err)
			}
		}
	})

	t.Run("ScanIterator", func(t *testing.T) {
		want := map[string]bool{}
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 700; i++ {
				k := fmt.Sprintf("gr:scan:%d", i)
				want[k] = true
				p.Set(ctx, k, "v", 0)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Keys of other subtests must not show up with the MATCH pattern, and
		// every node must hold some of ours.
		got := map[string]int{}
		it := c.Scan(ctx, 0, "gr:scan:*", 50).Iterator()
		for it.Next(ctx) {
			got[it.Val()]++
		}
		if err := it.Err(); err != nil {
			t.Fatalf("SCAN iterator: %v", err)
		}
		for k := range want {
			if got[k] == 0 {
				t.Errorf("SCAN never returned %s", k)
			}
		}
		dups := 0
		for k, n := range got {
			if !want[k] {
				t.Errorf("SCAN returned %q, which was never written", k)
			}
			dups += n - 1
		}
		// Redis may repeat a few keys across a rehash; a node visited twice
		// (a cursor bug) repeats a third of them.
		if dups > len(want)/10 {
			t.Errorf("SCAN returned %d duplicates of %d keys: a node was iterated more than once", dups, len(want))
		}
		// Without MATCH: the total is every key of the keyspace.
		all := 0
		it = c.Scan(ctx, 0, "", 0).Iterator()
		for it.Next(ctx) {
			all++
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		size, _ := c.DBSize(ctx).Result()
		if int64(all) < size || int64(all) > size+size/10 {
			t.Errorf("SCAN without MATCH returned %d keys, DBSIZE says %d", all, size)
		}
		// An invalid cursor is an error, not a silent restart.
		if err := c.Scan(ctx, 1<<60+7, "", 10).Err(); err == nil {
			t.Errorf("SCAN with a made-up cursor succeeded")
		}
	})

	t.Run("MultiKeyMerge", func(t *testing.T) {
		// keys[i] interleaves the nodes: n0 n1 n2 n0 n1 n2 …
		var keys []string
		for i := 0; i < len(spread[0]); i++ {
			for n := range spread {
				keys = append(keys, spread[n][i])
			}
		}
		pairs := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			pairs = append(pairs, k, "val:"+k)
		}
		if got, err := c.MSet(ctx, pairs...).Result(); err != nil || got != "OK" {
			t.Fatalf("MSET over all nodes = %q, %v", got, err)
		}
		// MGET: written keys interleaved with missing ones, order kept.
		var ask []string
		for i, k := range keys {
			ask = append(ask, k)
			if i%2 == 0 {
				ask = append(ask, "gr:nope:"+k)
			}
		}
		vals, err := c.MGet(ctx, ask...).Result()
		if err != nil || len(vals) != len(ask) {
			t.Fatalf("MGET: %d values, %v", len(vals), err)
		}
		for i, k := range ask {
			if strings.HasPrefix(k, "gr:nope:") {
				if vals[i] != nil {
					t.Errorf("MGET[%d] (%s, missing) = %v, want nil", i, k, vals[i])
				}
			} else if vals[i] != "val:"+k {
				t.Errorf("MGET[%d] (%s) = %v, want %q", i, k, vals[i], "val:"+k)
			}
		}
		// Repeated keys on several nodes keep their positions.
		dup := []string{keys[1], keys[0], keys[1], keys[2], keys[0]}
		if got, err := c.MGet(ctx, dup...).Result(); err != nil ||
			fmt.Sprint(got) != fmt.Sprint([]any{"val:" + keys[1], "val:" + keys[0], "val:" + keys[1], "val:" + keys[2], "val:" + keys[0]}) {
			t.Errorf("MGET with repeated keys %v = %v, %v", dup, got, err)
		}
		// EXISTS counts duplicates, like Redis.
		ex := append(append([]string{}, keys...), keys[0], keys[1], "gr:nope:x")
		if got, err := c.Exists(ctx, ex...).Result(); err != nil || got != int64(len(keys)+2) {
			t.Errorf("EXISTS = %d, %v, want %d", got, err, len(keys)+2)
		}
		if got, err := c.Touch(ctx, append(keys, "gr:nope:y")...).Result(); err != nil || got != int64(len(keys)) {
			t.Errorf("TOUCH = %d, %v, want %d", got, err, len(keys))
		}
		half := len(keys) / 2
		if got, err := c.Del(ctx, append(keys[:half:half], "gr:nope:z")...).Result(); err != nil || got != int64(half) {
			t.Errorf("DEL = %d, %v, want %d", got, err, half)
		}
		if got, err := c.Unlink(ctx, keys...).Result(); err != nil || got != int64(len(keys)-half) {
			t.Errorf("UNLINK = %d, %v, want %d (the rest)", got, err, len(keys)-half)
		}
		vals, err = c.MGet(ctx, keys...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if v != nil {
				t.Errorf("MGET after DEL/UNLINK [%d] = %v", i, v)
			}
		}
		for n, nc := range e.nodes {
			if got, _ := nc.Exists(ctx, spread[n]...).Result(); got != 0 {
				t.Errorf("node %d still holds %d of the deleted keys", n, got)
			}
		}
	})
}

// TestStandaloneDBSize checks that DBSIZE is the sum over the nodes and
// equals the number of keys written, on a jupiter nobody else writes to.
func TestStandaloneDBSize(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	if n, err := e.j.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE of empty nodes = %d, %v", n, err)
	}
	const n = 900
	if _, err := e.j.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < n; i++ {
			p.Set(ctx, fmt.Sprintf("db:%d", i), i, 0)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := e.j.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	sizes := e.dbsizes(t)
	var sum int64
	for i, s := range sizes {
		sum += s
		if s == 0 {
			t.Errorf("node %d holds no key", i)
		}
	}
	if got != n || sum != n {
		t.Errorf("DBSIZE through jupiter = %d, sum of nodes %v = %d, keys written %d", got, sizes, sum, n)
	}
	// DBSIZE in a pipeline with other commands keeps its place.
	cmds, err := e.j.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "db:extra", 1, 0)
		p.DBSize(ctx)
		p.Del(ctx, "db:extra")
		p.DBSize(ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := cmds[1].(*redis.IntCmd).Val(), cmds[3].(*redis.IntCmd).Val(); a != n+1 || b != n {
		t.Errorf("pipelined DBSIZE = %d then %d, want %d then %d", a, b, n+1, n)
	}
}
