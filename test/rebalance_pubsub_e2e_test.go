package test

// Acceptance test of pub/sub across online rebalancing: the cluster of
// TestRebalanceTxAndBlocking (4 redis-servers, 2 pods, ring seeded with 3, a
// throttled migrator), go-redis subscribers (default options) on both pods,
// publishers on both pods, and JUPITER ADD then REMOVE while they run.
//
// What jupiter promises (internal/proxy/pubsub.go): while a channel's slot
// moves, its subscribers listen on both the old and the new owner from
// PREPARE until COMMIT (patterns on every node of both rings), and PUBLISH
// goes to the new owner from FREEZE on, once every pod acknowledged
// PREPARE. So every PUBLISH reaches every subscriber once: its reply counts
// all of them, none is lost and none duplicated.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	rpChannels    = 32 // "{ch:i}"
	rpPatChannels = 16 // "pat:j", matched by "pat:*"
	rpPattern     = "pat:*"
	rpSubscribers = 4 // 2 per pod
	rpPublishers  = 4 // alternating pods
	rpPreload     = 6000
	rpPace        = time.Millisecond // between two PUBLISHes of one publisher
)

func rpChannel(i int) string { return "{ch:" + strconv.Itoa(i) + "}" }

// rpPub is one PUBLISH and what it was told.
type rpPub struct {
	pub, seq int
	ch       string
	at, took time.Duration // since the workload started; how long it took
	n        int64         // reply count
	err      error
	stage    string // cluster stage (first pod not stable) when it was sent
}

// rpStageEv is a pod's stage change as polled.
type rpStageEv struct {
	at    time.Duration
	pod   int
	stage string
}

// rpSub is one subscriber: what it received, per channel and publisher in
// arrival order.
type rpSub struct {
	id    int
	addr  string
	c     *redis.Client
	ps    *redis.PubSub
	mu    sync.Mutex
	got   map[string][]int // channel + "|" + publisher → sequence numbers, arrival order
	bad   []string         // messages that are not ours, or on the wrong pattern
	errs  []string         // receive errors (a dropped connection loses messages)
	total atomic.Int64
	done  chan struct{}
}

type rpWork struct {
	start    time.Time
	stop     chan struct{}
	stopPoll chan struct{}
	wg       sync.WaitGroup
	wgPoll   sync.WaitGroup

	mu     sync.Mutex
	pubs   []rpPub
	stages []rpStageEv
	stage  atomic.Value // string: the cluster's stage as last polled
}

func (w *rpWork) now() time.Duration { return time.Since(w.start) }

// poll records every pod's stage changes every 25 ms.
func (w *rpWork) poll(pods []*clPod) {
	defer w.wgPoll.Done()
	prev := make([]string, len(pods))
	for {
		select {
		case <-w.stopPoll:
			return
		case <-time.After(25 * time.Millisecond):
		}
		cur := "stable"
		for i, p := range pods {
			s := p.status()["stage"]
			if s == "" {
				s = "?"
			}
			if s != prev[i] {
				w.mu.Lock()
				w.stages = append(w.stages, rpStageEv{w.now(), i, s})
				w.mu.Unlock()
				prev[i] = s
			}
			if s != "stable" && cur == "stable" {
				cur = s
			}
		}
		w.stage.Store(cur)
	}
}

// at describes every pod's stage at d (from the polled timeline).
func (w *rpWork) at(d time.Duration) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	per := map[int]rpStageEv{}
	for _, ev := range w.stages {
		if ev.at <= d {
			per[ev.pod] = ev
		}
	}
	var parts []string
	for pod := range 2 {
		if ev, ok := per[pod]; ok {
			parts = append(parts, fmt.Sprintf("pod%d %s (since %v)", pod, ev.stage, ev.at.Round(time.Millisecond)))
		}
	}
	return strings.Join(parts, ", ")
}

// publisher publishes "<g>-<n>" to random channels and pattern channels
// until stop, recording every reply.
func (w *rpWork) publisher(g int, addr string) {
	defer w.wg.Done()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	rng := rand.New(rand.NewPCG(uint64(g), 11))
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		var ch string
		if rng.IntN(4) == 0 {
			ch = "pat:" + strconv.Itoa(rng.IntN(rpPatChannels))
		} else {
			ch = rpChannel(rng.IntN(rpChannels))
		}
		st, _ := w.stage.Load().(string)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		at := w.now()
		cnt, err := c.Publish(ctx, ch, strconv.Itoa(g)+"-"+strconv.Itoa(n)).Result()
		took := w.now() - at
		cancel()
		w.mu.Lock()
		w.pubs = append(w.pubs, rpPub{pub: g, seq: n, ch: ch, at: at, took: took, n: cnt, err: err, stage: st})
		w.mu.Unlock()
		time.Sleep(rpPace)
	}
}

