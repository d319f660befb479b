package rebalance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/backend"
)

// value renders a key's type and content canonically (unordered types
// sorted), so the same logical value compares equal on two nodes.
func value(tb testing.TB, c *redis.Client, key string) string {
	tb.Helper()
	ctx := context.Background()
	typ := must[string](tb)(c.Type(ctx, key).Result())
	var v any
	var err error
	switch typ {
	case "none":
		return "none"
	case "string":
		v, err = c.Get(ctx, key).Result()
	case "hash":
		var m map[string]string
		m, err = c.HGetAll(ctx, key).Result()
		var kv []string
		for k, x := range m {
			kv = append(kv, k+"="+x)
		}
		slices.Sort(kv)
		v = kv
	case "list":
		v, err = c.LRange(ctx, key, 0, -1).Result()
	case "set":
		var s []string
		s, err = c.SMembers(ctx, key).Result()
		slices.Sort(s)
		v = s
	case "zset":
		v, err = c.ZRangeWithScores(ctx, key, 0, -1).Result()
	case "stream":
		var xs []redis.XMessage
		xs, err = c.XRange(ctx, key, "-", "+").Result()
		if err == nil {
			var groups []redis.XInfoGroup
			groups, err = c.XInfoGroups(ctx, key).Result()
			v = fmt.Sprint(xs, groups)
		}
	default:
		tb.Fatalf("type %s", typ)
	}
	if err != nil {
		tb.Fatalf("read %q: %v", key, err)
	}
	return typ + ":" + fmt.Sprint(v)
}

func pttl(tb testing.TB, c *redis.Client, key string) int64 {
	tb.Helper()
	return do(tb, c, "PTTL", key).(int64)
}

// fillTypes writes one key of every type (and the TTL, binary and size
// variants) to c and returns their names.
func fillTypes(tb testing.TB, c *redis.Client, prefix string) []string {
	tb.Helper()
	ctx := context.Background()
	k := func(s string) string { return prefix + s }
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(rand.IntN(256))
	}
	p := c.Pipeline()
	p.Set(ctx, k("string"), "hello", 0)
	p.Set(ctx, k("int"), 12345, 0)
	p.HSet(ctx, k("hash"), "a", "1", "b", "2", "c", "3")
	for i := range 600 { // hashtable encoding
		p.HSet(ctx, k("bighash"), fmt.Sprint("f", i), strings.Repeat("x", i%70))
	}
	p.RPush(ctx, k("list"), "a", "b", "c", "a")
	p.SAdd(ctx, k("set"), "x", "y", "z")
	p.SAdd(ctx, k("intset"), 1, 2, 3)
	p.ZAdd(ctx, k("zset"), redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: -2, Member: "b"})
	p.XAdd(ctx, &redis.XAddArgs{Stream: k("stream"), ID: "1-1", Values: []any{"f", "v1"}})
	p.XAdd(ctx, &redis.XAddArgs{Stream: k("stream"), ID: "2-1", Values: []any{"f", "v2", "g", "w"}})
	p.XGroupCreate(ctx, k("stream"), "grp", "0")
	p.Set(ctx, k("ttl"), "expiring", 90*time.Second)
	p.HSet(ctx, k("hashttl"), "a", "1")
	p.PExpire(ctx, k("hashttl"), 5*time.Second)
	p.Set(ctx, k("nottl"), "forever", 0)
	p.Set(ctx, k("bin\x00\xff\r\n key"), "\x00\x01binary\xff", 0)
	p.Set(ctx, k("big"), big, 0)
	if _, err := p.Exec(ctx); err != nil {
		tb.Fatal(err)
	}
	names := []string{"string", "int", "hash", "bighash", "list", "set", "intset", "zset", "stream",
		"ttl", "hashttl", "nottl", "bin\x00\xff\r\n key", "big"}
	for i := range names {
		names[i] = k(names[i])
	}
	return names
}

// checkMoved asserts that each key is now on new with its old value and
// TTL (±50 ms, never longer), gone from old, and marked on new.
func checkMoved(t *testing.T, old, new *redis.Client, epoch uint64, keys []string, want map[string]string, ttls map[string]int64, t0 time.Time) {
	t.Helper()
	elapsed := time.Since(t0).Milliseconds()
	for _, k := range keys {
		if exists(t, old, k) {
			t.Errorf("%q still on old", k)
		}
		if got := value(t, new, k); got != want[k] {
			t.Errorf("%q on new: %.80s, want %.80s", k, got, want[k])
		}
		got := pttl(t, new, k)
		switch before := ttls[k]; {
		case before == -1 && got != -1:
			t.Errorf("%q: PTTL %d on new, want -1 (no expiry)", k, got)
		case before >= 0 && (got > before || got < before-elapsed-50):
			t.Errorf("%q: PTTL %d on new, was %d on old %d ms ago", k, got, before, elapsed)
		}
		if !exists(t, new, string(MarkerKey(epoch, []byte(k)))) {
			t.Errorf("%q: no marker on new", k)
		}
	}
}

