package backend

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ping checks that a Redis node answers, over a short-lived go-redis client
// (the control path). RESP2 and no CLIENT SETINFO: Memorystore blocks CLIENT.
func Ping(ctx context.Context, addr string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{
		Addr:            addr,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     timeout,
		ReadTimeout:     timeout,
		WriteTimeout:    timeout,
		PoolSize:        1,
	})
	defer c.Close()
	return c.Ping(ctx).Err()
}

// Pinger adapts Ping to admin.Pinger.
type Pinger struct{ Timeout time.Duration }

// Ping implements admin.Pinger.
func (p Pinger) Ping(ctx context.Context, addr string) error { return Ping(ctx, addr, p.Timeout) }
