// Package testenv starts the real processes jupiter's end-to-end tests run
// against: redis-server nodes on free loopback ports and the jupiter binary
// itself, built once per test process.
//
// Skip rule (same as test/emulator): a missing redis-server skips the tests
// locally but fails them when CI is set, so CI never passes by skipping.
package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/emulator"
)

// CI reports whether the tests run under CI (CI=true or 1).
func CI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// Need skips (or, in CI, fails) the test when the program is not on PATH.
func Need(tb testing.TB, prog string) string {
	tb.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if CI() {
			tb.Fatalf("%s is required in CI but not on PATH (the CI script installs it)", prog)
		}
		tb.Skipf("%s not on PATH", prog)
	}
	return p
}

// FreePort returns a loopback port nobody listens on right now, outside
// the ephemeral range (see emulator.FreePorts).
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := emulator.FreePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Redis is one redis-server process.
type Redis struct {
	Addr string
	Port int
	Dir  string
	args []string
	cmd  *exec.Cmd
	tb   testing.TB
}

// StartRedis starts a redis-server on a free port with no persistence. Extra
// args are passed through (e.g. "--requirepass", "x"). It is stopped when
// the test ends.
func StartRedis(tb testing.TB, extra ...string) *Redis {
	tb.Helper()
	bin := Need(tb, "redis-server")
	r := &Redis{tb: tb, Dir: tb.TempDir()}
	r.Port = FreePort(tb)
	r.Addr = "127.0.0.1:" + strconv.Itoa(r.Port)
	r.args = append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.Dir, "--protected-mode", "no"}, extra...)
	r.start(bin)
	tb.Cleanup(r.Stop)
	return r
}

func (r *Redis) start(bin string) {
	r.tb.Helper()
	r.cmd = exec.Command(bin, r.args...)
	r.cmd.SysProcAttr = procAttr()
	log, err := os.Create(filepath.Join(r.Dir, "redis.log"))
	if err != nil {
		r.tb.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatal(err)
	}
	go func(c *exec.Cmd, f *os.File) { _ = c.Wait(); f.Close() }(r.cmd, log)
	WaitListening(r.tb, r.Addr, 10*time.Second)
}

// Stop kills the server (SIGKILL: a crash, not a shutdown).
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		r.cmd = nil
		waitClosed(r.Addr, 5*time.Second)
	}
}

// Restart starts the server again on the same port (empty: no persistence).
func (r *Redis) Restart() {
	r.tb.Helper()
	r.Stop()
	r.start(Need(r.tb, "redis-server"))
}

// Cli runs redis-cli against the server and returns its trimmed output.
func (r *Redis) Cli(args ...string) string {
	r.tb.Helper()
	return Cli(r.tb, r.Addr, args...)
}

