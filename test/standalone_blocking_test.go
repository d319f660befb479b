package test

// Blocking commands end to end: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP,
// BZPOPMIN, BZMPOP, XREAD and XREADGROUP with BLOCK through jupiter, driven
// by go-redis (default options), redigo and raw RESP connections.
//
// Jupiter runs each blocking command on a dedicated connection to the node
// of its keys (which must share a node, else CROSSSLOT), so a blocked client
// never delays the others; CLIENT UNBLOCK takes jupiter's client ids; a
// client that disconnects while blocked is unblocked on the node at once;
// past --max-dedicated-conns per node the command fails at once.
//
// Every case body takes a blkTarget, so the same body runs twice:
//   - TestStandaloneBlocking: through jupiter in front of 3 redis-server
//     nodes;
//   - TestStandaloneBlockingRedisOracle: directly against one redis-server,
//     the oracle showing that the replies asserted are the ones Redis gives.
//
// Cases that only exist behind jupiter (CROSSSLOT, the dedicated connection
// bound) are in TestStandaloneBlocking and TestStandaloneBlockingDedicatedBound.
//
// "Blocked" is observed where it happens: blocked_clients of INFO clients on
// the node holding the key, polled before anything wakes the command.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/test/testenv"
)

// blkTarget is what a blocking case runs against.
type blkTarget struct {
	addr string
	// nodes are direct clients on every redis-server behind addr.
	nodes []*redis.Client
	// nodeOf returns a direct client on the redis-server that holds key
	// (which must not exist: it is written and deleted to find out).
	nodeOf func(t *testing.T, key string) *redis.Client
	// keys returns n distinct key names spread over all the nodes.
	keys func(t *testing.T, prefix string, n int) []string
}

// blkCases run both through jupiter and on a redis-server.
var blkCases = []struct {
	name string
	fn   func(t *testing.T, tg blkTarget)
}{
	{"WokenByPush", blkWokenByPush},
	{"Timeout", blkTimeout},
	{"BLMoveWorkQueue", blkWorkQueue},
	{"XReadGroupConsumers", blkXReadGroup},
	{"DisconnectWhileBlocked", blkDisconnect},
	{"ClientUnblock", blkClientUnblock},
	{"PipelinedBehind", blkPipelinedBehind},
	{"Redigo", blkRedigo},
	{"OthersNotDelayed", blkOthersNotDelayed},
	{"ShortTimeoutWithData", blkShortTimeoutWithData},
	{"InsideMulti", blkInsideMulti},
	{"DisconnectDropsQueued", blkDisconnectDropsQueued},
	{"SentWhileBlocked", blkSentWhileBlocked},
	{"UnblockPushRace", blkUnblockPushRace},
}

// TestStandaloneBlocking runs the blocking cases through jupiter, plus the
// CROSSSLOT refusals only a sharding proxy has.
func TestStandaloneBlocking(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	tg := blkTarget{
		addr:  e.c.Jupiter.Addr,
		nodes: e.nodes,
		nodeOf: func(t *testing.T, key string) *redis.Client {
			t.Helper()
			ctx := ctxT(t)
			if n, err := e.j.Exists(ctx, key).Result(); err != nil || n != 0 {
				t.Fatalf("nodeOf(%s): EXISTS = %d, %v; the key must not exist yet", key, n, err)
			}
			if err := e.j.Set(ctx, key, "probe", 0).Err(); err != nil {
				t.Fatalf("nodeOf(%s): SET: %v", key, err)
			}
			n := e.owner(t, key)
			if err := e.j.Del(ctx, key).Err(); err != nil {
				t.Fatalf("nodeOf(%s): DEL: %v", key, err)
			}
			return e.nodes[n]
		},
		keys: func(t *testing.T, prefix string, n int) []string {
			t.Helper()
			groups := e.keysPerNode(t, prefix, (n+len(e.nodes)-1)/len(e.nodes))
			var out []string
			for i := 0; len(out) < n; i++ {
				out = append(out, groups[i%len(groups)][i/len(groups)])
			}
			return out
		},
	}
	for _, c := range blkCases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, tg) })
	}
	t.Run("CrossSlot", func(t *testing.T) { blkCrossSlot(t, e) })
}

// TestStandaloneBlockingRedisOracle runs the same cases directly against one
// redis-server: what the jupiter variant asserts is what Redis answers.
func TestStandaloneBlockingRedisOracle(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	direct := newClient(t, r.Addr)
	tg := blkTarget{
		addr:   r.Addr,
		nodes:  []*redis.Client{direct},
		nodeOf: func(*testing.T, string) *redis.Client { return direct },
		keys: func(_ *testing.T, prefix string, n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = prefix + strconv.Itoa(i)
			}
			return out
		},
	}
	for _, c := range blkCases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, tg) })
	}
}

// ---- helpers -------------------------------------------------------------

// blockedClients returns blocked_clients of INFO clients.
func blockedClients(tb testing.TB, c *redis.Client) int {
	tb.Helper()
	n, err := blockedClientsErr(c)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func blockedClientsErr(c *redis.Client) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "clients").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO clients on %s: %v", c.Options().Addr, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "blocked_clients:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("INFO clients on %s has no blocked_clients:\n%s", c.Options().Addr, info)
}

// sumBlocked returns blocked_clients summed over nodes.
func sumBlocked(tb testing.TB, nodes []*redis.Client) int {
	tb.Helper()
	sum := 0
	for _, n := range nodes {
		sum += blockedClients(tb, n)
	}
	return sum
}

// waitBlocked waits until blocked_clients summed over nodes is want,
// failing the test after within.
func waitBlocked(tb testing.TB, what string, nodes []*redis.Client, want int, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		got := sumBlocked(tb, nodes)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: blocked_clients = %d on the node(s) after %v, want %d", what, got, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blkQuiet reads from c for d: ok when nothing arrives; otherwise the reply
// that did.
func blkQuiet(c *rawConn, d time.Duration) (reply, bool) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	r, err := readReply(c.br)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return reply{}, true
		}
		c.t.Fatalf("reading: %v", err)
	}
	return r, false
}

