// Command membench measures what an idle client connection costs a RESP
// server in resident memory: it opens N TCP connections to the server, sends
// one PING on each and reads +PONG (so the server really set the session up),
// leaves them idle, and compares the server's RSS (VmRSS of /proc/PID/status)
// before and after. The result is bytes (KiB) per connection.
//
//	go run ./test/membench -target 127.0.0.1:6379 -pid 1234 -conns 10000
//	go run ./test/membench -target 127.0.0.1:6379 -redcon -twemproxy -backends 127.0.0.1:7001
//
// With -redcon it also measures a plain github.com/tidwall/redcon server
// (answers PING only; started as a child process of this binary, so its RSS is
// its own), and with -twemproxy a nutcracker (twemproxy) child if nutcracker
// is on PATH, so one run prints "plain redcon: X KiB/conn" next to the target.
// Targets are measured one after the other; each one's connections are closed
// before the next starts. GOGC/GOMEMLIMIT are left alone (defaults are what
// is measured). RLIMIT_NOFILE's soft limit is raised to the hard limit (the
// children inherit it); -conns above that limit fail early.
//
// Linux only (/proc).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidwall/redcon"
)

type options struct {
	target    string
	name      string
	pid       int
	conns     int
	parallel  int
	settle    time.Duration
	redcon    bool
	twemproxy bool
	backends  string
	markdown  bool
}

