package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkClusterScale measures the control plane with many members
// (`make bench-cluster`; docs/scale.md has the figures and their model).
// One run, whatever b.N: it starts JUPITER_SCALE_MEMBERS (default 100)
// members in this process with the production intervals (lock lease 10s,
// hedge sync 10s, ring poll 2s, member lease 10s) and reports:
//
//   - Spanner calls per member per second, steady and during a change
//     (counted on every member's client: jupiter's, spindle's and hedge's);
//   - a change (ADD or REMOVE, staged): from the admin command to the last
//     member routing by it, with broadcast and with broadcast lost, and the
//     time of each rebalance stage (every member acknowledging it);
//   - the same stages while 10 members join and leave every few seconds;
//   - leader killed: time to a new leader and to an accepted admin change.
//
// JUPITER_SCALE_QUICK=1 leaves the churn phases out (about 6 minutes);
// JUPITER_SCALE_PHASES picks phases by name, comma-separated (default:
// all): steady, broadcast, poll, churn-leave, churn-kill, leader — e.g.
// JUPITER_SCALE_PHASES=churn-kill measures only the killed churn. The
// Spanner summary needs steady and broadcast.
// Not part of `make test`: TestScaleSmoke runs the same harness with 10
// members and asserts correctness only.
func BenchmarkClusterScale(b *testing.B) {
	n := envInt("JUPITER_SCALE_MEMBERS", 100)
	changes := envInt("JUPITER_SCALE_CHANGES", 10)
	steady := time.Duration(envInt("JUPITER_SCALE_STEADY_S", 30)) * time.Second
	out := io.Writer(os.Stdout)
	phase := scalePhases(os.Getenv("JUPITER_SCALE_PHASES"), os.Getenv("JUPITER_SCALE_QUICK") != "")
	cfg := Config{PollInterval: DefaultPollInterval, MemberLease: DefaultMemberLease}.WithDefaults()
	e := newScaleEnv(b, 3, cfg)
	b.ResetTimer()

	t0 := time.Now()
	base := e.start(n)
	e.waitReady(3 * time.Minute)
	fmt.Fprintf(out, "\n%d members (lock lease %v, hedge sync %v, poll %v, member lease %v): all ready in %v\n",
		n, cfg.LockDuration, cfg.SyncInterval, cfg.PollInterval, cfg.MemberLease, time.Since(t0).Round(time.Millisecond))

	// Spanner calls at steady state (no change).
	time.Sleep(cfg.SyncInterval) // let the start-up burst pass
	var steadyAll, steadyLeader SpannerRPCs
	var secs float64
	if phase("steady") {
		r0, l0 := rpcTotals(base)
		ts := time.Now()
		time.Sleep(steady)
		r1, l1 := rpcTotals(base)
		steadyAll, steadyLeader = r1.Sub(r0), l1.Sub(l0)
		secs = time.Since(ts).Seconds()
	}

	extra := e.redis[2].Addr
	in := false
	// change sends one ADD or REMOVE of extra through a member and waits
	// until base is stable after it.
	change := func(label string, i int) (ct changeTimes, aborted bool, rpcs SpannerRPCs, d time.Duration) {
		live := e.live()
		via := live[(i*7)%len(live)]
		req := addReq(extra)
		if in {
			req = removeReq(extra)
		}
		r0, _ := rpcTotals(base)
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		rep, err := submit(ctx, via, req)
		cancel()
		if err != nil {
			b.Fatalf("%s change %d: %v", label, i, err)
		}
		v := rep.GetVersion()
		st := waitStable(base, v, 3*time.Minute)
		if st == nil {
			b.Fatalf("%s change %d (v%d): not stable on every member within 3m: %s", label, i, v, e.stuck())
		}
		d = time.Since(t0)
		if d > 20*time.Second {
			l := e.leader()
			if l != nil {
				fmt.Fprintf(out, "  (%s change %d took %v; leader's last rebalance error: %q)\n", label, i, ms(d), l.c.Rebalancer.LastError())
			}
		}
		r1, _ := rpcTotals(base)
		if aborted = strings.HasPrefix(st.Change, "ABORT"); !aborted {
			in = !in
		}
		ct, ok := measureChange(base, t0, v, st.Version)
		if !ok {
			b.Fatalf("%s change %d: a member skipped a version of v%d..v%d", label, i, v, st.Version)
		}
		return ct, aborted, r1.Sub(r0), d
	}
	type agg struct {
		reach, spread, total []time.Duration
		stages               map[string][]time.Duration
		aborts, retreats     int
		rpcs                 SpannerRPCs
		dur                  time.Duration
	}
	runN := func(label string, k int) *agg {
		a := &agg{stages: map[string][]time.Duration{}}
		for i := range k {
			ct, aborted, rpcs, d := change(label, i)
			a.reach = append(a.reach, ct.reach[0])
			a.spread = append(a.spread, ct.spread...)
			a.total = append(a.total, d)
			for k, name := range ct.names {
				a.stages[name] = append(a.stages[name], ct.stage[k])
				if name == StageFreeze && k+1 < len(ct.names) && ct.names[k+1] == StagePrepare {
					a.retreats++
				}
			}
			if aborted {
				a.aborts++
			}
			a.rpcs, a.dur = a.rpcs.Add(rpcs), a.dur+d
		}
		return a
	}
	table := func(label string, a *agg) {
		row := func(what string, ds []time.Duration) {
			fmt.Fprintf(out, "%-34s median %7v  p99 %7v  max %7v  (n=%d)\n", label+": "+what,
				ms(percentile(ds, 50)), ms(percentile(ds, 99)), ms(percentile(ds, 100)), len(ds))
		}
		row("change reaches all", a.reach)
		row("version first→last member", a.spread)
		for _, name := range []string{StagePrepare, StageFreeze, StageMigrating, StageCommit} {
			row("stage "+name, a.stages[name])
		}
		row("whole rebalance", a.total)
		if a.aborts > 0 || a.retreats > 0 {
			fmt.Fprintf(out, "%-34s %d of %d (freeze → prepare retreats: %d)\n", label+": aborted", a.aborts, len(a.total), a.retreats)
		}
	}

	var bc *agg
	if phase("broadcast") {
		bc = runN("broadcast", changes)
		table("broadcast", bc)
		b.ReportMetric(float64(percentile(bc.reach, 50).Milliseconds()), "reach-median-ms")
		b.ReportMetric(float64(percentile(bc.reach, 99).Milliseconds()), "reach-p99-ms")
	}

	if phase("poll") {
		e.noBroadcast.Store(true)
		po := runN("poll only", max(changes/2, 1))
		e.noBroadcast.Store(false)
		table("poll only", po)
	}

	// Churn: 10 members join and leave every few seconds. leave: clean
	// stop (Leave) or kill (the lease stays until it runs out).
	churn := func(label string, kill bool) {
		stopChurn := make(chan struct{})
		var churnWG sync.WaitGroup
		churnWG.Add(1)
		cycles := 0
		go func() {
			defer churnWG.Done()
			for {
				ms := e.start(10)
				select {
				case <-stopChurn:
				case <-time.After(3 * time.Second):
				}
				var wg sync.WaitGroup
				for _, m := range ms {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if kill {
							m.kill()
						} else {
							m.stop()
						}
					}()
				}
				wg.Wait()
				e.forget(ms)
				cycles++
				select {
				case <-stopChurn:
					return
				default:
				}
			}
		}()
		a := runN(label, max(changes/2, 1))
		close(stopChurn)
		churnWG.Wait()
		table(label, a)
		var gone int64
		for _, m := range e.live() {
			gone += m.c.Rebalancer.GoneCounted()
		}
		fmt.Fprintf(out, "%-34s %d cycles of 10 members; barriers counted a member gone (connection refused) %d times in all\n", label+": churn", cycles, gone)
		// Let the killed members' leases run out before the next phase.
		time.Sleep(cfg.MemberLease)
	}
	if phase("churn-leave") {
		churn("churn, clean leave", false)
	}
	if phase("churn-kill") {
		churn("churn, killed", true)
	}
	if phase("leader") {
		leaderKilled(b, e, out, extra, in)
	}
	if phase("steady") && bc != nil {
		spannerSummary(out, n, steadyAll, steadyLeader, secs, bc.rpcs, bc.dur, len(bc.total))
	}
	b.ReportMetric(0, "ns/op")
}

