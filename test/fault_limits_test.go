package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// TestFaultMaxClients: with --max-clients 5 the sixth connection gets
// "-ERR max number of clients reached" and is closed, the first five keep
// working, and a freed slot is usable again.
func TestFaultMaxClients(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	j := testenv.StartJupiter(t, nil, "--backends", r.Addr, "--max-clients", "5")
	secWaitConns(t, j.AdminAddr, 0) // StartJupiter's probe connection is gone
	var conns []*rawConn
	for i := 0; i < 5; i++ {
		c := dialRaw(t, j.Addr)
		if r := c.do("PING"); r.String() != "+PONG" {
			t.Fatalf("client %d PING = %v", i, r)
		}
		conns = append(conns, c)
	}
	sixth := dialRaw(t, j.Addr)
	if r, err := sixth.tryRead(); err != nil || r.String() != "-ERR max number of clients reached" {
		t.Errorf("sixth connection read %v, %v; want -ERR max number of clients reached", r, err)
	}
	sixth.expectClosed()
	for i, c := range conns {
		k := fmt.Sprint("maxc:", i)
		if r := c.do("SET", k, "v"); r.String() != "+OK" {
			t.Errorf("client %d SET after the refusal = %v", i, r)
		}
		if r := c.do("GET", k); r.str != "v" {
			t.Errorf("client %d GET after the refusal = %v", i, r)
		}
	}
	if r := conns[0].do("INFO", "stats"); !strings.Contains(r.str, "rejected_connections:1") {
		t.Errorf("INFO stats = %q, want rejected_connections:1", r.str)
	}
	conns[4].nc.Close()
	secWaitConns(t, j.AdminAddr, 4)
	again := dialRaw(t, j.Addr)
	if r := again.do("PING"); r.String() != "+PONG" {
		t.Errorf("PING on a freed slot = %v", r)
	}
}

