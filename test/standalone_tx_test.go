package test

// Transactions end to end: MULTI/EXEC/DISCARD/WATCH/UNWATCH through jupiter,
// driven by go-redis (default options), redigo and raw RESP connections.
//
// Jupiter mirrors Redis, plus the Redis Cluster rule that all the keys of a
// transaction (and of one WATCH) must be on one node: anything else is
// CROSSSLOT and aborts the transaction (EXECABORT).
//
// Every case body takes a txTarget (an address plus a few probes of the
// server(s) behind it), so the same body runs twice:
//   - TestStandaloneTx: through jupiter in front of 3 redis-server nodes;
//   - TestStandaloneTxRedisOracle: directly against one redis-server, the
//     oracle showing that the replies asserted are the ones Redis gives.
//
// Cases that only exist behind jupiter (CROSSSLOT, keys on one node, proxy
// metrics) are in TestStandaloneTx only.

import (
	"errors"
	"fmt"
	"slices"
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

// txTarget is what a transaction case runs against.
type txTarget struct {
	addr string
	// oneNode returns a direct client on the one redis-server holding all of
	// keys (they must exist), failing the test when they are not together.
	oneNode func(t *testing.T, keys ...string) *redis.Client
	// clientConns returns the number of client connections the server in
	// front (jupiter or the redis-server itself) counts, or false when it
	// cannot tell.
	clientConns func(t *testing.T) (float64, bool)
	// goroutines returns jupiter's go_goroutines (after it settled, with
	// settle), or false (oracle).
	goroutines func(t *testing.T, settle bool) (int, bool)
}

// txCases are the cases that run both through jupiter and on a redis-server.
var txCases = []struct {
	name string
	fn   func(t *testing.T, tg txTarget)
}{
	{"TxPipelined", txPipelinedTagged},
	{"WatchIncrConcurrent", txWatchIncrConcurrent},
	{"WatchConflictRaw", txWatchConflictRaw},
	{"ExecAbortOnQueueError", txExecAbort},
	{"ErrorInsideExec", txErrorInsideExec},
	{"Discard", txDiscard},
	{"DiscardUnwatches", txDiscardUnwatches},
	{"StateErrors", txStateErrors},
	{"KeylessInMulti", txKeylessInMulti},
	{"Unwatch", txUnwatch},
	{"WatchDisconnectNoLeak", txWatchDisconnectNoLeak},
	{"Redigo", txRedigo},
	{"PipelinedMix", txPipelinedMix},
}

// TestStandaloneTx runs the transaction cases through jupiter, plus the
// cases that only exist behind a sharding proxy (CROSSSLOT).
func TestStandaloneTx(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	j := e.c.Jupiter
	tg := txTarget{
		addr: j.Addr,
		oneNode: func(t *testing.T, keys ...string) *redis.Client {
			t.Helper()
			own := e.owners(t, keys)
			for i, o := range own {
				if o != own[0] {
					t.Fatalf("transaction keys on different nodes: %s on node %d, %s on node %d", keys[0], own[0], keys[i], o)
				}
			}
			return e.nodes[own[0]]
		},
		clientConns: func(t *testing.T) (float64, bool) {
			return value(t, scrape(t, j.AdminAddr), "jupiter_client_connections", "", "")
		},
		goroutines: func(t *testing.T, settle bool) (int, bool) {
			if settle {
				return secBaseline(t, j.AdminAddr), true
			}
			return secGoroutines(t, j.AdminAddr), true
		},
	}
	for _, c := range txCases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, tg) })
	}
	t.Run("CrossSlot", func(t *testing.T) { txCrossSlot(t, e) })
	t.Run("WatchDisconnectBackendConns", func(t *testing.T) { txWatchDisconnectBackend(t, e) })
}

// TestStandaloneTxRedisOracle runs the same cases directly against one
// redis-server: what the jupiter variants assert is what Redis answers.
func TestStandaloneTxRedisOracle(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	direct := newClient(t, r.Addr)
	tg := txTarget{
		addr: r.Addr,
		oneNode: func(t *testing.T, keys ...string) *redis.Client {
			t.Helper()
			if n, err := direct.Exists(ctxT(t), keys...).Result(); err != nil || n != int64(len(keys)) {
				t.Fatalf("EXISTS %v = %d, %v", keys, n, err)
			}
			return direct
		},
		clientConns: func(t *testing.T) (float64, bool) {
			n := connectedClients(t, direct)
			return float64(n), true
		},
		goroutines: func(*testing.T, bool) (int, bool) { return 0, false },
	}
	for _, c := range txCases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, tg) })
	}
}

// ---- helpers -------------------------------------------------------------

// wantReply fails unless r prints as want (see reply.String: "+OK",
// "[+OK :1]", "(nil array)", `"bulk"`, "(nil)").
func wantReply(t *testing.T, what string, r reply, want string) {
	t.Helper()
	if got := r.String(); got != want {
		t.Errorf("%s: got %s, want %s", what, got, want)
	}
}

