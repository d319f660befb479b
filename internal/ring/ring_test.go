package ring

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// nodesN returns n equal-weight nodes named like real backends.
func nodesN(n int) []Node {
	ns := make([]Node, n)
	for i := range ns {
		ns[i] = Node{Addr: fmt.Sprintf("10.0.0.%d:6379", i+1)}
	}
	return ns
}

// weighted returns one node per weight, named like nodesN.
func weighted(ws ...int) []Node {
	ns := nodesN(len(ws))
	for i, w := range ws {
		ns[i].Weight = w
	}
	return ns
}

func mustNew(t testing.TB, version uint64, nodes []Node) *Ring {
	t.Helper()
	r, err := New(version, nodes)
	if err != nil {
		t.Fatalf("New(%d, %v): %v", version, nodes, err)
	}
	return r
}

// checkInvariants asserts what must hold for every ring New returns.
func checkInvariants(t testing.TB, r *Ring) {
	t.Helper()
	ns := r.Nodes()
	if r.Len() != len(ns) || r.Len() < 1 || r.Len() > MaxNodes {
		t.Fatalf("Len() = %d, len(Nodes()) = %d", r.Len(), len(ns))
	}
	addrs := map[string]bool{}
	for i, n := range ns {
		if i > 0 && ns[i-1].Name >= n.Name {
			t.Fatalf("nodes not strictly sorted by name: %q then %q", ns[i-1].Name, n.Name)
		}
		if n.Name == "" || n.Weight < 1 || n.Weight > MaxWeight {
			t.Fatalf("node %d not normalized: %+v", i, n)
		}
		if addrs[n.Addr] {
			t.Fatalf("duplicate addr %q", n.Addr)
		}
		addrs[n.Addr] = true
		if r.Index(n.Name) != i || r.Node(i) != n {
			t.Fatalf("Index/Node disagree for %q at %d", n.Name, i)
		}
	}
	total := 0
	for _, c := range r.SlotCounts() {
		total += c
	}
	if total != Slots {
		t.Fatalf("SlotCounts sum to %d, want %d", total, Slots)
	}
	for s := range Slots {
		if o := r.SlotOwner(uint16(s)); o < 0 || o >= r.Len() {
			t.Fatalf("SlotOwner(%d) = %d out of range", s, o)
		}
	}
}

func TestNewBasics(t *testing.T) {
	r := mustNew(t, 7, []Node{
		{Addr: "10.0.0.2:6379", Weight: 2},
		{Name: "alpha", Addr: "10.0.0.9:6380"},
		{Addr: "10.0.0.1:6379", Weight: 0},
	})
	checkInvariants(t, r)
	if r.Version() != 7 {
		t.Errorf("Version() = %d, want 7", r.Version())
	}
	want := []Node{
		{Name: "10.0.0.1:6379", Addr: "10.0.0.1:6379", Weight: 1},
		{Name: "10.0.0.2:6379", Addr: "10.0.0.2:6379", Weight: 2},
		{Name: "alpha", Addr: "10.0.0.9:6380", Weight: 1},
	}
	if !slices.Equal(r.Nodes(), want) {
		t.Errorf("Nodes() = %+v, want %+v", r.Nodes(), want)
	}
	if i := r.Index("alpha"); i != 2 {
		t.Errorf("Index(alpha) = %d, want 2", i)
	}
	if i := r.Index("10.0.0.9:6380"); i != -1 {
		t.Errorf("Index(addr of a renamed node) = %d, want -1: identity is the name", i)
	}
	if i := r.Index("nope"); i != -1 {
		t.Errorf("Index(nope) = %d, want -1", i)
	}
	key := []byte("{user1000}.following")
	if r.Owner(key) != r.SlotOwner(Slot(key)) {
		t.Errorf("Owner and SlotOwner(Slot) disagree")
	}
	if s := r.String(); s != "ring v7 [10.0.0.1:6379(w1) 10.0.0.2:6379(w2) alpha=10.0.0.9:6380(w1)]" {
		t.Errorf("String() = %q", s)
	}
}

