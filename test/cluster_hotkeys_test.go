package test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterFleetHotKeys: 2 pods on the Spanner emulator; one key is
// driven hot through pod A only, another through pod B only, and a third
// through both. JUPITER HOTKEYS (the fleet's, merged by the leader) on
// either pod shows both pod-only keys with their pod's figures and the
// shared key with both pods' counts summed (pods=2); JUPITER HOTKEYS POD
// shows only the pod's own keys; `jupiter ctl hotkeys` and /v1/hotkeys
// agree.
func TestClusterFleetHotKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster end-to-end test; skipped with -short")
	}
	e := startClEnv(t, 2)
	seeds := e.addrs(0, 1)
	// Sample every command: counts are then exact (the sketch's estimates
	// are upper bounds; with 3 keys nothing collides).
	a := e.startPod(seeds, "--hotkeys-sample", "1")
	b := e.startPod(seeds, "--hotkeys-sample", "1")
	e.waitRingV1(t)
	drive := func(p *clPod, key string, n int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pl := p.rdb.Pipeline()
		for range n {
			pl.Get(ctx, key)
		}
		if _, err := pl.Exec(ctx); err != nil && !strings.Contains(err.Error(), "nil") {
			t.Fatalf("GET %s through %s: %v", key, p.Hedge, err)
		}
	}
	drive(a, "hot:a", 300)
	drive(b, "hot:b", 200)
	drive(a, "hot:ab", 40)
	drive(b, "hot:ab", 60)

	line := regexp.MustCompile(`^key="([^"]*)" count=(\d+) .* pods=(\d+)`)
	fleet := func(p *clPod) map[string][2]int {
		ctx, cancel := clCtx()
		defer cancel()
		v, err := p.rdb.Do(ctx, "JUPITER", "HOTKEYS", "10").StringSlice()
		if err != nil {
			t.Fatalf("JUPITER HOTKEYS on %s: %v", p.Hedge, err)
		}
		out := map[string][2]int{}
		for _, l := range v {
			m := line.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("JUPITER HOTKEYS line without count and pods: %q", l)
			}
			c, _ := strconv.Atoi(m[2])
			n, _ := strconv.Atoi(m[3])
			out[m[1]] = [2]int{c, n}
		}
		return out
	}
	want := map[string][2]int{"hot:a": {300, 1}, "hot:b": {200, 1}, "hot:ab": {100, 2}}
	for _, p := range []*clPod{a, b} {
		if got := fleet(p); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("JUPITER HOTKEYS on %s = %v, want %v", p.Hedge, got, want)
		}
	}
	pod, err := a.do("JUPITER", "HOTKEYS", "POD")
	if err != nil || !strings.Contains(pod, `key="hot:a" count=300 `) || strings.Contains(pod, "hot:b") ||
		!strings.Contains(pod, `key="hot:ab" count=40 `) || strings.Contains(pod, "pods=") {
		t.Errorf("JUPITER HOTKEYS POD on A = %v, %v", pod, err)
	}
	if out, _, code := e.ctl(b, "hotkeys", "fleet", "1"); code != 0 || !strings.HasPrefix(out, `key="hot:a" count=300 `) || strings.Contains(out, "\n") {
		t.Errorf("ctl hotkeys fleet 1 on B: exit %d\n%s", code, out)
	}
	if out, _, code := e.ctl(b, "hotkeys", "pod", "bytes"); code != 0 || strings.Contains(out, `"hot:a"`) || !strings.Contains(out, `"hot:b"`) {
		t.Errorf("ctl hotkeys pod bytes on B: exit %d\n%s", code, out)
	}
	var v struct {
		Scope string `json:"scope"`
		Pods  int    `json:"pods"`
		Keys  []struct {
			Key   string `json:"key"`
			Count int    `json:"count"`
			Pods  int    `json:"pods"`
		} `json:"keys"`
	}
	code, body := b.httpDo(t, "GET", "/v1/hotkeys?n=2", "")
	clJSON(t, body, &v)
	if code != 200 || v.Scope != "fleet" || v.Pods != 2 || len(v.Keys) != 2 || v.Keys[0].Key != "hot:a" || v.Keys[1].Key != "hot:b" {
		t.Errorf("/v1/hotkeys?n=2 on B = %d %s", code, body)
	}
	code, body = b.httpDo(t, "GET", "/v1/hotkeys?scope=pod", "")
	clJSON(t, body, &v)
	if code != 200 || v.Scope != "pod" || v.Pods != 1 || len(v.Keys) != 2 {
		t.Errorf("/v1/hotkeys?scope=pod on B = %d %s", code, body)
	}
}
