package hotkeys

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestFindsHotKey: among 100,000 keys each used m times, one key used 10·m
// times, in random order, must come out first by count, and (each
// command's bytes equal) by bytes. Several seeds, with and without a
// sampling scale.
func TestFindsHotKey(t *testing.T) {
	for _, tc := range []struct {
		m     int
		seed  uint64
		scale uint64
	}{{1, 1, 1}, {1, 2, 1}, {1, 3, 1}, {3, 4, 1}, {3, 5, 7}} {
		t.Run("m"+strconv.Itoa(tc.m)+"-seed"+strconv.FormatUint(tc.seed, 10), func(t *testing.T) {
			const keys = 100_000
			stream := make([]int32, 0, keys*tc.m+10*tc.m)
			for k := range keys {
				for range tc.m {
					stream = append(stream, int32(k))
				}
			}
			for range 10 * tc.m {
				stream = append(stream, -1)
			}
			r := rand.New(rand.NewPCG(tc.seed, 0))
			r.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })
			s := New(Config{Scale: tc.scale, HalfLife: -1})
			var key []byte
			for i, k := range stream {
				key = append(key[:0], "user:"...)
				if k < 0 {
					key = append(key, "hot"...)
				} else {
					key = strconv.AppendInt(key, int64(k), 10)
				}
				s.Add(Sample{Key: key, Node: "n1", Bytes: 100, Write: i%2 == 0}, int64(i))
			}
			for _, by := range []Rank{ByCount, ByBytes} {
				top := s.Top(5, by)
				if len(top) == 0 || top[0].Key != "user:hot" {
					t.Fatalf("rank %d: top = %+v, want user:hot first", by, top)
				}
				h := top[0]
				want := uint64(10*tc.m) * tc.scale
				if h.Count < want || h.Bytes < want*100 {
					t.Errorf("hot key estimates %d commands %d bytes, below the true %d / %d", h.Count, h.Bytes, want, want*100)
				}
				if h.Reads+h.Writes == 0 || h.Node != "n1" {
					t.Errorf("hot key item %+v: want reads/writes counted and node n1", h)
				}
			}
		})
	}
}

func TestTopOrderAndLimits(t *testing.T) {
	s := New(Config{TopK: 4, HalfLife: -1})
	for i, n := range []int{5, 1, 9, 3, 7, 2} {
		k := []byte("k" + strconv.Itoa(i))
		for range n {
			s.Add(Sample{Key: k, Bytes: 10 * (6 - i)}, 0)
		}
	}
	got := s.Top(0, ByCount)
	if len(got) != 4 {
		t.Fatalf("Top kept %d keys, want TopK=4: %+v", len(got), got)
	}
	var names []string
	for _, it := range got {
		names = append(names, it.Key+"="+strconv.FormatUint(it.Count, 10))
	}
	// k1 (1) and k5 (2) arrive while the list is full of bigger ones or
	// are displaced: the four most used remain, in order.
	if want := "k2=9 k4=7 k0=5 k3=3"; strings.Join(names, " ") != want {
		t.Errorf("by count: %s, want %s", strings.Join(names, " "), want)
	}
	if got := s.Top(2, ByCount); len(got) != 2 || got[0].Key != "k2" {
		t.Errorf("Top(2) = %+v", got)
	}
	// By bytes: k0 5×60=300, k2 9×40=360, k4 7×20=140, k3 3×30=90.
	b := s.Top(1, ByBytes)
	if len(b) != 1 || b[0].Key != "k2" || b[0].Bytes != 360 {
		t.Errorf("Top by bytes = %+v, want k2 with 360 bytes", b)
	}
	s.Reset()
	if got := s.Top(0, ByCount); len(got) != 0 {
		t.Errorf("after Reset: %+v", got)
	}
}

func TestReadsWritesScaleAndLongKeys(t *testing.T) {
	s := New(Config{Scale: 10, HalfLife: -1})
	long := bytes.Repeat([]byte("x"), MaxKeyBytes+50)
	for i := range 6 {
		s.Add(Sample{Key: long, Node: "a:1", Bytes: 3, Write: i < 2}, 0)
	}
	top := s.Top(0, ByCount)
	if len(top) != 1 {
		t.Fatalf("top = %+v", top)
	}
	it := top[0]
	if len(it.Key) != MaxKeyBytes || it.KeyBytes != MaxKeyBytes+50 {
		t.Errorf("key kept %d bytes of %d, want %d of %d", len(it.Key), it.KeyBytes, MaxKeyBytes, MaxKeyBytes+50)
	}
	if it.Count != 60 || it.Bytes != 180 || it.Reads != 40 || it.Writes != 20 {
		t.Errorf("item %+v: want count 60 bytes 180 reads 40 writes 20 (scale 10)", it)
	}
	// A different key sharing the first MaxKeyBytes bytes is another key.
	other := append(append([]byte(nil), long[:MaxKeyBytes]...), 'y')
	s.Add(Sample{Key: other}, 0)
	if got := s.Top(0, ByCount); len(got) != 2 {
		t.Errorf("keys with a common prefix were merged: %+v", got)
	}
}