// blkAfterBlocked runs block in a goroutine, waits until node counts one
// blocked client (failing if block returns first), runs push, and returns
// block's result. Bounded everywhere.
func blkAfterBlocked(t *testing.T, node *redis.Client, block func() (string, error), push func() error) (string, error) {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := block()
		ch <- res{s, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for blockedClients(t, node) != 1 {
		select {
		case r := <-ch:
			t.Fatalf("the blocking command returned before anything was pushed: %q, %v", r.s, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the blocking command is not blocked on the node after 10s (blocked_clients %d)", blockedClients(t, node))
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case r := <-ch:
		t.Fatalf("the blocking command returned before anything was pushed: %q, %v", r.s, r.err)
	default:
	}
	if err := push(); err != nil {
		t.Fatalf("push: %v", err)
	}
	select {
	case r := <-ch:
		waitBlocked(t, "after the blocked command was answered", []*redis.Client{node}, 0, 5*time.Second)
		return r.s, r.err
	case <-time.After(15 * time.Second):
		t.Fatalf("the blocking command was not woken within 15s of the push")
	}
	return "", nil
}

// ---- cases ---------------------------------------------------------------

// blkWokenByPush: each go-redis blocking command, blocked (as the node
// reports) before another client pushes, returns exactly what Redis hands
// out, and what is left on the node is exact too.
func blkWokenByPush(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	bc := newClient(t, tg.addr) // the blocked client
	pc := newClient(t, tg.addr) // the pusher
	const tmo = 10 * time.Second
	lrange := func(k string) string {
		v, err := pc.LRange(ctx, k, 0, -1).Result()
		if err != nil {
			return "LRANGE error: " + err.Error()
		}
		return fmt.Sprint(v)
	}
	zrange := func(k string) string {
		v, err := pc.ZRangeWithScores(ctx, k, 0, -1).Result()
		if err != nil {
			return "ZRANGE error: " + err.Error()
		}
		return fmt.Sprint(v)
	}
	zs := func(z ...redis.Z) []redis.Z { return z }
	cases := []struct {
		name      string
		key       string // decides the node (all keys of a case share it)
		block     func() (string, error)
		push      func() error
		want      string
		after     func() string
		wantAfter string
	}{
		{
			name: "BLPOP", key: "blk:w:{blpop}k",
			block: func() (string, error) {
				v, err := bc.BLPop(ctx, tmo, "blk:w:{blpop}other", "blk:w:{blpop}k").Result()
				return fmt.Sprint(v), err
			},
			push:  func() error { return pc.RPush(ctx, "blk:w:{blpop}k", "a").Err() },
			want:  "[blk:w:{blpop}k a]",
			after: func() string { return lrange("blk:w:{blpop}k") }, wantAfter: "[]",
		},
		{
			name: "BRPOP", key: "blk:w:brpop",
			block: func() (string, error) {
				v, err := bc.BRPop(ctx, tmo, "blk:w:brpop").Result()
				return fmt.Sprint(v), err
			},
			push:  func() error { return pc.RPush(ctx, "blk:w:brpop", "a", "b").Err() },
			want:  "[blk:w:brpop b]",
			after: func() string { return lrange("blk:w:brpop") }, wantAfter: "[a]",
		},
		{
			name: "BZPOPMIN", key: "blk:w:bzpopmin",
			block: func() (string, error) {
				z, err := bc.BZPopMin(ctx, tmo, "blk:w:bzpopmin").Result()
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%s %v %v", z.Key, z.Member, z.Score), nil
			},
			push: func() error {
				return pc.ZAdd(ctx, "blk:w:bzpopmin", zs(redis.Z{Score: 2, Member: "b"}, redis.Z{Score: 1, Member: "a"})...).Err()
			},
			want:  "blk:w:bzpopmin a 1",
			after: func() string { return zrange("blk:w:bzpopmin") }, wantAfter: "[{2 b}]",
		},
		{
			name: "BZPOPMAX", key: "blk:w:bzpopmax",
			block: func() (string, error) {
				z, err := bc.BZPopMax(ctx, tmo, "blk:w:bzpopmax").Result()
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%s %v %v", z.Key, z.Member, z.Score), nil
			},
			push: func() error {
				return pc.ZAdd(ctx, "blk:w:bzpopmax", zs(redis.Z{Score: 2, Member: "b"}, redis.Z{Score: 1, Member: "a"})...).Err()
			},
			want:  "blk:w:bzpopmax b 2",
			after: func() string { return zrange("blk:w:bzpopmax") }, wantAfter: "[{1 a}]",
		},
		{
			name: "BLMPOP", key: "blk:w:{lmpop}1",
			block: func() (string, error) {
				k, v, err := bc.BLMPop(ctx, tmo, "left", 2, "blk:w:{lmpop}1", "blk:w:{lmpop}2").Result()
				return fmt.Sprintf("%s %v", k, v), err
			},
			push:  func() error { return pc.RPush(ctx, "blk:w:{lmpop}2", "x", "y", "z").Err() },
			want:  "blk:w:{lmpop}2 [x y]",
			after: func() string { return lrange("blk:w:{lmpop}1") + " " + lrange("blk:w:{lmpop}2") }, wantAfter: "[] [z]",
		},
		{
			name: "BZMPOP", key: "blk:w:{zmpop}1",
			block: func() (string, error) {
				k, v, err := bc.BZMPop(ctx, tmo, "min", 2, "blk:w:{zmpop}1", "blk:w:{zmpop}2").Result()
				return fmt.Sprintf("%s %v", k, v), err
			},
			push: func() error {
				return pc.ZAdd(ctx, "blk:w:{zmpop}2", zs(redis.Z{Score: 3, Member: "c"}, redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2, Member: "b"})...).Err()
			},
			want:  "blk:w:{zmpop}2 [{1 a} {2 b}]",
			after: func() string { return zrange("blk:w:{zmpop}2") }, wantAfter: "[{3 c}]",
		},
		{
			name: "BRPOPLPUSH", key: "blk:w:{rpl}src",
			block: func() (string, error) {
				//lint:ignore SA1019 BRPOPLPUSH itself is under test: applications still send it
				return bc.BRPopLPush(ctx, "blk:w:{rpl}src", "blk:w:{rpl}dst", tmo).Result()
			},
			push:  func() error { return pc.RPush(ctx, "blk:w:{rpl}src", "a", "b").Err() },
			want:  "b",
			after: func() string { return lrange("blk:w:{rpl}src") + " " + lrange("blk:w:{rpl}dst") }, wantAfter: "[a] [b]",
		},
		{
			name: "BLMOVE", key: "blk:w:{lmove}src",
			block: func() (string, error) {
				return bc.BLMove(ctx, "blk:w:{lmove}src", "blk:w:{lmove}dst", "LEFT", "RIGHT", tmo).Result()
			},
			push: func() error {
				if err := pc.RPush(ctx, "blk:w:{lmove}dst", "d").Err(); err != nil {
					return err
				}
				return pc.RPush(ctx, "blk:w:{lmove}src", "a", "b").Err()
			},
			want:  "a",
			after: func() string { return lrange("blk:w:{lmove}src") + " " + lrange("blk:w:{lmove}dst") }, wantAfter: "[b] [d a]",
		},
		{
			name: "XREAD", key: "blk:w:xread",
			block: func() (string, error) {
				ss, err := bc.XRead(ctx, &redis.XReadArgs{Streams: []string{"blk:w:xread", "$"}, Block: tmo}).Result()
				var parts []string
				for _, s := range ss {
					for _, m := range s.Messages {
						parts = append(parts, fmt.Sprintf("%s %s f=%v", s.Stream, m.ID, m.Values["f"]))
					}
				}
				return strings.Join(parts, "; "), err
			},
			push: func() error {
				return pc.XAdd(ctx, &redis.XAddArgs{Stream: "blk:w:xread", ID: "5-1", Values: []string{"f", "v"}}).Err()
			},
			want:  "blk:w:xread 5-1 f=v",
			after: func() string { return fmt.Sprint(pc.XLen(ctx, "blk:w:xread").Val()) }, wantAfter: "1",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			node := tg.nodeOf(t, c.key)
			got, err := blkAfterBlocked(t, node, c.block, c.push)
			if err != nil || got != c.want {
				t.Errorf("%s woken by a push = %q, %v; want %q", c.name, got, err, c.want)
			}
			if got := c.after(); got != c.wantAfter {
				t.Errorf("%s: left after the pop: %s, want %s", c.name, got, c.wantAfter)
			}
		})
	}
}

// blkTimeout: a blocking command whose timeout expires answers nil (go-redis
// redis.Nil; on the wire a null array, for every blocking command) no
// sooner than its timeout, and the connection stays in sync.
func blkTimeout(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	c := newClient(t, tg.addr)
	k := "blk:to:k"
	start := time.Now()
	v, err := c.Do(ctx, "BRPOP", k, "0.3").Result()
	el := time.Since(start)
	if err != redis.Nil {
		t.Errorf("BRPOP %s 0.3 = %v, %v; want redis.Nil", k, v, err)
	}
	if el < 300*time.Millisecond || el > 5*time.Second {
		t.Errorf("BRPOP %s 0.3 returned after %v, want ≥ 300ms (and < 5s)", k, el)
	}
	// go-redis's own BRPop (whole seconds).
	start = time.Now()
	sv, err := c.BRPop(ctx, time.Second, k).Result()
	if el := time.Since(start); err != redis.Nil || el < time.Second || el > 6*time.Second {
		t.Errorf("BRPop(1s) = %v, %v after %v; want redis.Nil after ≥ 1s", sv, err, el)
	}
	if err := c.Set(ctx, "blk:to:after", "v", 0).Err(); err != nil {
		t.Errorf("SET after the timeouts: %v", err)
	}
	if v, err := c.Get(ctx, "blk:to:after").Result(); err != nil || v != "v" {
		t.Errorf("GET after the timeouts = %q, %v: connection out of sync", v, err)
	}

	// Raw RESP2: the timeout reply of every blocking command.
	r := dialRaw(t, tg.addr)
	for _, cmd := range [][]string{
		{"BLPOP", "blk:to:{t}a", "blk:to:{t}b", "0.2"},
		{"BRPOP", "blk:to:{t}a", "0.2"},
		{"BLMOVE", "blk:to:{t}a", "blk:to:{t}b", "LEFT", "RIGHT", "0.2"},
		{"BRPOPLPUSH", "blk:to:{t}a", "blk:to:{t}b", "0.2"},
		{"BLMPOP", "0.2", "2", "blk:to:{t}a", "blk:to:{t}b", "RIGHT", "COUNT", "3"},
		{"BZPOPMIN", "blk:to:{t}z", "0.2"},
		{"BZPOPMAX", "blk:to:{t}z", "0.2"},
		{"BZMPOP", "0.2", "1", "blk:to:{t}z", "MAX"},
		{"XREAD", "BLOCK", "200", "STREAMS", "blk:to:{t}s", "$"},
	} {
		start := time.Now()
		got := r.do(cmd...)
		el := time.Since(start)
		wantReply(t, strings.Join(cmd, " "), got, "(nil array)")
		if el < 200*time.Millisecond {
			t.Errorf("%s answered after %v, before its 200ms timeout", strings.Join(cmd, " "), el)
		}
	}
	wantReply(t, "PING after the timeouts", r.do("PING"), "+PONG")
	// Bad timeouts: Redis's own errors.
	wantReply(t, "BLPOP k -1", r.do("BLPOP", k, "-1"), "-ERR timeout is negative")
	wantReply(t, "BLPOP k abc", r.do("BLPOP", k, "abc"), "-ERR timeout is not a float or out of range")
	wantReply(t, "XREAD BLOCK -1", r.do("XREAD", "BLOCK", "-1", "STREAMS", k, "$"), "-ERR timeout is negative")
	// XREADGROUP BLOCK on a group that has nothing new.
	wantReply(t, "XGROUP CREATE", r.do("XGROUP", "CREATE", "blk:to:xg", "g", "$", "MKSTREAM"), "+OK")
	start = time.Now()
	wantReply(t, "XREADGROUP BLOCK 200", r.do("XREADGROUP", "GROUP", "g", "c", "BLOCK", "200", "STREAMS", "blk:to:xg", ">"), "(nil array)")
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("XREADGROUP BLOCK 200 answered after %v", el)
	}
}