func TestMoveEveryType(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 20*time.Second)
	for _, mode := range []string{"single", "batch"} {
		t.Run(mode, func(t *testing.T) {
			keys := fillTypes(t, old, mode+":")
			want, ttls := map[string]string{}, map[string]int64{}
			// The TTL bound counts from before the first PTTL read: reading
			// every value (one is 1 MiB) takes a while on a loaded machine.
			t0 := time.Now()
			for _, k := range keys {
				want[k], ttls[k] = value(t, old, k), pttl(t, old, k)
			}
			m := &Mover{Old: old, New: new, Epoch: 3}
			if mode == "single" {
				for _, k := range keys {
					if res, err := m.Move(ctx, []byte(k)); err != nil || res != Moved {
						t.Fatalf("Move(%q) = %v, %v", k, res, err)
					}
				}
			} else {
				m.BatchKeys, m.BatchBytes = 5, 64<<10 // force several chunks and restore pipelines
				bk := make([][]byte, len(keys))
				for i, k := range keys {
					bk[i] = []byte(k)
				}
				out, err := m.MoveBatch(ctx, bk)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range out {
					if o.Result != Moved || o.Err != nil {
						t.Errorf("%q: %v, %v", o.Key, o.Result, o.Err)
					}
					if string(o.Key) == mode+":big" && o.Bytes < 1<<20 {
						t.Errorf("big key payload %d bytes", o.Bytes)
					}
				}
			}
			checkMoved(t, old, new, 3, keys, want, ttls, t0)
			// Moving again finds nothing on old.
			for _, k := range keys[:3] {
				if res, err := m.Move(ctx, []byte(k)); err != nil || res != Missing {
					t.Errorf("second Move(%q) = %v, %v; want missing", k, res, err)
				}
			}
		})
	}
}

func TestMoveMissing(t *testing.T) {
	ns := startNodes(t, 2)
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: ns[0].c, New: ns[1].c, Epoch: 1}
	res, err := m.Move(ctx, []byte("nope"))
	if err != nil || res != Missing {
		t.Fatalf("Move = %v, %v", res, err)
	}
	if n := dbsize(t, ns[1].c); n != 0 {
		t.Errorf("new has %d keys after moving a missing key", n)
	}
}

func TestMoveAlreadyOnNew(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: old, New: new, Epoch: 1}
	do(t, old, "SET", "k", "old")
	do(t, new, "SET", "k", "newer")
	if res, err := m.Move(ctx, []byte("k")); err != nil || res != AlreadyOnNew {
		t.Fatalf("Move = %v, %v", res, err)
	}
	if v := do(t, new, "GET", "k"); v != "newer" {
		t.Errorf("new's value %v, want the newer write", v)
	}
	if exists(t, old, "k") {
		t.Error("old's stale copy was not unlinked")
	}
	// A marker alone (a delete on new) also refuses the restore.
	do(t, old, "SET", "d", "old")
	do(t, new, SetMarkerCommand(1, []byte("d"), time.Minute).args()...)
	if res, err := m.Move(ctx, []byte("d")); err != nil || res != AlreadyOnNew {
		t.Fatalf("Move(marked) = %v, %v", res, err)
	}
	if exists(t, new, "d") || exists(t, old, "d") {
		t.Error("a marked (deleted) key was restored or left on old")
	}
	// A marker of another epoch does not count.
	do(t, old, "SET", "e", "old")
	do(t, new, SetMarkerCommand(2, []byte("e"), time.Minute).args()...)
	if res, err := m.Move(ctx, []byte("e")); err != nil || res != Moved {
		t.Fatalf("Move(other epoch's marker) = %v, %v", res, err)
	}
}

func TestMoveExpiredDuringMove(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	do(t, old, "SET", "k", "v", "PX", "30")
	m := &Mover{Old: old, New: new, Epoch: 1, beforeRestore: func() { time.Sleep(40 * time.Millisecond) }}
	if res, err := m.Move(ctx, []byte("k")); err != nil || res != Expired {
		t.Fatalf("Move = %v, %v; want expired", res, err)
	}
	if dbsize(t, new) != 0 || exists(t, old, "k") {
		t.Error("an expired key was restored or left on old")
	}
}

