package test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rolling-restart settings: a realistic drain delay (the manifests use 2s),
// and a shutdown timeout the test would notice being used up.
const (
	rollDrainDelay      = 1500 * time.Millisecond
	rollShutdownTimeout = 10 * time.Second
	rollWorkers         = 8
	rollPipeline        = 50 // commands per pipeline
	rollKeys            = 16 // counters and SET keys per worker
)

// TestRollingRestart (#14 item 2): a rolling restart of a 3-pod cluster
// (Spanner emulator, 3 redis-servers) under full-speed load returns no
// error to any client and loses no acknowledged write.
//
// Clients. 8 workers, each an application with its own go-redis v9 client
// (default options: pool, retries, RESP3), run at full speed a mix of
// 50-command pipelines and single commands (INCR and SET) on keys only
// they write. Every INCR reply is checked against the worker's own count
// (a command lost or run twice shows as a wrong reply at once), and at the
// end every counter must equal the INCRs acknowledged and every SET key
// hold the last value acknowledged. An error counts only when go-redis
// returns it to the application: its own retries (a dial error, an EOF on
// a connection the server closed between commands) are its normal
// behaviour and invisible here, as in production.
//
// The Service. The clients reach the pods the way a ClusterIP Service lets
// them: every new connection goes to the next pod in round-robin order
// among the endpoints, and the endpoints are the pods whose /readyz
// answers 200 (polled every 50 ms, standing in for the kubelet's probe
// and the endpoint update), or, failing that, whose port accepts. A
// connection once made stays with its pod: Kubernetes removing a pod from
// the endpoints stops new connections only, so the busy pooled connections
// keep sending to a draining pod until jupiter closes them. That is the
// case the drain must get right. There is no preStop sleep here: the drain
// delay alone covers the endpoint update, which the 50 ms poll makes short.
//
// The roll. Each pod in turn gets SIGTERM (--drain-delay 1.5s), must exit
// 0 having drained every client connection at a command boundary (the
// "drain did not finish in time" path must not run), and is restarted on
// the same ports; the next pod goes only once it is ready again.
func TestRollingRestart(t *testing.T) {
	start := time.Now()
	e := startClEnv(t, 3)
	seeds := e.addrs(0, 1, 2)
	for range 3 {
		e.startPod(seeds, "--drain-delay", rollDrainDelay.String(), "--shutdown-timeout", rollShutdownTimeout.String())
	}
	clWait(t, e, 60*time.Second, "every pod ready on ring v1", func() string {
		_, v, _, why := clAgreed(e.pods)
		if why == "" && v != "1" {
			why = "ring v" + v
		}
		return why
	})
	t.Logf("cluster up after %v", time.Since(start).Round(time.Millisecond))

	svc := newRollService(e.pods)
	svc.poll() // once, so the first connections find every pod
	go svc.run()
	defer svc.close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stop atomic.Bool
	workers := make([]*rollWorker, rollWorkers)
	var wg sync.WaitGroup
	for i := range workers {
		w := newRollWorker(i, svc)
		defer w.rdb.Close()
		workers[i] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, &stop) }()
	}
	total := func() (n int64) {
		for _, w := range workers {
			n += w.cmds.Load()
		}
		return n
	}
	// progress waits until every worker completed a few more rounds.
	progress := func(what string) {
		t.Helper()
		base := make([]int64, len(workers))
		for i, w := range workers {
			base[i] = w.rounds.Load()
		}
		clWait(t, e, 30*time.Second, what, func() string {
			for i, w := range workers {
				if w.rounds.Load() < base[i]+3 {
					return fmt.Sprintf("worker %d at round %d (from %d)", i, w.rounds.Load(), base[i])
				}
			}
			return ""
		})
	}
	progress("every worker running")

	restartedAt := make([]int64, len(e.pods)) // svc.dials of the pod when it was ready again
	for i, p := range e.pods {
		before := total()
		sigAt := time.Now()
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.Exited():
		case <-time.After(rollDrainDelay + rollShutdownTimeout + 20*time.Second):
			t.Fatalf("pod %d did not exit after SIGTERM\n%s", i, e.logs())
		}
		took := time.Since(sigAt)
		if code := p.ExitCode(); code != 0 {
			t.Fatalf("pod %d exited %d after SIGTERM\n%s", i, code, clTail(p.Log(), 80))
		}
		log := p.Log()
		drained := rollDrained(log)
		if strings.Contains(log, "drain did not finish in time") || drained < 0 {
			t.Fatalf("pod %d: clients were still connected when --shutdown-timeout ran out\n%s", i, clTail(log, 80))
		}
		served := total() - before
		p.Start()
		clWait(t, e, 60*time.Second, fmt.Sprintf("pod %d ready after its restart", i), func() string {
			if c := p.readyz(); c != 200 {
				return fmt.Sprintf("/readyz %d", c)
			}
			if !svc.ready[i].Load() {
				return "not yet an endpoint"
			}
			return ""
		})
		restartedAt[i] = svc.dials[i].Load()
		t.Logf("pod %d: exit 0 %v after SIGTERM, %d client connections closed at a command boundary, %d commands acknowledged meanwhile; ready again %v after SIGTERM",
			i, took.Round(time.Millisecond), drained, served, time.Since(sigAt).Round(time.Millisecond))
		progress(fmt.Sprintf("every worker running after pod %d's restart", i))
	}
	stop.Store(true)
	waitGroup(t, &wg, 30*time.Second, "the workers to stop")

	// Resumed: the pods restarted before the last one got connections
	// again (the connections of the pods drained after them).
	var resumed int64
	for i := range len(e.pods) - 1 {
		resumed += svc.dials[i].Load() - restartedAt[i]
	}
	dials := make([]int64, len(e.pods))
	for i := range dials {
		dials[i] = svc.dials[i].Load()
	}
	t.Logf("connections made per pod: %v (%d to restarted pods after their restart)", dials, resumed)
	if resumed == 0 {
		t.Errorf("no client connected to a restarted pod again")
	}

	// Every client's view, then the data itself read back through every pod.
	var cmds, pipes, errs, wrong int64
	for _, w := range workers {
		cmds += w.cmds.Load()
		pipes += w.pipes.Load()
		errs += w.errs.Load()
		wrong += w.wrong.Load()
		for _, m := range w.msgs {
			t.Errorf("worker %d: %s", w.id, m)
		}
	}
	t.Logf("%d commands acknowledged (%d pipelines of %d), %d errors returned to clients, %d wrong INCR replies, over %v",
		cmds, pipes, rollPipeline, errs, wrong, time.Since(start).Round(time.Millisecond))
	if errs > 0 {
		t.Errorf("%d errors were returned to clients during the rolling restart", errs)
	}
	if wrong > 0 {
		t.Errorf("%d INCR replies showed a write lost or applied twice", wrong)
	}
	lost := 0
	for pi, p := range e.pods {
		for _, w := range workers {
			lost += w.verify(t, ctx, p.rdb, pi)
		}
	}
	if lost > 0 {
		t.Errorf("%d keys read back wrong (lost or duplicated acknowledged writes)", lost)
	}
	if t.Failed() {
		t.Log(e.logs())
	}
}

