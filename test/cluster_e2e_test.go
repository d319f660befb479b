package test

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
)

// TestClusterEndToEnd runs one 3-pod cluster through the scenarios,
// in order (each phase starts from the state the previous one left):
// election, data path, ADD through a follower, refused admin input, the
// HTTP admin API, SIGKILL of the leader, a restart with a stale --backends,
// and a Spanner outage.
func TestClusterEndToEnd(t *testing.T) {
	start := time.Now()
	e := startClEnv(t, 4)
	seeds := e.addrs(0, 1)
	for range 3 {
		e.startPod(seeds)
	}
	pods := e.pods
	var leader string
	leaderPod := func(t *testing.T) *clPod {
		for _, p := range e.live() {
			if p.Hedge == leader {
				return p
			}
		}
		t.Fatalf("no live pod is the leader %s", leader)
		return nil
	}
	follower := func(t *testing.T, i int) *clPod { // the i-th live pod that is not the leader
		for _, p := range e.live() {
			if p.Hedge != leader {
				if i == 0 {
					return p
				}
				i--
			}
		}
		t.Fatal("not enough followers")
		return nil
	}
	version := func(t *testing.T) int {
		t.Helper()
		_, v, _, why := clAgreed(e.live())
		if why != "" {
			t.Fatalf("pods disagree: %s", why)
		}
		n, _ := strconv.Atoi(v)
		return n
	}
	// unchanged checks that every live pod still serves version v with nodes.
	unchanged := func(t *testing.T, v int, nodes string) {
		t.Helper()
		for _, p := range e.live() {
			st := p.status()
			if st["ring_version"] != strconv.Itoa(v) || st["nodes"] != nodes {
				t.Fatalf("pod %s: ring_version=%s nodes=%s, want %d %s (ring must be unchanged)",
					p.Hedge, st["ring_version"], st["nodes"], v, nodes)
			}
		}
	}
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		s := time.Now()
		if !t.Run(name, f) {
			t.Fatalf("phase %s failed; later phases depend on it\n%s", name, e.logs())
		}
		t.Logf("phase %s took %v", name, time.Since(s).Round(time.Millisecond))
	}

	step("Election", func(t *testing.T) {
		// The leader seeds ring v1 from --backends; every pod loads it and
		// names the same leader. (Not-ready-before-a-ring is checked by
		// TestClusterReadinessAndCtl, where no seed makes it observable.)
		took := clWait(t, e, 30*time.Second, "one leader seen by all pods", func() string {
			l, v, nodes, why := clAgreed(pods)
			if why != "" {
				return why
			}
			if v != "1" || nodes != clSortedNodes(seeds...) {
				return fmt.Sprintf("ring v%s nodes %s, want v1 %s", v, nodes, clSortedNodes(seeds...))
			}
			leader = l
			return ""
		})
		for _, p := range pods {
			if c := p.readyz(); c != 200 {
				t.Fatalf("pod %s /readyz = %d with a ring loaded", p.Hedge, c)
			}
			st := p.status()
			if st["mode"] != "cluster" || st["stage"] != "stable" || st["members"] == "" || st["last_sync"] == "" {
				t.Fatalf("pod %s STATUS lacks cluster fields: %v", p.Hedge, st)
			}
		}
		t.Logf("leader %s agreed by all pods %v after start", leader, took.Round(time.Millisecond))
	})

	step("WriteReadAcrossPods", func(t *testing.T) {
		for i := range 100 {
			if r, err := pods[i%3].do("SET", fmt.Sprintf("pre:%d", i), fmt.Sprint("v", i)); err != nil || r != "OK" {
				t.Fatalf("SET via pod %d: %q %v", i%3, r, err)
			}
		}
		for i := range 100 {
			for j := 1; j <= 2; j++ {
				p := pods[(i+j)%3]
				if r, err := p.do("GET", fmt.Sprintf("pre:%d", i)); err != nil || r != fmt.Sprint("v", i) {
					t.Fatalf("GET pre:%d via pod %s: %q %v", i, p.Hedge, r, err)
				}
			}
		}
		for _, p := range pods {
			if n, err := p.do("DBSIZE"); err != nil || n != "100" {
				t.Fatalf("DBSIZE via %s = %q %v", p.Hedge, n, err)
			}
		}
	})

	step("AddThroughFollower", func(t *testing.T) {
		v := version(t)
		newNode := e.redis[2].Addr
		s := time.Now()
		if r := follower(t, 0).jupiterCmd("ADD", newNode); r != "OK" {
			t.Fatalf("JUPITER ADD via follower: %s", r)
		}
		accepted := time.Since(s)
		want := clSortedNodes(seeds[0], seeds[1], newNode)
		// ADD starts a staged rebalance (prepare, freeze, migrating, commit:
		// one version each); it is done when every pod is stable on the
		// new nodes.
		final := ""
		took := clWait(t, e, 20*time.Second, "every pod on the new ring", func() string {
			_, got, nodes, why := clAgreed(pods)
			if why != "" {
				return why
			}
			gv, _ := strconv.Atoi(got)
			if gv <= v || nodes != want {
				return fmt.Sprintf("v%s %s", got, nodes)
			}
			for _, p := range pods {
				if st := p.status()["stage"]; st != "stable" {
					return p.Hedge + " in stage " + st
				}
			}
			final = got
			return ""
		})
		t.Logf("ADD accepted in %v; all pods stable at v%s %v later", accepted.Round(time.Millisecond), final, took.Round(time.Millisecond))

		// New writes land on the new node too, and read back everywhere.
		const n = 300
		for i := range n {
			if r, err := pods[i%3].do("SET", fmt.Sprintf("post:%d", i), "x"); err != nil || r != "OK" {
				t.Fatalf("SET post:%d: %q %v", i, r, err)
			}
		}
		direct := clClient(t, newNode)
		ctx, cancel := clCtx()
		defer cancel()
		on := 0
		for i := range n {
			k := fmt.Sprintf("post:%d", i)
			if c, _ := direct.Exists(ctx, k).Result(); c == 1 {
				on++
			}
			if r, err := pods[(i+1)%3].do("GET", k); err != nil || r != "x" {
				t.Fatalf("GET %s via another pod: %q %v", k, r, err)
			}
		}
		// The new node owns about a third of the slots.
		if on < n/6 || on > n/2 {
			t.Fatalf("%d of %d keys written after the ADD are on the new node %s, want about a third", on, n, newNode)
		}
		t.Logf("%d/%d new keys on the new node", on, n)
	})

	step("BadInputRefused", func(t *testing.T) {
		v := version(t)
		_, _, nodes, _ := clAgreed(e.live())
		unreachable := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		cases := []struct {
			args []string
			want string
		}{
			{[]string{"ADD", "not-an-address"}, "is not a host:port address"},
			{[]string{"ADD", "127.0.0.1:0"}, "invalid port"},
			{[]string{"ADD", seeds[0]}, "already in the ring"},
			{[]string{"REMOVE", "127.0.0.1:1"}, "not in the ring"},
			{[]string{"WEIGHT", "127.0.0.1:1", "2"}, "not in the ring"},
			{[]string{"WEIGHT", seeds[0], "0"}, "weight must be"},
			{[]string{"ADD", unreachable}, "unreachable"},
			{[]string{"ADD"}, "usage"},
		}
		for i, c := range cases {
			p := e.live()[i%3] // leader and followers alike
			got := p.jupiterCmd(c.args...)
			if !strings.HasPrefix(got, "ERR ") || !strings.Contains(got, c.want) {
				t.Errorf("JUPITER %v via %s = %q, want -ERR …%s…", c.args, p.Hedge, got, c.want)
			}
		}
		unchanged(t, v, nodes)
		// The same through jupiter ctl: exit 1 and the message.
		out, errOut, code := e.ctl(follower(t, 1), "add", seeds[1])
		if code != 1 || !strings.Contains(errOut, "already in the ring") || out != "" {
			t.Fatalf("ctl add duplicate: exit %d stdout %q stderr %q", code, out, errOut)
		}
		unchanged(t, v, nodes)
	})

	step("HTTPAdmin", func(t *testing.T) {
		p := follower(t, 1)
		extra := e.redis[3].Addr
		v := version(t)
		code, body := p.httpDo(t, "GET", "/v1/nodes", "")
		var nodes struct {
			RingVersion int `json:"ring_version"`
			Nodes       []struct {
				Addr  string `json:"addr"`
				Slots int    `json:"slots"`
				Up    bool   `json:"up"`
			} `json:"nodes"`
		}
		clJSON(t, body, &nodes)
		if code != 200 || nodes.RingVersion != v || len(nodes.Nodes) != 3 || !nodes.Nodes[0].Up || nodes.Nodes[0].Slots == 0 {
			t.Fatalf("GET /v1/nodes = %d %s", code, body)
		}
		// Each accepted change starts a staged rebalance (a new version per
		// stage); the next change waits until every pod is stable again.
		stable := func(t *testing.T, what string, want ...string) {
			t.Helper()
			clWait(t, e, 20*time.Second, what, func() string {
				_, got, nodes, why := clAgreed(e.live())
				if why != "" {
					return why
				}
				if gv, _ := strconv.Atoi(got); gv <= v {
					return "at v" + got
				}
				if nodes != clSortedNodes(want...) {
					return "nodes " + nodes
				}
				for _, q := range e.live() {
					if st := q.status()["stage"]; st != "stable" {
						return q.Hedge + " in stage " + st
					}
				}
				return ""
			})
			v = version(t)
		}
		_, _, before, _ := clAgreed(e.live())
		three := strings.Split(before, ",")
		for _, c := range []struct {
			method, path, body string
			code               int
			want               string
			after              []string // nodes once stable (nil: refused, nothing to wait for)
		}{
			{"POST", "/v1/nodes", `{"addr":"` + extra + `","weight":2}`, 200, `"ok": true`, append(slices.Clone(three), extra)},
			{"POST", "/v1/nodes", `{"addr":"` + extra + `"}`, 409, "already in the ring", nil},
			{"POST", "/v1/nodes", `{"addr":"nope"}`, 400, "not a host:port", nil},
			{"POST", "/v1/nodes", `{"adr":"x"}`, 400, "unknown field", nil},
			{"PUT", "/v1/nodes/" + extra + "/weight", `{"weight":3}`, 200, `"ok": true`, append(slices.Clone(three), extra)},
			{"PUT", "/v1/nodes/127.0.0.1:1/weight", `{"weight":3}`, 404, "not in the ring", nil},
			{"DELETE", "/v1/nodes/" + extra, "", 200, `"ok": true`, three},
			{"DELETE", "/v1/nodes/" + extra, "", 404, "not in the ring", nil},
		} {
			code, body := p.httpDo(t, c.method, c.path, c.body)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Fatalf("%s %s %s = %d %s, want %d …%s…", c.method, c.path, c.body, code, body, c.code, c.want)
			}
			if c.after != nil {
				stable(t, "every pod stable after "+c.method+" "+c.path, c.after...)
			}
		}
		code, body = p.httpDo(t, "GET", "/v1/status", "")
		if code != 200 || !strings.Contains(body, `"cluster"`) || !strings.Contains(body, leader) {
			t.Fatalf("GET /v1/status = %d %s", code, body)
		}
	})

	var killed *clPod
	step("LeaderKilled", func(t *testing.T) {
		old := leader
		killed = leaderPod(t)
		v := version(t)
		killed.Kill() // SIGKILL: no lock release, no goodbye
		// spindle lets another pod take the lock once the lease plus 1s of
		// drift has passed without a heartbeat, at its next round (every
		// lease), and reports leadership on the round after: about 2-3
		// leases. The bound leaves room for a loaded CI machine.
		took := clWait(t, e, clLockLease*3+10*time.Second, "a new leader agreed by the surviving pods", func() string {
			l, _, _, why := clAgreed(e.live())
			if why != "" {
				return why
			}
			if l == old {
				return "still the old leader " + old
			}
			leader = l
			return ""
		})
		t.Logf("new leader %s agreed %v after SIGKILL of %s (lock lease %v)", leader, took.Round(time.Millisecond), old, clLockLease)
		// Admin works again, through a follower of the new leader.
		if r := follower(t, 0).jupiterCmd("WEIGHT", e.redis[2].Addr, "2"); r != "OK" {
			t.Fatalf("WEIGHT after failover: %s", r)
		}
		// The killed pod's registry lease (--member-lease) must run out
		// before the rebalance's barriers pass without it.
		final := clWaitStable(t, e, 30*time.Second, v)
		st := leaderPod(t).status()
		if st["ring_leader"] != leader {
			t.Fatalf("v%d written by %q, want the new leader %s", final, st["ring_leader"], leader)
		}
	})

	step("RestartWithStaleBackends", func(t *testing.T) {
		v := version(t)
		_, _, nodes, _ := clAgreed(e.live())
		// The pod comes back with a --backends list that is long out of
		// date: Spanner's ring wins.
		args := append([]string(nil), killed.Args...)
		for i, a := range args {
			if a == "--backends" {
				args[i+1] = e.redis[0].Addr
			}
		}
		killed.Args = args
		killed.Start()
		killed.rdb = clClient(e.t, killed.Addr) // lives as long as the pod
		clWait(t, e, 20*time.Second, "restarted pod on Spanner's ring", func() string {
			_, got, n, why := clAgreed(e.live())
			if why != "" {
				return why
			}
			if got != strconv.Itoa(v) || n != nodes {
				return fmt.Sprintf("v%s %s, want v%d %s", got, n, v, nodes)
			}
			return ""
		})
		// Keys written on the current ring (earlier ring changes moved
		// slots; without migration, keys written before them may miss).
		for i, p := range e.live() {
			k := fmt.Sprintf("restart:%d", i)
			if r, err := p.do("SET", k, "z"); err != nil || r != "OK" {
				t.Fatalf("SET via %s: %q %v", p.Hedge, r, err)
			}
			if r, err := killed.do("GET", k); err != nil || r != "z" {
				t.Fatalf("GET %s via the restarted pod: %q %v", k, r, err)
			}
		}
	})

	step("SpannerDown", func(t *testing.T) {
		if !e.emu.Stoppable {
			if testenv.CI() {
				t.Fatal("the Spanner outage needs a dedicated emulator (emulator_main); only SPANNER_EMULATOR_HOST is set")
			}
			t.Skip("no emulator binary to stop; SPANNER_EMULATOR_HOST is shared")
		}
		v := version(t)
		_, _, nodes, _ := clAgreed(e.live())
		e.emu.Stop()
		took := clWait(t, e, 30*time.Second, "every pod to notice the outage", func() string {
			for _, p := range e.live() {
				if st := p.status(); st["spanner_error"] == "" {
					return p.Hedge + " reports no spanner_error"
				}
			}
			return ""
		})
		t.Logf("outage reported by every pod %v after the emulator died", took.Round(time.Millisecond))
		// The data path keeps serving the last ring.
		for i, p := range e.live() {
			k := fmt.Sprintf("outage:%d", i)
			if r, err := p.do("SET", k, "y"); err != nil || r != "OK" {
				t.Fatalf("SET via %s during the outage: %q %v", p.Hedge, r, err)
			}
			for _, q := range e.live() {
				if r, err := q.do("GET", k); err != nil || r != "y" {
					t.Fatalf("GET via %s during the outage: %q %v", q.Hedge, r, err)
				}
			}
			if r, err := p.do("GET", "restart:0"); err != nil || r != "z" {
				t.Fatalf("GET a key written before the outage via %s: %q %v", p.Hedge, r, err)
			}
			if c := p.readyz(); c != 200 {
				t.Fatalf("%s /readyz = %d during the outage (it serves its last ring)", p.Hedge, c)
			}
		}
		// Admin changes fail fast with a clear error; the ring stays.
		for _, p := range e.live() {
			s := time.Now()
			got := p.jupiterCmd("ADD", e.redis[3].Addr)
			if !strings.HasPrefix(got, "ERR ") || !strings.Contains(got, "Spanner is unreachable") {
				t.Fatalf("ADD via %s during the outage = %q", p.Hedge, got)
			}
			if d := time.Since(s); d > 2*time.Second {
				t.Fatalf("ADD refusal took %v", d)
			}
		}
		_, errOut, code := e.ctl(e.live()[0], "remove", e.redis[0].Addr)
		if code != 1 || !strings.Contains(errOut, "Spanner is unreachable") {
			t.Fatalf("ctl remove during the outage: exit %d %q", code, errOut)
		}
		unchanged(t, v, nodes)
		// SIGTERM still shuts a pod down promptly (hedge cannot stop
		// cleanly without Spanner; the wait for it is bounded).
		p := e.live()[0]
		s := time.Now()
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.Exited():
			t.Logf("pod exited %v after SIGTERM during the outage", time.Since(s).Round(time.Millisecond))
		case <-time.After(15 * time.Second):
			t.Fatalf("pod did not exit within 15s of SIGTERM during the outage\n%s", clTail(p.Log(), 30))
		}
		for _, p := range e.live() { // same bounded wait each; not worth it again
			p.Kill()
		}
	})
	t.Logf("cluster end-to-end took %v", time.Since(start).Round(time.Millisecond))
}

