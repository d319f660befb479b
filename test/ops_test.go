package test

// Operations: what Kubernetes and Prometheus see. /metrics is read with the
// real Prometheus text parser after known traffic; SIGTERM drains in-flight
// work, refuses new connections and takes /readyz down first.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"
)

func scrape(t *testing.T, adminAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return fams
}

// value returns the counter/gauge value, or the histogram's sample count, of
// the series of family name whose label lname is lval.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name, lname, lval string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := lname == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == lname && l.GetValue() == lval {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestOpsMetrics(t *testing.T) {
	e := startEnv(t)
	ctx := ctxT(t)
	const sets, gets = 37, 23
	for i := 0; i < sets; i++ {
		if err := e.j.Set(ctx, fmt.Sprintf("m:%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < gets; i++ {
		_ = e.j.Get(ctx, fmt.Sprintf("m:%d", i)).Err()
	}
	if err := e.j.MGet(ctx, "m:1", "m:2", "m:3", "m:4", "m:5", "m:6").Err(); err != nil {
		t.Fatal(err)
	}
	// go-redis's RESP3 handshake sends CLIENT MAINT_NOTIFICATIONS, which
	// Redis and jupiter answer as an unknown subcommand: count from here.
	unknown0, _ := value(t, scrape(t, e.c.Jupiter.AdminAddr), "jupiter_command_errors_total", "command", "unknown")
	_ = e.j.Do(ctx, "NOSUCHCOMMAND").Err()
	_ = e.j.Do(ctx, "GET").Err() // wrong arity: counted as a get error

	fams := scrape(t, e.c.Jupiter.AdminAddr)
	for _, tc := range []struct {
		name, cmd string
		want      float64
	}{
		{"jupiter_command_calls_total", "set", sets},
		{"jupiter_command_calls_total", "get", gets + 1},
		{"jupiter_command_errors_total", "get", 1},
		{"jupiter_command_calls_total", "mget", 1},
		{"jupiter_command_duration_seconds", "set", sets},
		{"jupiter_command_errors_total", "unknown", unknown0 + 1},
	} {
		got, ok := value(t, fams, tc.name, "command", tc.cmd)
		if !ok || got != tc.want {
			t.Errorf("%s{command=%q} = %v (present %v), want %v", tc.name, tc.cmd, got, ok, tc.want)
		}
	}
	// Per node: every request reached exactly one node; the sum over nodes
	// is the SETs + GETs + the MGET's per-node parts.
	var total float64
	for _, addr := range e.c.Addrs() {
		n, ok := value(t, fams, "jupiter_backend_requests_total", "node", addr)
		if !ok || n == 0 {
			t.Errorf("jupiter_backend_requests_total{node=%q} = %v (present %v)", addr, n, ok)
		}
		total += n
		if up, _ := value(t, fams, "jupiter_backend_up", "node", addr); up != 1 {
			t.Errorf("jupiter_backend_up{node=%q} = %v", addr, up)
		}
		if h, _ := value(t, fams, "jupiter_backend_duration_seconds", "node", addr); h != n {
			t.Errorf("node %s: %v latency samples for %v requests", addr, h, n)
		}
	}
	if total < sets+gets+1 || total > sets+gets+3 {
		t.Errorf("backend requests summed over nodes = %v, want %d..%d", total, sets+gets+1, sets+gets+3)
	}
	if v, ok := value(t, fams, "jupiter_ring_version", "", ""); !ok || v != 1 {
		t.Errorf("jupiter_ring_version = %v (present %v)", v, ok)
	}
	if v, ok := value(t, fams, "jupiter_client_connections", "", ""); !ok || v < 1 {
		t.Errorf("jupiter_client_connections = %v (present %v)", v, ok)
	}
}

func httpStatus(addr, path string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestOpsSIGTERMDrain: a request in flight when SIGTERM arrives still gets
// its reply; during the drain /readyz is 503 while /healthz is 200, and new
// connections are refused; the process then exits by itself.
func TestOpsSIGTERMDrain(t *testing.T) {
	e := startEnv(t, "--shutdown-timeout", "10s", "--request-timeout", "8s")
	j := e.c.Jupiter
	if s := httpStatus(j.AdminAddr, "/readyz"); s != 200 {
		t.Fatalf("/readyz before drain = %d", s)
	}
	key := e.keysPerNode(t, "drain:", 1)[0][0] // a key on node 0
	c := dialRaw(t, j.Addr)
	if r := c.do("SET", key, "before"); r.String() != "+OK" {
		t.Fatalf("SET = %v", r)
	}

	// Freeze node 0, send a GET for its key: the request is now in flight.
	e.c.Redis[0].Pause()
	c.send(encode("GET", key))
	time.Sleep(200 * time.Millisecond)

	j.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for httpStatus(j.AdminAddr, "/readyz") != 503 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not turn 503 after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := httpStatus(j.AdminAddr, "/healthz"); s != 200 {
		t.Errorf("/healthz during drain = %d, want 200 (alive)", s)
	}
	if nc, err := net.DialTimeout("tcp", j.Addr, 500*time.Millisecond); err == nil {
		_ = nc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte("PING\r\n"))
		buf := make([]byte, 16)
		n, rerr := nc.Read(buf)
		nc.Close()
		if rerr == nil && strings.HasPrefix(string(buf[:n]), "+PONG") {
			t.Error("a new connection was served during the drain")
		}
	}

	// The in-flight GET completes once the node answers again.
	e.c.Redis[0].Resume()
	if r := c.read(); r.String() != `"before"` {
		t.Errorf("in-flight GET during drain = %v, want \"before\"", r)
	}
	select {
	case <-j.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("jupiter did not exit after the drain")
	}
	if !strings.Contains(j.Log(), "jupiter stopped") {
		t.Errorf("no clean stop in the log:\n%s", j.Log())
	}
}