// rollDrained returns closed_at_boundary of the last "clients drained"
// line of a pod's log (-1: none).
func rollDrained(log string) int {
	i := strings.LastIndex(log, `"msg":"clients drained"`)
	if i < 0 {
		return -1
	}
	_, rest, ok := strings.Cut(log[i:], `"closed_at_boundary":`)
	if !ok {
		return -1
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	n, err := strconv.Atoi(rest[:end])
	if err != nil {
		return -1
	}
	return n
}

// rollService stands in for a Kubernetes Service in front of the pods: see
// TestRollingRestart.
type rollService struct {
	pods  []*clPod
	ready []atomic.Bool
	dials []atomic.Int64
	next  atomic.Uint64
	http  *http.Client
	done  chan struct{}
	wg    sync.WaitGroup
}

func newRollService(pods []*clPod) *rollService {
	return &rollService{pods: pods, ready: make([]atomic.Bool, len(pods)), dials: make([]atomic.Int64, len(pods)),
		http: &http.Client{Timeout: 300 * time.Millisecond}, done: make(chan struct{})}
}

// poll updates the endpoints from every pod's /readyz.
func (s *rollService) poll() {
	for i, p := range s.pods {
		ok := false
		if resp, err := s.http.Get("http://" + p.AdminAddr + "/readyz"); err == nil {
			ok = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
		s.ready[i].Store(ok)
	}
}

func (s *rollService) run() {
	s.wg.Add(1)
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-time.After(50 * time.Millisecond):
			s.poll()
		}
	}
}

func (s *rollService) close() { close(s.done); s.wg.Wait() }

// dial connects to the next ready pod in round-robin order, skipping a pod
// whose port refuses (not yet seen by the poll). With no pod to connect to
// it fails the way a Service without endpoints does: a refused dial (which
// go-redis retries).
func (s *rollService) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var eps []int
	for i := range s.pods {
		if s.ready[i].Load() {
			eps = append(eps, i)
		}
	}
	n := s.next.Add(1)
	var lastErr error = syscall.ECONNREFUSED
	for j := range eps {
		i := eps[(int(n)+j)%len(eps)]
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", s.pods[i].Addr)
		if err == nil {
			s.dials[i].Add(1)
			return c, nil
		}
		lastErr = err
	}
	var oe *net.OpError
	if errors.As(lastErr, &oe) {
		return nil, lastErr
	}
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: lastErr}
}

// rollWorker is one application: a go-redis client (default options, the
// Service's dialer) and the writes it had acknowledged.
type rollWorker struct {
	id  int
	rdb *redis.Client
	// acked[k]: INCRs of counter k acknowledged; unsure[k]: INCRs whose
	// outcome is unknown (an error was returned).
	acked, unsure []int64
	// last[k]: the last value of SET key k acknowledged; setUnsure[k]: a
	// later SET of it failed.
	last      []string
	setUnsure []bool
	seq       int
	msgs      []string // what went wrong, reported by the test

	cmds, pipes, rounds, errs, wrong atomic.Int64
}