// TestClusterReadinessAndCtl starts one pod on an empty database without
// --backends: it is not ready and refuses keyed commands until a ring
// exists; `jupiter ctl` then creates the ring, and the pod becomes ready.
// It also checks `jupiter ddl` and the refusal to remove the last node.
func TestClusterReadinessAndCtl(t *testing.T) {
	e := startClEnv(t, 2)
	out, code := e.jupiter("ddl")
	want, err := os.ReadFile("../ddl/jupiter.sql")
	if err != nil || code != 0 || out != string(want) {
		t.Fatalf("jupiter ddl (exit %d) differs from ddl/jupiter.sql (%v)", code, err)
	}
	if out, code := e.jupiter("ddl", "--apply", "--spanner-db", e.db); code != 0 {
		t.Fatalf("second jupiter ddl --apply is not idempotent: exit %d %s", code, out)
	}

	p := e.startPod(nil, "--admin-password", "adm1n")
	r0, r1 := e.redis[0].Addr, e.redis[1].Addr
	adm := func(args ...string) []string {
		return append([]string{"--user", "admin", "--password", "adm1n"}, args...)
	}
	clWait(t, e, 20*time.Second, "the pod to lead and find no ring", func() string {
		if st := p.status(); st["is_leader"] != "1" || st["leader"] != p.Hedge || !strings.Contains(st["last_sync_error"], "no ring") {
			return fmt.Sprintf("status %v", st)
		}
		return ""
	})
	st := p.status()
	if st["ready"] != "0" || st["ring_version"] != "0" || st["nodes"] != "" {
		t.Fatalf("STATUS without a ring: %v", st)
	}
	if c := p.readyz(); c != 503 {
		t.Fatalf("/readyz without a ring = %d, want 503", c)
	}
	if _, err := p.do("GET", "k"); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Fatalf("GET without a ring: %v, want -TRYAGAIN", err)
	}
	if r, err := p.do("PING"); err != nil || r != "PONG" {
		t.Fatalf("PING without a ring: %q %v", r, err)
	}

	// Usage errors exit 2, refusals 1, success 0 with OK.
	if _, _, code := e.ctl(p, "remove"); code != 2 {
		t.Fatalf("ctl remove without an address: exit %d", code)
	}
	if _, errOut, code := e.ctl(p, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("ctl unknown command: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.ctl(p, adm("remove", r0)...); code != 1 || !strings.Contains(errOut, "no ring yet") {
		t.Fatalf("ctl remove with no ring: exit %d %q", code, errOut)
	}
	// --admin-password: changes need AUTH admin, over RESP and HTTP.
	if _, errOut, code := e.ctl(p, "add", r0); code != 1 || !strings.Contains(errOut, "NOPERM") {
		t.Fatalf("ctl add without the admin password: exit %d %q", code, errOut)
	}
	if code, body := p.httpDo(t, "POST", "/v1/nodes", `{"addr":"`+r0+`"}`); code != 401 {
		t.Fatalf("POST /v1/nodes without the admin password = %d %s", code, body)
	}
	if out, errOut, code := e.ctl(p, adm("add", r0)...); code != 0 || out != "OK" {
		t.Fatalf("ctl add: exit %d %q %q", code, out, errOut)
	}
	clWait(t, e, 10*time.Second, "ready", func() string {
		if c := p.readyz(); c != 200 {
			return fmt.Sprint("/readyz ", c)
		}
		return ""
	})
	if r, err := p.do("SET", "k", "v"); err != nil || r != "OK" {
		t.Fatalf("SET once ready: %q %v", r, err)
	}
	if _, errOut, code := e.ctl(p, adm("remove", r0)...); code != 1 || !strings.Contains(errOut, "last node") {
		t.Fatalf("ctl remove of the last node: exit %d %q", code, errOut)
	}
	if st := p.status(); st["ring_version"] != "1" || st["nodes"] != r0 {
		t.Fatalf("refused REMOVE changed the ring: %v", st)
	}
	if r, err := p.do("GET", "k"); err != nil || r != "v" {
		t.Fatalf("GET after the refused REMOVE: %q %v", r, err)
	}
	if out, _, code := e.ctl(p, adm("--timeout", "10s", "add", r1, "3")...); code != 0 || out != "OK" {
		t.Fatalf("ctl add with weight (flag first): exit %d %q", code, out)
	}
	// Ring changes are staged rebalances: the next one waits until stable.
	clWaitStable(t, e, 20*time.Second, 1)
	req, _ := http.NewRequest("PUT", "http://"+p.AdminAddr+"/v1/nodes/"+r1+"/weight", strings.NewReader(`{"weight":2}`))
	req.SetBasicAuth("admin", "adm1n")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT weight with the admin password: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	final := clWaitStable(t, e, 20*time.Second, 2)
	out, _, code = e.ctl(p, "nodes")
	if code != 0 || !strings.Contains(out, r0+" weight=1") || !strings.Contains(out, r1+" weight=2") {
		t.Fatalf("ctl nodes: exit %d\n%s", code, out)
	}
	out, _, code = e.ctl(p, "status")
	st = testenv.ParseStatus(out)
	if code != 0 || st["mode"] != "cluster" || st["ring_version"] != strconv.Itoa(final) || st["self"] != p.Hedge || st["ready"] != "1" {
		t.Fatalf("ctl status: exit %d\n%s", code, out)
	}

	// SIGTERM: drains and stops the hedge member, exits 0 promptly.
	s := time.Now()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatalf("pod did not exit within 10s of SIGTERM\n%s", clTail(p.Log(), 30))
	}
	if !strings.Contains(p.Log(), "jupiter stopped") || strings.Contains(p.Log(), "did not stop in time") {
		t.Fatalf("unclean shutdown:\n%s", clTail(p.Log(), 20))
	}
	t.Logf("pod stopped %v after SIGTERM", time.Since(s).Round(time.Millisecond))
}
