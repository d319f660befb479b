package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// capInterval is the capacity gatherer's interval in these tests.
const capInterval = 250 * time.Millisecond

// capLine is one JUPITER NODES line: the address and its key=value fields.
type capLine struct {
	addr string
	f    map[string]string
}

func (l capLine) int(t *testing.T, k string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(l.f[k], 10, 64)
	if err != nil {
		t.Fatalf("%s: %s=%q is not an integer", l.addr, k, l.f[k])
	}
	return n
}

func (l capLine) float(t *testing.T, k string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(l.f[k], 64)
	if err != nil {
		t.Fatalf("%s: %s=%q is not a number", l.addr, k, l.f[k])
	}
	return v
}

// capNodes reads JUPITER NODES; read is when.
func capNodes(t *testing.T, c *redis.Client) (lines map[string]capLine, read time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.Do(ctx, "JUPITER", "NODES").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	read = time.Now()
	lines = map[string]capLine{}
	for _, s := range out {
		f := strings.Fields(s)
		l := capLine{addr: f[0], f: map[string]string{}}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			l.f[k] = v
		}
		lines[l.addr] = l
	}
	return lines, read
}

// freshNodes waits until every node's figures come from an INFO made after
// since, and returns them.
func freshNodes(t *testing.T, c *redis.Client, since time.Time) map[string]capLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines, read := capNodes(t, c)
		fresh := len(lines) > 0
		for _, l := range lines {
			age, err := strconv.ParseInt(l.f["info_age_ms"], 10, 64)
			if err != nil || age < 0 || read.Add(-time.Duration(age)*time.Millisecond).Before(since.Add(time.Millisecond)) {
				fresh = false
			}
		}
		if fresh {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("no capacity round after %v within 10s: %v", since.Format("15:04:05.000"), lines)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// infoOf is a node's own INFO as key:value.
func infoOf(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	s, err := c.Info(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = v
		}
	}
	return out
}

func infoInt(t *testing.T, in map[string]string, k string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(in[k], 10, 64)
	if err != nil {
		t.Fatalf("INFO %s=%q", k, in[k])
	}
	return n
}