func TestMoveNoScript(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: old, New: new, Epoch: 1}
	for i := range 3 {
		k := fmt.Sprint("k", i)
		do(t, old, "SET", k, "v")
		do(t, new, "SCRIPT", "FLUSH") // what a failover or restart does
		if res, err := m.Move(ctx, []byte(k)); err != nil || res != Moved {
			t.Fatalf("Move after SCRIPT FLUSH = %v, %v", res, err)
		}
	}
	// Batch: every EVALSHA in the pipeline gets NOSCRIPT; all are retried.
	var keys [][]byte
	for i := range 50 {
		k := fmt.Sprint("b", i)
		do(t, old, "SET", k, i)
		keys = append(keys, []byte(k))
	}
	do(t, new, "SCRIPT", "FLUSH")
	out, err := m.MoveBatch(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Result != Moved || o.Err != nil {
			t.Fatalf("%s: %v %v", o.Key, o.Result, o.Err)
		}
	}
	if err := LoadScript(ctx, new); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreScriptBatchCheck: the script's one EXISTS over the whole call
// must not change a single key's verdict: a key already on new, a marker
// (tombstone), a key named twice in one call and fresh keys, in one call.
func TestRestoreScriptBatchCheck(t *testing.T) {
	ns := startNodes(t, 2)
	ctx := tctx(t, 10*time.Second)
	do(t, ns[0].c, "SET", "src", "v")
	payload, err := ns[0].c.Dump(ctx, "src").Result()
	if err != nil {
		t.Fatal(err)
	}
	p := []byte(payload)
	if err := LoadScript(ctx, ns[1].c); err != nil {
		t.Fatal(err)
	}
	do(t, ns[1].c, "SET", "busy", "newer")
	do(t, ns[1].c, "SET", string(MarkerKey(1, []byte("gone"))), "1")
	rs := []Restore{{Key: []byte("fresh1"), Payload: p}, {Key: []byte("busy"), Payload: p},
		{Key: []byte("twice"), Payload: p, Place: []byte("X")}, {Key: []byte("gone"), Payload: p},
		{Key: []byte("twice"), Payload: p}, {Key: []byte("fresh2"), Payload: p}}
	got := do(t, ns[1].c, RestoreCommand(1, time.Hour, rs...).args()...)
	want := []any{int64(1), int64(0), int64(1), int64(0), int64(0), int64(1)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restore script = %v, want %v", got, want)
	}
	for k, v := range map[string]string{"fresh1": "v", "fresh2": "v", "twice": "v", "busy": "newer",
		string(PlaceKey([]byte("twice"))): "X"} {
		if s, err := ns[1].c.Get(ctx, k).Result(); err != nil || s != v {
			t.Errorf("%q = %q, %v; want %q", k, s, err, v)
		}
	}
	if exists(t, ns[1].c, "gone") {
		t.Error("a key with a tombstone was restored")
	}
	// The per-key path (something exists) and the fast path (nothing does)
	// give the same answers for fresh keys.
	got = do(t, ns[1].c, RestoreCommand(1, time.Hour, Restore{Key: []byte("fresh3"), Payload: p},
		Restore{Key: []byte("fresh4"), Payload: p}).args()...)
	if !reflect.DeepEqual(got, []any{int64(1), int64(1)}) {
		t.Fatalf("fresh keys: %v", got)
	}
}

func TestRestoreErrorsClassified(t *testing.T) {
	ns := startNodes(t, 2)
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: ns[0].c, New: ns[1].c, Epoch: 1}
	if err := LoadScript(ctx, ns[1].c); err != nil {
		t.Fatal(err)
	}
	raw := rawPoolFor(ns[1].c)
	defer raw.close()
	for name, w := range map[string]wire{"go-redis": clientWire{ns[1].c}, "raw": raw} {
		out := []Outcome{{Key: []byte("k")}}
		// A corrupt payload is what a newer-version DUMP looks like to an older server.
		snaps := []snapshot{{payload: []byte("\x00\x03abc\x0b\x00garbage!"), pttl: -1}}
		if _, err := m.restore(ctx, w, out, snaps, []int{0}, time.Now()); err != nil {
			t.Fatal(name, err)
		}
		if !errors.Is(out[0].Err, ErrPayloadVersion) || out[0].Result != Failed {
			t.Fatalf("%s: restore of a bad payload: %v, %v; want ErrPayloadVersion", name, out[0].Result, out[0].Err)
		}
		if exists(t, ns[1].c, string(MarkerKey(1, []byte("k")))) {
			t.Errorf("%s: a failed restore left a marker", name)
		}
	}
}

