package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/tidwall/redcon"
)

// testRouter is an admin.RingSource.
type testRouter struct {
	mu sync.Mutex
	r  *ring.Ring
}

func (t *testRouter) Ring() *ring.Ring {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.r
}

func (t *testRouter) Apply(r *ring.Ring) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.r = r
	return true
}

func (t *testRouter) NodeUp() map[string]bool { return map[string]bool{} }

// scriptedCtl is a Controller and Rebalancer whose rebalance advances one
// step per STATUS: stages[i] with progress[i], the last step repeating.
type scriptedCtl struct {
	*admin.Local
	mu       sync.Mutex
	step     int
	stages   []string
	progress []admin.RebalanceStatus
	actions  []string
}

func (s *scriptedCtl) cur() int { return min(s.step, len(s.stages)-1) }

func (s *scriptedCtl) Status(ctx context.Context) admin.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.Local.Status(ctx)
	st.Stage = s.stages[s.cur()]
	s.step++
	return st
}

func (s *scriptedCtl) RebalanceStatus(context.Context) (admin.RebalanceStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := max(s.step-1, 0)
	i = min(i, len(s.progress)-1)
	p := s.progress[i]
	p.Stage = s.stages[min(i, len(s.stages)-1)]
	return p, nil
}

func (s *scriptedCtl) RebalanceAction(_ context.Context, a string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actions = append(s.actions, a)
	return nil
}

