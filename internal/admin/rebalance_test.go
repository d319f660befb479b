package admin

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/alphauslabs/jupiter/internal/ring"
)

const (
	n1 = "10.0.0.1:6379"
	n2 = "10.0.0.2:6379"
	n3 = "10.0.0.3:6379"
)

func mustRing(t testing.TB, v uint64, nodes ...ring.Node) *ring.Ring {
	t.Helper()
	r, err := ring.New(v, nodes)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func planNode(t *testing.T, p PlanResult, addr string) PlanNode {
	t.Helper()
	for _, n := range p.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("plan has no node %s: %+v", addr, p.Nodes)
	return PlanNode{}
}

// near reports whether got is within frac of want.
func near(got, want, frac float64) bool { return math.Abs(got-want) <= frac*want }

// checkPlanSums checks what holds for every plan: slot counts add up, every
// moving slot leaves one node and reaches another.
func checkPlanSums(t *testing.T, p PlanResult) {
	t.Helper()
	var now, after, out, in int
	for _, n := range p.Nodes {
		now += n.SlotsNow
		after += n.SlotsAfter
		out += n.SlotsOut
		in += n.SlotsIn
		if n.SlotsAfter != n.SlotsNow-n.SlotsOut+n.SlotsIn {
			t.Errorf("%s: after %d != now %d - out %d + in %d", n.Addr, n.SlotsAfter, n.SlotsNow, n.SlotsOut, n.SlotsIn)
		}
	}
	if now != ring.Slots || after != ring.Slots || out != p.MovingSlots || in != p.MovingSlots {
		t.Errorf("sums: now %d after %d out %d in %d moving %d", now, after, out, in, p.MovingSlots)
	}
	for i := 1; i < len(p.Nodes); i++ {
		if p.Nodes[i-1].Addr >= p.Nodes[i].Addr {
			t.Errorf("nodes not sorted by address: %+v", p.Nodes)
		}
	}
}

func TestComputePlan(t *testing.T) {
	two := mustRing(t, 4, ring.Node{Addr: n1}, ring.Node{Addr: n2})
	three, _ := two.Add(5, ring.Node{Addr: n3})
	heavy, _ := two.SetWeight(5, n2, 2)
	sizes := map[string]int64{n1: 12000, n2: 9000, n3: 0}

	t.Run("add 2→3", func(t *testing.T) {
		p := ComputePlan("ADD 10.0.0.3:6379 w=1", two, three, sizes)
		checkPlanSums(t, p)
		if p.Change != "ADD 10.0.0.3:6379 w=1" || p.RingVersion != 4 || len(p.Nodes) != 3 {
			t.Fatalf("plan header %+v", p)
		}
		if !near(float64(p.MovingSlots), ring.Slots/3.0, 0.05) {
			t.Errorf("moving slots %d, want ≈ %d", p.MovingSlots, ring.Slots/3)
		}
		a, b, c := planNode(t, p, n1), planNode(t, p, n2), planNode(t, p, n3)
		if c.SlotsNow != 0 || c.SlotsIn != p.MovingSlots || c.SlotsOut != 0 || a.SlotsIn != 0 || b.SlotsIn != 0 {
			t.Errorf("adding a node moves slots to it only: %+v", p.Nodes)
		}
		for _, n := range []PlanNode{a, b} {
			want := float64(sizes[n.Addr]) * float64(n.SlotsOut) / float64(n.SlotsNow)
			if n.KeysNow != sizes[n.Addr] || math.Abs(float64(n.KeysOut)-want) > 0.5 || n.KeysIn != 0 {
				t.Errorf("%s keys now/out/in %d/%d/%d, want %d/%.0f/0", n.Addr, n.KeysNow, n.KeysOut, n.KeysIn, sizes[n.Addr], want)
			}
		}
		if c.KeysNow != 0 || c.KeysOut != 0 || math.Abs(float64(c.KeysIn-(a.KeysOut+b.KeysOut))) > 1 {
			t.Errorf("new node keys %+v, sources sent %d", c, a.KeysOut+b.KeysOut)
		}
		if !near(float64(p.MovingKeys), 21000/3.0, 0.05) || math.Abs(float64(p.MovingKeys-c.KeysIn)) > 1 {
			t.Errorf("moving keys %d, want ≈ 7000 (= keys in %d)", p.MovingKeys, c.KeysIn)
		}
	})

	t.Run("remove 3→2", func(t *testing.T) {
		p := ComputePlan("REMOVE 10.0.0.3:6379", three, two, map[string]int64{n1: 7000, n2: 7000, n3: 6000})
		checkPlanSums(t, p)
		c := planNode(t, p, n3)
		if c.SlotsAfter != 0 || c.SlotsOut != c.SlotsNow || p.MovingSlots != c.SlotsNow || c.KeysOut != 6000 {
			t.Errorf("removed node %+v, moving %d", c, p.MovingSlots)
		}
		if p.MovingKeys != 6000 || planNode(t, p, n1).KeysIn+planNode(t, p, n2).KeysIn != 6000 {
			t.Errorf("moving keys %d, nodes %+v", p.MovingKeys, p.Nodes)
		}
		if p.RingVersion != 5 {
			t.Errorf("ring version %d, want the current ring's 5", p.RingVersion)
		}
	})

	t.Run("weight 1→2", func(t *testing.T) {
		p := ComputePlan("WEIGHT 10.0.0.2:6379 w=2", two, heavy, sizes)
		checkPlanSums(t, p)
		a, b := planNode(t, p, n1), planNode(t, p, n2)
		// n2 goes from 1/2 to 2/3 of the slots: 1/6 of them move, all from n1.
		if !near(float64(p.MovingSlots), ring.Slots/6.0, 0.08) || a.SlotsOut != p.MovingSlots || b.SlotsOut != 0 {
			t.Errorf("moving %d slots, nodes %+v", p.MovingSlots, p.Nodes)
		}
		if b.KeysIn != a.KeysOut || p.MovingKeys != a.KeysOut {
			t.Errorf("keys: %+v moving %d", p.Nodes, p.MovingKeys)
		}
	})

	t.Run("unknown sizes", func(t *testing.T) {
		// n2 unknown: its KeysOut is unknown, but n3's KeysIn and the total
		// use n1's keys per slot for it.
		p := ComputePlan("ADD", two, three, map[string]int64{n1: 12000})
		a, b, c := planNode(t, p, n1), planNode(t, p, n2), planNode(t, p, n3)
		if b.KeysNow != -1 || b.KeysOut != -1 || c.KeysNow != -1 || c.KeysOut != 0 {
			t.Errorf("unknown nodes %+v %+v", b, c)
		}
		perSlot := 12000 / float64(a.SlotsNow)
		want := perSlot * float64(p.MovingSlots)
		if math.Abs(float64(c.KeysIn)-want) > 1 || math.Abs(float64(p.MovingKeys)-want) > 1 {
			t.Errorf("keys in %d, moving %d, want ≈ %.0f", c.KeysIn, p.MovingKeys, want)
		}
		// Nothing sized: key estimates are unknown, slots still counted.
		p = ComputePlan("ADD", two, three, nil)
		if p.MovingKeys != -1 || planNode(t, p, n3).KeysIn != -1 || planNode(t, p, n1).KeysOut != -1 || p.MovingSlots == 0 {
			t.Errorf("unsized plan %+v", p)
		}
		// A negative size is unknown too.
		if p := ComputePlan("ADD", two, three, map[string]int64{n1: -5, n2: -1}); p.MovingKeys != -1 {
			t.Errorf("negative sizes: moving keys %d", p.MovingKeys)
		}
	})

	t.Run("no change and nil rings", func(t *testing.T) {
		p := ComputePlan("WEIGHT 10.0.0.1:6379 w=1", two, two, sizes)
		checkPlanSums(t, p)
		if p.MovingSlots != 0 || p.MovingKeys != 0 {
			t.Errorf("identical rings move %d slots / %d keys", p.MovingSlots, p.MovingKeys)
		}
		p = ComputePlan("x", nil, two, sizes)
		if p.MovingSlots != ring.Slots || p.MovingKeys != 0 || p.RingVersion != 0 || len(p.Nodes) != 2 {
			t.Errorf("from nil %+v", p)
		}
		p = ComputePlan("x", nil, nil, nil)
		if p.MovingSlots != 0 || len(p.Nodes) != 0 || p.Nodes == nil {
			t.Errorf("nil→nil %+v", p)
		}
	})

	t.Run("follows addresses", func(t *testing.T) {
		// A node keeping its name but changing address moves no key in the
		// ring, but its slots now live at another address.
		named := mustRing(t, 1, ring.Node{Name: "a", Addr: n1}, ring.Node{Name: "b", Addr: n2})
		moved := mustRing(t, 2, ring.Node{Name: "a", Addr: n1}, ring.Node{Name: "b", Addr: n3})
		p := ComputePlan("x", named, moved, nil)
		checkPlanSums(t, p)
		if p.MovingSlots != planNode(t, p, n2).SlotsNow || planNode(t, p, n3).SlotsIn != p.MovingSlots {
			t.Errorf("readdressed plan %+v", p)
		}
	})
}

func sampleStatus() RebalanceStatus {
	return RebalanceStatus{
		Stage: "migrating", Epoch: 7, Change: "ADD 10.0.0.3:6379 w=1",
		From: []string{n1, n2}, To: []string{n3}, Paused: true,
		MovedKeys: 9600, TotalKeys: 20000, MovedBytes: 1 << 20, KeysPerSec: 3200.04, ETASeconds: 3.25,
		Errors: 2, LastError: "MIGRATE: timeout\r\nsecond line",
		Sources: []SourceProgress{
			{Node: n1, Phase: "scan", Scanned: 5000, Moved: 4800, Total: 10000, Errors: 2},
			{Node: n2, Phase: "drain", Scanned: 10000, Moved: 4800, Total: 10000},
		},
	}
}

func TestFormatRebalance(t *testing.T) {
	got := FormatRebalance(sampleStatus())
	want := "stage:migrating\r\nepoch:7\r\nchange:ADD 10.0.0.3:6379 w=1\r\nfrom_nodes:10.0.0.1:6379,10.0.0.2:6379\r\n" +
		"to_nodes:10.0.0.3:6379\r\npaused:1\r\nmoved_keys:9600\r\ntotal_keys:20000\r\nmoved_bytes:1048576\r\n" +
		"keys_per_sec:3200\r\neta_seconds:3.3\r\nerrors:2\r\nlast_error:MIGRATE: timeout  second line\r\n" +
		"source:10.0.0.1:6379 phase=scan scanned=5000 moved=4800 total=10000 errors=2\r\n" +
		"source:10.0.0.2:6379 phase=drain scanned=10000 moved=4800 total=10000 errors=0\r\n"
	if got != want {
		t.Fatalf("FormatRebalance:\n%q\nwant\n%q", got, want)
	}
	back, err := ParseRebalance(got)
	if err != nil {
		t.Fatal(err)
	}
	exp := sampleStatus()
	exp.KeysPerSec, exp.ETASeconds, exp.LastError = 3200, 3.3, "MIGRATE: timeout  second line"
	if !reflect.DeepEqual(back, exp) {
		t.Fatalf("round trip\n%+v\nwant\n%+v", back, exp)
	}

	stable := FormatRebalance(RebalanceStatus{Stage: "stable", ETASeconds: -1})
	if !strings.HasPrefix(stable, "stage:stable\r\nepoch:0\r\n") || !strings.Contains(stable, "paused:0\r\n") ||
		!strings.Contains(stable, "eta_seconds:-1\r\n") || strings.Contains(stable, "source:") {
		t.Errorf("stable: %q", stable)
	}
	if s := FormatRebalance(RebalanceStatus{Stage: "x", KeysPerSec: math.NaN(), ETASeconds: math.Inf(1)}); !strings.Contains(s, "keys_per_sec:-1\r\neta_seconds:-1\r\n") {
		t.Errorf("NaN/Inf: %q", s)
	}
	for _, bad := range []string{"", "epoch:1\r\n", "stage:x\r\nepoch:-1\r\n", "stage:x\r\nsource:\r\n", "stage:x\r\nsource:a moved=z\r\n"} {
		if _, err := ParseRebalance(bad); err == nil {
			t.Errorf("ParseRebalance(%q) accepted", bad)
		}
	}
	if st, err := ParseRebalance("stage:prepare\nnew_field:1\n"); err != nil || st.Stage != "prepare" || st.ETASeconds != -1 {
		t.Errorf("unknown lines: %+v %v", st, err)
	}
}

func TestFormatPlan(t *testing.T) {
	p := PlanResult{Change: "ADD 10.0.0.3:6379 w=1", RingVersion: 4, MovingSlots: 5461, MovingKeys: -1, Nodes: []PlanNode{
		{Addr: n1, SlotsNow: 8192, SlotsAfter: 5461, SlotsOut: 2731, KeysNow: 100, KeysOut: 33, KeysIn: 0},
		{Addr: n3, SlotsAfter: 5461, SlotsIn: 5461, KeysNow: -1, KeysIn: -1},
	}}
	got := FormatPlan(p)
	want := "change:ADD 10.0.0.3:6379 w=1\r\nring_version:4\r\nmoving_slots:5461\r\nmoving_keys:-1\r\n" +
		"node:10.0.0.1:6379 slots_now=8192 slots_after=5461 slots_out=2731 slots_in=0 keys_now=100 keys_out=33 keys_in=0\r\n" +
		"node:10.0.0.3:6379 slots_now=0 slots_after=5461 slots_out=0 slots_in=5461 keys_now=-1 keys_out=0 keys_in=-1\r\n"
	if got != want {
		t.Fatalf("FormatPlan:\n%q\nwant\n%q", got, want)
	}
	back, err := ParsePlan(got)
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("round trip %+v %v", back, err)
	}
	for _, bad := range []string{"", "ring_version:1\r\n", "change:x\r\nmoving_slots:z\r\n", "change:x\r\nnode:a keys_in=q\r\n", "change:x\r\nnode:\r\n"} {
		if _, err := ParsePlan(bad); err == nil {
			t.Errorf("ParsePlan(%q) accepted", bad)
		}
	}
}

