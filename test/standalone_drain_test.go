package test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestStandaloneDrainPipelineInFlight (#14): SIGTERM while a go-redis
// client's 20,000-command pipeline is in flight: the pipeline completes
// with every reply (no command lost or run twice), and jupiter exits 0 once
// the connection is closed at a command boundary.
func TestStandaloneDrainPipelineInFlight(t *testing.T) {
	e := startEnv(t)
	ctx := ctxT(t)
	const n = 20000
	key := "drain:ctr"
	node := e.nodes[e.owner(t, seed(t, e, key))]
	type result struct {
		cmds []redis.Cmder
		err  error
	}
	got := make(chan result, 1)
	go func() {
		cmds, err := e.j.Pipelined(ctx, func(p redis.Pipeliner) error {
			for range n {
				p.Incr(ctx, key)
			}
			return nil
		})
		got <- result{cmds, err}
	}()
	// SIGTERM once the node has run part of the pipeline.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		v, _ := node.Get(ctx, key).Int64()
		if v > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pipeline never reached the node")
		}
	}
	e.c.Jupiter.Signal(syscall.SIGTERM)
	r := <-got
	if r.err != nil {
		t.Fatalf("pipeline in flight at SIGTERM: %v", r.err)
	}
	if last := r.cmds[len(r.cmds)-1].(*redis.IntCmd).Val(); last != n+1 {
		t.Fatalf("last INCR = %d, want %d", last, n+1)
	}
	if v, err := node.Get(ctx, key).Int64(); err != nil || v != n+1 {
		t.Fatalf("counter on the node = %d, %v; want %d (every command once)", v, err, n+1)
	}
	select {
	case <-e.c.Jupiter.Exited():
	case <-time.After(15 * time.Second):
		t.Fatalf("jupiter did not exit after draining:\n%s", e.c.Jupiter.Log())
	}
	if code := e.c.Jupiter.ExitCode(); code != 0 {
		t.Fatalf("jupiter exit code %d after SIGTERM:\n%s", code, e.c.Jupiter.Log())
	}
}

// seed writes key so it exists (its owner can be found) and returns it.
func seed(t *testing.T, e *env, key string) string {
	t.Helper()
	if err := e.j.Set(context.Background(), key, 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	return key
}