// TestRaceR3: the mover snapshots v1, a client deletes the key (marker on
// new, then UNLINK old), then the mover's restore runs: the key must stay
// deleted.
func TestRaceR3(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	do(t, old, "SET", "k", "v1")
	client := &Mover{Old: old, New: new, Epoch: 5}
	var existed bool
	mover := &Mover{Old: old, New: new, Epoch: 5, beforeRestore: func() {
		var err error
		if existed, err = client.DeleteMarked(ctx, []byte("k")); err != nil {
			t.Error(err)
		}
	}}
	res, err := mover.Move(ctx, []byte("k"))
	if err != nil || res != AlreadyOnNew {
		t.Fatalf("Move = %v, %v; want already-on-new (refused by the tombstone)", res, err)
	}
	if !existed {
		t.Error("DeleteMarked: the key existed on old, want existed=true")
	}
	if exists(t, new, "k") || exists(t, old, "k") {
		t.Fatal("deleted key resurrected")
	}
	r, src, err := client.ReadRule(ctx, []byte("k"), Command{[]byte("GET"), []byte("k")})
	if err != nil || string(r) != nilReply || src != FromNew {
		t.Fatalf("read after delete: %q %v %v", r, src, err)
	}
}

// TestRaceR4: a write of v2 lands on new between the mover's snapshot of
// v1 and its restore: v2 survives.
func TestRaceR4(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	do(t, old, "SET", "k", "v1", "EX", "100")
	client := &Mover{Old: old, New: new, Epoch: 5}
	mover := &Mover{Old: old, New: new, Epoch: 5, beforeRestore: func() {
		if _, err := client.WriteMarked(ctx, []byte("k"), Command{[]byte("SET"), []byte("k"), []byte("v2")}); err != nil {
			t.Error(err)
		}
	}}
	if res, err := mover.Move(ctx, []byte("k")); err != nil || res != AlreadyOnNew {
		t.Fatalf("Move = %v, %v", res, err)
	}
	if v := do(t, new, "GET", "k"); v != "v2" {
		t.Fatalf("new has %v, want v2", v)
	}
	if p := pttl(t, new, "k"); p != -1 {
		t.Errorf("v2 has PTTL %d; the older snapshot's TTL leaked", p)
	}
	if exists(t, old, "k") {
		t.Error("old still has the key")
	}
}

// TestRaceR5: the mover snapshots v1 (PX 50); the client writes v2 with PX 1
// and it expires; then the restore runs. The marker the write left must
// refuse v1.
func TestRaceR5(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	do(t, old, "SET", "k", "v1", "PX", "50")
	client := &Mover{Old: old, New: new, Epoch: 5}
	mover := &Mover{Old: old, New: new, Epoch: 5, beforeRestore: func() {
		if _, err := client.WriteMarked(ctx, []byte("k"), Command{[]byte("SET"), []byte("k"), []byte("v2"), []byte("PX"), []byte("1")}); err != nil {
			t.Error(err)
		}
		time.Sleep(5 * time.Millisecond)
		if exists(t, new, "k") {
			t.Error("v2 did not expire")
		}
	}}
	res, err := mover.Move(ctx, []byte("k"))
	if err != nil || res != AlreadyOnNew {
		t.Fatalf("Move = %v, %v; want already-on-new (refused by the marker)", res, err)
	}
	if exists(t, new, "k") || exists(t, old, "k") {
		t.Fatal("v1 resurrected after v2 expired")
	}
}

// TestRaceR7: two movers on the same 2000 keys at once: every key ends up
// on new exactly once with its value, none on old, and exactly one mover
// reports each key Moved.
func TestRaceR7(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 30*time.Second)
	const n = 2000
	keys := make([][]byte, n)
	p := old.Pipeline()
	for i := range keys {
		keys[i] = []byte(fmtKey("r7", i))
		p.Set(ctx, string(keys[i]), fmt.Sprint("v", i), time.Hour)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var moved [3][n]int
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			m := &Mover{Old: old, New: new, Epoch: 9, BatchKeys: 37 + 50*w}
			ks := slices.Clone(keys)
			if w == 1 {
				slices.Reverse(ks)
			}
			if w == 2 { // the third mover is Ensure, one key at a time (pull-through)
				for i := 0; i < n; i += 3 {
					res, err := m.Ensure(ctx, keys[i])
					if err != nil {
						t.Error(err)
						return
					}
					if res == Moved {
						moved[w][i]++
					}
				}
				return
			}
			out, err := m.MoveBatch(ctx, ks)
			if err != nil {
				t.Error(err)
				return
			}
			for _, o := range out {
				if o.Err != nil {
					t.Error(o.Err)
				}
				if o.Result == Moved {
					var i int
					fmt.Sscanf(string(o.Key), "r7:%d", &i)
					moved[w][i]++
				}
			}
		})
	}
	wg.Wait()
	for i := range n {
		if c := moved[0][i] + moved[1][i] + moved[2][i]; c != 1 {
			t.Fatalf("key %d reported Moved %d times", i, c)
		}
	}
	if d := dbsize(t, old); d != 0 {
		t.Errorf("old still has %d keys", d)
	}
	if d := dbsize(t, new); d != 2*n {
		t.Errorf("new has %d keys, want %d keys + %d markers", d, n, n)
	}
	for i := 0; i < n; i += 97 {
		if v := do(t, new, "GET", string(keys[i])); v != fmt.Sprint("v", i) {
			t.Errorf("key %d = %v", i, v)
		}
		if p := pttl(t, new, string(keys[i])); p < 3_500_000 || p > 3_600_000 {
			t.Errorf("key %d PTTL %d", i, p)
		}
	}
}

