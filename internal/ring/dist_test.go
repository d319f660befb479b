package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The hard requirement: every node's share of slots is within two
// percentage points of its share of the total weight.
const maxShareDev = 0.02

// shareDev returns the largest |slot share - weight share| over r's nodes.
func shareDev(r *Ring) (worst float64, node string) {
	total := 0
	for _, n := range r.Nodes() {
		total += n.Weight
	}
	for i, c := range r.SlotCounts() {
		d := math.Abs(float64(c)/Slots - float64(r.Node(i).Weight)/float64(total))
		if d > worst {
			worst, node = d, r.Node(i).Name
		}
	}
	return worst, node
}

func TestBalance(t *testing.T) {
	type tc struct {
		name  string
		nodes []Node
	}
	var cases []tc
	for n := 3; n <= 16; n++ {
		cases = append(cases, tc{fmt.Sprintf("equal/%d", n), nodesN(n)})
	}
	cases = append(cases,
		tc{"weights/1,2,3", weighted(1, 2, 3)},
		tc{"weights/1,1,4", weighted(1, 1, 4)},
		tc{"weights/1..5", weighted(1, 2, 3, 4, 5)},
		tc{"weights/10,10,10,1", weighted(10, 10, 10, 1)},
		tc{"weights/100,1,1,1,1,1,1,1", weighted(100, 1, 1, 1, 1, 1, 1, 1)},
		tc{"weights/1..16", weighted(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)},
		tc{"weights/3x10000,1", weighted(10000, 10000, 10000, 1)},
	)
	worstAll := 0.0
	for _, c := range cases {
		r := mustNew(t, 1, c.nodes)
		d, node := shareDev(r)
		worstAll = max(worstAll, d)
		if d > maxShareDev {
			t.Errorf("%s: node %s is %.2f pp off its weight share (counts %v)", c.name, node, 100*d, r.SlotCounts())
		}
	}
	t.Logf("worst share deviation over %d rings: %.3f pp", len(cases), 100*worstAll)
}

// TestBalanceManyNodes checks larger rings against the statistical
// expectation rather than the fixed 2 pp (which is meaningless once 1/N is
// below 2%): each node's count must be within 6 standard deviations of the
// binomial mean. With a broken hash (correlated nodes or slots) this fails.
func TestBalanceManyNodes(t *testing.T) {
	for _, n := range []int{2, 17, 32, 64, 128} {
		r := mustNew(t, 1, nodesN(n))
		p := 1 / float64(n)
		mean, sd := Slots*p, math.Sqrt(Slots*p*(1-p))
		worst := 0.0
		for _, c := range r.SlotCounts() {
			worst = max(worst, math.Abs(float64(c)-mean)/sd)
		}
		if worst > 6 {
			t.Errorf("%d nodes: a node is %.1f sd from the mean (counts %v)", n, worst, r.SlotCounts())
		}
	}
}

// TestNoSlotPattern guards against hash structure: with 2 equal nodes, the
// owner of slot s must not predict the owner of slot s+1 (or of s with the
// other byte order), which a weak mix of the slot bytes would produce.
func TestNoSlotPattern(t *testing.T) {
	r := mustNew(t, 1, nodesN(2))
	same := 0
	for s := range Slots - 1 {
		if r.SlotOwner(uint16(s)) == r.SlotOwner(uint16(s+1)) {
			same++
		}
	}
	// Expect Slots/2 ± 6 sd (sd = sqrt(Slots)/2 = 64).
	if d := math.Abs(float64(same) - Slots/2); d > 6*64 {
		t.Errorf("adjacent slots share an owner %d times out of %d", same, Slots-1)
	}
}

func TestMovementAdd(t *testing.T) {
	worstFrac := 0.0
	for n := 3; n <= 15; n++ {
		all := nodesN(n + 1)
		old := mustNew(t, 1, all[:n])
		added := all[n]
		nw, err := old.Add(2, added)
		if err != nil {
			t.Fatal(err)
		}
		moves := Diff(old, nw)
		for _, m := range moves {
			if m.To != added.Addr {
				t.Fatalf("n=%d: slot %d moved %s -> %s, between old nodes", n, m.Slot, m.From, m.To)
			}
		}
		if got, want := len(moves), nw.SlotCounts()[nw.Index(added.Addr)]; got != want {
			t.Errorf("n=%d: %d moves, but the new node owns %d slots", n, got, want)
		}
		frac, want := float64(len(moves))/Slots, 1/float64(n+1)
		worstFrac = max(worstFrac, math.Abs(frac-want))
		if math.Abs(frac-want) > 0.02 {
			t.Errorf("n=%d: adding a node moved %.2f%% of slots, want %.2f%% ± 2", n, 100*frac, 100*want)
		}
	}
	t.Logf("add: worst |moved fraction - 1/(N+1)| = %.3f pp", 100*worstFrac)
}

