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
	redigo "github.com/gomodule/redigo/redis"
	"github.com/redis/go-redis/v9"
)

// TestSecurityClientAuth runs jupiter with --password and --admin-password
// and drives it with a raw connection, go-redis, redigo, redis-cli and
// redis-benchmark: nothing but AUTH/HELLO/QUIT before AUTH (NOAUTH), wrong
// passwords are WRONGPASS, both AUTH forms work, ring changes need the admin
// user (NOPERM, ring unchanged) on RESP and HTTP, reads stay open, and no
// secret reaches the log.
func TestSecurityClientAuth(t *testing.T) {
	t.Parallel()
	r1, r2, r3 := testenv.StartRedis(t), testenv.StartRedis(t), testenv.StartRedis(t)
	j := testenv.StartJupiter(t, nil, "--backends", r1.Addr, "--password", secClientPW,
		"--admin-password", secAdminPW, "--log-level", "debug")
	ctx := ctxT(t)

	t.Run("NoAuthBeforeAuth", func(t *testing.T) {
		c := dialRaw(t, j.Addr)
		for _, cmd := range [][]string{{"GET", "k"}, {"PING"}, {"SET", "k", "v"}, {"JUPITER", "STATUS"},
			{"INFO"}, {"DBSIZE"}, {"CLIENT", "SETNAME", "x"}, {"NOSUCHCOMMAND"}} {
			wantErrPrefix(t, strings.Join(cmd, " ")+" before AUTH", c.do(cmd...), "NOAUTH")
		}
		// HELLO is allowed before AUTH (clients send it first): without
		// its AUTH option it answers Redis's NOAUTH, and the connection
		// stays open.
		if r := c.do("HELLO", "3"); r.kind != '-' || !strings.HasPrefix(r.str, "NOAUTH HELLO must be called with the client already authenticated") {
			t.Errorf("HELLO 3 before AUTH = %v, want Redis's NOAUTH", r)
		}
		for _, cmd := range [][]string{{"AUTH", "wrong"}, {"AUTH", "default", "wrong"},
			{"AUTH", "admin", secClientPW}, {"AUTH", "nobody", secClientPW}, {"AUTH", "default", secAdminPW + "x"}} {
			wantErrPrefix(t, strings.Join(cmd[:len(cmd)-1], " ")+" <bad>", c.do(cmd...), "WRONGPASS")
		}
		wantErrPrefix(t, "GET after failed AUTHs", c.do("GET", "k"), "NOAUTH")
		if r := c.do("AUTH", secClientPW); r.String() != "+OK" {
			t.Fatalf("AUTH <password> = %v", r)
		}
		if r := c.do("SET", "auth:k", "v"); r.String() != "+OK" {
			t.Errorf("SET after AUTH = %v", r)
		}
		if r := c.do("GET", "auth:k"); r.str != "v" {
			t.Errorf("GET after AUTH = %v", r)
		}
		if r := c.do("PING"); r.String() != "+PONG" {
			t.Errorf("PING after AUTH = %v", r)
		}
		// A later failed AUTH does not undo the successful one (as Redis).
		wantErrPrefix(t, "AUTH wrong after AUTH", c.do("AUTH", "wrong"), "WRONGPASS")
		if r := c.do("GET", "auth:k"); r.str != "v" {
			t.Errorf("GET after a later failed AUTH = %v", r)
		}
		// Nothing a client can read reveals the passwords.
		for _, cmd := range [][]string{{"INFO"}, {"CONFIG", "GET", "*"}, {"CLIENT", "LIST"}, {"JUPITER", "STATUS"}} {
			if r := c.do(cmd...); strings.Contains(r.String(), secClientPW) || strings.Contains(r.String(), secAdminPW) {
				t.Errorf("%v reveals a password: %v", cmd, r)
			}
		}
	})

	t.Run("AuthDefaultUser", func(t *testing.T) {
		c := dialRaw(t, j.Addr)
		if r := c.do("AUTH", "default", secClientPW); r.String() != "+OK" {
			t.Fatalf("AUTH default <password> = %v", r)
		}
		if r := c.do("PING"); r.String() != "+PONG" {
			t.Errorf("PING = %v", r)
		}
	})

	t.Run("QuitBeforeAuth", func(t *testing.T) {
		c := dialRaw(t, j.Addr)
		if r := c.do("QUIT"); r.String() != "+OK" {
			t.Errorf("QUIT before AUTH = %v", r)
		}
		c.expectClosed()
	})

	t.Run("GoRedis", func(t *testing.T) {
		c := newClientWith(t, &redis.Options{Addr: j.Addr, Password: secClientPW}) // default options: HELLO 3 first
		if err := c.Set(ctx, "auth:goredis", "v", 0).Err(); err != nil {
			t.Fatalf("go-redis SET with Password: %v", err)
		}
		if v, err := c.Get(ctx, "auth:goredis").Result(); err != nil || v != "v" {
			t.Errorf("go-redis GET = %q, %v", v, err)
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 50; i++ {
				p.Incr(ctx, "auth:ctr")
			}
			return nil
		})
		if err != nil || cmds[49].(*redis.IntCmd).Val() != 50 {
			t.Errorf("go-redis pipeline: %v", err)
		}
		u := newClientWith(t, &redis.Options{Addr: j.Addr, Username: "default", Password: secClientPW, Protocol: 2})
		if err := u.Ping(ctx).Err(); err != nil {
			t.Errorf("go-redis Username default, RESP2: %v", err)
		}
		bad := newClientWith(t, &redis.Options{Addr: j.Addr, Password: "wrong", MaxRetries: -1})
		if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("go-redis with a wrong password: err = %v, want WRONGPASS", err)
		}
		none := newClientWith(t, &redis.Options{Addr: j.Addr, MaxRetries: -1})
		if err := none.Get(ctx, "auth:goredis").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("go-redis without a password: err = %v, want NOAUTH", err)
		}
	})

	t.Run("Redigo", func(t *testing.T) {
		c := dialRedigo(t, j.Addr, redigo.DialPassword(secClientPW))
		if _, err := c.Do("SET", "auth:redigo", "v"); err != nil {
			t.Fatalf("redigo SET with DialPassword: %v", err)
		}
		if v, err := redigo.String(c.Do("GET", "auth:redigo")); err != nil || v != "v" {
			t.Errorf("redigo GET = %q, %v", v, err)
		}
		u := dialRedigo(t, j.Addr, redigo.DialUsername("default"), redigo.DialPassword(secClientPW))
		if _, err := u.Do("PING"); err != nil {
			t.Errorf("redigo DialUsername default: %v", err)
		}
		_, err := redigo.Dial("tcp", j.Addr, redigo.DialPassword("wrong"), redigo.DialConnectTimeout(2*time.Second),
			redigo.DialReadTimeout(2*time.Second))
		if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("redigo dial with a wrong password: err = %v, want WRONGPASS", err)
		}
	})

	t.Run("RedisCli", func(t *testing.T) {
		if out := testenv.Cli(t, j.Addr, "-a", secClientPW, "--no-auth-warning", "SET", "auth:cli", "v"); out != "OK" {
			t.Errorf("redis-cli -a SET = %q", out)
		}
		if out := testenv.Cli(t, j.Addr, "-a", secClientPW, "--no-auth-warning", "GET", "auth:cli"); out != `"v"` {
			t.Errorf("redis-cli -a GET = %q", out)
		}
		if out := testenv.Cli(t, j.Addr, "--user", "default", "--pass", secClientPW, "--no-auth-warning", "PING"); out != "PONG" {
			t.Errorf("redis-cli --user default --pass PING = %q", out)
		}
		out, _ := testenv.CliInput(t, j.Addr, "", "GET", "auth:cli")
		if !strings.Contains(out, "NOAUTH") {
			t.Errorf("redis-cli without -a: %q, want NOAUTH", out)
		}
	})

	t.Run("RedisBenchmark", func(t *testing.T) {
		out, err := testenv.Benchmark(t, j.Addr, 60*time.Second, "-a", secClientPW, "-t", "set,get", "-n", "2000", "-c", "10", "-q")
		if err != nil {
			t.Fatalf("redis-benchmark -a: %v\n%s", err, out)
		}
		for _, want := range []string{"SET:", "GET:"} {
			if !strings.Contains(out, want) {
				t.Errorf("redis-benchmark output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "NOAUTH") || strings.Contains(out, "ERR") || strings.Contains(out, "WRONGPASS") {
			t.Errorf("redis-benchmark -a reported errors:\n%s", out)
		}
	})

	status := func(t *testing.T, c *rawConn) map[string]string {
		t.Helper()
		r := c.do("JUPITER", "STATUS")
		if r.kind != '$' {
			t.Fatalf("JUPITER STATUS = %v", r)
		}
		return testenv.ParseStatus(r.str)
	}

	t.Run("AdminRESP", func(t *testing.T) {
		unauth := dialRaw(t, j.Addr)
		wantErrPrefix(t, "JUPITER ADD before AUTH", unauth.do("JUPITER", "ADD", r2.Addr), "NOAUTH")

		c := dialRaw(t, j.Addr)
		if r := c.do("AUTH", secClientPW); r.String() != "+OK" {
			t.Fatal(r)
		}
		before := status(t, c) // read-only status is open to authenticated clients
		if before["ring_version"] == "" || before["nodes"] != r1.Addr {
			t.Fatalf("JUPITER STATUS = %v", before)
		}
		if r := c.do("JUPITER", "NODES"); r.kind != '*' || len(r.arr) != 1 {
			t.Errorf("JUPITER NODES as default user = %v", r)
		}
		for _, cmd := range [][]string{{"JUPITER", "ADD", r2.Addr}, {"JUPITER", "REMOVE", r1.Addr},
			{"JUPITER", "WEIGHT", r1.Addr, "3"}, {"JUPITER", "ADD", "not-an-address"}} {
			wantErrPrefix(t, strings.Join(cmd, " ")+" as default user", c.do(cmd...), "NOPERM")
		}
		after := status(t, c)
		if after["ring_version"] != before["ring_version"] || after["nodes"] != before["nodes"] {
			t.Errorf("ring changed by refused changes: %v -> %v", before, after)
		}

		a := dialRaw(t, j.Addr)
		wantErrPrefix(t, "AUTH admin <client password>", a.do("AUTH", "admin", secClientPW), "WRONGPASS")
		if r := a.do("AUTH", "admin", secAdminPW); r.String() != "+OK" {
			t.Fatalf("AUTH admin = %v", r)
		}
		if r := a.do("JUPITER", "ADD", r2.Addr); r.String() != "+OK" {
			t.Fatalf("JUPITER ADD as admin = %v", r)
		}
		st := status(t, a)
		if st["ring_version"] == before["ring_version"] || !sameSet(st["nodes"], r1.Addr+","+r2.Addr) {
			t.Errorf("after admin ADD: %v", st)
		}
		if r := a.do("SET", "auth:admin", "v"); r.String() != "+OK" {
			t.Errorf("SET as admin = %v", r)
		}
		// The admin grant is per connection: the default user's connection
		// still cannot change the ring.
		wantErrPrefix(t, "JUPITER REMOVE on the default connection", c.do("JUPITER", "REMOVE", r2.Addr), "NOPERM")
		// Re-authenticating as default drops the admin grant.
		if r := a.do("AUTH", "default", secClientPW); r.String() != "+OK" {
			t.Fatal(r)
		}
		wantErrPrefix(t, "JUPITER REMOVE after AUTH default", a.do("JUPITER", "REMOVE", r2.Addr), "NOPERM")
	})

	t.Run("AdminHTTP", func(t *testing.T) {
		base := "http://" + j.AdminAddr
		version := func() uint64 {
			code, body := secHTTP(t, "GET", base+"/v1/nodes", "", "")
			var n struct {
				RingVersion uint64 `json:"ring_version"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &n) != nil {
				t.Fatalf("GET /v1/nodes = %d %s", code, body)
			}
			return n.RingVersion
		}
		v0 := version()
		add := `{"addr":"` + r3.Addr + `"}`
		for _, auth := range []string{"", "basic:admin:wrong", "basic:default:" + secAdminPW,
			"bearer:" + secClientPW, "bearer:", "basic:admin:"} {
			code, body := secHTTP(t, "POST", base+"/v1/nodes", add, auth)
			if code != http.StatusUnauthorized {
				t.Errorf("POST /v1/nodes with auth %q = %d %s, want 401", strings.SplitN(auth, ":", 2)[0], code, body)
			}
			if strings.Contains(body, secAdminPW) {
				t.Errorf("401 body reveals the admin password: %s", body)
			}
		}
		for _, req := range [][3]string{{"DELETE", "/v1/nodes/" + r1.Addr, ""}, {"PUT", "/v1/nodes/" + r1.Addr + "/weight", `{"weight":2}`}} {
			if code, body := secHTTP(t, req[0], base+req[1], req[2], ""); code != http.StatusUnauthorized {
				t.Errorf("%s %s without credentials = %d %s, want 401", req[0], req[1], code, body)
			}
		}
		if v := version(); v != v0 {
			t.Errorf("ring_version %d -> %d after refused HTTP changes", v0, v)
		}
		code, body := secHTTP(t, "POST", base+"/v1/nodes", add, "basic:admin:"+secAdminPW)
		if code != http.StatusOK || !strings.Contains(body, `"ok": true`) {
			t.Fatalf("POST /v1/nodes with -u admin:<pw> = %d %s", code, body)
		}
		if v := version(); v != v0+1 {
			t.Errorf("ring_version after admin POST = %d, want %d", v, v0+1)
		}
		code, body = secHTTP(t, "DELETE", base+"/v1/nodes/"+r3.Addr, "", "bearer:"+secAdminPW)
		if code != http.StatusOK {
			t.Errorf("DELETE /v1/nodes with Bearer = %d %s", code, body)
		}
		// Reads and probes stay open.
		for _, p := range []string{"/v1/status", "/v1/nodes", "/metrics", "/healthz", "/readyz"} {
			code, body := secHTTP(t, "GET", base+p, "", "")
			if code != http.StatusOK {
				t.Errorf("GET %s without credentials = %d, want 200", p, code)
			}
			if strings.Contains(body, secClientPW) || strings.Contains(body, secAdminPW) {
				t.Errorf("GET %s reveals a password", p)
			}
		}
		// pprof is on the admin port too: it must not serve the command
		// line (which holds the --password flags here).
		if code, body := secHTTP(t, "GET", base+"/debug/pprof/cmdline", "", ""); strings.Contains(body, secClientPW) {
			t.Errorf("GET /debug/pprof/cmdline = %d and reveals --password", code)
		}
	})

	secNoSecrets(t, j, secClientPW, secAdminPW)
}

// TestSecurityPasswordSources starts jupiter with the passwords in files
// (--password-file, --admin-password-file: Kubernetes Secrets mounted as
// files, trailing newline dropped) and in the environment (JUPITER_PASSWORD,
// JUPITER_ADMIN_PASSWORD), and checks that conflicting or empty sources are
// refused at start without echoing a secret.
func TestSecurityPasswordSources(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	check := func(t *testing.T, j *testenv.Jupiter) {
		t.Helper()
		c := dialRaw(t, j.Addr)
		wantErrPrefix(t, "GET before AUTH", c.do("GET", "k"), "NOAUTH")
		wantErrPrefix(t, "AUTH with the file's newline", c.do("AUTH", secClientPW+"\n"), "WRONGPASS")
		if r := c.do("AUTH", secClientPW); r.String() != "+OK" {
			t.Fatalf("AUTH = %v", r)
		}
		wantErrPrefix(t, "JUPITER WEIGHT as default", c.do("JUPITER", "WEIGHT", r.Addr, "2"), "NOPERM")
		if r := c.do("AUTH", "admin", secAdminPW); r.String() != "+OK" {
			t.Fatalf("AUTH admin = %v", r)
		}
		if r := c.do("JUPITER", "WEIGHT", r.Addr, "2"); r.String() != "+OK" {
			t.Errorf("JUPITER WEIGHT as admin = %v", r)
		}
		url := "http://" + j.AdminAddr + "/v1/nodes/" + r.Addr + "/weight"
		if code, _ := secHTTP(t, "PUT", url, `{"weight":3}`, ""); code != http.StatusUnauthorized {
			t.Errorf("PUT weight without credentials = %d, want 401", code)
		}
		if code, body := secHTTP(t, "PUT", url, `{"weight":3}`, "basic:admin:"+secAdminPW); code != http.StatusOK {
			t.Errorf("PUT weight as admin = %d %s", code, body)
		}
		secNoSecrets(t, j, secClientPW, secAdminPW)
	}

	t.Run("Files", func(t *testing.T) {
		pf := secWriteFile(t, "password", secClientPW+"\n")
		af := secWriteFile(t, "admin-password", secAdminPW+"\r\n")
		j := testenv.StartJupiter(t, nil, "--backends", r.Addr, "--password-file", pf, "--admin-password-file", af, "--log-level", "debug")
		check(t, j)
	})

	t.Run("Env", func(t *testing.T) {
		j := testenv.StartJupiter(t, []string{"JUPITER_PASSWORD=" + secClientPW, "JUPITER_ADMIN_PASSWORD=" + secAdminPW},
			"--backends", r.Addr, "--log-level", "debug")
		check(t, j)
	})

	t.Run("EnvFile", func(t *testing.T) {
		pf := secWriteFile(t, "password", secClientPW)
		af := secWriteFile(t, "admin-password", secAdminPW)
		j := testenv.StartJupiter(t, []string{"JUPITER_PASSWORD_FILE=" + pf, "JUPITER_ADMIN_PASSWORD_FILE=" + af},
			"--backends", r.Addr)
		check(t, j)
	})

	t.Run("Refused", func(t *testing.T) {
		bin := testenv.Binary(t)
		empty := secWriteFile(t, "empty", "\n")
		pf := secWriteFile(t, "password", secClientPW)
		for name, args := range map[string][]string{
			"flag and file":       {"--password", secClientPW, "--password-file", pf},
			"empty file":          {"--password-file", empty},
			"missing file":        {"--admin-password-file", empty + ".missing"},
			"admin equals client": {"--password", secClientPW, "--admin-password", secClientPW},
			"bad password map":    {"--backend-password-map", secWriteFile(t, "map", "not-an-address "+secBackendPW+"\n")},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			full := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "", "--backends", r.Addr}, args...)
			out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
			timedOut := ctx.Err() != nil
			cancel()
			if timedOut {
				t.Errorf("%s: jupiter serve kept running, want a refusal at start", name)
			} else if err == nil {
				t.Errorf("%s: jupiter serve exited 0, want a refusal", name)
			}
			if strings.Contains(string(out), secClientPW) || strings.Contains(string(out), secBackendPW) {
				t.Errorf("%s: the error message reveals a secret: %s", name, out)
			}
		}
	})
}
