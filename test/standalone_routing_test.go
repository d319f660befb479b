package test

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStandaloneRouting checks routing details that a wrong key position,
// a lost reply order or a missing fan-out would break, each observed
// through values the nodes really hold.
func TestStandaloneRouting(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	c := e.j
	spread := e.keysPerNode(t, "rt:", 4)

	t.Run("KeyPositions", func(t *testing.T) {
		// For a key on every node, commands whose key is not args[1] must
		// reach that key's node: a wrong route reads an empty key instead.
		for n := range spread {
			k := spread[n][0]
			if err := c.Set(ctx, k, "12345", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if v, err := c.ObjectEncoding(ctx, k).Result(); err != nil || v != "int" {
				t.Errorf("OBJECT ENCODING %s (node %d) = %q, %v", k, n, v, err)
			}
			if v, err := c.MemoryUsage(ctx, k).Result(); err != nil || v <= 0 {
				t.Errorf("MEMORY USAGE %s (node %d) = %d, %v", k, n, v, err)
			}
			if v, err := c.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{k}).Result(); err != nil || v != "12345" {
				t.Errorf("EVAL … 1 %s (node %d) = %v, %v", k, n, v, err)
			}
			if v, err := c.Do(ctx, "GETRANGE", k, "1", "2").Text(); err != nil || v != "23" {
				t.Errorf("GETRANGE %s = %q, %v", k, v, err)
			}
			s := spread[n][1]
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: s, ID: "1-1", Values: []string{"f", "v"}}).Err(); err != nil {
				t.Fatal(err)
			}
			if res, err := c.XRead(ctx, &redis.XReadArgs{Streams: []string{s, "0"}, Count: 1, Block: -1}).Result(); err != nil ||
				len(res) != 1 || len(res[0].Messages) != 1 || res[0].Messages[0].ID != "1-1" {
				t.Errorf("XREAD STREAMS %s 0 (node %d) = %v, %v", s, n, res, err)
			}
			l := spread[n][2]
			c.RPush(ctx, l, "3", "1", "2")
			if v, err := c.Sort(ctx, l, &redis.Sort{}).Result(); err != nil || !slices.Equal(v, []string{"1", "2", "3"}) {
				t.Errorf("SORT %s (node %d) = %v, %v", l, n, v, err)
			}
		}
		// EVAL with no keys runs on some node; keys in ARGV do not matter.
		if v, err := c.Eval(ctx, "return ARGV[1]", nil, "x").Result(); err != nil || v != "x" {
			t.Errorf("EVAL … 0 = %v, %v", v, err)
		}
	})

	t.Run("ScriptLoadEverywhere", func(t *testing.T) {
		sha, err := c.ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Result()
		if err != nil || len(sha) != 40 {
			t.Fatalf("SCRIPT LOAD = %q, %v", sha, err)
		}
		for n, nc := range e.nodes {
			if ok, err := nc.ScriptExists(ctx, sha).Result(); err != nil || !ok[0] {
				t.Errorf("node %d does not have the script: %v, %v", n, ok, err)
			}
		}
		for n := range spread {
			k := spread[n][3]
			if v, err := c.EvalSha(ctx, sha, []string{k}).Int(); err != nil || v != 1 {
				t.Errorf("EVALSHA on %s (node %d) = %d, %v", k, n, v, err)
			}
		}
	})

	t.Run("KeysAndRandomKey", func(t *testing.T) {
		var want []string
		for i := 0; i < 60; i++ {
			k := fmt.Sprintf("rt:keys:%d", i)
			want = append(want, k)
			c.Set(ctx, k, i, 0)
		}
		got, err := c.Keys(ctx, "rt:keys:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("KEYS rt:keys:* returned %d keys, want %d", len(got), len(want))
		}
		if k, err := c.RandomKey(ctx).Result(); err != nil || k == "" {
			t.Errorf("RANDOMKEY = %q, %v", k, err)
		}
		if tm, err := c.Time(ctx).Result(); err != nil || time.Since(tm).Abs() > time.Minute {
			t.Errorf("TIME = %v, %v", tm, err)
		}
	})

	t.Run("MixedPipelineOrder", func(t *testing.T) {
		// Local, forwarded, split and fanned-out commands in one write: the
		// replies must come back in request order.
		k0, k1, k2 := spread[0][0], spread[1][0], spread[2][0]
		r := dialRaw(t, e.c.Jupiter.Addr)
		var b strings.Builder
		var wants []string
		add := func(re string, args ...string) {
			b.WriteString(encode(args...))
			wants = append(wants, re)
		}
		for i := 0; i < 30; i++ {
			v := strconv.Itoa(i)
			add(`^\+OK$`, "MSET", k0, "a"+v, k1, "b"+v, k2, "c"+v)
			add(`^"`+v+`"$`, "ECHO", v)
			add(`^\["a`+v+`" \(nil\) "c`+v+`" "b`+v+`"\]$`, "MGET", k0, "rt:nope", k2, k1)
			add(`^\+PONG$`, "PING")
			add(`^"b`+v+`"$`, "GET", k1)
			add(`^:\d+$`, "DBSIZE")
			add(`^:3$`, "EXISTS", k2, k0, k1)
			add(`^\["save" ""\]$`, "CONFIG", "GET", "save")
			add(`^"c`+v+`"$`, "GET", k2)
		}
		r.send(b.String())
		for i, re := range wants {
			got := r.read().String()
			if !regexp.MustCompile(re).MatchString(got) {
				t.Fatalf("reply %d = %s, want %s: replies out of order", i, got, re)
			}
		}
	})

	t.Run("BigPipeline", func(t *testing.T) {
		// More commands than one proxy batch, in one go-redis pipeline.
		const n = 12000
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < n; i++ {
				k := fmt.Sprintf("rt:big:%d", (i/2)%500) // GET i reads what SET i-1 wrote
				if i%2 == 0 {
					p.Set(ctx, k, i, 0)
				} else {
					p.Get(ctx, k)
				}
			}
			return nil
		})
		if err != nil || len(cmds) != n {
			t.Fatalf("pipeline of %d: %d replies, %v", n, len(cmds), err)
		}
		for i := 1; i < n; i += 2 {
			if v := cmds[i].(*redis.StringCmd).Val(); v != strconv.Itoa(i-1) {
				t.Fatalf("reply %d = %q, want %d", i, v, i-1)
			}
		}
	})

	t.Run("LargeMultiKey", func(t *testing.T) {
		// One MSET/MGET/EXISTS/DEL of 5000 keys, split over every node.
		const n = 5000
		keys := make([]string, n)
		pairs := make([]any, 0, 2*n)
		for i := range keys {
			keys[i] = fmt.Sprintf("rt:large:%d", i)
			pairs = append(pairs, keys[i], i)
		}
		if err := c.MSet(ctx, pairs...).Err(); err != nil {
			t.Fatalf("MSET of %d keys: %v", n, err)
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil || len(vals) != n {
			t.Fatalf("MGET of %d keys: %d values, %v", n, len(vals), err)
		}
		for i, v := range vals {
			if v != strconv.Itoa(i) {
				t.Fatalf("MGET[%d] = %v", i, v)
			}
		}
		if got, err := c.Exists(ctx, keys...).Result(); err != nil || got != n {
			t.Errorf("EXISTS = %d, %v", got, err)
		}
		if got, err := c.Del(ctx, keys...).Result(); err != nil || got != n {
			t.Errorf("DEL = %d, %v", got, err)
		}
	})

	t.Run("Fragmented", func(t *testing.T) {
		// A command arriving a few bytes at a time is parsed once complete.
		r := dialRaw(t, e.c.Jupiter.Addr)
		msg := encode("SET", spread[1][2]+":frag", "fragmented value") + encode("GET", spread[1][2]+":frag") + "PING\r\n"
		for i := 0; i < len(msg); i += 3 {
			r.send(msg[i:min(i+3, len(msg))])
			time.Sleep(time.Millisecond)
		}
		for _, want := range []string{"+OK", `"fragmented value"`, "+PONG"} {
			if got := r.read().String(); got != want {
				t.Errorf("fragmented: %s, want %s", got, want)
			}
		}
	})

	t.Run("EmptyKeyAndValue", func(t *testing.T) {
		if err := c.Set(ctx, "", "empty key", 0).Err(); err != nil {
			t.Fatalf("SET \"\": %v", err)
		}
		if v, err := c.Get(ctx, "").Result(); err != nil || v != "empty key" {
			t.Errorf("GET \"\" = %q, %v", v, err)
		}
		if err := c.Set(ctx, "rt:emptyval", "", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx, "rt:emptyval").Result(); err != nil || v != "" {
			t.Errorf("GET rt:emptyval = %q, %v", v, err)
		}
		e.owner(t, "")
	})

	t.Run("InfoKeyspaceAndFlush", func(t *testing.T) {
		size, err := c.DBSize(ctx).Result()
		if err != nil || size == 0 {
			t.Fatalf("DBSIZE = %d, %v", size, err)
		}
		info, err := c.Info(ctx, "keyspace").Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info, fmt.Sprintf("db0:keys=%d,", size)) {
			t.Errorf("INFO keyspace does not report DBSIZE %d:\n%s", size, info)
		}
		if err := c.FlushDB(ctx).Err(); err != nil {
			t.Fatalf("FLUSHDB: %v", err)
		}
		for n, s := range e.dbsizes(t) {
			if s != 0 {
				t.Errorf("node %d has %d keys after FLUSHDB", n, s)
			}
		}
		if size, err := c.DBSize(ctx).Result(); err != nil || size != 0 {
			t.Errorf("DBSIZE after FLUSHDB = %d, %v", size, err)
		}
	})
}

// TestStandaloneSharedCounter has 50 clients INCR one shared key and some
// keys on every node concurrently: the totals must be exact, so no request
// is lost, duplicated or answered with another client's reply.
func TestStandaloneSharedCounter(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	const workers, each = 50, 100
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			c := redis.NewClient(&redis.Options{Addr: e.c.Jupiter.Addr})
			defer c.Close()
			for i := 0; i < each; i++ {
				_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.Incr(ctx, "shared:ctr")
					p.IncrBy(ctx, fmt.Sprint("shared:k", i%7), 2)
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if v, err := e.j.Get(ctx, "shared:ctr").Int(); err != nil || v != workers*each {
		t.Errorf("shared:ctr = %d, %v, want %d", v, err, workers*each)
	}
	total := 0
	for i := 0; i < 7; i++ {
		v, _ := e.j.Get(ctx, fmt.Sprint("shared:k", i)).Int()
		total += v
	}
	if total != 2*workers*each {
		t.Errorf("sum of shared:k* = %d, want %d", total, 2*workers*each)
	}
}