// blkWorkQueue: the reliable-queue pattern. 8 producers LPUSH 250 unique
// items each onto {q}:in; 8 consumers loop BLMOVE {q}:in {q}:work RIGHT
// LEFT 1, then ack with LREM {q}:work 1 item. Every item is consumed exactly
// once (nothing lost, nothing twice) and both lists end empty.
func blkWorkQueue(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	const (
		producers = 8
		consumers = 8
		perProd   = 250
		total     = producers * perProd
	)
	in, work := "blk:{q}:in", "blk:{q}:work"
	c := newClientWith(t, &redis.Options{Addr: tg.addr, PoolSize: 32})
	var (
		errs     errList
		mu       sync.Mutex
		seen     = map[string]int{}
		consumed atomic.Int64
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(30 * time.Second)
	start := make(chan struct{})
	for g := 0; g < consumers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			for consumed.Load() < total && time.Now().Before(deadline) {
				item, err := c.BLMove(ctx, in, work, "RIGHT", "LEFT", time.Second).Result()
				if err == redis.Nil {
					continue
				}
				if err != nil {
					errs.add("consumer %d: BLMOVE: %v", g, err)
					return
				}
				n, err := c.LRem(ctx, work, 1, item).Result()
				if err != nil || n != 1 {
					errs.add("consumer %d: ack LREM %s 1 %s = %d, %v; want 1", g, work, item, n, err)
				}
				mu.Lock()
				seen[item]++
				mu.Unlock()
				consumed.Add(1)
			}
		}(g)
	}
	var pwg sync.WaitGroup
	for p := 0; p < producers; p++ {
		pwg.Add(1)
		go func(p int) {
			defer pwg.Done()
			<-start
			for i := 0; i < perProd; i++ {
				if err := c.LPush(ctx, in, fmt.Sprintf("p%d:%d", p, i)).Err(); err != nil {
					errs.add("producer %d: LPUSH %d: %v", p, i, err)
					return
				}
			}
		}(p)
	}
	close(start)
	pwg.Wait()
	wg.Wait()
	errs.report(t)
	var missing, dup []string
	for p := 0; p < producers; p++ {
		for i := 0; i < perProd; i++ {
			item := fmt.Sprintf("p%d:%d", p, i)
			switch n := seen[item]; {
			case n == 0:
				missing = append(missing, item)
			case n > 1:
				dup = append(dup, fmt.Sprintf("%s×%d", item, n))
			}
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(seen) != total {
		t.Errorf("%d distinct items consumed (%d consumptions), want %d each once; missing %d %v; duplicated %d %v",
			len(seen), consumed.Load(), total, len(missing), head(missing), len(dup), head(dup))
	}
	for _, k := range []string{in, work} {
		if n, err := c.LLen(ctx, k).Result(); err != nil || n != 0 {
			t.Errorf("LLEN %s = %d, %v at the end, want 0", k, n, err)
		}
	}
}

func head(s []string) []string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// blkXReadGroup: a consumer group fed by XADD while 3 consumers loop
// XREADGROUP … COUNT 10 BLOCK 500 … > and XACK: every entry is delivered
// exactly once across the consumers, with its payload, and nothing is
// pending at the end.
func blkXReadGroup(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	const (
		nConsumers = 3
		entries    = 300
	)
	s, g := "blk:xg:s", "g"
	c := newClient(t, tg.addr)
	if err := c.XGroupCreateMkStream(ctx, s, g, "$").Err(); err != nil {
		t.Fatalf("XGROUP CREATE %s %s $ MKSTREAM: %v", s, g, err)
	}
	var (
		errs      errList
		mu        sync.Mutex
		delivered = map[string][]string{} // id -> payload per delivery
		byCons    = make([]int, nConsumers)
		count     atomic.Int64
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < nConsumers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("c%d", i)
			for count.Load() < entries && time.Now().Before(deadline) {
				ss, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{
					Group: g, Consumer: name, Streams: []string{s, ">"}, Count: 10, Block: 500 * time.Millisecond,
				}).Result()
				if err == redis.Nil {
					continue
				}
				if err != nil {
					errs.add("consumer %s: XREADGROUP: %v", name, err)
					return
				}
				var ids []string
				for _, st := range ss {
					if st.Stream != s {
						errs.add("consumer %s: entries of stream %q, want %q", name, st.Stream, s)
					}
					for _, m := range st.Messages {
						ids = append(ids, m.ID)
						mu.Lock()
						delivered[m.ID] = append(delivered[m.ID], fmt.Sprint(m.Values["n"]))
						byCons[i]++
						mu.Unlock()
					}
				}
				if len(ids) == 0 {
					errs.add("consumer %s: XREADGROUP returned no entries and no nil", name)
					continue
				}
				if n, err := c.XAck(ctx, s, g, ids...).Result(); err != nil || n != int64(len(ids)) {
					errs.add("consumer %s: XACK of %d entries = %d, %v", name, len(ids), n, err)
				}
				count.Add(int64(len(ids)))
			}
		}(i)
	}
	// Let the consumers block first (not required, but the point).
	time.Sleep(100 * time.Millisecond)
	produced := make(map[string]string, entries)
	for i := 0; i < entries; i++ {
		id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"n", strconv.Itoa(i)}}).Result()
		if err != nil {
			t.Errorf("XADD %d: %v", i, err)
			break
		}
		produced[id] = strconv.Itoa(i)
	}
	wg.Wait()
	errs.report(t)
	mu.Lock()
	defer mu.Unlock()
	bad := 0
	for id, n := range produced {
		if got := delivered[id]; len(got) != 1 || got[0] != n {
			if bad++; bad <= 10 {
				t.Errorf("entry %s (n=%s) delivered %d times: %v; want once", id, n, len(got), got)
			}
		}
	}
	for id := range delivered {
		if _, ok := produced[id]; !ok {
			t.Errorf("entry %s delivered but never produced", id)
		}
	}
	if bad > 0 || len(delivered) != entries {
		t.Errorf("%d entries produced, %d distinct delivered, %d delivered other than exactly once", len(produced), len(delivered), bad)
	}
	t.Logf("entries per consumer: %v", byCons)
	p, err := c.XPending(ctx, s, g).Result()
	if err != nil || p.Count != 0 {
		t.Errorf("XPENDING %s %s = %+v, %v; want 0 pending", s, g, p, err)
	}
}

