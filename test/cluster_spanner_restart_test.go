//go:build linux

package test

// Spanner stopped and restarted empty (issue "Security and resilience":
// "Spanner stopped and restarted → admin recovers"). Linux-only like the
// other fault tests: it needs gcloud's emulator_main, which it restarts on
// the same port.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/emulator"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// TestClusterFaultSpannerRestart kills the Spanner emulator under a running
// cluster (3 pods, 2 ring nodes, staged rebalancing; the first leader is
// SIGKILLed before the outage, so 2 pods go through it) and starts a new,
// empty one on the same port, as after a database that was recreated. It
// proves:
//
//   - outage: every pod keeps serving reads and writes from its last ring,
//     stays ready and live, reports spanner_error in STATUS, and refuses
//     JUPITER ADD at once with "Spanner is unreachable" (ring unchanged);
//   - self-recovery, no pod restarted: once the emulator answers again and
//     `jupiter ddl --apply` re-created the tables, within a bounded time a
//     leader is elected again, it writes the ring it routes by back into
//     Spanner (Reseed) one version above the pre-outage one, with the
//     pre-outage nodes, and every pod applies it; no pod ever reported a
//     lower ring_version than before, and /healthz never answered 503 (the
//     pods' Spanner clients replaced their lost sessions themselves);
//   - admin works again: JUPITER ADD of a third node through a follower is
//     accepted and its staged rebalance ends stable on the 3 nodes;
//   - no data lost: every key written before and during the outage reads
//     back through every pod after the rebalance;
//   - the pod killed before the outage restarts on the recreated database
//     and serves the current ring and the old keys.
func TestClusterFaultSpannerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("long test (an emulator outage and restart under 3 pods)")
	}
	start := time.Now()
	e := startClEnv(t, 3)
	if !e.emu.Stoppable {
		if testenv.CI() {
			t.Fatal("the Spanner restart needs a dedicated emulator (emulator_main); only SPANNER_EMULATOR_HOST is set")
		}
		t.Skip("no emulator binary to restart; SPANNER_EMULATOR_HOST is shared")
	}
	seeds := e.addrs(0, 1)
	for range 3 {
		e.startPod(seeds)
	}
	pods := e.pods
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		s := time.Now()
		if !t.Run(name, f) {
			t.Fatalf("phase %s failed; later phases depend on it\n%s", name, e.logs())
		}
		t.Logf("phase %s took %v", name, time.Since(s).Round(time.Millisecond))
	}

	var (
		leader string
		v0     int    // ring version before the outage
		nodes0 string // its nodes
	)
	const nKeys = 200
	step("Ready", func(t *testing.T) {
		took := clWait(t, e, 45*time.Second, "one leader and ring v1 on every pod", func() string {
			l, v, nodes, why := clAgreed(pods)
			if why != "" {
				return why
			}
			if v != "1" || nodes != clSortedNodes(seeds...) {
				return fmt.Sprintf("v%s %s", v, nodes)
			}
			leader, v0, nodes0 = l, 1, nodes
			return ""
		})
		t.Logf("leader %s, ring v%d %s, after %v", leader, v0, nodes0, took.Round(time.Millisecond))
		for i := range nKeys {
			if r, err := pods[i%3].do("SET", fmt.Sprintf("pre:%d", i), fmt.Sprint("v", i)); err != nil || r != "OK" {
				t.Fatalf("SET pre:%d: %q %v", i, r, err)
			}
		}
	})

	// A leader failover first: spindle re-creates a missing lock row only
	// from a process that never lost an initial lock insert, and the pods
	// that survive a failover have all (or all but one) lost one; so the
	// restart below also shows that jupiter's Member re-creates the row.
	var killed *clPod
	step("EarlierFailover", func(t *testing.T) {
		old := leader
		var survivors []*clPod
		for _, p := range pods {
			if p.Hedge == old {
				killed = p
			} else {
				survivors = append(survivors, p)
			}
		}
		killed.Kill()
		pods = survivors
		took := clWait(t, e, clLockLease*3+15*time.Second, "a new leader agreed by the 2 survivors", func() string {
			l, v, _, why := clAgreed(pods)
			if why != "" {
				return why
			}
			if l == old || v != strconv.Itoa(v0) {
				return fmt.Sprintf("leader %s v%s", l, v)
			}
			leader = l
			return ""
		})
		t.Logf("leader %s SIGKILLed; %s leads after %v", old, leader, took.Round(time.Millisecond))
	})

	step("SpannerDown", func(t *testing.T) {
		e.emu.Stop()
		took := clWait(t, e, 30*time.Second, "every pod to report spanner_error", func() string {
			for _, p := range pods {
				if st := p.status(); st["spanner_error"] == "" {
					return p.Hedge + " reports no spanner_error"
				}
			}
			return ""
		})
		t.Logf("outage reported by every pod %v after the emulator died", took.Round(time.Millisecond))
		for i, p := range pods {
			k := fmt.Sprintf("outage:%d", i)
			if r, err := p.do("SET", k, "y"); err != nil || r != "OK" {
				t.Fatalf("SET via %s during the outage: %q %v", p.Hedge, r, err)
			}
			for _, q := range pods {
				if r, err := q.do("GET", k); err != nil || r != "y" {
					t.Fatalf("GET %s via %s during the outage: %q %v", k, q.Hedge, r, err)
				}
			}
			if r, err := p.do("GET", "pre:7"); err != nil || r != "v7" {
				t.Fatalf("GET a key written before the outage via %s: %q %v", p.Hedge, r, err)
			}
			if c := p.readyz(); c != 200 {
				t.Fatalf("%s /readyz = %d during the outage (it serves its last ring)", p.Hedge, c)
			}
			if c, body := clHealthz(p); c != 200 {
				t.Fatalf("%s /healthz = %d %q during the outage", p.Hedge, c, body)
			}
		}
		for _, p := range pods {
			s := time.Now()
			got := p.jupiterCmd("ADD", e.redis[2].Addr)
			if !strings.HasPrefix(got, "ERR ") || !strings.Contains(got, "Spanner is unreachable") {
				t.Fatalf("ADD via %s during the outage = %q, want a refusal saying Spanner is unreachable", p.Hedge, got)
			}
			if d := time.Since(s); d > 2*time.Second {
				t.Fatalf("ADD refusal via %s took %v", p.Hedge, d)
			}
		}
		for _, p := range pods {
			if st := p.status(); st["ring_version"] != strconv.Itoa(v0) || st["nodes"] != nodes0 {
				t.Fatalf("%s: v%s %s during the outage, want v%d %s", p.Hedge, st["ring_version"], st["nodes"], v0, nodes0)
			}
		}
	})

	// From the restart on, a watcher samples every pod: its ring_version
	// must never drop below what it served (v0 first), and its /healthz
	// must stay 200 (recovery without a restart).
	w := clWatch(pods, v0)
	t.Cleanup(func() { w.stop() })
	step("SpannerBack", func(t *testing.T) {
		down := time.Now()
		clRestartEmulator(t, e)
		t.Logf("emulator restarted on %s and schema re-applied in %v", e.emu.Host, time.Since(down).Round(time.Millisecond))
		back := time.Now()
		var final string
		took := clWait(t, e, 90*time.Second, "a leader, the ring back in Spanner above v0 and no spanner_error", func() string {
			l, v, nodes, why := clAgreed(pods)
			if why != "" {
				return why
			}
			if gv, _ := strconv.Atoi(v); gv <= v0 || nodes != nodes0 {
				return fmt.Sprintf("v%s %s, want above v%d with %s", v, nodes, v0, nodes0)
			}
			for _, p := range pods {
				st := p.status()
				if st["spanner_error"] != "" || st["last_sync_error"] != "" {
					return fmt.Sprintf("%s: spanner_error=%q last_sync_error=%q", p.Hedge, st["spanner_error"], st["last_sync_error"])
				}
				if st["stage"] != "stable" {
					return p.Hedge + " in stage " + st["stage"]
				}
			}
			leader, final = l, v
			return ""
		})
		t.Logf("recovered %v after the emulator answered again: leader %s, ring v%s %s", took.Round(time.Millisecond), leader, final, nodes0)
		if final != strconv.Itoa(v0+1) {
			t.Fatalf("ring back at v%s, want v%d (the leader's ring written back once, one above)", final, v0+1)
		}
		// Spanner holds exactly that: one history row, the leader's RESEED.
		sp := clSpannerClient(t, e.emu.Host, e.db)
		h := clHistory(t, sp)
		if len(h) != 1 || h[0].Version != int64(v0+1) || h[0].Leader != leader || !strings.HasPrefix(h[0].Change, "RESEED") {
			t.Fatalf("ring history after the restart = %+v, want one RESEED row v%d by %s", h, v0+1, leader)
		}
		t.Logf("Spanner ring history: v%d %q by %s (%v after restart)", h[0].Version, h[0].Change, h[0].Leader, time.Since(back).Round(time.Millisecond))
	})

	step("AdminWorksAgain", func(t *testing.T) {
		var f *clPod
		for _, p := range pods {
			if p.Hedge != leader {
				f = p
				break
			}
		}
		v, _ := strconv.Atoi(f.status()["ring_version"])
		s := time.Now()
		if r := f.jupiterCmd("ADD", e.redis[2].Addr); r != "OK" {
			t.Fatalf("JUPITER ADD %s via follower %s after the restart: %s", e.redis[2].Addr, f.Hedge, r)
		}
		final := clWaitStable(t, e, 60*time.Second, v)
		want := clSortedNodes(e.redis[0].Addr, e.redis[1].Addr, e.redis[2].Addr)
		for _, p := range pods {
			if st := p.status(); st["nodes"] != want {
				t.Fatalf("%s: nodes %s after the ADD, want %s", p.Hedge, st["nodes"], want)
			}
		}
		t.Logf("ADD through a follower stable at v%d on %s %v after the command", final, want, time.Since(s).Round(time.Millisecond))
	})

	step("NoDataLost", func(t *testing.T) {
		for i := range nKeys {
			k, want := fmt.Sprintf("pre:%d", i), fmt.Sprint("v", i)
			for _, p := range pods {
				if r, err := p.do("GET", k); err != nil || r != want {
					t.Fatalf("GET %s via %s after recovery: %q %v, want %q", k, p.Hedge, r, err, want)
				}
			}
		}
		for i := range pods {
			k := fmt.Sprintf("outage:%d", i)
			for _, p := range pods {
				if r, err := p.do("GET", k); err != nil || r != "y" {
					t.Fatalf("GET %s via %s after recovery: %q %v", k, p.Hedge, r, err)
				}
			}
		}
	})

	step("KilledPodRejoins", func(t *testing.T) {
		// The pod killed before the outage starts on the recreated database
		// and follows the ring the others serve.
		killed.Start()
		killed.rdb = clClient(e.t, killed.Addr)
		_, v, nodes, _ := clAgreed(pods)
		took := clWait(t, e, 30*time.Second, "the restarted pod on the current ring", func() string {
			_, gv, gnodes, why := clAgreed(e.live())
			if why != "" {
				return why
			}
			if gv != v || gnodes != nodes {
				return fmt.Sprintf("v%s %s, want v%s %s", gv, gnodes, v, nodes)
			}
			return ""
		})
		for i := range nKeys {
			k, want := fmt.Sprintf("pre:%d", i), fmt.Sprint("v", i)
			if r, err := killed.do("GET", k); err != nil || r != want {
				t.Fatalf("GET %s via the restarted pod: %q %v, want %q", k, r, err, want)
			}
		}
		t.Logf("restarted pod serves v%s after %v", v, took.Round(time.Millisecond))
	})

	for _, p := range e.pods {
		log := p.Log()
		t.Logf("pod %s: lost Spanner sessions replaced %d times, lock row re-created %d times", p.Hedge,
			strings.Count(log, "replaced it with a new one"), strings.Count(log, "re-created it vacant"))
	}
	if err := w.stop(); err != "" {
		t.Fatalf("during recovery: %s\n%s", err, e.logs())
	}
	t.Logf("watcher: %d samples per pod, ring versions seen %v", w.samples, w.seen())
	t.Logf("Spanner restart scenario took %v", time.Since(start).Round(time.Millisecond))
}

