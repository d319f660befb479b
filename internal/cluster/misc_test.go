package cluster

import (
	"bufio"
	"errors"

	"context"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"net"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsAndValidate(t *testing.T) {
	c := Config{SpannerDB: "projects/p/instances/i/databases/d", HedgeAddr: "10.0.0.1:7000"}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Tables() != DefaultTableNames() || c.LockName != DefaultLockName || c.RingName != DefaultRingName ||
		c.LockDuration != DefaultLockDuration || c.PollInterval != DefaultPollInterval {
		t.Fatalf("defaults: %+v", c)
	}
	for name, mut := range map[string]func(*Config){
		"db":        func(c *Config) { c.SpannerDB = "d" },
		"addr":      func(c *Config) { c.HedgeAddr = "10.0.0.1" },
		"lock name": func(c *Config) { c.LockName = "x'; drop" },
		"lease":     func(c *Config) { c.LockDuration = time.Second },
		"table":     func(c *Config) { c.RingTable = "bad name" },
	} {
		bad := c
		mut(&bad)
		if bad.Validate() == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
}

func TestDialPinger(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for range 3 { // *1, $4, PING
					r.ReadString('\n')
				}
				c.Write([]byte("-NOAUTH Authentication required.\r\n"))
			}()
		}
	}()
	p := DialPinger{Timeout: time.Second}
	if err := p.Ping(context.Background(), l.Addr().String()); err != nil {
		t.Fatalf("ping a server answering -NOAUTH: %v", err)
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	if err := p.Ping(context.Background(), addr); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
}

func TestRingTextAndSlogWriter(t *testing.T) {
	r := mustNewRing(t, 1, "10.0.0.2:6379", "10.0.0.1:6379")
	if got := RingText(r.Nodes()); got != "10.0.0.1:6379=1,10.0.0.2:6379=1" {
		t.Fatal(got)
	}
	var sb strings.Builder
	w := slogWriter{l: newTextLogger(&sb)}
	w.Write([]byte("round 3 took 2ms\n"))
	w.Write([]byte("heartbeat failed: boom\n"))
	out := sb.String()
	if !strings.Contains(out, "level=DEBUG msg=\"round 3 took 2ms\"") || !strings.Contains(out, "level=WARN msg=\"heartbeat failed: boom\"") {
		t.Fatalf("bridged log:\n%s", out)
	}
}

func TestEmulatorClash(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.FailedPrecondition, "Invalid transaction ID. Transaction ID must be >= 338"), true},
		{status.Error(codes.FailedPrecondition, "Transaction not found"), true},
		{status.Error(codes.NotFound, "Transaction not found: 319"), true},
		{status.Error(codes.NotFound, "Session not found"), false},
		{status.Error(codes.FailedPrecondition, "Table not found: jupiter_ring"), false},
		{status.Error(codes.Aborted, "Invalid transaction ID"), false},
		{errors.New("Invalid transaction ID"), false},
	} {
		if got := emulatorClash(c.err); got != c.want {
			t.Errorf("emulatorClash(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
