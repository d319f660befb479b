package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/ring"
)

// BenchmarkRebalanceMigration measures one online rebalance of a 2-pod
// cluster (emulator, 4 redis-servers, ring seeded with 3): N preloaded keys
// of one value size, JUPITER ADD of the 4th node while 4 paced go-redis
// clients (default options, 2 per pod, 1 op/ms each, GET and SET of random
// preloaded keys) run, until every pod is stable on the new ring. Each
// further iteration alternately REMOVEs and ADDs the 4th node again.
//
//	moved-keys      keys that changed node (DBSIZE of the added node after
//	                the ADD, or before the REMOVE; STATUS's
//	                rebalance_moved_keys is logged next to it)
//	migrating-s     wall time pods spent in stage migrating (leader's STATUS,
//	                polled every 20 ms)
//	rebalance-s     command sent until every pod is stable on the new ring
//	keys/s, MB/s    moved keys (and their values) per second of migrating
//	                (of the whole rebalance if no migrating stage was seen)
//	dump-MB/s       STATUS's rebalance_moved_bytes (DUMP payloads, what
//	                --migrate-bytes-per-sec limits) per second of migrating
//	status-keys/s   the highest rebalance_keys_per_sec STATUS showed
//	{get,set}-p99-us-steady / -migrating   client latency before the change
//	                and while the leader reported migrating
//	tryagain, errors  TRYAGAIN replies that reached the clients (after
//	                go-redis's retries) and other client errors
//	get-nil         GETs that found no value (every key is preloaded and
//	                never deleted: each is a key lost, at least for a while)
//
// Run:
//
//	go test ./test/ -run XXX -bench RebalanceMigration -benchtime 1x
//
// JUPITER_BENCH_KEYS overrides the key count of the 100-byte case.
func BenchmarkRebalanceMigration(b *testing.B) {
	// JUPITER_BENCH_KEYS=400000: a 4× longer migration, whose p99 moves
	// less from run to run on a noisy machine (the name stays).
	smallKeys := 100_000
	if v, err := strconv.Atoi(os.Getenv("JUPITER_BENCH_KEYS")); err == nil && v > 0 {
		smallKeys = v
	}
	for _, c := range []struct {
		name        string
		keys, bytes int
	}{
		{"100k-100B", smallKeys, 100},
		{"20k-16KiB", 20_000, 16 << 10},
	} {
		b.Run(c.name, func(b *testing.B) { rbBench(b, c.keys, c.bytes) })
	}
}

// rbLat is one client operation's latency in a phase.
type rbLat struct {
	get    bool
	phase  int32
	d      time.Duration
	moving bool // the key changes node in the first change (ADD)
	leader bool // the client talks to the leader pod (which runs the migrators)
	at     time.Time
}

const (
	rbPhaseSteady int32 = iota
	rbPhaseChanging
	rbPhaseMigrating
)

