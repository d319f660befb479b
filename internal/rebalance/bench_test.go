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
// SCAN COUNT 200, 32-key / 256 KiB batches, no throttle) over loopback and
// reports keys/s and payload MB/s, in three shapes of one source:
//
//   - all: every key moves to one destination (a node whose whole range
//     moves);
//   - quarter: a quarter of the keys move to one destination (a source of
//     an ADD of a 4th node: the rest are scanned and stay);
//   - remove: every key moves, spread over 3 destinations (the removed node
//     of a REMOVE).
func BenchmarkMigrate(b *testing.B) {
	quarter := func(k []byte) (int, bool) { return 0, k[len(k)-1]%4 == 0 }
	spread := func(k []byte) (int, bool) { return int(k[len(k)-1] % 3), true }
	for _, bc := range []struct {
		shape      string
		keys, size int
		delay      time.Duration // Config.TargetDelay
	}{
		{"all", 20000, 100, 0}, {"all", 2000, 16 << 10, 0}, {"all", 20000, 100, time.Millisecond},
		{"quarter", 80000, 100, 0}, {"remove", 20000, 100, 0},
	} {
		name := fmt.Sprintf("%s/value=%dB", bc.shape, bc.size)
		if bc.delay > 0 {
			name += "/target-delay=" + bc.delay.String()
		}
		b.Run(name, func(b *testing.B) {
			moving, dests := allMoving, 1
			switch bc.shape {
			case "quarter":
				moving = quarter
			case "remove":
				moving, dests = spread, 3
			}
			want := 0
			for i := range bc.keys {
				if _, ok := moving([]byte(fmtKey("b", i))); ok {
					want++
				}
			}
			ns := startNodes(b, 1+dests)
			ds := map[int]Node{}
			for i := range dests {
				ds[i] = ns[1+i].c
			}
			ctx := context.Background()
			var moved, bytes int64
			var elapsed, srcCPU, dstCPU, ownCPU time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := ns[0].c.FlushAll(ctx).Err(); err != nil {
					b.Fatal(err)
				}
				fill(b, ns[0], bc.keys, bc.size)
				m, err := NewMigrator(Config{Source: ns[0].c, Dests: ds, Moving: moving, Epoch: 1, TargetDelay: bc.delay})
				if err != nil {
					b.Fatal(err)
				}
				cpu := func() (src, dst time.Duration) {
					for j, n := range ns {
						if j == 0 {
							src = nodeCPU(b, n)
						} else {
							dst += nodeCPU(b, n)
						}
					}
					return src, dst
				}
				s0, d0 := cpu()
				o0 := selfCPU()
				b.StartTimer()
				start := time.Now()
				p, err := m.Run(ctx)
				elapsed += time.Since(start)
				b.StopTimer()
				s1, d1 := cpu()
				srcCPU += s1 - s0
				dstCPU += d1 - d0
				ownCPU += selfCPU() - o0
				if err != nil || p.KeysMoved != int64(want) {
					b.Fatalf("Run: %v, moved %d of %d", err, p.KeysMoved, want)
				}
				moved += p.KeysMoved
				bytes += p.BytesMoved
				for _, n := range ns[1:] {
					if err := n.c.FlushAll(ctx).Err(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(moved)/elapsed.Seconds(), "keys/s")
			b.ReportMetric(float64(bytes)/1e6/elapsed.Seconds(), "MB/s")
			// Where a moved key costs CPU: the source node (SCAN, MGET of
			// records, snapshot, UNLINK; in "quarter" also the keys that
			// stay), the destinations (the restore script) and the
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
