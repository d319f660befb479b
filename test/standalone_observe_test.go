package test

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// TestStandaloneObserve: the jupiter binary's slow log, hot keys and big
// keys, as an operator reaches them: SLOWLOG through go-redis, JUPITER
// SLOWLOG NODES, `jupiter ctl slowlog|hotkeys|bigkeys`, and /v1/slowlog,
// /v1/hotkeys, /v1/bigkeys behind the admin password.
func TestStandaloneObserve(t *testing.T) {
	e := startEnv(t, "--slowlog-slower-than", "0", "--hotkeys-sample", "1", "--bigkeys-threshold", "1024",
		"--admin-password", "adm-pw")
	ctx := ctxT(t)
	big := strings.Repeat("z", 4096)
	if err := e.j.Set(ctx, "obs:big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := e.j.Get(ctx, "obs:hot").Err(); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	entries, err := e.j.SlowLogGet(ctx, -1).Result()
	if err != nil || len(entries) < 6 {
		t.Fatalf("SLOWLOG GET -1: %d entries, %v", len(entries), err)
	}
	if a := entries[0].Args; len(a) != 2 || !strings.EqualFold(a[0], "get") || a[1] != "obs:hot" {
		t.Errorf("newest entry %+v, want the last GET obs:hot", entries[0])
	}
	if n, err := e.j.Do(ctx, "JUPITER", "SLOWLOG", "NODES", "LEN").Int(); err != nil || n < 0 {
		t.Errorf("JUPITER SLOWLOG NODES LEN = %d %v", n, err)
	}

	ctl := func(args ...string) string {
		t.Helper()
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(cctx, testenv.Binary(t), append([]string{"ctl", "--addr", e.c.Jupiter.Addr}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("jupiter ctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := ctl("slowlog", "2"); strings.Count(out, "\n") != 2 {
		t.Errorf("ctl slowlog 2:\n%s", out)
	}
	owner := e.c.Redis[e.owner(t, "obs:big")].Addr
	if out := ctl("slowlog", "-1"); !strings.Contains(out, "nodes="+owner+" ") || !strings.Contains(out, `cmd="set" "obs:big" "zzz`) ||
		!strings.Contains(out, `... (3968 more bytes)"`) {
		t.Errorf("ctl slowlog -1 lacks SET obs:big (cut at 128 bytes) on %s:\n%s", owner, out)
	}
	if out := ctl("hotkeys", "1"); !strings.HasPrefix(out, `key="obs:hot" count=5 `) {
		t.Errorf("ctl hotkeys 1:\n%s", out)
	}
	if out := ctl("bigkeys"); !strings.Contains(out, `key="obs:big" command=set size=`) || !strings.Contains(out, "dir=request") {
		t.Errorf("ctl bigkeys:\n%s", out)
	}

	get := func(path, pw string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+e.c.Jupiter.AdminAddr+path, nil)
		if pw != "" {
			req.SetBasicAuth("admin", pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	for _, path := range []string{"/v1/slowlog", "/v1/hotkeys", "/v1/bigkeys"} {
		if code, _ := get(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the admin password = %d, want 401", path, code)
		}
	}
	if code, v := get("/v1/slowlog?n=2", "adm-pw"); code != 200 || len(v["entries"].([]any)) != 2 {
		t.Errorf("/v1/slowlog?n=2 = %d %v", code, v)
	}
	if code, v := get("/v1/hotkeys?by=bytes", "adm-pw"); code != 200 || v["sample"].(float64) != 1 ||
		v["keys"].([]any)[0].(map[string]any)["key"] != "obs:big" {
		t.Errorf("/v1/hotkeys?by=bytes = %d %v", code, v)
	}
	if code, v := get("/v1/bigkeys", "adm-pw"); code != 200 || v["threshold"].(float64) != 1024 {
		t.Errorf("/v1/bigkeys = %d %v", code, v)
	}
}
