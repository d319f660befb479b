package ring

import (
	"sync"
	"testing"
)

func TestHolder(t *testing.T) {
	var zero Holder
	if zero.Load() != nil {
		t.Fatal("zero Holder is not empty")
	}
	h := NewHolder(nil)
	if h.Load() != nil {
		t.Fatal("NewHolder(nil).Load() != nil")
	}
	if h.Store(nil) {
		t.Fatal("Store(nil) accepted")
	}
	v5 := mustNew(t, 5, nodesN(3))
	v5b := mustNew(t, 5, nodesN(4))
	v3 := mustNew(t, 3, nodesN(5))
	v6 := mustNew(t, 6, nodesN(2))
	for _, step := range []struct {
		r      *Ring
		ok     bool
		holder *Ring // what Load returns afterwards
	}{
		{v5, true, v5},
		{v3, false, v5}, // older: refused
		{nil, false, v5},
		{v5b, true, v5b}, // same version: accepted
		{v6, true, v6},
		{v5, false, v6},
		{v3, false, v6},
	} {
		if got := h.Store(step.r); got != step.ok {
			t.Fatalf("Store(%v) = %v, want %v", step.r, got, step.ok)
		}
		if h.Load() != step.holder {
			t.Fatalf("after Store(%v), Load() = %v, want %v", step.r, h.Load(), step.holder)
		}
	}
	if NewHolder(v3).Load() != v3 {
		t.Fatal("NewHolder(r).Load() != r")
	}
}

// TestHolderConcurrent: concurrent Stores of shuffled versions and Loads
// (run with -race). Every reader must see versions never go backwards, and
// the holder must end at the highest version stored.
func TestHolderConcurrent(t *testing.T) {
	const versions = 64
	rings := make([]*Ring, versions)
	for i := range rings {
		rings[i] = mustNew(t, uint64(i), nodesN(1+i%4))
	}
	h := NewHolder(rings[0])
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			var last uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := h.Load()
				if r.Version() < last {
					t.Errorf("version went back from %d to %d", last, r.Version())
					return
				}
				last = r.Version()
				_ = r.Owner([]byte("some:key"))
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			// Each writer stores all versions in a different order.
			for i := range versions {
				h.Store(rings[(i*(2*w+1)+w*7)%versions])
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if got := h.Load().Version(); got != versions-1 {
		t.Fatalf("final version %d, want %d", got, versions-1)
	}
}
