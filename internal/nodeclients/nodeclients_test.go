package nodeclients

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
)

// go-redis clients dial on first command, so the cache's bookkeeping is
// tested without a server.
func TestCache(t *testing.T) {
	errClosed := errors.New("closed")
	errBad := errors.New("bad address")
	made := 0
	c := New(func(addr string) (*redis.Options, error) {
		if addr == "bad" {
			return nil, errBad
		}
		made++
		return &redis.Options{Addr: addr}, nil
	}, errClosed)
	a1, err := c.Get("a:1")
	if err != nil {
		t.Fatal(err)
	}
	if a2, _ := c.Get("a:1"); a2 != a1 || made != 1 {
		t.Fatalf("second Get: same client %v, options made %d times", a2 == a1, made)
	}
	if _, err := c.Get("bad"); !errors.Is(err, errBad) {
		t.Fatalf("Get with failing options: %v", err)
	}
	b1, _ := c.Get("b:1")
	c.Retain([]string{"b:1"})
	if b2, _ := c.Get("b:1"); b2 != b1 {
		t.Fatal("Retain dropped a kept node's client")
	}
	if a3, _ := c.Get("a:1"); a3 == a1 || made != 3 {
		t.Fatalf("after Retain without a:1: new client %v, options made %d times (want 3)", a3 != a1, made)
	}
	c.Close()
	if _, err := c.Get("b:1"); !errors.Is(err, errClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}