func rbBench(b *testing.B, nkeys, size int) {
	e := startClEnv(b, 4)
	seeds := e.addrs(0, 1, 2)
	for range 2 {
		e.startPod(seeds)
	}
	var leader string
	deadline := time.Now().Add(60 * time.Second)
	for {
		l, v, nodes, why := clAgreed(e.pods)
		if why == "" && v == "1" && nodes == clSortedNodes(seeds...) {
			leader = l
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("cluster did not settle: %s\n%s", why, e.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lp *clPod
	for _, p := range e.pods {
		if p.Hedge == leader {
			lp = p
		}
	}

	// Preload through the pods, ~1 MB per pipeline. The value is random
	// (printable): Redis LZF-compresses DUMP payloads, so a repetitive one
	// would move far fewer bytes than it stores.
	vrng := rand.New(rand.NewPCG(9, 9))
	vb := make([]byte, size)
	for i := range vb {
		vb[i] = byte('!' + vrng.IntN(94))
	}
	val := string(vb)
	batch := max(10, (1<<20)/size)
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = "bm:" + strconv.Itoa(i)
	}
	s := time.Now()
	for i, ks := range rbChunks(keys, batch) {
		p := e.pods[i%len(e.pods)].rdb.Pipeline()
		for _, k := range ks {
			p.Set(context.Background(), k, val, 0)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := p.Exec(ctx)
		cancel()
		if err != nil {
			b.Fatalf("preload: %v", err)
		}
	}
	b.Logf("preloaded %d keys of %d B in %v", nkeys, size, time.Since(s).Round(time.Millisecond))

	// Which keys the ADD moves: the same ring the cluster computes (names
	// are the addresses, weights 1).
	var seedNodes []ring.Node
	for _, a := range seeds {
		seedNodes = append(seedNodes, ring.Node{Addr: a})
	}
	rA, err := ring.New(1, seedNodes)
	if err != nil {
		b.Fatal(err)
	}
	rB, err := rA.Add(2, ring.Node{Addr: e.redis[3].Addr})
	if err != nil {
		b.Fatal(err)
	}
	moves := func(k string) bool {
		return rA.Node(rA.Owner([]byte(k))).Addr != rB.Node(rB.Owner([]byte(k))).Addr
	}

	// Paced clients.
	var phase atomic.Int32
	var tryAgain, errs, missing atomic.Int64
	var mu sync.Mutex
	var lats []rbLat
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := e.pods[g%len(e.pods)]
			onLeader := pod == lp
			rc := redis.NewClient(&redis.Options{Addr: pod.Addr})
			defer rc.Close()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			var mine []rbLat
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					mu.Lock()
					lats = append(lats, mine...)
					mu.Unlock()
					return
				case <-tick.C:
				}
				k := keys[rng.IntN(len(keys))]
				ph := phase.Load()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				var err error
				get := n%2 == 0
				if get {
					err = rc.Get(ctx, k).Err()
				} else {
					err = rc.Set(ctx, k, val, 0).Err()
				}
				d := time.Since(t0)
				cancel()
				switch {
				case err == nil:
				case errors.Is(err, redis.Nil): // every key is preloaded and never deleted
					missing.Add(1)
				case rbIsTryAgain(err):
					tryAgain.Add(1)
				default:
					if errs.Add(1) <= 5 {
						b.Logf("client error (phase %d, after %v): %v", ph, d.Round(time.Millisecond), err)
					}
				}
				if ph2 := phase.Load(); ph2 != ph {
					ph = rbPhaseChanging // straddled a boundary: neither steady nor migrating
				}
				mine = append(mine, rbLat{get, ph, d, moves(k), onLeader, t0})
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}()
	time.Sleep(3 * time.Second) // steady state

	extra := e.redis[3].Addr
	direct := clClient(b, extra)
	in := false
	var migrating, total time.Duration
	var windows [][2]time.Time // [start, end] of each migrating stage seen
	var moved, statusMoved, statusBytes int64
	var statusRate float64
	sawMigrating := false
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd, want := []string{"ADD", extra}, clSortedNodes(e.addrs(0, 1, 2, 3)...)
		if in {
			cmd, want = []string{"REMOVE", extra}, clSortedNodes(seeds...)
			ctx, cancel := clCtx()
			n, err := direct.DBSize(ctx).Result()
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			moved += n
		}
		phase.Store(rbPhaseChanging)
		s := time.Now()
		if r := lp.jupiterCmd(cmd...); r != "OK" {
			b.Fatalf("JUPITER %v: %s\n%s", cmd, r, e.logs())
		}
		var migStart time.Time
		for {
			st := lp.status()
			if st["stage"] == "migrating" {
				if migStart.IsZero() {
					migStart = time.Now()
					sawMigrating = true
				}
				phase.Store(rbPhaseMigrating)
			} else {
				if !migStart.IsZero() {
					migrating += time.Since(migStart)
					windows = append(windows, [2]time.Time{migStart, time.Now()})
					migStart = time.Time{}
				}
				phase.Store(rbPhaseChanging)
			}
			if n, err := strconv.ParseInt(st["rebalance_moved_keys"], 10, 64); err == nil && n > statusMoved {
				statusMoved = n
			}
			if n, err := strconv.ParseInt(st["rebalance_moved_bytes"], 10, 64); err == nil && n > statusBytes {
				statusBytes = n
			}
			if f, err := strconv.ParseFloat(st["rebalance_keys_per_sec"], 64); err == nil && f > statusRate {
				statusRate = f
			}
			done := true
			for _, p := range e.pods {
				if ps := p.status(); ps["stage"] != "stable" || ps["nodes"] != want {
					done = false
				}
			}
			if done {
				break
			}
			if time.Since(s) > 10*time.Minute {
				b.Fatalf("rebalance %v not done within 10 min: %v\n%s", cmd, st, e.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
		total += time.Since(s)
		if !in {
			ctx, cancel := clCtx()
			n, err := direct.DBSize(ctx).Result()
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			moved += n
		}
		in = !in
	}
	b.StopTimer()
	close(stop)
	wg.Wait()

	span := migrating
	if !sawMigrating {
		span = total
		b.Logf("no stage migrating seen in STATUS (no staged rebalance in this build?): rates are over the whole rebalance")
	}
	sec := span.Seconds()
	b.ReportMetric(float64(moved)/float64(b.N), "moved-keys")
	b.ReportMetric(migrating.Seconds()/float64(b.N), "migrating-s")
	b.ReportMetric(total.Seconds()/float64(b.N), "rebalance-s")
	if sec > 0 {
		b.ReportMetric(float64(moved)/sec, "keys/s")
		b.ReportMetric(float64(moved)*float64(size)/1e6/sec, "MB/s")
		b.ReportMetric(float64(statusBytes)/1e6/sec, "dump-MB/s")
	}
	b.ReportMetric(statusRate, "status-keys/s")
	p99 := func(get bool, ph int32) (float64, int) {
		var ds []time.Duration
		for _, l := range lats {
			if l.get == get && l.phase == ph {
				ds = append(ds, l.d)
			}
		}
		if len(ds) == 0 {
			return 0, 0
		}
		slices.Sort(ds)
		return float64(ds[len(ds)*99/100]) / float64(time.Microsecond), len(ds)
	}
	var samples []string
	for _, c := range []struct {
		get  bool
		ph   int32
		name string
	}{
		{true, rbPhaseSteady, "get-p99-us-steady"}, {true, rbPhaseMigrating, "get-p99-us-migrating"},
		{false, rbPhaseSteady, "set-p99-us-steady"}, {false, rbPhaseMigrating, "set-p99-us-migrating"},
	} {
		v, n := p99(c.get, c.ph)
		b.ReportMetric(v, c.name)
		samples = append(samples, fmt.Sprintf("%s=%d", c.name, n))
	}
	// Where the migrating p99 comes from: keys that move or stay, clients
	// of the leader (which runs the migrators) or of the other pod.
	split := func(f func(rbLat) bool) string {
		var ds []time.Duration
		for _, l := range lats {
			if l.phase == rbPhaseMigrating && f(l) {
				ds = append(ds, l.d)
			}
		}
		if len(ds) == 0 {
			return "-"
		}
		slices.Sort(ds)
		return fmt.Sprintf("%dus(n=%d)", ds[len(ds)*99/100].Microseconds(), len(ds))
	}
	b.Logf("migrating p99 by key: moving %s, staying %s; by pod: leader %s, other %s",
		split(func(l rbLat) bool { return l.moving }), split(func(l rbLat) bool { return !l.moving }),
		split(func(l rbLat) bool { return l.leader }), split(func(l rbLat) bool { return !l.leader }))
	// When the slowest migrating GETs happened: ms from the start of their
	// migrating window (as the leader's STATUS was polled, ~20-40 ms late
	// at both ends), to tell the stage's edges from its middle.
	var slow []rbLat
	for _, l := range lats {
		if l.get && l.phase == rbPhaseMigrating {
			slow = append(slow, l)
		}
	}
	slices.SortFunc(slow, func(a, b rbLat) int { return int(b.d - a.d) })
	var where []string
	for _, l := range slow[:min(len(slow), max(5, len(slow)/100))] {
		for _, w := range windows {
			if !l.at.Before(w[0].Add(-time.Second)) && l.at.Before(w[1]) {
				where = append(where, fmt.Sprintf("%dms@%d/%d", l.d.Milliseconds(), l.at.Sub(w[0]).Milliseconds(), w[1].Sub(w[0]).Milliseconds()))
				break
			}
		}
	}
	b.Logf("slowest migrating GETs (latency@start ms into the window/window ms): %s", strings.Join(where, " "))
	b.ReportMetric(float64(tryAgain.Load()), "tryagain")
	b.ReportMetric(float64(errs.Load()), "errors")
	b.ReportMetric(float64(missing.Load()), "get-nil")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d rebalance(s) of %d keys × %d B: moved %d keys (STATUS max rebalance_moved_keys %d, rebalance_moved_bytes %d), migrating %v of %v; samples %s",
		b.N, nkeys, size, moved, statusMoved, statusBytes, migrating.Round(time.Millisecond), total.Round(time.Millisecond), strings.Join(samples, " "))
}
