package test

// Helpers of the cluster-mode end-to-end tests (cluster_*_test.go): a
// dedicated Spanner emulator, real redis-server nodes and N jupiter pods
// (`jupiter serve --spanner-db … --hedge-addr …`), with short lease and poll
// settings so that elections and failovers take seconds.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/emulator"
	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// Cluster tuning used by the tests (the defaults are 10s/10s/2s).
const (
	clLockLease  = 3 * time.Second
	clMemberSync = 2 * time.Second
	clPoll       = 500 * time.Millisecond
	// clMemberLease: a killed or frozen pod stops holding up rebalance
	// barriers after this (the minimum is 3 poll intervals).
	clMemberLease = 2 * time.Second
)

// clEnv is one cluster-mode deployment: its emulator, database, Redis
// nodes and pods.
type clEnv struct {
	t     testing.TB
	emu   *emulator.Emulator
	db    string
	redis []*testenv.Redis
	pods  []*clPod
}

// clPod is one jupiter process in cluster mode.
type clPod struct {
	*testenv.Jupiter
	Hedge string // --hedge-addr, the pod's identity (STATUS self)
	rdb   *redis.Client
}

// startClEnv starts a dedicated emulator with the schema applied (through
// `jupiter ddl --apply`) and nRedis redis-server nodes; pods are started
// with startPod.
func startClEnv(t testing.TB, nRedis int) *clEnv {
	t.Helper()
	testenv.Need(t, "redis-server")
	e := &clEnv{t: t, emu: emulator.Start(t)}
	e.db = e.emu.Database("e2e")
	out, code := e.jupiter("ddl", "--apply", "--spanner-db", e.db)
	if code != 0 {
		t.Fatalf("jupiter ddl --apply: exit %d\n%s", code, out)
	}
	for range nRedis {
		e.redis = append(e.redis, testenv.StartRedis(t))
	}
	return e
}

// addrs returns the addresses of the Redis nodes with the given indexes.
func (e *clEnv) addrs(idx ...int) []string {
	out := make([]string, len(idx))
	for i, x := range idx {
		out[i] = e.redis[x].Addr
	}
	return out
}

// startPod starts a pod with --backends seeds (none: no flag) and extra args.
func (e *clEnv) startPod(seeds []string, extra ...string) *clPod {
	e.t.Helper()
	port, err := emulator.FreePortPair()
	if err != nil {
		e.t.Fatal(err)
	}
	p := &clPod{Hedge: "127.0.0.1:" + strconv.Itoa(port)}
	args := []string{"--spanner-db", e.db, "--hedge-addr", p.Hedge,
		"--lock-lease", clLockLease.String(), "--member-sync-interval", clMemberSync.String(),
		"--poll-interval", clPoll.String(), "--member-lease", clMemberLease.String()}
	if len(seeds) > 0 {
		args = append(args, "--backends", strings.Join(seeds, ","))
	}
	p.Jupiter = testenv.StartJupiter(e.t, []string{e.emu.Env()}, append(args, extra...)...)
	p.rdb = clClient(e.t, p.Addr)
	e.pods = append(e.pods, p)
	return p
}

// jupiter runs the jupiter binary with this env's emulator and returns its
// combined output and exit code.
func (e *clEnv) jupiter(args ...string) (string, int) {
	e.t.Helper()
	// Only a backstop: the commands bound themselves (ddl --apply has a
	// 5-minute --timeout). A fixed minute failed a newcomer's first `make
	// test`, whose emulator took its first DDL while every package was
	// compiling on 2 cores; the command's own bound is the honest one.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 30*time.Second {
			e.t.Logf("jupiter %v took %v", args, d.Round(time.Second))
		}
	}()
	cmd := exec.CommandContext(ctx, testenv.Binary(e.t), args...)
	cmd.Env = append(cmd.Environ(), e.emu.Env())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	e.t.Fatalf("jupiter %v: %v", args, err)
	return "", -1
}

// ctl runs `jupiter ctl --addr pod …` and returns stdout, stderr and the
// exit code.
func (e *clEnv) ctl(p *clPod, args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(e.t), append([]string{"ctl", "--addr", p.Addr}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("jupiter ctl %v: %v", args, err)
	}
	return strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()), code
}

// live returns the pods whose process runs.
func (e *clEnv) live() []*clPod {
	var out []*clPod
	for _, p := range e.pods {
		select {
		case <-p.Exited():
		default:
			out = append(out, p)
		}
	}
	return out
}

// logs returns every pod's log, for failure messages.
func (e *clEnv) logs() string {
	var b strings.Builder
	for i, p := range e.pods {
		fmt.Fprintf(&b, "----- pod %d (%s, hedge %s) -----\n%s\n", i, p.Addr, p.Hedge, clTail(p.Log(), 60))
	}
	return b.String()
}