// blkDisconnect: a client that disconnects while blocked is unblocked on the
// node (blocked_clients back to 0 within 5s), and nobody pops in its place:
// a later push stays in the list. Once, then 50 clients at once.
func blkDisconnect(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	pc := newClient(t, tg.addr)
	k := "blk:dc:one"
	node := tg.nodeOf(t, k)
	c := dialRaw(t, tg.addr)
	c.send(encode("BLPOP", k, "0"))
	waitBlocked(t, "BLPOP before the disconnect", []*redis.Client{node}, 1, 10*time.Second)
	c.nc.Close()
	waitBlocked(t, "5s after the blocked client disconnected", []*redis.Client{node}, 0, 5*time.Second)
	if err := pc.RPush(ctx, k, "x").Err(); err != nil {
		t.Fatalf("RPUSH: %v", err)
	}
	if n, err := pc.LLen(ctx, k).Result(); err != nil || n != 1 {
		t.Errorf("LLEN %s = %d, %v after the push, want 1 (the disconnected client's BLPOP popped it)", k, n, err)
	}

	keys := tg.keys(t, "blk:dc:many:", 50)
	var conns []*rawConn
	for _, k := range keys {
		c := dialRaw(t, tg.addr)
		c.send(encode("BLPOP", k, "0"))
		conns = append(conns, c)
	}
	waitBlocked(t, "50 BLPOPs", tg.nodes, 50, 15*time.Second)
	for _, c := range conns {
		c.nc.Close()
	}
	waitBlocked(t, "5s after 50 blocked clients disconnected", tg.nodes, 0, 5*time.Second)
	cmds, err := pc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.RPush(ctx, k, "x")
		}
		for _, k := range keys {
			p.LLen(ctx, k)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("RPUSH/LLEN pipeline: %v", err)
	}
	for i, k := range keys {
		if n := cmds[len(keys)+i].(*redis.IntCmd).Val(); n != 1 {
			t.Errorf("LLEN %s = %d after the push, want 1 (a disconnected client's BLPOP popped it)", k, n)
		}
	}
}

