package backend

import (
	"errors"
	"testing"
)

// TestFleetDown: while the fleet's verdict marks a node down, its Calls
// (RESP2 and RESP3) and dedicated borrows fail at once with ErrFleetDown,
// "node <addr> is down (fleet)", even though this pod reaches it; other
// nodes are untouched; a node created later gets the verdict too; and the
// node serves again once the verdict lifts.
func TestFleetDown(t *testing.T) {
	f, g := newFake(t, echoHandler), newFake(t, echoHandler)
	p := newPool(t, Options{})
	n, other := p.Node(f.addr), p.Node(g.addr)
	if c := do(n, 0, "x")[0]; c.Err != nil {
		t.Fatal(c.Err)
	}
	if ch := p.SetFleetDown(map[string]bool{f.addr: true, "10.9.9.9:6379": true}); len(ch) != 1 || ch[0] != f.addr {
		t.Errorf("changed %v, want [%s]", ch, f.addr)
	}
	if !n.FleetDown() || other.FleetDown() {
		t.Fatalf("FleetDown: %v %v", n.FleetDown(), other.FleetDown())
	}
	c := do(n, 0, "a", "b")
	for _, call := range c {
		if !errors.Is(call.Err, ErrFleetDown) || call.Err.Error() != "node "+f.addr+" is down (fleet)" {
			t.Fatalf("call on a fleet-down node: %v", call.Err)
		}
	}
	g3 := NewGroup()
	c3 := &Call{}
	g3.Attach(c3)
	n.Enqueue3(0, pingCmd("r3"), []*Call{c3}, 0)
	g3.Wait()
	if !errors.Is(c3.Err, ErrFleetDown) {
		t.Errorf("RESP3 call: %v", c3.Err)
	}
	if _, err := n.Borrow(); !errors.Is(err, ErrFleetDown) {
		t.Errorf("Borrow: %v", err)
	}
	if c := do(other, 0, "y")[0]; c.Err != nil || string(c.Reply) != echoed("y") {
		t.Errorf("other node: %q %v", c.Reply, c.Err)
	}
	if late := p.Node("10.9.9.9:6379"); !late.FleetDown() {
		t.Error("a node created after the verdict is not marked down")
	}
	if ch := p.SetFleetDown(nil); len(ch) != 2 {
		t.Errorf("lifting the verdict changed %v", ch)
	}
	if c := do(n, 0, "z")[0]; c.Err != nil || string(c.Reply) != echoed("z") {
		t.Errorf("after the verdict lifted: %q %v", c.Reply, c.Err)
	}
}

// TestRoutes: a node the ring names by one address is dialled at the
// pod's route for it (--backend-route); other nodes at their own address.
func TestRoutes(t *testing.T) {
	f := newFake(t, echoHandler)
	s := Security{Routes: map[string]string{"10.255.0.1:6379": f.addr}}
	if s.Route("10.255.0.1:6379") != f.addr || s.Route(f.addr) != f.addr {
		t.Fatalf("Route: %q %q", s.Route("10.255.0.1:6379"), s.Route(f.addr))
	}
	p := newPool(t, Options{Dialer: s.Dialer()})
	if c := do(p.Node("10.255.0.1:6379"), 0, "routed")[0]; c.Err != nil || string(c.Reply) != echoed("routed") {
		t.Errorf("routed node: %q %v", c.Reply, c.Err)
	}
}