func TestMovementRemove(t *testing.T) {
	for n := 3; n <= 16; n++ {
		old := mustNew(t, 1, nodesN(n))
		counts := old.SlotCounts()
		for i, gone := range old.Nodes() {
			nw, err := old.Remove(2, gone.Name)
			if err != nil {
				t.Fatal(err)
			}
			moves := Diff(old, nw)
			for _, m := range moves {
				if m.From != gone.Name {
					t.Fatalf("n=%d remove %s: slot %d moved %s -> %s", n, gone.Name, m.Slot, m.From, m.To)
				}
			}
			if len(moves) != counts[i] {
				t.Fatalf("n=%d remove %s: %d moves, but it owned %d slots", n, gone.Name, len(moves), counts[i])
			}
			// Add then remove is the identity: the ring is a function of the set.
			back, err := nw.Add(1, gone)
			if err != nil {
				t.Fatal(err)
			}
			if back.owner != old.owner {
				t.Fatalf("n=%d: removing and re-adding %s changed owners", n, gone.Name)
			}
		}
	}
}

func TestMovementWeight(t *testing.T) {
	for _, base := range [][]Node{nodesN(3), nodesN(8), weighted(1, 2, 3, 4, 5)} {
		old := mustNew(t, 1, base)
		for _, x := range old.Nodes() {
			for _, w := range []int{1, 2, 3, 7, 100} {
				if w == x.Weight {
					continue
				}
				nw, err := old.SetWeight(2, x.Name, w)
				if err != nil {
					t.Fatal(err)
				}
				moves := Diff(old, nw)
				for _, m := range moves {
					// Raising a weight raises only that node's scores, so it
					// can only gain slots; lowering can only lose them.
					if (w > x.Weight && m.To != x.Name) || (w < x.Weight && m.From != x.Name) {
						t.Fatalf("%d nodes, %s weight %d -> %d: slot %d moved %s -> %s",
							len(base), x.Name, x.Weight, w, m.Slot, m.From, m.To)
					}
				}
				if len(moves) == 0 {
					t.Errorf("%d nodes, %s weight %d -> %d moved nothing", len(base), x.Name, x.Weight, w)
				}
				if d, node := shareDev(nw); d > maxShareDev {
					t.Errorf("after %s weight -> %d, %s is %.2f pp off", x.Name, w, node, 100*d)
				}
			}
		}
	}
}

func TestDiff(t *testing.T) {
	a := mustNew(t, 1, nodesN(3))
	if m := Diff(a, a); len(m) != 0 {
		t.Errorf("Diff(a, a) has %d moves", len(m))
	}
	// Changing an address without the name moves nothing.
	ns := slices.Clone(a.Nodes())
	ns[1].Addr = "192.168.1.1:7000"
	moved := mustNew(t, 2, ns)
	if m := Diff(a, moved); len(m) != 0 {
		t.Errorf("changing an Addr moved %d slots; ownership must follow the name", len(m))
	}
	if a.owner != moved.owner {
		t.Error("changing an Addr changed the owner table")
	}
	b := mustNew(t, 2, nodesN(5))
	moves := Diff(a, b)
	if !slices.IsSortedFunc(moves, func(x, y Move) int { return int(x.Slot) - int(y.Slot) }) {
		t.Error("Diff not sorted by slot")
	}
	n := 0
	for s := range Slots {
		from, to := a.Node(a.SlotOwner(uint16(s))).Name, b.Node(b.SlotOwner(uint16(s))).Name
		if from != to {
			if n >= len(moves) || moves[n] != (Move{uint16(s), from, to}) {
				t.Fatalf("Diff misses or misreports slot %d (%s -> %s)", s, from, to)
			}
			n++
		}
	}
	if n != len(moves) {
		t.Fatalf("Diff has %d moves, want %d", len(moves), n)
	}
	if m := Diff(nil, a); len(m) != Slots || m[0].From != "" || m[0].To != a.Node(a.SlotOwner(0)).Name {
		t.Errorf("Diff(nil, a): %d moves, first %+v", len(m), m[0])
	}
	if m := Diff(a, nil); len(m) != Slots || m[Slots-1].To != "" || m[Slots-1].Slot != Slots-1 {
		t.Errorf("Diff(a, nil): %d moves", len(m))
	}
	if m := Diff(nil, nil); len(m) != 0 {
		t.Errorf("Diff(nil, nil) has %d moves", len(m))
	}
}

func TestInputOrderIrrelevant(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := weighted(1, 2, 3, 1, 1, 5, 2, 1, 1, 1, 4, 1, 1, 2, 1, 1)
	want := mustNew(t, 1, base)
	for range 20 {
		ns := slices.Clone(base)
		rng.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
		got := mustNew(t, 1, ns)
		if got.owner != want.owner || !got.Equal(want) {
			t.Fatalf("shuffled input %v gave a different ring", ns)
		}
	}
}

