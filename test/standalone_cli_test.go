package test

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
)

// TestStandaloneRedisCli drives jupiter with redis-cli one-shot commands, a
// script on stdin (quoted arguments parsed by redis-cli), --pipe mass
// insertion, and the admin/introspection commands tools ask for.
func TestStandaloneRedisCli(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "redis-cli")
	e := startEnv(t)
	j := e.c.Jupiter

	t.Run("OneShot", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"PING"}, "PONG"},
			{[]string{"SET", "cli:a", "hello world"}, "OK"},
			{[]string{"GET", "cli:a"}, `"hello world"`},
			{[]string{"--raw", "GET", "cli:a"}, "hello world"},
			{[]string{"GET", "cli:missing"}, "(nil)"},
			{[]string{"INCR", "cli:n"}, "(integer) 1"},
			{[]string{"INCRBY", "cli:n", "41"}, "(integer) 42"},
			{[]string{"RPUSH", "cli:l", "a", "b c", ""}, "(integer) 3"},
			{[]string{"LRANGE", "cli:l", "0", "-1"}, "1) \"a\"\n2) \"b c\"\n3) \"\""},
			{[]string{"ECHO", "x y"}, `"x y"`},
			{[]string{"SET", "cli:quote", `say "hi"` + "\n"}, "OK"},
			{[]string{"GET", "cli:quote"}, `"say \"hi\"\n"`},
			{[]string{"EXISTS", "cli:a", "cli:n", "cli:l", "cli:missing"}, "(integer) 3"},
			{[]string{"GETX"}, "(error) ERR unknown command 'GETX', with args beginning with:"},
			{[]string{"GET"}, "(error) ERR wrong number of arguments for 'get' command"},
		} {
			if got := j.Cli(tc.args...); got != tc.want {
				t.Errorf("redis-cli %q = %q, want %q", tc.args, got, tc.want)
			}
		}
	})

	t.Run("StdinScript", func(t *testing.T) {
		// redis-cli parses each stdin line itself (quotes, escapes): the
		// closest a client gets to an inline command.
		script := strings.Join([]string{
			`SET "cli:s key" "value with spaces"`,
			`GET "cli:s key"`,
			`SET cli:s:esc "tab\there"`,
			`STRLEN cli:s:esc`,
			`DEL "cli:s key" cli:s:esc cli:s:none`,
			`PING`,
		}, "\n") + "\n"
		out, err := testenv.CliInput(t, j.Addr, script)
		if err != nil {
			t.Fatalf("redis-cli < script: %v\n%s", err, out)
		}
		want := []string{"OK", "value with spaces", "OK", "8", "2", "PONG"}
		if got := strings.Split(out, "\n"); !slices.Equal(got, want) {
			t.Errorf("redis-cli < script = %q, want %q", got, want)
		}
	})

	t.Run("PipeMassInsert", func(t *testing.T) {
		// redis-cli --pipe writes raw protocol as fast as it can and ends with
		// an ECHO of a random marker; it exits non-zero on any error reply.
		const n = 2000
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(encode("SET", fmt.Sprintf("cli:pipe:%d", i), strconv.Itoa(i)))
		}
		out, err := testenv.CliInput(t, j.Addr, b.String(), "--pipe")
		if err != nil {
			t.Fatalf("redis-cli --pipe: %v\n%s", err, out)
		}
		if !strings.Contains(out, "errors: 0, replies: "+strconv.Itoa(n)) {
			t.Errorf("redis-cli --pipe output %q, want errors: 0, replies: %d", out, n)
		}
		ctx := ctxT(t)
		var ks []string
		for i := 0; i < n; i += 97 {
			ks = append(ks, fmt.Sprintf("cli:pipe:%d", i))
		}
		vals, err := e.j.MGet(ctx, ks...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if v != strconv.Itoa(i*97) {
				t.Errorf("%s = %v after --pipe", ks[i], v)
			}
		}
	})

	t.Run("JupiterStatus", func(t *testing.T) {
		st := j.Status()
		if st["self"] == "" {
			t.Errorf("JUPITER STATUS has no self: %v", st)
		}
		if st["leader"] == "" {
			t.Errorf("JUPITER STATUS has no leader: %v", st)
		}
		if v, err := strconv.ParseUint(st["ring_version"], 10, 64); err != nil || v < 1 {
			t.Errorf("ring_version = %q, want an integer >= 1", st["ring_version"])
		}
		if st["stage"] != "stable" {
			t.Errorf("stage = %q, want stable", st["stage"])
		}
		got := strings.Split(st["nodes"], ",")
		want := e.c.Addrs()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("nodes = %q, want %q", st["nodes"], strings.Join(want, ","))
		}
	})

	t.Run("JupiterNodes", func(t *testing.T) {
		out := j.Cli("--raw", "JUPITER", "NODES")
		lines := strings.Split(out, "\n")
		if len(lines) != 3 {
			t.Fatalf("JUPITER NODES = %q, want 3 lines", out)
		}
		slotsRe := regexp.MustCompile(`slots=(\d+)`)
		total := 0
		for _, addr := range e.c.Addrs() {
			n := 0
			for _, l := range lines {
				if strings.HasPrefix(l, addr+" ") || l == addr {
					n++
					if m := slotsRe.FindStringSubmatch(l); m != nil {
						s, _ := strconv.Atoi(m[1])
						total += s
					}
				}
			}
			if n != 1 {
				t.Errorf("JUPITER NODES lists %s %d times: %q", addr, n, out)
			}
		}
		if strings.Contains(out, "slots=") && total != 16384 {
			t.Errorf("slots add up to %d, want 16384: %q", total, out)
		}
	})

	t.Run("Introspection", func(t *testing.T) {
		if out := j.Cli("INFO"); !regexp.MustCompile(`(?m)^redis_version:\d+\.\d+`).MatchString(out) {
			t.Errorf("INFO has no redis_version line:\n%s", out)
		}
		if out := j.Cli("INFO", "server"); !strings.Contains(out, "redis_version:") {
			t.Errorf("INFO server has no redis_version:\n%s", out)
		}
		if out := j.Cli("CONFIG", "GET", "save"); out != "1) \"save\"\n2) \"\"" {
			t.Errorf("CONFIG GET save = %q", out)
		}
		if out := j.Cli("CONFIG", "GET", "appendonly"); out != "1) \"appendonly\"\n2) \"no\"" {
			t.Errorf("CONFIG GET appendonly = %q", out)
		}
		out := j.Cli("COMMAND", "COUNT")
		n, err := strconv.Atoi(strings.TrimPrefix(out, "(integer) "))
		if err != nil || n < 150 {
			t.Errorf("COMMAND COUNT = %q, want an integer >= 150", out)
		}
		if out := j.Cli("DBSIZE"); !strings.HasPrefix(out, "(integer) ") {
			t.Errorf("DBSIZE = %q", out)
		}
	})
}