// leaderKilled kills the leader and reports the time to a new leader, to
// an accepted admin change (extra added, or removed if in) and to its
// rebalance done.
func leaderKilled(b *testing.B, e *scaleEnv, out io.Writer, extra string, in bool) {
	e.waitReady(time.Minute)
	l := e.leader()
	tk := time.Now()
	l.kill()
	var nl *scaleMember
	if !scaleWait(2*time.Minute, func() bool { nl = e.leader(); return nl != nil }) {
		b.Fatal("no new leader within 2m")
	}
	toLeader := time.Since(tk)
	var via *scaleMember
	for _, m := range e.live() {
		if m != nl {
			via = m
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	req := addReq(extra)
	if in {
		req = removeReq(extra)
	}
	rep, err := submit(ctx, via, req)
	cancel()
	if err != nil {
		b.Fatalf("admin change after leader kill: %v", err)
	}
	toAdmin := time.Since(tk)
	if waitStable(e.live(), rep.GetVersion(), 2*time.Minute) == nil {
		b.Fatalf("rebalance after the leader kill did not finish within 2m: %s", e.stuck())
	}
	toStable := time.Since(tk)
	fmt.Fprintf(out, "%-34s new leader %v, admin change accepted %v, its rebalance done %v\n", "leader killed:", ms(toLeader), ms(toAdmin), ms(toStable))
}

// spannerSummary prints the Spanner calls per member per second, steady
// (over secs) and during the broadcast changes (chg over chgDur, nChg
// changes).
func spannerSummary(out io.Writer, n int, steadyAll, steadyLeader SpannerRPCs, secs float64, chg SpannerRPCs, chgDur time.Duration, nChg int) {
	perSec := func(r SpannerRPCs, members int, s float64) string {
		f := float64(members) * s
		return fmt.Sprintf("reads %.3f  dml %.3f  commits %.3f  other %.3f", float64(r.Reads)/f, float64(r.DML)/f, float64(r.Commits)/f, float64(r.Other)/f)
	}
	fmt.Fprintf(out, "%-34s %s  (per member per s, %.0fs window)\n", "spanner steady, all:", perSec(steadyAll, n, secs), secs)
	fmt.Fprintf(out, "%-34s %s\n", "spanner steady, leader:", perSec(steadyLeader, 1, secs))
	fmt.Fprintf(out, "%-34s %s\n", "spanner steady, follower:", perSec(steadyAll.Sub(steadyLeader), n-1, secs))
	fmt.Fprintf(out, "%-34s %s  (per member per s over %v of changes)\n", "spanner during changes:", perSec(chg, n, chgDur.Seconds()), ms(chgDur))
	fmt.Fprintf(out, "%-34s reads %.1f  commits %.1f  (whole cluster, per change, above steady)\n", "spanner per change:",
		(float64(chg.Reads)-float64(steadyAll.Reads)/secs*chgDur.Seconds())/float64(nChg),
		(float64(chg.Commits)-float64(steadyAll.Commits)/secs*chgDur.Seconds())/float64(nChg))
}

// scalePhases returns whether a phase of BenchmarkClusterScale runs: those
// named in list (comma-separated), or all when list is empty (all but the
// churn phases with quick).
func scalePhases(list string, quick bool) func(string) bool {
	return func(name string) bool {
		if list == "" {
			return !quick || !strings.HasPrefix(name, "churn")
		}
		return slices.Contains(strings.Split(list, ","), name)
	}
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
