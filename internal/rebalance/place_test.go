package rebalance

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/ring"
)

func TestPlaceKeyNames(t *testing.T) {
	k := []byte("a:\xff\x00b")
	pk := PlaceKey(k)
	if !IsMarker(pk) || !IsPlace(pk) || IsPlace(k) || IsPlace(MarkerKey(3, k)) {
		t.Fatalf("IsPlace/IsMarker wrong for %q", pk)
	}
	if got, ok := PlacedKey(pk); !ok || !bytes.Equal(got, k) {
		t.Fatalf("PlacedKey(%q) = %q, %v", pk, got, ok)
	}
	if _, _, ok := ParseMarker(pk); ok {
		t.Fatalf("a placement record parses as a marker")
	}
	// MarkerPattern never matches a record (Cleanup of any epoch keeps them).
	if bytes.HasPrefix(pk, []byte(MarkerPattern(0)[:len(MarkerPattern(0))-1])) {
		t.Fatalf("record %q inside marker pattern", pk)
	}
}

// placedWrite writes like the proxy does for `<cmd> … hash=place`: the
// command and the records' sync in one MULTI on place's owner under r.
func placedWrite(t *testing.T, c *redis.Client, place string, keys []string, args ...any) {
	t.Helper()
	ctx := tctx(t, 10*time.Second)
	bk := make([][]byte, len(keys))
	for i, k := range keys {
		bk[i] = []byte(k)
	}
	pipe := c.TxPipeline()
	pipe.Do(ctx, args...)
	pipe.Do(ctx, SyncCommand([]byte(place), bk...).args()...)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// TestPlacedKeysMoveWithHashKey: keys written with hash=X, whose own slots
// live elsewhere, move with X's slot, keep their TTL and records; records
// of deleted keys are collected; RemoveLeftovers judges keys by their
// placement.
func TestPlacedKeysMoveWithHashKey(t *testing.T) {
	ns := startNodes(t, 4)
	A := ringOf(t, 1, ns[:3])
	B, err := A.Add(2, ring.Node{Addr: ns[3].srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	owner := func(r *ring.Ring, k string) *redis.Client { return clientOf(ns, r.Node(r.Owner([]byte(k))).Name) }
	moves := func(k string) bool { return owner(A, k) != owner(B, k) }

	// Hash keys that move and hash keys that stay; per hash key, member
	// keys whose own slots move or stay, so every combination occurs.
	var movingH, stayingH []string
	for i := 0; len(movingH) < 20 || len(stayingH) < 20; i++ {
		h := "family:" + itoa(i)
		if moves(h) {
			movingH = append(movingH, h)
		} else {
			stayingH = append(stayingH, h)
		}
	}
	type placed struct{ key, place string }
	var all []placed
	ctx := tctx(t, 60*time.Second)
	for hi, h := range append(movingH[:20:20], stayingH[:20]...) {
		c := owner(A, h)
		for j := range 10 {
			k := "member:" + itoa(hi) + ":" + itoa(j)
			if ring.Slot([]byte(k)) == ring.Slot([]byte(h)) {
				continue
			}
			switch j % 3 {
			case 0:
				placedWrite(t, c, h, []string{k}, "SET", k, "v-"+k)
			case 1:
				placedWrite(t, c, h, []string{k}, "SET", k, "v-"+k, "PX", 600000)
			default:
				placedWrite(t, c, h, []string{k}, "RPUSH", k, "a", "b")
			}
			all = append(all, placed{k, h})
		}
	}
	// A deleted placed key leaves no record; an orphan record (key deleted
	// without hash=) is collected by the migrator.
	gone := "member:gone"
	placedWrite(t, owner(A, movingH[0]), movingH[0], []string{gone}, "SET", gone, "x")
	placedWrite(t, owner(A, movingH[0]), movingH[0], []string{gone}, "DEL", gone)
	if exists(t, owner(A, movingH[0]), string(PlaceKey([]byte(gone)))) {
		t.Fatalf("record of a deleted key kept")
	}
	orphan := "member:orphan"
	placedWrite(t, owner(A, stayingH[0]), stayingH[0], []string{orphan}, "SET", orphan, "x")
	do(t, owner(A, stayingH[0]), "DEL", orphan)
	// A record's TTL follows its key's.
	ttlKey := all[1]
	if pt := do(t, owner(A, ttlKey.place), "PTTL", string(PlaceKey([]byte(ttlKey.key)))).(int64); pt < 590000 {
		t.Fatalf("record PTTL %d, want about 600000", pt)
	}

	cfgs, err := Plan(A, B, byName(ns), Config{Epoch: B.Version(), BatchKeys: 7})
	if err != nil {
		t.Fatal(err)
	}
	var ms []*Migrator
	for _, c := range cfgs {
		m, err := NewMigrator(c)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	ps, errs := runAll(ctx, ms)
	for i, p := range ps {
		if errs[i] != nil || p.Phase != PhaseDone || p.Errors != 0 {
			t.Fatalf("%s: %v %+v", p.Source, errs[i], p)
		}
	}

	for _, p := range all {
		want := owner(B, p.place)
		for _, n := range ns {
			has := exists(t, n.c, p.key)
			rec := do(t, n.c, "GET", string(PlaceKey([]byte(p.key))))
			if n.c == want {
				if !has || rec != p.place {
					t.Errorf("%s (hash=%s, moves %v): on its new owner key %v record %v", p.key, p.place, moves(p.place), has, rec)
				}
				continue
			}
			if has || rec != nil {
				t.Errorf("%s (hash=%s): left on a non-owner (key %v, record %v)", p.key, p.place, has, rec)
			}
		}
	}
	c := owner(B, ttlKey.place)
	kt := do(t, c, "PTTL", ttlKey.key).(int64)
	rt := do(t, c, "PTTL", string(PlaceKey([]byte(ttlKey.key)))).(int64)
	if kt < 500000 || rt > kt+1 || rt < kt-50 {
		t.Errorf("after the move: key PTTL %d, record PTTL %d (want ~600000, the record's no later than the key's)", kt, rt)
	}
	if !exists(t, owner(A, stayingH[0]), string(PlaceKey([]byte(orphan)))) {
		t.Errorf("an orphan record placed on its node was deleted (a write may be between its record and its key)")
	}

	// RemoveLeftovers: a stray copy of a placed key on a node that is not
	// its placement's owner goes (with its record); placed keys at home
	// stay even where their own slot is foreign.
	stray := all[0]
	var other *redis.Client
	for _, n := range ns {
		if n.c != owner(B, stray.place) {
			other = n.c
			break
		}
	}
	placedWrite(t, other, stray.place, []string{stray.key}, "SET", stray.key, "stale")
	lost := string(PlaceKey([]byte("member:lost"))) // a record without its key, placed elsewhere
	do(t, other, "SET", lost, stray.place)
	for _, n := range ns {
		addr := n.srv.Addr
		if _, err := RemoveLeftovers(ctx, n.c, func(k []byte) bool { return B.Node(B.Owner(k)).Name != addr }); err != nil {
			t.Fatal(err)
		}
	}
	if exists(t, other, stray.key) || exists(t, other, string(PlaceKey([]byte(stray.key)))) {
		t.Errorf("stray placed copy or its record survived RemoveLeftovers")
	}
	if exists(t, other, lost) {
		t.Errorf("a record without its key, placed on another node, survived RemoveLeftovers")
	}
	if !exists(t, owner(B, stayingH[0]), string(PlaceKey([]byte(orphan)))) {
		t.Errorf("RemoveLeftovers deleted a record placed on its node")
	}
	for _, p := range all {
		c := owner(B, p.place)
		if !exists(t, c, p.key) || do(t, c, "GET", string(PlaceKey([]byte(p.key)))) != p.place {
			t.Errorf("%s removed as a leftover from its placement's owner", p.key)
		}
	}
}

// TestRecordCommandsMirror runs random writes on a few keys, each as the
// proxy sends a write with hash=X (RecordCommand's mirror and the write,
// or MULTI; write; sync; EXEC), on
// a real Redis, and checks after every one that each key's record exists
// exactly while the key does, names X, and expires when the key does.
func TestRecordCommandsMirror(t *testing.T) {
	n := startNode(t)
	c := n.c
	ctx := tctx(t, 60*time.Second)
	place := []byte("fam")
	keys := []string{"a", "b", "c"}
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func() string { return keys[rng.IntN(len(keys))] }
	ttl := func() string { return strconv.Itoa(50 + rng.IntN(5000)) }
	gens := []func() []string{
		func() []string { return []string{"SET", pick(), "v"} },
		func() []string { return []string{"SET", pick(), "v", "PX", ttl()} },
		func() []string { return []string{"SET", pick(), "v", "EX", "100", "NX"} },
		func() []string { return []string{"SET", pick(), "v", "XX", "KEEPTTL", "GET"} },
		func() []string {
			return []string{"SET", pick(), "v", "PXAT", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)}
		},
		func() []string { return []string{"SETEX", pick(), "100", "v"} },
		func() []string { return []string{"PSETEX", pick(), ttl(), "v"} },
		func() []string { return []string{"SETNX", pick(), "v"} },
		func() []string { return []string{"GETSET", pick(), "v"} },
		func() []string { return []string{"MSET", pick(), "1", pick(), "2"} },
		func() []string { return []string{"MSETNX", pick(), "1", pick(), "2"} },
		func() []string { return []string{"EXPIRE", pick(), "100"} },
		func() []string { return []string{"PEXPIRE", pick(), ttl(), "GT"} },
		func() []string { return []string{"PEXPIRE", pick(), ttl(), "NX"} },
		func() []string { return []string{"EXPIRE", pick(), "0"} },
		func() []string {
			return []string{"PEXPIREAT", pick(), strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10), "LT"}
		},
		func() []string { return []string{"PERSIST", pick()} },
		func() []string { return []string{"GETEX", pick(), "PX", ttl()} },
		func() []string { return []string{"GETEX", pick(), "PERSIST"} },
		func() []string { return []string{"DEL", pick(), pick()} },
		func() []string { return []string{"UNLINK", pick()} },
		func() []string { return []string{"GETDEL", pick()} },
		func() []string { return []string{"INCR", pick()} },
		func() []string { return []string{"APPEND", pick(), "x"} },
		func() []string { return []string{"LPUSH", pick(), "x", "y"} },
		func() []string { return []string{"RPOP", pick()} },
		func() []string { return []string{"LPOP", pick(), "2"} },
		func() []string { return []string{"SADD", pick(), "m"} },
		func() []string { return []string{"SREM", pick(), "m"} },
		func() []string { return []string{"HSET", pick(), "f", "v"} },
		func() []string { return []string{"HDEL", pick(), "f"} },
		func() []string { return []string{"ZADD", pick(), "1", "m"} },
		func() []string { return []string{"ZPOPMIN", pick()} },
		func() []string { return []string{"RENAME", pick(), pick()} },
		func() []string { return []string{"COPY", pick(), pick(), "REPLACE"} },
		func() []string { return []string{"LMOVE", pick(), pick(), "LEFT", "RIGHT"} },
		func() []string { return []string{"SUNIONSTORE", pick(), pick(), pick()} },
		func() []string {
			return []string{"EVAL", "return redis.call('SET', KEYS[1], 'e', 'PX', ARGV[1])", "1", pick(), ttl()}
		},
	}
	steps := 3000
	if testing.Short() {
		steps = 300
	}
	for step := range steps {
		w := gens[rng.IntN(len(gens))]()
		write := make(Command, len(w))
		for i, a := range w {
			write[i] = []byte(a)
		}
		var ks [][]byte
		for _, a := range w[1:] {
			if a == "a" || a == "b" || a == "c" {
				ks = append(ks, []byte(a))
			}
		}
		// As the proxy sends it: mirror and write pipelined, or write and
		// sync in one MULTI.
		rc, before := RecordCommand(write, ks, place)
		pipe := c.TxPipeline()
		if before {
			pipe = c.Pipeline()
			pipe.Do(ctx, rc.args()...)
		}
		pipe.Do(ctx, write.args()...)
		if !before {
			pipe.Do(ctx, rc.args()...)
		}
		if _, err := pipe.Exec(ctx); err != nil && !isReply(err) {
			t.Fatal(err)
		}
		for _, k := range keys {
			pk := string(PlaceKey([]byte(k)))
			// Absolute deadlines (ms), so two reads a tick apart compare.
			kd := do(t, c, "PEXPIRETIME", k).(int64)
			rd := do(t, c, "PEXPIRETIME", pk).(int64)
			switch {
			case kd == -2 && rd != -2:
				t.Fatalf("step %d %v: %s is gone, its record is not (deadline %d)", step, w, k, rd)
			case kd == -2:
			case rd == -2:
				t.Fatalf("step %d %v: %s exists (deadline %d) without its record", step, w, k, kd)
			case (kd == -1) != (rd == -1) || rd > kd || rd < kd-3:
				t.Fatalf("step %d %v: %s deadline %d, its record's %d (never later, at most 3 ms earlier)", step, w, k, kd, rd)
			}
			if kd != -2 {
				if v := do(t, c, "GET", pk); v != string(place) {
					t.Fatalf("step %d %v: record of %s = %v", step, w, k, v)
				}
			}
		}
	}
}

func TestRecordCommandsText(t *testing.T) {
	k, p := []byte("k"), []byte("X")
	for _, tc := range []struct {
		write []string
		want  string
	}{
		{[]string{"SET", "k", "v", "EX", "10", "GET"}, `EVAL`},
		{[]string{"SET", "k", "v", "PX", "10", "NX"}, `SET "\xff__jrb:p:k" "X" "PX" "10" "NX"`},
		{[]string{"set", "k", "v"}, `SET "\xff__jrb:p:k" "X"`},
		{[]string{"SETEX", "k", "10", "v"}, `SETEX "\xff__jrb:p:k" "10" "X"`},
		{[]string{"GETEX", "k", "pxat", "5"}, `EVAL`},
		{[]string{"DEL", "k"}, `DEL "\xff__jrb:p:k"`},
		{[]string{"INCR", "k"}, `SET "\xff__jrb:p:k" "X" "NX"`},
		{[]string{"LPOP", "k"}, `EVAL`},
		{[]string{"EXPIRE", "k", "5", "NX"}, `EXPIRE "\xff__jrb:p:k" "5" "NX"`},
	} {
		w := make(Command, len(tc.write))
		for i, a := range tc.write {
			w[i] = []byte(a)
		}
		got, before := RecordCommand(w, [][]byte{k}, p)
		s := got.String()
		if string(got[0]) == "EVAL" {
			s = "EVAL"
		}
		if before != (s != "EVAL") {
			t.Errorf("%v: before = %v for %s", tc.write, before, s)
		}
		if s != tc.want {
			t.Errorf("%v: %s, want %s", tc.write, s, tc.want)
		}
	}
	if c, _ := RecordCommand(Command{[]byte("PING")}, nil, p); c != nil {
		t.Errorf("records for a keyless command")
	}
}
