package backend

import (
	"context"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// BenchmarkSubmit: round trips through one node's multiplexed connections
// to a fake answering +OK, from parallel goroutines, with 1 or 16 calls per
// submit. ns/op and allocs/op are per submit (batch).
func BenchmarkSubmit(b *testing.B) {
	for _, per := range []int{1, 16} {
		b.Run(itoa(per)+"calls", func(b *testing.B) {
			f := newFake(b, okHandler)
			p := NewPool(Options{ConnsPerNode: 2})
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = p.Close(ctx)
			}()
			n := p.Node(f.addr)
			var payload []byte
			for i := 0; i < per; i++ {
				payload = resp.AppendCommand(payload, []byte("SET"), []byte("key"), []byte("value"))
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := NewGroup()
				calls := make([]*Call, per)
				for i := range calls {
					calls[i] = &Call{}
				}
				pick := uint32(0)
				for pb.Next() {
					for _, c := range calls {
						g.Attach(c)
					}
					submit(n, pick, payload, calls)
					g.Wait()
					if calls[0].Err != nil {
						b.Fatal(calls[0].Err)
					}
					pick++
				}
			})
		})
	}
}