// connectedClients returns connected_clients of INFO clients.
func connectedClients(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(ctxT(t), "clients").Result()
	if err != nil {
		t.Fatalf("INFO clients: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("connected_clients %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("INFO clients has no connected_clients:\n%s", info)
	return 0
}

// errList collects errors from goroutines (t.Fatal must stay on the test
// goroutine) and reports the first few.
type errList struct {
	mu   sync.Mutex
	errs []string
}

func (l *errList) add(format string, args ...any) {
	l.mu.Lock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *errList) report(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.errs {
		if i == 20 {
			t.Errorf("… and %d more errors", len(l.errs)-20)
			break
		}
		t.Error(e)
	}
}

// ---- cases ---------------------------------------------------------------

// txPipelinedTagged: go-redis (default options) TxPipelined of several
// commands on keys sharing a {tag}: every result is right and all the keys
// really live on one node, with the values written.
func txPipelinedTagged(t *testing.T, tg txTarget) {
	ctx := ctxT(t)
	c := newClient(t, tg.addr)
	a, b, h, l, m1, m2 := "tx:{u}:a", "tx:{u}:b", "tx:{u}:h", "tx:{u}:l", "tx:{u}:m1", "tx:{u}:m2"
	var (
		set   *redis.StatusCmd
		incr  *redis.IntCmd
		hset  *redis.IntCmd
		rpush *redis.IntCmd
		get   *redis.StringCmd
		mset  *redis.StatusCmd
		mget  *redis.SliceCmd
		exist *redis.IntCmd
		incr2 *redis.IntCmd
	)
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		set = p.Set(ctx, a, "1", 0)
		incr = p.Incr(ctx, b)
		hset = p.HSet(ctx, h, "f", "v", "g", "w")
		rpush = p.RPush(ctx, l, "x", "y")
		get = p.Get(ctx, a)
		mset = p.MSet(ctx, m1, "one", m2, "two")
		mget = p.MGet(ctx, a, b, "tx:{u}:none", m2)
		exist = p.Exists(ctx, a, b, h, "tx:{u}:none")
		incr2 = p.IncrBy(ctx, b, 41)
		return nil
	})
	if err != nil {
		t.Fatalf("TxPipelined: %v", err)
	}
	if len(cmds) != 9 {
		t.Fatalf("TxPipelined returned %d commands, want 9", len(cmds))
	}
	check := func(what string, got any, err error, want any) {
		t.Helper()
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s in the transaction = %v, %v; want %v", what, got, err, want)
		}
	}
	check("SET", set.Val(), set.Err(), "OK")
	check("INCR", incr.Val(), incr.Err(), 1)
	check("HSET", hset.Val(), hset.Err(), 2)
	check("RPUSH", rpush.Val(), rpush.Err(), 2)
	check("GET", get.Val(), get.Err(), "1")
	check("MSET", mset.Val(), mset.Err(), "OK")
	check("MGET", mget.Val(), mget.Err(), []any{"1", "1", nil, "two"})
	check("EXISTS", exist.Val(), exist.Err(), 3)
	check("INCRBY", incr2.Val(), incr2.Err(), 42)

	// Read back directly on the node holding all of them.
	n := tg.oneNode(t, a, b, h, l, m1, m2)
	if v, err := n.Get(ctx, a).Result(); err != nil || v != "1" {
		t.Errorf("node: GET %s = %q, %v", a, v, err)
	}
	if v, err := n.Get(ctx, b).Result(); err != nil || v != "42" {
		t.Errorf("node: GET %s = %q, %v", b, v, err)
	}
	if v, err := n.HGetAll(ctx, h).Result(); err != nil || len(v) != 2 || v["f"] != "v" || v["g"] != "w" {
		t.Errorf("node: HGETALL %s = %v, %v", h, v, err)
	}
	if v, err := n.LRange(ctx, l, 0, -1).Result(); err != nil || !slices.Equal(v, []string{"x", "y"}) {
		t.Errorf("node: LRANGE %s = %v, %v", l, v, err)
	}
	if v, err := n.MGet(ctx, m1, m2).Result(); err != nil || fmt.Sprint(v) != "[one two]" {
		t.Errorf("node: MGET %s %s = %v, %v", m1, m2, v, err)
	}
	// The client's connections stay in sync after the transaction.
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("tx:{u}:after:%d", i)
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET after the transaction: %v", err)
		}
		if v, err := c.Get(ctx, k).Result(); err != nil || v != k {
			t.Fatalf("GET after the transaction = %q, %v: connection out of sync", v, err)
		}
	}
}

