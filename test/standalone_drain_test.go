package test

import (
	"context"
	"strings"
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

// TestStandaloneDrainBlockedCall (#14): a client blocked in BLPOP k 0 at
// SIGTERM keeps waiting while jupiter drains; shortly before
// --shutdown-timeout runs out it gets a clean Redis error reply, -UNBLOCKED
// naming the shutdown (not a connection reset or an EOF), with nothing
// popped; jupiter then exits 0 with every connection drained, inside the
// shutdown timeout.
func TestStandaloneDrainBlockedCall(t *testing.T) {
	e := startEnv(t, "--shutdown-timeout", "3s")
	ctx := ctxT(t)
	const key = "drain:queue"
	got := make(chan error, 1)
	go func() {
		// go-redis default options: the error is what the application sees.
		_, err := e.j.BLPop(ctx, 0, key).Result()
		got <- err
	}()
	waitBlocked(t, "BLPOP blocked", e.nodes, 1, 20*time.Second)
	home := -1
	for i, n := range e.nodes {
		if blockedClients(t, n) == 1 {
			home = i
		}
	}
	e.c.Jupiter.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-got:
	case <-time.After(20 * time.Second):
		t.Fatalf("BLPOP still blocked after SIGTERM:\n%s", e.c.Jupiter.Log())
	}
	const want = "UNBLOCKED force unblock from blocking operation, jupiter is shutting down"
	if err == nil || err.Error() != want {
		t.Fatalf("BLPOP at shutdown returned %v, want the error reply %q", err, want)
	}
	select {
	case <-e.c.Jupiter.Exited():
	case <-time.After(20 * time.Second):
		t.Fatalf("jupiter did not exit after the drain:\n%s", e.c.Jupiter.Log())
	}
	if code := e.c.Jupiter.ExitCode(); code != 0 {
		t.Fatalf("jupiter exit code %d after SIGTERM:\n%s", code, e.c.Jupiter.Log())
	}
	if log := e.c.Jupiter.Log(); strings.Contains(log, "drain did not finish in time") || !strings.Contains(log, `"msg":"clients drained"`) {
		t.Fatalf("the drain did not close every connection within --shutdown-timeout:\n%s", log)
	}
	// The node let the BLPOP go: an element pushed now stays (a BLPOP
	// still waiting there would take it, with nobody to hand it to).
	waitBlocked(t, "the node to unblock the BLPOP", e.nodes, 0, 20*time.Second)
	n := e.nodes[home]
	if err := n.RPush(ctx, key, "kept").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := n.LRange(ctx, key, 0, -1).Result(); err != nil || len(v) != 1 || v[0] != "kept" {
		t.Fatalf("%s on its node = %v, %v; want [kept]", key, v, err)
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
