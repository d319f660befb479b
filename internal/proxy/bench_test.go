package proxy

import (
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/slowlog"
)

var (
	benchValue = []byte("$5\r\nvalue\r\n")
	benchOK    = []byte("+OK\r\n")
)

func staticReply(out []byte, a [][]byte) []byte {
	if len(a) == 0 {
		return out
	}
	switch string(a[0]) { // no allocation: the conversion is only compared
	case "GET", "get":
		return append(out, benchValue...)
	case "MGET", "mget":
		out = append(out, '*')
		out = strconv.AppendInt(out, int64(len(a)-1), 10)
		out = append(out, '\r', '\n')
		for range a[1:] {
			out = append(out, benchValue...)
		}
		return out
	case "DEL", "del", "EXISTS", "exists":
		out = append(out, ':')
		out = strconv.AppendInt(out, int64(len(a)-1), 10)
		return append(out, '\r', '\n')
	case "SCAN", "scan":
		return append(out, "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"...)
	case "PING", "ping":
		return append(out, "+PONG\r\n"...)
	}
	return append(out, benchOK...)
}

// startStaticBackend is a minimal Redis stand-in: GET answers a 5-byte
// value, anything else +OK. It allocates nothing per command, so the
// benchmark's allocations are the proxy's (and the client's, also none).
func startStaticBackend(tb testing.TB) string {
	return serveTCP(tb, func(nc net.Conn) {
		buf := make([]byte, 0, 256<<10)
		out := make([]byte, 0, 64<<10)
		tmp := make([]byte, 64<<10)
		args := make([][]byte, 0, 16)
		for {
			n, err := nc.Read(tmp)
			if err != nil {
				return
			}
			buf = append(buf, tmp[:n]...)
			out = out[:0]
			off := 0
			for {
				m, a, _, _, perr := resp.ParseCommand(buf[off:], args, resp.DefaultLimits)
				args = a
				if perr != nil || m == 0 {
					break
				}
				off += m
				out = staticReply(out, a)
			}
			buf = buf[:copy(buf, buf[off:])]
			if _, err := nc.Write(out); err != nil {
				return
			}
		}
	})
}

// serveTCP listens on a loopback port and runs serve on each accepted
// connection (closing it after); the listener and every connection are
// closed, and the goroutines waited for, when the test ends.
func serveTCP(tb testing.TB, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				serve(nc)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// benchObservers are the observer settings the proxy benchmarks compare,
// in one run: all off; the defaults of jupiter serve (slow log at 10 ms,
// big keys at 1 MiB, hot keys sampling 1 in 100); and every command sampled.
var benchObservers = []struct {
	name string
	obs  func() admin.Observers
}{
	{"obs=off", func() admin.Observers { return admin.Observers{} }},
	{"obs=default", func() admin.Observers {
		return admin.Observers{Slowlog: slowlog.New(10*time.Millisecond, 128), BigKeys: hotkeys.NewBig(1<<20, 64),
			HotKeys: hotkeys.New(hotkeys.Config{Scale: 100})}
	}},
	{"obs=sample1", func() admin.Observers {
		return admin.Observers{Slowlog: slowlog.New(10*time.Millisecond, 128), BigKeys: hotkeys.NewBig(1<<20, 64),
			HotKeys: hotkeys.New(hotkeys.Config{Scale: 1})}
	}},
}

// startBenchProxy is startProxy with the given observers.
func startBenchProxy(b *testing.B, backends []string, obs admin.Observers) *testProxy {
	return startProxyRing(b, ringOf(b, 1, backends...), backend.Options{}, Options{HashPrefix: "hash=", Obs: obs})
}

// BenchmarkProxyGET: GET through an in-process proxy in front of one static
// backend, over real loopback TCP, in pipelines of 1 and 16, with each
// observer setting (benchObservers). One op is one command; allocs/op
// counts every allocation in the process per command (proxy, backend pool,
// and the test's client and backend, which allocate nothing in steady
// state).
func BenchmarkProxyGET(b *testing.B) {
	for _, o := range benchObservers {
		for _, depth := range []int{1, 16} {
			b.Run(o.name+"/pipeline"+strconv.Itoa(depth), func(b *testing.B) { benchGET(b, depth, o.obs()) })
		}
	}
}

func benchGET(b *testing.B, depth int, obs admin.Observers) {
	be := startStaticBackend(b)
	px := startBenchProxy(b, []string{be}, obs)
	c := dial(b, px.addr)
	var batch []byte
	for i := 0; i < depth; i++ {
		batch = resp.AppendCommand(batch, []byte("GET"), []byte("key:"+strconv.Itoa(i)))
	}
	want := len(benchValue) * depth
	rbuf := make([]byte, 64<<10)
	roundTrip := func() {
		if _, err := c.nc.Write(batch); err != nil {
			b.Fatal(err)
		}
		got := 0
		for got < want {
			n, err := c.nc.Read(rbuf)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
		if got != want {
			b.Fatalf("read %d bytes, want %d", got, want)
		}
	}
	for i := 0; i < 100; i++ { // warm buffers and connections
		roundTrip()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	batches := 0
	for i := 0; i < b.N; i += depth {
		roundTrip()
		batches++
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	cmds := float64(batches * depth)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/cmds, "allocs/cmd")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/cmds, "B/cmd")
}

// BenchmarkProxyMixed: a pipeline of 10 commands of the kinds the proxy
// handles differently (forwarded, split over 3 nodes and merged, answered
// locally, inline, SCAN) through three static backends, with each observer
// setting (benchObservers). allocs/cmd is per command of the pipeline.
func BenchmarkProxyMixed(b *testing.B) {
	for _, o := range benchObservers {
		b.Run(o.name, func(b *testing.B) { benchMixed(b, o.obs()) })
	}
}

func benchMixed(b *testing.B, obs admin.Observers) {
	var addrs []string
	for i := 0; i < 3; i++ {
		addrs = append(addrs, startStaticBackend(b))
	}
	px := startBenchProxy(b, addrs, obs)
	c := dial(b, px.addr)
	cmds := []string{
		cmd("GET", "k1"),
		cmd("SET", "k2", "value"),
		cmd("MGET", "a", "b", "c", "d", "e", "f"),
		cmd("MSET", "a", "1", "b", "2", "c", "3", "d", "4"),
		cmd("DEL", "a", "b", "c", "d"),
		"PING\r\n",
		cmd("PING", "msg"),
		cmd("ECHO", "hello"),
		cmd("SCAN", "0"),
		cmd("GET", "k1", "hash=grp"),
	}
	var batch []byte
	for _, s := range cmds {
		batch = append(batch, s...)
	}
	rbuf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 64<<10)
	roundTrip := func() {
		if _, err := c.nc.Write(batch); err != nil {
			b.Fatal(err)
		}
		got := 0
		for got < len(cmds) {
			n, err := resp.ReplyLen(rbuf)
			if err != nil {
				b.Fatal(err)
			}
			if n > 0 {
				if resp.IsError(rbuf[:n]) {
					b.Fatalf("reply %d: %q", got, rbuf[:n])
				}
				rbuf = rbuf[:copy(rbuf, rbuf[n:])]
				got++
				continue
			}
			m, err := c.nc.Read(tmp)
			if err != nil {
				b.Fatal(err)
			}
			rbuf = append(rbuf, tmp[:m]...)
		}
	}
	for i := 0; i < 100; i++ {
		roundTrip()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N*len(cmds)), "allocs/cmd")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N*len(cmds)), "B/cmd")
}