// txWatchIncrConcurrent: the go-redis documentation's optimistic-locking
// increment (Watch + Get + TxPipelined Set, retried on TxFailedErr) run by 8
// goroutines × 50 increments of one key while another goroutine INCRs the
// same key 100 times: no increment is lost, and some transactions were
// retried (the conflicts were seen).
func txWatchIncrConcurrent(t *testing.T, tg txTarget) {
	ctx := ctxT(t)
	const (
		workers    = 8
		perWorker  = 50
		writes     = 100
		maxRetries = 2000
	)
	key := "tx:watch:counter"
	c := newClient(t, tg.addr)
	w := newClient(t, tg.addr)
	if err := c.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}

	var retries atomic.Int64
	var errs errList
	incr := func() error {
		txf := func(tx *redis.Tx) error {
			n, err := tx.Get(ctx, key).Int()
			if err != nil && err != redis.Nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, n+1, 0)
				return nil
			})
			return err
		}
		for i := 0; i < maxRetries; i++ {
			err := c.Watch(ctx, txf, key)
			if err == nil {
				return nil
			}
			if errors.Is(err, redis.TxFailedErr) {
				retries.Add(1)
				continue
			}
			return err
		}
		return fmt.Errorf("increment still conflicting after %d retries", maxRetries)
	}

	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			for i := 0; i < perWorker; i++ {
				if err := incr(); err != nil {
					errs.add("worker %d increment %d: %v", g, i, err)
					return
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		for i := 0; i < writes; i++ {
			if err := w.Incr(ctx, key).Err(); err != nil {
				errs.add("concurrent INCR %d: %v", i, err)
				return
			}
			time.Sleep(500 * time.Microsecond)
		}
	}()
	close(start)
	wg.Wait()
	errs.report(t)
	if t.Failed() {
		return
	}
	got, err := c.Get(ctx, key).Int()
	if err != nil {
		t.Fatal(err)
	}
	if want := workers*perWorker + writes; got != want {
		t.Errorf("%s = %d after %d×%d watched increments and %d INCRs, want %d (lost updates: WATCH did not protect the read-modify-write)",
			key, got, workers, perWorker, writes, want)
	}
	t.Logf("%d TxFailedErr retries", retries.Load())
	if retries.Load() == 0 {
		t.Errorf("no transaction failed with TxFailedErr despite %d concurrent writers: WATCH conflicts are never detected", workers+1)
	}
}

// txWatchConflictRaw: the WATCH conflict made deterministic with two raw
// connections: A WATCHes k, B writes k, A's EXEC is a nil array and k keeps
// B's value. EXEC unwatched: A's next transaction runs despite new writes.
func txWatchConflictRaw(t *testing.T, tg txTarget) {
	k := "tx:wc:k"
	a, b := dialRaw(t, tg.addr), dialRaw(t, tg.addr)
	wantReply(t, "A: SET k v0", a.do("SET", k, "v0"), "+OK")
	wantReply(t, "A: WATCH k", a.do("WATCH", k), "+OK")
	wantReply(t, "B: SET k x", b.do("SET", k, "x"), "+OK")
	wantReply(t, "A: MULTI", a.do("MULTI"), "+OK")
	wantReply(t, "A: SET k y (queued)", a.do("SET", k, "y"), "+QUEUED")
	wantReply(t, "A: EXEC after B wrote the watched key", a.do("EXEC"), "(nil array)")
	wantReply(t, "B: GET k", b.do("GET", k), `"x"`)
	wantReply(t, "A: GET k", a.do("GET", k), `"x"`)

	// WATCH without a conflicting write: EXEC runs.
	wantReply(t, "A: WATCH k again", a.do("WATCH", k), "+OK")
	wantReply(t, "A: MULTI", a.do("MULTI"), "+OK")
	wantReply(t, "A: SET k y", a.do("SET", k, "y"), "+QUEUED")
	wantReply(t, "A: GET k", a.do("GET", k), "+QUEUED")
	wantReply(t, "A: EXEC without conflict", a.do("EXEC"), `[+OK "y"]`)

	// EXEC cleared the watch: a later write by B does not fail A's next
	// transaction.
	wantReply(t, "B: SET k z", b.do("SET", k, "z"), "+OK")
	wantReply(t, "A: MULTI", a.do("MULTI"), "+OK")
	wantReply(t, "A: SET k w", a.do("SET", k, "w"), "+QUEUED")
	wantReply(t, "A: EXEC (no watch left)", a.do("EXEC"), "[+OK]")
	wantReply(t, "B: GET k", b.do("GET", k), `"w"`)

	// The write that breaks the watch may come from a pipeline on B too, and
	// the watch may cover a key that does not exist yet.
	nk := "tx:wc:new"
	wantReply(t, "A: WATCH missing key", a.do("WATCH", nk), "+OK")
	b.send(encode("SET", nk, "1") + encode("GET", nk))
	wantReply(t, "B: pipelined SET", b.read(), "+OK")
	wantReply(t, "B: pipelined GET", b.read(), `"1"`)
	a.send(encode("MULTI") + encode("INCR", nk) + encode("EXEC"))
	wantReply(t, "A: MULTI (pipelined)", a.read(), "+OK")
	wantReply(t, "A: INCR (pipelined)", a.read(), "+QUEUED")
	wantReply(t, "A: EXEC (pipelined) after the key was created", a.read(), "(nil array)")
	wantReply(t, "A: GET created key", a.do("GET", nk), `"1"`)
}

// txExecAbort: a command refused while queuing (wrong arity, unknown
// command) makes EXEC fail with EXECABORT: nothing of the transaction runs,
// and the connection leaves MULTI.
func txExecAbort(t *testing.T, tg txTarget) {
	for _, bad := range [][]string{{"SET", "tx:ea:{set}:onlykey"}, {"NOSUCHCOMMAND", "tx:ea:{nosuchcommand}:k"}} {
		t.Run(bad[0], func(t *testing.T) {
			// Every key of the transaction shares the {tag}: one node.
			k := "tx:ea:{" + strings.ToLower(bad[0]) + "}"

			c := dialRaw(t, tg.addr)
			wantReply(t, "MULTI", c.do("MULTI"), "+OK")
			wantReply(t, "SET before the bad command", c.do("SET", k+":1", "v"), "+QUEUED")
			wantErrPrefix(t, fmt.Sprintf("%v inside MULTI", bad), c.do(bad...), "ERR")
			wantReply(t, "SET after the bad command", c.do("SET", k+":2", "v"), "+QUEUED")
			wantErrPrefix(t, "EXEC", c.do("EXEC"), "EXECABORT")
			wantReply(t, "GET (first key, must not be set)", c.do("GET", k+":1"), "(nil)")
			wantReply(t, "GET (second key, must not be set)", c.do("GET", k+":2"), "(nil)")
			wantReply(t, "EXEC again (EXECABORT left MULTI)", c.do("EXEC"), "-ERR EXEC without MULTI")
		})
	}
}