func TestChangeString(t *testing.T) {
	for c, want := range map[Change]string{
		{Op: "add", Addr: n1}:                "ADD 10.0.0.1:6379 w=1",
		{Op: "add", Addr: n1, Weight: 3}:     "ADD 10.0.0.1:6379 w=3",
		{Op: "remove", Addr: n1, Weight: 3}:  "REMOVE 10.0.0.1:6379",
		{Op: "weight", Addr: n1, Weight: 20}: "WEIGHT 10.0.0.1:6379 w=20",
	} {
		if got := c.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", c, got, want)
		}
	}
}

// fakeRB is a Controller and Rebalancer with canned answers.
type fakeRB struct {
	*Local
	mu      sync.Mutex
	st      RebalanceStatus
	stErr   error
	actions []string
	actErr  error
	plans   []Change
}

func (f *fakeRB) RebalanceStatus(context.Context) (RebalanceStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, f.stErr
}

func (f *fakeRB) RebalanceAction(_ context.Context, a string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.actErr != nil {
		return f.actErr
	}
	f.actions = append(f.actions, a)
	return nil
}

func (f *fakeRB) Plan(ctx context.Context, c Change) (PlanResult, error) {
	f.mu.Lock()
	f.plans = append(f.plans, c)
	f.mu.Unlock()
	return f.Local.Plan(ctx, c)
}

