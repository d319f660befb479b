package rebalance

import (
	"bytes"
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
	if kt < 500000 || rt < kt {
		t.Errorf("after the move: key PTTL %d, record PTTL %d (want ~600000, record ≥ key)", kt, rt)
	}
	if exists(t, owner(A, stayingH[0]), string(PlaceKey([]byte(orphan)))) {
		t.Errorf("orphan record not collected")
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
	for _, n := range ns {
		addr := n.srv.Addr
		if _, err := RemoveLeftovers(ctx, n.c, func(k []byte) bool { return B.Node(B.Owner(k)).Name != addr }); err != nil {
			t.Fatal(err)
		}
	}
	if exists(t, other, stray.key) || exists(t, other, string(PlaceKey([]byte(stray.key)))) {
		t.Errorf("stray placed copy or its record survived RemoveLeftovers")
	}
	for _, p := range all {
		c := owner(B, p.place)
		if !exists(t, c, p.key) || do(t, c, "GET", string(PlaceKey([]byte(p.key)))) != p.place {
			t.Errorf("%s removed as a leftover from its placement's owner", p.key)
		}
	}
}