// txErrorInsideExec: a command failing at run time (WRONGTYPE) is an error
// inside EXEC's array; the others run. Raw and through go-redis.
func txErrorInsideExec(t *testing.T, tg txTarget) {
	ctx := ctxT(t)
	k := "tx:rte:s"
	c := dialRaw(t, tg.addr)
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "SET", c.do("SET", k, "str"), "+QUEUED")
	wantReply(t, "LPUSH on the string (queued: fails only at run time)", c.do("LPUSH", k, "x"), "+QUEUED")
	wantReply(t, "GET", c.do("GET", k), "+QUEUED")
	r := c.do("EXEC")
	if r.kind != '*' || len(r.arr) != 3 {
		t.Fatalf("EXEC = %v, want an array of 3", r)
	}
	wantReply(t, "EXEC[0] (SET)", r.arr[0], "+OK")
	wantErrPrefix(t, "EXEC[1] (LPUSH on a string)", r.arr[1], "WRONGTYPE")
	wantReply(t, "EXEC[2] (GET)", r.arr[2], `"str"`)
	wantReply(t, "GET after EXEC", c.do("GET", k), `"str"`)

	// go-redis: TxPipelined returns the first command error; every command
	// has its own result.
	gr := newClient(t, tg.addr)
	gk := "tx:rte:gs"
	var set *redis.StatusCmd
	var lpush *redis.IntCmd
	var get *redis.StringCmd
	_, err := gr.TxPipelined(ctx, func(p redis.Pipeliner) error {
		set = p.Set(ctx, gk, "str", 0)
		lpush = p.LPush(ctx, gk, "x")
		get = p.Get(ctx, gk)
		return nil
	})
	if err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Errorf("TxPipelined err = %v, want the WRONGTYPE of the LPUSH", err)
	}
	if v, err := set.Result(); err != nil || v != "OK" {
		t.Errorf("SET in the transaction = %q, %v", v, err)
	}
	if err := lpush.Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Errorf("LPUSH in the transaction: err = %v, want WRONGTYPE", err)
	}
	if v, err := get.Result(); err != nil || v != "str" {
		t.Errorf("GET in the transaction = %q, %v", v, err)
	}
	if v, err := gr.Get(ctx, gk).Result(); err != nil || v != "str" {
		t.Errorf("GET after the transaction = %q, %v", v, err)
	}
}

// txDiscard: DISCARD drops the queued commands and leaves MULTI.
func txDiscard(t *testing.T, tg txTarget) {
	k := "tx:{discard}:k" // k and k+":n" share the {tag}: one node
	c := dialRaw(t, tg.addr)
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "SET", c.do("SET", k, "v"), "+QUEUED")
	wantReply(t, "INCR", c.do("INCR", k+":n"), "+QUEUED")
	wantReply(t, "DISCARD", c.do("DISCARD"), "+OK")
	wantReply(t, "GET after DISCARD (runs at once, key unset)", c.do("GET", k), "(nil)")
	wantReply(t, "EXISTS after DISCARD", c.do("EXISTS", k+":n"), ":0")
	wantReply(t, "EXEC after DISCARD", c.do("EXEC"), "-ERR EXEC without MULTI")
	// A new transaction on the same connection works.
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "SET", c.do("SET", k, "v2"), "+QUEUED")
	wantReply(t, "EXEC", c.do("EXEC"), "[+OK]")
	wantReply(t, "GET", c.do("GET", k), `"v2"`)
}

// txDiscardUnwatches: DISCARD also forgets the WATCHed keys (as EXEC does),
// so a write after it does not fail the next transaction.
func txDiscardUnwatches(t *testing.T, tg txTarget) {
	k := "tx:du:k"
	a, b := dialRaw(t, tg.addr), dialRaw(t, tg.addr)
	wantReply(t, "A: WATCH", a.do("WATCH", k), "+OK")
	wantReply(t, "A: MULTI", a.do("MULTI"), "+OK")
	wantReply(t, "A: DISCARD", a.do("DISCARD"), "+OK")
	wantReply(t, "B: SET k", b.do("SET", k, "b"), "+OK")
	wantReply(t, "A: MULTI", a.do("MULTI"), "+OK")
	wantReply(t, "A: SET k", a.do("SET", k, "a"), "+QUEUED")
	wantReply(t, "A: EXEC (DISCARD unwatched)", a.do("EXEC"), "[+OK]")
	wantReply(t, "B: GET k", b.do("GET", k), `"a"`)
}

