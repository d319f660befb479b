package test

// Acceptance test of transactions (MULTI/EXEC/WATCH) and blocking commands
// (BLMOVE) across online rebalancing: the same cluster as
// TestRebalanceAddRemoveOracle (4 redis-servers, 2 pods, ring seeded with
// 3, a throttled migrator), and go-redis clients with default options that
// keep running optimistic-locking increments, atomic INCR pairs and a
// reliable queue (RPUSH producers, BLMOVE + LREM consumers) while the ring
// changes: JUPITER ADD, then REMOVE. What jupiter promises for these
// families (internal/proxy/tx.go, internal/proxy/blocking.go) is checked
// from the outside: no acknowledged increment lost or doubled, no pair torn,
// no queue item lost, duplicated or invented, and no error a client would
// not retry.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	rfCounters   = 64 // "{wc:i}", optimistic locking
	rfPairs      = 64 // "{tp:i}:a" and "{tp:i}:b", MULTI INCR INCR EXEC
	rfQueues     = 16 // "{bq:i}" and its "{bq:i}:work"
	rfGoroutines = 4  // per role
	rfPreload    = 6000
	// rfEarlyNil: a BLMOVE … 1 answered nil sooner than this did not wait
	// its timeout (a re-block must use the time left, not drop it).
	rfEarlyNil = 950 * time.Millisecond
)

func rfWCKey(i int) string { return "{wc:" + strconv.Itoa(i) + "}" }

func rfPairKeys(i int) (string, string) {
	p := "{tp:" + strconv.Itoa(i) + "}"
	return p + ":a", p + ":b"
}

func rfQueueKeys(i int) (string, string) {
	q := "{bq:" + strconv.Itoa(i) + "}"
	return q, q + ":work"
}

// rfFamily counts one family's operations by the cluster's stage when they
// were invoked, and those during which the stage changed.
type rfFamily struct {
	name         string
	ops, spanned atomic.Int64
	byStage      [len(rbStages)]atomic.Int64
}

func (f *rfFamily) String() string {
	var parts []string
	for i, s := range rbStages {
		if n := f.byStage[i].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", s, n))
		}
	}
	return fmt.Sprintf("%s: %d ops (by stage at invoke: %s), %d spanned a stage change",
		f.name, f.ops.Load(), strings.Join(parts, " "), f.spanned.Load())
}

// rfWork runs the client goroutines and records what they were told.
type rfWork struct {
	addrs                  []string
	stopW, stopC, stopPoll chan struct{} // writers and producers; consumers; the stage poller
	wgW, wgC, wgPoll       sync.WaitGroup
	stopOnce               [3]sync.Once
	stage                  atomic.Int32 // index in rbStages, as last polled
	stageSeq               atomic.Int64 // stage changes seen by the poller

	wc, tp, bq rfFamily

	// a) optimistic locking
	wcAcked, wcUnknown     [rfCounters]atomic.Int64
	wcTxFailed, wcTryAgain atomic.Int64
	wcTxFailedRb           atomic.Int64 // of wcTxFailed: outside stage stable
	// b) atomic pairs
	tpAcked, tpUnknown [rfPairs]atomic.Int64
	tpTryAgain, tpSkew atomic.Int64
	// c) the queue
	pushTryAgain, consTryAgain, lremMiss      atomic.Int64
	blmNil, blmItems, blmSpanItem, blmSpanNil atomic.Int64
	blmSpanMoving                             atomic.Int64    // BLMOVEs during a stage change on a queue that moves
	moving                                    map[string]bool // queues that move in the ADD or the REMOVE (read-only)

	mu        sync.Mutex
	pushed    map[string]int  // acknowledged push → queue
	pushMaybe map[string]bool // push with an unknown outcome
	consumed  map[string]int  // item → times a BLMOVE handed it out
	dups      []string
	nErr      int64
	errs      []string // samples of nErr, and every early nil
	nilEarly  int64    // BLMOVEs answered nil before their timeout
	nilMin    time.Duration
	nilMax    time.Duration
	clients   []*rbClients
}

