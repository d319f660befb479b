package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"refused", syscall.ECONNREFUSED, true},
		{"refused in an OpError", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"refused, wrapped", fmt.Errorf("probe: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		{"timeout", context.DeadlineExceeded, false},
		{"host unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, false},
		{"network unreachable", syscall.ENETUNREACH, false},
		{"reset", syscall.ECONNRESET, false},
		{"other", errors.New("connection refused"), false}, // the text is not the errno
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := refused(c.err); got != c.want {
				t.Fatalf("refused(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

// TestDialRefused: only a refused connection to an IP:port says "gone".
func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	_, port, _ := net.SplitHostPort(closedAddr)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		addr string
		want bool
	}{
		{"listening", context.Background(), ln.Addr().String(), false},
		{"nothing listens", context.Background(), closedAddr, true},
		{"a name, not an IP", context.Background(), "localhost:" + port, false},
		{"not host:port", context.Background(), "pod-a", false},
		{"unspecified", context.Background(), "0.0.0.0:" + port, false},
		{"context already done", cancelled, closedAddr, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(c.ctx, ProbeTimeout)
			defer cancel()
			if got := dialRefused(ctx, c.addr); got != c.want {
				t.Fatalf("dialRefused(%s) = %v, want %v", c.addr, got, c.want)
			}
		})
	}
}

func TestProbeDue(t *testing.T) {
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, c := range []struct {
		name    string
		pending []string
		refused map[string]bool
		probed  map[string]time.Time
		suspect map[string]bool
		waited  time.Duration
		want    []string
	}{
		{"nothing pending", nil, nil, nil, nil, time.Minute, nil},
		{"too early", []string{"a", "b"}, nil, nil, nil, ProbeAfter - 1, nil},
		{"due", []string{"a", "b"}, nil, nil, nil, ProbeAfter, []string{"a", "b"}},
		{"suspect at once", []string{"a", "b"}, nil, nil, map[string]bool{"b": true}, 0, []string{"b"}},
		{"already refused", []string{"a", "b"}, map[string]bool{"a": true}, nil, nil, time.Minute, []string{"b"}},
		{"probed recently", []string{"a", "b"}, nil, map[string]time.Time{"a": ago(ProbeEvery - time.Millisecond)}, nil, time.Minute, []string{"b"}},
		{"probed long enough ago, after the never probed",
			[]string{"a", "b", "c"}, nil, map[string]time.Time{"a": ago(ProbeEvery), "b": ago(2 * ProbeEvery)}, nil, time.Minute, []string{"c", "b", "a"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := probeDue(c.pending, c.refused, c.probed, c.suspect, c.waited, now); !slices.Equal(got, c.want) {
				t.Fatalf("probeDue = %v, want %v", got, c.want)
			}
		})
	}
	many := make([]string, 3*ProbeMax)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	if got := probeDue(many, nil, nil, nil, time.Minute, now); len(got) != ProbeMax {
		t.Fatalf("probeDue of %d pods = %d, want at most %d", len(many), len(got), ProbeMax)
	}
}

// TestLivenessCheck: a refusal counts only for the barrier of the version
// it was probed at; at the next version the pod is probed again (at once,
// as a suspect) and counts only if it refuses again.
func TestLivenessCheck(t *testing.T) {
	var mu sync.Mutex
	dead := map[string]bool{"d": true}
	var probes []string
	l := &liveness{log: slog.New(slog.DiscardHandler), probe: func(_ context.Context, addr string) bool {
		mu.Lock()
		defer mu.Unlock()
		probes = append(probes, addr)
		return dead[addr]
	}}
	pend := []Lease{{Pod: "a", Live: true}, {Pod: "d", Live: true}}
	ctx := context.Background()
	took := func() []string {
		mu.Lock()
		defer mu.Unlock()
		p := probes
		probes = nil
		slices.Sort(p)
		return p
	}
	if g := l.check(ctx, 5, pend); len(g) != 0 || len(took()) != 0 {
		t.Fatalf("first check at v5 probed or counted something: %v", g)
	}
	l.mu.Lock()
	l.began = l.began.Add(-ProbeAfter) // the barrier has waited ProbeAfter
	l.mu.Unlock()
	if g := l.check(ctx, 5, pend); !g["d"] || g["a"] {
		t.Fatalf("v5 after ProbeAfter: gone %v, want d only", g)
	}
	if p := took(); !slices.Equal(p, []string{"a", "d"}) {
		t.Fatalf("probes %v, want a and d", p)
	}
	if g := l.check(ctx, 5, pend); !g["d"] || len(took()) != 0 {
		t.Fatalf("v5 again: gone %v, and a probe within ProbeEvery", g)
	}
	if g := l.check(ctx, 5, pend[:1]); len(g) != 0 {
		t.Fatalf("gone %v for a pod no longer waited for", g)
	}
	// v6: d restarted (listens again); it is probed at once and not gone.
	mu.Lock()
	dead["d"] = false
	mu.Unlock()
	if g := l.check(ctx, 6, pend); len(g) != 0 {
		t.Fatalf("v6: gone %v after d restarted", g)
	}
	if p := took(); !slices.Equal(p, []string{"d"}) {
		t.Fatalf("v6 probes %v, want the suspect d at once", p)
	}
	if n := l.gone.Load(); n != 1 {
		t.Fatalf("counted gone %d times, want 1", n)
	}
}

func TestRetreatsNext(t *testing.T) {
	t0 := time.Now()
	type step struct {
		epoch   uint64
		at      time.Duration
		waiting []string
		ok      bool
		why     string // substring when !ok
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"one pod stuck: aborted at its 4th timeout in a row", []step{
			{1, 0, []string{"a"}, true, ""},
			{1, 10 * time.Second, []string{"a"}, true, ""},
			{1, 20 * time.Second, []string{"a", "b"}, true, ""},
			{1, 30 * time.Second, []string{"a"}, false, "pod a held up 4 freeze barriers in a row"},
		}},
		{"churn: different pods each time, no abort", []step{
			{1, 0, []string{"a", "b"}, true, ""},
			{1, 10 * time.Second, []string{"c"}, true, ""},
			{1, 20 * time.Second, []string{"d", "a"}, true, ""},
			{1, 30 * time.Second, []string{"b"}, true, ""},
			{1, 40 * time.Second, []string{"c"}, true, ""},
			{1, 50 * time.Second, []string{"e"}, true, ""},
		}},
		{"a pod that let one barrier pass starts over", []step{
			{1, 0, []string{"a"}, true, ""},
			{1, 1 * time.Second, []string{"a"}, true, ""},
			{1, 2 * time.Second, []string{"a"}, true, ""},
			{1, 3 * time.Second, []string{"b"}, true, ""},
			{1, 4 * time.Second, []string{"a"}, true, ""},
		}},
		{"bounded in time", []step{
			{1, 0, []string{"a"}, true, ""},
			{1, MaxRetreating, []string{"b"}, true, ""},
			{1, MaxRetreating + time.Second, []string{"c"}, false, "still time out 3m1s after the first (2 retreats)"},
		}},
		{"a new epoch starts over", []step{
			{1, 0, []string{"a"}, true, ""},
			{1, time.Second, []string{"a"}, true, ""},
			{1, 2 * time.Second, []string{"a"}, true, ""},
			{2, MaxRetreating + time.Minute, []string{"a"}, true, ""},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rs retreats
			for i, s := range c.steps {
				var ok bool
				var why string
				rs, ok, why = rs.next(s.epoch, s.waiting, t0.Add(s.at))
				if ok != s.ok || !ok && !strings.Contains(why, s.why) {
					t.Fatalf("step %d: next = %v %q, want %v %q", i, ok, why, s.ok, s.why)
				}
			}
		})
	}
}