func TestEnsure(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: old, New: new, Epoch: 2}
	do(t, old, "SET", "c", "41")
	if r, err := m.Ensure(ctx, []byte("c")); err != nil || r != Moved {
		t.Fatalf("Ensure = %v, %v", r, err)
	}
	if r, err := m.Ensure(ctx, []byte("c")); err != nil || r != AlreadyOnNew {
		t.Fatalf("second Ensure = %v, %v", r, err)
	}
	// UpdateMarked = Ensure + write: INCR starts from the moved value (R8).
	do(t, old, "SET", "d", "9")
	r, err := m.UpdateMarked(ctx, []byte("d"), Command{[]byte("INCR"), []byte("d")})
	if err != nil || string(r) != ":10\r\n" {
		t.Fatalf("UpdateMarked INCR = %q, %v", r, err)
	}
	if r, err := m.Ensure(ctx, []byte("absent")); err != nil || r != Missing {
		t.Fatalf("Ensure(absent) = %v, %v", r, err)
	}
}

func TestWriteMarked(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: old, New: new, Epoch: 2, MarkerTTL: time.Hour}
	do(t, old, "SET", "k", "old")
	r, err := m.WriteMarked(ctx, []byte("k"), Command{[]byte("SET"), []byte("k"), []byte("new")})
	if err != nil || string(r) != "+OK\r\n" {
		t.Fatalf("WriteMarked = %q, %v", r, err)
	}
	if exists(t, old, "k") || do(t, new, "GET", "k") != "new" {
		t.Fatal("write did not land on new only")
	}
	mk := string(MarkerKey(2, []byte("k")))
	if p := pttl(t, new, mk); p < 3_590_000 || p > 3_600_000 {
		t.Errorf("marker PTTL %d, want ~1h", p)
	}
	// An error reply is returned as the reply, not as the error, and new
	// stays authoritative (the marker is set).
	do(t, new, "RPUSH", "l", "x")
	r, err = m.WriteMarked(ctx, []byte("l"), Command{[]byte("INCR"), []byte("l")})
	if err != nil || !strings.HasPrefix(string(r), "-WRONGTYPE ") || !strings.HasSuffix(string(r), "\r\n") {
		t.Fatalf("WriteMarked(WRONGTYPE) = %q, %v", r, err)
	}
	if !exists(t, new, string(MarkerKey(2, []byte("l")))) {
		t.Error("a write with a runtime error reply set no marker")
	}
	// A write refused when queued runs nothing (no marker) and is the reply.
	do(t, old, "SET", "q", "old")
	r, err = m.WriteMarked(ctx, []byte("q"), Command{[]byte("SET"), []byte("q")})
	if err != nil || string(r) != "-ERR wrong number of arguments for 'set' command\r\n" {
		t.Fatalf("WriteMarked(bad arity) = %q, %v", r, err)
	}
	if exists(t, new, string(MarkerKey(2, []byte("q")))) || !exists(t, old, "q") {
		t.Error("a refused write set a marker or unlinked old")
	}
	// A default marker TTL is 7 days.
	m.MarkerTTL = 0
	if _, err := m.WriteMarked(ctx, []byte("z"), Command{[]byte("SET"), []byte("z"), []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if p := pttl(t, new, string(MarkerKey(2, []byte("z")))); p < DefaultMarkerTTL.Milliseconds()-60_000 {
		t.Errorf("default marker PTTL %d", p)
	}
}

// TestMultiMarked: a multi-key command moves every key first, runs on new
// with a marker per key, and clears old; its reply is the raw RESP reply.
func TestMultiMarked(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: old, New: new, Epoch: 3}
	do(t, old, "SADD", "{s}a", "x", "y")
	do(t, old, "SADD", "{s}b", "y", "z")
	do(t, new, "SADD", "{s}c", "w") // already authoritative on new
	do(t, new, "SET", string(MarkerKey(3, []byte("{s}c"))), "1")
	keys := [][]byte{[]byte("{s}d"), []byte("{s}a"), []byte("{s}b"), []byte("{s}c")}
	r, err := m.MultiMarked(ctx, keys, Command{[]byte("SUNIONSTORE"), keys[0], keys[1], keys[2], keys[3]})
	if err != nil || string(r) != ":4\r\n" {
		t.Fatalf("SUNIONSTORE = %q, %v", r, err)
	}
	for _, k := range keys {
		if exists(t, old, string(k)) || !exists(t, new, string(MarkerKey(3, k))) {
			t.Errorf("%s: still on old, or no marker on new", k)
		}
	}
	if n := do(t, new, "SCARD", "{s}d"); n != int64(4) {
		t.Errorf("SCARD = %v", n)
	}
	// RENAME: the source becomes a tombstone, which hides a stale copy.
	do(t, old, "SET", "{r}src", "v")
	r, err = m.MultiMarked(ctx, [][]byte{[]byte("{r}src"), []byte("{r}dst")}, Command{[]byte("RENAME"), []byte("{r}src"), []byte("{r}dst")})
	if err != nil || string(r) != "+OK\r\n" {
		t.Fatalf("RENAME = %q, %v", r, err)
	}
	do(t, old, "SET", "{r}src", "stale") // a leftover a failover brought back
	if got, _, err := m.ReadRule(ctx, []byte("{r}src"), Command{[]byte("GET"), []byte("{r}src")}); err != nil || string(got) != nilReply {
		t.Errorf("read of the renamed source = %q, %v", got, err)
	}
	if got, _, _ := m.ReadRule(ctx, []byte("{r}dst"), Command{[]byte("GET"), []byte("{r}dst")}); string(got) != bulk("v") {
		t.Errorf("read of the renamed destination = %q", got)
	}
	// An error reply (RENAME of a missing key) is the reply.
	r, err = m.MultiMarked(ctx, [][]byte{[]byte("{x}a"), []byte("{x}b")}, Command{[]byte("RENAME"), []byte("{x}a"), []byte("{x}b")})
	if err != nil || string(r) != "-ERR no such key\r\n" {
		t.Fatalf("RENAME missing = %q, %v", r, err)
	}
}

