package rebalance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
// SCAN COUNT 1000, 200-key / 4 MiB batches, no throttle) moving every key
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