func TestNewCopiesInput(t *testing.T) {
	in := nodesN(4)
	r := mustNew(t, 1, in)
	before := slices.Clone(r.Nodes())
	in[0].Name, in[0].Addr, in[0].Weight = "x", "9.9.9.9:1", 50
	if !slices.Equal(r.Nodes(), before) {
		t.Fatal("modifying New's input changed the ring")
	}
}

func TestSingleNode(t *testing.T) {
	r := mustNew(t, 1, nodesN(1))
	if c := r.SlotCounts(); len(c) != 1 || c[0] != Slots {
		t.Fatalf("single node owns %v slots, want all", c)
	}
}

func TestValidation(t *testing.T) {
	long := strings.Repeat("n", MaxNameLen+1)
	for _, tc := range []struct {
		name  string
		nodes []Node
		want  error
	}{
		{"nil", nil, ErrNoNodes},
		{"empty", []Node{}, ErrNoNodes},
		{"too many", nodesN(MaxNodes + 1), ErrTooManyNodes},
		{"no port", []Node{{Addr: "10.0.0.1"}}, ErrBadAddr},
		{"empty addr", []Node{{Name: "a"}}, ErrBadAddr},
		{"empty host", []Node{{Addr: ":6379"}}, ErrBadAddr},
		{"port 0", []Node{{Addr: "h:0"}}, ErrBadAddr},
		{"port too big", []Node{{Addr: "h:65536"}}, ErrBadAddr},
		{"port negative", []Node{{Addr: "h:-1"}}, ErrBadAddr},
		{"port plus", []Node{{Addr: "h:+80"}}, ErrBadAddr},
		{"port leading zero", []Node{{Addr: "h:06379"}}, ErrBadAddr},
		{"port name", []Node{{Addr: "h:redis"}}, ErrBadAddr},
		{"port empty", []Node{{Addr: "h:"}}, ErrBadAddr},
		{"ipv6 unbracketed", []Node{{Addr: "::1:6379"}}, ErrBadAddr},
		{"space in host", []Node{{Addr: "my host:6379"}}, ErrBadAddr},
		{"slash in host", []Node{{Addr: "redis://h:6379"}}, ErrBadAddr},
		{"non-ASCII host", []Node{{Addr: "h\xe9:6379"}}, ErrBadAddr},
		{"long host", []Node{{Addr: strings.Repeat("h", 254) + ":1"}}, ErrBadAddr},
		{"non-UTF-8 name", []Node{{Name: "\xff", Addr: "h:1"}}, ErrBadName},
		{"space in name", []Node{{Name: "a b", Addr: "h:1"}}, ErrBadName},
		{"control in name", []Node{{Name: "a\nb", Addr: "h:1"}}, ErrBadName},
		{"long name", []Node{{Name: long, Addr: "h:1"}}, ErrBadName},
		{"weight negative", []Node{{Addr: "h:1", Weight: -1}}, ErrBadWeight},
		{"weight too big", []Node{{Addr: "h:1", Weight: MaxWeight + 1}}, ErrBadWeight},
		{"duplicate addr", []Node{{Addr: "h:1"}, {Addr: "h:1"}}, ErrDuplicate},
		{"duplicate addr, different names", []Node{{Name: "a", Addr: "h:1"}, {Name: "b", Addr: "h:1"}}, ErrDuplicate},
		{"duplicate name", []Node{{Name: "a", Addr: "h:1"}, {Name: "a", Addr: "h:2"}}, ErrDuplicate},
		{"name equals other's defaulted name", []Node{{Addr: "h:1"}, {Name: "h:1", Addr: "h:2"}}, ErrDuplicate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(1, tc.nodes)
			if !errors.Is(err, tc.want) {
				t.Fatalf("New error = %v, want %v", err, tc.want)
			}
			if r != nil {
				t.Fatalf("New returned a ring with an error")
			}
			if !strings.HasPrefix(err.Error(), "ring: ") {
				t.Errorf("error %q lacks the ring: prefix", err)
			}
		})
	}
	// And the boundaries that must be accepted.
	for _, ns := range [][]Node{
		nodesN(MaxNodes),
		{{Addr: "h:65535", Weight: MaxWeight}},
		{{Addr: "[::1]:6379"}, {Addr: "redis-0.redis.svc:1"}, {Addr: "redis_a:2"}, {Addr: "[fe80::1%eth0]:3"}},
		{{Name: "répliqué-1", Addr: "h:1"}},
		{{Name: strings.Repeat("n", MaxNameLen), Addr: "h:1"}},
		{{Name: "a", Addr: "h:2"}, {Name: "h:2", Addr: "h:1"}}, // names and addrs are separate namespaces
	} {
		if testing.Short() && len(ns) == MaxNodes {
			continue
		}
		if _, err := New(1, ns); err != nil {
			t.Errorf("New(%.60v...) = %v, want success", ns, err)
		}
	}
}

