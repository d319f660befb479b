package hotkeys

import (
	"testing"
)

// FuzzSketch feeds a stream of samples decoded from the input and checks
// what must hold whatever the stream: estimates never fall below the true
// counts and bytes (without decay); a report is ordered, bounded by TopK
// and n, and shows each key at most once with at most MaxKeyBytes of it;
// when there are no more distinct keys than TopK, every key is reported.
func FuzzSketch(f *testing.F) {
	f.Add([]byte("\x01a\x05\x02bb\x00\x01a\x07"), uint8(4), uint8(1))
	f.Add([]byte("\x03abc\xff\x03abc\x01\x03abd\x02"), uint8(2), uint8(3))
	f.Add(make([]byte, 300), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, topk, width uint8) {
		cfg := Config{TopK: int(topk%8) + 1, Width: int(width%64) + 1, Depth: int(width%3) + 1, HalfLife: -1, Scale: 3}
		s := New(cfg)
		type truth struct{ count, bytes uint64 }
		want := map[string]*truth{}
		for len(in) > 0 {
			n := int(in[0]) % 8
			in = in[1:]
			n = min(n, len(in))
			key := in[:n]
			in = in[n:]
			w := 0
			if len(in) > 0 {
				w = int(in[0])
				in = in[1:]
			}
			s.Add(Sample{Key: key, Bytes: w, Write: w%2 == 0}, 0)
			tr := want[string(key)]
			if tr == nil {
				tr = &truth{}
				want[string(key)] = tr
			}
			tr.count++
			tr.bytes += uint64(w)
		}
		for _, by := range []Rank{ByCount, ByBytes} {
			top := s.Top(0, by)
			if len(top) > cfg.TopK {
				t.Fatalf("report of %d keys, TopK %d", len(top), cfg.TopK)
			}
			seen := map[string]bool{}
			for i, it := range top {
				if seen[it.Key] {
					t.Fatalf("key %q reported twice", it.Key)
				}
				seen[it.Key] = true
				if len(it.Key) > MaxKeyBytes {
					t.Fatalf("key of %d bytes shown", len(it.Key))
				}
				tr := want[it.Key]
				if tr == nil {
					t.Fatalf("reported key %q was never added", it.Key)
				}
				if it.Count < tr.count*3 || it.Bytes < tr.bytes*3 {
					t.Fatalf("key %q: estimate %d/%d below the truth %d/%d ×3", it.Key, it.Count, it.Bytes, tr.count, tr.bytes)
				}
				if i > 0 {
					a, b := top[i-1].Count, it.Count
					if by == ByBytes {
						a, b = top[i-1].Bytes, it.Bytes
					}
					if a < b {
						t.Fatalf("report out of order at %d", i)
					}
				}
			}
			if by == ByCount && len(want) <= cfg.TopK && len(top) != len(want) {
				t.Fatalf("%d distinct keys, TopK %d, but %d reported", len(want), cfg.TopK, len(top))
			}
			if len(top) > 1 {
				if got := s.Top(1, by); len(got) != 1 {
					t.Fatalf("Top(1) returned %d", len(got))
				}
			}
		}
	})
}
