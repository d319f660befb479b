package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Dead pods at stage barriers. A pod killed without Leave (SIGKILL, OOM
// kill, crash) keeps its registry lease for --member-lease, and every
// barrier waited that long for it; pods killed faster than one per lease
// kept the freeze barrier from ever passing (docs/scale.md "What breaks
// first"). A dead process cannot route, and its kernel proves it is gone:
// a connection to its hedge address is refused. So while a barrier waits
// for a pod, the leader dials the pod's hedge address (the registry's pod
// name) and counts the pod as gone for that barrier when the dial is
// refused (ECONNREFUSED: nothing listens there). A timeout or any other
// error proves nothing (a partition, a lost node, a busy pod): the barrier
// keeps waiting for the pod's ack or heartbeat, or for its lease to run
// out, as before.
//
// Why a refusal is enough (rebalance.md I0: a pod that may still route by
// an older stage is never skipped). A process routes only by rings its
// Syncer read from the Store, and it listens on its hedge address from
// before its first ring read until after it stopped routing:
//
//   - Cluster.Start (cluster.go) starts the Syncer only after Member.Start
//     returned, which waits for hedge's IsRunning; hedge sets that after
//     both of its listeners are open (hedge.go Op.Run). The Syncer
//     registers and then reads the ring (Syncer.syncOnce), and the data
//     path routes only by the rings the Syncer publishes: `jupiter serve`
//     answers keyed commands -TRYAGAIN until the first one
//     (cmd/jupiter/cluster.go serveCluster, Options.Publish).
//   - hedge closes its TCP listener only when its context ends (Op.Run;
//     an Accept error ends the accept loop but leaves the socket open,
//     which then accepts into its backlog or times out, never refuses).
//     That context is the Member's, cancelled only by Member.Stop, which
//     `jupiter serve` calls (through Cluster.Shutdown) after draining, i.e.
//     after closing every client connection (frontEnds.drain).
//
// The barrier at version V runs after V was stored (Step read it). If the
// dial is refused, no process listened at the address at that moment, so
// none routes there by anything older than V: a process that starts later
// (a restart on the same address, or another pod given the IP) registers
// and reads the ring after the probe and gets V or later. Hence a refusal
// counts only for the barrier of the version read before the probe, and a
// pod is probed again at every stage.
//
// The assumption: ECONNREFUSED comes from the pod's own kernel. A network
// policy that REJECTs (rather than drops) the leader's connections to a
// live pod's hedge port would break this, as it breaks hedge itself.

// Probe policy, per barrier: a pending pod is probed once it has been
// waited for ProbeAfter (acks normally arrive sooner; a pod found gone at
// the previous stage is probed at once), then at most every ProbeEvery,
// each dial bounded by ProbeTimeout, at most ProbeMax pods at a time
// (least recently probed first). The driver waits for a round of dials:
// a pod that refuses answers in well under a millisecond; one that does not
// answer (node lost) holds the driver up to ProbeTimeout, once a ProbeEvery.
const (
	ProbeAfter   = 500 * time.Millisecond
	ProbeEvery   = time.Second
	ProbeTimeout = 300 * time.Millisecond
	ProbeMax     = 32
)

// dialRefused reports whether a TCP connection to addr (a pod's hedge
// address, IP:port) is refused. Any other outcome is false: it proves
// nothing. So is an address that is not an IP literal (a name may resolve
// to several addresses, of which the first error would speak for all) or
// an unspecified one (0.0.0.0 names no pod: a dial reaches the leader's
// own host).
func dialRefused(ctx context.Context, addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().IsUnspecified() {
		return false
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ap.String())
	if err == nil {
		c.Close()
		return false
	}
	return refused(err)
}

// refused reports whether err is a refused connection. Pure.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// liveness remembers, for the barrier at one ring version, which waited-for
// pods refused a connection, and probes the pods due. Safe for concurrent
// use; it starts no goroutine that outlives check.
type liveness struct {
	// probe reports whether nothing listens at a pod's address (dialRefused).
	probe func(ctx context.Context, addr string) bool
	log   *slog.Logger
	gone  atomic.Int64 // pods counted as gone, all barriers

	mu      sync.Mutex
	version uint64               // the barrier the fields below belong to
	began   time.Time            // when check first saw version
	refused map[string]bool      // pods that refused since version was stored
	probed  map[string]time.Time // last probe of each pod at version
	suspect map[string]bool      // pods that refused at the previous barrier
}

// check returns the pods of pending that refused a connection since the
// barrier at version began, after probing those due (probeDue). The caller
// read version from the Store before calling.
func (l *liveness) check(ctx context.Context, version uint64, pending []Lease) map[string]bool {
	now := time.Now()
	l.mu.Lock()
	if version != l.version || l.refused == nil {
		l.suspect, l.refused = l.refused, map[string]bool{}
		l.version, l.began, l.probed = version, now, map[string]time.Time{}
	}
	pods := make([]string, len(pending))
	for i, p := range pending {
		pods[i] = p.Pod
	}
	due := probeDue(pods, l.refused, l.probed, l.suspect, now.Sub(l.began), now)
	for _, pod := range due {
		l.probed[pod] = now
	}
	l.mu.Unlock()

	found := l.probeAll(ctx, due)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.version == version {
		for _, p := range pending {
			if found[p.Pod] && !l.refused[p.Pod] {
				l.refused[p.Pod] = true
				l.gone.Add(1)
				l.log.Info("barrier counts a pod as gone: its hedge address refuses connections (no process listens there)",
					"pod", p.Pod, "version", version, "pod_reported", p.Applied)
			}
		}
	}
	out := map[string]bool{}
	for _, p := range pending {
		if l.refused[p.Pod] {
			out[p.Pod] = true
		}
	}
	return out
}

// probeAll probes pods in parallel, each within ProbeTimeout, and returns
// those refused. It returns when every probe has.
func (l *liveness) probeAll(ctx context.Context, pods []string) map[string]bool {
	if len(pods) == 0 {
		return nil
	}
	res := make([]bool, len(pods))
	var wg sync.WaitGroup
	for i, pod := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
			defer cancel()
			res[i] = l.probe(pctx, pod)
		}()
	}
	wg.Wait()
	out := map[string]bool{}
	for i, pod := range pods {
		if res[i] {
			out[pod] = true
		}
	}
	return out
}

// probeDue picks the pods of pending to probe now, when the barrier has
// waited for waited: not already refused at this barrier, not probed
// within ProbeEvery, waited for at least ProbeAfter unless suspect (gone
// at the previous barrier); at most ProbeMax, least recently probed
// first. Pure.
func probeDue(pending []string, refused map[string]bool, probed map[string]time.Time, suspect map[string]bool, waited time.Duration, now time.Time) []string {
	var due []string
	for _, pod := range pending {
		last, seen := probed[pod]
		switch {
		case refused[pod]:
		case seen && now.Sub(last) < ProbeEvery:
		case waited < ProbeAfter && !suspect[pod]:
		default:
			due = append(due, pod)
		}
	}
	slices.SortStableFunc(due, func(a, b string) int { return probed[a].Compare(probed[b]) })
	return due[:min(len(due), ProbeMax)]
}