// receive runs a subscriber's receive loop until its PubSub is closed.
func (s *rpSub) receive(w *rpWork) {
	defer close(s.done)
	for {
		v, err := s.ps.ReceiveTimeout(context.Background(), time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, redis.ErrClosed) || rfClosed(w.stopPoll) {
				return
			}
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Sprintf("+%v %v", w.now().Round(time.Millisecond), err))
			s.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		m, ok := v.(*redis.Message)
		if !ok {
			continue // subscription confirmations (also after a reconnect), pongs
		}
		s.total.Add(1)
		pub, seq, ok1 := strings.Cut(m.Payload, "-")
		n, err := strconv.Atoi(seq)
		wantPat := ""
		if strings.HasPrefix(m.Channel, "pat:") {
			wantPat = rpPattern
		}
		s.mu.Lock()
		if !ok1 || err != nil || m.Pattern != wantPat {
			if len(s.bad) < 20 {
				s.bad = append(s.bad, fmt.Sprintf("channel %q pattern %q payload %q", m.Channel, m.Pattern, m.Payload))
			}
		} else {
			k := m.Channel + "|" + pub
			s.got[k] = append(s.got[k], n)
		}
		s.mu.Unlock()
	}
}

// TestRebalancePubSub: 4 redis-servers, 2 pods (--migrate-keys-per-sec 300,
// so each migration lasts seconds), ring seeded with 3 nodes and 6,000
// plain keys for the migrator. 4 go-redis subscribers (default options, 2
// per pod) each SUBSCRIBE to the 32 channels "{ch:i}" and PSUBSCRIBE
// "pat:*"; 4 publishers (alternating pods) PUBLISH "<publisher>-<n>" to
// random channels and "pat:<j>" channels throughout JUPITER ADD of the 4th
// node and then REMOVE of an original one (each waited for until both pods
// are stable on the new ring). Then:
//   - every PUBLISH answered without error and counted exactly 4 receivers
//     (a lower count means some subscriber did not listen where the message
//     was published; each one is reported with the stage timeline);
//   - every PUBLISH answered without error reached every subscriber exactly
//     once (no loss, no duplicate), nothing else arrived;
//   - per subscriber, publisher and channel, messages arrived in publish
//     order;
//   - no subscriber saw a receive error (no node dies here);
//   - afterwards, on the nodes directly: every channel is subscribed 4
//     times on its final owner and nowhere else, the pattern once per
//     final node, and the removed node has no pubsub client left.
func TestRebalancePubSub(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end rebalance test; skipped with -short")
	}
	testStart := time.Now()
	e := startClEnv(t, 4)
	seeds := e.addrs(0, 1, 2)
	for range 2 {
		e.startPod(seeds, "--migrate-keys-per-sec", "300")
	}
	rbSettle(t, e, seeds)
	added, removed := e.redis[3].Addr, e.redis[0].Addr
	nodes4, nodes3 := e.addrs(0, 1, 2, 3), e.addrs(1, 2, 3)

	// Preload plain keys so that each migration lasts seconds.
	pre := make([]string, rpPreload)
	for i := range pre {
		pre[i] = "rp:s:" + strconv.Itoa(i)
	}
	for b, ks := range rbChunks(pre, 500) {
		ctx, cancel := clCtx()
		p := e.pods[b%len(e.pods)].rdb.Pipeline()
		for _, k := range ks {
			p.Set(ctx, k, "v", 0)
		}
		_, err := p.Exec(ctx)
		cancel()
		if err != nil {
			t.Fatalf("preload: %v", err)
		}
	}

	// Which channels move in each rebalance.
	r0, r1, r2 := clRing(t, 1, seeds...), clRing(t, 2, nodes4...), clRing(t, 3, nodes3...)
	var chans []string
	var movesAdd, movesRem []string
	for i := range rpChannels {
		ch := rpChannel(i)
		chans = append(chans, ch)
		if r0.Node(r0.Owner([]byte(ch))).Addr != r1.Node(r1.Owner([]byte(ch))).Addr {
			movesAdd = append(movesAdd, ch)
		}
		if r1.Node(r1.Owner([]byte(ch))).Addr != r2.Node(r2.Owner([]byte(ch))).Addr {
			movesRem = append(movesRem, ch)
		}
	}
	t.Logf("channels moving in the ADD: %d %v; in the REMOVE: %d %v", len(movesAdd), movesAdd, len(movesRem), movesRem)
	if len(movesAdd) == 0 || len(movesRem) == 0 {
		t.Logf("NOTE: no channel moves in one of the rebalances with these node addresses")
	}

	w := &rpWork{start: time.Now(), stop: make(chan struct{}), stopPoll: make(chan struct{})}
	w.stage.Store("stable")
	podAddrs := rbPodAddrs(e.pods)

	// Subscribers: SUBSCRIBE the 32 channels, PSUBSCRIBE the pattern, and
	// wait for every confirmation before anything is published.
	subs := make([]*rpSub, rpSubscribers)
	for i := range subs {
		addr := podAddrs[i%len(podAddrs)]
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ps := c.Subscribe(ctx, chans...)
		if err := ps.PSubscribe(ctx, rpPattern); err != nil {
			t.Fatalf("subscriber %d: PSUBSCRIBE: %v", i, err)
		}
		for j := range rpChannels + 1 {
			v, err := ps.Receive(ctx)
			if err != nil {
				t.Fatalf("subscriber %d via %s: confirmation %d: %v", i, addr, j, err)
			}
			s, ok := v.(*redis.Subscription)
			if !ok || s.Count != j+1 {
				t.Fatalf("subscriber %d via %s: confirmation %d = %#v, want count %d", i, addr, j, v, j+1)
			}
		}
		cancel()
		subs[i] = &rpSub{id: i, addr: addr, c: c, ps: ps, got: map[string][]int{}, done: make(chan struct{})}
		go subs[i].receive(w)
	}
	closeSubs := sync.OnceFunc(func() {
		for _, s := range subs {
			s.ps.Close()
		}
		for _, s := range subs {
			<-s.done
		}
	})
	stopPubs := sync.OnceFunc(func() { close(w.stop); w.wg.Wait() })
	stopPoll := sync.OnceFunc(func() { close(w.stopPoll); w.wgPoll.Wait() })
	defer func() { stopPubs(); stopPoll(); closeSubs() }()

	w.wgPoll.Add(1)
	go w.poll(e.pods)
	for g := range rpPublishers {
		w.wg.Add(1)
		go w.publisher(g, podAddrs[g%len(podAddrs)])
	}
	time.Sleep(2 * time.Second) // steady state before the change

	addAt := w.now()
	ra, since := rbStart(t, e, e.pods[1], "ADD", added)
	rbStaged(t, e.pods[1], ra, since, clSortedNodes(seeds...), clSortedNodes(nodes4...))
	rbWait(t, e, nil, ra, since, clSortedNodes(nodes4...))
	addDone := w.now()
	t.Logf("rebalance 1 (at +%v) %v", addAt.Round(time.Millisecond), ra)
	time.Sleep(time.Second)

	remAt := w.now()
	rr, since := rbStart(t, e, e.pods[0], "REMOVE", removed)
	rbStaged(t, e.pods[0], rr, since, clSortedNodes(nodes4...), clSortedNodes(nodes3...))
	rbWait(t, e, nil, rr, since, clSortedNodes(nodes3...))
	remDone := w.now()
	t.Logf("rebalance 2 (at +%v) %v", remAt.Round(time.Millisecond), rr)
	time.Sleep(time.Second)
	stopPubs()

	// Wait for the subscribers to receive what was published (the sum of
	// the reply counts), or for 10 s without progress.
	w.mu.Lock()
	var expect int64
	for _, p := range w.pubs {
		if p.err == nil {
			expect += p.n
		}
	}
	w.mu.Unlock()
	received := func() int64 {
		var n int64
		for _, s := range subs {
			n += s.total.Load()
		}
		return n
	}
	last, lastChange := received(), time.Now()
	for received() < expect && time.Since(lastChange) < 10*time.Second {
		time.Sleep(100 * time.Millisecond)
		if n := received(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	time.Sleep(200 * time.Millisecond) // a duplicate would still be on its way
	stopPoll()
	closeSubs()

	// ---- the oracle ----
	w.mu.Lock()
	pubs := slices.Clone(w.pubs)
	w.mu.Unlock()
	type msgKey struct {
		ch   string
		pub  int
		seqn int
	}
	// Per subscriber, how many times each message arrived, and order.
	seen := make([]map[msgKey]int, len(subs))
	outOfOrder := 0
	var orderEx []string
	for i, s := range subs {
		seen[i] = map[msgKey]int{}
		for k, seqs := range s.got {
			ch, pubS, _ := strings.Cut(k, "|")
			pub, _ := strconv.Atoi(pubS)
			for j, n := range seqs {
				seen[i][msgKey{ch, pub, n}]++
				if j > 0 && n <= seqs[j-1] {
					outOfOrder++
					if len(orderEx) < 10 {
						orderEx = append(orderEx, fmt.Sprintf("subscriber %d, channel %s, publisher %d: %d after %d", i, ch, pub, n, seqs[j-1]))
					}
				}
			}
		}
	}
	published := map[msgKey]bool{}
	var (
		nErr, lowCount, highCount, lost, lostLow, dups int
		lowEx, lostEx, dupEx, errEx                    []string
		countHist                                      = map[int64]int{}
		byStage                                        = map[string]int{}
		lowByStage                                     = map[string]int{}
		maxTook                                        time.Duration
	)
	for _, p := range pubs {
		k := msgKey{p.ch, p.pub, p.seq}
		published[k] = true
		byStage[p.stage]++
		maxTook = max(maxTook, p.took)
		if p.err != nil {
			nErr++
			if len(errEx) < 10 {
				errEx = append(errEx, fmt.Sprintf("+%v PUBLISH %s %d-%d: %v", p.at.Round(time.Millisecond), p.ch, p.pub, p.seq, p.err))
			}
			continue
		}
		countHist[p.n]++
		if p.n < rpSubscribers {
			lowCount++
			lowByStage[p.stage]++
			if len(lowEx) < 15 {
				lowEx = append(lowEx, fmt.Sprintf("+%v (took %v) PUBLISH %s %d-%d = %d; stages then: %s",
					p.at.Round(time.Millisecond), p.took.Round(time.Microsecond), p.ch, p.pub, p.seq, p.n, w.at(p.at)))
			}
		} else if p.n > rpSubscribers {
			highCount++
			if len(lowEx) < 15 {
				lowEx = append(lowEx, fmt.Sprintf("+%v PUBLISH %s %d-%d = %d (more receivers than subscribers); stages then: %s",
					p.at.Round(time.Millisecond), p.ch, p.pub, p.seq, p.n, w.at(p.at)))
			}
		}
		var missing []int
		for i := range subs {
			switch c := seen[i][k]; {
			case c == 0:
				missing = append(missing, i)
			case c > 1:
				dups++
				if len(dupEx) < 10 {
					dupEx = append(dupEx, fmt.Sprintf("+%v %s %d-%d arrived %d times at subscriber %d", p.at.Round(time.Millisecond), p.ch, p.pub, p.seq, c, i))
				}
			}
		}
		if len(missing) > 0 {
			lost++
			if p.n < rpSubscribers {
				lostLow++
			}
			if len(lostEx) < 15 {
				lostEx = append(lostEx, fmt.Sprintf("+%v PUBLISH %s %d-%d (reply %d) never reached subscribers %v; stages then: %s",
					p.at.Round(time.Millisecond), p.ch, p.pub, p.seq, p.n, missing, w.at(p.at)))
			}
		}
	}
	phantom := 0
	for i := range subs {
		for k := range seen[i] {
			if !published[k] {
				phantom++
			}
		}
	}
	var subErrs, subBad []string
	var perSub []string
	for _, s := range subs {
		subErrs = append(subErrs, s.errs...)
		subBad = append(subBad, s.bad...)
		perSub = append(perSub, fmt.Sprintf("#%d via %s: %d", s.id, s.addr, s.total.Load()))
	}

	if lowCount > 0 || highCount > 0 {
		t.Errorf("%d of %d PUBLISHes counted fewer than %d receivers and %d more (by stage at send: %v):\n  %s",
			lowCount, len(pubs)-nErr, rpSubscribers, highCount, lowByStage, strings.Join(lowEx, "\n  "))
	}
	if lost > 0 {
		t.Errorf("%d PUBLISHes answered without error did not reach every subscriber (%d of them had a reply count below %d):\n  %s",
			lost, lostLow, rpSubscribers, strings.Join(lostEx, "\n  "))
	}
	if dups > 0 {
		t.Errorf("%d duplicate deliveries:\n  %s", dups, strings.Join(dupEx, "\n  "))
	}
	if phantom > 0 || len(subBad) > 0 {
		t.Errorf("%d messages received that were never published; unexpected messages: %v", phantom, subBad)
	}
	if outOfOrder > 0 {
		t.Errorf("%d messages out of publish order (per subscriber, channel and publisher):\n  %s", outOfOrder, strings.Join(orderEx, "\n  "))
	}
	if nErr > 0 {
		t.Errorf("%d PUBLISH errors:\n  %s", nErr, strings.Join(errEx, "\n  "))
	}
	if len(subErrs) > 0 {
		t.Errorf("subscribers saw %d receive errors (a dropped connection loses messages): %v", len(subErrs), subErrs[:min(10, len(subErrs))])
	}

	// ---- on the nodes directly: where the subscriptions are left ----
	direct := map[string]*redis.Client{}
	for _, r := range e.redis {
		direct[r.Addr] = clClient(t, r.Addr)
	}
	// The subscribers are closed now: no pubsub client may be left on any
	// node. Then 4 new ones must sit on the final owners only.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	took, why := rbPoll(10*time.Second, func() string {
		for _, r := range e.redis {
			s, err := direct[r.Addr].ClientList(ctx).Result()
			if err != nil {
				return err.Error()
			}
			for _, l := range strings.Split(s, "\n") {
				for _, f := range strings.Fields(l) {
					if v, ok := strings.CutPrefix(f, "flags="); ok && strings.Contains(v, "P") {
						return r.Addr + " still has a pubsub client: " + l
					}
				}
			}
		}
		return ""
	})
	if why != "" {
		t.Errorf("%v after the subscribers closed: %s", took.Round(time.Millisecond), why)
	}
	final := make([]*redis.PubSub, rpSubscribers)
	for i := range final {
		c := clClient(t, podAddrs[i%len(podAddrs)])
		final[i] = c.Subscribe(ctx, chans...)
		defer final[i].Close()
		if err := final[i].PSubscribe(ctx, rpPattern); err != nil {
			t.Fatal(err)
		}
		for j := range rpChannels + 1 {
			if _, err := final[i].Receive(ctx); err != nil {
				t.Fatalf("final subscriber %d: confirmation %d: %v", i, j, err)
			}
		}
	}
	misplaced := 0
	for _, a := range e.addrs(0, 1, 2, 3) {
		m, err := direct[a].PubSubNumSub(ctx, chans...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chans {
			want := int64(0)
			if r2.Node(r2.Owner([]byte(ch))).Addr == a {
				want = rpSubscribers
			}
			if m[ch] != want {
				misplaced++
				if misplaced <= 10 {
					t.Errorf("after the rebalances, %s counts %d subscribers of %s, want %d (final owner %s)", a, m[ch], ch, want, r2.Node(r2.Owner([]byte(ch))).Addr)
				}
			}
		}
		np, err := direct[a].PubSubNumPat(ctx).Result()
		wantPat := int64(1)
		if a == removed {
			wantPat = 0
		}
		if err != nil || np != wantPat {
			t.Errorf("after the rebalances, %s: PUBSUB NUMPAT = %d, %v; want %d", a, np, err, wantPat)
		}
	}
	if t.Failed() {
		t.Logf("pod logs:\n%s", e.logs())
	}

	// ---- summary ----
	w.mu.Lock()
	var tl []string
	for _, ev := range w.stages {
		tl = append(tl, fmt.Sprintf("+%v pod%d=%s", ev.at.Round(time.Millisecond), ev.pod, ev.stage))
	}
	w.mu.Unlock()
	var hist []string
	var ks []int64
	for k := range countHist {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	for _, k := range ks {
		hist = append(hist, fmt.Sprintf("%d→%d", k, countHist[k]))
	}
	var st []string
	for _, s := range rbStages {
		if n := byStage[s]; n > 0 {
			st = append(st, fmt.Sprintf("%s=%d", s, n))
		}
	}
	t.Logf("stage timeline: %s", strings.Join(tl, " "))
	t.Logf("ADD from +%v to +%v, REMOVE from +%v to +%v", addAt.Round(time.Millisecond), addDone.Round(time.Millisecond),
		remAt.Round(time.Millisecond), remDone.Round(time.Millisecond))
	t.Logf("%d PUBLISHes (%d errors; by stage at send: %s; slowest %v); reply counts %s; %d low, %d high",
		len(pubs), nErr, strings.Join(st, " "), maxTook.Round(time.Millisecond), strings.Join(hist, " "), lowCount, highCount)
	t.Logf("received %d messages (%d expected from the reply counts; each subscriber should get %d): %s",
		received(), expect, len(pubs)-nErr, strings.Join(perSub, ", "))
	t.Logf("%d lost, %d duplicated, %d phantom, %d out of order, %d receive errors; %d/%d channels subscribed elsewhere than their final owner; test took %v",
		lost, dups, phantom, outOfOrder, len(subErrs), misplaced, rpChannels, time.Since(testStart).Round(time.Millisecond))
}