// TestStandaloneRedisBenchmark runs redis-benchmark through jupiter, without
// and with pipelining: it must complete every test with exit 0 and print no
// error.
func TestStandaloneRedisBenchmark(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "redis-benchmark")
	e := startEnv(t)
	tests := []string{"SET", "GET", "INCR", "LPUSH", "MSET"}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"NoPipeline", nil},
		{"Pipeline16", []string{"-P", "16"}},
		// Random keys: MSET's 10 keys and the GETs land on every node.
		{"RandomKeysPipeline16", []string{"-r", "100000", "-P", "16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-t", "set,get,incr,lpush,mset", "-n", "2000", "-c", "10", "-q"}, tc.args...)
			start := time.Now()
			out, err := testenv.Benchmark(t, e.c.Jupiter.Addr, 90*time.Second, args...)
			if err != nil {
				t.Fatalf("redis-benchmark %v: %v\n%s", args, err, out)
			}
			t.Logf("redis-benchmark %v (%v):\n%s", tc.args, time.Since(start).Round(time.Millisecond), out)
			// -q prints one "NAME: N requests per second" line per test,
			// possibly after carriage-return progress updates.
			lines := strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' })
			for _, l := range lines {
				if strings.Contains(strings.ToLower(l), "err") {
					t.Errorf("redis-benchmark printed an error: %q", l)
				}
			}
			for _, name := range tests {
				re := regexp.MustCompile(`(?m)^` + name + `[^:]*: [0-9.]+ requests per second`)
				if !re.MatchString(strings.ReplaceAll(out, "\r", "\n")) {
					t.Errorf("no result line for %s in:\n%s", name, out)
				}
			}
		})
	}
	// The benchmark's keys really went through jupiter to the nodes.
	sizes := e.dbsizes(t)
	var sum int64
	for _, s := range sizes {
		sum += s
	}
	for i, s := range sizes {
		if s == 0 {
			t.Errorf("redis-benchmark -r wrote no key to node %d: %v", i, sizes)
		}
	}
	if got, err := e.j.DBSize(ctxT(t)).Result(); err != nil || got != sum {
		t.Errorf("DBSIZE through jupiter = %d, %v; nodes %v sum to %d", got, err, sizes, sum)
	}
}
