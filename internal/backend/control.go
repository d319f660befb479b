package backend

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/redis/go-redis/v9"
)

// ping runs PING over a short-lived go-redis client (the control path).
// RESP2 and no CLIENT SETINFO: Memorystore blocks CLIENT.
func ping(ctx context.Context, addr string, timeout time.Duration, user, password string, tlsCfg *tls.Config) error {
	c := redis.NewClient(&redis.Options{
		Addr:            addr,
		Username:        user,
		Password:        password,
		TLSConfig:       tlsCfg,
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

// Pinger adapts Security.Ping to admin.Pinger.
type Pinger struct {
	Security Security
	Timeout  time.Duration
}

// Ping implements admin.Pinger.
func (p Pinger) Ping(ctx context.Context, addr string) error {
	return p.Security.Ping(ctx, addr, p.Timeout)
}