func main() {
	var o options
	serveRedcon := flag.String("serve-redcon", "", "internal: run a plain redcon PING server on this address and print its address")
	flag.StringVar(&o.target, "target", "", "host:port of the RESP server to measure")
	flag.StringVar(&o.name, "name", "jupiter", "name of -target in the report")
	flag.IntVar(&o.pid, "pid", 0, "PID of the -target server (0: find the process listening on its port)")
	flag.IntVar(&o.conns, "conns", 10000, "idle connections to open per server")
	flag.IntVar(&o.parallel, "parallel", 32, "connections set up concurrently")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait before reading RSS (read twice, 1s apart)")
	flag.BoolVar(&o.redcon, "redcon", false, "also measure a plain redcon server (child process)")
	flag.BoolVar(&o.twemproxy, "twemproxy", false, "also measure nutcracker (twemproxy) if it is on PATH")
	flag.StringVar(&o.backends, "backends", "", "comma-separated redis host:port for nutcracker's pool (PING is answered by nutcracker itself)")
	flag.BoolVar(&o.markdown, "markdown", true, "print a Markdown table at the end")
	flag.Parse()

	if *serveRedcon != "" {
		if err := runRedcon(*serveRedcon); err != nil {
			fmt.Fprintln(os.Stderr, "membench: redcon:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "membench:", err)
		os.Exit(1)
	}
}

// result is one measured server.
type result struct {
	name          string
	pid           int
	conns         int
	before, after int64 // RSS bytes, without and with conns idle connections
	half          int64 // RSS bytes with halfConns idle connections
	halfConns     int
	threads       int
	err           error
}

// perConn is the average RSS growth per connection.
func (r result) perConn() float64 { return float64(r.after-r.before) / float64(r.conns) }

// marginal is the RSS growth per connection of the second half.
func (r result) marginal() float64 {
	return float64(r.after-r.half) / float64(r.conns-r.halfConns)
}

func run(o options) error {
	if o.target == "" && !o.redcon && !o.twemproxy {
		return errors.New("nothing to measure: give -target and/or -redcon/-twemproxy")
	}
	if o.conns < 1 {
		return errors.New("-conns must be >= 1")
	}
	if err := raiseNofile(o.conns); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var results []result
	if o.redcon {
		results = append(results, withChild(ctx, o, "plain redcon", startRedconChild))
	}
	if o.target != "" {
		pid := o.pid
		var err error
		if pid == 0 {
			pid, err = listenerPID(o.target)
		}
		if err != nil {
			results = append(results, result{name: o.name, err: err})
		} else {
			results = append(results, measure(ctx, o, o.name, o.target, pid))
		}
	}
	if o.twemproxy {
		if _, err := exec.LookPath("nutcracker"); err != nil {
			fmt.Fprintln(os.Stderr, "membench: nutcracker not on PATH, skipping twemproxy")
		} else {
			results = append(results, withChild(ctx, o, "twemproxy (nutcracker)", func(ctx context.Context) (string, *exec.Cmd, func(), error) {
				return startNutcracker(ctx, o.backends)
			}))
		}
	}

	failed := false
	for _, r := range results {
		if r.err != nil {
			failed = true
			fmt.Printf("%s: ERROR %v\n", r.name, r.err)
			continue
		}
		fmt.Printf("%s: %.1f KiB/conn (RSS %.1f -> %.1f MiB with %d idle conns; marginal %.1f KiB/conn over the 2nd half; pid %d)\n",
			r.name, r.perConn()/1024, mib(r.before), mib(r.after), r.conns, r.marginal()/1024, r.pid)
	}
	if o.markdown {
		fmt.Println()
		fmt.Printf("| server | idle conns | RSS idle (MiB) | RSS with conns (MiB) | KiB/conn (average) | KiB/conn (marginal, 2nd half) | threads |\n")
		fmt.Printf("|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range results {
			if r.err != nil {
				fmt.Printf("| %s | %d | error | | | | |\n", r.name, o.conns)
				continue
			}
			fmt.Printf("| %s | %d | %.1f | %.1f | %.2f | %.2f | %d |\n", r.name, r.conns, mib(r.before), mib(r.after),
				r.perConn()/1024, r.marginal()/1024, r.threads)
		}
	}
	if failed {
		return errors.New("some measurements failed")
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// withChild starts a server with start, measures it and stops it.
func withChild(ctx context.Context, o options, name string, start func(context.Context) (string, *exec.Cmd, func(), error)) result {
	addr, cmd, cleanup, err := start(ctx)
	if err != nil {
		return result{name: name, err: err}
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if cleanup != nil {
			cleanup()
		}
	}()
	return measure(ctx, o, name, addr, cmd.Process.Pid)
}

// measure opens o.conns idle connections to addr, in two halves, and reports
// pid's RSS growth: the average over all connections, and the marginal cost
// of the second half (which discounts one-off growth such as the first
// connection's buffers or a heap that had spare room).
func measure(ctx context.Context, o options, name, addr string, pid int) result {
	r := result{name: name, pid: pid, conns: o.conns}
	fmt.Fprintf(os.Stderr, "membench: %s (%s, pid %d): settling %v\n", name, addr, pid, o.settle)
	if r.before, r.err = settledRSS(ctx, pid, o.settle); r.err != nil {
		return r
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	half := o.conns / 2
	for i, n := range []int{half, o.conns - half} {
		t0 := time.Now()
		cs, err := openIdle(ctx, addr, n, o.parallel)
		conns = append(conns, cs...)
		if err != nil {
			r.err = fmt.Errorf("opening %d connections to %s: %w", o.conns, addr, err)
			return r
		}
		fmt.Fprintf(os.Stderr, "membench: %s: %d connections up (PING/PONG each, +%d in %v); settling %v\n",
			name, len(conns), n, time.Since(t0).Round(time.Millisecond), o.settle)
		rss, err := settledRSS(ctx, pid, o.settle)
		if err != nil {
			r.err = err
			return r
		}
		if i == 0 {
			r.half = rss
		} else {
			r.after = rss
		}
	}
	r.halfConns = half
	r.threads, _ = statusField(pid, "Threads")
	// every connection must still be there: a server that dropped idle
	// clients would look cheap
	if err := pingAll(conns, o.parallel); err != nil {
		r.err = fmt.Errorf("after measuring: %w", err)
	}
	return r
}

var ping = []byte("*1\r\n$4\r\nPING\r\n")

// openIdle dials n connections (parallel at a time), each PING -> +PONG.
func openIdle(ctx context.Context, addr string, n, parallel int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: 5 * time.Second}
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil {
					err = pingConn(c)
					if err != nil {
						c.Close()
					}
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("conn %d: %w", i, err) })
					next.Store(int64(n)) // stop the other workers
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return out, firstErr
}

func pingConn(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(ping); err != nil {
		return err
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", buf)
	}
	return c.SetDeadline(time.Time{})
}

func pingAll(conns []net.Conn, parallel int) error {
	var next atomic.Int64
	var bad atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				if pingConn(conns[i]) != nil {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if b := bad.Load(); b > 0 {
		return fmt.Errorf("%d of %d idle connections no longer answer PING", b, len(conns))
	}
	return nil
}

// settledRSS waits d, reads VmRSS, waits 1s and reads it again; it returns
// the second reading (the first only shows whether memory is still moving).
func settledRSS(ctx context.Context, pid int, d time.Duration) (int64, error) {
	if err := sleep(ctx, d); err != nil {
		return 0, err
	}
	a, err := statusField(pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	if err := sleep(ctx, time.Second); err != nil {
		return 0, err
	}
	b, err := statusField(pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	if diff := b - a; diff > 1024 || diff < -1024 { // > 1 MiB in 1s
		fmt.Fprintf(os.Stderr, "membench: pid %d RSS still moving: %d -> %d KiB\n", pid, a, b)
	}
	return int64(b) * 1024, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusField reads a numeric field of /proc/PID/status (VmRSS is in kB).
func statusField(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != field {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		return strconv.Atoi(f[0])
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit. Calling
// Setrlimit explicitly also makes child processes inherit the raised limit.
func raiseNofile(conns int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	if uint64(conns)+64 > lim.Cur {
		return fmt.Errorf("-conns %d needs more than RLIMIT_NOFILE %d allows (raise the hard limit: ulimit -Hn)", conns, lim.Cur)
	}
	return nil
}

// listenerPID finds the local process listening on addr's port (via the
// socket inode in /proc/net/tcp{,6} and /proc/*/fd).
func listenerPID(addr string) (int, error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A = LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d (give -pid)", port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && inodes[l] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process found for the listener on port %d (give -pid)", port)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ---------------------------------------------------------------- children

// startRedconChild re-executes this binary with -serve-redcon.
func startRedconChild(ctx context.Context) (string, *exec.Cmd, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, nil, err
	}
	cmd := exec.Command(self, "-serve-redcon", addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening ") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", nil, nil, fmt.Errorf("redcon child did not start (%q, %v)", line, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "listening ")), cmd, nil, nil
}

// runRedcon is the child: a plain redcon server answering PING, like the
// smallest possible redcon-based proxy front end.
func runRedcon(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Close()
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		ln.Close()
	}()
	err = redcon.Serve(ln, func(conn redcon.Conn, cmd redcon.Command) {
		switch strings.ToLower(string(cmd.Args[0])) {
		case "ping":
			conn.WriteString("PONG")
		default:
			conn.WriteError("ERR unknown command '" + string(cmd.Args[0]) + "'")
		}
	}, nil, nil)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// startNutcracker runs nutcracker in the foreground with a pool over backends.
func startNutcracker(ctx context.Context, backends string) (string, *exec.Cmd, func(), error) {
	dir, err := os.MkdirTemp("", "membench-nutcracker-")
	if err != nil {
		return "", nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	addr, err := freeAddr()
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	stats, err := freeAddr()
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	_, statsPort, _ := net.SplitHostPort(stats)
	var servers strings.Builder
	for _, b := range strings.Split(backends, ",") {
		if b = strings.TrimSpace(b); b != "" {
			fmt.Fprintf(&servers, "   - %s:1\n", b)
		}
	}
	if servers.Len() == 0 {
		servers.WriteString("   - 127.0.0.1:6379:1\n") // never contacted: PING is answered locally
	}
	conf := fmt.Sprintf("membench:\n  listen: %s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  auto_eject_hosts: false\n  servers:\n%s", addr, servers.String())
	cf := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		cleanup()
		return "", nil, nil, err
	}
	cmd := exec.Command("nutcracker", "-c", cf, "-s", statsPort, "-a", "127.0.0.1", "-o", filepath.Join(dir, "nutcracker.log"))
	if err := cmd.Start(); err != nil {
		cleanup()
		return "", nil, nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			err = pingConn(c)
			c.Close()
			if err == nil {
				return addr, cmd, cleanup, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			log, _ := os.ReadFile(filepath.Join(dir, "nutcracker.log"))
			cleanup()
			return "", nil, nil, fmt.Errorf("nutcracker did not answer PING on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
