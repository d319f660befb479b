package ring_test

import (
	"fmt"

	"github.com/alphauslabs/jupiter/internal/ring"
)

func Example() {
	r, err := ring.New(1, []ring.Node{
		{Addr: "10.0.0.1:6379"},
		{Addr: "10.0.0.2:6379"},
		{Addr: "10.0.0.3:6379", Weight: 2},
	})
	if err != nil {
		panic(err)
	}
	h := ring.NewHolder(r)

	// Hot path: one atomic load, a CRC16, an array lookup.
	key := []byte("{user1000}.following")
	fmt.Println(ring.Slot(key), h.Load().Node(h.Load().Owner(key)).Addr)

	// Adding a node moves only the slots the new node takes.
	r2, err := r.Add(2, ring.Node{Addr: "10.0.0.4:6379"})
	if err != nil {
		panic(err)
	}
	moves := ring.Diff(r, r2)
	fmt.Println(h.Store(r2), len(moves) == r2.SlotCounts()[r2.Index("10.0.0.4:6379")])
	fmt.Println(h.Store(r)) // older version: refused
	// Output:
	// 3443 10.0.0.2:6379
	// true true
	// false
}
