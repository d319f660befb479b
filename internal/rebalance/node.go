package rebalance

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/nodeclients"
)

// Node is the connection to one Redis node this package needs. A
// *redis.Client satisfies it; it must point at the node's PRIMARY endpoint,
// never a Memorystore read endpoint (a lagging replica would show deleted or
// old values, rebalance.md §2.4).
type Node interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
	Pipeline() redis.Pipeliner
	TxPipeline() redis.Pipeliner
}

var _ Node = (*redis.Client)(nil)

// DefaultTimeout is NewClient's dial/read/write timeout when none is given.
// It is generous because one pipelined batch may carry several MB of DUMP
// payloads.
const DefaultTimeout = 10 * time.Second

// NewClient returns a control-path go-redis client for the node at addr,
// with the same AUTH and TLS as the data path (sec), speaking RESP2 and
// never sending CLIENT SETINFO (Memorystore blocks CLIENT). Retries are
// off: every mover operation is idempotent and the Migrator retries whole
// batches itself with backoff, while WriteMarked/UpdateMarked must not be
// replayed blindly (an INCR whose reply was lost would be applied twice).
// timeout 0 means DefaultTimeout.
func NewClient(addr string, sec backend.Security, timeout time.Duration) (*redis.Client, error) {
	o, err := ClientOptions(addr, sec, timeout)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

// ClientOptions are NewClient's options (pool of 8 connections), for a
// caller that needs to adjust them (the proxy uses a larger pool) before
// redis.NewClient. Keep Protocol, DisableIdentity and MaxRetries as they are.
func ClientOptions(addr string, sec backend.Security, timeout time.Duration) (*redis.Options, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := sec.TLSConfig(host)
	if err != nil {
		return nil, err
	}
	pw := sec.Password
	if p, ok := sec.Passwords[addr]; ok {
		pw = p
	}
	return &redis.Options{
		Addr:            sec.Route(addr),
		Username:        sec.Username,
		Password:        pw,
		TLSConfig:       tlsCfg,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     timeout,
		ReadTimeout:     timeout,
		WriteTimeout:    timeout,
		PoolSize:        8,
	}, nil
}

// LoadScript runs SCRIPT LOAD of RestoreScript on node. Movers load it
// lazily (on -NOSCRIPT) anyway; calling this in PREPARE on every destination
// doubles as the pre-flight check that EVALSHA is allowed there.
func LoadScript(ctx context.Context, node Node) error {
	sha, err := node.Do(ctx, ScriptLoadCommand().args()...).Text()
	if err != nil {
		return err
	}
	if sha != RestoreScriptSHA {
		return errScriptSHA(sha)
	}
	return nil
}

// ErrClientsClosed is returned by Clients.Get after Close.
var ErrClientsClosed = errors.New("rebalance: control clients closed (shutting down)")

// Clients caches one control-path client per node address (ClientOptions:
// the data path's AUTH/TLS, RESP2, no CLIENT commands), created on first
// use. The leader's migrator and the proxy's rebalance path each keep one.
type Clients struct{ cache *nodeclients.Cache }

// NewClients returns an empty cache; poolSize 0 keeps ClientOptions' pool.
func NewClients(sec backend.Security, timeout time.Duration, poolSize int) *Clients {
	return newClients(sec, timeout, poolSize, 2)
}

// NewClients3 is NewClients for clients speaking RESP3 (HELLO 3): the
// proxy's rebalance path answers RESP3 clients with their raw replies.
func NewClients3(sec backend.Security, timeout time.Duration, poolSize int) *Clients {
	return newClients(sec, timeout, poolSize, 3)
}

func newClients(sec backend.Security, timeout time.Duration, poolSize, proto int) *Clients {
	return &Clients{cache: nodeclients.New(func(addr string) (*redis.Options, error) {
		o, err := ClientOptions(addr, sec, timeout)
		if err != nil {
			return nil, err
		}
		if poolSize > 0 {
			o.PoolSize = poolSize
		}
		o.Protocol = proto
		return o, nil
	}, ErrClientsClosed)}
}

// Get returns the client for addr, creating it on first use.
func (c *Clients) Get(addr string) (*redis.Client, error) { return c.cache.Get(addr) }

// Node is Get as a Node (what cluster.Options.ControlNode wants).
func (c *Clients) Node(addr string) (Node, error) { return c.Get(addr) }

// DBSize counts the keys on the node at addr.
func (c *Clients) DBSize(ctx context.Context, addr string) (int64, error) {
	cl, err := c.Get(addr)
	if err != nil {
		return 0, err
	}
	return cl.DBSize(ctx).Result()
}

// Close closes every client; later Gets fail with ErrClientsClosed.
func (c *Clients) Close() { c.cache.Close() }
