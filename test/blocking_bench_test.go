package test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/test/testenv"
)

// BenchmarkGetWithBlockedClients measures what clients blocked in BLPOP cost
// everyone else: the latency of sequential GETs from one go-redis client
// (default options) through jupiter in front of 3 redis-server nodes, first
// with no blocked client (the timed b.Loop: ns/op is this phase), then the
// same number of GETs while 1000 raw clients are blocked (BLPOP on distinct
// keys over all the nodes, timeout 0, each on a dedicated node connection).
// The environment is started once.
//
//	p50-idle-µs, p99-idle-µs               GET latency, nobody blocked
//	p50-1000blocked-µs, p99-1000blocked-µs  GET latency, 1000 clients blocked
//	p99-ratio                               p99 blocked / p99 idle
//
// Nothing is asserted about the timings. Run:
//
//	go test -run XXX -bench GetWithBlockedClients -benchtime 3000x ./test/
func BenchmarkGetWithBlockedClients(b *testing.B) {
	const blockers = 1000
	raiseNoFile(b)
	cl := testenv.StartCluster(b, 3)
	j := redis.NewClient(&redis.Options{Addr: cl.Jupiter.Addr})
	defer j.Close()
	var nodes []*redis.Client
	for _, r := range cl.Redis {
		n := redis.NewClient(&redis.Options{Addr: r.Addr})
		defer n.Close()
		nodes = append(nodes, n)
	}
	ctx := context.Background()
	const key = "blk:bench:get"
	if err := j.Set(ctx, key, "value", 0).Err(); err != nil {
		b.Fatalf("SET: %v", err)
	}
	get := func() time.Duration {
		start := time.Now()
		v, err := j.Get(ctx, key).Result()
		d := time.Since(start)
		if err != nil || v != "value" {
			b.Fatalf("GET %s = %q, %v", key, v, err)
		}
		return d
	}
	for range 200 { // warm the connection pool and the proxy
		get()
	}

	var idle []time.Duration
	for b.Loop() {
		idle = append(idle, get())
	}
	n := len(idle)

	// 1000 clients blocked on distinct keys, spread over the nodes by the
	// ring. Closing them (deferred) is what releases them.
	conns := make([]net.Conn, 0, blockers)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		if err := waitBlockedErr(nodes, 0, 15*time.Second); err != nil {
			b.Errorf("after closing the blocked clients: %v", err)
		}
	}()
	for i := 0; i < blockers; i++ {
		c, err := net.DialTimeout("tcp", cl.Jupiter.Addr, 5*time.Second)
		if err != nil {
			b.Fatalf("dial blocked client %d: %v", i, err)
		}
		conns = append(conns, c)
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(encode("BLPOP", fmt.Sprintf("blk:bench:q:%d", i), "0"))); err != nil {
			b.Fatalf("BLPOP of blocked client %d: %v", i, err)
		}
	}
	if err := waitBlockedErr(nodes, blockers, 60*time.Second); err != nil {
		b.Fatalf("blocking %d clients: %v", blockers, err)
	}
	per := make([]int, len(nodes))
	for i, nc := range nodes {
		per[i] = blockedClients(b, nc)
	}
	b.Logf("b.N=%d; blocked clients per node: %v", n, per)

	for range 200 {
		get()
	}
	busy := make([]time.Duration, n)
	for i := range busy {
		busy[i] = get()
	}
	if err := waitBlockedErr(nodes, blockers, time.Second); err != nil {
		b.Errorf("after the GETs: %v", err)
	}

	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	p50i, p99i := pct(idle, 50), pct(idle, 99)
	p50b, p99b := pct(busy, 50), pct(busy, 99)
	b.ReportMetric(us(p50i), "p50-idle-µs")
	b.ReportMetric(us(p99i), "p99-idle-µs")
	b.ReportMetric(us(p50b), "p50-1000blocked-µs")
	b.ReportMetric(us(p99b), "p99-1000blocked-µs")
	if p99i > 0 {
		b.ReportMetric(float64(p99b)/float64(p99i), "p99-ratio")
	}
}

// pct returns the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

// raiseNoFile raises the soft limit of open files to the hard limit: the
// benchmark holds 1000+ sockets, and jupiter and redis-server inherit it.
func raiseNoFile(b *testing.B) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Logf("getrlimit: %v", err)
		return
	}
	if rl.Cur < rl.Max {
		old := rl.Cur
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			b.Logf("setrlimit %d -> %d: %v", old, rl.Max, err)
		}
	}
	if rl.Cur < 4096 {
		b.Skipf("open files limit %d is too low for 1000 blocked clients (need ~4096)", rl.Cur)
	}
}

// waitBlockedErr waits until blocked_clients summed over nodes is want.
func waitBlockedErr(nodes []*redis.Client, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		sum := 0
		for _, n := range nodes {
			k, err := blockedClientsErr(n)
			if err != nil {
				return err
			}
			sum += k
		}
		if sum == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("blocked_clients = %d over the nodes after %v, want %d", sum, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
