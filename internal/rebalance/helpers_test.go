package rebalance

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// node is one real redis-server plus a control-path client to it.
type node struct {
	srv *testenv.Redis
	c   *redis.Client
}

func startNode(tb testing.TB) node {
	tb.Helper()
	srv := testenv.StartRedis(tb)
	c, err := NewClient(srv.Addr, backend.Security{}, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return node{srv: srv, c: c}
}

func startNodes(tb testing.TB, n int) []node {
	out := make([]node, n)
	for i := range out {
		out[i] = startNode(tb)
	}
	return out
}

func tctx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func must[T any](tb testing.TB) func(T, error) T {
	return func(v T, err error) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}

func do(tb testing.TB, c *redis.Client, args ...any) any {
	tb.Helper()
	v, err := c.Do(context.Background(), args...).Result()
	if err != nil && err != redis.Nil {
		tb.Fatalf("%v: %v", args, err)
	}
	return v
}

func exists(tb testing.TB, c *redis.Client, key string) bool {
	tb.Helper()
	return do(tb, c, "EXISTS", key).(int64) == 1
}

func dbsize(tb testing.TB, c *redis.Client) int64 {
	tb.Helper()
	return do(tb, c, "DBSIZE").(int64)
}

// ringOf builds a ring over the nodes' addresses (names default to Addr).
func ringOf(tb testing.TB, version uint64, nodes []node) *ring.Ring {
	tb.Helper()
	ns := make([]ring.Node, len(nodes))
	for i, n := range nodes {
		ns[i] = ring.Node{Addr: n.srv.Addr}
	}
	r, err := ring.New(version, ns)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// byName maps ring node names (addresses) to clients.
func byName(nodes []node) func(string) Node {
	m := map[string]Node{}
	for _, n := range nodes {
		m[n.srv.Addr] = n.c
	}
	return func(name string) Node { return m[name] }
}

func clientOf(nodes []node, name string) *redis.Client {
	for _, n := range nodes {
		if n.srv.Addr == name {
			return n.c
		}
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }

func fmtKey(prefix string, i int) string { return fmt.Sprintf("%s:%06d", prefix, i) }

// nilReply is the raw RESP2 nil bulk string.
const nilReply = "$-1\r\n"

// bulk is s as a raw RESP bulk string.
func bulk(s string) string { return "$" + itoa(len(s)) + "\r\n" + s + "\r\n" }