func newRollWorker(id int, svc *rollService) *rollWorker {
	return &rollWorker{id: id, rdb: redis.NewClient(&redis.Options{Addr: "jupiter-redis:6379", Dialer: svc.dial}),
		acked: make([]int64, rollKeys), unsure: make([]int64, rollKeys), last: make([]string, rollKeys), setUnsure: make([]bool, rollKeys)}
}

func (w *rollWorker) ctrKey(k int) string { return fmt.Sprintf("roll:%d:ctr:%d", w.id, k) }
func (w *rollWorker) setKey(k int) string { return fmt.Sprintf("roll:%d:set:%d", w.id, k) }

func (w *rollWorker) fail(n *atomic.Int64, format string, args ...any) {
	n.Add(1)
	if len(w.msgs) < 10 {
		w.msgs = append(w.msgs, fmt.Sprintf(format, args...))
	}
}

// op is one command of a round: an INCR of counter k, or a SET of key k.
type rollOp struct {
	incr bool
	k    int
	val  string
}

func (w *rollWorker) nextOp(i int) rollOp {
	w.seq++
	k := (w.seq * 7) % rollKeys
	if i%2 == 0 {
		return rollOp{incr: true, k: k}
	}
	return rollOp{k: k, val: fmt.Sprintf("w%d-%d", w.id, w.seq)}
}

// record checks one command's outcome and keeps the acknowledged writes.
func (w *rollWorker) record(op rollOp, cmd redis.Cmder, how string) {
	if err := cmd.Err(); err != nil {
		w.fail(&w.errs, "%s %v: %v", how, cmd.Args(), err)
		if op.incr {
			w.unsure[op.k]++
		} else {
			w.setUnsure[op.k] = true
		}
		return
	}
	w.cmds.Add(1)
	if op.incr {
		want, got := w.acked[op.k]+1, cmd.(*redis.IntCmd).Val()
		// After a failed INCR the count may be up to unsure higher: the
		// reply tells what happened. Either way the count is known again.
		if got != want && (got < want || got > want+w.unsure[op.k]) {
			w.fail(&w.wrong, "%s INCR %s = %d, want %d (+%d unsure): a write lost or applied twice", how, w.ctrKey(op.k), got, want, w.unsure[op.k])
		}
		w.acked[op.k], w.unsure[op.k] = got, 0
		return
	}
	w.last[op.k], w.setUnsure[op.k] = op.val, false
}

// run does rounds (one pipeline, then a few single commands) until stop.
func (w *rollWorker) run(ctx context.Context, stop *atomic.Bool) {
	ops := make([]rollOp, rollPipeline)
	for !stop.Load() {
		for i := range ops {
			ops[i] = w.nextOp(i)
		}
		cmds, _ := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, op := range ops {
				if op.incr {
					p.Incr(ctx, w.ctrKey(op.k))
				} else {
					p.Set(ctx, w.setKey(op.k), op.val, 0)
				}
			}
			return nil
		})
		if len(cmds) != len(ops) {
			w.fail(&w.wrong, "pipeline returned %d results for %d commands", len(cmds), len(ops))
			return
		}
		for i, c := range cmds {
			w.record(ops[i], c, "pipeline")
		}
		w.pipes.Add(1)
		for i := range 4 {
			op := w.nextOp(i)
			var c redis.Cmder
			if op.incr {
				c = w.rdb.Incr(ctx, w.ctrKey(op.k))
			} else {
				c = w.rdb.Set(ctx, w.setKey(op.k), op.val, 0)
			}
			w.record(op, c, "single")
		}
		w.rounds.Add(1)
	}
}

// verify reads the worker's keys through one pod and returns how many
// disagree with the acknowledged writes.
func (w *rollWorker) verify(t *testing.T, ctx context.Context, rdb *redis.Client, pod int) int {
	t.Helper()
	var ctrs, sets []*redis.StringCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k := range rollKeys {
			ctrs = append(ctrs, p.Get(ctx, w.ctrKey(k)))
			sets = append(sets, p.Get(ctx, w.setKey(k)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("read back through pod %d: %v", pod, err)
	}
	bad := 0
	for k := range rollKeys {
		got, _ := strconv.ParseInt(ctrs[k].Val(), 10, 64)
		if got < w.acked[k] || got > w.acked[k]+w.unsure[k] {
			bad++
			t.Errorf("pod %d: %s = %d, want %d acknowledged INCRs (+%d unsure)", pod, w.ctrKey(k), got, w.acked[k], w.unsure[k])
		}
		if v := sets[k].Val(); v != w.last[k] && !w.setUnsure[k] {
			bad++
			t.Errorf("pod %d: %s = %q, want the last acknowledged SET %q", pod, w.setKey(k), v, w.last[k])
		}
	}
	return bad
}

// waitGroup waits for wg, at most within.
func waitGroup(t *testing.T, wg *sync.WaitGroup, within time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("timed out after %v waiting for %s", within, what)
	}
}