// txStateErrors: EXEC/DISCARD without MULTI, nested MULTI and WATCH inside
// MULTI are errors with Redis's texts; the latter two leave the transaction
// open and do not abort it (Redis replies without flagging the MULTI).
func txStateErrors(t *testing.T, tg txTarget) {
	k := "tx:state:k"
	c := dialRaw(t, tg.addr)
	wantReply(t, "EXEC without MULTI", c.do("EXEC"), "-ERR EXEC without MULTI")
	wantReply(t, "DISCARD without MULTI", c.do("DISCARD"), "-ERR DISCARD without MULTI")
	wantReply(t, "UNWATCH without WATCH", c.do("UNWATCH"), "+OK")
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "nested MULTI", c.do("MULTI"), "-ERR MULTI calls can not be nested")
	wantReply(t, "WATCH inside MULTI", c.do("WATCH", k), "-ERR WATCH inside MULTI is not allowed")
	wantReply(t, "SET after the errors (still queuing)", c.do("SET", k, "v"), "+QUEUED")
	wantReply(t, "EXEC (the errors did not abort the transaction)", c.do("EXEC"), "[+OK]")
	wantReply(t, "GET", c.do("GET", k), `"v"`)
	// The same errors, then DISCARD.
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "nested MULTI", c.do("MULTI"), "-ERR MULTI calls can not be nested")
	wantReply(t, "DISCARD", c.do("DISCARD"), "+OK")
	wantReply(t, "DISCARD again", c.do("DISCARD"), "-ERR DISCARD without MULTI")
	// go-redis sees the same errors.
	ctx := ctxT(t)
	gr := newClient(t, tg.addr)
	if err := gr.Do(ctx, "EXEC").Err(); err == nil || err.Error() != "ERR EXEC without MULTI" {
		t.Errorf("go-redis EXEC without MULTI: err = %v", err)
	}
	if err := gr.Do(ctx, "DISCARD").Err(); err == nil || err.Error() != "ERR DISCARD without MULTI" {
		t.Errorf("go-redis DISCARD without MULTI: err = %v", err)
	}
}

// txKeylessInMulti: keyless commands queue and run with the transaction.
func txKeylessInMulti(t *testing.T, tg txTarget) {
	c := dialRaw(t, tg.addr)
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "PING", c.do("PING"), "+QUEUED")
	wantReply(t, "SET {t}a", c.do("SET", "tx:{t}a", "1"), "+QUEUED")
	wantReply(t, "TIME", c.do("TIME"), "+QUEUED")
	wantReply(t, "ECHO", c.do("ECHO", "hi"), "+QUEUED")
	wantReply(t, "GET {t}a", c.do("GET", "tx:{t}a"), "+QUEUED")
	r := c.do("EXEC")
	if r.kind != '*' || len(r.arr) != 5 {
		t.Fatalf("EXEC = %v, want an array of 5", r)
	}
	wantReply(t, "EXEC[0] (PING)", r.arr[0], "+PONG")
	wantReply(t, "EXEC[1] (SET)", r.arr[1], "+OK")
	tm := r.arr[2]
	if tm.kind != '*' || len(tm.arr) != 2 {
		t.Errorf("EXEC[2] (TIME) = %v, want a 2-element array", tm)
	} else {
		sec, err1 := strconv.ParseInt(tm.arr[0].str, 10, 64)
		usec, err2 := strconv.ParseInt(tm.arr[1].str, 10, 64)
		now := time.Now().Unix()
		if err1 != nil || err2 != nil || sec < now-300 || sec > now+300 || usec < 0 || usec >= 1e6 {
			t.Errorf("EXEC[2] (TIME) = %v, want [unix-seconds microseconds] near %d", tm, now)
		}
	}
	wantReply(t, "EXEC[3] (ECHO)", r.arr[3], `"hi"`)
	wantReply(t, "EXEC[4] (GET)", r.arr[4], `"1"`)
	// A transaction of keyless commands only.
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "PING", c.do("PING", "x"), "+QUEUED")
	wantReply(t, "ECHO", c.do("ECHO", "y"), "+QUEUED")
	wantReply(t, "EXEC", c.do("EXEC"), `["x" "y"]`)
	// An empty transaction.
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "EXEC of nothing", c.do("EXEC"), "[]")
}

// txUnwatch: UNWATCH forgets the watched keys, so a write by another client
// after the WATCH no longer fails EXEC.
func txUnwatch(t *testing.T, tg txTarget) {
	k := "tx:unwatch:k"
	a, b := dialRaw(t, tg.addr), dialRaw(t, tg.addr)
	wantReply(t, "A: WATCH", a.do("WATCH", k), "+OK")
	wantReply(t, "B: SET k 1", b.do("SET", k, "1"), "+OK")
	wantReply(t, "A: UNWATCH", a.do("UNWATCH"), "+OK")
	wantReply(t, "A: MULTI", a.do("MULTI"), "+OK")
	wantReply(t, "A: SET k 2", a.do("SET", k, "2"), "+QUEUED")
	wantReply(t, "A: EXEC after UNWATCH", a.do("EXEC"), "[+OK]")
	wantReply(t, "B: GET k", b.do("GET", k), `"2"`)
}

