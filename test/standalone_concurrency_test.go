package test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStandaloneConcurrentClients runs 50 goroutines, each with its own
// go-redis client (default pool), doing mixed SET/GET/INCR/MGET/pipelines
// on their own keys for about 2 seconds. Every reply is checked against what
// that goroutine wrote: any error, lost write or reply crossed between
// clients fails the test. Afterwards every INCR counter equals the number of
// INCRs that goroutine saw succeed.
func TestStandaloneConcurrentClients(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	const (
		workers  = 50
		duration = 2 * time.Second
	)
	var (
		wg       sync.WaitGroup
		errCount atomic.Int64
		ops      atomic.Int64
		mu       sync.Mutex
		errs     []string
		incrs    [workers]int64
	)
	fail := func(format string, a ...any) {
		if errCount.Add(1) <= 20 {
			mu.Lock()
			errs = append(errs, fmt.Sprintf(format, a...))
			mu.Unlock()
		}
	}
	deadline := time.Now().Add(duration)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: e.c.Jupiter.Addr})
			defer c.Close()
			ctr := fmt.Sprintf("cc:%d:ctr", w)
			keys := []string{fmt.Sprintf("cc:%d:a", w), fmt.Sprintf("cc:%d:b", w), fmt.Sprintf("cc:%d:c", w)}
			for i := 0; time.Now().Before(deadline); i++ {
				ops.Add(1)
				k := keys[i%3]
				val := fmt.Sprintf("w%d:i%d", w, i)
				switch i % 5 {
				case 0, 1:
					if err := c.Set(ctx, k, val, 0).Err(); err != nil {
						fail("worker %d SET: %v", w, err)
						continue
					}
					if got, err := c.Get(ctx, k).Result(); err != nil || got != val {
						fail("worker %d GET %s = %q, %v; want %q", w, k, got, err, val)
					}
				case 2:
					n, err := c.Incr(ctx, ctr).Result()
					if err != nil {
						fail("worker %d INCR: %v", w, err)
						continue
					}
					incrs[w]++
					if n != incrs[w] {
						fail("worker %d INCR = %d, want %d", w, n, incrs[w])
					}
				case 3:
					if err := c.MSet(ctx, keys[0], val+"a", keys[1], val+"b", keys[2], val+"c").Err(); err != nil {
						fail("worker %d MSET: %v", w, err)
						continue
					}
					got, err := c.MGet(ctx, keys[2], "cc:none", keys[0], keys[1]).Result()
					if err != nil || len(got) != 4 || got[0] != val+"c" || got[1] != nil || got[2] != val+"a" || got[3] != val+"b" {
						fail("worker %d MGET = %v, %v; want [%sc <nil> %sa %sb]", w, got, err, val, val, val)
					}
				case 4:
					cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
						for j := 0; j < 10; j++ {
							p.Set(ctx, keys[j%3], fmt.Sprint(val, ":", j), 0)
							p.Get(ctx, keys[j%3])
						}
						return nil
					})
					if err != nil {
						fail("worker %d pipeline: %v", w, err)
						continue
					}
					for j := 0; j < 10; j++ {
						if got := cmds[2*j+1].(*redis.StringCmd).Val(); got != fmt.Sprint(val, ":", j) {
							fail("worker %d pipelined GET %d = %q", w, j, got)
						}
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if n := errCount.Load(); n > 0 {
		t.Errorf("%d errors in %d operations; first ones:", n, ops.Load())
		for _, s := range errs {
			t.Error("  " + s)
		}
	}
	t.Logf("%d clients, %d operations in %v", workers, ops.Load(), duration)
	// Final state: each counter equals the INCRs its goroutine performed.
	ctrs := make([]string, workers)
	for w := range ctrs {
		ctrs[w] = fmt.Sprintf("cc:%d:ctr", w)
	}
	got, err := e.j.MGet(ctx, ctrs...).Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for w, v := range got {
		total += incrs[w]
		if fmt.Sprint(v) != fmt.Sprint(incrs[w]) {
			t.Errorf("counter %s = %v, want %d", ctrs[w], v, incrs[w])
		}
	}
	if total < workers {
		t.Errorf("only %d INCRs in total: the clients barely ran", total)
	}
	// Every worker's keys are on the nodes, each on exactly one.
	all := append([]string{}, ctrs...)
	for w := 0; w < workers; w++ {
		all = append(all, fmt.Sprintf("cc:%d:a", w), fmt.Sprintf("cc:%d:b", w), fmt.Sprintf("cc:%d:c", w))
	}
	own := e.owners(t, all)
	seen := map[int]bool{}
	for _, o := range own {
		seen[o] = true
	}
	if len(seen) != len(e.nodes) {
		t.Errorf("the workers' keys used %d of %d nodes", len(seen), len(e.nodes))
	}
}