// TestFaultIdleTimeout: --idle-timeout 500ms closes a client that sends
// nothing (after a command, or from the start) within about that time,
// while a client sending a command every 100ms stays connected.
//
// Not parallel: it measures times.
func TestFaultIdleTimeout(t *testing.T) {
	r := testenv.StartRedis(t)
	j := testenv.StartJupiter(t, nil, "--backends", r.Addr, "--idle-timeout", "500ms")
	closedAfter := func(c *rawConn, since time.Time) (time.Duration, error) {
		_ = c.nc.SetReadDeadline(time.Now().Add(4 * time.Second))
		_, err := c.br.ReadByte()
		return time.Since(since), err
	}
	idle := dialRaw(t, j.Addr)
	silent := dialRaw(t, j.Addr)
	silentAt := time.Now()
	active := dialRaw(t, j.Addr)
	if r := idle.do("PING"); r.String() != "+PONG" {
		t.Fatal(r)
	}
	idleAt := time.Now()
	stop := make(chan struct{})
	activeErr := make(chan error, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				activeErr <- nil
				return
			case <-tick.C:
			}
			_ = active.nc.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := active.nc.Write([]byte(encode("PING"))); err != nil {
				activeErr <- err
				return
			}
			if r, err := readReply(active.br); err != nil || r.String() != "+PONG" {
				activeErr <- fmt.Errorf("PING = %v, %v", r, err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for name, c := range map[string]*rawConn{"idle after a command": idle, "silent from the start": silent} {
		since := idleAt
		if c == silent {
			since = silentAt
		}
		wg.Add(1)
		go func(name string, c *rawConn, since time.Time) {
			defer wg.Done()
			d, err := closedAfter(c, since)
			var ne net.Error
			switch {
			case err == nil:
				t.Errorf("%s: read data, want the connection closed", name)
			case errors.As(err, &ne) && ne.Timeout():
				t.Errorf("%s: still open after %v", name, d.Round(time.Millisecond))
			case d < 400*time.Millisecond || d > 2*time.Second:
				t.Errorf("%s: closed after %v, want about 500ms (0.4–2s)", name, d.Round(time.Millisecond))
			}
		}(name, c, since)
	}
	wg.Wait()
	time.Sleep(time.Until(idleAt.Add(2 * time.Second)))
	close(stop)
	if err := <-activeErr; err != nil {
		t.Errorf("active client (a PING every 100ms) was disturbed: %v", err)
	}
}

// TestFaultIdleTimeoutStuckReader: a client that pipelines many commands
// and then stops reading (a hung consumer) leaves jupiter blocked writing
// replies to it. --idle-timeout must close it like any other idle client
// (redis-server does: its timeout counts from the last interaction, and a
// blocked write is none), or the session goroutine and a whole batch of
// replies stay pinned for as long as the peer keeps the socket open.
func TestFaultIdleTimeoutStuckReader(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	j := testenv.StartJupiter(t, nil, "--backends", r.Addr, "--idle-timeout", "1s")
	setup := newClient(t, j.Addr)
	if err := setup.Set(ctxT(t), "stuck:big", strings.Repeat("x", 4096), 0).Err(); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	secWaitConns(t, j.AdminAddr, 0)
	base := secBaseline(t, j.AdminAddr)

	nc, err := net.Dial("tcp", j.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var pipe bytes.Buffer
	for i := 0; i < 20000; i++ {
		pipe.WriteString(encode("GET", "stuck:big")) // 80 MB of replies
	}
	_ = nc.SetWriteDeadline(time.Now().Add(3 * time.Second))
	_, _ = nc.Write(pipe.Bytes()) // may block once jupiter stops reading; never read a byte
	start := time.Now()
	if msg := secWaitFor(6*time.Second, func() string {
		if n := secMetrics(t, j.AdminAddr)["jupiter_client_connections"]; n != 0 {
			return fmt.Sprintf("jupiter_client_connections = %v", n)
		}
		return ""
	}); msg != "" {
		t.Errorf("a client that stopped reading is still connected %v later with --idle-timeout 1s (%s)",
			time.Since(start).Round(time.Second), msg)
	}
	secWaitGoroutines(t, j.AdminAddr, base+2, 2*time.Second, "after the stuck reader")
}

// TestFaultStalledBackend freezes one node (SIGSTOP) under 200 concurrent
// requests with --request-timeout 1s: they fail within about the timeout,
// naming the node; jupiter's goroutines grow by about the 200 client
// sessions and no more (no pile-up of dials, flushers or readers); and after
// SIGCONT the node serves again and go_goroutines returns near the baseline.
//
// Not parallel: it measures times.
func TestFaultStalledBackend(t *testing.T) {
	e := startEnv(t, "--request-timeout", "1s")
	ctx := ctxT(t)
	j := e.c.Jupiter
	spread := e.keysPerNode(t, "stall:", 2)
	for _, ks := range spread {
		for _, k := range ks {
			if err := e.j.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	const stalled = 1
	addr := e.c.Redis[stalled].Addr
	key := spread[stalled][0]
	base := secBaseline(t, j.AdminAddr)
	t.Logf("go_goroutines baseline %d", base)

	e.c.Redis[stalled].Pause()
	const n = 200
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.DialTimeout("tcp", j.Addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	peak := 0
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		var slow, wrong atomic.Int32
		var sample atomic.Value
		for _, c := range conns {
			wg.Add(1)
			go func(c net.Conn) {
				defer wg.Done()
				start := time.Now()
				_ = c.SetDeadline(time.Now().Add(6 * time.Second))
				r, err := roundTrip(c, encode("GET", key))
				if time.Since(start) > 2500*time.Millisecond {
					slow.Add(1)
				}
				if err != nil || r.kind != '-' || !strings.Contains(r.str, addr) {
					wrong.Add(1)
					sample.Store(fmt.Sprintf("%v, %v", r, err))
				}
			}(c)
		}
		time.Sleep(400 * time.Millisecond)
		g := secGoroutines(t, j.AdminAddr)
		peak = max(peak, g)
		healthyStart := time.Now()
		if v, err := e.j.Get(ctx, spread[0][0]).Result(); err != nil || v != "v" {
			t.Errorf("GET on a healthy node during the stall = %q, %v", v, err)
		} else if d := time.Since(healthyStart); d > 500*time.Millisecond {
			t.Errorf("GET on a healthy node during the stall took %v", d)
		}
		wg.Wait()
		if s, w := slow.Load(), wrong.Load(); s > 0 || w > 0 {
			t.Errorf("round %d: %d of %d requests took over 2.5s, %d did not get an error naming %s (e.g. %v)",
				round, s, n, w, addr, sample.Load())
		}
	}
	t.Logf("go_goroutines during the stall: peak %d (baseline %d + %d client sessions)", peak, base, n)
	if peak > base+n+40 {
		t.Errorf("go_goroutines peaked at %d during the stall, want ≤ baseline %d + %d sessions + 40", peak, base, n)
	}

	e.c.Redis[stalled].Resume()
	if msg := secWaitFor(6*time.Second, func() string {
		_ = conns[0].SetDeadline(time.Now().Add(3 * time.Second))
		r, err := roundTrip(conns[0], encode("GET", key))
		if err != nil || r.str != "v" {
			return fmt.Sprintf("GET %s = %v, %v", key, r, err)
		}
		return ""
	}); msg != "" {
		t.Fatalf("after SIGCONT: %s", msg)
	}
	for _, c := range conns {
		c.Close()
	}
	after := secWaitGoroutines(t, j.AdminAddr, base+20, 5*time.Second, "after the stall and recovery")
	t.Logf("go_goroutines after recovery: %d", after)
}

// roundTrip writes one command and reads its reply on a bare connection.
func roundTrip(c net.Conn, cmd string) (reply, error) {
	if _, err := io.WriteString(c, cmd); err != nil {
		return reply{}, err
	}
	return readReply(bufio.NewReader(c))
}

// TestFaultClientDisconnectMidPipeline: clients that write 10k commands
// (some ending in half a command) and close without reading must cost
// jupiter nothing: go_goroutines and the connection count return to the
// baseline, and a client working meanwhile sees no error.
func TestFaultClientDisconnectMidPipeline(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	j := e.c.Jupiter
	other := newClientWith(t, &redis.Options{Addr: j.Addr, PoolSize: 1})
	if err := other.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	base := secBaseline(t, j.AdminAddr)

	stop := make(chan struct{})
	otherErr := make(chan error, 1)
	var otherOps atomic.Int64
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				otherErr <- nil
				return
			default:
			}
			k := fmt.Sprint("mid:other:", i%50)
			if err := other.Set(ctx, k, i, 0).Err(); err != nil {
				otherErr <- err
				return
			}
			if v, err := other.Get(ctx, k).Int(); err != nil || v != i {
				otherErr <- fmt.Errorf("GET %s = %d, %v, want %d", k, v, err, i)
				return
			}
			otherOps.Add(1)
		}
	}()

	var pipe bytes.Buffer
	for i := 0; i < 10000; i++ {
		if i%2 == 0 {
			pipe.WriteString(encode("SET", fmt.Sprint("mid:", i%500), "value"))
		} else {
			pipe.WriteString(encode("MGET", fmt.Sprint("mid:", i%500), fmt.Sprint("mid:", (i+7)%500), "mid:x"))
		}
	}
	half := encode("SET", "mid:half", strings.Repeat("v", 1000))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			nc, err := net.DialTimeout("tcp", j.Addr, 2*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = nc.Write(pipe.Bytes())
			if i%2 == 1 {
				_, _ = io.WriteString(nc, half[:len(half)/2]) // cut mid-command
			}
			if i%4 == 0 {
				_ = nc.(*net.TCPConn).SetLinger(0) // reset instead of FIN
			}
			nc.Close()
		}(i)
	}
	wg.Wait()
	secWaitConns(t, j.AdminAddr, 1)
	g := secWaitGoroutines(t, j.AdminAddr, base+5, 5*time.Second, "after 20 clients vanished mid-pipeline")
	close(stop)
	if err := <-otherErr; err != nil {
		t.Errorf("a client working meanwhile failed: %v", err)
	}
	t.Logf("go_goroutines baseline %d, after %d; the other client did %d SET+GET meanwhile", base, g, otherOps.Load())
	if v, err := e.j.Get(ctx, "mid:0").Result(); err != nil || v != "value" {
		t.Errorf("GET mid:0 = %q, %v", v, err)
	}
}

// TestFaultBackendRestart kills one node and restarts it empty: its keys
// fail while it is down and work again after, without restarting jupiter,
// and the ring (JUPITER STATUS ring_version and nodes) is never changed
// behind the operator's back.
func TestFaultBackendRestart(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	j := e.c.Jupiter
	c := newClientWith(t, &redis.Options{Addr: j.Addr, MaxRetries: -1})
	spread := e.keysPerNode(t, "restart:", 3)
	base := secBaseline(t, j.AdminAddr)
	before := secStatus(t, c)
	const dead = 2
	addr := e.c.Redis[dead].Addr

	e.c.Redis[dead].Stop()
	for _, k := range spread[dead] {
		wantNodeError(t, "SET "+k+" on the dead node", c.Set(ctx, k, "v", 0).Err(), addr, nil)
	}
	for _, k := range spread[0] {
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Errorf("SET %s on a live node: %v", k, err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // long enough for any health loop to act
	down := secStatus(t, c)
	if down["ring_version"] != before["ring_version"] || down["nodes"] != before["nodes"] || down["nodes_up"] != "2" {
		t.Errorf("with a node down: status %v, before %v; want the same ring, nodes_up:2", down, before)
	}

	e.c.Redis[dead].Restart()
	if msg := secWaitFor(5*time.Second, func() string {
		for _, k := range spread[dead] {
			if err := c.Set(ctx, k, "back", 0).Err(); err != nil {
				return err.Error()
			}
		}
		return ""
	}); msg != "" {
		t.Fatalf("keys of the restarted node: %s", msg)
	}
	for _, k := range spread[dead] {
		if v, err := e.nodes[dead].Get(ctx, k).Result(); err != nil || v != "back" {
			t.Errorf("restarted node holds %s = %q, %v", k, v, err)
		}
	}
	after := secStatus(t, c)
	if after["ring_version"] != before["ring_version"] || after["nodes"] != before["nodes"] {
		t.Errorf("ring changed by a node restart: %v -> %v", before, after)
	}
	if msg := secWaitFor(3*time.Second, func() string {
		if st := secStatus(t, c); st["nodes_up"] != "3" {
			return "nodes_up = " + st["nodes_up"]
		}
		return ""
	}); msg != "" {
		t.Errorf("after restart: %s, want 3", msg)
	}
	secWaitGoroutines(t, j.AdminAddr, base+20, 5*time.Second, "after the node restart")
}
