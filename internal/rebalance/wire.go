package rebalance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// A wire carries one pipeline of commands to a node and hands back the
// node's replies as raw RESP, the form the move steps parse (move.go).
// Two kinds exist:
//
//   - rawPool, the migrator's: its own RESP2 connections, commands encoded
//     straight into one buffer and replies framed in place. With 200-key
//     batches a moved key cost the migrator's process 2.7-4.2 µs this way
//     against 6.4-7.7 µs through go-redis (BenchmarkMigrate's
//     migrator-µs/key): go-redis builds a Cmd, boxes every argument and
//     decodes every reply into a Go value, and at tens of thousands of keys
//     a second that, and the garbage it leaves, was most of the leader's
//     CPU during a rebalance. (Today's 32-key batches spend more per key
//     on round trips; bench/README.md.)
//   - clientWire, everyone else's (the proxy's per-request Ensure, a Node
//     that is not a go-redis client): the Node's own pipeline, its replies
//     encoded back to RESP so both kinds share one parser.
type wire interface {
	// roundTrip sends cmds as one pipeline and calls f with their replies,
	// in order. The replies are valid only during f. An error reply is a
	// reply ("-…"), not an error; err is a network, timeout or context
	// failure, after which the pipeline's effects are unknown.
	roundTrip(ctx context.Context, cmds []Command, f func(replies [][]byte) error) error
}

// clientWire sends through a Node's go-redis pipeline.
type clientWire struct{ n Node }

func (w clientWire) roundTrip(ctx context.Context, cmds []Command, f func([][]byte) error) error {
	pipe := w.n.Pipeline()
	cs := make([]*redis.Cmd, len(cmds))
	for i, c := range cmds {
		cs[i] = pipe.Do(ctx, c.args()...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !isReply(err) {
		return err
	}
	replies := make([][]byte, len(cs))
	for i, c := range cs {
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
			replies[i] = []byte("$-1\r\n")
		case err != nil && !isReply(err):
			return err
		case err != nil:
			replies[i] = appendValue(nil, err)
		default:
			replies[i] = appendValue(nil, v)
		}
	}
	return f(replies)
}

// appendValue encodes a go-redis reply value as RESP2: strings (bulk and
// status alike) as bulk strings, nil as a null bulk string, errors as error
// replies. It covers what the commands this package sends can return.
func appendValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "$-1\r\n"...)
	case string:
		dst = append(strconv.AppendInt(append(dst, '$'), int64(len(x)), 10), '\r', '\n')
		return append(append(dst, x...), '\r', '\n')
	case int64:
		return append(strconv.AppendInt(append(dst, ':'), x, 10), '\r', '\n')
	case []any:
		dst = append(strconv.AppendInt(append(dst, '*'), int64(len(x)), 10), '\r', '\n')
		for _, e := range x {
			dst = appendValue(dst, e)
		}
		return dst
	case error:
		msg := []byte(x.Error())
		msg = bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r"), []byte(" ")), []byte("\n"), []byte(" "))
		return append(append(append(dst, '-'), msg...), '\r', '\n')
	}
	return appendValue(dst, fmt.Errorf("rebalance: unexpected reply type %T", v))
}

// errRawPoolClosed is returned by a rawPool's roundTrip after close.
var errRawPoolClosed = errors.New("rebalance: raw connections closed")

// rawPool keeps RESP2 connections to one node, made from the Node's own
// go-redis options (address, dialer with its TLS, AUTH, DB, timeouts), so
// the migrator reaches a node exactly as its control client does. Each
// roundTrip holds one connection; concurrent ones (Config.Inflight > 1)
// get their own. A connection that failed mid-pipeline is closed, never
// reused: its remaining replies would be read by the next pipeline.
type rawPool struct {
	opt *redis.Options

	mu     sync.Mutex
	idle   []*rawConn
	closed bool
}

// rawPoolFor returns a raw pool for n if n is a go-redis client, else nil
// (the caller then uses clientWire).
func rawPoolFor(n Node) *rawPool {
	c, ok := n.(interface{ Options() *redis.Options })
	if !ok {
		return nil
	}
	opt := c.Options()
	if opt == nil || opt.Dialer == nil || opt.Addr == "" || opt.CredentialsProvider != nil ||
		opt.CredentialsProviderContext != nil || opt.StreamingCredentialsProvider != nil {
		return nil // credentials this pool would not reproduce: stay on go-redis
	}
	return &rawPool{opt: opt}
}

