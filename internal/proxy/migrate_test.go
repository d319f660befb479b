package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// TestMovingTable: the per-slot table of a migration view says, for every
// slot, whether the address owning it differs between R and R' and which
// node owns it under R'; nodes losing slots come first in the fan order.
func TestMovingTable(t *testing.T) {
	pool := backend.NewPool(backend.Options{})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pool.Close(ctx)
	}()
	a, b, c := "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
	R, T := ringOf(t, 4, a, b), ringOf(t, 4, a, b, c)
	rt := NewRouter(pool, R)
	first := rt.load()
	if first.mig != nil || len(first.fan) != 2 {
		t.Fatalf("stable view: mig %v fan %v", first.mig, first.fan)
	}
	if !rt.ApplyStage(R, &Migration{Stage: StagePrepare, Target: T, Epoch: 9}) {
		t.Fatal("ApplyStage(prepare) refused")
	}
	select {
	case <-first.changed:
	default:
		t.Fatal("the replaced view's change channel is still open")
	}
	check := func(from, to *ring.Ring, wantSources []string) {
		t.Helper()
		v := rt.load()
		if v.mig == nil || v.mig.epoch != 9 || v.mig.target != to || v.ring != from {
			t.Fatalf("view: %+v", v)
		}
		moving := 0
		for s := range ring.Slots {
			oa, na := from.Node(from.SlotOwner(uint16(s))).Addr, to.Node(to.SlotOwner(uint16(s))).Addr
			if got := v.mig.moves(uint16(s)); got != (oa != na) {
				t.Fatalf("slot %d: moves=%v, owners %s -> %s", s, got, oa, na)
			}
			if v.addrs[v.mig.dest[s]] != na {
				t.Fatalf("slot %d: dest %s, want %s", s, v.addrs[v.mig.dest[s]], na)
			}
			if oa != na {
				moving++
			}
		}
		if moving < ring.Slots/5 || moving > ring.Slots/2 {
			t.Errorf("%d of %d slots move", moving, ring.Slots)
		}
		if len(v.addrs) != 3 || len(v.nodes) != 3 || len(v.fan) != 3 {
			t.Fatalf("nodes %v fan %v", v.addrs, v.fan)
		}
		for i, want := range wantSources {
			if got := v.addrs[v.fan[i]]; got != want || !v.mig.source[v.fan[i]] {
				t.Errorf("fan[%d] = %s (source %v), want source %s", i, got, v.mig.source[v.fan[i]], want)
			}
		}
		for _, i := range v.fan[len(wantSources):] {
			if v.mig.source[i] {
				t.Errorf("%s loses slots but is not first in the fan", v.addrs[i])
			}
		}
	}
	// Adding c: a and b lose slots to c, which R lacks (appended).
	check(R, T, []string{a, b})
	if v := rt.load(); v.addrs[2] != c || v.slowSlot(0) || v.slowSlot(1) {
		t.Errorf("prepare: addrs %v; no slot may take the rebalance path yet", v.addrs)
	}
	rt.ApplyStage(R, &Migration{Stage: StageFreeze, Target: T, Epoch: 9})
	v := rt.load()
	for s := range ring.Slots {
		if v.slowSlot(uint16(s)) != v.mig.moves(uint16(s)) {
			t.Fatalf("freeze: slot %d slow=%v moves=%v", s, v.slowSlot(uint16(s)), v.mig.moves(uint16(s)))
		}
	}
	if r, m := rt.Stage(); r != R || m == nil || m.Stage != StageFreeze || m.Target != T || m.Epoch != 9 {
		t.Errorf("Stage() = %v, %+v", r, m)
	}
	// Removing c: c is the only source and comes first.
	rt.ApplyStage(T, &Migration{Stage: StageMigrating, Target: R, Epoch: 9})
	check(T, R, []string{c})

	for _, m := range []*Migration{{Stage: "commit", Target: T}, {Stage: StageFreeze}} {
		if rt.ApplyStage(R, m) {
			t.Errorf("ApplyStage accepted %+v", m)
		}
	}
	if rt.ApplyStage(ringOf(t, 3, a), nil) {
		t.Error("an older ring was applied")
	}
	if !rt.ApplyStage(T, nil) {
		t.Fatal("commit refused")
	}
	if v := rt.load(); v.mig != nil || len(v.fan) != 3 || len(v.nodes) != 3 {
		t.Fatalf("after commit: %+v", v)
	}
	if _, m := rt.Stage(); m != nil {
		t.Errorf("Stage() after commit: %+v", m)
	}
	if up := rt.NodeUp(); len(up) != 3 {
		t.Errorf("NodeUp = %v", up)
	}
}

