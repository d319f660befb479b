package rebalance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// nodeCPU is a redis-server's CPU time so far (INFO cpu, user + system).
func nodeCPU(b *testing.B, n node) time.Duration {
	b.Helper()
	info, err := n.c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// selfCPU is this process's CPU time so far (the migrator's, mostly).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fill(b *testing.B, n node, keys, size int) {
	b.Helper()
	ctx := context.Background()
	val := make([]byte, size)
	for j := range val {
		val[j] = byte(rand.IntN(256)) // incompressible (DUMP uses LZF)
	}
	p := n.c.Pipeline()
	for i := range keys {
		p.Set(ctx, fmtKey("b", i), val, time.Hour)
		if p.Len() == 1000 {
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkMigrate runs a Migrator (scan, verification pass, defaults:
// SCAN COUNT 200, 32-key / 256 KiB batches, no throttle) moving every key
// of one redis-server to another over loopback, and reports keys/s and
// payload MB/s.
func BenchmarkMigrate(b *testing.B) {
	for _, bc := range []struct {
		keys, size int
		delay      time.Duration // Config.TargetDelay
	}{{20000, 100, 0}, {2000, 16 << 10, 0}, {20000, 100, time.Millisecond}} {
		name := fmt.Sprintf("value=%dB", bc.size)
		if bc.delay > 0 {
			name += "/target-delay=" + bc.delay.String()
		}
		b.Run(name, func(b *testing.B) {
			ns := startNodes(b, 2)
			ctx := context.Background()
			var moved, bytes int64
			var elapsed, srcCPU, dstCPU, ownCPU time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				fill(b, ns[0], bc.keys, bc.size)
				m, err := NewMigrator(Config{Source: ns[0].c, Dests: map[int]Node{0: ns[1].c}, Moving: allMoving, Epoch: 1, TargetDelay: bc.delay})
				if err != nil {
					b.Fatal(err)
				}
				s0, d0, o0 := nodeCPU(b, ns[0]), nodeCPU(b, ns[1]), selfCPU()
				b.StartTimer()
				start := time.Now()
				p, err := m.Run(ctx)
				elapsed += time.Since(start)
				b.StopTimer()
				srcCPU += nodeCPU(b, ns[0]) - s0
				dstCPU += nodeCPU(b, ns[1]) - d0
				ownCPU += selfCPU() - o0
				if err != nil || p.KeysMoved != int64(bc.keys) {
					b.Fatalf("Run: %v, moved %d", err, p.KeysMoved)
				}
				moved += p.KeysMoved
				bytes += p.BytesMoved
				if err := ns[1].c.FlushAll(ctx).Err(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(moved)/elapsed.Seconds(), "keys/s")
			b.ReportMetric(float64(bytes)/1e6/elapsed.Seconds(), "MB/s")
			// Where a key's move costs CPU: the source node (SCAN, DUMP,
			// UNLINK), the destination (the restore script) and the
			// migrator's process.
			b.ReportMetric(float64(srcCPU.Nanoseconds())/1e3/float64(moved), "src-µs/key")
			b.ReportMetric(float64(dstCPU.Nanoseconds())/1e3/float64(moved), "dst-µs/key")
			b.ReportMetric(float64(ownCPU.Nanoseconds())/1e3/float64(moved), "migrator-µs/key")
		})
	}
}

// BenchmarkEnsure is one pull-through move (the proxy's ensure before an
// RMW): EXISTS on new, snapshot on old, restore on new, UNLINK on old.
func BenchmarkEnsure(b *testing.B) {
	ns := startNodes(b, 2)
	ctx := context.Background()
	m := &Mover{Old: ns[0].c, New: ns[1].c, Epoch: 1}
	b.StopTimer()
	fill(b, ns[0], b.N, 100)
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		if r, err := m.Ensure(ctx, []byte(fmtKey("b", i))); err != nil || r != Moved {
			b.Fatalf("Ensure = %v, %v", r, err)
		}
	}
}

// BenchmarkMigrateLatency isolates what a migration costs the clients of
// its nodes, without proxies or a control plane: 100k keys of 100 B on a
// source, a quarter of them moving to a destination, and 4 clients GETting
// random keys on the source and 2 on the destination, one GET per ms each,
// first for 2 s alone (steady), then while the migrator runs at
// JUPITER_BENCH_RATE keys/s (0: unlimited). Reported: keys/s and the GET
// p99 steady / migrating of each node's clients.
//
//	JUPITER_BENCH_RATE=5000 go test -run XXX -bench MigrateLatency -benchtime 1x ./internal/rebalance/
func BenchmarkMigrateLatency(b *testing.B) {
	ns := startNodes(b, 2)
	ctx := context.Background()
	const keys = 100_000
	fill(b, ns[0], keys, 100)
	rate, _ := strconv.ParseFloat(os.Getenv("JUPITER_BENCH_RATE"), 64)
	quarter := func(k []byte) (int, bool) { return 0, k[len(k)-1]%4 == 0 }

	type sample struct {
		d         time.Duration
		migrating bool
		dst       bool
	}
	var phase atomic.Bool
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := ns[0]
			if g >= 4 {
				n = ns[1]
			}
			c := redis.NewClient(&redis.Options{Addr: n.srv.Addr})
			defer c.Close()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			var mine []sample
			for i := g; ; i += 7919 {
				select {
				case <-stop:
					mu.Lock()
					samples = append(samples, mine...)
					mu.Unlock()
					return
				case <-tick.C:
				}
				m := phase.Load()
				t0 := time.Now()
				_ = c.Get(ctx, fmtKey("b", i%keys)).Err()
				mine = append(mine, sample{time.Since(t0), m, g >= 4})
			}
		}()
	}
	time.Sleep(2 * time.Second)
	m, err := NewMigrator(Config{Source: ns[0].c, Dests: map[int]Node{0: ns[1].c}, Moving: quarter, Epoch: 1, KeysPerSec: rate})
	if err != nil {
		b.Fatal(err)
	}
	phase.Store(true)
	b.ResetTimer()
	start := time.Now()
	p, err := m.Run(ctx)
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	p99 := func(migrating, dst bool) float64 {
		var ds []time.Duration
		for _, s := range samples {
			if s.migrating == migrating && s.dst == dst {
				ds = append(ds, s.d)
			}
		}
		slices.Sort(ds)
		if len(ds) == 0 {
			return 0
		}
		return float64(ds[len(ds)*99/100].Microseconds())
	}
	b.ReportMetric(float64(p.KeysMoved)/elapsed.Seconds(), "keys/s")
	b.ReportMetric(p99(false, false), "src-p99-us-steady")
	b.ReportMetric(p99(true, false), "src-p99-us-migrating")
	b.ReportMetric(p99(false, true), "dst-p99-us-steady")
	b.ReportMetric(p99(true, true), "dst-p99-us-migrating")
	b.ReportMetric(0, "ns/op")
}
