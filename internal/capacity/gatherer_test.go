package capacity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// ringOf is a settable ring source.
type ringOf struct {
	mu sync.Mutex
	r  *ring.Ring
}

func (s *ringOf) get() *ring.Ring {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r
}

func (s *ringOf) set(t *testing.T, addrs ...string) {
	t.Helper()
	nodes := make([]ring.Node, len(addrs))
	for i, a := range addrs {
		nodes[i] = ring.Node{Addr: a, Weight: 1}
	}
	r, err := ring.New(1, nodes)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.r = r
	s.mu.Unlock()
}

// counters is a settable Requests source.
type counters struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (c *counters) get() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func (c *counters) set(addr string, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]uint64{}
	}
	c.m[addr] = n
}

func testClients() *Clients {
	return NewClients(func(addr string) (*redis.Options, error) {
		return &redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true}, nil
	})
}

func direct(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, PoolSize: 1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// nodeInfo is the node's own INFO, parsed the way a person reads it.
func nodeInfo(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	s, err := c.Info(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = v
		}
	}
	return out
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

func byAddr(fs []Figures) map[string]Figures {
	m := map[string]Figures{}
	for _, f := range fs {
		m[f.Addr] = f
	}
	return m
}

// TestGathererMatchesNodeInfo checks every figure against what each real
// node's own INFO says, as keys are written, read (hits and misses),
// expired and evicted.
func TestGathererMatchesNodeInfo(t *testing.T) {
	t.Parallel()
	rs := []*testenv.Redis{testenv.StartRedis(t), testenv.StartRedis(t), testenv.StartRedis(t)}
	var rg ringOf
	rg.set(t, rs[0].Addr, rs[1].Addr, rs[2].Addr)
	var reqs counters
	g := New(Config{Interval: time.Hour, Ring: rg.get, Requests: reqs.get, Info: testClients()})
	defer g.Stop()
	cs := []*redis.Client{direct(t, rs[0].Addr), direct(t, rs[1].Addr), direct(t, rs[2].Addr)}
	ctx := context.Background()

	// Keys: 300 on node 0 (20 of them about to expire), 150 on node 1, none on node 2.
	for i, n := range []int{300, 150, 0} {
		p := cs[i].Pipeline()
		for k := range n {
			if i == 0 && k < 20 {
				p.Set(ctx, fmt.Sprint("exp:", k), "v", time.Millisecond)
			} else {
				p.Set(ctx, fmt.Sprint("k:", k), strings.Repeat("v", 100), 0)
			}
		}
		if _, err := p.Exec(ctx); err != nil && n > 0 {
			t.Fatal(err)
		}
	}
	for _, c := range cs { // connected before the round, so that the node's figures stay put
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	reqs.set(rs[0].Addr, 0)
	t0 := time.Now()
	g.Round(ctx)
	t1 := time.Now()
	snap := byAddr(g.Snapshot())
	for i, r := range rs {
		f, in := snap[r.Addr], nodeInfo(t, cs[i])
		if size := cs[i].DBSize(ctx).Val(); f.Keys != size && !(i == 0 && f.Keys >= 280 && f.Keys <= 300) {
			t.Errorf("node %d: keys = %d, DBSIZE = %d", i, f.Keys, size)
		}
		used := atoi(t, in["used_memory"])
		if d := f.UsedMemory - used; d < -used/20 || d > used/20 {
			t.Errorf("node %d: used_memory = %d, node says %d (more than 5%% apart)", i, f.UsedMemory, used)
		}
		if f.Role != "master" || f.MaxMemory != 0 || f.MaxMemoryPolicy != "noeviction" || f.MemoryRatio != -1 {
			t.Errorf("node %d: role %q maxmemory %d policy %q ratio %v, want master 0 noeviction -1", i, f.Role, f.MaxMemory, f.MaxMemoryPolicy, f.MemoryRatio)
		}
		if c := atoi(t, in["connected_clients"]); f.Clients != c {
			t.Errorf("node %d: connected_clients = %d, node says %d", i, f.Clients, c)
		}
		if f.InfoAgeMs < 0 || f.InfoAgeMs > 5000 || f.InfoRequests != 1 || f.InfoErrors != 0 || f.InfoError != "" {
			t.Errorf("node %d: info age %d ms, requests %d, errors %d %q", i, f.InfoAgeMs, f.InfoRequests, f.InfoErrors, f.InfoError)
		}
	}
	if f := snap[rs[2].Addr]; f.Keys != 0 || f.KeyShare != 0 {
		t.Errorf("empty node: keys %d share %v, want 0 0", f.Keys, f.KeyShare)
	}
	total := float64(snap[rs[0].Addr].Keys + snap[rs[1].Addr].Keys)
	if f := snap[rs[1].Addr]; f.KeyShare != float64(f.Keys)/total {
		t.Errorf("node 1 key share = %v, want %v", f.KeyShare, float64(f.Keys)/total)
	}
	var slots float64
	for _, f := range snap {
		slots += f.SlotShare
		if f.SlotShare < 0.2 || f.SlotShare > 0.5 {
			t.Errorf("%s: slot share %v of 3 equal nodes", f.Addr, f.SlotShare)
		}
	}
	if slots < 0.9999 || slots > 1.0001 {
		t.Errorf("slot shares add up to %v", slots)
	}
	if f := snap[rs[0].Addr]; f.PodOpsPerSec != -1 || f.FleetOpsPerSec != -1 {
		t.Errorf("one count is no rate yet: pod %v fleet %v", f.PodOpsPerSec, f.FleetOpsPerSec)
	}

	// Hits and misses on node 1, expirations (lazily, by GET) on node 0;
	// 1000 requests counted for node 0 by "this pod".
	for k := range 40 {
		cs[1].Get(ctx, fmt.Sprint("k:", k))
	}
	for k := range 25 {
		cs[1].Get(ctx, fmt.Sprint("nope:", k))
	}
	time.Sleep(5 * time.Millisecond)
	for k := range 20 {
		cs[0].Get(ctx, fmt.Sprint("exp:", k))
	}
	reqs.set(rs[0].Addr, 1000)
	t2 := time.Now()
	g.Round(ctx)
	t3 := time.Now()
	before := snap
	snap = byAddr(g.Snapshot())
	f1, f0 := snap[rs[1].Addr], snap[rs[0].Addr]
	if d := f1.KeyspaceHits - before[rs[1].Addr].KeyspaceHits; d != 40 {
		t.Errorf("node 1 keyspace_hits moved by %d after 40 hits", d)
	}
	if d := f1.KeyspaceMisses - before[rs[1].Addr].KeyspaceMisses; d != 25 {
		t.Errorf("node 1 keyspace_misses moved by %d after 25 misses", d)
	}
	if want := 40.0 / 65; f1.HitRatio < want-1e-9 || f1.HitRatio > want+1e-9 {
		t.Errorf("node 1 hit ratio %v, want %v", f1.HitRatio, want)
	}
	in0 := nodeInfo(t, cs[0])
	if f0.ExpiredKeys != 20 || f0.ExpiredKeys != atoi(t, in0["expired_keys"]) || f0.Keys != 280 {
		t.Errorf("node 0 expired_keys %d keys %d, node says %s expired; want 20 expired, 280 keys", f0.ExpiredKeys, f0.Keys, in0["expired_keys"])
	}
	lo, hi := 1000/t3.Sub(t0).Seconds(), 1000/t2.Sub(t1).Seconds()
	if f0.PodOpsPerSec < lo || f0.PodOpsPerSec > hi {
		t.Errorf("node 0 pod rate %v, want 1000 requests over the time between the rounds: %v..%v", f0.PodOpsPerSec, lo, hi)
	}
	if f0.FleetOpsPerSec != f0.PodOpsPerSec || g.Fleet().Pods != 1 {
		t.Errorf("standalone: fleet rate %v (pods %d), want this pod's %v", f0.FleetOpsPerSec, g.Fleet().Pods, f0.PodOpsPerSec)
	}
	if ops := g.PodOps(); len(ops) != 1 || ops[rs[0].Addr] != f0.PodOpsPerSec {
		t.Errorf("PodOps = %v, want node 0's rate only", ops)
	}

	// Evictions: a small maxmemory with an eviction policy on node 2, set
	// on the node itself, then more data than fits.
	used := atoi(t, nodeInfo(t, cs[2])["used_memory"])
	limit := used + 256<<10
	if err := cs[2].ConfigSet(ctx, "maxmemory-policy", "allkeys-random").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cs[2].ConfigSet(ctx, "maxmemory", strconv.FormatInt(limit, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	p := cs[2].Pipeline()
	for k := range 2000 {
		p.Set(ctx, fmt.Sprint("big:", k), strings.Repeat("x", 1024), 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	g.Round(ctx)
	f2 := byAddr(g.Snapshot())[rs[2].Addr]
	in2 := nodeInfo(t, cs[2])
	if f2.EvictedKeys <= 0 || f2.EvictedKeys != atoi(t, in2["evicted_keys"]) {
		t.Errorf("node 2 evicted_keys %d, node says %s (want > 0 and equal)", f2.EvictedKeys, in2["evicted_keys"])
	}
	if f2.MaxMemory != limit || f2.MaxMemoryPolicy != "allkeys-random" || f2.Keys != cs[2].DBSize(ctx).Val() {
		t.Errorf("node 2 maxmemory %d policy %q keys %d, want %d allkeys-random DBSIZE", f2.MaxMemory, f2.MaxMemoryPolicy, f2.Keys, limit)
	}
	if want := float64(f2.UsedMemory) / float64(limit); f2.MemoryRatio != want || want < 0.5 || want > 1.2 {
		t.Errorf("node 2 memory ratio %v, want used/max = %v near 1", f2.MemoryRatio, want)
	}
	if f2.Full() != f2.MemoryRatio || f1.Full() != f1.KeyShare {
		t.Errorf("Full: node 2 %v (want its memory ratio), node 1 %v (want its key share)", f2.Full(), f1.Full())
	}
}

// TestGathererNodeDown: a node that stops answering keeps its last figures
// with a growing age and the error; one never heard from is unknown and
// left out of the key shares.
func TestGathererNodeDown(t *testing.T) {
	t.Parallel()
	r0, r1 := testenv.StartRedis(t), testenv.StartRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there any more
	var rg ringOf
	rg.set(t, r0.Addr, r1.Addr)
	g := New(Config{Interval: time.Hour, Timeout: time.Second, Ring: rg.get, Info: testClients()})
	defer g.Stop()
	ctx := context.Background()
	c1 := direct(t, r1.Addr)
	c1.Set(ctx, "a", "1", 0)
	c1.Set(ctx, "b", "1", 0)
	direct(t, r0.Addr).Set(ctx, "c", "1", 0)
	g.Round(ctx)
	r1.Stop()
	rg.set(t, r0.Addr, r1.Addr, dead)
	time.Sleep(50 * time.Millisecond)
	g.Round(ctx)
	snap := byAddr(g.Snapshot())
	f1 := snap[r1.Addr]
	if f1.Keys != 2 || f1.Role != "master" || f1.InfoError == "" || f1.InfoErrors != 1 || f1.InfoRequests != 2 || f1.InfoAgeMs < 50 {
		t.Errorf("stopped node: %+v; want its last keys (2) and role, an error, 1 of 2 INFO failed, age >= 50ms", f1)
	}
	fd := snap[dead]
	if fd.Keys != -1 || fd.UsedMemory != -1 || fd.Role != "" || fd.InfoAgeMs != -1 || fd.KeyShare != -1 || fd.HitRatio != -1 || fd.InfoErrors != 1 {
		t.Errorf("never answered: %+v; want every figure unknown", fd)
	}
	if f0 := snap[r0.Addr]; f0.KeyShare < 0.333 || f0.KeyShare > 0.334 {
		t.Errorf("node 0 key share %v, want 1/3 (its 1 key of the 3 known)", f0.KeyShare)
	}
	// What the pod reports for fleet node health: its own reach.
	reach := g.Reach()
	if len(reach) != 3 || reach[r0.Addr] != "" || reach[r1.Addr] == "" || reach[dead] == "" {
		t.Errorf("Reach() = %q; want node 0 reached, the stopped and the dead node with their errors", reach)
	}
}

// TestGathererBoundedWaits: nodes that accept connections but never
// answer cost a round at most Timeout each (Parallel at a time), and are
// reported, not waited for.
func TestGathererBoundedWaits(t *testing.T) {
	t.Parallel()
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // accept and hold every connection, answer nothing
			defer wg.Done()
			var held []net.Conn
			for {
				c, err := ln.Accept()
				if err != nil {
					for _, c := range held {
						c.Close()
					}
					return
				}
				held = append(held, c)
			}
		}()
		t.Cleanup(func() { ln.Close(); wg.Wait() })
	}
	var rg ringOf
	rg.set(t, addrs...)
	g := New(Config{Interval: time.Hour, Timeout: 200 * time.Millisecond, Parallel: 1, Ring: rg.get, Info: testClients()})
	defer g.Stop()
	start := time.Now()
	g.Round(context.Background())
	if d := time.Since(start); d < 550*time.Millisecond || d > 2*time.Second {
		t.Errorf("a round over 3 silent nodes, one at a time, 200ms each took %v", d)
	}
	for _, f := range g.Snapshot() {
		if f.InfoErrors != 1 || f.InfoError == "" || f.Keys != -1 {
			t.Errorf("silent node %s: %+v", f.Addr, f)
		}
	}
	// One round that timed out proves nothing (the node may be busy):
	// Reach leaves the nodes out; a second one in a row reports them.
	if reach := g.Reach(); len(reach) != 0 {
		t.Errorf("Reach after one timed-out round = %q, want no view", reach)
	}
	g.Round(context.Background())
	if reach := g.Reach(); len(reach) != 3 || reach[addrs[0]] == "" {
		t.Errorf("Reach after %d timed-out rounds = %q, want all 3 unreachable", SlowRounds, reach)
	}
}

// TestIsTimeout: which INFO failures count as "slow" (Reach waits for a
// second one) and which at once.
func TestIsTimeout(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("info: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false},
		{io.EOF, false},
		{errors.New("ERR unknown command"), false},
	} {
		if got := isTimeout(c.err); got != c.want {
			t.Errorf("isTimeout(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestGathererRunAndStop: the goroutine asks each node once per Interval
// (never more), follows ring changes (a removed node's connection closes),
// and Stop ends it and closes every connection.
func TestGathererRunAndStop(t *testing.T) {
	t.Parallel()
	r0, r1 := testenv.StartRedis(t), testenv.StartRedis(t)
	var rg ringOf
	rg.set(t, r0.Addr, r1.Addr)
	cl := testClients()
	g := New(Config{Interval: 100 * time.Millisecond, Ring: rg.get, Info: cl})
	c0, c1 := direct(t, r0.Addr), direct(t, r1.Addr)
	clients := func(c *redis.Client) int64 { return atoi(t, nodeInfo(t, c)["connected_clients"]) }
	g.Start()
	g.Start() // no second goroutine
	time.Sleep(1050 * time.Millisecond)
	for _, f := range g.Snapshot() {
		// Rounds at 0, 100, …, 1000 ms: 11, give or take scheduling.
		if f.InfoRequests < 8 || f.InfoRequests > 12 {
			t.Errorf("%s: %d INFO calls in 1.05s at a 100ms interval", f.Addr, f.InfoRequests)
		}
	}
	if n := clients(c1); n != 2 {
		t.Errorf("node 1 has %d clients, want 2 (this test and the gatherer's one connection)", n)
	}
	rg.set(t, r0.Addr)
	waitFor(t, "node 1's INFO connection closed after it left the ring", func() bool { return clients(c1) == 1 })
	if s := g.Snapshot(); len(s) != 1 || s[0].Addr != r0.Addr {
		t.Errorf("snapshot after the ring change: %+v", s)
	}
	start := time.Now()
	g.Stop()
	g.Stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Stop took %v", d)
	}
	waitFor(t, "node 0's INFO connection closed after Stop", func() bool { return clients(c0) == 1 })
	n := g.Snapshot()[0].InfoRequests
	time.Sleep(300 * time.Millisecond)
	if m := g.Snapshot()[0].InfoRequests; m != n {
		t.Errorf("INFO calls went on after Stop: %d → %d", n, m)
	}
	New(Config{Ring: rg.get, Info: testClients()}).Stop() // Stop without Start
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}