// TestMarkerKeys: clients can neither name marker keys nor see them in
// SCAN, KEYS or RANDOMKEY.
func TestMarkerKeys(t *testing.T) {
	c := startCluster(t, backend.Options{})
	p := dial(t, c.proxy.addr)
	mk := string(rebalance.MarkerKey(3, []byte("k")))
	refused := "-" + errMarkerKey + "\r\n"
	for _, args := range [][]string{
		{"GET", mk}, {"SET", mk, "1"}, {"DEL", "a", mk}, {"MGET", mk, "b"}, {"MSET", "a", "1", mk, "1"},
		{"RENAME", "{x}a", mk}, {"GET", mk, "hash=x"}, {"EXISTS", mk}, {"EVAL", "return 1", "1", mk},
	} {
		if r := p.do(args...); r != refused {
			t.Errorf("%q = %q, want the marker refusal", args, r)
		}
	}
	// Keys merely starting with 0xff are ordinary keys.
	if r := p.do("SET", "\xff__jrbx", "v"); r != "+OK\r\n" {
		t.Fatalf("SET 0xff key: %q", r)
	}
	if r := p.do("GET", "\xff__jrbx"); r != "$1\r\nv\r\n" {
		t.Fatalf("GET 0xff key: %q", r)
	}
	// Only markers in the nodes: RANDOMKEY finds nothing.
	p.do("FLUSHALL")
	for i, n := range c.nodes {
		testenv.Cli(t, n.Addr, "SET", string(rebalance.MarkerKey(3, []byte("m"+strconv.Itoa(i)))), "1")
	}
	for range 20 {
		if r := p.do("RANDOMKEY"); r != "$-1\r\n" {
			t.Fatalf("RANDOMKEY with only markers = %q", r)
		}
	}
	want := map[string]bool{}
	for i := range 50 {
		k := "key:" + strconv.Itoa(i)
		want[k] = true
		p.do("SET", k, "v")
	}
	if got := scanAll(t, p, "100"); !equalSets(got, want) {
		t.Errorf("SCAN = %v, want %v", got, want)
	}
	if got := scanAll(t, p, "7"); !equalSets(got, want) {
		t.Errorf("SCAN COUNT 7 = %v, want %v", got, want)
	}
	if got := keysOf(t, p.do("KEYS", "*")); !equalSets(got, want) {
		t.Errorf("KEYS = %v, want %v", got, want)
	}
	// A node may still hand out a marker: the proxy answers nil then.
	found := 0
	for range 30 {
		r := p.do("RANDOMKEY")
		if strings.Contains(r, rebalance.MarkerPrefix) || r != "$-1\r\n" && !strings.Contains(r, "key:") {
			t.Fatalf("RANDOMKEY = %q", r)
		}
		if r != "$-1\r\n" {
			found++
		}
	}
	if found < 10 {
		t.Errorf("RANDOMKEY found a key %d times of 30", found)
	}
}