// serveRESP serves h on a local port the way the proxy does for JUPITER
// (AUTH admin <pw> authorizes), and returns the address.
func serveRESP(t *testing.T, h admin.Handler, adminPassword string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := redcon.NewServer("", func(conn redcon.Conn, cmd redcon.Command) {
		ctx := context.Background()
		if conn.Context() == true {
			ctx = admin.Authorize(ctx)
		}
		switch strings.ToUpper(string(cmd.Args[0])) {
		case "AUTH":
			if len(cmd.Args) == 3 && string(cmd.Args[1]) == "admin" && string(cmd.Args[2]) == adminPassword {
				conn.SetContext(true)
				conn.WriteString("OK")
				return
			}
			conn.WriteError("WRONGPASS invalid username-password pair")
		case "JUPITER":
			conn.WriteRaw(h.Command(ctx, cmd.Args))
		default:
			conn.WriteError("ERR unknown command")
		}
	}, nil, nil)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func newScripted(t *testing.T) *scriptedCtl {
	t.Helper()
	r, err := ring.New(3, []ring.Node{{Addr: "10.0.0.1:6379"}, {Addr: "10.0.0.2:6379"}})
	if err != nil {
		t.Fatal(err)
	}
	return &scriptedCtl{Local: &admin.Local{Router: &testRouter{r: r}, Self: "pod-1:6379",
		DBSize: func(_ context.Context, addr string) (int64, error) { return 10000, nil }}}
}

func runCtlT(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runCtl(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCtlPlan(t *testing.T) {
	s := newScripted(t)
	s.stages = []string{"stable"}
	s.progress = []admin.RebalanceStatus{{}}
	addr := serveRESP(t, admin.Handler{C: s, RequireAdmin: true}, "pw")

	// Plans are read-only: no admin password needed.
	code, out, errs := runCtlT("--addr", addr, "plan", "add", "10.0.0.3:6379")
	if code != 0 {
		t.Fatalf("plan add = %d %s", code, errs)
	}
	for _, part := range []string{"plan: ADD 10.0.0.3:6379 w=1 (against ring version 3; nothing was changed)",
		"NODE", "SLOTS NOW", "KEYS OUT", "10.0.0.3:6379", "(new)", "→", "moving: ", " of 16384 slots (", "%), ~"} {
		if !strings.Contains(out, part) {
			t.Errorf("plan output lacks %q:\n%s", part, out)
		}
	}
	if s.Router.Ring().Version() != 3 {
		t.Error("plan changed the ring")
	}
	code, out, _ = runCtlT("--addr", addr, "plan", "REMOVE", "10.0.0.2:6379")
	if code != 0 || !strings.Contains(out, "(removed)") || !strings.Contains(out, "~10000 keys") {
		t.Errorf("plan remove = %d\n%s", code, out)
	}
	code, out, _ = runCtlT("--addr", addr, "plan", "weight", "10.0.0.2:6379", "3")
	if code != 0 || !strings.Contains(out, "(reweighted)") || !strings.Contains(out, "WEIGHT 10.0.0.2:6379 w=3") {
		t.Errorf("plan weight = %d\n%s", code, out)
	}
	code, _, errs = runCtlT("--addr", addr, "plan", "add", "10.0.0.1:6379")
	if code != 1 || !strings.Contains(errs, "already in the ring") {
		t.Errorf("plan of a duplicate = %d %q", code, errs)
	}
}

func TestCtlRebalance(t *testing.T) {
	s := newScripted(t)
	s.stages = []string{"migrating"}
	s.progress = []admin.RebalanceStatus{{Epoch: 4, MovedKeys: 9600, TotalKeys: 20000, KeysPerSec: 3200, ETASeconds: 3.2}}
	addr := serveRESP(t, admin.Handler{C: s, RequireAdmin: true}, "pw")

	code, out, errs := runCtlT("--addr", addr, "rebalance")
	if code != 0 || !strings.Contains(out, "stage:migrating\nepoch:4\n") || !strings.Contains(out, "moved_keys:9600\n") ||
		!strings.Contains(out, "[#########...........] 48% 9600/20000 keys 3200 keys/s ETA 3s") {
		t.Errorf("rebalance = %d %q %q", code, out, errs)
	}
	code, _, errs = runCtlT("--addr", addr, "rebalance", "pause")
	if code != 1 || !strings.Contains(errs, "NOPERM") {
		t.Errorf("pause without admin = %d %q", code, errs)
	}
	code, out, errs = runCtlT("--addr", addr, "--user", "admin", "--password", "pw", "rebalance", "pause")
	if code != 0 || strings.TrimSpace(out) != "OK" {
		t.Errorf("pause = %d %q %q", code, out, errs)
	}
	t.Setenv("JUPITER_CTL_PASSWORD", "pw")
	if code, _, errs := runCtlT("rebalance", "RESUME", "--addr", addr, "--user", "admin"); code != 0 {
		t.Errorf("resume = %d %q", code, errs)
	}
	if strings.Join(s.actions, ",") != "pause,resume" {
		t.Errorf("actions %v", s.actions)
	}
}

func TestCtlStatusWatch(t *testing.T) {
	s := newScripted(t)
	s.stages = []string{"prepare", "migrating", "migrating", "commit", "stable"}
	s.progress = []admin.RebalanceStatus{
		{Epoch: 4, TotalKeys: 20000, ETASeconds: -1},
		{Epoch: 4, MovedKeys: 9600, TotalKeys: 20000, KeysPerSec: 3200, ETASeconds: 3.2},
		{Epoch: 4, MovedKeys: 20000, TotalKeys: 20000, KeysPerSec: 3300, ETASeconds: 0, Paused: true, Errors: 1, LastError: "boom"},
		{Epoch: 4, MovedKeys: 20000, TotalKeys: 20000},
		{},
	}
	addr := serveRESP(t, admin.Handler{C: s}, "")
	start := time.Now()
	code, out, errs := runCtlT("--addr", addr, "status", "--watch", "--interval", "10ms")
	if code != 0 {
		t.Fatalf("watch = %d %q %q", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"prepare epoch 4 [....................] 0% 0/20000 keys 0 keys/s ETA ?",
		"migrating epoch 4 [#########...........] 48% 9600/20000 keys 3200 keys/s ETA 3s",
		"migrating epoch 4 [####################] 100% 20000/20000 keys 3300 keys/s ETA 0s (paused) errors=1 last: boom",
		"commit epoch 4 [####################] 100% 20000/20000 keys 0 keys/s ETA 0s",
	}
	got := []string{}
	for _, l := range lines {
		if strings.Contains(l, " keys/s ") {
			got = append(got, l)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress lines:\n%s\nwant\n%s\nfull output:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	// The status is printed first and again once stable.
	if !strings.HasPrefix(out, "mode:standalone\n") || strings.Count(out, "ring_version:3\n") != 2 ||
		!strings.Contains(lines[len(lines)-1], ":") || !strings.Contains(out, "stage:stable\n") {
		t.Errorf("watch output:\n%s", out)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("watch took %v", time.Since(start))
	}

	// Already stable: one status, exit 0 at once.
	s.step = len(s.stages)
	code, out, _ = runCtlT("--addr", addr, "status", "--watch")
	if code != 0 || strings.Count(out, "mode:standalone") != 1 || strings.Contains(out, "keys/s") {
		t.Errorf("stable watch = %d\n%s", code, out)
	}

	// Never stable: bounded by --timeout.
	s2 := newScripted(t)
	s2.stages = []string{"migrating"}
	s2.progress = []admin.RebalanceStatus{{Epoch: 1, ETASeconds: -1}}
	addr2 := serveRESP(t, admin.Handler{C: s2}, "")
	code, out, errs = runCtlT("--addr", addr2, "status", "--watch", "--interval", "20ms", "--timeout", "200ms")
	if code != 1 || !strings.Contains(errs, `gave up after 200ms: stage is still "migrating"`) ||
		!strings.Contains(out, "[....................] ?% 0/? keys 0 keys/s ETA ?") {
		t.Errorf("endless watch = %d %q %q", code, out, errs)
	}

	// Unreachable pod: an error at once.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	code, _, errs = runCtlT("--addr", dead, "status", "--watch", "--interval", "10ms", "--timeout", "5s")
	if code != 1 || !strings.Contains(errs, dead) {
		t.Errorf("dead pod watch = %d %q", code, errs)
	}
}

func TestCtlStatusPlain(t *testing.T) {
	s := newScripted(t)
	s.stages = []string{"stable"}
	s.progress = []admin.RebalanceStatus{{}}
	addr := serveRESP(t, admin.Handler{C: s}, "")
	code, out, _ := runCtlT("--addr", addr, "status")
	if code != 0 || !strings.Contains(out, "stage:stable\n") || strings.Contains(out, "rebalance_") || strings.Contains(out, "\r") {
		t.Errorf("status = %d\n%s", code, out)
	}
	code, out, _ = runCtlT("--addr", addr, "nodes")
	if code != 0 || !strings.Contains(out, "10.0.0.1:6379 weight=1 slots=") {
		t.Errorf("nodes = %d\n%s", code, out)
	}
}

func TestCtlUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		part string
	}{
		{[]string{"plan"}, "wrong number of arguments for plan"},
		{[]string{"plan", "add"}, "wrong number of arguments for plan"},
		{[]string{"plan", "move", "a:1"}, `plan: unknown change "move"`},
		{[]string{"plan", "remove", "a:1", "2"}, "wrong number of arguments for plan remove"},
		{[]string{"plan", "weight", "a:1"}, "wrong number of arguments for plan weight"},
		{[]string{"rebalance", "go"}, `rebalance: unknown action "go"`},
		{[]string{"rebalance", "pause", "now"}, "wrong number of arguments for rebalance"},
		{[]string{"nodes", "--watch"}, "--watch applies to status only"},
		{[]string{"status", "--watch", "--interval", "0s"}, "--interval must be positive"},
		{[]string{"top", "--interval", "0s"}, "--interval must be positive"},
		{[]string{"nodes", "--once"}, "--once applies to top only"},
		{[]string{"top", "x"}, "wrong number of arguments for top"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		code, _, errs := runCtlT(append([]string{"--addr", "127.0.0.1:1"}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.part) {
			t.Errorf("ctl %q = %d %q, want 2 and %q", c.args, code, errs, c.part)
		}
	}
	code, out, _ := runCtlT("help")
	for _, part := range []string{"plan add <host:port> [w]", "rebalance abort|pause|resume", "status [--watch [--interval 1s]]", "-interval", "top [--once]",
		"slowlog [n|-1]", "hotkeys [fleet|pod] [count|bytes] [n]", "bigkeys [n]"} {
		if code != 0 || !strings.Contains(out, part) {
			t.Errorf("help lacks %q", part)
		}
	}
}

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		st   admin.RebalanceStatus
		want string
	}{
		{admin.RebalanceStatus{Stage: "migrating", MovedKeys: 50, TotalKeys: 40, KeysPerSec: 10.6, ETASeconds: 75},
			"migrating [####################] 100% 50/40 keys 11 keys/s ETA 1m15s"},
		{admin.RebalanceStatus{Stage: "freeze", Epoch: 2, ETASeconds: -1},
			"freeze epoch 2 [....................] ?% 0/? keys 0 keys/s ETA ?"},
		{admin.RebalanceStatus{Stage: "migrating", MovedKeys: 1, TotalKeys: 3, KeysPerSec: -1, ETASeconds: 0.4, Errors: 3},
			"migrating [######..............] 33% 1/3 keys 0 keys/s ETA 0s errors=3"},
	} {
		if got := progressLine(c.st); got != c.want {
			t.Errorf("progressLine(%+v)\n = %q\nwant %q", c.st, got, c.want)
		}
	}
}

// TestCtlObserve: slowlog, hotkeys and bigkeys print the pod's lines.
func TestCtlObserve(t *testing.T) {
	s := newScripted(t)
	s.stages = []string{"stable"}
	obs := admin.Observers{Slowlog: slowlog.New(0, 8), HotKeys: hotkeys.New(hotkeys.Config{HalfLife: -1}), BigKeys: hotkeys.NewBig(10, 4)}
	obs.Slowlog.Add(slowlog.Entry{Time: 1700000000, DurationUS: 12000, NodeUS: 11000, ProxyUS: 1000,
		Nodes: []string{"10.0.0.1:6379"}, Args: []string{"GET", "k"}, Client: "1.2.3.4:5"})
	obs.HotKeys.Add(hotkeys.Sample{Key: []byte("hot"), Node: "10.0.0.1:6379", Bytes: 7}, 0)
	obs.BigKeys.Add([]byte("blob"), "set", "10.0.0.2:6379", 20, false, 1700000001)
	addr := serveRESP(t, admin.Handler{C: s, Obs: obs}, "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"slowlog"}, "id=0 time=1700000000 duration_us=12000 node_us=11000 proxy_us=1000 nodes=10.0.0.1:6379 client=1.2.3.4:5 name= cmd=\"GET\" \"k\"\n"},
		{[]string{"slowlog", "len"}, "1\n"},
		{[]string{"slowlog", "-1", "--timeout", "5s"}, "id=0 time=1700000000 duration_us=12000 node_us=11000 proxy_us=1000 nodes=10.0.0.1:6379 client=1.2.3.4:5 name= cmd=\"GET\" \"k\"\n"},
		{[]string{"hotkeys", "bytes", "5"}, "key=\"hot\" count=1 bytes=7 reads=1 writes=0 node=10.0.0.1:6379 id=" + hotkeys.ID("hot") + "\n"},
		{[]string{"bigkeys"}, "key=\"blob\" command=set size=20 dir=request count=1 node=10.0.0.2:6379 last=1700000001\n"},
	} {
		code, out, errs := runCtlT(append([]string{"--addr", addr}, c.args...)...)
		if code != 0 || out != c.want {
			t.Errorf("ctl %q = %d %q %q, want %q", c.args, code, out, errs, c.want)
		}
	}
	if code, _, errs := runCtlT("--addr", addr, "slowlog", "bogus"); code != 1 || !strings.Contains(errs, "usage") {
		t.Errorf("ctl slowlog bogus = %d %q", code, errs)
	}
	// A node's SLOWLOG GET entry (slowlog nodes) as one line.
	got := slowlogLine([]any{int64(3), int64(1700000000), int64(15), []any{"SET", "a b"}, "1.2.3.4:5", "app"})
	if want := `id=3 time=1700000000 duration_us=15 client=1.2.3.4:5 name=app cmd="SET" "a b"`; got != want {
		t.Errorf("slowlogLine = %q, want %q", got, want)
	}
}

// TestPrintPlan: the plan table's columns line up (node and note left,
// numbers right) and no line ends in spaces.
func TestPrintPlan(t *testing.T) {
	var b strings.Builder
	printPlan(&b, admin.PlanResult{Change: "ADD 10.0.0.3:6379", RingVersion: 7, MovingSlots: 5461, MovingKeys: 1200,
		Nodes: []admin.PlanNode{
			{Addr: "10.0.0.1:6379", SlotsNow: 8192, SlotsAfter: 5461, SlotsOut: 2731, KeysNow: 1800, KeysOut: 600},
			{Addr: "10.0.0.3:6379", SlotsAfter: 5461, SlotsIn: 5461, KeysNow: 0, KeysIn: 1200},
		}}, "add", "10.0.0.3:6379")
	want := `plan: ADD 10.0.0.3:6379 (against ring version 7; nothing was changed)

NODE           SLOTS NOW     AFTER   OUT    IN  KEYS NOW  KEYS OUT  KEYS IN
10.0.0.1:6379       8192  →   5461  2731     0      1800       600        0
10.0.0.3:6379          0  →   5461     0  5461         0         0     1200  (new)

moving: 5461 of 16384 slots (33.3%), ~1200 keys
`
	if got := b.String(); got != want {
		t.Fatalf("plan output:\n%s\nwant:\n%s", got, want)
	}
}