// TestStandaloneCapacity drives the real binary with --capacity-interval
// and checks JUPITER NODES, `ctl top --once` and /metrics against what
// each real redis-server's own INFO and DBSIZE say: keys exact after
// writes, memory within 10%, hits and misses moved by exactly the GETs
// that hit and missed on each node, evictions after a tiny maxmemory with
// an eviction policy set on one node, request rates under load, and at
// most one INFO per node per interval.
func TestStandaloneCapacity(t *testing.T) {
	t.Parallel()
	e := startEnv(t, "--capacity-interval", capInterval.String())
	ctx := ctxT(t)
	addrs := e.c.Addrs()
	ping := func() { // the test's own connections exist before the rounds compared below
		for _, n := range e.nodes {
			if err := n.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ping()

	// Keys exact after writes.
	keys := make([]string, 600)
	p := e.j.Pipeline()
	for i := range keys {
		keys[i] = fmt.Sprint("cap:", i)
		p.Set(ctx, keys[i], strings.Repeat("v", 64), 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	base := freshNodes(t, e.j, time.Now())
	var total int64
	for i, a := range addrs {
		l := base[a]
		size := e.nodes[i].DBSize(ctx).Val()
		total += size
		if k := l.int(t, "keys"); k != size {
			t.Errorf("%s: keys=%d, DBSIZE %d", a, k, size)
		}
		in := infoOf(t, e.nodes[i])
		used := infoInt(t, in, "used_memory")
		if u := l.int(t, "used_memory"); u < used*9/10 || u > used*11/10 {
			t.Errorf("%s: used_memory=%d, node says %d", a, u, used)
		}
		if l.f["role"] != "master" || l.f["maxmemory"] != "0" || l.f["memory_ratio"] != "-1" || l.f["maxmemory_policy"] != in["maxmemory_policy"] {
			t.Errorf("%s: role=%s maxmemory=%s memory_ratio=%s policy=%s", a, l.f["role"], l.f["maxmemory"], l.f["memory_ratio"], l.f["maxmemory_policy"])
		}
		slots := l.int(t, "slots")
		if s := l.float(t, "slot_share"); s < float64(slots)/16384-0.0001 || s > float64(slots)/16384+0.0001 {
			t.Errorf("%s: slot_share=%v with %d slots", a, s, slots)
		}
	}
	if total != int64(len(keys)) {
		t.Fatalf("the nodes hold %d keys, want %d", total, len(keys))
	}
	for i, a := range addrs {
		want := float64(e.nodes[i].DBSize(ctx).Val()) / float64(total)
		if s := base[a].float(t, "key_share"); s < want-0.0001 || s > want+0.0001 {
			t.Errorf("%s: key_share=%v, want %v", a, s, want)
		}
	}

	// Hits and misses move by exactly the GETs made on each node. Owners
	// come from the ring jupiter builds from --backends (EXISTS on the nodes
	// would count as hits and misses itself).
	nodes := make([]ring.Node, len(addrs))
	for i, a := range addrs {
		nodes[i] = ring.Node{Addr: a, Weight: 1}
	}
	rg, err := ring.New(1, nodes)
	if err != nil {
		t.Fatal(err)
	}
	owner := func(k string) int { // index in addrs (the ring orders its nodes its own way)
		a := rg.Node(rg.Owner([]byte(k))).Addr
		for i := range addrs {
			if addrs[i] == a {
				return i
			}
		}
		t.Fatalf("ring node %s is not a backend", a)
		return -1
	}
	owners := make([]int, 200)
	for i, k := range keys[:200] {
		owners[i] = owner(k)
	}
	p = e.j.Pipeline()
	for _, k := range keys[:200] {
		p.Get(ctx, k)
	}
	missKeys := make([]string, 100)
	for i := range missKeys {
		missKeys[i] = fmt.Sprint("capmiss:", i)
		p.Get(ctx, missKeys[i])
	}
	_, _ = p.Exec(ctx) // the misses are redis.Nil
	missOwners := make([]int, len(missKeys))
	for i, k := range missKeys {
		missOwners[i] = owner(k)
	}
	after := freshNodes(t, e.j, time.Now())
	for i, a := range addrs {
		var hits, misses int64
		for _, o := range owners {
			if o == i {
				hits++
			}
		}
		for _, o := range missOwners {
			if o == i {
				misses++
			}
		}
		if d := after[a].int(t, "keyspace_hits") - base[a].int(t, "keyspace_hits"); d != hits {
			t.Errorf("%s: keyspace_hits moved by %d, %d GETs hit there", a, d, hits)
		}
		if d := after[a].int(t, "keyspace_misses") - base[a].int(t, "keyspace_misses"); d != misses {
			t.Errorf("%s: keyspace_misses moved by %d, %d GETs missed there", a, d, misses)
		}
		in := infoOf(t, e.nodes[i])
		for _, k := range []string{"keyspace_hits", "keyspace_misses", "evicted_keys", "expired_keys"} {
			if after[a].f[k] != in[k] {
				t.Errorf("%s: %s=%s, node says %s", a, k, after[a].f[k], in[k])
			}
		}
		h, m := float64(infoInt(t, in, "keyspace_hits")), float64(infoInt(t, in, "keyspace_misses"))
		if r := after[a].float(t, "hit_ratio"); r < h/(h+m)-0.0001 || r > h/(h+m)+0.0001 {
			t.Errorf("%s: hit_ratio=%v, node's hits/(hits+misses) = %v", a, r, h/(h+m))
		}
	}

	// Request rates under load: through this pod (= the fleet, standalone)
	// and the node's own estimate.
	loadCtx, stopLoad := context.WithTimeout(ctx, 20*time.Second)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 2000 && loadCtx.Err() == nil; n++ { // bounded in count and time
				lp := e.j.Pipeline()
				for k := range 20 {
					lp.Get(loadCtx, keys[(n*20+k+w*7)%len(keys)])
				}
				_, _ = lp.Exec(loadCtx)
			}
		}()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		lines, _ := capNodes(t, e.j)
		busy := 0
		for _, a := range addrs {
			l := lines[a]
			if l.float(t, "ops_pod") > 50 && l.f["ops_fleet"] == l.f["ops_pod"] && l.float(t, "ops_node") > 0 {
				busy++
			}
		}
		if busy == len(addrs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request rate under load: %v", lines)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()

	// Evictions: node 2 gets a maxmemory just above what it uses and an
	// eviction policy (CONFIG SET on the node itself), then more data than fits.
	n2 := e.nodes[2]
	limit := infoInt(t, infoOf(t, n2), "used_memory") + 300<<10
	if err := n2.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if err := n2.ConfigSet(ctx, "maxmemory", strconv.FormatInt(limit, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	p = e.j.Pipeline()
	for i := range 3000 {
		p.Set(ctx, fmt.Sprint("capbig:", i), strings.Repeat("x", 1024), 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// Then a little headroom, so that no command (INFO included) evicts
	// any more and the counts stay put while they are compared.
	limit = infoInt(t, infoOf(t, n2), "used_memory") + 128<<10
	if err := n2.ConfigSet(ctx, "maxmemory", strconv.FormatInt(limit, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	ping()
	lines := freshNodes(t, e.j, time.Now())
	in2, l2 := infoOf(t, n2), lines[addrs[2]]
	if ev := l2.int(t, "evicted_keys"); ev <= 0 || ev != infoInt(t, in2, "evicted_keys") {
		t.Errorf("node 2: evicted_keys=%d, node says %s (want > 0 and equal)", ev, in2["evicted_keys"])
	}
	if l2.int(t, "maxmemory") != limit || l2.f["maxmemory_policy"] != "allkeys-lru" || l2.int(t, "keys") != n2.DBSize(ctx).Val() {
		t.Errorf("node 2: %v; want maxmemory=%d maxmemory_policy=allkeys-lru keys=DBSIZE %d", l2.f, limit, n2.DBSize(ctx).Val())
	}
	if r, want := l2.float(t, "memory_ratio"), float64(infoInt(t, in2, "used_memory"))/float64(limit); r < want*0.95 || r > want*1.05 || r < 0.8 {
		t.Errorf("node 2: memory_ratio=%v, node's used/maxmemory %v", r, want)
	}

	// ctl top --once: node 2 (nearly full by memory) first, then the others
	// by key share.
	lines, _ = capNodes(t, e.j)
	var out []byte
	out, err = exec.CommandContext(ctx, testenv.Binary(t), "ctl", "--addr", e.c.Jupiter.Addr, "top", "--once").CombinedOutput()
	if err != nil {
		t.Fatalf("ctl top --once: %v\n%s", err, out)
	}
	rows := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(rows) != 3+len(addrs) || !strings.HasPrefix(rows[2], "NODE ") {
		t.Fatalf("ctl top --once:\n%s", out)
	}
	others := []string{addrs[0], addrs[1]}
	if lines[addrs[1]].float(t, "key_share") > lines[addrs[0]].float(t, "key_share") {
		others = []string{addrs[1], addrs[0]}
	}
	want := append([]string{addrs[2]}, others...)
	for i, a := range want {
		f := strings.Fields(rows[3+i])
		if f[0] != a {
			t.Fatalf("ctl top row %d is %s, want %s (order %v)\n%s", i, f[0], a, want, out)
		}
		by := "keys"
		if a == addrs[2] {
			by = "mem"
		}
		if f[2] != by {
			t.Errorf("ctl top row %d: full by %q, want %q\n%s", i, f[2], by, out)
		}
	}

	// /metrics of the live process: the same figures, by node label.
	metrics := func() string {
		resp, err := http.Get("http://" + e.c.Jupiter.AdminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := metrics()
	value := func(m, series string) float64 {
		t.Helper()
		re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` (\S+)$`)
		s := re.FindStringSubmatch(m)
		if s == nil {
			t.Fatalf("/metrics lacks %s", series)
		}
		v, _ := strconv.ParseFloat(s[1], 64)
		return v
	}
	for _, typ := range []string{"jupiter_node_used_memory_bytes gauge", "jupiter_node_keys gauge",
		"jupiter_node_evicted_keys_total counter", "jupiter_node_keyspace_hits_total counter",
		"jupiter_node_ops_per_second gauge", "jupiter_node_info_requests_total counter", "jupiter_fleet_pods gauge"} {
		if !strings.Contains(m, "# TYPE "+typ+"\n") {
			t.Errorf("/metrics lacks # TYPE %s", typ)
		}
	}
	for i, a := range addrs {
		node := `{node="` + a + `"}`
		if v := value(m, "jupiter_node_keys"+node); int64(v) != e.nodes[i].DBSize(ctx).Val() {
			t.Errorf("jupiter_node_keys%s = %v, DBSIZE %d", node, v, e.nodes[i].DBSize(ctx).Val())
		}
		for _, s := range []string{"jupiter_node_used_memory_bytes" + node, "jupiter_node_maxmemory_bytes" + node,
			"jupiter_node_key_share" + node, "jupiter_node_slot_share" + node, "jupiter_node_connected_clients" + node,
			"jupiter_node_keyspace_hits_total" + node, "jupiter_node_keyspace_misses_total" + node,
			"jupiter_node_keyspace_hit_ratio" + node, "jupiter_node_expired_keys_total" + node,
			`jupiter_node_ops_per_second{node="` + a + `",scope="pod"}`, `jupiter_node_ops_per_second{node="` + a + `",scope="fleet"}`,
			`jupiter_node_ops_per_second{node="` + a + `",scope="node"}`, "jupiter_node_info_age_seconds" + node,
			"jupiter_node_info_errors_total" + node} {
			value(m, s)
		}
		if v := value(m, `jupiter_node_role{node="`+a+`",role="master"}`); v != 1 {
			t.Errorf("jupiter_node_role for %s = %v", a, v)
		}
	}
	n2l := `{node="` + addrs[2] + `"}`
	if v := value(m, "jupiter_node_maxmemory_bytes"+n2l); int64(v) != limit {
		t.Errorf("jupiter_node_maxmemory_bytes%s = %v, want %d", n2l, v, limit)
	}
	if v := value(m, "jupiter_node_evicted_keys_total"+n2l); int64(v) != infoInt(t, infoOf(t, n2), "evicted_keys") {
		t.Errorf("jupiter_node_evicted_keys_total%s = %v, node says %s", n2l, v, infoOf(t, n2)["evicted_keys"])
	}
	if v := value(m, "jupiter_node_memory_used_ratio"+n2l); v < 0.8 || v > 1 {
		t.Errorf("jupiter_node_memory_used_ratio%s = %v", n2l, v)
	}
	if strings.Contains(m, `jupiter_node_memory_used_ratio{node="`+addrs[0]+`"}`) {
		t.Errorf("a node without maxmemory has a memory ratio series")
	}
	if v := value(m, "jupiter_fleet_pods"); v != 1 {
		t.Errorf("jupiter_fleet_pods = %v standalone", v)
	}

	// At most one INFO per node per interval.
	calls := func(m string) float64 { return value(m, "jupiter_node_info_requests_total"+n2l) }
	c0, t0 := calls(m), time.Now()
	time.Sleep(2 * time.Second)
	m = metrics()
	c1, took := calls(m), time.Since(t0)
	if max := took.Seconds()/capInterval.Seconds() + 2; c1-c0 > max || c1-c0 < max/2-2 {
		t.Errorf("%v INFO calls to one node in %v at a %v interval", c1-c0, took, capInterval)
	}
}