// txWatchDisconnectNoLeak: 200 clients WATCH a key (some also open a
// transaction) and disconnect without EXEC/UNWATCH. Afterwards the server
// serves: a write to the key does not fail fresh transactions (no watch
// survived on a shared connection), WATCH/MULTI/EXEC works, and the client
// connections (and jupiter's goroutines) go back to where they were.
func txWatchDisconnectNoLeak(t *testing.T, tg txTarget) {
	ctx := ctxT(t)
	// k and the keys of the fresh clients below share the {tag}: one node.
	k := "tx:{leak}:k"
	gr := newClient(t, tg.addr)
	if err := gr.Set(ctx, k, "0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	conns0, connsOK := tg.clientConns(t)
	gor0, gorOK := tg.goroutines(t, true)

	// 100 watchers open at the same time, then closed.
	var open []*rawConn
	for i := 0; i < 100; i++ {
		c := dialRaw(t, tg.addr)
		wantReply(t, fmt.Sprintf("watcher %d: WATCH", i), c.do("WATCH", k), "+OK")
		if i%3 == 0 {
			wantReply(t, fmt.Sprintf("watcher %d: MULTI", i), c.do("MULTI"), "+OK")
			wantReply(t, fmt.Sprintf("watcher %d: SET", i), c.do("SET", k, "never"), "+QUEUED")
		}
		open = append(open, c)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, c := range open {
		c.nc.Close()
	}
	// 100 more, each closed at once (half in the middle of a transaction).
	for i := 0; i < 100; i++ {
		c := dialRaw(t, tg.addr)
		c.send(encode("WATCH", k))
		if i%2 == 0 {
			c.send(encode("MULTI") + encode("SET", k, "never"))
		}
		if i%4 == 0 {
			wantReply(t, "WATCH", c.read(), "+OK")
		}
		c.nc.Close()
	}

	// The key changes: a WATCH (or MULTI) that outlived its client on a
	// reused server connection would now fail the transactions of whoever
	// inherits that connection.
	if err := gr.Set(ctx, k, "after", 0).Err(); err != nil {
		t.Fatalf("SET after the disconnects: %v", err)
	}
	if v, err := gr.Get(ctx, k).Result(); err != nil || v != "after" {
		t.Fatalf("GET %s = %q, %v: a disconnected client's queued SET ran?", k, v, err)
	}
	for i := 0; i < 20; i++ {
		c := dialRaw(t, tg.addr)
		wantReply(t, "fresh client: MULTI", c.do("MULTI"), "+OK")
		wantReply(t, "fresh client: SET", c.do("SET", k, "fresh"), "+QUEUED")
		wantReply(t, fmt.Sprintf("fresh client %d: EXEC (no stale watch)", i), c.do("EXEC"), "[+OK]")
		c.nc.Close()
	}
	for i := 0; i < 20; i++ {
		cmds, err := gr.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, k, i, 0)
			p.Get(ctx, k)
			return nil
		})
		if err != nil || len(cmds) != 2 || cmds[1].(*redis.StringCmd).Val() != strconv.Itoa(i) {
			t.Fatalf("go-redis TxPipelined %d after the disconnects: %v, %v", i, cmds, err)
		}
	}
	// 16 fresh watchers at once (so as many server connections as a proxy
	// may keep for reuse), each on its own key of k's node, then each runs
	// its transaction: none conflicts with another, so all must succeed.
	var fresh []*rawConn
	for i := 0; i < 16; i++ {
		c := dialRaw(t, tg.addr)
		wantReply(t, fmt.Sprintf("fresh watcher %d: WATCH", i), c.do("WATCH", fmt.Sprintf("tx:{leak}:w%d", i)), "+OK")
		fresh = append(fresh, c)
	}
	for i, c := range fresh {
		wk := fmt.Sprintf("tx:{leak}:w%d", i)
		wantReply(t, "fresh watcher: MULTI", c.do("MULTI"), "+OK")
		wantReply(t, "fresh watcher: SET", c.do("SET", wk, "v"), "+QUEUED")
		wantReply(t, "fresh watcher: INCR k", c.do("INCR", k), "+QUEUED")
		wantReply(t, fmt.Sprintf("fresh watcher %d: EXEC (no stale WATCH/MULTI on a reused connection)", i),
			c.do("EXEC"), fmt.Sprintf("[+OK :%d]", 20+i))
		c.nc.Close()
	}

	// Client connections (and jupiter's goroutines) come back down.
	deadline := time.Now().Add(15 * time.Second)
	for {
		conns, _ := tg.clientConns(t)
		gor, _ := tg.goroutines(t, false)
		connsDone := !connsOK || conns <= conns0+5
		gorDone := !gorOK || gor <= gor0+50
		if connsDone && gorDone {
			t.Logf("client connections %v -> %v, goroutines %d -> %d", conns0, conns, gor0, gor)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("15s after 200 watching clients disconnected: client connections %v (before %v), goroutines %d (before %d): leak",
				conns, conns0, gor, gor0)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// txRedigo: redigo's documented transaction idioms.
func txRedigo(t *testing.T, tg txTarget) {
	c := dialRedigo(t, tg.addr)
	k := "{r}n"
	if _, err := c.Do("DEL", k); err != nil {
		t.Fatal(err)
	}
	c.Send("MULTI")
	c.Send("INCR", k)
	c.Send("INCR", k)
	r, err := c.Do("EXEC")
	if err != nil || fmt.Sprintf("%#v", r) != fmt.Sprintf("%#v", []any{int64(1), int64(2)}) {
		t.Fatalf(`Send MULTI, INCR, INCR; Do("EXEC") = %#v, %v; want []interface{}{1, 2}`, r, err)
	}

	// WATCH / MULTI / EXEC with a conflicting write from another connection:
	// EXEC's reply is nil, which redigo.Values turns into ErrNil.
	other := dialRedigo(t, tg.addr)
	wk := "{r}w"
	if _, err := c.Do("SET", wk, "v0"); err != nil {
		t.Fatal(err)
	}
	if v, err := redigo.String(c.Do("WATCH", wk)); err != nil || v != "OK" {
		t.Fatalf("WATCH = %q, %v", v, err)
	}
	if _, err := other.Do("SET", wk, "x"); err != nil {
		t.Fatal(err)
	}
	c.Send("MULTI")
	c.Send("SET", wk, "y")
	vals, err := redigo.Values(c.Do("EXEC"))
	if err != redigo.ErrNil {
		t.Errorf("EXEC after a conflicting write: %v, %v; want redigo.ErrNil", vals, err)
	}
	if v, err := redigo.String(c.Do("GET", wk)); err != nil || v != "x" {
		t.Errorf("GET %s = %q, %v, want x (the transaction must not have run)", wk, v, err)
	}
	// Without a conflict the same sequence succeeds.
	if _, err := c.Do("WATCH", wk); err != nil {
		t.Fatal(err)
	}
	c.Send("MULTI")
	c.Send("SET", wk, "y")
	c.Send("GET", wk)
	vals, err = redigo.Values(c.Do("EXEC"))
	if err != nil || len(vals) != 2 || vals[0] != "OK" || string(vals[1].([]byte)) != "y" {
		t.Errorf("EXEC without conflict = %q, %v; want [OK y]", vals, err)
	}
	// An error queued in the pipeline: Do returns it, EXEC is EXECABORT.
	c.Send("MULTI")
	c.Send("SET", wk)
	c.Send("SET", wk, "z")
	_, err = c.Do("EXEC")
	if err == nil || !strings.HasPrefix(err.Error(), "ERR") {
		t.Errorf(`Do("EXEC") after a bad command: err = %v, want the command's ERR`, err)
	}
	if v, err := redigo.String(c.Do("GET", wk)); err != nil || v != "y" {
		t.Errorf("GET %s = %q, %v after the aborted transaction, want y", wk, v, err)
	}
	if c.Err() != nil {
		t.Errorf("redigo connection broken: %v", c.Err())
	}
}

// txPipelinedMix: go-redis TxPipelined of 100 commands from several
// goroutines, interleaved with plain 100-command pipelines from others, all
// on one client: every reply is the one of its command.
func txPipelinedMix(t *testing.T, tg txTarget) {
	ctx := ctxT(t)
	c := newClient(t, tg.addr)
	const (
		txG, plainG = 4, 4
		iters       = 15
		n           = 100
	)
	var errs errList
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < txG; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			for it := 0; it < iters; it++ {
				tag := fmt.Sprintf("tx:mix:{%d:%d}", g, it)
				val := func(j int) string { return fmt.Sprintf("v:%s:%d", tag, j) }
				cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
					for j := 0; j < n; j++ {
						switch j % 4 {
						case 0:
							p.Set(ctx, fmt.Sprintf("%s:s%d", tag, j), val(j), 0)
						case 1:
							p.IncrBy(ctx, tag+":n", int64(j))
						case 2:
							p.Get(ctx, fmt.Sprintf("%s:s%d", tag, j-2))
						case 3:
							p.RPush(ctx, tag+":l", j)
						}
					}
					return nil
				})
				if err != nil || len(cmds) != n {
					errs.add("tx goroutine %d iteration %d: %d replies, %v", g, it, len(cmds), err)
					return
				}
				var sum int64
				for j, cmd := range cmds {
					var got, want any
					switch j % 4 {
					case 0:
						got, want = cmd.(*redis.StatusCmd).Val(), "OK"
					case 1:
						sum += int64(j)
						got, want = cmd.(*redis.IntCmd).Val(), sum
					case 2:
						got, want = cmd.(*redis.StringCmd).Val(), val(j-2)
					case 3:
						got, want = cmd.(*redis.IntCmd).Val(), int64((j+1)/4)
					}
					if got != want || cmd.Err() != nil {
						errs.add("tx %s reply %d (%s) = %v, %v; want %v", tag, j, cmd.Name(), got, cmd.Err(), want)
					}
				}
			}
		}(g)
	}
	for g := 0; g < plainG; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			for it := 0; it < iters; it++ {
				key := func(j int) string { return fmt.Sprintf("tx:mix:plain:%d:%d:%d", g, it, j) }
				cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for j := 0; j < n; j++ {
						if j%2 == 0 {
							p.Set(ctx, key(j), key(j), 0)
						} else {
							p.Get(ctx, key(j-1))
						}
					}
					return nil
				})
				if err != nil || len(cmds) != n {
					errs.add("plain goroutine %d iteration %d: %d replies, %v", g, it, len(cmds), err)
					return
				}
				for j, cmd := range cmds {
					var got, want string
					if j%2 == 0 {
						got, want = cmd.(*redis.StatusCmd).Val(), "OK"
					} else {
						got, want = cmd.(*redis.StringCmd).Val(), key(j-1)
					}
					if got != want || cmd.Err() != nil {
						errs.add("plain pipeline %d/%d reply %d (%s) = %q, %v; want %q", g, it, j, cmd.Name(), got, cmd.Err(), want)
					}
				}
			}
		}(g)
	}
	close(start)
	wg.Wait()
	errs.report(t)
}