func clTail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func clClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 15 * time.Second, PoolSize: 4})
	t.Cleanup(func() { c.Close() })
	return c
}

func clCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 20*time.Second)
}

// do runs a command on the pod and returns its reply as text or its error.
func (p *clPod) do(args ...any) (string, error) {
	ctx, cancel := clCtx()
	defer cancel()
	v, err := p.rdb.Do(ctx, args...).Result()
	if err != nil {
		return "", err
	}
	return fmt.Sprint(v), nil
}

// status is JUPITER STATUS as a map (nil if the pod does not answer).
func (p *clPod) status() map[string]string {
	s, err := p.do("JUPITER", "STATUS")
	if err != nil {
		return nil
	}
	return testenv.ParseStatus(s)
}

// jupiterCmd runs JUPITER <args> and returns "OK" or the error text.
func (p *clPod) jupiterCmd(args ...string) string {
	a := []any{"JUPITER"}
	for _, s := range args {
		a = append(a, s)
	}
	s, err := p.do(a...)
	if err != nil {
		return err.Error()
	}
	return s
}

// httpDo sends an HTTP request to the pod's admin port and returns the
// status code and body.
func (p *clPod) httpDo(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.AdminAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readyz returns the pod's /readyz status code (0 if unreachable).
func (p *clPod) readyz() int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.AdminAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// clWait polls cond until it returns "" (done) or within elapses; the last
// non-empty return value explains a timeout. It returns the time taken.
func clWait(t *testing.T, e *clEnv, within time.Duration, what string, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	var why string
	for {
		if why = cond(); why == "" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s: %s\n%s", within, what, why, e.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRingV1 waits until every pod agrees on a leader and serves ring
// version 1 (a fresh deployment is up).
func (e *clEnv) waitRingV1(t *testing.T) {
	t.Helper()
	clWait(t, e, 60*time.Second, "the pods agree on a leader and ring v1", func() string {
		if _, v, _, why := clAgreed(e.pods); why != "" || v != "1" {
			return why + " v" + v
		}
		return ""
	})
}

// agreed returns "" when every pod in pods is ready and reports the same
// leader (one of the pods' hedge addresses, exactly one of them is_leader),
// ring_version and nodes; else what differs.
func clAgreed(pods []*clPod) (leader, version, nodes string, why string) {
	selves := map[string]bool{}
	for _, p := range pods {
		selves[p.Hedge] = true
	}
	leaders := 0
	for i, p := range pods {
		st := p.status()
		if st == nil {
			return "", "", "", fmt.Sprintf("pod %s does not answer STATUS", p.Hedge)
		}
		if st["ready"] != "1" || st["self"] != p.Hedge {
			return "", "", "", fmt.Sprintf("pod %s: ready=%s self=%s", p.Hedge, st["ready"], st["self"])
		}
		if st["is_leader"] == "1" {
			leaders++
		}
		if i == 0 {
			leader, version, nodes = st["leader"], st["ring_version"], st["nodes"]
			continue
		}
		if st["leader"] != leader || st["ring_version"] != version || st["nodes"] != nodes {
			return "", "", "", fmt.Sprintf("pods disagree: %s says leader=%s v=%s nodes=%s, %s says leader=%s v=%s nodes=%s",
				pods[0].Hedge, leader, version, nodes, p.Hedge, st["leader"], st["ring_version"], st["nodes"])
		}
	}
	switch {
	case !selves[leader]:
		return "", "", "", fmt.Sprintf("leader %q is not one of the pods", leader)
	case leaders != 1:
		return "", "", "", fmt.Sprintf("%d pods say is_leader:1", leaders)
	}
	return leader, version, nodes, ""
}

// clSortedNodes renders addresses the way STATUS does (ring order is by
// name, which is the address).
func clSortedNodes(addrs ...string) string {
	s := slices.Clone(addrs)
	slices.Sort(s)
	return strings.Join(s, ",")
}

// clJSON decodes body into v or fails.
func clJSON(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

// clWaitStable waits until every live pod agrees on a ring version above
// after, in stage stable (a change's staged rebalance is over), and
// returns that version.
func clWaitStable(t *testing.T, e *clEnv, within time.Duration, after int) int {
	t.Helper()
	final := 0
	clWait(t, e, within, fmt.Sprintf("every pod stable after v%d", after), func() string {
		_, got, _, why := clAgreed(e.live())
		if why != "" {
			return why
		}
		gv, _ := strconv.Atoi(got)
		if gv <= after {
			return "at v" + got
		}
		for _, p := range e.live() {
			if st := p.status()["stage"]; st != "stable" {
				return p.Hedge + " in stage " + st
			}
		}
		final = gv
		return ""
	})
	return final
}