func TestDeleteMarked(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: old, New: new, Epoch: 4}
	mk := func(k string) string { return string(MarkerKey(4, []byte(k))) }
	for _, tc := range []struct {
		name                 string
		onOld, onNew, marker bool
		want                 bool
	}{
		{"nowhere", false, false, false, false},
		{"old only", true, false, false, true},
		{"new only", false, true, true, true},
		{"both", true, true, true, true},
		{"old, superseded by a delete", true, false, true, false},
		{"new, no marker", false, true, false, true},
	} {
		k := strings.ReplaceAll(tc.name, " ", "_")
		if tc.onOld {
			do(t, old, "SET", k, "o")
		}
		if tc.onNew {
			do(t, new, "SET", k, "n")
		}
		if tc.marker {
			do(t, new, "SET", mk(k), "1")
		}
		got, err := m.DeleteMarked(ctx, []byte(k))
		if err != nil || got != tc.want {
			t.Errorf("%s: existed = %v, %v; want %v", tc.name, got, err, tc.want)
		}
		if exists(t, old, k) || exists(t, new, k) || !exists(t, new, mk(k)) {
			t.Errorf("%s: key left somewhere or no tombstone", tc.name)
		}
	}
}

func TestReadRule(t *testing.T) {
	ns := startNodes(t, 2)
	old, new := ns[0].c, ns[1].c
	ctx := tctx(t, 10*time.Second)
	m := &Mover{Old: old, New: new, Epoch: 6}
	get := func(k string) Command { return Command{[]byte("GET"), []byte(k)} }
	check := func(k string, want string, wantSrc Source) {
		t.Helper()
		r, src, err := m.ReadRule(ctx, []byte(k), get(k))
		if err != nil {
			t.Fatal(err)
		}
		if src != wantSrc || string(r) != want {
			t.Errorf("read %s = %q from %v; want %q from %v", k, r, src, want, wantSrc)
		}
	}
	do(t, old, "SET", "a", "old")
	check("a", bulk("old"), FromOld)
	do(t, new, "SET", "a", "new")
	check("a", bulk("new"), FromNew) // new wins when it has the key
	do(t, old, "SET", "b", "stale")
	do(t, new, "SET", string(MarkerKey(6, []byte("b"))), "1")
	check("b", nilReply, FromNew) // a tombstone hides old's stale copy
	check("c", nilReply, FromNewRecheck)
	// An error reply is a reply.
	do(t, old, "RPUSH", "l", "x")
	r, src, err := m.ReadRule(ctx, []byte("l"), get("l"))
	if err != nil || src != FromOld || string(r) != "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n" {
		t.Errorf("read of a list with GET: %q from %v, %v", r, src, err)
	}
	// A command refused when queued (wrong arity) is a reply too.
	r, _, err = m.ReadRule(ctx, []byte("a"), Command{[]byte("GET"), []byte("a"), []byte("extra")})
	if err != nil || string(r) != "-ERR wrong number of arguments for 'get' command\r\n" {
		t.Errorf("read with a bad command: %q, %v", r, err)
	}
	// R6: the key moves after the probe of new and before the probe of
	// old (the two run at once: old's waits here for new's to finish).
	do(t, old, "SET", "m", "moving")
	mover := &Mover{Old: old, New: new, Epoch: 6}
	probed := make(chan struct{})
	var once sync.Once
	m.New = execHookNode{Node: new, after: func() { once.Do(func() { close(probed) }) }}
	m.Old = hookNode{Node: old, before: func() {
		<-probed
		if _, err := mover.Move(ctx, []byte("m")); err != nil {
			t.Error(err)
		}
	}}
	check("m", bulk("moving"), FromNewRecheck)
}

