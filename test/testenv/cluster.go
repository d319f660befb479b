package testenv

import (
	"strings"
	"testing"
)

// Cluster is a standalone jupiter in front of its own redis-server nodes.
type Cluster struct {
	Redis   []*Redis
	Jupiter *Jupiter
}

// StartCluster starts n redis-server nodes and one standalone jupiter with
// --backends set to them, plus args. Everything is stopped when the test ends
// (jupiter first).
func StartCluster(tb testing.TB, n int, args ...string) *Cluster {
	tb.Helper()
	c := &Cluster{}
	for i := 0; i < n; i++ {
		c.Redis = append(c.Redis, StartRedis(tb))
	}
	all := append([]string{"--backends", strings.Join(c.Addrs(), ",")}, args...)
	c.Jupiter = StartJupiter(tb, nil, all...)
	return c
}

// Addrs returns the backend addresses in the order given to --backends.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Redis))
	for i, r := range c.Redis {
		out[i] = r.Addr
	}
	return out
}
