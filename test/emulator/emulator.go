// Package emulator gives tests a Cloud Spanner emulator: it reuses the one
// named by SPANNER_EMULATOR_HOST or starts the emulator binary of the gcloud
// SDK once per test process, and hands out fresh database paths.
//
// Skip rule: without an emulator, tests are skipped locally but fail when
// CI is set (CI=true on GitHub Actions and most CI systems), so a CI job
// never passes by silently skipping the Spanner tests.
//
// Start gives a test a dedicated emulator process instead, which it can
// stop (a Spanner outage) and whose address it hands to the processes it
// starts (Emulator.Env) without touching this process's environment.
// cluster-up.sh runs a local 3-pod cluster on the emulator in one command.
//
// The package does not create databases itself (that would import
// internal/cluster and cycle with its tests): cluster.ApplyDDL creates the
// instance and the database on the emulator.
package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Project and Instance are the emulator project/instance tests use.
const (
	Project  = "jupiter-test"
	Instance = "test"
)

var (
	once    sync.Once
	host    string
	cmd     *exec.Cmd
	onceErr error
	missing bool
)

// Host returns the emulator's host:port and sets SPANNER_EMULATOR_HOST for
// the Spanner client libraries. It starts the emulator on a free port if
// SPANNER_EMULATOR_HOST is unset; call Stop from TestMain to end it.
func Host(tb testing.TB) string {
	tb.Helper()
	once.Do(start)
	switch {
	case missing && ci():
		tb.Fatalf("Cloud Spanner emulator required in CI: %v", onceErr)
	case missing:
		tb.Skipf("Cloud Spanner emulator not available (%v); set SPANNER_EMULATOR_HOST or install the gcloud emulator", onceErr)
	case onceErr != nil:
		tb.Fatalf("Cloud Spanner emulator: %v", onceErr)
	}
	return host
}

// Database returns a new, unique database path on the emulator
// ("projects/jupiter-test/instances/test/databases/<prefix>-<hex>"). The
// database does not exist yet.
func Database(tb testing.TB, prefix string) string {
	tb.Helper()
	Host(tb)
	var b [4]byte
	rand.Read(b[:])
	prefix = strings.ToLower(prefix)
	if len(prefix) > 20 {
		prefix = prefix[:20]
	}
	return fmt.Sprintf("projects/%s/instances/%s/databases/%s-%s", Project, Instance, prefix, hex.EncodeToString(b[:]))
}

// Stop ends the emulator if this process started it.
func Stop() {
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Kill()
		cmd.Wait()
		cmd = nil
	}
}

func ci() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// Binary returns the emulator binary path, or an error saying why there is none.
func Binary() (string, error) {
	var cands []string
	if b := os.Getenv("EMULATOR_BIN"); b != "" {
		cands = append(cands, b)
	} else if out, err := exec.Command("gcloud", "info", "--format=value(installation.sdk_root)").Output(); err == nil {
		if root := strings.TrimSpace(string(out)); root != "" {
			cands = append(cands, filepath.Join(root, "bin/cloud_spanner_emulator/emulator_main"))
		}
	}
	if os.Getenv("EMULATOR_BIN") == "" {
		cands = append(cands,
			"/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main",
			"/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main")
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("emulator_main not found (looked at %s)", strings.Join(cands, ", "))
}

func start() {
	if h := os.Getenv("SPANNER_EMULATOR_HOST"); h != "" {
		host = h
		if !dialable(h, 5*time.Second) {
			onceErr = fmt.Errorf("SPANNER_EMULATOR_HOST=%s does not answer", h)
		}
		return
	}
	bin, err := Binary()
	if err != nil {
		missing, onceErr = true, err
		return
	}
	port, err := freePort()
	if err != nil {
		onceErr = err
		return
	}
	host = fmt.Sprintf("127.0.0.1:%d", port)
	logf, err := os.CreateTemp("", "spanner-emulator-*.log")
	if err != nil {
		onceErr = err
		return
	}
	cmd = exec.Command(bin, "--host_port", host)
	cmd.Stdout, cmd.Stderr = logf, logf
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		onceErr = fmt.Errorf("start %s: %w", bin, err)
		return
	}
	if !dialable(host, 20*time.Second) {
		Stop()
		onceErr = fmt.Errorf("emulator did not listen on %s (log %s)", host, logf.Name())
		return
	}
	os.Setenv("SPANNER_EMULATOR_HOST", host)
}