func TestDecay(t *testing.T) {
	const hl = int64(1000)
	s := New(Config{HalfLife: hl})
	for range 8 {
		s.Add(Sample{Key: []byte("old")}, 1)
	}
	// Two half-lives later: old's 8 became 2; new's 3 now rank first.
	for range 3 {
		s.Add(Sample{Key: []byte("new")}, 1+2*hl)
	}
	top := s.Top(0, ByCount)
	if len(top) != 2 || top[0].Key != "new" || top[0].Count != 3 || top[1].Count != 2 {
		t.Fatalf("after two half-lives: %+v, want new=3 then old=2", top)
	}
	// Long silence: everything decays away and leaves the list.
	s.Add(Sample{Key: []byte("x")}, 1+100*hl)
	top = s.Top(0, ByCount)
	if len(top) != 1 || top[0].Key != "x" {
		t.Errorf("after a long silence: %+v, want only x", top)
	}
}

func TestNil(t *testing.T) {
	var s *Sketch
	s.Add(Sample{Key: []byte("k")}, 0)
	s.Reset()
	if s.Top(10, ByCount) != nil || s.Scale() != 0 {
		t.Error("a nil Sketch must be empty")
	}
	var b *Big
	b.Add([]byte("k"), "get", "n", 1<<30, true, 0)
	b.Reset()
	if b.Top(1) != nil || b.Threshold() != 0 {
		t.Error("a nil Big must be empty")
	}
}

func TestBig(t *testing.T) {
	b := NewBig(100, 3)
	b.Add([]byte("small"), "set", "n1", 99, false, 1) // below the threshold
	b.Add([]byte("a"), "set", "n1", 150, false, 2)
	b.Add([]byte("a"), "get", "n1", 120, true, 3)
	b.Add([]byte("a"), "set", "n1", 400, false, 4) // same key and command: one entry
	b.Add([]byte("b"), "set", "n2", 200, false, 5)
	b.Add([]byte("c"), "set", "n2", 110, false, 6) // full: replaces the smallest (a/get 120)? No: 110 < 120, dropped
	b.Add([]byte("d"), "hset", "n3", 1000, false, 7)
	got := b.Top(0)
	var s []string
	for _, it := range got {
		s = append(s, it.Key+"/"+it.Command+"="+strconv.Itoa(it.Size)+"x"+strconv.FormatUint(it.Count, 10))
	}
	if want := "d/hset=1000x1 a/set=400x2 b/set=200x1"; strings.Join(s, " ") != want {
		t.Errorf("Big = %s, want %s", strings.Join(s, " "), want)
	}
	if got[1].Last != 4 || got[1].Reply {
		t.Errorf("a/set = %+v, want last 4, a request", got[1])
	}
	if top := b.Top(1); len(top) != 1 || top[0].Key != "d" {
		t.Errorf("Top(1) = %+v", top)
	}
	b.Reset()
	if len(b.Top(0)) != 0 {
		t.Error("Reset kept entries")
	}
	if NewBig(0, 3).Threshold() != 0 {
		t.Error("threshold 0 must mean off")
	}
}

func TestSampler(t *testing.T) {
	for _, n := range []uint32{0, 1, 2, 10, 100} {
		var s Sampler
		s.Seed(uint64(n) + 7)
		const calls = 200_000
		picked := 0
		for range calls {
			if s.Pick(n) {
				picked++
			}
		}
		switch n {
		case 0:
			if picked != 0 {
				t.Errorf("n=0 picked %d", picked)
			}
		case 1:
			if picked != calls {
				t.Errorf("n=1 picked %d of %d", picked, calls)
			}
		default:
			want := float64(calls) / float64(n)
			if f := float64(picked); f < 0.95*want || f > 1.05*want {
				t.Errorf("n=%d picked %d, want about %.0f", n, picked, want)
			}
		}
	}
}

// TestMerge: per key the figures add up over the pods' reports, Pods
// counts them, Node comes from the pod that counted the key most, and the
// result is ranked and cut at n; keys of the same prefix but different
// full lengths stay apart.
func TestMerge(t *testing.T) {
	a := []Item{{Key: "x", KeyBytes: 1, Node: "n1", Count: 10, Bytes: 100, Reads: 9, Writes: 1},
		{Key: "only-a", KeyBytes: 6, Node: "n2", Count: 7, Bytes: 5}}
	b := []Item{{Key: "x", KeyBytes: 1, Node: "n3", Count: 30, Bytes: 10, Reads: 30},
		{Key: "only-b", KeyBytes: 6, Node: "n1", Count: 8, Bytes: 1000},
		{Key: "only-a", KeyBytes: 300, Node: "n2", Count: 1}}
	got := Merge([][]Item{a, b, nil}, 0, ByCount)
	want := []Item{
		{Key: "x", ID: ID("x"), KeyBytes: 1, Node: "n3", Count: 40, Bytes: 110, Reads: 39, Writes: 1, Pods: 2},
		{Key: "only-b", ID: ID("only-b"), KeyBytes: 6, Node: "n1", Count: 8, Bytes: 1000, Pods: 1},
		{Key: "only-a", ID: ID("only-a"), KeyBytes: 6, Node: "n2", Count: 7, Bytes: 5, Pods: 1},
		{Key: "only-a", ID: ID("only-a"), KeyBytes: 300, Node: "n2", Count: 1, Pods: 1},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Merge =\n%+v\nwant\n%+v", got, want)
	}
	if got := Merge([][]Item{a, b}, 1, ByBytes); len(got) != 1 || got[0].Key != "only-b" {
		t.Errorf("Merge by bytes, n=1 = %+v", got)
	}
	// A merged report merges again with the same result (a leader's
	// reply is a report too).
	if again := Merge([][]Item{Merge([][]Item{a}, 0, ByCount), b}, 0, ByCount); !slices.Equal(again, want) {
		t.Errorf("Merge of a merged report =\n%+v", again)
	}
}
