package health

import (
	"slices"
	"testing"
	"time"
)

func TestQuorum(t *testing.T) {
	for _, c := range []struct{ reporters, fleet, want int }{
		{1, 1, 1}, // standalone: the pod is its own quorum
		{1, 2, 2}, // a lone reporter in a fleet cannot change anything
		{1, 3, 2},
		{2, 2, 2},
		{2, 3, 2},
		{3, 3, 2},
		{4, 4, 3},
		{5, 5, 3},
		{0, 0, 1},
		{0, 3, 2},
	} {
		if got := Quorum(c.reporters, c.fleet); got != c.want {
			t.Errorf("Quorum(%d, %d) = %d, want %d", c.reporters, c.fleet, got, c.want)
		}
	}
}

// rep builds a report: down lists the nodes the pod cannot reach, up the
// ones it can.
func rep(pod string, down, up []string) Report {
	r := Report{Pod: pod, Nodes: map[string]string{}}
	for _, a := range down {
		r.Nodes[a] = "i/o timeout"
	}
	for _, a := range up {
		r.Nodes[a] = ""
	}
	return r
}

func TestDecide(t *testing.T) {
	t0 := time.Unix(1000, 0)
	now := t0.Add(time.Minute)
	downA := Verdict{Nodes: map[string]Node{"a": {Addr: "a", Down: true, Since: t0}, "b": {Addr: "b"}}, Pods: 3, At: t0}
	upAll := Verdict{Nodes: map[string]Node{"a": {Addr: "a"}, "b": {Addr: "b"}}, Pods: 3, At: t0}
	ab := []string{"a", "b"}
	for _, c := range []struct {
		name     string
		prev     Verdict
		reports  []Report
		fleet    int
		wantDown []string
		wantBy   map[string][]string // node → DownBy
		keepPrev bool                // the result is prev itself
	}{
		{name: "all reach everything", prev: Verdict{}, fleet: 3,
			reports: []Report{rep("p1", nil, ab), rep("p2", nil, ab), rep("p3", nil, ab)}},
		{name: "majority of 3 marks down", prev: upAll, fleet: 3,
			reports:  []Report{rep("p1", []string{"a"}, []string{"b"}), rep("p2", []string{"a"}, []string{"b"}), rep("p3", nil, ab)},
			wantDown: []string{"a"}, wantBy: map[string][]string{"a": {"p1", "p2"}}},
		{name: "one pod of 3 alone does not", prev: upAll, fleet: 3,
			reports: []Report{rep("p1", []string{"a"}, []string{"b"}), rep("p2", nil, ab), rep("p3", nil, ab)},
			wantBy:  map[string][]string{"a": {"p1"}}},
		{name: "one pod of 2 alone does not", prev: upAll, fleet: 2,
			reports: []Report{rep("p1", []string{"a"}, []string{"b"}), rep("p2", nil, ab)}},
		{name: "both pods of 2 do", prev: upAll, fleet: 2,
			reports:  []Report{rep("p1", []string{"a"}, []string{"b"}), rep("p2", []string{"a"}, []string{"b"})},
			wantDown: []string{"a"}},
		{name: "the only answer in a fleet of 3 cannot mark down", prev: upAll, fleet: 3,
			reports: []Report{rep("p1", []string{"a"}, []string{"b"})}},
		{name: "nor bring up", prev: downA, fleet: 3,
			reports: []Report{rep("p1", nil, ab)}, wantDown: []string{"a"}},
		{name: "standalone: its own quorum", prev: upAll, fleet: 1,
			reports: []Report{rep("self", []string{"a"}, []string{"b"})}, wantDown: []string{"a"}},
		{name: "two of three answered, both down", prev: upAll, fleet: 3,
			reports:  []Report{rep("p1", []string{"a"}, []string{"b"}), rep("p2", []string{"a"}, []string{"b"})},
			wantDown: []string{"a"}},
		{name: "recovery needs a quorum that reaches it", prev: downA, fleet: 3,
			reports: []Report{rep("p1", nil, ab), rep("p2", nil, ab), rep("p3", []string{"a"}, []string{"b"})}},
		{name: "one pod that reaches it does not bring it up", prev: downA, fleet: 3,
			reports:  []Report{rep("p1", nil, ab), rep("p2", []string{"a"}, []string{"b"}), rep("p3", []string{"a"}, []string{"b"})},
			wantDown: []string{"a"}},
		{name: "split 2/2 of 4 keeps down", prev: downA, fleet: 4,
			reports: []Report{rep("p1", nil, ab), rep("p2", nil, ab),
				rep("p3", []string{"a"}, []string{"b"}), rep("p4", []string{"a"}, []string{"b"})},
			wantDown: []string{"a"}},
		{name: "split 2/2 of 4 keeps up", prev: upAll, fleet: 4,
			reports: []Report{rep("p1", nil, ab), rep("p2", nil, ab),
				rep("p3", []string{"a"}, []string{"b"}), rep("p4", []string{"a"}, []string{"b"})}},
		{name: "a pod's second report is ignored", prev: upAll, fleet: 3,
			reports: []Report{rep("p1", []string{"a"}, []string{"b"}), rep("p1", []string{"a"}, []string{"b"}), rep("p2", nil, ab)}},
		{name: "no report keeps the verdict", prev: downA, fleet: 3, keepPrev: true},
		{name: "a node nobody reports on leaves", prev: downA, fleet: 3,
			reports: []Report{rep("p1", nil, []string{"b"}), rep("p2", nil, []string{"b"})}},
		{name: "a new node starts up", prev: upAll, fleet: 3,
			reports: []Report{rep("p1", nil, []string{"a", "b", "c"}), rep("p2", nil, []string{"a", "b", "c"})}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Decide(c.prev, c.reports, c.fleet, now)
			if c.keepPrev {
				if got.At != c.prev.At || !got.Equal(c.prev) {
					t.Fatalf("got %+v, want prev %+v", got, c.prev)
				}
				return
			}
			if d := got.DownNodes(); !slices.Equal(d, c.wantDown) {
				t.Fatalf("down %v, want %v (verdict %+v)", d, c.wantDown, got.Nodes)
			}
			for addr, by := range c.wantBy {
				if n := got.Nodes[addr]; !slices.Equal(n.DownBy, by) || n.DownReports() != len(by) {
					t.Errorf("%s: down_by %v, want %v", addr, n.DownBy, by)
				}
			}
			for addr, n := range got.Nodes {
				changed := n.Down != c.prev.Nodes[addr].Down
				if changed && !n.Since.Equal(now) || !changed && !n.Since.Equal(c.prev.Nodes[addr].Since) {
					t.Errorf("%s: since %v (changed %v)", addr, n.Since, changed)
				}
			}
			if _, ok := got.Nodes["a"]; !ok && c.name != "a node nobody reports on leaves" {
				t.Errorf("node a missing from %+v", got.Nodes)
			}
		})
	}
}