// Cli runs redis-cli against addr (raw output mode) and returns its trimmed
// output, failing the test if redis-cli cannot run.
func Cli(tb testing.TB, addr string, args ...string) string {
	tb.Helper()
	bin := Need(tb, "redis-cli")
	host, port, _ := net.SplitHostPort(addr)
	full := append([]string{"-h", host, "-p", port, "--no-raw"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if err != nil {
		tb.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// WaitListening waits until addr accepts TCP connections.
func WaitListening(tb testing.TB, addr string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not listening after %v: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitClosed(addr string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/jupiter once per test process and returns its path.
// JUPITER_TEST_BINARY names a prebuilt binary to use instead: benchmarks
// compare two builds in one session that way (bench/README.md).
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("JUPITER_TEST_BINARY"); p != "" {
			binPath = p
			if _, err := os.Stat(p); err != nil {
				buildErr = fmt.Errorf("JUPITER_TEST_BINARY: %w", err)
			}
			return
		}
		dir, err := os.MkdirTemp("", "jupiter-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "jupiter")
		root := moduleRoot()
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/jupiter")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/jupiter: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file))) // test/testenv/testenv.go -> repo root
}

// Jupiter is one running jupiter process.
type Jupiter struct {
	Addr      string // RESP
	AdminAddr string // HTTP
	Args      []string
	Env       []string
	cmd       *exec.Cmd
	logPath   string
	done      chan struct{}
	exit      int // the exit code once done is closed (-1: killed by a signal)
	tb        testing.TB
}

// StartJupiter runs `jupiter serve` with --listen and --admin-listen on free
// ports plus args, waits until its RESP port accepts connections and stops
// it (SIGTERM, then SIGKILL) when the test ends. env is added to the
// process environment ("K=V").
func StartJupiter(tb testing.TB, env []string, args ...string) *Jupiter {
	tb.Helper()
	// No drain delay unless a test asks for one (env later in the list
	// wins): every test stops its jupiters, and would wait it out.
	j := &Jupiter{tb: tb, Env: append([]string{"JUPITER_DRAIN_DELAY=0s"}, env...)}
	j.Addr = "127.0.0.1:" + strconv.Itoa(FreePort(tb))
	j.AdminAddr = "127.0.0.1:" + strconv.Itoa(FreePort(tb))
	j.Args = append([]string{"serve", "--listen", j.Addr, "--admin-listen", j.AdminAddr, "--log-format", "json"}, args...)
	j.logPath = filepath.Join(tb.TempDir(), "jupiter.log")
	j.Start()
	tb.Cleanup(func() { j.Stop(5 * time.Second) })
	return j
}

// Start (re)starts the process with the same arguments.
func (j *Jupiter) Start() {
	j.tb.Helper()
	log, err := os.OpenFile(j.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		j.tb.Fatal(err)
	}
	j.cmd = exec.Command(Binary(j.tb), j.Args...)
	j.cmd.Env = append(os.Environ(), j.Env...)
	j.cmd.Stdout, j.cmd.Stderr = log, log
	j.cmd.SysProcAttr = procAttr()
	if err := j.cmd.Start(); err != nil {
		j.tb.Fatal(err)
	}
	j.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) {
		_ = c.Wait()
		log.Close()
		j.exit = c.ProcessState.ExitCode()
		close(done)
	}(j.cmd, j.done)
	deadline := time.Now().Add(60 * time.Second)
	// The data port accepts (into the kernel's backlog) before the admin
	// listener is bound: wait for both, so a process that then fails to
	// bind its admin port is reported here, with its log.
	for _, addr := range []string{j.Addr, j.AdminAddr} {
		if addr == "" {
			continue
		}
		for {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-j.done:
				j.tb.Fatalf("jupiter exited during start:\n%s", j.Log())
			default:
			}
			if time.Now().After(deadline) {
				j.tb.Fatalf("jupiter not listening on %s:\n%s", addr, j.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Pid returns the process id.
func (j *Jupiter) Pid() int { return j.cmd.Process.Pid }

// Signal sends sig to the process.
func (j *Jupiter) Signal(sig syscall.Signal) { _ = j.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the exit.
func (j *Jupiter) Kill() {
	if j.cmd == nil {
		return
	}
	_ = j.cmd.Process.Kill()
	<-j.done
	j.cmd = nil
}

// Stop sends SIGTERM and waits up to timeout, then SIGKILL.
func (j *Jupiter) Stop(timeout time.Duration) {
	if j.cmd == nil {
		return
	}
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(timeout):
		_ = j.cmd.Process.Kill()
		<-j.done
	}
	j.cmd = nil
}

// ExitCode is the exit code of the process, once Exited is closed.
func (j *Jupiter) ExitCode() int { <-j.done; return j.exit }

// Exited returns a channel closed when the process has exited.
func (j *Jupiter) Exited() <-chan struct{} { return j.done }

// Log returns what the process logged so far (for failure messages).
func (j *Jupiter) Log() string {
	b, _ := os.ReadFile(j.logPath)
	return string(b)
}

// Cli runs redis-cli against the proxy.
func (j *Jupiter) Cli(args ...string) string {
	j.tb.Helper()
	return Cli(j.tb, j.Addr, args...)
}

// Status returns JUPITER STATUS as a map of its key:value lines.
func (j *Jupiter) Status() map[string]string {
	j.tb.Helper()
	return ParseStatus(j.Cli("--raw", "JUPITER", "STATUS"))
}

// ParseStatus parses key:value lines.
func ParseStatus(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok {
			m[k] = v
		}
	}
	return m
}