func newRFWork(addrs []string) *rfWork {
	return &rfWork{addrs: addrs, stopW: make(chan struct{}), stopC: make(chan struct{}), stopPoll: make(chan struct{}),
		wc: rfFamily{name: "WATCH increments"}, tp: rfFamily{name: "MULTI INCR pairs"}, bq: rfFamily{name: "BLMOVE"},
		pushed: map[string]int{}, pushMaybe: map[string]bool{}, consumed: map[string]int{}}
}

func rfClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// begin starts an operation of f; the func it returns ends it and reports
// whether the cluster's stage changed meanwhile (spanned) and whether the
// operation ran, at least in part, outside stage stable.
func (w *rfWork) begin(f *rfFamily) func() (spanned, rebalancing bool) {
	st, seq := w.stage.Load(), w.stageSeq.Load()
	return func() (bool, bool) {
		f.ops.Add(1)
		f.byStage[st].Add(1)
		if w.stageSeq.Load() != seq {
			f.spanned.Add(1)
			return true, true
		}
		return false, st != 0
	}
}

// fail records a client error that is not one of the allowed, retried ones.
func (w *rfWork) fail(what, addr string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nErr++
	if len(w.errs) < 20 {
		w.errs = append(w.errs, fmt.Sprintf("%s %s via %s: %v", time.Now().Format("15:04:05.000"), what, addr, err))
	}
}

// rfUnknown: the error is not a reply (network, timeout, context), so the
// command may or may not have run.
func rfUnknown(err error) bool {
	var re redis.Error
	return !errors.As(err, &re)
}

// poll follows the cluster's stage (the first pod not stable) every 50 ms.
func (w *rfWork) poll(pods []*clPod) {
	defer w.wgPoll.Done()
	prev := int32(0)
	for {
		select {
		case <-w.stopPoll:
			return
		case <-time.After(50 * time.Millisecond):
		}
		cur := "stable"
		for _, p := range pods {
			if s := p.status()["stage"]; s != "" && s != "stable" {
				cur = s
				break
			}
		}
		i := int32(slices.Index(rbStages[:], cur))
		if i < 0 {
			i = int32(len(rbStages) - 1)
		}
		if i != prev {
			w.stage.Store(i)
			w.stageSeq.Add(1)
			prev = i
		}
	}
}

// loop runs body until stop is closed, on goroutine g's own clients.
func (w *rfWork) loop(stop chan struct{}, wg *sync.WaitGroup, g int, pace time.Duration, body func(c *rbClients, addr string, rng *rand.Rand)) {
	c := &rbClients{}
	w.mu.Lock()
	w.clients = append(w.clients, c)
	w.mu.Unlock()
	addr := w.addrs[g%len(w.addrs)]
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		for !rfClosed(stop) {
			body(c, addr, rng)
			if pace > 0 {
				time.Sleep(pace)
			}
		}
	}()
}

func rfCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// watchIncr is a): WATCH k, GET k, MULTI SET k n+1 EXEC, retried on
// TxFailedErr and TRYAGAIN until acknowledged (or the workload stops).
func (w *rfWork) watchIncr(c *rbClients, addr string, rng *rand.Rand) {
	rc := c.get(addr)
	i := rng.IntN(rfCounters)
	k := rfWCKey(i)
	for {
		end := w.begin(&w.wc)
		ctx, cancel := rfCtx()
		err := rc.Watch(ctx, func(tx *redis.Tx) error {
			n, err := tx.Get(ctx, k).Int64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, k, n+1, 0)
				return nil
			})
			return err
		}, k)
		cancel()
		_, rebalancing := end()
		switch {
		case err == nil:
			w.wcAcked[i].Add(1)
			return
		case errors.Is(err, redis.TxFailedErr):
			w.wcTxFailed.Add(1)
			if rebalancing {
				w.wcTxFailedRb.Add(1)
			}
		case rbIsTryAgain(err):
			w.wcTryAgain.Add(1)
			time.Sleep(20 * time.Millisecond)
		default:
			if rfUnknown(err) {
				w.wcUnknown[i].Add(1)
			}
			w.fail("WATCH increment of "+k, addr, err)
			return
		}
		if rfClosed(w.stopW) {
			return // the last attempt did not run: nothing to record
		}
	}
}

