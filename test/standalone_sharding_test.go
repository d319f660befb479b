package test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestStandaloneKeySpread writes 3000 keys through jupiter and checks on the
// nodes themselves that every key lives on exactly one node, that every node
// got a fair share, and that DBSIZE through jupiter is the sum of the nodes.
func TestStandaloneKeySpread(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	const n = 3000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("spread:%d", i)
	}
	for lo := 0; lo < n; lo += 500 {
		if _, err := e.j.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys[lo : lo+500] {
				p.Set(ctx, k, "v:"+k, 0)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	own := e.owners(t, keys) // fails unless each key is on exactly one node
	count := make([]int, len(e.nodes))
	for _, o := range own {
		count[o]++
	}
	for i, c := range count {
		if c*5 <= n { // > 20% each
			t.Errorf("node %s holds %d of %d keys (%.1f%%), want > 20%%: %v", e.c.Redis[i].Addr, c, n, 100*float64(c)/n, count)
		}
	}
	// The value on the owner is the one written (not just the key).
	for i := 0; i < n; i += 149 {
		if v, err := e.nodes[own[i]].Get(ctx, keys[i]).Result(); err != nil || v != "v:"+keys[i] {
			t.Errorf("node %d: GET %s = %q, %v", own[i], keys[i], v, err)
		}
	}
	sizes := e.dbsizes(t)
	var sum int64
	for i, s := range sizes {
		sum += s
		if s != int64(count[i]) {
			t.Errorf("node %d DBSIZE %d, but %d keys found on it", i, s, count[i])
		}
	}
	got, err := e.j.DBSize(ctx).Result()
	if err != nil || got != n || sum != n {
		t.Errorf("DBSIZE through jupiter = %d (%v), nodes sum %d, written %d", got, err, sum, n)
	}
	// The same key always routes to the same node: a second connection reads
	// back every key.
	other := newClient(t, e.c.Jupiter.Addr)
	cmds, err := other.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Get(ctx, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		if v := c.(*redis.StringCmd).Val(); v != "v:"+keys[i] {
			t.Fatalf("GET %s from a second client = %q", keys[i], v)
		}
	}
}

// TestStandaloneHashTags checks the {tag} rule and the cross-node check for
// multi-key commands that must run on one node.
func TestStandaloneHashTags(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	c := e.j

	t.Run("TagColocates", func(t *testing.T) {
		tagNodes := map[int]bool{}
		for tag := 0; tag < 12; tag++ {
			var keys []string
			for i := 0; i < 6; i++ {
				k := fmt.Sprintf("pre%d:{user%d}:field%d", i, tag, i)
				keys = append(keys, k)
				if err := c.Set(ctx, k, i, 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			own := e.owners(t, keys)
			for i, o := range own {
				if o != own[0] {
					t.Errorf("%s on node %d but %s on node %d", keys[i], o, keys[0], own[0])
				}
			}
			// The bare tag hashes like every key carrying it.
			bare := fmt.Sprintf("user%d", tag)
			c.Set(ctx, bare, 1, 0)
			if o := e.owner(t, bare); o != own[0] {
				t.Errorf("key %q on node %d, {%s} keys on node %d", bare, o, bare, own[0])
			}
			tagNodes[own[0]] = true
		}
		if len(tagNodes) < 2 {
			t.Errorf("12 different tags all landed on one node: tags are not hashed")
		}
	})

	// Two keys with no tag on different nodes, and a tag for keys on one node.
	// Case i uses ka(i) on node 0 and kb(i) on node 1.
	spread := e.keysPerNode(t, "tag:x:", 6)
	ka := func(i int) string { return spread[0][i] }
	kb := func(i int) string { return spread[1][i] }
	type step struct {
		args []any
		want any // string, int64, or []any
	}
	for _, tc := range []struct {
		name  string
		setup [][]any
		tag   []step   // with {t} keys: must work
		cross [][]any  // same command with keys on two nodes: CROSSSLOT
		keep  []string // keys the refused cross-node command must leave as they were
	}{
		{
			name:  "RENAME",
			setup: [][]any{{"SET", "{t}:r1", "v"}, {"SET", ka(0), "va"}},
			tag:   []step{{[]any{"RENAME", "{t}:r1", "{t}:r2"}, "OK"}, {[]any{"GET", "{t}:r2"}, "v"}, {[]any{"EXISTS", "{t}:r1"}, int64(0)}},
			cross: [][]any{{"RENAME", ka(0), kb(0)}},
			keep:  []string{ka(0)},
		},
		{
			name:  "SMOVE",
			setup: [][]any{{"SADD", "{t}:s1", "m"}, {"SADD", ka(1), "m"}},
			tag:   []step{{[]any{"SMOVE", "{t}:s1", "{t}:s2", "m"}, int64(1)}, {[]any{"SISMEMBER", "{t}:s2", "m"}, int64(1)}},
			cross: [][]any{{"SMOVE", ka(1), kb(1), "m"}},
			keep:  []string{ka(1)},
		},
		{
			name:  "SUNIONSTORE",
			setup: [][]any{{"SADD", "{t}:u1", "a", "b"}, {"SADD", "{t}:u2", "b", "c"}, {"SADD", ka(2), "a"}, {"SADD", kb(2), "b"}},
			tag:   []step{{[]any{"SUNIONSTORE", "{t}:u3", "{t}:u1", "{t}:u2"}, int64(3)}, {[]any{"SCARD", "{t}:u3"}, int64(3)}},
			cross: [][]any{{"SUNIONSTORE", ka(2), ka(2), kb(2)}, {"SUNION", ka(2), kb(2)}},
			keep:  []string{ka(2)},
		},
		{
			name: "EVAL",
			tag: []step{{[]any{"EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SET', KEYS[2], ARGV[1])",
				"2", "{t}:e1", "{t}:e2", "ev"}, "OK"}, {[]any{"MGET", "{t}:e1", "{t}:e2"}, []any{"ev", "ev"}}},
			setup: [][]any{{"SET", ka(3), "before"}},
			cross: [][]any{{"EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "2", ka(3), kb(3), "boom"}},
			keep:  []string{ka(3)},
		},
		{
			name:  "MSETNX",
			tag:   []step{{[]any{"MSETNX", "{t}:n1", "1", "{t}:n2", "2"}, int64(1)}, {[]any{"MGET", "{t}:n1", "{t}:n2"}, []any{"1", "2"}}},
			cross: [][]any{{"MSETNX", ka(4), "1", kb(4), "2"}},
		},
		{
			name:  "LMOVE",
			setup: [][]any{{"RPUSH", "{t}:l1", "x"}, {"RPUSH", ka(5), "y"}},
			tag:   []step{{[]any{"LMOVE", "{t}:l1", "{t}:l2", "LEFT", "RIGHT"}, "x"}, {[]any{"LLEN", "{t}:l2"}, int64(1)}},
			cross: [][]any{{"LMOVE", ka(5), kb(5), "LEFT", "RIGHT"}},
			keep:  []string{ka(5)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.setup {
				if err := c.Do(ctx, s...).Err(); err != nil {
					t.Fatalf("%v: %v", s, err)
				}
			}
			before := map[string]string{}
			for _, k := range tc.keep {
				before[k] = dump(t, e, k)
			}
			for _, s := range tc.tag {
				got, err := c.Do(ctx, s.args...).Result()
				if err != nil {
					t.Fatalf("%v: %v", s.args, err)
				}
				if fmt.Sprint(got) != fmt.Sprint(s.want) {
					t.Errorf("%v = %v, want %v", s.args, got, s.want)
				}
			}
			for _, args := range tc.cross {
				err := c.Do(ctx, args...).Err()
				if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
					t.Errorf("%v with keys on two nodes: err = %v, want CROSSSLOT", args, err)
				}
			}
			for _, k := range tc.keep {
				if got := dump(t, e, k); got != before[k] {
					t.Errorf("refused cross-node %s changed %s: %q -> %q", tc.name, k, before[k], got)
				}
			}
		})
	}
	// Keys found by keyword (STORE) or after options: each command works with
	// tagged keys and is refused when its source and destination are on two
	// nodes, without creating the destination anywhere.
	t.Run("KeywordKeys", func(t *testing.T) {
		kw := e.keysPerNode(t, "tag:kw:", 6)
		src := func(i int) string { return kw[0][i] } // node 0
		dst := func(i int) string { return kw[1][i] } // node 1
		for _, s := range [][]any{
			{"GEOADD", "{t}:geo", "13.361389", "38.115556", "Palermo"},
			{"RPUSH", "{t}:sortme", "3", "1", "2"},
			{"GEOADD", src(0), "13.361389", "38.115556", "Palermo"},
			{"GEOADD", src(1), "13.361389", "38.115556", "Palermo"},
			{"RPUSH", src(2), "2", "1"},
			{"SET", src(3), "v"},
			{"ZADD", src(4), "1", "m"},
			{"SET", src(5), "bits"},
		} {
			if err := c.Do(ctx, s...).Err(); err != nil {
				t.Fatalf("%v: %v", s, err)
			}
		}
		for _, tc := range []struct {
			tagged []any
			want   string
			cross  []any
		}{
			{[]any{"GEORADIUS", "{t}:geo", "13", "38", "200", "km", "STORE", "{t}:geo2"}, "1",
				[]any{"GEORADIUS", src(0), "13", "38", "200", "km", "STORE", dst(0)}},
			{[]any{"GEOSEARCHSTORE", "{t}:geo3", "{t}:geo", "FROMLONLAT", "13", "38", "BYRADIUS", "200", "km"}, "1",
				[]any{"GEOSEARCHSTORE", dst(1), src(1), "FROMLONLAT", "13", "38", "BYRADIUS", "200", "km"}},
			{[]any{"SORT", "{t}:sortme", "STORE", "{t}:sorted"}, "3",
				[]any{"SORT", src(2), "STORE", dst(2)}},
			{[]any{"COPY", "{t}:sortme", "{t}:copy"}, "1",
				[]any{"COPY", src(3), dst(3)}},
			{[]any{"ZRANGESTORE", "{t}:z2", "{t}:z1", "0", "-1"}, "0",
				[]any{"ZRANGESTORE", dst(4), src(4), "0", "-1"}},
			{[]any{"BITOP", "OR", "{t}:bits", "{t}:none1", "{t}:none2"}, "0",
				[]any{"BITOP", "OR", dst(5), src(5)}},
		} {
			got, err := c.Do(ctx, tc.tagged...).Result()
			if err != nil || fmt.Sprint(got) != tc.want {
				t.Errorf("%v = %v, %v; want %s", tc.tagged, got, err, tc.want)
			}
			if err := c.Do(ctx, tc.cross...).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
				t.Errorf("%v with keys on two nodes: err = %v, want CROSSSLOT", tc.cross, err)
			}
		}
		for i := range kw[1] {
			for n, nc := range e.nodes {
				if x, _ := nc.Exists(ctx, dst(i)).Result(); x != 0 {
					t.Errorf("node %d holds %s, the destination of a refused command", n, dst(i))
				}
			}
		}
	})

	// MSETNX refused across nodes must not have written either key.
	if n, _ := c.Exists(ctx, ka(4), kb(4)).Result(); n != 0 {
		t.Errorf("refused cross-node MSETNX wrote %d keys", n)
	}
}

// dump returns DUMP of key through jupiter ("" when missing), to compare a
// key before and after a refused command.
func dump(t *testing.T, e *env, key string) string {
	t.Helper()
	v, err := e.j.Dump(ctxT(t), key).Result()
	if err == redis.Nil {
		return ""
	}
	if err != nil {
		t.Fatalf("DUMP %s: %v", key, err)
	}
	return v
}

// TestStandaloneHashOverride checks the trailing hash=<key> argument: it
// routes by <key>, is removed before forwarding, and makes keyless and
// multi-key commands go whole to that key's node.
func TestStandaloneHashOverride(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	c := e.j
	spread := e.keysPerNode(t, "ho:", 4)
	h := spread[0][0] // the hash key, on node 0
	if err := c.Set(ctx, h, "hv", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if o := e.owner(t, h); o != 0 {
		t.Fatalf("%s moved to node %d", h, o)
	}

	t.Run("SET", func(t *testing.T) {
		for _, k := range []string{spread[1][0], spread[2][0]} { // natively on nodes 1 and 2
			if got, err := c.Do(ctx, "SET", k, "v", "hash="+h).Result(); err != nil || got != "OK" {
				t.Fatalf("SET %s v hash=%s = %v, %v", k, h, got, err)
			}
			if o := e.owner(t, k); o != 0 {
				t.Errorf("SET %s … hash=%s stored it on node %d, want %s's node 0", k, h, o, h)
			}
			if v, err := e.nodes[0].Get(ctx, k).Result(); err != nil || v != "v" {
				t.Errorf("node 0: GET %s = %q, %v; want the value \"v\", without hash=", k, v, err)
			}
			// Read back with the same override; without it, the key's own node has nothing.
			if v, err := c.Do(ctx, "GET", k, "hash="+h).Text(); err != nil || v != "v" {
				t.Errorf("GET %s hash=%s = %q, %v", k, h, v, err)
			}
			if err := c.Get(ctx, k).Err(); err != redis.Nil {
				t.Errorf("GET %s without hash= = %v, want nil (routed to its own node)", k, err)
			}
		}
		// No backend got a key or value containing the override itself.
		for n, nc := range e.nodes {
			keys, err := nc.Keys(ctx, "*").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if strings.Contains(k, "hash=") {
					t.Errorf("node %d has key %q", n, k)
				}
				if v, err := nc.Get(ctx, k).Result(); err == nil && strings.Contains(v, "hash=") {
					t.Errorf("node %d: %s = %q", n, k, v)
				}
			}
		}
	})

	t.Run("PinsMultiKeyCommands", func(t *testing.T) {
		// Keys natively on nodes 1 and 2: refused as cross-node without an
		// override, run whole on h's node 0 with one.
		k1, k2 := spread[1][1], spread[2][1]
		script := "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SET', KEYS[2], ARGV[1])"
		if err := c.Do(ctx, "EVAL", script, "2", k1, k2, "pinned").Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Errorf("EVAL over nodes 1 and 2: err = %v, want CROSSSLOT", err)
		}
		if err := c.Do(ctx, "EVAL", script, "2", k1, k2, "pinned", "hash="+h).Err(); err != nil {
			t.Fatalf("EVAL … hash=%s: %v", h, err)
		}
		if n, _ := e.nodes[0].Exists(ctx, k1, k2).Result(); n != 2 {
			t.Errorf("EVAL … hash=: node 0 holds %d of its 2 keys", n)
		}
		if err := c.Do(ctx, "RENAME", k1, k2, "hash="+h).Err(); err != nil {
			t.Errorf("RENAME … hash=%s: %v", h, err)
		}
		if v, _ := e.nodes[0].Get(ctx, k2).Result(); v != "pinned" {
			t.Errorf("after RENAME … hash=: node 0 %s = %q", k2, v)
		}
		// A value that merely looks like an override, where the command
		// would be too short without it, is stored as a value.
		if err := c.Do(ctx, "SET", "ho:looks", "hash=like").Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx, "ho:looks").Result(); err != nil || v != "hash=like" {
			t.Errorf("SET ho:looks hash=like then GET = %q, %v", v, err)
		}
		c.Del(ctx, "ho:looks")
	})

	t.Run("PING", func(t *testing.T) {
		// PING hash=k is forwarded to k's node: only that node counts the PINGs.
		const n = 40
		before := pingCounts(t, e)
		for i := 0; i < n; i++ {
			if got, err := c.Do(ctx, "PING", "hash="+h).Text(); err != nil || got != "PONG" {
				t.Fatalf("PING hash=%s = %q, %v", h, got, err)
			}
		}
		if got, err := c.Do(ctx, "PING", "msg", "hash="+spread[2][0]).Text(); err != nil || got != "msg" {
			t.Fatalf("PING msg hash=… = %q, %v", got, err)
		}
		after := pingCounts(t, e)
		if d := after[0] - before[0]; d < n {
			t.Errorf("node 0 (owner of %s) saw %d PINGs, want >= %d", h, d, n)
		}
		if d := after[1] - before[1]; d >= n {
			t.Errorf("node 1 saw %d PINGs: PING hash= went to the wrong node", d)
		}
		if d := after[2] - before[2]; d < 1 {
			t.Errorf("node 2 saw no PING for PING msg hash=<key on node 2>")
		}
		// A plain PING is answered by jupiter itself.
		before = pingCounts(t, e)
		for i := 0; i < n; i++ {
			c.Ping(ctx)
		}
		after = pingCounts(t, e)
		for i := range after {
			if d := after[i] - before[i]; d >= n {
				t.Errorf("plain PING reached node %d (%d times), want it answered locally", i, d)
			}
		}
	})

	t.Run("SCAN", func(t *testing.T) {
		var all []string
		for i := 0; i < 300; i++ {
			all = append(all, fmt.Sprintf("xscan:%d", i))
		}
		for _, k := range all {
			c.Set(ctx, k, 1, 0)
		}
		own := e.owners(t, all)
		var want []string
		for i, k := range all {
			if own[i] == 0 {
				want = append(want, k)
			}
		}
		var got []string
		cursor := "0"
		for rounds := 0; ; rounds++ {
			res, err := c.Do(ctx, "SCAN", cursor, "MATCH", "xscan:*", "COUNT", "1000", "hash="+h).Slice()
			if err != nil {
				t.Fatalf("SCAN … hash=: %v", err)
			}
			cursor = res[0].(string)
			for _, k := range res[1].([]any) {
				got = append(got, k.(string))
			}
			if cursor == "0" || rounds > 100 {
				break
			}
		}
		slices.Sort(got)
		got = slices.Compact(got) // Redis may repeat a key across a rehash
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("SCAN MATCH xscan:* hash=%s returned %d keys, node 0 holds %d xscan keys (of %d)",
				h, len(got), len(want), len(all))
		}
	})

	t.Run("MGET", func(t *testing.T) {
		// Keys on 3 nodes, each holding a value on its own node; with hash=
		// the MGET goes whole to node 0, so only node 0's keys have values.
		var keys []string
		for n := range spread {
			k := spread[n][2]
			keys = append(keys, k)
			if err := c.Set(ctx, k, fmt.Sprint("n", n), 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		got, err := c.Do(ctx, append([]any{"MGET"}, append(anys(keys), "hash="+h)...)...).Slice()
		if err != nil {
			t.Fatal(err)
		}
		want := []any{"n0", nil, nil}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("MGET %v hash=%s = %v, want %v (whole command on node 0)", keys, h, got, want)
		}
		// Without hash= the same MGET is split and merged.
		got, err = c.MGet(ctx, keys...).Result()
		if err != nil || fmt.Sprint(got) != "[n0 n1 n2]" {
			t.Errorf("MGET %v = %v, %v", keys, got, err)
		}
		// MSET with hash= stores every pair on node 0 too.
		if err := c.Do(ctx, "MSET", spread[1][3], "a", spread[2][3], "b", "hash="+h).Err(); err != nil {
			t.Fatal(err)
		}
		if n, _ := e.nodes[0].Exists(ctx, spread[1][3], spread[2][3]).Result(); n != 2 {
			t.Errorf("MSET … hash=: node 0 holds %d of the 2 keys", n)
		}
	})
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// pingCounts returns cmdstat_ping calls of every node.
func pingCounts(t *testing.T, e *env) []int64 {
	t.Helper()
	ctx := ctxT(t)
	out := make([]int64, len(e.nodes))
	for i, nc := range e.nodes {
		info, err := nc.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(l, "cmdstat_ping:calls="); ok {
				fmt.Sscanf(rest, "%d", &out[i])
			}
		}
	}
	return out
}

// TestStandaloneBinarySafe stores keys and values holding every byte value,
// CRLF included, and 1 MiB values, and reads them back byte-exact, one by
// one, with MGET across nodes, and directly on the nodes.
func TestStandaloneBinarySafe(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	c := e.j
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	rng := rand.New(rand.NewPCG(1, 2))

	t.Run("AllBytes", func(t *testing.T) {
		var keys, vals []string
		for i := 0; i < 30; i++ {
			k := fmt.Sprintf("bin:%d:", i) + string(all) + "\r\n*1\r\n$3\r\n"
			v := "\r\n" + string(all[i:]) + string(all[:i]) + "\x00\r\n-ERR not an error\r\n"
			keys, vals = append(keys, k), append(vals, v)
			if err := c.Set(ctx, k, v, 0).Err(); err != nil {
				t.Fatalf("SET binary key %d: %v", i, err)
			}
		}
		for i, k := range keys {
			if got, err := c.Get(ctx, k).Result(); err != nil || got != vals[i] {
				t.Errorf("GET binary key %d: %q, %v", i, got, err)
			}
		}
		own := e.owners(t, keys) // the exact key bytes exist on exactly one node
		for i, k := range keys {
			if got, _ := e.nodes[own[i]].Get(ctx, k).Result(); got != vals[i] {
				t.Errorf("node %d holds binary key %d with value %q", own[i], i, got)
			}
		}
		got, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if got[i] != vals[i] {
				t.Errorf("MGET binary [%d] = %q", i, got[i])
			}
		}
		if n, err := c.Del(ctx, keys...).Result(); err != nil || n != int64(len(keys)) {
			t.Errorf("DEL binary keys = %d, %v", n, err)
		}
	})

	t.Run("OneMiB", func(t *testing.T) {
		spread := e.keysPerNode(t, "big:", 2)
		var keys []string
		vals := map[string][]byte{}
		for n := range spread {
			for _, k := range spread[n] {
				v := make([]byte, 1<<20)
				for i := range v {
					v[i] = byte(rng.Uint32())
				}
				copy(v[100:], "\r\n$5\r\nhello\r\n") // RESP-looking bytes inside
				keys = append(keys, k)
				vals[k] = v
				if err := c.Set(ctx, k, v, 0).Err(); err != nil {
					t.Fatalf("SET 1 MiB: %v", err)
				}
			}
		}
		for _, k := range keys {
			got, err := c.Get(ctx, k).Bytes()
			if err != nil || !bytes.Equal(got, vals[k]) {
				t.Errorf("GET 1 MiB %s: %d bytes, equal=%v, %v", k, len(got), bytes.Equal(got, vals[k]), err)
			}
		}
		// MGET of 1 MiB values on every node, with a missing key between.
		ask := append(slices.Clone(keys[:3]), "big:missing")
		ask = append(ask, keys[3:]...)
		got, err := c.MGet(ctx, ask...).Result()
		if err != nil || len(got) != len(ask) {
			t.Fatalf("MGET 1 MiB values: %d, %v", len(got), err)
		}
		for i, k := range ask {
			if k == "big:missing" {
				if got[i] != nil {
					t.Errorf("MGET [%d] missing key = %d bytes", i, len(fmt.Sprint(got[i])))
				}
				continue
			}
			if s, _ := got[i].(string); s != string(vals[k]) {
				t.Errorf("MGET [%d] %s: %d bytes, not byte-exact", i, k, len(s))
			}
		}
		// A pipeline of big SETs and GETs keeps the order and the bytes.
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				p.Append(ctx, k, "!")
				p.Get(ctx, keys[(i+1)%len(keys)])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if n := cmds[2*i].(*redis.IntCmd).Val(); n != 1<<20+1 {
				t.Errorf("APPEND %d = %d", i, n)
			}
			next := keys[(i+1)%len(keys)]
			want := string(vals[next])
			if (i+1)%len(keys) <= i {
				want += "!"
			}
			if got := cmds[2*i+1].(*redis.StringCmd).Val(); got != want {
				t.Errorf("pipelined GET %s: %d bytes, want %d", next, len(got), len(want))
			}
		}
	})
}
