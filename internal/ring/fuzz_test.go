package ring

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// parseNodes turns fuzz input into a node list: one node per line,
// "name|addr|weight", missing fields empty, a non-numeric weight counts as
// its length (so negative and huge weights are reachable too via digits).
func parseNodes(spec string) []Node {
	var ns []Node
	for line := range strings.SplitSeq(spec, "\n") {
		if len(ns) == 40 { // New is O(nodes); keep each fuzz run fast
			break
		}
		f := strings.SplitN(line, "|", 3)
		for len(f) < 3 {
			f = append(f, "")
		}
		w, err := strconv.Atoi(f[2])
		if err != nil {
			w = len(f[2])
		}
		ns = append(ns, Node{Name: f[0], Addr: f[1], Weight: w})
	}
	return ns
}

var sentinels = []error{ErrNoNodes, ErrTooManyNodes, ErrDuplicate, ErrUnknownNode, ErrLastNode, ErrBadAddr, ErrBadName, ErrBadWeight}

// FuzzNew: New never panics; it fails with a wrapped sentinel or returns a
// ring whose invariants hold, which does not depend on input order, and in
// which every slot's owner really has the highest score.
func FuzzNew(f *testing.F) {
	f.Add("|10.0.0.1:6379|0\n|10.0.0.2:6379|1\n|10.0.0.3:6379|2", uint64(1))
	f.Add("a|h:1|\nb|h:2|10000\nc|[::1]:3|5", uint64(0))
	f.Add("a|h:1|1\na|h:2|1", uint64(7))
	f.Add("|h:1|1\nh:1|h:2|1", uint64(7))
	f.Add("|h:0|1", uint64(1))
	f.Add("|h:06379|", uint64(1))
	f.Add("|:1|-1", uint64(1))
	f.Add("", uint64(1))
	f.Fuzz(func(t *testing.T, spec string, version uint64) {
		in := parseNodes(spec)
		orig := slices.Clone(in)
		r, err := New(version, in)
		if !slices.Equal(in, orig) {
			t.Fatal("New modified its input")
		}
		if err != nil {
			if r != nil {
				t.Fatal("New returned both a ring and an error")
			}
			if !strings.HasPrefix(err.Error(), "ring: ") || !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error %q is not a wrapped ring sentinel", err)
			}
			return
		}
		checkInvariants(t, r)
		if r.Version() != version || r.Len() != len(in) {
			t.Fatalf("ring v%d with %d nodes from v%d with %d", r.Version(), r.Len(), version, len(in))
		}
		for _, n := range in {
			name := n.Name
			if name == "" {
				name = n.Addr
			}
			i := r.Index(name)
			if i < 0 || r.Node(i).Addr != n.Addr || r.Node(i).Weight != max(n.Weight, 1) {
				t.Fatalf("input node %+v not in ring as %+v", n, r.Nodes())
			}
		}
		rev := slices.Clone(in)
		slices.Reverse(rev)
		if r2, err := New(version, rev); err != nil || r2.owner != r.owner || !r2.Equal(r) {
			t.Fatalf("reversed input gives a different ring (err %v)", err)
		}
		// Spot-check the rendezvous rule against a direct computation.
		for s := 0; s < Slots; s += 257 {
			best := -1
			var bestScore float64
			for i, n := range r.Nodes() {
				sc := score(float64(n.Weight), slotHash(nameSeed(n.Name), uint16(s)))
				if best < 0 || sc > bestScore || (sc == bestScore && n.Name < r.Node(best).Name) {
					best, bestScore = i, sc
				}
			}
			if got := r.SlotOwner(uint16(s)); got != best {
				t.Fatalf("slot %d owned by %d, highest score is %d", s, got, best)
			}
		}
	})
}