// pairIncr is b): MULTI INCR a INCR b EXEC, retried on TRYAGAIN.
func (w *rfWork) pairIncr(c *rbClients, addr string, rng *rand.Rand) {
	rc := c.get(addr)
	i := rng.IntN(rfPairs)
	a, b := rfPairKeys(i)
	for {
		var ia, ib *redis.IntCmd
		end := w.begin(&w.tp)
		ctx, cancel := rfCtx()
		_, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
			ia = p.Incr(ctx, a)
			ib = p.Incr(ctx, b)
			return nil
		})
		cancel()
		end()
		switch {
		case err == nil:
			w.tpAcked[i].Add(1)
			// Every change of a and b is one of these transactions: inside
			// one, both INCRs see the same count.
			if ia.Val() != ib.Val() {
				w.tpSkew.Add(1)
				w.fail("INCR pair "+a, addr, fmt.Errorf("EXEC replied INCR a=%d INCR b=%d: the pair is torn", ia.Val(), ib.Val()))
			}
			return
		case rbIsTryAgain(err):
			w.tpTryAgain.Add(1)
			time.Sleep(20 * time.Millisecond)
		default:
			if rfUnknown(err) {
				w.tpUnknown[i].Add(1)
			}
			w.fail("MULTI INCR pair "+a, addr, err)
			return
		}
		if rfClosed(w.stopW) {
			return
		}
	}
}

// push is one producer step of c): RPUSH a unique item to a random queue,
// the same item again after a TRYAGAIN (which means it was not pushed).
func (w *rfWork) push(g int) func(c *rbClients, addr string, rng *rand.Rand) {
	n := 0
	return func(c *rbClients, addr string, rng *rand.Rand) {
		rc := c.get(addr)
		q := rng.IntN(rfQueues)
		src, _ := rfQueueKeys(q)
		item := fmt.Sprintf("p%d-%d", g, n)
		n++
		for {
			ctx, cancel := rfCtx()
			err := rc.RPush(ctx, src, item).Err()
			cancel()
			switch {
			case err == nil:
				w.mu.Lock()
				w.pushed[item] = q
				w.mu.Unlock()
				return
			case rbIsTryAgain(err):
				w.pushTryAgain.Add(1)
				time.Sleep(20 * time.Millisecond)
			default:
				if rfUnknown(err) {
					w.mu.Lock()
					w.pushMaybe[item] = true
					w.mu.Unlock()
				}
				w.fail("RPUSH "+src+" "+item, addr, err)
				return
			}
			if rfClosed(w.stopW) {
				return
			}
		}
	}
}

// consumer is goroutine g's consumer step of c): while the producers run,
// on a random queue each time; once they stopped (the drain), it sweeps
// the queues from its own offset, staying on one until BLMOVE times out
// there (random picks would spend a 1 s timeout on every empty queue they
// hit, and the last items could wait minutes).
func (w *rfWork) consumer(g int) func(c *rbClients, addr string, rng *rand.Rand) {
	next := g * rfQueues / rfGoroutines
	return func(c *rbClients, addr string, rng *rand.Rand) {
		if !rfClosed(w.stopW) {
			w.consume(c, addr, rng.IntN(rfQueues))
			return
		}
		if !w.consume(c, addr, next) {
			next = (next + 1) % rfQueues
		}
	}
}