// TestGoldenOwners pins the hash function. If it fails, the slot -> node
// mapping changed, which moves keys for every deployed proxy: that must be a
// deliberate, versioned decision, never an accident.
func TestGoldenOwners(t *testing.T) {
	if got := slotHash(nameSeed("10.0.0.1:6379"), 0); got != 0xb886af73097e9aeb {
		t.Errorf("slotHash(10.0.0.1:6379, 0) = %#x", got)
	}
	r := mustNew(t, 1, nodesN(3))
	for _, g := range []struct {
		slot  uint16
		owner string
	}{
		{0, "10.0.0.2:6379"},
		{1, "10.0.0.3:6379"},
		{2, "10.0.0.3:6379"},
		{100, "10.0.0.3:6379"},
		{1000, "10.0.0.1:6379"},
		{5000, "10.0.0.1:6379"},
		{12182, "10.0.0.2:6379"}, // Slot("foo")
		{16383, "10.0.0.1:6379"},
	} {
		if got := r.Node(r.SlotOwner(g.slot)).Name; got != g.owner {
			t.Errorf("slot %d owned by %s, want %s", g.slot, got, g.owner)
		}
	}
	if got := r.Node(r.Owner([]byte("foo"))).Name; got != "10.0.0.2:6379" {
		t.Errorf("Owner(foo) = %s", got)
	}
	if got := r.SlotCounts(); !slices.Equal(got, []int{5439, 5394, 5551}) {
		t.Errorf("3-node SlotCounts = %v", got)
	}
	if got := ownerDigest(r); got != 0x8026dea435151a2b {
		t.Errorf("3-node owner digest = %#x", got)
	}
	w := mustNew(t, 1, weighted(1, 2, 3))
	if got := w.SlotCounts(); !slices.Equal(got, []int{2677, 5391, 8316}) {
		t.Errorf("1,2,3-weighted SlotCounts = %v", got)
	}
	if got := ownerDigest(w); got != 0x5475f6f65bbe2810 {
		t.Errorf("1,2,3-weighted owner digest = %#x", got)
	}
}

// ownerDigest is an FNV-1a hash of the whole owner table, so the golden test
// covers every slot, not just a sample.
func ownerDigest(r *Ring) uint64 {
	h := uint64(fnvOffset64)
	for _, o := range r.owner {
		h = (h ^ uint64(o)) * fnvPrime64
	}
	return h
}

func TestUnit(t *testing.T) {
	for _, h := range []uint64{0, 1, 1 << 12, math.MaxUint64, math.MaxUint64 >> 1} {
		u := unit(h)
		if !(u > 0 && u < 1) {
			t.Errorf("unit(%#x) = %v, not in (0,1)", h, u)
		}
	}
	if unit(0) != 0x1p-53 || unit(math.MaxUint64) != 1-0x1p-53 {
		t.Errorf("unit range = [%v, %v]", unit(0), unit(math.MaxUint64))
	}
}

func TestDetLog(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(x float64) {
		got, want := detLog(x), math.Log(x)
		// Both are < 1 ulp from the true value, so they can differ by at
		// most 1 ulp from each other.
		if got != want && math.Nextafter(got, want) != want {
			t.Fatalf("detLog(%v) = %v, math.Log = %v", x, got, want)
		}
	}
	for _, x := range []float64{0x1p-53, 1 - 0x1p-53, 0.5, 0.25, math.Sqrt2 / 2, 1, 1e-10, 0.1, 0.9} {
		check(x)
	}
	for range 200000 {
		check(unit(rng.Uint64()))
	}
	if detLog(1) != 0 || detLog(0.5) != -math.Ln2 {
		t.Errorf("detLog(1) = %v, detLog(0.5) = %v", detLog(1), detLog(0.5))
	}
}

// TestTieGoesToSmallestName: equal scores go to the node that sorts first.
// New forbids equal names, so this builds a ring by hand with two nodes of
// the same name, whose scores are then equal on every slot.
func TestTieGoesToSmallestName(t *testing.T) {
	r := &Ring{nodes: []Node{{Name: "a", Addr: "a:1", Weight: 1}, {Name: "a", Addr: "a:2", Weight: 1}}}
	r.assign() // identical names => identical scores on every slot
	if c := r.SlotCounts(); c[0] != Slots {
		t.Fatalf("tied scores: first node got %d slots, want all", c[0])
	}
}

// TestDetLogGolden pins the bits of detLog over 2^20 inputs spread over
// (0,1). Run it with GOAMD64=v3 (where the compiler may fuse x*y+z into
// FMA) or GOARCH=386/arm64: the digest must not change. A plain copy of the
// algorithm without the float64 conversions changes it under GOAMD64=v3 in
// about 1 input in 700.
func TestDetLogGolden(t *testing.T) {
	h := uint64(fnvOffset64)
	for i := range uint64(1 << 20) {
		h = (h ^ math.Float64bits(detLog(unit(mix64(i))))) * fnvPrime64
	}
	if h != 0x35b79f5cb2fb141a {
		t.Errorf("detLog digest = %#x", h)
	}
}
