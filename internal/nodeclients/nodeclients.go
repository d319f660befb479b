// Package nodeclients caches one go-redis client per backend node address,
// for the control work that is not on the data path (the migrator and the
// proxy's rebalance path, the capacity gatherer's INFO). Clients are made
// on first use from the caller's options, dropped with Retain when their
// node leaves the ring, and all closed by Close; a cache that was closed
// refuses new clients, so a shutdown does not race a late caller into
// opening connections again.
package nodeclients

import (
	"sync"

	"github.com/redis/go-redis/v9"
)

// Cache is the per-node client cache. Safe for concurrent use.
type Cache struct {
	opts      func(addr string) (*redis.Options, error)
	errClosed error

	mu      sync.Mutex
	clients map[string]*redis.Client
	closed  bool
}

// New returns an empty cache: opts gives a node's client options, and Get
// answers errClosed once Close has run.
func New(opts func(addr string) (*redis.Options, error), errClosed error) *Cache {
	return &Cache{opts: opts, errClosed: errClosed, clients: map[string]*redis.Client{}}
}

// Get returns the client for addr, creating it on first use.
func (c *Cache) Get(addr string) (*redis.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, c.errClosed
	}
	if cl := c.clients[addr]; cl != nil {
		return cl, nil
	}
	o, err := c.opts(addr)
	if err != nil {
		return nil, err
	}
	cl := redis.NewClient(o)
	c.clients[addr] = cl
	return cl, nil
}

// Retain closes the clients of nodes not in keep.
func (c *Cache) Retain(keep []string) {
	want := make(map[string]bool, len(keep))
	for _, a := range keep {
		want[a] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, cl := range c.clients {
		if !want[a] {
			_ = cl.Close()
			delete(c.clients, a)
		}
	}
}

// Close closes every client; later Gets fail.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for a, cl := range c.clients {
		_ = cl.Close()
		delete(c.clients, a)
	}
}