// consume is one consumer step: BLMOVE from queue q to its work list (1 s
// timeout), then LREM the item from the work list. It reports whether it
// got an item.
func (w *rfWork) consume(c *rbClients, addr string, q int) bool {
	rc := c.get(addr)
	src, work := rfQueueKeys(q)
	end := w.begin(&w.bq)
	ctx, cancel := rfCtx()
	t0 := time.Now()
	item, err := rc.BLMove(ctx, src, work, "LEFT", "RIGHT", time.Second).Result()
	took := time.Since(t0)
	cancel()
	spanned, _ := end()
	if spanned && w.moving[src] {
		w.blmSpanMoving.Add(1)
	}
	switch {
	case errors.Is(err, redis.Nil):
		w.blmNil.Add(1)
		if spanned {
			w.blmSpanNil.Add(1)
		}
		w.mu.Lock()
		if w.nilMin == 0 || took < w.nilMin {
			w.nilMin = took
		}
		w.nilMax = max(w.nilMax, took)
		if took < rfEarlyNil {
			w.nilEarly++
		}
		if took < rfEarlyNil && len(w.errs) < 40 {
			w.errs = append(w.errs, fmt.Sprintf("%s BLMOVE %s … 1 via %s: nil after %v, before its 1 s timeout (stage change during it: %v)",
				time.Now().Format("15:04:05.000"), src, addr, took.Round(time.Millisecond), spanned))
		}
		w.mu.Unlock()
		return false
	case rbIsTryAgain(err):
		w.consTryAgain.Add(1)
		time.Sleep(20 * time.Millisecond)
		return false
	case err != nil:
		w.fail("BLMOVE "+src, addr, err)
		return false
	}
	w.blmItems.Add(1)
	if spanned {
		w.blmSpanItem.Add(1)
	}
	w.mu.Lock()
	w.consumed[item]++
	if w.consumed[item] == 2 {
		w.dups = append(w.dups, item+" (from "+src+")")
	}
	w.mu.Unlock()
	for {
		ctx, cancel := rfCtx()
		n, err := rc.LRem(ctx, work, 1, item).Result()
		cancel()
		switch {
		case err == nil:
			if n != 1 {
				w.lremMiss.Add(1)
				w.fail("LREM "+work+" 1 "+item, addr, fmt.Errorf("removed %d, want 1: the item BLMOVE put there is gone", n))
			}
			return true
		case rbIsTryAgain(err):
			w.consTryAgain.Add(1)
			time.Sleep(20 * time.Millisecond)
		default:
			w.fail("LREM "+work+" 1 "+item, addr, err)
			return true
		}
	}
}

func (w *rfWork) start(pods []*clPod) {
	w.wgPoll.Add(1)
	go w.poll(pods)
	g := 0
	for range rfGoroutines {
		w.loop(w.stopW, &w.wgW, g, 500*time.Microsecond, w.watchIncr)
		g++
	}
	for range rfGoroutines {
		w.loop(w.stopW, &w.wgW, g, 500*time.Microsecond, w.pairIncr)
		g++
	}
	// Producers slower than the consumers, so that the queues are often
	// empty and consumers are blocked when the stages change.
	for p := range rfGoroutines {
		w.loop(w.stopW, &w.wgW, g, 20*time.Millisecond, w.push(p))
		g++
	}
	for c := range rfGoroutines {
		w.loop(w.stopC, &w.wgC, g, 0, w.consumer(c))
		g++
	}
}

func (w *rfWork) stopWriters() {
	w.stopOnce[0].Do(func() { close(w.stopW) })
	w.wgW.Wait()
}

func (w *rfWork) stopConsumers() {
	w.stopOnce[1].Do(func() { close(w.stopC) })
	w.wgC.Wait()
}

// shutdown stops everything (idempotent) and closes the clients; it
// returns the TRYAGAIN replies and read timeouts the connections saw.
func (w *rfWork) shutdown() (wireTryAgain, wireTimeouts int64) {
	w.stopWriters()
	w.stopConsumers()
	w.stopOnce[2].Do(func() { close(w.stopPoll) })
	w.wgPoll.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.clients {
		wireTryAgain += c.wire.tryAgain.Load()
		wireTimeouts += c.wire.timeouts.Load()
		c.close()
	}
	w.clients = nil
	return wireTryAgain, wireTimeouts
}

