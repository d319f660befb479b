package ring

import (
	"bytes"
	"fmt"
	"testing"
)

var sinkInt int
var sinkSlot uint16

func BenchmarkSlot(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  []byte
	}{
		{"short", []byte("user:1000")},
		{"100B", bytes.Repeat([]byte("k"), 100)},
		{"tagged", []byte("{user1000}.followers:some:longer:suffix")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.key)))
			for b.Loop() {
				sinkSlot = Slot(bc.key)
			}
		})
	}
}

func BenchmarkOwner(b *testing.B) {
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:%d:profile", i)
	}
	for _, n := range []int{3, 16, 128} {
		r := mustNew(b, 1, nodesN(n))
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sinkInt = r.Owner(keys[i&1023])
				i++
			}
		})
	}
}

func TestOwnerNoAlloc(t *testing.T) {
	r := mustNew(t, 1, nodesN(16))
	key := []byte("{user1000}.following")
	if a := testing.AllocsPerRun(100, func() { sinkInt = r.Owner(key) }); a != 0 {
		t.Fatalf("Owner allocates %.1f times, want 0", a)
	}
	h := NewHolder(r)
	if a := testing.AllocsPerRun(100, func() { sinkInt = h.Load().Owner(key) }); a != 0 {
		t.Fatalf("Holder.Load().Owner allocates %.1f times, want 0", a)
	}
}

func BenchmarkHolderLoadOwner(b *testing.B) {
	h := NewHolder(mustNew(b, 1, nodesN(16)))
	key := []byte("user:1000:profile")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n := 0
		for pb.Next() {
			n += h.Load().Owner(key)
		}
		_ = n
	})
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{3, 16, 128} {
		nodes := nodesN(n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(1, nodes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDiff(b *testing.B) {
	old := mustNew(b, 1, nodesN(16))
	nw := mustNew(b, 2, nodesN(17))
	b.ReportAllocs()
	for b.Loop() {
		sinkInt = len(Diff(old, nw))
	}
}