// hookNode runs before() ahead of every transaction it hands out (for
// ReadRule: once per probe), to inject races between probes.
type hookNode struct {
	Node
	before func()
}

func (h hookNode) TxPipeline() redis.Pipeliner {
	h.before()
	return h.Node.TxPipeline()
}

// execHookNode runs after() once each of its transactions has run.
type execHookNode struct {
	Node
	after func()
}

func (h execHookNode) TxPipeline() redis.Pipeliner {
	return execHook{h.Node.TxPipeline(), h.after}
}

type execHook struct {
	redis.Pipeliner
	after func()
}

func (e execHook) Exec(ctx context.Context) ([]redis.Cmder, error) {
	r, err := e.Pipeliner.Exec(ctx)
	e.after()
	return r, err
}

func TestCommandsText(t *testing.T) {
	k := []byte("user:1")
	join := func(cs []Command) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.String())
		}
		return strings.Join(s, "; ")
	}
	for _, tc := range []struct{ got, want string }{
		{join(SnapshotCommands(k)), `MULTI; DUMP "user:1"; PTTL "user:1"; GET "\xff__jrb:p:user:1"; EXEC`},
		{RestoreCommand(7, time.Hour, Restore{Key: k, TTL: 1500 * time.Millisecond, Payload: []byte("P")}).String(),
			`EVALSHA "` + RestoreScriptSHA + `" "3" "user:1" "\xff__jrb:7:user:1" "\xff__jrb:p:user:1" "3600000" "1500" "P" ""`},
		{RestoreCommand(7, time.Hour, Restore{Key: k, Payload: []byte("P"), Place: []byte("g")}, Restore{Key: []byte("b"), TTL: time.Second, Payload: []byte("Q")}).String(),
			`EVALSHA "` + RestoreScriptSHA + `" "6" "user:1" "\xff__jrb:7:user:1" "\xff__jrb:p:user:1" "b" "\xff__jrb:7:b" "\xff__jrb:p:b" "3600000" "0" "P" "g" "1000" "Q" ""`},
		{EnsureCheckCommand(7, k).String(), `EXISTS "user:1" "\xff__jrb:7:user:1"`},
		{func() string {
			n, o := WriteCommands(7, k, Command{[]byte("SET"), k, []byte("v")}, 0)
			return join(n) + " | " + o.String()
		}(), `MULTI; SET "user:1" "v"; SET "\xff__jrb:7:user:1" "1" "PX" "604800000"; EXEC | UNLINK "user:1"`},
		{func() string {
			k2 := []byte("{user:1}b")
			n, o := MultiWriteCommands(7, [][]byte{k, k2}, Command{[]byte("RENAME"), k, k2}, time.Second, nil)
			return join(n) + " | " + o.String()
		}(), `MULTI; RENAME "user:1" "{user:1}b"; SET "\xff__jrb:7:user:1" "1" "PX" "1000"; SET "\xff__jrb:7:{user:1}b" "1" "PX" "1000"; EXEC | UNLINK "user:1" "{user:1}b"`},
		{func() string {
			n, o := MultiWriteCommands(7, [][]byte{k}, Command{[]byte("SET"), k, []byte("v")}, time.Second, []byte("g"))
			return join(n[:3]) + "; " + string(n[3][0]) + " " + Command(n[3][2:]).String() + "; " + join(n[4:]) + " | " + o.String()
		}(), `MULTI; SET "user:1" "v"; SET "\xff__jrb:7:user:1" "1" "PX" "1000"; EVAL 2 "user:1" "\xff__jrb:p:user:1" "g"; EXEC | UNLINK "user:1" "\xff__jrb:p:user:1"`},
		{func() string {
			n, o := DeleteCommands(7, k, time.Minute)
			return join(n) + " | " + o.String()
		}(), `MULTI; EXISTS "\xff__jrb:7:user:1"; DEL "user:1"; SET "\xff__jrb:7:user:1" "1" "PX" "60000"; EXEC | UNLINK "user:1"`},
		{func() string {
			n, o := ReadCommands(7, k, Command{[]byte("HGET"), k, []byte("f")})
			return join(n) + " | " + join(o)
		}(), `MULTI; EXISTS "user:1"; EXISTS "\xff__jrb:7:user:1"; HGET "user:1" "f"; EXEC | MULTI; EXISTS "user:1"; HGET "user:1" "f"; EXEC`},
	} {
		if tc.got != tc.want {
			t.Errorf("\n got %s\nwant %s", tc.got, tc.want)
		}
	}
}