func TestEditErrors(t *testing.T) {
	r := mustNew(t, 1, nodesN(2))
	if _, err := r.Add(2, Node{Addr: "10.0.0.1:6379"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Add(existing) = %v, want ErrDuplicate", err)
	}
	if _, err := r.Add(2, Node{Name: "10.0.0.2:6379", Addr: "10.0.0.3:6379"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Add(existing name) = %v, want ErrDuplicate", err)
	}
	if _, err := r.Add(2, Node{Addr: "bad"}); !errors.Is(err, ErrBadAddr) {
		t.Errorf("Add(bad addr) = %v, want ErrBadAddr", err)
	}
	if _, err := r.Remove(2, "10.0.0.9:6379"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("Remove(unknown) = %v, want ErrUnknownNode", err)
	}
	if _, err := r.SetWeight(2, "10.0.0.9:6379", 3); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("SetWeight(unknown) = %v, want ErrUnknownNode", err)
	}
	if _, err := r.SetWeight(2, "10.0.0.1:6379", -2); !errors.Is(err, ErrBadWeight) {
		t.Errorf("SetWeight(-2) = %v, want ErrBadWeight", err)
	}
	r1, err := r.Remove(2, "10.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	if r1.Len() != 1 || r1.Version() != 2 || r.Len() != 2 {
		t.Fatalf("Remove: new ring has %d nodes v%d, old has %d", r1.Len(), r1.Version(), r.Len())
	}
	if _, err := r1.Remove(3, "10.0.0.2:6379"); !errors.Is(err, ErrLastNode) {
		t.Errorf("Remove(last) = %v, want ErrLastNode", err)
	}
}

func TestEditsDoNotTouchOriginal(t *testing.T) {
	r := mustNew(t, 1, nodesN(3))
	nodes := slices.Clone(r.Nodes())
	owners := r.owner
	for _, f := range []func() (*Ring, error){
		func() (*Ring, error) { return r.Add(2, Node{Addr: "10.0.0.99:6379"}) },
		func() (*Ring, error) { return r.Remove(2, "10.0.0.2:6379") },
		func() (*Ring, error) { return r.SetWeight(2, "10.0.0.2:6379", 5) },
		func() (*Ring, error) { return r.With(2, nodesN(5)) },
	} {
		n, err := f()
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, n)
		if n.Version() != 2 {
			t.Errorf("edited ring has version %d, want 2", n.Version())
		}
	}
	if !slices.Equal(r.Nodes(), nodes) || r.owner != owners || r.Version() != 1 {
		t.Fatal("an edit modified the original ring")
	}
}

func TestEqual(t *testing.T) {
	a := mustNew(t, 1, nodesN(3))
	rev := nodesN(3)
	slices.Reverse(rev)
	b := mustNew(t, 1, rev)
	for _, tc := range []struct {
		name string
		x, y *Ring
		want bool
	}{
		{"same", a, a, true},
		{"input order", a, b, true},
		{"version", a, mustNew(t, 2, nodesN(3)), false},
		{"weight", a, mustNew(t, 1, weighted(1, 1, 2)), false},
		{"weight 0 is 1", a, mustNew(t, 1, weighted(0, 1, 0)), true},
		{"addr", a, mustNew(t, 1, []Node{{Name: "10.0.0.1:6379", Addr: "10.0.1.1:6379"}, {Addr: "10.0.0.2:6379"}, {Addr: "10.0.0.3:6379"}}), false},
		{"nodes", a, mustNew(t, 1, nodesN(4)), false},
		{"nil", a, nil, false},
		{"nil nil", nil, nil, true},
	} {
		if got := tc.x.Equal(tc.y); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
		if got := tc.y.Equal(tc.x); got != tc.want {
			t.Errorf("%s: Equal (swapped) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
