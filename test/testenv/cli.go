package testenv

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CliInput runs redis-cli against addr with stdin as its input (commands one
// per line, or raw protocol with --pipe) and returns its combined output and
// exit error, so callers can assert on failures too. Skips (fails in CI) when
// redis-cli is missing.
func CliInput(tb testing.TB, addr, stdin string, args ...string) (string, error) {
	tb.Helper()
	bin := Need(tb, "redis-cli")
	host, port, _ := net.SplitHostPort(addr)
	full := append([]string{"-h", host, "-p", port}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Benchmark runs redis-benchmark against addr with args and returns its
// combined output and exit error. It is bounded by timeout.
func Benchmark(tb testing.TB, addr string, timeout time.Duration, args ...string) (string, error) {
	tb.Helper()
	bin := Need(tb, "redis-benchmark")
	host, port, _ := net.SplitHostPort(addr)
	full := append([]string{"-h", host, "-p", port}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), ctx.Err()
	}
	return string(out), err
}