// blkClientUnblock: CLIENT UNBLOCK <id of the blocked client> [TIMEOUT|ERROR]
// from another connection: 1 and a nil reply (or -UNBLOCKED) for the
// blocked client when it was blocked, 0 otherwise; the node no longer
// blocks it (a later push stays in the list) and the connection is usable.
func blkClientUnblock(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	k := "blk:ub:k"
	node := tg.nodeOf(t, k)
	nodes := []*redis.Client{node}
	a, b := dialRaw(t, tg.addr), dialRaw(t, tg.addr)
	idr := a.do("CLIENT", "ID")
	if idr.kind != ':' {
		t.Fatalf("A: CLIENT ID = %v, want an integer", idr)
	}
	id := strconv.FormatInt(idr.n, 10)
	wantReply(t, "B: CLIENT UNBLOCK of a client that is not blocked", b.do("CLIENT", "UNBLOCK", id), ":0")
	wantReply(t, "B: CLIENT UNBLOCK abc", b.do("CLIENT", "UNBLOCK", "abc"), "-ERR value is not an integer or out of range")
	// Ids nobody has: 0, whatever their size (Redis parses a long long;
	// jupiter, when written, refused ids outside uint32 with an error).
	for _, none := range []string{"0", "999999", "4294967297", "99999999999", "-1"} {
		wantReply(t, "B: CLIENT UNBLOCK "+none+" (no such client)", b.do("CLIENT", "UNBLOCK", none), ":0")
	}

	a.send(encode("BLPOP", k, "0"))
	waitBlocked(t, "A: BLPOP", nodes, 1, 10*time.Second)
	wantReply(t, "B: CLIENT UNBLOCK id", b.do("CLIENT", "UNBLOCK", id), ":1")
	wantReply(t, "A: BLPOP after CLIENT UNBLOCK", a.read(), "(nil array)")
	waitBlocked(t, "after CLIENT UNBLOCK", nodes, 0, 5*time.Second)
	wantReply(t, "B: CLIENT UNBLOCK again", b.do("CLIENT", "UNBLOCK", id), ":0")

	a.send(encode("BLPOP", k, "0"))
	waitBlocked(t, "A: BLPOP", nodes, 1, 10*time.Second)
	wantReply(t, "B: CLIENT UNBLOCK id TIMEOUT", b.do("CLIENT", "UNBLOCK", id, "TIMEOUT"), ":1")
	wantReply(t, "A: BLPOP after CLIENT UNBLOCK TIMEOUT", a.read(), "(nil array)")
	waitBlocked(t, "after CLIENT UNBLOCK TIMEOUT", nodes, 0, 5*time.Second)

	a.send(encode("BLPOP", k, "0"))
	waitBlocked(t, "A: BLPOP", nodes, 1, 10*time.Second)
	wantReply(t, "B: CLIENT UNBLOCK id ERROR", b.do("CLIENT", "UNBLOCK", id, "ERROR"), ":1")
	wantErrPrefix(t, "A: BLPOP after CLIENT UNBLOCK ERROR", a.read(), "UNBLOCKED")
	waitBlocked(t, "after CLIENT UNBLOCK ERROR", nodes, 0, 5*time.Second)

	// A bad reason is refused and unblocks nothing.
	a.send(encode("BLPOP", k, "0"))
	waitBlocked(t, "A: BLPOP", nodes, 1, 10*time.Second)
	wantReply(t, "B: CLIENT UNBLOCK id BOGUS", b.do("CLIENT", "UNBLOCK", id, "BOGUS"),
		"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
	if r, quiet := blkQuiet(a, 200*time.Millisecond); !quiet {
		t.Errorf("A: got %v after a refused CLIENT UNBLOCK, want still blocked", r)
	}
	wantReply(t, "B: RPUSH k v", b.do("RPUSH", k, "v"), ":1")
	wantReply(t, "A: BLPOP woken by the push", a.read(), fmt.Sprintf("[%q %q]", k, "v"))

	// Nobody is left blocked on the node for A: a push stays in the list.
	wantReply(t, "B: RPUSH k x", b.do("RPUSH", k, "x"), ":1")
	wantReply(t, "B: LLEN k", b.do("LLEN", k), ":1")
	wantReply(t, "A: PING", a.do("PING"), "+PONG")
	wantReply(t, "A: LPOP k", a.do("LPOP", k), `"x"`)

	// The other blocking commands are unblocked the same way.
	for _, cmd := range [][]string{
		{"BLMOVE", "blk:ub:{m}src", "blk:ub:{m}dst", "LEFT", "RIGHT", "0"},
		{"BZPOPMIN", "blk:ub:z", "0"},
		{"BZMPOP", "0", "1", "blk:ub:z", "MIN"},
		{"XREAD", "BLOCK", "0", "STREAMS", "blk:ub:s", "$"},
	} {
		what := strings.Join(cmd, " ")
		a.send(encode(cmd...))
		waitBlocked(t, what, tg.nodes, 1, 10*time.Second)
		wantReply(t, "CLIENT UNBLOCK during "+what, b.do("CLIENT", "UNBLOCK", id), ":1")
		wantReply(t, what+" after CLIENT UNBLOCK", a.read(), "(nil array)")
		waitBlocked(t, "after unblocking "+what, tg.nodes, 0, 5*time.Second)
	}
	if v, err := newClient(t, tg.addr).Exists(ctx, "blk:ub:{m}src", "blk:ub:{m}dst", "blk:ub:z", "blk:ub:s").Result(); err != nil || v != 0 {
		t.Errorf("EXISTS of the unblocked commands' keys = %d, %v; want 0", v, err)
	}
}

// blkPipelinedBehind: commands pipelined behind a blocking one wait for it
// (SET x does not run while BLPOP is blocked) and their replies follow its
// reply in order once a push wakes it.
func blkPipelinedBehind(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	k, x := "blk:pipe:k", "blk:pipe:x"
	node := tg.nodeOf(t, k)
	pc := newClient(t, tg.addr)
	c := dialRaw(t, tg.addr)
	c.send(encode("BLPOP", k, "0") + encode("PING") + encode("SET", x, "1"))
	waitBlocked(t, "pipelined BLPOP", []*redis.Client{node}, 1, 10*time.Second)
	if r, quiet := blkQuiet(c, 200*time.Millisecond); !quiet {
		t.Fatalf("got %v while BLPOP was blocked, want nothing (PING and SET wait behind it)", r)
	}
	if v, err := pc.Get(ctx, x).Result(); err != redis.Nil {
		t.Errorf("GET %s = %q, %v while the BLPOP in front of SET was blocked; want nil (SET ran early)", x, v, err)
	}
	if err := pc.RPush(ctx, k, "v").Err(); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "reply 1 (BLPOP)", c.read(), fmt.Sprintf("[%q %q]", k, "v"))
	wantReply(t, "reply 2 (PING)", c.read(), "+PONG")
	wantReply(t, "reply 3 (SET)", c.read(), "+OK")
	if v, err := pc.Get(ctx, x).Result(); err != nil || v != "1" {
		t.Errorf("GET %s = %q, %v after the pipeline, want 1", x, v, err)
	}
	// A blocking command that does not block, pipelined between others.
	if err := pc.RPush(ctx, k, "w").Err(); err != nil {
		t.Fatal(err)
	}
	c.send(encode("SET", x, "2") + encode("BLPOP", k, "0") + encode("GET", x) + encode("BRPOP", k, "0.1") + encode("PING"))
	wantReply(t, "SET", c.read(), "+OK")
	wantReply(t, "BLPOP of a non-empty list", c.read(), fmt.Sprintf("[%q %q]", k, "w"))
	wantReply(t, "GET", c.read(), `"2"`)
	wantReply(t, "BRPOP 0.1 of an empty list", c.read(), "(nil array)")
	wantReply(t, "PING", c.read(), "+PONG")
}