func dialable(addr string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func freePort() (int, error) { return FreePorts(1) }

// FreePortPair returns a port p such that p and p+1 are both free on
// 127.0.0.1 (hedge listens on its port and port+1).
func FreePortPair() (int, error) { return FreePorts(2) }

// Ports are picked below the kernel's ephemeral range (32768-60999 by
// default). A port the kernel hands out for "127.0.0.1:0" is one it may
// also hand out, a moment later, as the source port of any outgoing
// connection — and the suite makes thousands (clients, Spanner, redis) —
// so a process started on it could find it taken ("address already in
// use"), exit, and fail a test that had nothing to do with ports. Picks
// are random (test packages run in parallel, as separate processes) and
// never repeated within one process.
const (
	portLow  = 15000
	portHigh = 32000
)

var (
	portMu   sync.Mutex
	portUsed = map[int]bool{}
)

// FreePorts returns a port p such that p … p+n-1 are all free on 127.0.0.1
// right now and were not returned before by this process.
func FreePorts(n int) (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	var b [2]byte
	for range 200 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		p := portLow + (int(b[0])<<8|int(b[1]))%(portHigh-portLow-n)
		ok := true
		for q := p; q < p+n && ok; q++ {
			ok = !portUsed[q] && bindable(q)
		}
		if ok {
			for q := p; q < p+n; q++ {
				portUsed[q] = true
			}
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports found in %d-%d", n, portLow, portHigh)
}

func bindable(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Emulator is a dedicated emulator process started by Start, for tests that
// need one of their own: to stop it (a Spanner outage) or to keep the
// processes they start away from other tests' state.
type Emulator struct {
	// Host is the emulator's gRPC host:port.
	Host string
	// Stoppable is false when no emulator binary is available and Start
	// fell back to the shared one named by SPANNER_EMULATOR_HOST.
	Stoppable bool
	cmd       *exec.Cmd
	log       string
	stopOnce  sync.Once
}

// Start starts a new emulator on a free port and stops it when tb ends. It
// does not change SPANNER_EMULATOR_HOST in this process: hand Env() to the
// processes that should use it. Without the emulator binary it falls back
// to the emulator SPANNER_EMULATOR_HOST names (Stoppable false); without
// either it skips tb (fails it when CI is set), like Host.
func Start(tb testing.TB) *Emulator {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		if h := os.Getenv("SPANNER_EMULATOR_HOST"); h != "" {
			return &Emulator{Host: Host(tb)}
		}
		if ci() {
			tb.Fatalf("Cloud Spanner emulator required in CI: %v", err)
		}
		tb.Skipf("Cloud Spanner emulator not available (%v); install the gcloud emulator or set EMULATOR_BIN", err)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	e := &Emulator{Host: fmt.Sprintf("127.0.0.1:%d", port), Stoppable: true}
	logf, err := os.CreateTemp("", "spanner-emulator-*.log")
	if err != nil {
		tb.Fatal(err)
	}
	e.log = logf.Name()
	e.cmd = exec.Command(bin, "--host_port", e.Host)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	setPdeathsig(e.cmd)
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("start %s: %v", bin, err)
	}
	logf.Close()
	tb.Cleanup(func() {
		e.Stop()
		os.Remove(e.log)
	})
	if !dialable(e.Host, 20*time.Second) {
		e.Stop()
		tb.Fatalf("emulator did not listen on %s (log %s)", e.Host, e.log)
	}
	return e
}

// Env is the environment entry that points the Spanner client libraries
// at this emulator ("SPANNER_EMULATOR_HOST=host:port").
func (e *Emulator) Env() string { return "SPANNER_EMULATOR_HOST=" + e.Host }

// Database returns a new, unique database path (not created yet).
func (e *Emulator) Database(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	prefix = strings.ToLower(prefix)
	if len(prefix) > 20 {
		prefix = prefix[:20]
	}
	return fmt.Sprintf("projects/%s/instances/%s/databases/%s-%s", Project, Instance, prefix, hex.EncodeToString(b[:]))
}

// Stop kills the emulator (SIGKILL: Spanner is gone, not shut down) and
// waits until its port is closed. A no-op when not Stoppable.
func (e *Emulator) Stop() {
	if !e.Stoppable {
		return
	}
	e.stopOnce.Do(func() {
		e.cmd.Process.Kill()
		e.cmd.Wait()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			c, err := net.DialTimeout("tcp", e.Host, 100*time.Millisecond)
			if err != nil {
				return
			}
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
	})
}
