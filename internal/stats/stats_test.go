package stats

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{time.Microsecond, 0},
		{16384 * time.Nanosecond, 0}, // exactly the first bound
		{16385 * time.Nanosecond, 1},
		{32768 * time.Nanosecond, 1},
		{time.Millisecond, 6}, // 1ms <= 2^20ns ≈ 1.05ms, bucket 6
		{time.Hour, Buckets - 1},
		{-time.Second, 0},
	}
	for _, tt := range tests {
		var h Histogram
		h.Observe(tt.d)
		c, n, _ := h.Snapshot()
		if n != 1 || c[tt.want] != 1 {
			t.Errorf("Observe(%v): counts %v, want bucket %d", tt.d, c, tt.want)
		}
		if tt.want < Buckets-1 && tt.d > 0 && float64(tt.d)/1e9 > UpperBound(tt.want) {
			t.Errorf("%v exceeds its bucket's bound %v", tt.d, UpperBound(tt.want))
		}
		if tt.want > 0 && float64(tt.d)/1e9 <= UpperBound(tt.want-1) {
			t.Errorf("%v belongs in a lower bucket than %d", tt.d, tt.want)
		}
	}
}

func TestSum(t *testing.T) {
	var h Histogram
	h.Observe(time.Millisecond)
	h.Observe(2 * time.Millisecond)
	if _, n, s := h.Snapshot(); n != 2 || s < 0.0029 || s > 0.0031 {
		t.Fatalf("count %d sum %v", n, s)
	}
	if UpperBound(Buckets-1) <= UpperBound(Buckets-2) {
		t.Fatal("last bound must be +Inf")
	}
}

func BenchmarkObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(time.Duration(i))
	}
}
