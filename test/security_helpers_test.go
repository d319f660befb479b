package test

// Helpers of the security and fault end-to-end tests (security_*_test.go,
// fault_*_test.go): the admin HTTP endpoint (metrics, authenticated calls),
// goroutine accounting from /metrics, and the check that no secret reaches
// jupiter's log.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
)

// Secrets used by the tests: distinctive, so a grep of the log for them
// cannot match anything else.
const (
	secClientPW  = "cl1ent-pw-7f3a9e"
	secAdminPW   = "adm1n-pw-c41d2b"
	secBackendPW = "backend-pw-5e8a0f"
)

// secHTTPClient never keeps connections alive, so polling /metrics does not
// add idle HTTP goroutines to the go_goroutines it reads.
var secHTTPClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// secHTTP does one request on the admin endpoint. auth is "" (none),
// "basic:<user>:<pw>" or "bearer:<token>". It returns the status and body.
func secHTTP(t *testing.T, method, url, body, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case strings.HasPrefix(auth, "basic:"):
		u, p, _ := strings.Cut(strings.TrimPrefix(auth, "basic:"), ":")
		req.SetBasicAuth(u, p)
	case strings.HasPrefix(auth, "bearer:"):
		req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(auth, "bearer:"))
	}
	resp, err := secHTTPClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// secMetrics scrapes /metrics and returns the samples without labels.
func secMetrics(t *testing.T, adminAddr string) map[string]float64 {
	t.Helper()
	code, body := secHTTP(t, "GET", "http://"+adminAddr+"/metrics", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// secGoroutines returns jupiter's go_goroutines.
func secGoroutines(t *testing.T, adminAddr string) int {
	t.Helper()
	m := secMetrics(t, adminAddr)
	g, ok := m["go_goroutines"]
	if !ok {
		t.Fatal("/metrics has no go_goroutines")
	}
	return int(g)
}

// secBaseline waits for go_goroutines to settle (two equal reads in a row)
// and returns it.
func secBaseline(t *testing.T, adminAddr string) int {
	t.Helper()
	prev := secGoroutines(t, adminAddr)
	for i := 0; i < 20; i++ {
		time.Sleep(150 * time.Millisecond)
		g := secGoroutines(t, adminAddr)
		if g == prev {
			return g
		}
		prev = g
	}
	return prev
}

// secWaitGoroutines waits up to timeout for go_goroutines ≤ limit and
// returns the last value read; it fails the test when the limit is not met.
func secWaitGoroutines(t *testing.T, adminAddr string, limit int, timeout time.Duration, what string) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g := secGoroutines(t, adminAddr)
		if g <= limit {
			return g
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: go_goroutines = %d after %v, want ≤ %d (goroutine leak)", what, g, timeout, limit)
			return g
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// secNoSecrets fails the test when jupiter's log contains any of secrets.
func secNoSecrets(t *testing.T, j *testenv.Jupiter, secrets ...string) {
	t.Helper()
	log := j.Log()
	for _, s := range secrets {
		if s != "" && strings.Contains(log, s) {
			t.Errorf("jupiter's log contains a secret (%d bytes, starts %q…):\n%s", len(s), s[:3], log)
		}
	}
}

// secWriteFile writes data to a new file in a temporary directory.
func secWriteFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secWaitFor polls f until it returns "" (success) or timeout passes, and
// returns the last message.
func secWaitFor(timeout time.Duration, f func() string) string {
	deadline := time.Now().Add(timeout)
	for {
		msg := f()
		if msg == "" || time.Now().After(deadline) {
			return msg
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sameSet reports whether two comma-separated lists hold the same items.
func sameSet(a, b string) bool {
	as, bs := strings.Split(a, ","), strings.Split(b, ",")
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs)
}

// secWaitConns waits until jupiter_client_connections is n.
func secWaitConns(t *testing.T, adminAddr string, n int) {
	t.Helper()
	if msg := secWaitFor(5*time.Second, func() string {
		if got := secMetrics(t, adminAddr)["jupiter_client_connections"]; int(got) != n {
			return fmt.Sprintf("jupiter_client_connections = %v, want %d", got, n)
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
}
