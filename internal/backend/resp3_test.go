package backend

import (
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// do3 is one request on the node's RESP3 connections.
func do3(n *Node, args ...string) *Call {
	g := NewGroup()
	c := &Call{}
	g.Attach(c)
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	n.Enqueue3(0, resp.AppendCommand(nil, bs...), []*Call{c}, time.Now().UnixNano())
	g.Wait()
	return c
}

// TestResp3Connections: Enqueue3 requests get the node's RESP3 replies
// (maps, nulls) while Enqueue on the same node still gets RESP2; the RESP3
// connections open only on first use.
func TestResp3Connections(t *testing.T) {
	addr := startRedis(t)
	p := newPool(t, Options{})
	n := p.Node(addr)
	c := &Call{}
	g := NewGroup()
	g.Attach(c)
	submit(n, 0, resp.AppendCommand(nil, []byte("HSET"), []byte("h"), []byte("f"), []byte("v")), []*Call{c})
	g.Wait()
	if n.conns3.Load() != nil {
		t.Fatal("RESP3 connections opened before any RESP3 request")
	}
	if r := do3(n, "HGETALL", "h"); r.Err != nil || string(r.Reply) != "%1\r\n$1\r\nf\r\n$1\r\nv\r\n" {
		t.Fatalf("HGETALL on RESP3 = %q, %v", r.Reply, r.Err)
	}
	if r := do3(n, "GET", "none"); string(r.Reply) != "_\r\n" {
		t.Fatalf("GET none on RESP3 = %q", r.Reply)
	}
	c2 := &Call{}
	g.Attach(c2)
	submit(n, 0, resp.AppendCommand(nil, []byte("HGETALL"), []byte("h")), []*Call{c2})
	g.Wait()
	if string(c2.Reply) != "*2\r\n$1\r\nf\r\n$1\r\nv\r\n" {
		t.Fatalf("HGETALL on RESP2 = %q", c2.Reply)
	}
	if got := n.Connected(); got != 2 {
		t.Errorf("Connected = %d, want 2 (one RESP2, one RESP3)", got)
	}
}

// TestResp3RefusedKeepsNodeUp: a node that refuses HELLO 3 fails the RESP3
// requests with an error naming HELLO, and is not marked down: its RESP2
// traffic goes on.
func TestResp3RefusedKeepsNodeUp(t *testing.T) {
	f := newFake(t, func(args [][]byte) action {
		if strings.EqualFold(string(args[0]), "hello") {
			return action{reply: []byte("-ERR unknown command 'HELLO'\r\n")}
		}
		return echoHandler(args)
	})
	p := newPool(t, Options{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	n := p.Node(f.addr)
	if r := do(n, 0, "a")[0]; r.Err != nil || string(r.Reply) != echoed("a") {
		t.Fatalf("RESP2 request = %q, %v", r.Reply, r.Err)
	}
	r := do3(n, "PING", "b")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "HELLO") {
		t.Fatalf("RESP3 request on a node without HELLO = %q, %v; want an error naming HELLO", r.Reply, r.Err)
	}
	for range 20 {
		if !n.Up() {
			t.Fatal("a refused HELLO 3 marked the node down")
		}
		if r := do(n, 0, "c")[0]; r.Err != nil {
			t.Fatalf("RESP2 request after the refused HELLO: %v", r.Err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
