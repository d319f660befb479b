package proxy

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// startObsProxy runs a proxy over r feeding obs, whose JUPITER commands are
// answered by a real admin.Handler reading obs.
func startObsProxy(t *testing.T, r *ring.Ring, obs admin.Observers, opts Options) *testProxy {
	t.Helper()
	opts.HashPrefix, opts.Obs = "hash=", obs
	return startProxyAdmin(t, r, backend.Options{}, opts, func(rt *Router) Admin {
		return admin.Handler{C: &admin.Local{Router: rt, Self: "test"}, Obs: obs}
	})
}

// keyOn returns a key that r places on node i.
func keyOn(r *ring.Ring, i int, prefix string) string {
	for n := 0; ; n++ {
		k := prefix + strconv.Itoa(n)
		if r.Owner([]byte(k)) == i {
			return k
		}
	}
}

func goRedis(t *testing.T, addr string, proto int, name string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, DisableIdentity: true, ClientName: name,
		MaxRetries: -1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// lineFields parses a JUPITER SLOWLOG/HOTKEYS line's key=value fields (up
// to cmd=, which is the rest of the line).
func lineFields(line string) map[string]string {
	out := map[string]string{}
	if i := strings.Index(line, " cmd="); i >= 0 {
		out["cmd"] = line[i+5:]
		line = line[:i]
	}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestSlowlogPausedNode: a node frozen (SIGSTOP) for 200 ms delays a GET
// of one of its keys; the proxy logs that GET with the node and a node
// wait close to the pause, and not the GET of the other node's key
// pipelined with it. SLOWLOG GET is Redis's format (go-redis parses it,
// RESP2 and RESP3); JUPITER SLOWLOG adds node, node wait and proxy time.
func TestSlowlogPausedNode(t *testing.T) {
	ra, rb := testenv.StartRedis(t), testenv.StartRedis(t)
	r := ringOf(t, 1, ra.Addr, rb.Addr)
	obs := admin.Observers{Slowlog: slowlog.New(50*time.Millisecond, 16)}
	px := startObsProxy(t, r, obs, Options{})
	keyA, keyB := keyOn(r, r.Index(ra.Addr), "pa"), keyOn(r, r.Index(rb.Addr), "pb")
	c := dial(t, px.addr)
	if got := c.do("CLIENT", "SETNAME", "pauser"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	c.do("SET", keyA, "va")
	c.do("SET", keyB, "vb")
	if n := mustInt(t, c.do("SLOWLOG", "LEN")); n != 0 {
		t.Fatalf("SLOWLOG LEN = %d before anything slow", n)
	}

	const pause = 200 * time.Millisecond
	ra.Pause()
	sent := time.Now()
	c.send(string(resp.AppendCommand(resp.AppendCommand(nil, []byte("GET"), []byte(keyA)), []byte("GET"), []byte(keyB))))
	time.Sleep(pause)
	ra.Resume()
	if got := c.replies(2); got[0] != "$2\r\nva\r\n" || got[1] != "$2\r\nvb\r\n" {
		t.Fatalf("replies %q", got)
	}
	elapsed := time.Since(sent)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, proto := range []int{2, 3} {
		entries, err := goRedis(t, px.addr, proto, "").SlowLogGet(ctx, -1).Result()
		if err != nil {
			t.Fatalf("RESP%d SLOWLOG GET: %v", proto, err)
		}
		if len(entries) != 1 {
			t.Fatalf("RESP%d: %d entries %+v, want only the GET of the paused node's key", proto, len(entries), entries)
		}
		e := entries[0]
		if !slices.Equal(e.Args, []string{"GET", keyA}) || e.ClientName != "pauser" || e.ClientAddr != c.nc.LocalAddr().String() {
			t.Errorf("RESP%d entry %+v: want GET %s from %s named pauser", proto, e, keyA, c.nc.LocalAddr())
		}
		if e.Duration < pause*3/4 || e.Duration > elapsed {
			t.Errorf("RESP%d duration %v, want about the %v pause (≤ %v seen by the client)", proto, e.Duration, pause, elapsed)
		}
		if d := time.Since(e.Time); d < 0 || d > time.Minute {
			t.Errorf("RESP%d entry time %v", proto, e.Time)
		}
	}

	lines, err := goRedis(t, px.addr, 2, "").Do(ctx, "JUPITER", "SLOWLOG").StringSlice()
	if err != nil || len(lines) != 1 {
		t.Fatalf("JUPITER SLOWLOG = %q, %v", lines, err)
	}
	f := lineFields(lines[0])
	node, proxyUS, dur := atoi(t, f["node_us"]), atoi(t, f["proxy_us"]), atoi(t, f["duration_us"])
	if f["nodes"] != ra.Addr {
		t.Errorf("nodes=%s, want the paused node %s", f["nodes"], ra.Addr)
	}
	if node < (pause*3/4).Microseconds() || node > elapsed.Microseconds() {
		t.Errorf("node_us=%d, want close to the %v pause", node, pause)
	}
	if node+proxyUS != dur || proxyUS > (50*time.Millisecond).Microseconds() {
		t.Errorf("duration_us=%d node_us=%d proxy_us=%d: want proxy time small and the parts to add up", dur, node, proxyUS)
	}
	if f["cmd"] != `"GET" "`+keyA+`"` || f["name"] != "pauser" {
		t.Errorf("line %q", lines[0])
	}
}

// TestSlowlogRedactsSecrets: with every command logged, no password sent
// in AUTH, HELLO … AUTH, MIGRATE … AUTH/AUTH2, CONFIG SET masterauth or
// ACL SETUSER appears in SLOWLOG GET or JUPITER SLOWLOG.
func TestSlowlogRedactsSecrets(t *testing.T) {
	rd := testenv.StartRedis(t)
	obs := admin.Observers{Slowlog: slowlog.New(0, 128)}
	px := startObsProxy(t, ringOf(t, 1, rd.Addr), obs, Options{Password: "pass-S3CRET-1"})
	c := dial(t, px.addr)
	secrets := []string{"pass-S3CRET-1", "wrong-S3CRET-2", "mig-S3CRET-3", "mig2-S3CRET-4", "cfg-S3CRET-5", "acl-S3CRET-6"}
	for _, cmd := range [][]string{
		{"AUTH", "wrong-S3CRET-2"},
		{"AUTH", "default", "pass-S3CRET-1"},
		{"HELLO", "2", "AUTH", "default", "pass-S3CRET-1", "SETNAME", "app"},
		{"MIGRATE", "127.0.0.1", "1", "k", "0", "10", "AUTH", "mig-S3CRET-3"},
		{"MIGRATE", "127.0.0.1", "1", "", "0", "10", "AUTH2", "u", "mig2-S3CRET-4", "KEYS", "k"},
		{"CONFIG", "SET", "masterauth", "cfg-S3CRET-5"},
		{"ACL", "SETUSER", "bob", "on", ">acl-S3CRET-6"},
		{"GET", "plain"},
	} {
		c.do(cmd...)
	}
	get := c.do("SLOWLOG", "GET", "-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc := goRedis(t, px.addr, 2, "")
	if err := rc.Do(ctx, "AUTH", "pass-S3CRET-1").Err(); err != nil {
		t.Fatal(err)
	}
	lines, err := rc.Do(ctx, "JUPITER", "SLOWLOG", "-1").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	all := get + strings.Join(lines, "\n")
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %q recorded:\n%s", s, all)
		}
	}
	if !strings.Contains(get, "$5\r\nplain\r\n") || strings.Count(all, slowlog.Redacted) < 2*12 {
		t.Errorf("the log lacks the commands or their redactions (%d):\n%s", strings.Count(all, slowlog.Redacted), all)
	}
	for _, want := range []string{`cmd="AUTH" "(redacted)"`, `cmd="HELLO" "2" "AUTH" "(redacted)" "(redacted)" "SETNAME" "app"`,
		`"AUTH2" "(redacted)" "(redacted)" "KEYS" "k"`, `cmd="CONFIG" "SET" "masterauth" "(redacted)"`} {
		if !strings.Contains(all, want) {
			t.Errorf("JUPITER SLOWLOG lacks %s", want)
		}
	}
}

// TestSlowlogMatchesRedis: with every command logged by both, the proxy's
// SLOWLOG GET keeps a command's arguments exactly as the node's own
// SLOWLOG does (at most 32 arguments, 128 bytes each, Redis's markers);
// LEN and RESET behave alike (RESET is itself logged); a RESP3 client gets
// the same arrays.
func TestSlowlogMatchesRedis(t *testing.T) {
	rd := testenv.StartRedis(t)
	px := startObsProxy(t, ringOf(t, 1, rd.Addr), admin.Observers{Slowlog: slowlog.New(0, 128)}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node := goRedis(t, rd.Addr, 2, "")
	if err := node.ConfigSet(ctx, "slowlog-log-slower-than", "0").Err(); err != nil {
		t.Fatal(err)
	}
	p := goRedis(t, px.addr, 2, "")
	rpush := []any{"RPUSH", "tl"}
	for i := range 45 {
		rpush = append(rpush, "v"+strconv.Itoa(i))
	}
	for _, cmd := range [][]any{
		rpush,
		{"SET", "tk", strings.Repeat("x", 300)},
		{"SET", strings.Repeat("k", 200), strings.Repeat("y", 129)},
		{"MSET", "a", "1", "b", "2"},
	} {
		if err := p.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
		pe, err := p.SlowLogGet(ctx, 1).Result()
		if err != nil || len(pe) != 1 {
			t.Fatalf("proxy SLOWLOG GET 1: %v %v", pe, err)
		}
		ne, err := node.SlowLogGet(ctx, 1).Result()
		if err != nil || len(ne) != 1 {
			t.Fatalf("node SLOWLOG GET 1: %v %v", ne, err)
		}
		if !slices.Equal(pe[0].Args, ne[0].Args) {
			t.Errorf("%v…:\n jupiter %q\n    node %q", cmd[0], pe[0].Args, ne[0].Args)
		}
	}
	for name, cl := range map[string]*redis.Client{"jupiter": p, "node": node} {
		if err := cl.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := cl.Do(ctx, "SLOWLOG", "LEN").Int(); err != nil || n != 1 {
			t.Errorf("%s: SLOWLOG LEN after RESET = %d %v, want 1 (the RESET)", name, n, err)
		}
	}
	// RESP3: the same arrays (no map), parsed by go-redis too.
	c := dial(t, px.addr)
	if r := c.do("HELLO", "3"); !strings.HasPrefix(r, "%") {
		t.Fatalf("HELLO 3 = %q", r)
	}
	c.do("GET", "k3")
	if r := c.do("SLOWLOG", "GET", "1"); !strings.HasPrefix(r, "*1\r\n*6\r\n:") || !strings.Contains(r, "*2\r\n$3\r\nGET\r\n$2\r\nk3\r\n$") {
		t.Errorf("RESP3 SLOWLOG GET 1 = %q", r)
	}
	if r := c.do("SLOWLOG", "GET", "x"); r != "-ERR count should be greater than or equal to -1\r\n" {
		t.Errorf("SLOWLOG GET x = %q", r)
	}
	if e, err := goRedis(t, px.addr, 3, "").SlowLogGet(ctx, 3).Result(); err != nil || len(e) != 3 {
		t.Errorf("RESP3 go-redis SlowLogGet: %v %v", e, err)
	}
}

// TestHotKeysThroughProxy: 100,000 keys read once each and one read ten
// times, in random order, through a proxy sampling every command: JUPITER
// HOTKEYS names the hot key first, by commands and by bytes, with its node.
func TestHotKeysThroughProxy(t *testing.T) {
	ra, rb := testenv.StartRedis(t), testenv.StartRedis(t)
	r := ringOf(t, 1, ra.Addr, rb.Addr)
	obs := admin.Observers{HotKeys: hotkeys.New(hotkeys.Config{Scale: 1})}
	px := startObsProxy(t, r, obs, Options{})
	const keys = 100_000
	order := make([]int32, 0, keys+10)
	for i := range keys {
		order = append(order, int32(i))
	}
	for range 10 {
		order = append(order, -1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := goRedis(t, px.addr, 2, "")
	for len(order) > 0 {
		n := min(len(order), 1000)
		pipe := c.Pipeline()
		for _, k := range order[:n] {
			key := "user:" + strconv.Itoa(int(k))
			if k < 0 {
				key = "user:hot"
			}
			pipe.Get(ctx, key)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		order = order[n:]
	}
	owner := r.Node(r.Owner([]byte("user:hot"))).Addr
	for _, by := range []string{"COUNT", "BYTES"} {
		lines, err := c.Do(ctx, "JUPITER", "HOTKEYS", by, "3").StringSlice()
		if err != nil || len(lines) != 3 {
			t.Fatalf("JUPITER HOTKEYS %s 3 = %q, %v", by, lines, err)
		}
		f := lineFields(lines[0])
		if f["key"] != `"user:hot"` || f["node"] != owner || atoi(t, f["count"]) < 10 || atoi(t, f["reads"]) < 10 || f["writes"] != "0" {
			t.Errorf("by %s: first %q, want user:hot (≥ 10 reads) on %s; then %q", by, lines[0], owner, lines[1:])
		}
	}
	if r, err := c.Do(ctx, "JUPITER", "HOTKEYS", "RESET").Result(); err != nil || r != "OK" {
		t.Errorf("JUPITER HOTKEYS RESET = %v %v", r, err)
	}
	if lines, err := c.Do(ctx, "JUPITER", "HOTKEYS").StringSlice(); err != nil || len(lines) != 0 {
		t.Errorf("after RESET: %q %v", lines, err)
	}
}

// TestBigKeys: a 1 MiB value is listed by JUPITER BIGKEYS when written
// (request) and read (reply), with its node; a 1000-byte one is not.
func TestBigKeys(t *testing.T) {
	ra, rb := testenv.StartRedis(t), testenv.StartRedis(t)
	r := ringOf(t, 1, ra.Addr, rb.Addr)
	obs := admin.Observers{BigKeys: hotkeys.NewBig(1<<20, 16)}
	px := startObsProxy(t, r, obs, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := goRedis(t, px.addr, 2, "")
	big := strings.Repeat("b", 1<<20)
	if err := c.Set(ctx, "blob", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "small", strings.Repeat("s", 1000), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "blob").Result(); err != nil || len(v) != 1<<20 {
		t.Fatalf("GET blob: %d bytes, %v", len(v), err)
	}
	lines, err := c.Do(ctx, "JUPITER", "BIGKEYS").StringSlice()
	if err != nil || len(lines) != 2 {
		t.Fatalf("JUPITER BIGKEYS = %q, %v", lines, err)
	}
	owner := r.Node(r.Owner([]byte("blob"))).Addr
	seen := map[string]bool{}
	for _, l := range lines {
		f := lineFields(l)
		seen[f["command"]+"/"+f["dir"]] = true
		if f["key"] != `"blob"` || f["node"] != owner || atoi(t, f["size"]) < 1<<20 || f["count"] != "1" {
			t.Errorf("line %q: want key blob, node %s, size ≥ 1 MiB", l, owner)
		}
	}
	if !seen["set/request"] || !seen["get/reply"] {
		t.Errorf("JUPITER BIGKEYS = %q, want the SET's request and the GET's reply", lines)
	}
}

// TestObserveNoAllocs: with the slow log and big keys on and hot keys
// sampled rarely, a pipelined GET through the proxy allocates no more than
// with every observer off: nothing, in steady state (process-wide counts,
// as in BenchmarkProxyGET; the race detector's own allocations are the
// same in both).
func TestObserveNoAllocs(t *testing.T) {
	be := startStaticBackend(t)
	on := admin.Observers{Slowlog: slowlog.New(10*time.Millisecond, 128), BigKeys: hotkeys.NewBig(1<<20, 64),
		HotKeys: hotkeys.New(hotkeys.Config{Scale: 1 << 20})}
	perCmd := func(obs admin.Observers) float64 {
		px := startObsProxy(t, ringOf(t, 1, be), obs, Options{})
		c := dial(t, px.addr)
		var batch []byte
		for i := range 16 {
			batch = resp.AppendCommand(batch, []byte("GET"), []byte("key:"+strconv.Itoa(i)))
		}
		want := len(benchValue) * 16
		rbuf := make([]byte, 64<<10)
		round := func() {
			if _, err := c.nc.Write(batch); err != nil {
				t.Fatal(err)
			}
			for got := 0; got < want; {
				n, err := c.nc.Read(rbuf)
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
		}
		for range 200 {
			round()
		}
		const rounds = 2000
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range rounds {
			round()
		}
		runtime.ReadMemStats(&m1)
		return float64(m1.Mallocs-m0.Mallocs) / (rounds * 16)
	}
	off := perCmd(admin.Observers{})
	with := perCmd(on)
	limit := 0.02
	if raceEnabled {
		limit = off + 0.15 // the race detector's allocations vary a little from run to run
	}
	if with > limit {
		t.Errorf("%.3f allocations per command with observers on (%.3f off), want at most %.2f", with, off, limit)
	}
}
