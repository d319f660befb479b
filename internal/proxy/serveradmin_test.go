package proxy

import (
	"strconv"
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

func TestServerAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	var addrs []string
	for range 3 {
		addrs = append(addrs, testenv.StartRedis(t).Addr)
	}
	px := startProxyRing(t, ringOf(t, 1, addrs...), backend.Options{}, Options{HashPrefix: "hash=", AdminPassword: "adm"})
	p := dial(t, px.addr)
	direct := make([]*client, len(addrs))
	for i, a := range addrs {
		direct[i] = dial(t, a)
	}

	t.Run("ConfigSetFansOut", func(t *testing.T) {
		if r := p.do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"); !strings.HasPrefix(r, "-NOPERM") {
			t.Fatalf("CONFIG SET without AUTH admin = %q", r)
		}
		if r := p.do("AUTH", "admin", "adm"); r != "+OK\r\n" {
			t.Fatal(r)
		}
		if r := p.do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"); r != "+OK\r\n" {
			t.Fatalf("CONFIG SET = %q", r)
		}
		for i, d := range direct {
			if r := d.do("CONFIG", "GET", "maxmemory-policy"); !strings.Contains(r, "allkeys-lru") {
				t.Errorf("node %d: maxmemory-policy = %q", i, r)
			}
		}
		if r := p.do("CONFIG", "GET", "maxmemory-policy"); !strings.Contains(r, "allkeys-lru") {
			t.Errorf("CONFIG GET through jupiter = %q", r)
		}
		r := p.do("CONFIG", "SET", "no-such-parameter", "1")
		if !strings.HasPrefix(r, "-ERR") || !strings.Contains(r, "(jupiter: node 127.0.0.1:") {
			t.Errorf("CONFIG SET of an unknown parameter = %q, want the node's error naming the node", r)
		}
		if r := p.do("CONFIG", "RESETSTAT"); r != "+OK\r\n" {
			t.Errorf("CONFIG RESETSTAT = %q", r)
		}
	})

	t.Run("Info", func(t *testing.T) {
		p.do("MSET", "i1", "a", "i2", "b", "i3", "c", "i4", "d", "i5", "e")
		info := p.do("INFO")
		var keys int64
		for _, d := range direct {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(d.do("DBSIZE"), ":")), 10, 64)
			keys += n
		}
		for _, want := range []string{"# Server\r\n", "# Clients\r\n", "# Memory\r\n", "used_memory:", "used_memory_human:",
			"lazyfree_pending_objects:", "# Stats\r\n", "total_commands_processed:", "keyspace_hits:", "evicted_keys:",
			"# Replication\r\nrole:master", "# Keyspace\r\n", "db0:keys=" + strconv.FormatInt(keys, 10) + ",", "# Jupiter\r\n"} {
			if !strings.Contains(info, want) {
				t.Errorf("INFO lacks %q", want)
			}
		}
		// used_memory is the sum of the nodes'.
		var sum int64
		for _, d := range direct {
			sum += infoInt(t, d.do("INFO", "memory"), "used_memory")
		}
		got := infoInt(t, p.do("INFO", "memory"), "used_memory")
		if got < sum*9/10 || got > sum*11/10 {
			t.Errorf("INFO used_memory = %d, nodes sum %d", got, sum)
		}
		if m := p.do("INFO", "keyspace"); strings.Contains(m, "# Memory") || !strings.Contains(m, "# Keyspace") {
			t.Errorf("INFO keyspace = %q", m)
		}
	})

	// The nodes' slow logs: JUPITER SLOWLOG NODES (plain SLOWLOG is the
	// proxy's own, empty here: this proxy has none).
	t.Run("SlowlogNodes", func(t *testing.T) {
		p.do("CONFIG", "SET", "slowlog-log-slower-than", "0")
		for i := range 20 {
			p.do("SET", "sl"+strconv.Itoa(i), "v")
		}
		p.do("CONFIG", "SET", "slowlog-log-slower-than", "-1")
		var sum, firstTens int64
		for _, d := range direct {
			n := mustInt(t, d.do("SLOWLOG", "LEN"))
			sum += n
			firstTens += min(n, 10) // a node's SLOWLOG GET shows 10 by default
		}
		if got := mustInt(t, p.do("JUPITER", "SLOWLOG", "NODES", "LEN")); got != sum || got < 20 {
			t.Errorf("JUPITER SLOWLOG NODES LEN = %d, nodes sum %d (want ≥ 20)", got, sum)
		}
		if got := mustInt(t, p.do("SLOWLOG", "LEN")); got != 0 {
			t.Errorf("SLOWLOG LEN = %d: the proxy's own log (off here) must not count the nodes'", got)
		}
		for _, get := range [][]string{{"JUPITER", "SLOWLOG", "NODES", "GET", "100"}, {"JUPITER", "SLOWLOG", "NODES"}} {
			want := firstTens
			if len(get) == 5 {
				want = sum
			}
			if r := p.do(get...); !strings.HasPrefix(r, "*"+strconv.FormatInt(want, 10)+"\r\n") || !strings.Contains(r, "sl1") {
				t.Errorf("%v = %.40q…, want %d entries of the nodes'", get, r, want)
			}
		}
		if r := p.do("JUPITER", "SLOWLOG", "NODES", "RESET"); r != "+OK\r\n" {
			t.Errorf("JUPITER SLOWLOG NODES RESET = %q", r)
		}
		for i, d := range direct {
			if got := mustInt(t, d.do("SLOWLOG", "LEN")); got != 0 {
				t.Errorf("node %d: SLOWLOG LEN after JUPITER SLOWLOG NODES RESET = %d", i, got)
			}
		}
		if r := p.do("JUPITER", "SLOWLOG", "NODES", "FOO"); !strings.HasPrefix(r, "-ERR usage") {
			t.Errorf("JUPITER SLOWLOG NODES FOO = %q", r)
		}
	})

	t.Run("Diagnostics", func(t *testing.T) {
		if r := p.do("LATENCY", "LATEST"); !strings.HasPrefix(r, "*") {
			t.Errorf("LATENCY LATEST = %q", r)
		}
		if r := p.do("MEMORY", "STATS"); !strings.HasPrefix(r, "*") || !strings.Contains(r, "peak.allocated") {
			t.Errorf("MEMORY STATS = %.60q", r)
		}
		if r := p.do("MEMORY", "PURGE"); r != "+OK\r\n" {
			t.Errorf("MEMORY PURGE = %q", r)
		}
		if r := p.do("SELECT", "1"); !strings.HasPrefix(r, "-ERR DB index is out of range") {
			t.Errorf("SELECT 1 = %q", r)
		}
	})
}

func infoInt(t *testing.T, info, field string) int64 {
	t.Helper()
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", field, v)
			}
			return n
		}
	}
	t.Fatalf("no %s in %q", field, info)
	return 0
}

func mustInt(t *testing.T, r string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(r, ":")), 10, 64)
	if err != nil || !strings.HasPrefix(r, ":") {
		t.Fatalf("not an integer reply: %q", r)
	}
	return n
}