// plainCtl is a Controller that is not a Rebalancer.
type plainCtl struct{ l *Local }

func (p plainCtl) Status(ctx context.Context) Status                   { return p.l.Status(ctx) }
func (p plainCtl) Apply(ctx context.Context, c Change) (uint64, error) { return p.l.Apply(ctx, c) }

func newLocal(t testing.TB) *Local {
	r := mustRing(t, 1, ring.Node{Addr: n1}, ring.Node{Addr: n2})
	return &Local{Router: &fakeRouter{r: r}, Self: "me", Pinger: fakePing{},
		DBSize: func(_ context.Context, addr string) (int64, error) {
			if addr == n2 {
				return 0, errors.New("down")
			}
			return 9000, nil
		}}
}

func cmd(h Handler, ctx context.Context, line string) string {
	args := [][]byte{[]byte("JUPITER")}
	for _, a := range strings.Fields(line) {
		args = append(args, []byte(a))
	}
	return string(h.Command(ctx, args))
}

func TestHandlerRebalance(t *testing.T) {
	ctx := context.Background()
	f := &fakeRB{Local: newLocal(t), st: sampleStatus()}
	h := Handler{C: f, RequireAdmin: true}
	wantBulk := func(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

	for _, line := range []string{"REBALANCE", "rebalance status", "REBALANCE STATUS"} {
		if got := cmd(h, ctx, line); got != wantBulk(FormatRebalance(sampleStatus())) {
			t.Errorf("%s = %q", line, got)
		}
	}
	// Actions need admin; status and plans do not.
	if got := cmd(h, ctx, "REBALANCE PAUSE"); !strings.HasPrefix(got, "-NOPERM") || len(f.actions) != 0 {
		t.Errorf("PAUSE without admin = %q (actions %v)", got, f.actions)
	}
	actx := Authorize(ctx)
	for _, a := range []string{"PAUSE", "resume", "Abort"} {
		if got := cmd(h, actx, "REBALANCE "+a); got != "+OK\r\n" {
			t.Errorf("REBALANCE %s = %q", a, got)
		}
	}
	if !reflect.DeepEqual(f.actions, []string{"pause", "resume", "abort"}) {
		t.Errorf("actions %v", f.actions)
	}
	f.actErr = ErrNotRunning
	if got := cmd(h, actx, "REBALANCE ABORT"); got != "-ERR no rebalance in progress\r\n" {
		t.Errorf("refused action = %q", got)
	}
	for _, line := range []string{"REBALANCE GO", "REBALANCE PAUSE NOW", "REBALANCE STATUS x"} {
		if got := cmd(h, actx, line); !strings.HasPrefix(got, "-ERR usage: JUPITER REBALANCE") {
			t.Errorf("%s = %q", line, got)
		}
	}
	f.stErr = Refusal(ErrUnavailable, "leader unreachable")
	if got := cmd(h, ctx, "REBALANCE"); got != "-ERR leader unreachable\r\n" {
		t.Errorf("status error = %q", got)
	}
	// STATUS leaves the rebalance lines out when the rebalancer fails …
	if got := cmd(h, ctx, "STATUS"); strings.Contains(got, "rebalance_") || !strings.Contains(got, "stage:stable") {
		t.Errorf("STATUS with a failing rebalancer = %q", got)
	}
	// … and adds them when it answers.
	f.stErr = nil
	got := cmd(h, ctx, "STATUS")
	for _, l := range []string{"stage:stable\r\n", "rebalance_epoch:7\r\n", "rebalance_moved_keys:9600\r\n", "rebalance_total_keys:20000\r\n",
		"rebalance_keys_per_sec:3200\r\n", "rebalance_eta_seconds:3.3\r\n", "rebalance_paused:1\r\n", "rebalance_errors:2\r\n"} {
		if !strings.Contains(got, l) {
			t.Errorf("STATUS lacks %q: %q", l, got)
		}
	}

	// PLAN is read-only: no admin needed, the ring stays.
	got = cmd(h, ctx, "PLAN ADD 10.0.0.3:6379 2")
	if !strings.HasPrefix(got, "$") || !strings.Contains(got, "change:ADD 10.0.0.3:6379 w=2\r\n") ||
		!strings.Contains(got, "node:10.0.0.1:6379 slots_now=") || f.Router.Ring().Version() != 1 {
		t.Errorf("PLAN ADD = %q", got)
	}
	if len(f.plans) != 1 || f.plans[0] != (Change{Op: "add", Addr: n3, Weight: 2}) {
		t.Errorf("plans %+v", f.plans)
	}
	for line, errPart := range map[string]string{
		"PLAN":                        "usage: JUPITER PLAN ADD",
		"PLAN MOVE 10.0.0.3:6379":     "usage: JUPITER PLAN ADD",
		"PLAN ADD":                    "usage: JUPITER PLAN ADD <host:port> [weight]",
		"PLAN ADD nope":               "not a host:port",
		"PLAN ADD 10.0.0.3:6379 0":    "weight must be",
		"PLAN REMOVE":                 "usage: JUPITER PLAN REMOVE",
		"PLAN WEIGHT 10.0.0.1:6379":   "usage: JUPITER PLAN WEIGHT",
		"PLAN ADD 10.0.0.1:6379":      "already in the ring",
		"PLAN REMOVE 10.0.0.9:6379":   "not in the ring",
		"PLAN WEIGHT 10.0.0.9:6379 2": "not in the ring",
	} {
		if got := cmd(h, ctx, line); !strings.HasPrefix(got, "-ERR ") || !strings.Contains(got, errPart) {
			t.Errorf("%s = %q, want -ERR …%s", line, got, errPart)
		}
	}

	help := cmd(h, ctx, "HELP")
	for _, part := range []string{"JUPITER REBALANCE [STATUS]", "ABORT|PAUSE|RESUME", "JUPITER PLAN ADD"} {
		if !strings.Contains(help, part) {
			t.Errorf("HELP lacks %q", part)
		}
	}
}

func TestHandlerRebalanceUnsupported(t *testing.T) {
	ctx := Authorize(context.Background())
	h := Handler{C: plainCtl{newLocal(t)}}
	if got := cmd(h, ctx, "REBALANCE"); !strings.Contains(got, "stage:stable\r\nepoch:0\r\n") || !strings.HasPrefix(got, "$") {
		t.Errorf("REBALANCE on a plain controller = %q", got)
	}
	if got := cmd(h, ctx, "REBALANCE PAUSE"); got != "-ERR jupiter: rebalance pause is not supported in this mode\r\n" {
		t.Errorf("PAUSE = %q", got)
	}
	if got := cmd(h, ctx, "PLAN ADD 10.0.0.3:6379"); got != "-ERR jupiter: PLAN is not supported in this mode\r\n" {
		t.Errorf("PLAN = %q", got)
	}
	if got := cmd(h, ctx, "STATUS"); strings.Contains(got, "rebalance_") {
		t.Errorf("STATUS of a plain controller has rebalance lines: %q", got)
	}
}

func TestLocalRebalancer(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t)
	var _ Rebalancer = l
	st, err := l.RebalanceStatus(ctx)
	if err != nil || st.Stage != "stable" || st.Epoch != 0 || st.ETASeconds != -1 {
		t.Errorf("status %+v %v", st, err)
	}
	for _, a := range []string{"abort", "pause", "resume"} {
		if err := l.RebalanceAction(ctx, a); !errors.Is(err, ErrNotRunning) || err.Error() != "no rebalance in progress" {
			t.Errorf("%s: %v", a, err)
		}
	}
	if err := l.RebalanceAction(ctx, "go"); err == nil {
		t.Error("unknown action accepted")
	}
	p, err := l.Plan(ctx, Change{Op: "add", Addr: n3, Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkPlanSums(t, p)
	a, b, c := planNode(t, p, n1), planNode(t, p, n2), planNode(t, p, n3)
	if p.Change != "ADD 10.0.0.3:6379 w=1" || p.RingVersion != 1 || a.KeysNow != 9000 || b.KeysNow != -1 || c.KeysNow != 9000 ||
		b.KeysOut != -1 || p.MovingKeys <= 0 || c.KeysIn != p.MovingKeys {
		t.Errorf("plan %+v", p)
	}
	if l.Router.Ring().Version() != 1 {
		t.Error("Plan changed the ring")
	}
	// A Pinger with a DBSize method is used when DBSize is nil.
	l.DBSize = nil
	l.Pinger = sizingPinger{}
	p, _ = l.Plan(ctx, Change{Op: "remove", Addr: n2})
	if planNode(t, p, n2).KeysNow != 42 || p.MovingKeys != 42 {
		t.Errorf("DBSizer plan %+v", p)
	}
	l.Pinger = nil
	p, _ = l.Plan(ctx, Change{Op: "remove", Addr: n2})
	if p.MovingKeys != -1 || p.MovingSlots == 0 {
		t.Errorf("unsized plan %+v", p)
	}
	if _, err := l.Plan(ctx, Change{Op: "remove", Addr: n3}); err == nil || !strings.Contains(err.Error(), "not in the ring") {
		t.Errorf("plan of an invalid change: %v", err)
	}
}

type sizingPinger struct{ fakePing }

func (sizingPinger) DBSize(context.Context, string) (int64, error) { return 42, nil }

func TestHTTPRebalance(t *testing.T) {
	f := &fakeRB{Local: newLocal(t), st: sampleStatus()}
	do := func(mux *http.ServeMux, method, path string, auth bool) (int, string) {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		if auth {
			req.SetBasicAuth("admin", "pw")
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	mux := http.NewServeMux()
	HTTP{C: f, AdminPassword: "pw"}.Register(mux)

	code, body := do(mux, "GET", "/v1/rebalance", false)
	var st RebalanceStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || !reflect.DeepEqual(st, sampleStatus()) {
		t.Fatalf("GET /v1/rebalance = %d %s", code, body)
	}
	for _, k := range []string{`"stage"`, `"moved_keys"`, `"total_keys"`, `"keys_per_sec"`, `"eta_seconds"`, `"from_nodes"`, `"sources"`} {
		if !strings.Contains(body, k) {
			t.Errorf("JSON lacks %s: %s", k, body)
		}
	}
	if code, _ := do(mux, "POST", "/v1/rebalance/pause", false); code != 401 || len(f.actions) != 0 {
		t.Errorf("POST without the password = %d", code)
	}
	for _, a := range []string{"pause", "resume", "abort"} {
		if code, body := do(mux, "POST", "/v1/rebalance/"+a, true); code != 200 || !strings.Contains(body, `"ok": true`) {
			t.Errorf("POST %s = %d %s", a, code, body)
		}
	}
	if !reflect.DeepEqual(f.actions, []string{"pause", "resume", "abort"}) {
		t.Errorf("actions %v", f.actions)
	}
	for _, p := range []string{"/v1/rebalance/go", "/v1/rebalance/status"} {
		if code, _ := do(mux, "POST", p, true); code != 404 {
			t.Errorf("POST %s = %d", p, code)
		}
	}
	f.actErr = ErrNotRunning
	if code, body := do(mux, "POST", "/v1/rebalance/abort", true); code != 409 || !strings.Contains(body, "no rebalance in progress") {
		t.Errorf("abort while stable = %d %s", code, body)
	}
	f.stErr = Refusal(ErrUnavailable, "leader unreachable")
	if code, _ := do(mux, "GET", "/v1/rebalance", false); code != 503 {
		t.Errorf("failing status = %d", code)
	}
	f.stErr = nil

	code, body = do(mux, "GET", "/v1/plan?op=add&addr=10.0.0.3:6379&weight=3", false)
	var p PlanResult
	if err := json.Unmarshal([]byte(body), &p); err != nil || code != 200 || p.Change != "ADD 10.0.0.3:6379 w=3" ||
		len(p.Nodes) != 3 || p.MovingSlots == 0 || !strings.Contains(body, `"moving_keys"`) {
		t.Fatalf("GET /v1/plan = %d %s", code, body)
	}
	for q, want := range map[string]int{
		"op=remove&addr=10.0.0.2:6379":          200,
		"op=WEIGHT&addr=10.0.0.2:6379&weight=4": 200,
		"op=add&addr=10.0.0.1:6379":             400, // already in the ring
		"op=add&addr=bad":                       400,
		"op=weight&addr=10.0.0.2:6379":          400,
		"op=remove&addr=10.0.0.2:6379&weight=1": 400,
		"op=move&addr=10.0.0.2:6379":            400,
		"":                                      400,
	} {
		if code, body := do(mux, "GET", "/v1/plan?"+q, false); code != want {
			t.Errorf("GET /v1/plan?%s = %d %s, want %d", q, code, body, want)
		}
	}
	if f.Router.Ring().Version() != 1 {
		t.Error("plans changed the ring")
	}

	// A controller that is not a Rebalancer: stage from Status, 501 for the rest.
	mux = http.NewServeMux()
	RegisterHTTP(mux, plainCtl{newLocal(t)})
	if code, body := do(mux, "GET", "/v1/rebalance", false); code != 200 || !strings.Contains(body, `"stage": "stable"`) {
		t.Errorf("plain GET /v1/rebalance = %d %s", code, body)
	}
	if code, _ := do(mux, "POST", "/v1/rebalance/pause", false); code != 501 {
		t.Errorf("plain POST pause = %d", code)
	}
	if code, _ := do(mux, "GET", "/v1/plan?op=add&addr=10.0.0.3:6379", false); code != 501 {
		t.Errorf("plain plan = %d", code)
	}
	for kind, want := range map[error]int{ErrNotRunning: 409, ErrUnsupported: 501} {
		if got := StatusCode(Refusal(kind, "m")); got != want {
			t.Errorf("StatusCode(%v) = %d, want %d", kind, got, want)
		}
	}
}

func TestStatusWithRebalance(t *testing.T) {
	ctx := context.Background()
	f := &fakeRB{Local: newLocal(t), st: sampleStatus()}
	st := StatusWithRebalance(ctx, f)
	if st.Rebalance == nil || st.Rebalance.Epoch != 7 {
		t.Fatalf("status %+v", st)
	}
	b, _ := json.Marshal(st)
	if !strings.Contains(string(b), `"rebalance":{"stage":"migrating"`) {
		t.Errorf("JSON %s", b)
	}
	if st := StatusWithRebalance(ctx, plainCtl{newLocal(t)}); st.Rebalance != nil {
		t.Errorf("plain controller status has a rebalance: %+v", st.Rebalance)
	}
	b, _ = json.Marshal(plainCtl{newLocal(t)}.Status(ctx))
	if strings.Contains(string(b), "rebalance") {
		t.Errorf("rebalance not omitted: %s", b)
	}
	// An idle rebalancer adds nothing to STATUS's lines (JSON has it).
	if st := StatusWithRebalance(ctx, newLocal(t)); st.Rebalance == nil || strings.Contains(FormatStatus(st), "rebalance_") {
		t.Errorf("idle: %+v %q", st.Rebalance, FormatStatus(st))
	}
	// Extra lines a controller already reports are not repeated.
	st = f.Status(ctx)
	st.Extra = [][2]string{{"rebalance_epoch", "9"}}
	st.Rebalance = &RebalanceStatus{Epoch: 7}
	if out := FormatStatus(st); strings.Count(out, "rebalance_epoch:") != 1 || !strings.Contains(out, "rebalance_epoch:9\r\n") {
		t.Errorf("FormatStatus %q", out)
	}
}

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
		ok   bool
	}{
		{nil, "status", true}, {[]string{"status"}, "status", true}, {[]string{"ABORT"}, "abort", true},
		{[]string{"Pause"}, "pause", true}, {[]string{"resume"}, "resume", true},
		{[]string{"stop"}, "", false}, {[]string{"abort", "x"}, "", false}, {[]string{""}, "", false},
	} {
		var args [][]byte
		for _, a := range c.args {
			args = append(args, []byte(a))
		}
		got, err := ParseRebalanceAction(args)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("ParseRebalanceAction(%q) = %q, %v", c.args, got, err)
		}
	}
}