// rfQueueLens returns the total length of every queue and work list.
func rfQueueLens(ctx context.Context, rc *redis.Client) (int64, string, error) {
	p := rc.Pipeline()
	var cmds []*redis.IntCmd
	var keys []string
	for i := range rfQueues {
		src, work := rfQueueKeys(i)
		keys = append(keys, src, work)
		cmds = append(cmds, p.LLen(ctx, src), p.LLen(ctx, work))
	}
	if _, err := p.Exec(ctx); err != nil {
		return 0, "", err
	}
	var total int64
	var nonEmpty []string
	for j, c := range cmds {
		if n := c.Val(); n > 0 {
			total += n
			nonEmpty = append(nonEmpty, fmt.Sprintf("%s=%d", keys[j], n))
		}
	}
	return total, strings.Join(nonEmpty, " "), nil
}

// TestRebalanceTxAndBlocking: 4 redis-servers, 2 pods (--migrate-keys-per-sec
// 300, so each migration lasts seconds), ring seeded with 3 nodes and 6,000
// plain keys for the migrator. Throughout JUPITER ADD of the 4th node and
// then REMOVE of an original one (each waited for until both pods are
// stable on the new ring), go-redis clients with default options, spread
// over both pods, run
//
//	a) optimistic locking: WATCH {wc:i}, GET, MULTI SET n+1 EXEC, retried
//	   on a nil EXEC (TxFailedErr) or TRYAGAIN;
//	b) atomic pairs: MULTI INCR {tp:i}:a INCR {tp:i}:b EXEC, retried on
//	   TRYAGAIN;
//	c) a reliable queue: RPUSH of unique items to random queues {bq:i};
//	   consumers BLMOVE {bq:i} → {bq:i}:work (1 s timeout) on a random
//	   queue, then LREM the item. The producers are slow enough that
//	   consumers are mostly blocked, so stage changes catch some of them.
//
// A second after the REMOVE, writers and producers stop and the consumers
// drain the queues (at most 30 s). Then: every counter equals its
// acknowledged increments exactly; every pair has a == b, and acked ≤ a ≤
// acked + unknown outcomes; every INCR pair's EXEC reply had equal counts;
// every acknowledged push was consumed exactly once, nothing consumed that
// was not pushed, every LREM found its item, every queue and work list is
// empty; no BLMOVE answered nil before its 1 s timeout (a re-block keeps
// the time left); no client error other than TRYAGAIN and nil EXECs (no pod
// is killed here); the preloaded keys are intact; on the nodes directly, no
// key of these families lives outside its owner under the final ring, the
// removed node is empty and no marker is left.
func TestRebalanceTxAndBlocking(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end rebalance test; skipped with -short")
	}
	start := time.Now()
	e := startClEnv(t, 4)
	seeds := e.addrs(0, 1, 2)
	for range 2 {
		e.startPod(seeds, "--migrate-keys-per-sec", "300")
	}
	rbSettle(t, e, seeds)
	added, removed := e.redis[3].Addr, e.redis[0].Addr
	nodes4, nodes3 := e.addrs(0, 1, 2, 3), e.addrs(1, 2, 3)

	// Preload plain keys, so that the migrator has work and each
	// migration lasts seconds.
	s := time.Now()
	pre := make([]string, rfPreload)
	for i := range pre {
		pre[i] = "rf:s:" + strconv.Itoa(i)
	}
	for b, ks := range rbChunks(pre, 500) {
		ctx, cancel := clCtx()
		p := e.pods[b%len(e.pods)].rdb.Pipeline()
		for _, k := range ks {
			p.Set(ctx, k, "v:"+k, 0)
		}
		_, err := p.Exec(ctx)
		cancel()
		if err != nil {
			t.Fatalf("preload: %v", err)
		}
	}
	t.Logf("preloaded %d keys in %v; per node: %s", len(pre), time.Since(s).Round(time.Millisecond), rbNodeKeys(t, e))

	// Which keys of the families move in each rebalance.
	r0, r1, r2 := clRing(t, 1, seeds...), clRing(t, 2, nodes4...), clRing(t, 3, nodes3...)
	moving := map[string]bool{}
	mv := func(keys []string) (add, rem int) {
		for _, k := range keys {
			if r0.Node(r0.Owner([]byte(k))).Addr != r1.Node(r1.Owner([]byte(k))).Addr {
				add++
				moving[k] = true
			}
			if r1.Node(r1.Owner([]byte(k))).Addr != r2.Node(r2.Owner([]byte(k))).Addr {
				rem++
				moving[k] = true
			}
		}
		return add, rem
	}
	var wcKeys, tpKeys, bqKeys []string
	for i := range rfCounters {
		wcKeys = append(wcKeys, rfWCKey(i))
	}
	for i := range rfPairs {
		a, _ := rfPairKeys(i)
		tpKeys = append(tpKeys, a)
	}
	for i := range rfQueues {
		q, _ := rfQueueKeys(i)
		bqKeys = append(bqKeys, q)
	}
	wcA, wcR := mv(wcKeys)
	tpA, tpR := mv(tpKeys)
	bqA, bqR := mv(bqKeys)
	t.Logf("moving in the ADD / the REMOVE: %d/%d of %d counters, %d/%d of %d pairs, %d/%d of %d queues",
		wcA, wcR, rfCounters, tpA, tpR, rfPairs, bqA, bqR, rfQueues)
	if bqA+bqR == 0 {
		t.Logf("NOTE: no queue moves with these node addresses: the blocking path is not exercised by this run")
	}

	w := newRFWork(rbPodAddrs(e.pods))
	w.moving = moving
	w.start(e.pods)
	defer w.shutdown()
	time.Sleep(2 * time.Second) // steady state before the change

	ra, since := rbStart(t, e, e.pods[1], "ADD", added)
	rbStaged(t, e.pods[1], ra, since, clSortedNodes(seeds...), clSortedNodes(nodes4...))
	rbWait(t, e, nil, ra, since, clSortedNodes(nodes4...))
	t.Logf("rebalance 1 %v", ra)
	t.Logf("per node after the ADD: %s", rbNodeKeys(t, e))
	time.Sleep(time.Second)

	rr, since := rbStart(t, e, e.pods[0], "REMOVE", removed)
	rbStaged(t, e.pods[0], rr, since, clSortedNodes(nodes4...), clSortedNodes(nodes3...))
	rbWait(t, e, nil, rr, since, clSortedNodes(nodes3...))
	t.Logf("rebalance 2 %v", rr)
	time.Sleep(time.Second)
	w.stopWriters()

	// Let the consumers drain the queues.
	drainStart := time.Now()
	var left int64
	var leftKeys string
	for {
		ctx, cancel := clCtx()
		n, ks, err := rfQueueLens(ctx, e.pods[0].rdb)
		cancel()
		if err != nil {
			t.Fatalf("LLEN of the queues: %v", err)
		}
		left, leftKeys = n, ks
		if n == 0 || time.Since(drainStart) > 30*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	drained := time.Since(drainStart)
	w.stopConsumers()
	wireTryAgain, wireTimeouts := w.shutdown()
	t.Logf("per node after the REMOVE: %s", rbNodeKeys(t, e))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods := e.pods

	// a) Counters: exactly the acknowledged increments.
	var wcAcked, wcUnknown int64
	wcBad := 0
	for i := range rfCounters {
		k := rfWCKey(i)
		v, err := pods[i%len(pods)].rdb.Get(ctx, k).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("final GET %s: %v", k, err)
		}
		acked, unk := w.wcAcked[i].Load(), w.wcUnknown[i].Load()
		wcAcked += acked
		wcUnknown += unk
		if v < acked || v > acked+unk {
			wcBad++
			if wcBad <= 10 {
				t.Errorf("counter %s = %d, want %d (acknowledged WATCH increments; %d with unknown outcome)", k, v, acked, unk)
			}
		}
	}

	// b) Pairs: a == b, acked ≤ a ≤ acked + unknown.
	var tpAcked, tpUnknown int64
	tpBad := 0
	for i := range rfPairs {
		a, b := rfPairKeys(i)
		vs, err := pods[i%len(pods)].rdb.MGet(ctx, a, b).Result()
		if err != nil {
			t.Fatalf("final MGET %s %s: %v", a, b, err)
		}
		num := func(x any) int64 {
			s, _ := x.(string)
			n, _ := strconv.ParseInt(s, 10, 64)
			return n
		}
		va, vb := num(vs[0]), num(vs[1])
		acked, unk := w.tpAcked[i].Load(), w.tpUnknown[i].Load()
		tpAcked += acked
		tpUnknown += unk
		if va != vb || va < acked || va > acked+unk {
			tpBad++
			if tpBad <= 10 {
				t.Errorf("pair %s=%v %s=%v: want equal and within [%d, %d] (acknowledged transactions, + unknown outcomes)",
					a, vs[0], b, vs[1], acked, acked+unk)
			}
		}
	}
	if n := w.tpSkew.Load(); n > 0 {
		t.Errorf("%d EXEC replies of an INCR pair had different counts for a and b", n)
	}

	// c) The queue: every acknowledged push consumed exactly once, nothing
	// else consumed, everything empty.
	w.mu.Lock()
	lost, phantom := 0, 0
	var lostEx, phantomEx []string
	for item := range w.pushed {
		if w.consumed[item] == 0 {
			lost++
			if len(lostEx) < 10 {
				src, _ := rfQueueKeys(w.pushed[item])
				lostEx = append(lostEx, item+" ("+src+")")
			}
		}
	}
	for item := range w.consumed {
		if _, ok := w.pushed[item]; !ok && !w.pushMaybe[item] {
			phantom++
			if len(phantomEx) < 10 {
				phantomEx = append(phantomEx, item)
			}
		}
	}
	dups := slices.Clone(w.dups)
	nPushed, nConsumed, nMaybe := len(w.pushed), len(w.consumed), len(w.pushMaybe)
	nErr, errs := w.nErr, slices.Clone(w.errs)
	nilEarly, nilMin, nilMax := w.nilEarly, w.nilMin, w.nilMax
	w.mu.Unlock()
	if lost > 0 {
		t.Errorf("%d acknowledged pushes never consumed, e.g. %v (queues and work lists left: %s)", lost, lostEx, leftKeys)
	}
	if phantom > 0 {
		t.Errorf("%d consumed items were never pushed (or their push failed with TRYAGAIN), e.g. %v", phantom, phantomEx)
	}
	if len(dups) > 0 {
		t.Errorf("%d items consumed twice, e.g. %v", len(dups), dups[:min(10, len(dups))])
	}
	if nilEarly > 0 {
		t.Errorf("%d BLMOVEs with a 1 s timeout answered nil after less than %v (see the client errors below)", nilEarly, rfEarlyNil)
	}
	if n := w.lremMiss.Load(); n > 0 {
		t.Errorf("%d LREMs did not find the item BLMOVE had just put in the work list", n)
	}
	if left > 0 {
		t.Errorf("queues and work lists not empty %v after the producers stopped: %s", drained.Round(time.Millisecond), leftKeys)
	}
	if n, ks, err := rfQueueLens(ctx, pods[1].rdb); err != nil || n > 0 {
		t.Errorf("after the consumers stopped, queues and work lists hold %d items (%v): %s", n, err, ks)
	}

	// The preloaded keys are intact.
	preBad := 0
	for b, ks := range rbChunks(pre, 500) {
		vs, err := pods[b%len(pods)].rdb.MGet(ctx, ks...).Result()
		if err != nil {
			t.Fatalf("final MGET of preloaded keys: %v", err)
		}
		for j, k := range ks {
			if vs[j] != "v:"+k {
				preBad++
				if preBad <= 5 {
					t.Errorf("preloaded %s = %v, want %q", k, vs[j], "v:"+k)
				}
			}
		}
	}

	// On the nodes directly: no marker left, the removed node empty, every
	// key of these families on its owner under the final ring.
	direct := map[string]*redis.Client{}
	for _, r := range e.redis {
		direct[r.Addr] = clClient(t, r.Addr)
	}
	rbNoMarkers(t, ctx, e, direct, 60*time.Second, false)
	for _, pat := range []string{"{wc:*", "{tp:*", "{bq:*"} {
		if ks := rbScan(t, ctx, direct[removed], pat, 10); len(ks) > 0 {
			t.Errorf("the removed node %s still holds keys %s, e.g. %q", removed, pat, ks)
		}
	}
	took, why := rbPoll(30*time.Second, func() string {
		if n, err := direct[removed].DBSize(ctx).Result(); err != nil || n != 0 {
			return fmt.Sprintf("DBSIZE %d %v; e.g. %q", n, err, rbScan(t, ctx, direct[removed], "*", 5))
		}
		return ""
	})
	if why != "" {
		t.Errorf("removed node %s not drained %v after the REMOVE: %s", removed, took.Round(time.Millisecond), why)
	}
	misplaced, famKeys := 0, 0
	for _, a := range nodes3 {
		for _, pat := range []string{"{wc:*", "{tp:*", "{bq:*"} {
			for _, k := range rbScan(t, ctx, direct[a], pat, -1) {
				famKeys++
				if owner := r2.Node(r2.Owner([]byte(k))).Addr; owner != a {
					misplaced++
					if misplaced <= 10 {
						t.Errorf("key %q is on %s but its owner under the final ring is %s", k, a, owner)
					}
				}
			}
		}
	}

	// Client errors: only TRYAGAIN and nil EXECs are allowed (retried).
	if nErr > 0 {
		t.Errorf("%d client errors other than TRYAGAIN and nil EXEC", nErr)
	}
	if len(errs) > 0 {
		t.Logf("client errors and early nils (first %d):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	if t.Failed() {
		t.Logf("pod logs:\n%s", e.logs())
	}

	t.Logf("a) WATCH counters: %d acknowledged increments (%d unknown outcome), %d counters wrong; retries: %d nil EXEC (TxFailedErr; %d of them outside stage stable), %d TRYAGAIN",
		wcAcked, wcUnknown, wcBad, w.wcTxFailed.Load(), w.wcTxFailedRb.Load(), w.wcTryAgain.Load())
	t.Logf("b) MULTI pairs: %d acknowledged transactions (%d unknown outcome), %d pairs wrong, %d torn EXEC replies; retries: %d TRYAGAIN",
		tpAcked, tpUnknown, tpBad, w.tpSkew.Load(), w.tpTryAgain.Load())
	t.Logf("c) queue: %d items pushed (acknowledged; %d unknown), %d consumed (%d BLMOVEs handed out an item, %d timed out; "+
		"%d items and %d timeouts on a BLMOVE during which the stage changed, %d of those on a moving queue), %d lost, %d phantom, %d duplicates, %d LREM misses; "+
		"nil BLMOVEs took %v..%v; retries: %d TRYAGAIN on RPUSH, %d on BLMOVE/LREM; drained in %v",
		nPushed, nMaybe, nConsumed, w.blmItems.Load(), w.blmNil.Load(), w.blmSpanItem.Load(), w.blmSpanNil.Load(), w.blmSpanMoving.Load(),
		lost, phantom, len(dups), w.lremMiss.Load(), nilMin.Round(time.Millisecond), nilMax.Round(time.Millisecond),
		w.pushTryAgain.Load(), w.consTryAgain.Load(), drained.Round(time.Millisecond))
	for _, f := range []*rfFamily{&w.wc, &w.tp, &w.bq} {
		t.Logf("   %v", f)
	}
	t.Logf("on the wire: %d TRYAGAIN replies (go-redis retried most by itself), %d read timeouts; %d client errors",
		wireTryAgain, wireTimeouts, nErr)
	t.Logf("rebalances: ADD took %v (migrating %v, %d/%d keys moved), REMOVE took %v (migrating %v, %d/%d keys moved)",
		ra.Took.Round(time.Millisecond), ra.Migrating.Round(time.Millisecond), ra.Moved, ra.Total,
		rr.Took.Round(time.Millisecond), rr.Migrating.Round(time.Millisecond), rr.Moved, rr.Total)
	t.Logf("end state: %d preloaded keys (%d wrong), %d family keys on the final nodes (%d misplaced); test took %v",
		len(pre), preBad, famKeys, misplaced, time.Since(start).Round(time.Millisecond))
}