func TestMarkers(t *testing.T) {
	k := []byte("a:\xff\x00b")
	mk := MarkerKey(42, k)
	if !IsMarker(mk) || IsMarker(k) || IsMarker([]byte("\xff__jrb")) {
		t.Error("IsMarker")
	}
	e, key, ok := ParseMarker(mk)
	if !ok || e != 42 || !bytes.Equal(key, k) {
		t.Errorf("ParseMarker = %d %q %v", e, key, ok)
	}
	for _, bad := range []string{"x", MarkerPrefix, MarkerPrefix + ":k", MarkerPrefix + "x:k", MarkerPrefix + "12"} {
		if _, _, ok := ParseMarker([]byte(bad)); ok {
			t.Errorf("ParseMarker(%q) ok", bad)
		}
	}
	if MarkerPattern(42) != "\xff__jrb:42:*" {
		t.Error(MarkerPattern(42))
	}
}

// countNode counts the pipelines handed out.
type countNode struct {
	Node
	n *int
}

func (c countNode) Pipeline() redis.Pipeliner {
	*c.n++
	return c.Node.Pipeline()
}

// TestMoveBatchBounds: snapshot pipelines shrink to ~BatchBytes once
// payload sizes are known, and each chunk's restores go in one pipeline.
func TestMoveBatchBounds(t *testing.T) {
	ns := startNodes(t, 2)
	ctx := tctx(t, 10*time.Second)
	val := make([]byte, 1000)
	for i := range val {
		val[i] = byte(rand.IntN(256))
	}
	var keys [][]byte
	for i := range 300 {
		k := fmtKey("bb", i)
		do(t, ns[0].c, "SET", k, val)
		keys = append(keys, []byte(k))
	}
	if err := LoadScript(ctx, ns[1].c); err != nil { // else the first chunk's restores go twice (NOSCRIPT)
		t.Fatal(err)
	}
	var snaps, restores int
	m := &Mover{Old: countNode{ns[0].c, &snaps}, New: countNode{ns[1].c, &restores}, Epoch: 1,
		BatchKeys: 100, BatchBytes: 10_000}
	out, err := m.MoveBatch(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Result != Moved || o.Bytes < 1000 || o.Bytes > 1100 {
			t.Fatalf("%s: %v %d bytes", o.Key, o.Result, o.Bytes)
		}
	}
	// 1 chunk of 100 keys, then 200 keys in chunks of 10000/~1011 = 9
	// keys; old gets a snapshot and an UNLINK pipeline per chunk.
	if want := 2 * (1 + (200+8)/9); snaps != want {
		t.Errorf("%d pipelines on old, want %d (a snapshot and an UNLINK per chunk)", snaps, want)
	}
	// One restore pipeline per chunk (of ≤ 9 payloads of ~1 KB per script call).
	if want := 1 + (200+8)/9; restores != want {
		t.Errorf("%d restore pipelines, want %d", restores, want)
	}
	if d := dbsize(t, ns[0].c); d != 0 {
		t.Errorf("%d keys left on old", d)
	}
}

func TestClients(t *testing.T) {
	n := startNode(t)
	cs := NewClients(backend.Security{}, 0, 4)
	a := must[*redis.Client](t)(cs.Get(n.srv.Addr))
	if b := must[*redis.Client](t)(cs.Get(n.srv.Addr)); a != b {
		t.Fatal("a second Get made a new client")
	}
	do(t, n.c, "SET", "clients:k", "v")
	if got, err := cs.DBSize(context.Background(), n.srv.Addr); err != nil || got != 1 {
		t.Fatalf("DBSize = %d, %v", got, err)
	}
	cs.Close()
	if _, err := cs.Get(n.srv.Addr); !errors.Is(err, ErrClientsClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}