// blkRedigo: redigo's Values(Do("BLPOP", k, 0)) woken by a push from
// another redigo connection; a timeout is redigo.ErrNil.
func blkRedigo(t *testing.T, tg blkTarget) {
	k := "blk:rg:k"
	node := tg.nodeOf(t, k)
	c, other := dialRedigo(t, tg.addr), dialRedigo(t, tg.addr)
	got, err := blkAfterBlocked(t, node,
		func() (string, error) {
			v, err := redigo.Values(c.Do("BLPOP", k, 0))
			if err != nil {
				return "", err
			}
			ss, err := redigo.Strings(v, nil)
			return fmt.Sprint(ss), err
		},
		func() error { _, err := other.Do("RPUSH", k, "v"); return err })
	if want := "[" + k + " v]"; err != nil || got != want {
		t.Errorf(`redigo.Values(c.Do("BLPOP", k, 0)) = %q, %v; want %q`, got, err, want)
	}
	start := time.Now()
	v, err := redigo.Values(c.Do("BLPOP", k, 0.2))
	if el := time.Since(start); err != redigo.ErrNil || el < 200*time.Millisecond {
		t.Errorf(`redigo BLPOP k 0.2 = %v, %v after %v; want redigo.ErrNil after ≥ 200ms`, v, err, el)
	}
	if s, err := redigo.String(c.Do("PING")); err != nil || s != "PONG" {
		t.Errorf("redigo PING after BLPOP = %q, %v", s, err)
	}
}

// blkOthersNotDelayed: with 200 clients blocked on keys over all the nodes,
// another client's 500 SET/GET round trips all succeed; then pushes release
// every blocked client with its own item.
func blkOthersNotDelayed(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	const n = 200
	keys := tg.keys(t, "blk:od:", n)
	var conns []*rawConn
	for _, k := range keys {
		c := dialRaw(t, tg.addr)
		c.send(encode("BLPOP", k, "0"))
		conns = append(conns, c)
	}
	waitBlocked(t, fmt.Sprintf("%d BLPOPs", n), tg.nodes, n, 20*time.Second)
	per := make([]int, len(tg.nodes))
	for i, nc := range tg.nodes {
		per[i] = blockedClients(t, nc)
	}
	t.Logf("blocked clients per node: %v", per)

	gc := newClient(t, tg.addr)
	var worst time.Duration
	for i := 0; i < 500; i++ {
		k := fmt.Sprintf("blk:od:rt:%d", i%50)
		v := strconv.Itoa(i)
		start := time.Now()
		if err := gc.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatalf("SET %d while %d clients are blocked: %v", i, n, err)
		}
		got, err := gc.Get(ctx, k).Result()
		if err != nil || got != v {
			t.Fatalf("GET %d while %d clients are blocked = %q, %v; want %q", i, n, got, err, v)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("slowest SET+GET round trip with %d blocked clients: %v", n, worst)
	if got := sumBlocked(t, tg.nodes); got != n {
		t.Errorf("blocked_clients = %d after the round trips, want still %d", got, n)
	}

	if _, err := gc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			p.RPush(ctx, k, "item"+strconv.Itoa(i))
		}
		return nil
	}); err != nil {
		t.Fatalf("RPUSH pipeline: %v", err)
	}
	for i, c := range conns {
		wantReply(t, fmt.Sprintf("blocked client %d", i), c.read(), fmt.Sprintf("[%q %q]", keys[i], "item"+strconv.Itoa(i)))
	}
	waitBlocked(t, "after the pushes", tg.nodes, 0, 5*time.Second)
	cmds, err := gc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Exists(ctx, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if cmd.(*redis.IntCmd).Val() != 0 {
			t.Errorf("%s still exists: its item was not handed to the blocked client", keys[i])
		}
	}
}

// blkShortTimeoutWithData: a blocking command whose key already holds data
// answers with the data at once, however short its timeout (Redis only
// looks at the timeout when there is nothing to pop).
//
// Known jupiter bug when written: with a 1 ms timeout (BLPOP k 0.001, XREAD
// BLOCK 1) jupiter answers the null array without sending the command to the
// node (blockState.run returns nilReply when less than 1 ms is left, which
// is always the case on the first pass of a 1 ms timeout).
func blkShortTimeoutWithData(t *testing.T, tg blkTarget) {
	c := dialRaw(t, tg.addr)
	for _, tmo := range []string{"0.001", "0.002", "0.01", "1"} {
		// Fresh keys per timeout (one {tag}: one node), so a failure does
		// not spill into the next round.
		l, l2, z := "blk:st:{"+tmo+"}l", "blk:st:{"+tmo+"}l2", "blk:st:{"+tmo+"}z"
		wantReply(t, "RPUSH", c.do("RPUSH", l, "a", "b", "c", "d", "e"), ":5")
		wantReply(t, "BLPOP "+tmo+" of a non-empty list", c.do("BLPOP", l, tmo), fmt.Sprintf("[%q %q]", l, "a"))
		wantReply(t, "BRPOP "+tmo+" of a non-empty list", c.do("BRPOP", l, tmo), fmt.Sprintf("[%q %q]", l, "e"))
		wantReply(t, "BLMOVE "+tmo+" of a non-empty list", c.do("BLMOVE", l, l2, "LEFT", "RIGHT", tmo), `"b"`)
		wantReply(t, "BRPOPLPUSH "+tmo+" of a non-empty list", c.do("BRPOPLPUSH", l, l2, tmo), `"d"`)
		wantReply(t, "BLMPOP "+tmo+" of a non-empty list", c.do("BLMPOP", tmo, "1", l, "LEFT", "COUNT", "5"), fmt.Sprintf("[%q [%q]]", l, "c"))
		wantReply(t, "ZADD", c.do("ZADD", z, "1", "m", "2", "n"), ":2")
		wantReply(t, "BZPOPMIN "+tmo+" of a non-empty zset", c.do("BZPOPMIN", z, tmo), fmt.Sprintf("[%q %q %q]", z, "m", "1"))
		wantReply(t, "BZMPOP "+tmo+" of a non-empty zset", c.do("BZMPOP", tmo, "1", z, "MAX"), fmt.Sprintf("[%q [[%q %q]]]", z, "n", "2"))
	}
	for _, ms := range []string{"1", "2", "10", "1000"} {
		s := "blk:st:s" + ms
		wantReply(t, "XADD", c.do("XADD", s, "1-1", "f", "v"), `"1-1"`)
		wantReply(t, "XREAD BLOCK "+ms+" of a stream with an entry", c.do("XREAD", "BLOCK", ms, "STREAMS", s, "0"),
			fmt.Sprintf("[[%q [[%q [%q %q]]]]]", s, "1-1", "f", "v"))
		wantReply(t, "XGROUP CREATE", c.do("XGROUP", "CREATE", s, "g", "0"), "+OK")
		wantReply(t, "XREADGROUP BLOCK "+ms+" of a new entry", c.do("XREADGROUP", "GROUP", "g", "c", "BLOCK", ms, "STREAMS", s, ">"),
			fmt.Sprintf("[[%q [[%q [%q %q]]]]]", s, "1-1", "f", "v"))
	}
}