// ---- jupiter only --------------------------------------------------------

// txCrossSlot: a transaction or a WATCH whose keys are on different nodes is
// refused with CROSSSLOT, as Redis Cluster refuses keys of different slots;
// inside MULTI the refusal aborts the transaction (EXECABORT), nothing runs.
func txCrossSlot(t *testing.T, e *env) {
	ctx := ctxT(t)
	groups := e.keysPerNode(t, "tx:cs:", 1)
	k1, k2 := groups[0][0], groups[1][0]
	notSet := func(what string, keys ...string) {
		t.Helper()
		for n, nc := range e.nodes {
			if c, err := nc.Exists(ctx, keys...).Result(); err != nil || c != 0 {
				t.Errorf("%s: node %d holds %d of %v (%v): the refused transaction ran", what, n, c, keys, err)
			}
		}
	}

	c := dialRaw(t, e.c.Jupiter.Addr)
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "SET k1 (node 0)", c.do("SET", k1, "a"), "+QUEUED")
	wantErrPrefix(t, "SET k2 (node 1) in the same transaction", c.do("SET", k2, "b"), "CROSSSLOT")
	wantErrPrefix(t, "EXEC", c.do("EXEC"), "EXECABORT")
	notSet("after EXECABORT", k1, k2)
	wantReply(t, "EXEC again (EXECABORT left MULTI)", c.do("EXEC"), "-ERR EXEC without MULTI")

	// One multi-key command spanning nodes inside MULTI.
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantErrPrefix(t, "MSET k1 k2 inside MULTI", c.do("MSET", k1, "a", k2, "b"), "CROSSSLOT")
	wantErrPrefix(t, "EXEC", c.do("EXEC"), "EXECABORT")
	notSet("after EXECABORT of MSET", k1, k2)

	// A keyless command first, then keys on two nodes.
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "PING", c.do("PING"), "+QUEUED")
	wantReply(t, "GET k2", c.do("GET", k2), "+QUEUED")
	wantErrPrefix(t, "SET k1 after GET k2", c.do("SET", k1, "a"), "CROSSSLOT")
	wantErrPrefix(t, "EXEC", c.do("EXEC"), "EXECABORT")
	notSet("after EXECABORT of GET/SET", k1, k2)

	// WATCH of keys on two nodes.
	wantErrPrefix(t, "WATCH k1 k2", c.do("WATCH", k1, k2), "CROSSSLOT")
	// The connection is usable and a one-node transaction runs.
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "SET k1", c.do("SET", k1, "a"), "+QUEUED")
	wantReply(t, "EXEC", c.do("EXEC"), "[+OK]")
	if o := e.owner(t, k1); o != 0 {
		t.Errorf("%s written on node %d, want node 0", k1, o)
	}
	notSet("k2 after the one-node transaction", k2)

	// go-redis: TxPipelined over two nodes fails as a whole, nothing runs.
	k4 := groups[2][0]
	_, err := e.j.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, k2, "b", 0)
		p.Set(ctx, k4, "d", 0)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") && !strings.Contains(err.Error(), "EXECABORT") {
		t.Errorf("TxPipelined over two nodes: err = %v, want CROSSSLOT/EXECABORT", err)
	}
	notSet("after the refused TxPipelined", k2, k4)
	// The pooled connection is in sync afterwards.
	for i := 0; i < 10; i++ {
		kk := fmt.Sprintf("tx:cs:after:%d", i)
		if err := e.j.Set(ctx, kk, kk, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := e.j.Get(ctx, kk).Result(); err != nil || v != kk {
			t.Fatalf("GET after the refused transaction = %q, %v: connection out of sync", v, err)
		}
	}
}

