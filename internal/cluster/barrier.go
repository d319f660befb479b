package cluster

import (
	"context"
	"fmt"
	"slices"
)

// Stage barriers (rebalance.md §4.2): the leader advances a stage only
// when every pod with a live lease in the member registry routes by the
// stage's version. Pods report it by heartbeat or by acknowledging the
// stage's broadcast; a pod whose hedge address refuses connections has no
// process left to route (liveness.go).

// barrier reports whether every pod with a live lease routes by version
// (or later): its registry heartbeat says so, or it acknowledged the
// broadcast of version (or a later one) — see barrierWaiting — or nothing
// listens at its address any more (liveness.check). The caller read
// version from the Store before calling: liveness relies on it.
func (r *Rebalancer) barrier(ctx context.Context, version uint64) (bool, error) {
	ms, err := r.cfg.Registry.Members(ctx)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	pending := barrierWaiting(ms, version, r.acked)
	// Forget acks of pods that left the registry.
	for pod := range r.acked {
		if !slices.ContainsFunc(ms, func(l Lease) bool { return l.Pod == pod }) {
			delete(r.acked, pod)
		}
	}
	r.mu.Unlock()
	gone := r.live.check(ctx, version, pending)
	waiting := slices.DeleteFunc(pending, func(l Lease) bool { return gone[l.Pod] })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiting, r.waitingPods = nil, nil
	for _, l := range waiting {
		r.waiting = append(r.waiting, fmt.Sprintf("%s@v%d", l.Pod, l.Applied))
		r.waitingPods = append(r.waitingPods, l.Pod)
	}
	return len(waiting) == 0, nil
}

// barrierWaiting returns the pods a barrier at version waits for (Applied:
// the highest version each reported): every pod with a live lease whose
// heartbeat reports an older version and that has not acknowledged
// version or a later one (acked: pod → highest version it acknowledged).
// The registry decides who must be waited for (a pod the leader's
// broadcast did not reach is still in it); an ack is the pod's own word
// that it routes by the version, as good as its heartbeat and there before
// the heartbeat's write (rebalance.md §4.2: "Broadcast replies only
// shorten the wait. The registry is the truth."). Pure.
func barrierWaiting(ms []Lease, version uint64, acked map[string]uint64) []Lease {
	var waiting []Lease
	for _, m := range ms {
		if m.Live && m.Applied < version && acked[m.Pod] < version {
			m.Applied = max(m.Applied, acked[m.Pod])
			waiting = append(waiting, m)
		}
	}
	return waiting
}

// noteAcks records the pods that acknowledged a ring announcement with the
// version they route by, and wakes the driver to re-check its barrier.
func (r *Rebalancer) noteAcks(acks map[string]uint64) {
	if len(acks) == 0 {
		return
	}
	r.mu.Lock()
	for pod, v := range acks {
		r.acked[pod] = max(r.acked[pod], v)
	}
	r.mu.Unlock()
	r.Kick()
}

// Waiting lists the pods the last barrier check waited for ("pod@vN": the
// version it last reported). Pods counted as gone (liveness.go) are not
// listed; the log names each.
func (r *Rebalancer) Waiting() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.waiting)
}