// blkInsideMulti: inside MULTI a blocking command is queued and runs without
// blocking, as Redis does: nil for an empty key, the element otherwise.
func blkInsideMulti(t *testing.T, tg blkTarget) {
	c := dialRaw(t, tg.addr)
	l := "blk:mu:{m}l"
	node := tg.nodeOf(t, l)
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "BLPOP 0 (queued)", c.do("BLPOP", l, "0"), "+QUEUED")
	wantReply(t, "RPUSH (queued)", c.do("RPUSH", l, "a", "b"), "+QUEUED")
	wantReply(t, "BRPOP 0 (queued)", c.do("BRPOP", l, "0"), "+QUEUED")
	wantReply(t, "BLMOVE 0 (queued)", c.do("BLMOVE", l, "blk:mu:{m}d", "LEFT", "LEFT", "0"), "+QUEUED")
	wantReply(t, "BLMOVE 0 of the now empty list (queued)", c.do("BLMOVE", l, "blk:mu:{m}d", "LEFT", "LEFT", "0"), "+QUEUED")
	wantReply(t, "XREAD BLOCK 0 (queued)", c.do("XREAD", "BLOCK", "0", "STREAMS", "blk:mu:{m}s", "$"), "+QUEUED")
	start := time.Now()
	wantReply(t, "EXEC", c.do("EXEC"), fmt.Sprintf(`[(nil array) :2 [%q "b"] "a" (nil) (nil array)]`, l))
	if el := time.Since(start); el > time.Second {
		t.Errorf("EXEC of blocking commands took %v, want at once", el)
	}
	if n := blockedClients(t, node); n != 0 {
		t.Errorf("blocked_clients = %d after the transaction, want 0", n)
	}
	wantReply(t, "PING", c.do("PING"), "+PONG")
}

// blkDisconnectDropsQueued: commands a client pipelined behind its blocked
// command never run when it disconnects while blocked.
func blkDisconnectDropsQueued(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	k, x := "blk:dq:k", "blk:dq:x"
	node := tg.nodeOf(t, k)
	pc := newClient(t, tg.addr)
	c := dialRaw(t, tg.addr)
	c.send(encode("BLPOP", k, "0") + encode("SET", x, "ran") + encode("RPUSH", k+":ran", "1"))
	waitBlocked(t, "BLPOP with commands behind it", []*redis.Client{node}, 1, 10*time.Second)
	c.nc.Close()
	waitBlocked(t, "after the disconnect", []*redis.Client{node}, 0, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if v, err := pc.Get(ctx, x).Result(); err != redis.Nil {
		t.Errorf("GET %s = %q, %v after the client disconnected while blocked: the SET pipelined behind BLPOP ran", x, v, err)
	}
	if n, err := pc.Exists(ctx, k+":ran").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS %s:ran = %d, %v: the RPUSH pipelined behind BLPOP ran", k, n, err)
	}
}

// blkSentWhileBlocked: commands sent (in later writes) while the client is
// blocked wait behind it, and their replies follow its reply in order; a
// large burst of them too.
func blkSentWhileBlocked(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	k, x := "blk:swb:k", "blk:swb:x"
	node := tg.nodeOf(t, k)
	pc := newClient(t, tg.addr)
	c := dialRaw(t, tg.addr)
	c.send(encode("BLPOP", k, "0"))
	waitBlocked(t, "BLPOP", []*redis.Client{node}, 1, 10*time.Second)
	c.send(encode("PING", "one"))
	time.Sleep(50 * time.Millisecond)
	const burst = 2000
	var b strings.Builder
	for i := 0; i < burst; i++ {
		b.WriteString(encode("SET", x, strconv.Itoa(i)))
	}
	b.WriteString(encode("GET", x))
	c.send(b.String())
	if r, quiet := blkQuiet(c, 300*time.Millisecond); !quiet {
		t.Fatalf("got %v while BLPOP was blocked, want nothing", r)
	}
	if v, err := pc.Get(ctx, x).Result(); err != redis.Nil {
		t.Errorf("GET %s = %q, %v while the client was blocked: a command sent behind BLPOP ran", x, v, err)
	}
	if n := blockedClients(t, node); n != 1 {
		t.Errorf("blocked_clients = %d with commands queued behind the BLPOP, want 1", n)
	}
	if err := pc.RPush(ctx, k, "v").Err(); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "BLPOP", c.read(), fmt.Sprintf("[%q %q]", k, "v"))
	wantReply(t, "PING one", c.read(), `"one"`)
	bad := 0
	for i := 0; i < burst; i++ {
		if r := c.read(); r.String() != "+OK" {
			if bad++; bad <= 5 {
				t.Errorf("SET %d of the burst: %v, want +OK", i, r)
			}
		}
	}
	wantReply(t, "GET after the burst", c.read(), strconv.Quote(strconv.Itoa(burst-1)))
}

// blkUnblockPushRace: CLIENT UNBLOCK and a push racing for one blocked
// BLPOP: the item is either the BLPOP's reply or still in the list, never
// lost nor handed out twice.
func blkUnblockPushRace(t *testing.T, tg blkTarget) {
	ctx := ctxT(t)
	k := "blk:race:k"
	node := tg.nodeOf(t, k)
	a, b := dialRaw(t, tg.addr), dialRaw(t, tg.addr)
	pc := newClient(t, tg.addr)
	idr := a.do("CLIENT", "ID")
	if idr.kind != ':' {
		t.Fatalf("CLIENT ID = %v", idr)
	}
	id := strconv.FormatInt(idr.n, 10)
	popped, left := 0, 0
	for i := 0; i < 100; i++ {
		item := "it" + strconv.Itoa(i)
		a.send(encode("BLPOP", k, "0"))
		waitBlocked(t, "BLPOP", []*redis.Client{node}, 1, 10*time.Second)
		var wg sync.WaitGroup
		var ub reply
		var ubErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.nc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := b.nc.Write([]byte(encode("CLIENT", "UNBLOCK", id))); err != nil {
				ubErr = err
				return
			}
			ub, ubErr = readReply(b.br)
		}()
		if i%2 == 1 {
			time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
		}
		if err := pc.RPush(ctx, k, item).Err(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if ubErr != nil || ub.kind != ':' {
			t.Fatalf("iteration %d: CLIENT UNBLOCK = %v, %v", i, ub, ubErr)
		}
		r := a.read()
		rest, err := pc.LRange(ctx, k, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.null && len(rest) == 1 && rest[0] == item:
			left++
		case r.String() == fmt.Sprintf("[%q %q]", k, item) && len(rest) == 0:
			popped++
		default:
			t.Fatalf("iteration %d: BLPOP = %v (CLIENT UNBLOCK %v) and the list holds %v: %s lost or duplicated", i, r, ub, rest, item)
		}
		if err := pc.Del(ctx, k).Err(); err != nil {
			t.Fatal(err)
		}
		waitBlocked(t, "after the race", []*redis.Client{node}, 0, 5*time.Second)
	}
	t.Logf("the push won %d times, CLIENT UNBLOCK %d times", popped, left)
}