// clRestartEmulator starts a new emulator process on the address of e's
// emulator (killed before with e.emu.Stop), so the pods, which keep their
// SPANNER_EMULATOR_HOST, reach it again; it is in-memory, so it starts
// empty, and `jupiter ddl --apply` creates the instance, database and
// tables again. The process is killed when t's test ends.
func clRestartEmulator(t *testing.T, e *clEnv) {
	t.Helper()
	bin, err := emulator.Binary()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp("", "spanner-emulator-restart-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(logf.Name()) })
	cmd := exec.Command(bin, "--host_port", e.emu.Host)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("restart %s: %v", bin, err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if clDialable(e.emu.Host) {
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("the restarted emulator exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted emulator does not listen on %s", e.emu.Host)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, code := e.jupiter("ddl", "--apply", "--spanner-db", e.db); code != 0 {
		t.Fatalf("jupiter ddl --apply on the restarted emulator: exit %d\n%s", code, out)
	}
}

func clDialable(addr string) bool {
	c, err := (&net.Dialer{Timeout: 200 * time.Millisecond}).Dial("tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// clHealthz returns the pod's /healthz status code and body (0 if it does
// not answer).
func clHealthz(p *clPod) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.AdminAddr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// clWatcher samples the pods' STATUS and /healthz in the background.
type clWatcher struct {
	mu      sync.Mutex
	max     map[string]int // highest ring_version seen per pod
	errs    []string
	samples int
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// clWatch starts sampling pods every 200ms: a ring_version below one the
// pod served before (from floor on) or a /healthz other than 200 is an
// error reported by stop.
func clWatch(pods []*clPod, floor int) *clWatcher {
	w := &clWatcher{max: map[string]int{}, done: make(chan struct{})}
	for _, p := range pods {
		w.max[p.Hedge] = floor
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
			}
			for _, p := range pods {
				st := p.status()
				code, body := clHealthz(p)
				w.mu.Lock()
				if st != nil {
					v, _ := strconv.Atoi(st["ring_version"])
					if v < w.max[p.Hedge] {
						w.errs = append(w.errs, fmt.Sprintf("%s went back from v%d to v%d", p.Hedge, w.max[p.Hedge], v))
					}
					w.max[p.Hedge] = max(w.max[p.Hedge], v)
				}
				if code != 200 && len(w.errs) < 20 {
					w.errs = append(w.errs, fmt.Sprintf("%s /healthz = %d %q", p.Hedge, code, body))
				}
				w.mu.Unlock()
			}
			w.mu.Lock()
			w.samples++
			w.mu.Unlock()
		}
	}()
	return w
}

// stop ends sampling and returns the errors seen ("" if none).
func (w *clWatcher) stop() string {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 10 {
		return strings.Join(w.errs[:10], "; ") + fmt.Sprintf(" (and %d more)", len(w.errs)-10)
	}
	return strings.Join(w.errs, "; ")
}

// seen returns the highest version each pod served.
func (w *clWatcher) seen() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.max {
		out[k] = v
	}
	return out
}