// scanAll iterates SCAN through p to its end and returns the keys seen.
func scanAll(t *testing.T, p *client, count string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	cur := "0"
	for calls := 0; ; calls++ {
		if calls > 10000 {
			t.Fatal("SCAN does not terminate")
		}
		r := p.do("SCAN", cur, "COUNT", count)
		elems, _, ok := resp2Elements(r)
		if !ok || len(elems) != 2 {
			t.Fatalf("SCAN reply %q", r)
		}
		for k := range keysOf(t, elems[1]) {
			seen[k] = true
		}
		cur = bulkOf(elems[0])
		if cur == "0" {
			return seen
		}
	}
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// migEnv is three redis-servers, a proxy routing by R (the first two) and
// R' (all three), and direct clients to each node.
type migEnv struct {
	nodes []*testenv.Redis
	R, T  *ring.Ring
	px    *testProxy
	rt    *Router
	ctl   map[string]*redis.Client
}

func newMigEnv(t *testing.T, opts Options) *migEnv {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	e := &migEnv{ctl: map[string]*redis.Client{}}
	var addrs []string
	for range 3 {
		n := testenv.StartRedis(t)
		e.nodes = append(e.nodes, n)
		addrs = append(addrs, n.Addr)
		c, err := rebalance.NewClient(n.Addr, backend.Security{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		e.ctl[n.Addr] = c
	}
	e.R, e.T = ringOf(t, 1, addrs[:2]...), ringOf(t, 1, addrs...)
	if opts.HashPrefix == "" {
		opts.HashPrefix = "hash="
	}
	e.px = startProxyRing(t, e.R, backend.Options{}, opts)
	e.rt = e.px.srv.Router()
	return e
}

func (e *migEnv) owner(r *ring.Ring, key string) *redis.Client {
	return e.ctl[r.Node(r.Owner([]byte(key))).Addr]
}

func (e *migEnv) moving(key string) bool {
	return e.R.Node(e.R.Owner([]byte(key))).Addr != e.T.Node(e.T.Owner([]byte(key))).Addr
}

// key returns the first prefix:i that moves (or stays).
func (e *migEnv) key(prefix string, moves bool) string {
	for i := 0; ; i++ {
		if k := prefix + ":" + strconv.Itoa(i); e.moving(k) == moves {
			return k
		}
	}
}

func (e *migEnv) stage(t *testing.T, st string, epoch uint64) {
	t.Helper()
	if !e.rt.ApplyStage(e.R, &Migration{Stage: st, Target: e.T, Epoch: epoch}) {
		t.Fatalf("ApplyStage(%s) refused", st)
	}
}

func get(t *testing.T, c *redis.Client, k string) string {
	t.Helper()
	v, err := c.Get(context.Background(), k).Result()
	if err == redis.Nil {
		return "<nil>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func has(t *testing.T, c *redis.Client, k string) bool {
	t.Helper()
	n, err := c.Exists(context.Background(), k).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestFreezeHold: during FREEZE a read of a moving key is served at once
// (read rule), a write to it is held until MIGRATING and then runs there
// (on the new owner, with a marker), and the commands pipelined after it
// wait for it, so replies keep their order.
func TestFreezeHold(t *testing.T) {
	e := newMigEnv(t, Options{HoldMax: 3 * time.Second})
	k, s := e.key("hold", true), e.key("stay", false)
	p := dial(t, e.px.addr)
	if r := p.do("SET", k, "v0"); r != "+OK\r\n" {
		t.Fatal(r)
	}
	e.stage(t, StagePrepare, 7)
	e.stage(t, StageFreeze, 7)
	start := time.Now()
	if r := p.do("GET", k); r != "$2\r\nv0\r\n" {
		t.Fatalf("GET in freeze = %q", r)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("a read in freeze took %v: reads are never held", d)
	}
	p.send(cmd("GET", s) + cmd("SET", k, "v1") + cmd("GET", k) + cmd("SET", s, "x") + cmd("GET", s))
	if r := p.reply(); r != "$-1\r\n" { // the command before the held one is answered at once
		t.Fatalf("GET before the held write = %q", r)
	}
	const wait = 300 * time.Millisecond
	start = time.Now()
	go func() {
		time.Sleep(wait)
		e.rt.ApplyStage(e.R, &Migration{Stage: StageMigrating, Target: e.T, Epoch: 7})
	}()
	got := strings.Join(p.replies(4), "")
	if want := "+OK\r\n$2\r\nv1\r\n+OK\r\n$1\r\nx\r\n"; got != want {
		t.Fatalf("replies %q, want %q", got, want)
	}
	if d := time.Since(start); d < wait-20*time.Millisecond {
		t.Errorf("the write was answered after %v, before MIGRATING", d)
	}
	// The write is on the new owner with a marker; the old owner's copy is
	// stale and left to the migrator (rebalance.Mover.LeaveOld).
	nw := e.owner(e.T, k)
	if get(t, nw, k) != "v1" || !has(t, nw, string(rebalance.MarkerKey(7, []byte(k)))) {
		t.Error("the held write did not land on the new owner, with a marker")
	}
	if n := e.px.srv.Stats.Held.Load(); n != 1 {
		t.Errorf("Stats.Held = %d, want 1", n)
	}
}

// TestFreezeHoldTimeout: a write held longer than HoldMax is refused with
// TRYAGAIN and has run nowhere; a write held when the rebalance is aborted
// runs on the old owner.
func TestFreezeHoldTimeout(t *testing.T) {
	const holdMax = 150 * time.Millisecond
	e := newMigEnv(t, Options{HoldMax: holdMax})
	k := e.key("hold", true)
	p := dial(t, e.px.addr)
	p.do("SET", k, "v0")
	old, nw := e.owner(e.R, k), e.owner(e.T, k)
	e.stage(t, StagePrepare, 7)
	e.stage(t, StageFreeze, 7)
	for _, args := range [][]string{{"SET", k, "v1"}, {"INCR", k}, {"DEL", k}, {"MSET", k, "v1", "other", "x"}, {"EXPIRE", k, "1"}} {
		start := time.Now()
		if r := p.do(args...); r != "-"+errHold+"\r\n" {
			t.Errorf("%q held past HoldMax = %q", args, r)
		}
		if d := time.Since(start); d < holdMax || d > holdMax+time.Second {
			t.Errorf("%q refused after %v, HoldMax is %v", args, d, holdMax)
		}
	}
	if get(t, old, k) != "v0" || has(t, nw, k) || has(t, nw, string(rebalance.MarkerKey(7, []byte(k)))) {
		t.Error("a refused write ran somewhere")
	}
	if pttl, _ := old.PTTL(context.Background(), k).Result(); pttl != -1 {
		t.Errorf("a refused EXPIRE ran: PTTL %v", pttl)
	}
	// Abort while held: the write runs by the (old) ring.
	p.send(cmd("SET", k, "v2"))
	time.Sleep(30 * time.Millisecond)
	e.rt.ApplyStage(e.R, nil)
	if r := p.reply(); r != "+OK\r\n" {
		t.Fatalf("held write after abort = %q", r)
	}
	if get(t, old, k) != "v2" || has(t, nw, k) {
		t.Error("after an abort the held write must go to the old owner")
	}
}

// TestFreezeWaitsForInflightWrites: ApplyStage(FREEZE) returns only after
// a write routed by the previous view has completed on the old owner, so
// the stage's acknowledgement means no such write is still on its way.
func TestFreezeWaitsForInflightWrites(t *testing.T) {
	e := newMigEnv(t, Options{})
	k := e.key("w", true)
	var oldNode *testenv.Redis
	for _, n := range e.nodes {
		if n.Addr == e.R.Node(e.R.Owner([]byte(k))).Addr {
			oldNode = n
		}
	}
	p := dial(t, e.px.addr)
	p.do("PING")
	e.stage(t, StagePrepare, 3)
	oldNode.Pause()
	p.send(cmd("SET", k, "v"))
	time.Sleep(50 * time.Millisecond) // the write is now waiting on the paused old owner
	const paused = 400 * time.Millisecond
	go func() {
		time.Sleep(paused)
		oldNode.Resume()
	}()
	start := time.Now()
	e.stage(t, StageFreeze, 3)
	if d := time.Since(start); d < paused-100*time.Millisecond {
		t.Errorf("ApplyStage(freeze) returned after %v, while a write to the old owner was in flight", d)
	}
	if r := p.reply(); r != "+OK\r\n" {
		t.Fatalf("SET = %q", r)
	}
	if get(t, e.owner(e.R, k), k) != "v" {
		t.Error("the in-flight write did not land on the old owner")
	}
}

// TestMigratingCommands: multi-key, split, hash= and keyless commands on
// moving keys during MIGRATING, checked against the nodes.
func TestMigratingCommands(t *testing.T) {
	e := newMigEnv(t, Options{})
	p := dial(t, e.px.addr)
	// A hash tag whose slot moves, and two keys one R node holds whose
	// slots go to different nodes under R'.
	tag := e.key("t", true)
	ta, tb, td, te := "{"+tag+"}a", "{"+tag+"}b", "{"+tag+"}d", "{"+tag+"}e"
	var x, y string
	for i := 0; x == ""; i++ {
		k := "x:" + strconv.Itoa(i)
		if e.moving(k) {
			for j := 0; ; j++ {
				l := "y:" + strconv.Itoa(j)
				if !e.moving(l) && e.R.Owner([]byte(l)) == e.R.Owner([]byte(k)) {
					x, y = k, l
					break
				}
			}
		}
	}
	h := e.key("h", true)
	m1, m2, s1 := e.key("m", true), e.key("n", true), e.key("s", false)
	for _, c := range [][]string{
		{"SADD", ta, "1", "2"}, {"SADD", tb, "2", "3"}, {"SADD", x, "1"}, {"SADD", y, "2"},
		{"SET", m1, "a"}, {"SET", m2, "b"}, {"SET", s1, "c"}, {"SET", "gone", "g"},
	} {
		if r := p.do(c...); strings.HasPrefix(r, "-") {
			t.Fatalf("%q: %q", c, r)
		}
	}
	if r := p.do("SUNION", x, y); !strings.HasPrefix(r, "*2\r\n") {
		t.Fatalf("SUNION before the rebalance = %q", r)
	}
	e.stage(t, StagePrepare, 5)
	e.stage(t, StageFreeze, 5)
	e.stage(t, StageMigrating, 5)
	want := []struct {
		cmd  []string
		want string
	}{
		{[]string{"SUNIONSTORE", td, ta, tb}, ":3\r\n"},
		{[]string{"RENAME", ta, te}, "+OK\r\n"},
		{[]string{"SCARD", te}, ":2\r\n"},
		{[]string{"EXISTS", ta}, ":0\r\n"},
		{[]string{"SUNION", x, y}, "-" + errMultiMoving + "\r\n"},
		{[]string{"MGET", m1, s1, "nosuch", m2}, "*4\r\n$1\r\na\r\n$1\r\nc\r\n$-1\r\n$1\r\nb\r\n"},
		{[]string{"EXISTS", m1, s1, m1, "nosuch"}, ":3\r\n"},
		{[]string{"MSET", m1, "A", s1, "C"}, "+OK\r\n"},
		{[]string{"DEL", m2, s1, "nosuch", m2}, ":2\r\n"},
		{[]string{"MGET", m1, m2, s1}, "*3\r\n$1\r\nA\r\n$-1\r\n$-1\r\n"},
		{[]string{"SET", "k", "v", "hash=" + h}, "+OK\r\n"},
		{[]string{"GET", "k", "hash=" + h}, "$1\r\nv\r\n"},
		{[]string{"GETDEL", m1}, "$1\r\nA\r\n"},
		{[]string{"GET", m1}, "$-1\r\n"},
		{[]string{"INCR", m1}, ":1\r\n"},
		{[]string{"HSET", m1, "f", "v"}, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{[]string{"GET", m1, "extra"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{[]string{"SET", m1}, "-ERR wrong number of arguments for 'set' command\r\n"},
	}
	for _, tc := range want {
		if r := p.do(tc.cmd...); r != tc.want {
			t.Errorf("%q = %q, want %q", tc.cmd, r, tc.want)
		}
	}
	// The destination is authoritative for every key touched, with markers
	// (old owners' stale copies are left to the migrator).
	for _, k := range []string{td, ta, te, m1, m2} {
		nw := e.owner(e.T, k)
		if !has(t, nw, string(rebalance.MarkerKey(5, []byte(k)))) {
			t.Errorf("%s: no marker on the new owner", k)
		}
	}
	// KEYS, SCAN and RANDOMKEY see each live key once and no marker, even
	// with a stale copy of a deleted key left on its old owner.
	e.owner(e.R, m2).Set(context.Background(), m2, "stale", 0)
	want2 := map[string]bool{td: true, te: true, tb: true, x: true, y: true, m1: true, "gone": true, "k": true}
	if got := keysOf(t, p.do("KEYS", "*")); !equalSets(got, want2) {
		t.Errorf("KEYS = %v, want %v", got, want2)
	}
	for _, count := range []string{"1", "3", "1000"} {
		if got := scanAll(t, p, count); !equalSets(got, want2) {
			t.Errorf("SCAN COUNT %s = %v, want %v", count, got, want2)
		}
	}
	for range 30 {
		r := p.do("RANDOMKEY")
		if strings.Contains(r, rebalance.MarkerPrefix) || r == "$-1\r\n" {
			t.Fatalf("RANDOMKEY = %q", r)
		}
	}
	if r := p.do("DBSIZE"); !strings.HasPrefix(r, ":") {
		t.Errorf("DBSIZE = %q", r)
	}
	if n := e.px.srv.Stats.Rebalance.Load(); n < int64(len(want)) {
		t.Errorf("Stats.Rebalance = %d", n)
	}
}

// TestRebalanceOracle moves 3000 keys from two nodes to three while eight
// go-redis clients (default options) read and write them through the
// proxy: PREPARE, FREEZE, MIGRATING with the migrators running, COMMIT,
// CLEANUP. Each client is the only writer of its keys, so every reply is
// checked against its own model: no lost or stale value, no resurrected
// delete, counters equal to the acknowledged INCRs, TTLs kept; at the end
// every key is exactly on its owner under R', with no marker left.
func TestRebalanceOracle(t *testing.T) { rebalanceOracle(t, false) }

// TestRebalanceOracleHashed is the oracle with every key written and read
// only through hash=<family key> (keys of one family share a node; their
// own slots are elsewhere): they must move with their family's slot, with
// their TTLs and placement records.
func TestRebalanceOracleHashed(t *testing.T) { rebalanceOracle(t, true) }

func rebalanceOracle(t *testing.T, hashed bool) {
	e := newMigEnv(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n, workers, epoch = 3000, 8, 2
	const ttl = time.Hour
	keys := make([]*okey, n)
	preload := redis.NewClient(&redis.Options{Addr: e.px.addr})
	defer preload.Close()
	pipe := preload.Pipeline()
	for i := range keys {
		k := &okey{kind: i % 4}
		if hashed { // 5 families per worker (i%workers is the worker)
			k.place = "fam:" + strconv.Itoa(i%(workers*5))
		}
		switch k.kind {
		case kStr:
			k.name, k.val, k.ttl = "s:"+strconv.Itoa(i), "v0", true
			pipe.Do(ctx, k.a("SET", k.name, k.val, "PX", ttl.Milliseconds())...)
		case kHash:
			k.name, k.val = "h:"+strconv.Itoa(i), "f0"
			pipe.Do(ctx, k.a("HSET", k.name, "f", k.val, "n", 0)...)
		case kCounter:
			k.name, k.count = "c:"+strconv.Itoa(i), int64(i%7)
			pipe.Do(ctx, k.a("INCRBY", k.name, k.count)...)
		case kPlain:
			k.name, k.val = "p:"+strconv.Itoa(i), "p0"
			pipe.Do(ctx, k.a("SET", k.name, k.val)...)
		}
		k.moving = e.moving(k.home())
		keys[i] = k
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	var stage atomic.Int32 // 0 stable, 1 prepare, 2 freeze, 3 migrating, 4 committed
	var movingOps [5]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: e.px.addr})
			defer c.Close()
			var mine []*okey
			for i := w; i < n; i += workers {
				mine = append(mine, keys[i])
			}
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := mine[rng.IntN(len(mine))]
				st := stage.Load()
				if err := k.op(ctx, c, rng, mine); err != nil {
					t.Errorf("worker %d, stage %d: %v", w, st, err)
					return
				}
				if k.moving {
					movingOps[st].Add(1)
				}
			}
		})
	}
	pause := func() { time.Sleep(200 * time.Millisecond) }
	pause()
	stage.Store(1)
	e.stage(t, StagePrepare, epoch)
	pause()
	stage.Store(2)
	e.stage(t, StageFreeze, epoch)
	time.Sleep(100 * time.Millisecond) // writes to moving keys are held meanwhile
	stage.Store(3)
	e.stage(t, StageMigrating, epoch)
	cfgs, err := rebalance.Plan(e.R, e.T, func(name string) rebalance.Node { return e.ctl[name] },
		rebalance.Config{Epoch: epoch, BatchKeys: 20, KeysPerSec: 300})
	if err != nil {
		t.Fatal(err)
	}
	var mwg sync.WaitGroup
	for _, cfg := range cfgs {
		m, err := rebalance.NewMigrator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		mwg.Go(func() {
			p, err := m.Run(ctx)
			if err != nil || p.Phase != rebalance.PhaseDone {
				t.Errorf("migrator %s: %v, %+v", cfg.SourceName, err, p)
			}
			t.Logf("migrator %s: moved %d, already on new %d, missing %d, %d passes", p.Source, p.KeysMoved, p.AlreadyOnNew, p.Missing, p.Passes)
		})
	}
	mwg.Wait()
	stage.Store(4)
	if !e.rt.ApplyStage(e.T, nil) {
		t.Fatal("commit refused")
	}
	pause()
	close(stop)
	wg.Wait()
	for _, c := range e.ctl {
		if _, err := rebalance.Cleanup(ctx, c, epoch); err != nil {
			t.Fatal(err)
		}
	}
	st := &e.px.srv.Stats
	t.Logf("ops on moving keys per stage (stable, prepare, freeze, migrating, committed): %d %d %d %d %d; rebalance path %d, held %d, TRYAGAIN %d",
		movingOps[0].Load(), movingOps[1].Load(), movingOps[2].Load(), movingOps[3].Load(), movingOps[4].Load(),
		st.Rebalance.Load(), st.Held.Load(), st.TryAgain.Load())
	if movingOps[3].Load() < 200 {
		t.Errorf("only %d operations on moving keys during MIGRATING", movingOps[3].Load())
	}
	if t.Failed() {
		return
	}

	// Final state, through the proxy (R' only now) and on the nodes.
	c := preload
	live := 0
	for _, k := range keys {
		if err := k.check(ctx, c); err != nil {
			t.Error(err)
			continue
		}
		if !k.deleted {
			live++
		}
		d, err := k.pttl(ctx, c)
		switch {
		case err != nil:
			t.Errorf("PTTL %s: %v", k.name, err)
		case k.deleted:
		case k.ttl && (d <= ttl-time.Since(start)-time.Minute || d > ttl):
			t.Errorf("%s: TTL %v, want about %v", k.name, d, ttl-time.Since(start))
		case !k.ttl && d != -1:
			t.Errorf("%s: TTL %v, want none", k.name, d)
		}
	}
	byName := map[string]*okey{}
	for _, k := range keys {
		byName[k.name] = k
	}
	total, records := 0, 0
	for addr, nc := range e.ctl {
		var cursor uint64
		for {
			ks, next, err := nc.Scan(ctx, cursor, "", 1000).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range ks {
				if pk, ok := rebalance.PlacedKey([]byte(k)); ok {
					records++
					ok := byName[string(pk)]
					if ok == nil || ok.deleted || e.T.Node(e.T.Owner([]byte(ok.home()))).Addr != addr {
						t.Errorf("%s: placement record %q of a deleted key or one living elsewhere", addr, k)
					}
					continue
				}
				total++
				home := k
				if ok := byName[k]; ok != nil {
					home = ok.home()
				}
				if rebalance.IsMarker([]byte(k)) {
					t.Errorf("%s: marker %q left after CLEANUP", addr, k)
				} else if o := e.T.Node(e.T.Owner([]byte(home))).Addr; o != addr {
					t.Errorf("%s holds %q, owned by %s under R'", addr, k, o)
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	if total != live {
		t.Errorf("the nodes hold %d keys, want the %d live ones", total, live)
	}
	if hashed && records != live {
		t.Errorf("the nodes hold %d placement records, want one per live key (%d)", records, live)
	}
	if !hashed && records != 0 {
		t.Errorf("%d placement records for keys written without hash=", records)
	}
}

// Kinds of keys in TestRebalanceOracle.
const (
	kStr     = iota // string with a TTL: GET, SET … KEEPTTL, DEL, SET … EX
	kHash           // hash: HGET, HSET, HINCRBY
	kCounter        // INCR, GET, DEL
	kPlain          // string without TTL: MGET, MSET, multi-key DEL with another plain key
)

// okey is one key and what its only writer knows of it.
type okey struct {
	name    string
	place   string // the hash= key every command on it carries; "" for none
	kind    int
	moving  bool
	val     string
	count   int64
	ttl     bool
	deleted bool
	seq     int
}

// op runs one random operation on k (and for kPlain, on another plain key
// of mine) and checks its reply against the model.
func (k *okey) op(ctx context.Context, c *redis.Client, rng *rand.Rand, mine []*okey) error {
	k.seq++
	nv := fmt.Sprintf("%s#%d", k.name, k.seq)
	r := rng.IntN(10)
	switch k.kind {
	case kStr:
		switch {
		case r < 4:
			return k.check(ctx, c)
		case r < 7 && !k.deleted:
			if err := status(ctx, c, k.a("SET", k.name, nv, "KEEPTTL")...); err != nil {
				return fmt.Errorf("SET %s KEEPTTL: %w", k.name, err)
			}
			k.val = nv
		case r < 8:
			n, err := intCmd(ctx, c, k.a("DEL", k.name)...)
			if err != nil || n != b2i(!k.deleted) {
				return fmt.Errorf("DEL %s = %d, %v; deleted before: %v", k.name, n, err, k.deleted)
			}
			k.deleted = true
		default:
			if err := status(ctx, c, k.a("SET", k.name, nv, "EX", 3600)...); err != nil {
				return fmt.Errorf("SET %s EX: %w", k.name, err)
			}
			k.val, k.deleted = nv, false
		}
	case kHash:
		switch {
		case r < 4:
			return k.check(ctx, c)
		case r < 7:
			if _, err := intCmd(ctx, c, k.a("HSET", k.name, "f", nv)...); err != nil {
				return fmt.Errorf("HSET %s: %w", k.name, err)
			}
			k.val = nv
		default:
			got, err := intCmd(ctx, c, k.a("HINCRBY", k.name, "n", 1)...)
			if err != nil || got != k.count+1 {
				return fmt.Errorf("HINCRBY %s = %d, %v; want %d", k.name, got, err, k.count+1)
			}
			k.count++
		}
	case kCounter:
		switch {
		case r < 3:
			return k.check(ctx, c)
		case r < 9:
			got, err := intCmd(ctx, c, k.a("INCR", k.name)...)
			if err != nil || got != k.count+1 {
				return fmt.Errorf("INCR %s = %d, %v; want %d (deleted before: %v)", k.name, got, err, k.count+1, k.deleted)
			}
			k.count, k.deleted = k.count+1, false
		default:
			n, err := intCmd(ctx, c, k.a("DEL", k.name)...)
			if err != nil || n != b2i(!k.deleted) {
				return fmt.Errorf("DEL %s = %d, %v; deleted before: %v", k.name, n, err, k.deleted)
			}
			k.count, k.deleted = 0, true
		}
	case kPlain:
		o := mine[rng.IntN(len(mine))]
		if o.kind != kPlain || o == k || o.place != k.place {
			return k.check(ctx, c)
		}
		switch {
		case r < 4:
			cmd := redis.NewSliceCmd(ctx, k.a("MGET", k.name, o.name)...)
			_ = c.Process(ctx, cmd)
			got, err := cmd.Result()
			if err != nil {
				return fmt.Errorf("MGET %s %s: %w", k.name, o.name, err)
			}
			for i, x := range []*okey{k, o} {
				if want := x.model(); fmt.Sprint(got[i]) != want {
					return fmt.Errorf("MGET %s = %v, want %s", x.name, got[i], want)
				}
			}
		case r < 8:
			if err := status(ctx, c, k.a("MSET", k.name, nv, o.name, nv+"o")...); err != nil {
				return fmt.Errorf("MSET %s %s: %w", k.name, o.name, err)
			}
			k.val, k.deleted, o.val, o.deleted = nv, false, nv+"o", false
		default:
			n, err := intCmd(ctx, c, k.a("DEL", k.name, o.name)...)
			if want := b2i(!k.deleted) + b2i(!o.deleted); err != nil || n != want {
				return fmt.Errorf("DEL %s %s = %d, %v; want %d", k.name, o.name, n, err, want)
			}
			k.deleted, o.deleted = true, true
		}
	}
	return nil
}

// a is the command args for k: with its hash= override, if any.
func (k *okey) a(args ...any) []any {
	if k.place != "" {
		args = append(args, "hash="+k.place)
	}
	return args
}

// home is the key that decides where k lives.
func (k *okey) home() string {
	if k.place != "" {
		return k.place
	}
	return k.name
}

func (k *okey) pttl(ctx context.Context, c *redis.Client) (time.Duration, error) {
	n, err := intCmd(ctx, c, k.a("PTTL", k.name)...)
	if err != nil || n < 0 {
		return time.Duration(n), err
	}
	return time.Duration(n) * time.Millisecond, nil
}

func intCmd(ctx context.Context, c *redis.Client, args ...any) (int64, error) {
	cmd := redis.NewIntCmd(ctx, args...)
	_ = c.Process(ctx, cmd)
	return cmd.Result()
}

func status(ctx context.Context, c *redis.Client, args ...any) error {
	cmd := redis.NewStatusCmd(ctx, args...)
	_ = c.Process(ctx, cmd)
	return cmd.Err()
}

func strCmd(ctx context.Context, c *redis.Client, args ...any) (string, error) {
	cmd := redis.NewStringCmd(ctx, args...)
	_ = c.Process(ctx, cmd)
	return cmd.Result()
}

// model is the value MGET should return for k (kPlain and kStr).
func (k *okey) model() string {
	if k.deleted {
		return "<nil>"
	}
	return k.val
}

// check reads k through c and compares it with the model.
func (k *okey) check(ctx context.Context, c *redis.Client) error {
	switch k.kind {
	case kStr, kPlain:
		got, err := strCmd(ctx, c, k.a("GET", k.name)...)
		if k.deleted {
			if err != redis.Nil {
				return fmt.Errorf("GET %s = %q, %v after DEL: resurrected", k.name, got, err)
			}
			return nil
		}
		if err != nil || got != k.val {
			return fmt.Errorf("GET %s = %q, %v; want %q", k.name, got, err, k.val)
		}
	case kHash:
		cmd := redis.NewMapStringStringCmd(ctx, k.a("HGETALL", k.name)...)
		_ = c.Process(ctx, cmd)
		got, err := cmd.Result()
		if err != nil || len(got) != 2 || got["f"] != k.val || got["n"] != strconv.FormatInt(k.count, 10) {
			return fmt.Errorf("HGETALL %s = %v, %v; want f=%s n=%d", k.name, got, err, k.val, k.count)
		}
	case kCounter:
		got, err := strCmd(ctx, c, k.a("GET", k.name)...)
		if k.deleted {
			if err != redis.Nil {
				return fmt.Errorf("GET %s = %q, %v after DEL: resurrected", k.name, got, err)
			}
			return nil
		}
		if err != nil || got != strconv.FormatInt(k.count, 10) {
			return fmt.Errorf("GET %s = %q, %v; want %d (acknowledged INCRs)", k.name, got, err, k.count)
		}
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// keysOf returns the bulk strings of an array reply as a set.
func keysOf(t *testing.T, arr string) map[string]bool {
	t.Helper()
	elems, _, ok := resp2Elements(arr)
	if !ok {
		t.Fatalf("not an array: %q", arr)
	}
	out := map[string]bool{}
	for _, e := range elems {
		out[bulkOf(e)] = true
	}
	return out
}

// resp2Elements splits an array reply into its elements.
func resp2Elements(r string) ([]string, bool, bool) {
	elems, null, ok := resp.Elements([]byte(r), nil)
	out := make([]string, len(elems))
	for i, e := range elems {
		out[i] = string(e)
	}
	return out, null, ok
}

// bulkOf is the payload of a bulk string reply.
func bulkOf(r string) string {
	b, _, _ := resp.Bulk([]byte(r))
	return string(b)
}

// TestMigratingFleetDown: while the fleet marks a node down, a moving key
// whose old or new owner it is fails at once with the data path's error
// (the rebalance path's control clients would otherwise wait out their
// timeout), keys of other nodes keep working, and everything works again
// once the verdict clears.
func TestMigratingFleetDown(t *testing.T) {
	e := newMigEnv(t, Options{})
	k, s := e.key("fd", true), e.key("fdstay", false)
	p := dial(t, e.px.addr)
	for _, key := range []string{k, s} {
		if r := p.do("SET", key, "v"); r != "+OK\r\n" {
			t.Fatal(r)
		}
	}
	e.stage(t, StagePrepare, 9)
	e.stage(t, StageFreeze, 9)
	e.stage(t, StageMigrating, 9)
	newOwner := e.T.Node(e.T.Owner([]byte(k))).Addr
	oldOwner := e.R.Node(e.R.Owner([]byte(k))).Addr
	staysOn := e.R.Node(e.R.Owner([]byte(s))).Addr
	for _, down := range []string{newOwner, oldOwner} {
		e.px.pool.SetFleetDown(map[string]bool{down: true})
		want := "-ERR jupiter: node " + down + " is down (fleet)\r\n"
		for _, c := range [][]string{{"GET", k}, {"SET", k, "w"}, {"INCR", k}, {"DEL", k}} {
			start := time.Now()
			if r := p.do(c...); r != want {
				t.Errorf("%s down: %v = %q, want %q", down, c, r, want)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("%s down: %v took %v, want at once", down, c, d)
			}
		}
		if staysOn != down {
			if r := p.do("GET", s); r != "$1\r\nv\r\n" {
				t.Errorf("%s down: GET of a key on another node = %q", down, r)
			}
		}
		e.px.pool.SetFleetDown(nil)
		if r := p.do("GET", k); r != "$1\r\nv\r\n" {
			t.Errorf("verdict cleared: GET %s = %q, want the value unharmed", k, r)
		}
	}
	// SCAN during MIGRATING visits every node of both rings: a down one
	// fails it at once too.
	e.px.pool.SetFleetDown(map[string]bool{newOwner: true})
	for cur, n := "0", 0; ; n++ {
		r := p.do("SCAN", cur, "COUNT", "1000")
		if strings.Contains(r, "node "+newOwner+" is down (fleet)") {
			break
		}
		elems, _, ok := resp2Elements(r)
		if !ok || len(elems) != 2 || n > 10 {
			t.Fatalf("SCAN with a node down: %q after %d calls", r, n)
		}
		if cur = bulkOf(elems[0]); cur == "0" {
			t.Fatal("SCAN with a node down went through every node without an error")
		}
	}
	e.px.pool.SetFleetDown(nil)
}