// ---- jupiter only --------------------------------------------------------

// blkCrossSlot: a blocking command whose keys are on different nodes is
// refused at once with CROSSSLOT, nothing blocks, and the connection goes on.
func blkCrossSlot(t *testing.T, e *env) {
	ctx := ctxT(t)
	groups := e.keysPerNode(t, "blk:cs:", 1)
	k0, k1 := groups[0][0], groups[1][0]
	c := dialRaw(t, e.c.Jupiter.Addr)
	for _, cmd := range [][]string{
		{"BLPOP", k0, k1, "0"},
		{"BRPOP", k0, k1, "0"},
		{"BLMOVE", k0, k1, "LEFT", "RIGHT", "0"},
		{"BRPOPLPUSH", k0, k1, "0"},
		{"BLMPOP", "0", "2", k0, k1, "LEFT"},
		{"BZPOPMIN", k0, k1, "0"},
		{"BZPOPMAX", k0, k1, "0"},
		{"BZMPOP", "0", "2", k0, k1, "MIN"},
		{"XREAD", "BLOCK", "0", "STREAMS", k0, k1, "$", "$"},
		{"XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", k0, k1, ">", ">"},
	} {
		start := time.Now()
		r := c.do(cmd...)
		wantErrPrefix(t, strings.Join(cmd, " "), r, "CROSSSLOT")
		if el := time.Since(start); el > time.Second {
			t.Errorf("%s refused after %v, want at once", strings.Join(cmd, " "), el)
		}
	}
	wantReply(t, "PING after the refusals", c.do("PING"), "+PONG")
	if n := sumBlocked(t, e.nodes); n != 0 {
		t.Errorf("blocked_clients = %d over the nodes after the refusals, want 0", n)
	}
	start := time.Now()
	err := e.j.BLPop(ctx, 5*time.Second, k0, k1).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") || time.Since(start) > time.Second {
		t.Errorf("go-redis BLPop over two nodes: %v after %v, want CROSSSLOT at once", err, time.Since(start))
	}
	// Keys on one node are fine (no CROSSSLOT) even without a {tag}.
	k2 := e.keysPerNode(t, "blk:cs2:", 2)[0]
	wantReply(t, "BLPOP of two keys on one node", c.do("BLPOP", k2[0], k2[1], "0.1"), "(nil array)")
}

// TestStandaloneBlockingDedicatedBound: with --max-dedicated-conns 3, three
// clients blocked on one node use its dedicated connections up; a fourth
// blocking command there fails at once ("too many dedicated connections")
// while plain commands on the node and blocking ones on other nodes still
// work; when a blocked client disconnects, a new one can block again.
func TestStandaloneBlockingDedicatedBound(t *testing.T) {
	t.Parallel()
	e := startEnv(t, "--max-dedicated-conns", "3")
	ctx := ctxT(t)
	groups := e.keysPerNode(t, "blk:bound:", 6)
	ks := groups[0]
	node := e.nodes[0]
	nodes := []*redis.Client{node}
	addr := e.c.Jupiter.Addr

	var blocked []*rawConn
	for i := 0; i < 3; i++ {
		c := dialRaw(t, addr)
		c.send(encode("BLPOP", ks[i], "0"))
		blocked = append(blocked, c)
	}
	waitBlocked(t, "3 BLPOPs on node 0", nodes, 3, 10*time.Second)

	c4 := dialRaw(t, addr)
	start := time.Now()
	r := c4.do("BLPOP", ks[3], "0")
	if r.kind != '-' || !strings.Contains(r.str, "too many dedicated connections") {
		t.Errorf("4th BLPOP on the node: got %v, want an error containing %q", r, "too many dedicated connections")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("4th BLPOP answered after %v, want at once", el)
	}
	// Other blocking commands on the node are refused the same way.
	r = c4.do("BZPOPMIN", ks[3], "0")
	if r.kind != '-' || !strings.Contains(r.str, "too many dedicated connections") {
		t.Errorf("BZPOPMIN on the full node: got %v, want the limit error", r)
	}
	wantReply(t, "PING on the refused client", c4.do("PING"), "+PONG")
	wantReply(t, "SET on the full node", c4.do("SET", ks[4], "v"), "+OK")
	wantReply(t, "GET on the full node", c4.do("GET", ks[4]), `"v"`)
	if err := e.j.Set(ctx, ks[5], "w", 0).Err(); err != nil {
		t.Errorf("go-redis SET on the full node: %v", err)
	}
	if v, err := e.j.Get(ctx, ks[5]).Result(); err != nil || v != "w" {
		t.Errorf("go-redis GET on the full node = %q, %v", v, err)
	}
	if n := blockedClients(t, node); n != 3 {
		t.Errorf("blocked_clients on node 0 = %d, want 3 (the refused ones must not block)", n)
	}
	// The bound is per node: another node still takes a blocking command.
	o := dialRaw(t, addr)
	o.send(encode("BLPOP", groups[1][0], "0"))
	waitBlocked(t, "BLPOP on node 1 while node 0 is full", e.nodes[1:2], 1, 10*time.Second)
	if err := e.j.RPush(ctx, groups[1][0], "o").Err(); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "BLPOP on node 1", o.read(), fmt.Sprintf("[%q %q]", groups[1][0], "o"))

	// One blocked client leaves: its connection is free again.
	blocked[0].nc.Close()
	waitBlocked(t, "after one of the 3 disconnected", nodes, 2, 5*time.Second)
	var again *rawConn
	retries := 0
	deadline := time.Now().Add(5 * time.Second)
	for again == nil {
		c := dialRaw(t, addr)
		c.send(encode("BLPOP", ks[0], "0"))
		r, quiet := blkQuiet(c, 300*time.Millisecond)
		switch {
		case quiet:
			again = c
		case r.kind == '-' && strings.Contains(r.str, "too many dedicated connections") && time.Now().Before(deadline):
			retries++
			c.nc.Close()
			time.Sleep(20 * time.Millisecond)
		default:
			t.Fatalf("BLPOP after a blocked client left: got %v (after %d retries), want it to block", r, retries)
		}
	}
	t.Logf("a new BLPOP blocked after %d refusals", retries)
	waitBlocked(t, "the new BLPOP", nodes, 3, 5*time.Second)
	if _, err := e.j.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < 3; i++ {
			p.RPush(ctx, ks[i], "i"+strconv.Itoa(i))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "new BLPOP", again.read(), fmt.Sprintf("[%q %q]", ks[0], "i0"))
	for i := 1; i < 3; i++ {
		wantReply(t, fmt.Sprintf("blocked client %d", i), blocked[i].read(), fmt.Sprintf("[%q %q]", ks[i], "i"+strconv.Itoa(i)))
	}
	waitBlocked(t, "after the pushes", nodes, 0, 5*time.Second)
	// Served and given back: a blocking command works on the node again.
	wantReply(t, "BLPOP with a timeout on the node", c4.do("BLPOP", ks[3], "0.1"), "(nil array)")
}