func (p *rawPool) roundTrip(ctx context.Context, cmds []Command, f func([][]byte) error) error {
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	replies, err := c.roundTrip(ctx, cmds)
	if err != nil {
		c.close()
		return err
	}
	ferr := f(replies)
	p.put(c)
	return ferr
}

func (p *rawPool) get(ctx context.Context) (*rawConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errRawPoolClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	return dialRaw(ctx, p.opt)
}

func (p *rawPool) put(c *rawConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= maxIdleRaw {
		c.close()
		return
	}
	c.shrink()
	p.idle = append(p.idle, c)
}

// maxIdleRaw bounds a pool's idle connections: enough for Inflight batches
// to every destination of a removed node, whose source pool they share.
const maxIdleRaw = 16

// close closes the idle connections; one in use is closed when returned.
func (p *rawPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.idle {
		c.close()
	}
	p.idle = nil
}

// rawConn is one connection of a rawPool.
type rawConn struct {
	nc      net.Conn
	timeout time.Duration // per round trip, when ctx has no earlier deadline
	out     []byte
	in      resp.Framer
	bounds  []int
	replies [][]byte
}

// Buffers above this are dropped between round trips. It is above a
// batch's default payload bound (DefaultBatchBytes) so a migration of big
// values reuses its buffers instead of growing them for every batch, and
// the pools are closed when the migrator stops.
const rawKeepBuf = 2*DefaultBatchBytes + 1<<20

func dialRaw(ctx context.Context, opt *redis.Options) (*rawConn, error) {
	timeout := max(opt.ReadTimeout, opt.WriteTimeout, opt.DialTimeout)
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := opt.Dialer(dctx, opt.Network, opt.Addr)
	if err != nil {
		return nil, err
	}
	c := &rawConn{nc: nc, timeout: timeout}
	var hello []Command
	switch {
	case opt.Username != "":
		hello = append(hello, cmd("AUTH", []byte(opt.Username), []byte(opt.Password)))
	case opt.Password != "":
		hello = append(hello, cmd("AUTH", []byte(opt.Password)))
	}
	if opt.DB != 0 {
		hello = append(hello, cmd("SELECT", strconv.AppendInt(nil, int64(opt.DB), 10)))
	}
	if len(hello) > 0 {
		replies, err := c.roundTrip(ctx, hello)
		if err == nil {
			for i, r := range replies {
				if !resp.IsOK(r) {
					err = fmt.Errorf("%s: %s", hello[i][0], bytes.TrimSpace(r))
					break
				}
			}
		}
		if err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// roundTrip writes cmds and reads exactly len(cmds) replies into c.in.
func (c *rawConn) roundTrip(ctx context.Context, cmds []Command) ([][]byte, error) {
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// ctx's cancellation interrupts the I/O at once (Abort, shutdown).
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c.out = c.out[:0]
	for _, cm := range cmds {
		c.out = resp.AppendCommand(c.out, cm...)
	}
	if _, err := c.nc.Write(c.out); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	// Replies are framed as offsets while the buffer may still grow, and
	// sliced once everything has arrived.
	c.in.Compact()
	c.bounds = c.bounds[:0]
	for range cmds {
		start, end, err := c.in.Next(c.nc.Read, 64<<10)
		if err != nil {
			return nil, c.ctxErr(ctx, err)
		}
		c.bounds = append(c.bounds, start, end)
	}
	if c.in.Buffered() {
		return nil, fmt.Errorf("rebalance: bytes after the last reply from %s", c.nc.RemoteAddr())
	}
	c.replies = c.replies[:0]
	for i := 0; i < len(c.bounds); i += 2 {
		c.replies = append(c.replies, c.in.Buf[c.bounds[i]:c.bounds[i+1]:c.bounds[i+1]])
	}
	return c.replies, nil
}

// ctxErr prefers ctx's cause to the i/o timeout its cancellation caused.
func (c *rawConn) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

func (c *rawConn) shrink() {
	c.in.Reset(rawKeepBuf)
	if cap(c.out) > rawKeepBuf {
		c.out = nil
	}
	c.replies = c.replies[:0]
}

func (c *rawConn) close() { _ = c.nc.Close() }