// txWatchDisconnectBackend: 200 clients WATCH a key and disconnect; the
// connections jupiter holds to the node owning the key come back to about
// where they were (a connection pinned for a watching client is released).
func txWatchDisconnectBackend(t *testing.T, e *env) {
	ctx := ctxT(t)
	k := "tx:leakb:k"
	if err := e.j.Set(ctx, k, "0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	node := e.nodes[e.owner(t, k)]
	base := connectedClients(t, node)
	var open []*rawConn
	for i := 0; i < 200; i++ {
		c := dialRaw(t, e.c.Jupiter.Addr)
		wantReply(t, fmt.Sprintf("client %d: WATCH", i), c.do("WATCH", k), "+OK")
		open = append(open, c)
		if i%2 == 1 { // half close at once, half all together below
			c.nc.Close()
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	peak := connectedClients(t, node)
	for _, c := range open {
		c.nc.Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := connectedClients(t, node)
		if n <= base+50 {
			t.Logf("connections on the node owning %s: %d before, %d with the watchers, %d after", k, base, peak, n)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("connections on the node owning %s: %d before, %d with 200 watchers, still %d 15s after they disconnected",
				k, base, peak, n)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And the key is still transactable.
	c := dialRaw(t, e.c.Jupiter.Addr)
	wantReply(t, "WATCH", c.do("WATCH", k), "+OK")
	wantReply(t, "MULTI", c.do("MULTI"), "+OK")
	wantReply(t, "SET", c.do("SET", k, "done"), "+QUEUED")
	wantReply(t, "EXEC", c.do("EXEC"), "[+OK]")
	if v, err := node.Get(ctx, k).Result(); err != nil || v != "done" {
		t.Errorf("node: GET %s = %q, %v", k, v, err)
	}
}
