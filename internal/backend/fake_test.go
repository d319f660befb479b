package backend

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// action is what the fake does with one command.
type action struct {
	reply []byte        // written back (nil: no reply at all)
	delay time.Duration // before the reply is written
	close bool          // close the connection instead of replying
}

type handler func(args [][]byte) action

var okReply = []byte("+OK\r\n")

func okHandler(args [][]byte) action { return action{reply: okReply} }

// echoHandler answers "PING id" with the bulk "id", so every Call can check
// it got the reply to its own request.
func echoHandler(args [][]byte) action {
	if len(args) == 2 {
		return action{reply: []byte("$" + itoa(len(args[1])) + "\r\n" + string(args[1]) + "\r\n")}
	}
	return action{reply: []byte("+PONG\r\n")}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// fakeRedis is a scriptable RESP server on a loopback port, owned by the
// test: it parses commands with resp.ParseCommand and answers each with
// what the current handler says. It counts accepted connections, reads and
// commands, and can be stopped and started again on the same port.
type fakeRedis struct {
	t       testing.TB
	addr    string
	h       atomic.Pointer[handler]
	dribble atomic.Bool // write replies in small random pieces

	accepts  atomic.Int64
	reads    atomic.Int64
	commands atomic.Int64
	closes   atomic.Int64 // connections the peer closed

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newFake(t testing.TB, h handler) *fakeRedis {
	f := &fakeRedis{t: t, conns: map[net.Conn]struct{}{}}
	f.setHandler(h)
	f.start("127.0.0.1:0")
	t.Cleanup(f.stop)
	return f
}

func (f *fakeRedis) setHandler(h handler) { f.h.Store(&h) }

func (f *fakeRedis) start(addr string) {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after stop
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("fake redis listen %s: %v", addr, err)
	}
	f.mu.Lock()
	f.ln = ln
	f.addr = ln.Addr().String()
	f.mu.Unlock()
	f.wg.Add(1)
	go f.accept(ln)
}

// stop closes the listener and every connection, and waits for the fake's
// goroutines.
func (f *fakeRedis) stop() {
	f.mu.Lock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// restart listens again on the same port.
func (f *fakeRedis) restart() { f.start(f.addr) }

func (f *fakeRedis) accept(ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f.accepts.Add(1)
		f.mu.Lock()
		if f.ln != ln {
			// stop ran between Accept and here: it closed the conns it
			// knew, so this one must be closed too or stop waits forever.
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *fakeRedis) serve(c net.Conn) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		c.Close()
	}()
	base := make([]byte, 0, 64<<10)
	buf := base
	tmp := make([]byte, 64<<10)
	var out []byte
	var args [][]byte
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for {
		n, err := c.Read(tmp)
		if n > 0 {
			f.reads.Add(1)
			buf = append(buf, tmp[:n]...)
		}
		if err != nil {
			f.closes.Add(1)
			return
		}
		out = out[:0]
		for {
			m, a, _, _, perr := resp.ParseCommand(buf, args, resp.DefaultLimits)
			args = a
			if perr != nil {
				f.t.Errorf("fake redis: bad command: %v", perr)
				return
			}
			if m == 0 {
				break
			}
			f.commands.Add(1)
			act := (*f.h.Load())(args)
			buf = buf[m:]
			if act.delay > 0 {
				if !f.write(c, out, rng) {
					return
				}
				out = out[:0]
				time.Sleep(act.delay)
			}
			if act.close {
				f.write(c, out, rng)
				return
			}
			out = append(out, act.reply...)
		}
		buf = append(base[:0], buf...) // memmove: keep the unparsed tail at the front
		if !f.write(c, out, rng) {
			return
		}
	}
}

func (f *fakeRedis) write(c net.Conn, out []byte, rng *rand.Rand) bool {
	if len(out) == 0 {
		return true
	}
	if !f.dribble.Load() {
		_, err := c.Write(out)
		return err == nil
	}
	for len(out) > 0 {
		k := 1 + rng.IntN(min(len(out), 9))
		if _, err := c.Write(out[:k]); err != nil {
			return false
		}
		out = out[k:]
	}
	return true
}

// slowConn delays every Write, so submitters pile up behind the flusher.
type slowConn struct {
	net.Conn
	delay  time.Duration
	writes *atomic.Int64
}

func (c slowConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	time.Sleep(c.delay)
	return c.Conn.Write(b)
}

func slowDialer(delay time.Duration, writes *atomic.Int64) func(string, time.Duration) (net.Conn, error) {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		nc, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		return slowConn{Conn: nc, delay: delay, writes: writes}, nil
	}
}
