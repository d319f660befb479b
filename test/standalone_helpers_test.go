package test

// Shared helpers of the standalone end-to-end tests (standalone_*_test.go):
// a cluster of real redis-server nodes behind the real jupiter binary, go-redis
// clients on jupiter and directly on every node (to check where keys really
// live), and a raw RESP connection for byte-level checks with deadlines.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// env is one standalone cluster and clients on it.
type env struct {
	c     *testenv.Cluster
	j     *redis.Client   // through jupiter, default options
	nodes []*redis.Client // directly on each backend, same order as c.Redis
}

// startEnv starts 3 redis-server nodes and a standalone jupiter (plus args).
func startEnv(t *testing.T, args ...string) *env {
	t.Helper()
	c := testenv.StartCluster(t, 3, args...)
	e := &env{c: c, j: newClient(t, c.Jupiter.Addr)}
	for _, r := range c.Redis {
		e.nodes = append(e.nodes, newClient(t, r.Addr))
	}
	return e
}

// newClient returns a go-redis client with default options (HELLO 3, CLIENT
// SETINFO, pool, retries), closed when the test ends.
func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newClientWith returns a go-redis client with opts, closed when the test ends.
func newClientWith(t *testing.T, opts *redis.Options) *redis.Client {
	t.Helper()
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// owners returns, for each key, the index of the one node holding it, checked
// directly on every backend. It fails the test when a key is on no node or on
// more than one.
func (e *env) owners(t *testing.T, keys []string) []int {
	t.Helper()
	ctx := ctxT(t)
	hits := make([][]bool, len(e.nodes))
	for n, nc := range e.nodes {
		hits[n] = make([]bool, len(keys))
		for lo := 0; lo < len(keys); lo += 500 {
			hi := min(lo+500, len(keys))
			cmds, err := nc.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys[lo:hi] {
					p.Exists(ctx, k)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("EXISTS on node %s: %v", e.c.Redis[n].Addr, err)
			}
			for i, c := range cmds {
				hits[n][lo+i] = c.(*redis.IntCmd).Val() == 1
			}
		}
	}
	out := make([]int, len(keys))
	for i, k := range keys {
		out[i] = -1
		count := 0
		for n := range e.nodes {
			if hits[n][i] {
				count++
				out[i] = n
			}
		}
		if count != 1 {
			t.Fatalf("key %q exists on %d nodes, want exactly 1", k, count)
		}
	}
	return out
}

// owner is owners for one key.
func (e *env) owner(t *testing.T, key string) int {
	t.Helper()
	return e.owners(t, []string{key})[0]
}

// keysPerNode writes prefix0, prefix1… through jupiter until every node holds
// at least per of them, deletes them again, and returns them grouped by the
// node that held them. Used to build commands whose keys provably span nodes.
func (e *env) keysPerNode(t *testing.T, prefix string, per int) [][]string {
	t.Helper()
	ctx := ctxT(t)
	out := make([][]string, len(e.nodes))
	for round := 0; round < 20; round++ {
		var keys []string
		for i := 0; i < 32*per; i++ {
			keys = append(keys, fmt.Sprintf("%s%d:%d", prefix, round, i))
		}
		if _, err := e.j.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Set(ctx, k, "x", 0)
			}
			return nil
		}); err != nil {
			t.Fatalf("SET through jupiter: %v", err)
		}
		own := e.owners(t, keys)
		if err := e.j.Del(ctx, keys...).Err(); err != nil {
			t.Fatalf("DEL through jupiter: %v", err)
		}
		for i, k := range keys {
			if len(out[own[i]]) < per {
				out[own[i]] = append(out[own[i]], k)
			}
		}
		done := true
		for _, ks := range out {
			done = done && len(ks) == per
		}
		if done {
			return out
		}
	}
	t.Fatalf("could not find %d keys on every node: %v", per, out)
	return nil
}

// dbsizes returns DBSIZE of every node, read directly.
func (e *env) dbsizes(t *testing.T) []int64 {
	t.Helper()
	ctx := ctxT(t)
	out := make([]int64, len(e.nodes))
	for i, nc := range e.nodes {
		n, err := nc.DBSize(ctx).Result()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", e.c.Redis[i].Addr, err)
		}
		out[i] = n
	}
	return out
}

// ---- raw RESP connection ----------------------------------------------------

// reply is one decoded RESP2 reply.
type reply struct {
	kind byte   // '+', '-', ':', '$', '*'
	str  string // simple string, error text (without '-') or bulk body
	n    int64  // integer
	null bool   // $-1 or *-1
	arr  []reply
}

func (r reply) String() string {
	switch r.kind {
	case '+':
		return "+" + r.str
	case '-':
		return "-" + r.str
	case ':':
		return ":" + strconv.FormatInt(r.n, 10)
	case '$':
		if r.null {
			return "(nil)"
		}
		return strconv.Quote(r.str)
	case '*':
		if r.null {
			return "(nil array)"
		}
		parts := make([]string, len(r.arr))
		for i, a := range r.arr {
			parts[i] = a.String()
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("reply(%q)", r.kind)
}

// rawConn is a plain TCP connection speaking RESP by hand; every read and
// write has a deadline so a hang fails fast instead of stalling the suite.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

const rawDeadline = 2 * time.Second

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, rawDeadline)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 1<<16)}
}

// send writes raw bytes.
func (c *rawConn) send(b string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(rawDeadline))
	if _, err := io.WriteString(c.nc, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one reply within the deadline, failing the test on any error.
func (c *rawConn) read() reply {
	c.t.Helper()
	r, err := c.tryRead()
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return r
}

// tryRead reads one reply within the deadline.
func (c *rawConn) tryRead() (reply, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(rawDeadline))
	return readReply(c.br)
}

// do sends one multibulk command and reads its reply.
func (c *rawConn) do(args ...string) reply {
	c.t.Helper()
	c.send(encode(args...))
	return c.read()
}

// expectClosed asserts the server closes the connection (EOF or reset) within
// the deadline, without sending anything more.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(rawDeadline))
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.Peek(c.br.Buffered())
		c.t.Fatalf("connection still open: read %q%q, want EOF", b, rest)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection not closed within %v", rawDeadline)
	}
}

func encode(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

func readReply(br *bufio.Reader) (reply, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return reply{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return reply{}, fmt.Errorf("malformed reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	r := reply{kind: kind}
	switch kind {
	case '+', '-':
		r.str = body
	case ':':
		r.n, err = strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return r, fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			r.null = true
			return r, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return r, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return r, fmt.Errorf("bulk of %d bytes not followed by CRLF", n)
		}
		r.str = string(buf[:n])
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return r, fmt.Errorf("bad array length %q", body)
		}
		if n < 0 {
			r.null = true
			return r, nil
		}
		for i := 0; i < n; i++ {
			e, err := readReply(br)
			if err != nil {
				return r, err
			}
			r.arr = append(r.arr, e)
		}
	default:
		return r, fmt.Errorf("unexpected reply type in %q", line)
	}
	return r, err
}

// wantErrPrefix fails unless r is an error reply starting with prefix.
func wantErrPrefix(t *testing.T, what string, r reply, prefix string) {
	t.Helper()
	if r.kind != '-' || !strings.HasPrefix(r.str, prefix) {
		t.Errorf("%s: got %v, want an error starting with %q", what, r, prefix)
	}
}
