// Package health decides, for the whole fleet, whether a backend node is
// down: the quorum rule the cluster leader applies to the pods' reports
// (cluster.LoadExchange carries them), and the verdict every pod enforces.
//
// A pod alone cannot tell "the node stopped" from "my link to it broke".
// So no pod's own view marks a node down for the fleet: the leader counts
// the pods that reported on the node in one round (reporters) and the ones
// that could not reach it (down reports), and changes the verdict only
// when a quorum agrees:
//
//	quorum(reporters, fleet) = reporters/2 + 1, and at least 2 when fleet ≥ 2
//
// up → down needs quorum down reports; down → up needs quorum reports that
// reach it. Anything in between keeps the previous verdict (hysteresis),
// so a split fleet does not flap. fleet is the number of pods the leader
// knows (hedge members) or the number that answered, whichever is larger:
// a leader that hears only itself in a fleet of three cannot mark a node
// down on its own. A fleet of one pod is its own quorum.
//
// A node marked down is not remapped: its keys fail fast on every pod
// with the same error until a quorum reaches it again. A cache must not
// serve a second owner's stale data.
//
// Everything here is pure (no clock, no I/O): the caller passes now.
package health

import (
	"slices"
	"time"
)

// Quorum is the number of agreeing reports that changes a node's verdict
// when reporters pods reported on it in a fleet of fleet pods (see the
// package comment). A quorum larger than reporters cannot be met: the
// verdict stays.
func Quorum(reporters, fleet int) int {
	q := reporters/2 + 1
	if fleet >= 2 && q < 2 {
		q = 2
	}
	return q
}

// Report is one pod's view of the nodes of its ring in one round: for each
// node address it reports on, "" when its probe reached the node, else why
// not.
type Report struct {
	Pod   string
	Nodes map[string]string
}

// Node is the fleet's verdict on one node and the round that made it.
type Node struct {
	Addr string `json:"addr"`
	Down bool   `json:"down"`
	// DownBy are the pods that reported the node unreachable in the last
	// round, sorted; Reporters is how many pods reported on it.
	DownBy    []string `json:"down_by"`
	Reporters int      `json:"reporters"`
	// Quorum is the number of agreeing reports a change needed.
	Quorum int `json:"quorum"`
	// Since is when the verdict last changed (zero: never, the node has
	// been up since the leader first heard of it).
	Since time.Time `json:"since"`
	// Error is one down reporter's probe error (empty when none).
	Error string `json:"error,omitempty"`
}

// DownReports is how many pods reported the node unreachable.
func (n Node) DownReports() int { return len(n.DownBy) }

// Verdict is the fleet's health: a Node per node address of the last round.
type Verdict struct {
	Nodes map[string]Node
	Pods  int       // pods whose reports made it
	At    time.Time // when the round was decided (zero: no verdict yet)
}

// Down reports whether the verdict says addr is down.
func (v Verdict) Down(addr string) bool { return v.Nodes[addr].Down }

// Equal reports whether v and w mark the same nodes down.
func (v Verdict) Equal(w Verdict) bool {
	return slices.Equal(v.DownNodes(), w.DownNodes())
}

// DownNodes returns the addresses marked down, sorted.
func (v Verdict) DownNodes() []string {
	var out []string
	for a, n := range v.Nodes {
		if n.Down {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Decide makes the next verdict from the previous one and one round's
// reports (one per pod; a pod's second report in a round is ignored). fleet
// is the number of pods the leader knows. Nodes no pod reported on leave
// the verdict (they left the ring); a round without any report keeps prev.
func Decide(prev Verdict, reports []Report, fleet int, now time.Time) Verdict {
	type tally struct {
		reporters int
		downBy    []string
		err       string
	}
	seen := map[string]bool{}
	tallies := map[string]*tally{}
	for _, r := range reports {
		if seen[r.Pod] || len(r.Nodes) == 0 {
			continue
		}
		seen[r.Pod] = true
		for addr, why := range r.Nodes {
			t := tallies[addr]
			if t == nil {
				t = &tally{}
				tallies[addr] = t
			}
			t.reporters++
			if why != "" {
				t.downBy = append(t.downBy, r.Pod)
				if t.err == "" {
					t.err = why
				}
			}
		}
	}
	if len(seen) == 0 {
		return prev
	}
	fleet = max(fleet, len(seen))
	next := Verdict{Nodes: make(map[string]Node, len(tallies)), Pods: len(seen), At: now}
	for addr, t := range tallies {
		old, known := prev.Nodes[addr]
		q := Quorum(t.reporters, fleet)
		slices.Sort(t.downBy)
		n := Node{Addr: addr, Down: old.Down, DownBy: t.downBy, Reporters: t.reporters, Quorum: q, Error: t.err}
		if known {
			n.Since = old.Since
		}
		switch up := t.reporters - len(t.downBy); {
		case !n.Down && len(t.downBy) >= q:
			n.Down, n.Since = true, now
		case n.Down && up >= q:
			n.Down, n.Since = false, now
		}
		next.Nodes[addr] = n
	}
	return next
}
