package capacity

import (
	"context"
	"errors"

	"github.com/alphauslabs/jupiter/internal/nodeclients"
	"github.com/redis/go-redis/v9"
)

// ErrClosed is returned by Clients.Info after Close.
var ErrClosed = errors.New("capacity: INFO clients closed")

// Clients keeps one go-redis client per node for INFO: one connection
// each (a gatherer asks a node once per round), created on first use and
// closed when Retain no longer lists the node.
type Clients struct{ cache *nodeclients.Cache }

// NewClients returns an empty set; opts gives a node's client options (the
// data path's AUTH and TLS, RESP2, no CLIENT SETINFO: see
// rebalance.ClientOptions). The pool is cut to one connection, retries
// (dial and command) off, and the call's context bounds every read and
// write.
func NewClients(opts func(addr string) (*redis.Options, error)) *Clients {
	return &Clients{cache: nodeclients.New(func(addr string) (*redis.Options, error) {
		o, err := opts(addr)
		if err != nil {
			return nil, err
		}
		o.PoolSize, o.MinIdleConns, o.MaxIdleConns = 1, 0, 1
		o.MaxRetries, o.DialerRetries = -1, 1 // the next round is the retry
		o.ContextTimeoutEnabled = true
		return o, nil
	}, ErrClosed)}
}

// Info runs INFO (the default sections) on the node at addr.
func (c *Clients) Info(ctx context.Context, addr string) (string, error) {
	cl, err := c.cache.Get(addr)
	if err != nil {
		return "", err
	}
	return cl.Do(ctx, "INFO").Text()
}

// Retain closes the clients of nodes not in keep.
func (c *Clients) Retain(keep []string) { c.cache.Retain(keep) }

// Close closes every client; later Info calls fail with ErrClosed.
func (c *Clients) Close() { c.cache.Close() }
