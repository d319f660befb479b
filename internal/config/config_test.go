package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := Default()
	c.Bind(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestDefaultsNeedBackends(t *testing.T) {
	if err := Default().Validate(); err == nil || !strings.Contains(err.Error(), "--backends") {
		t.Fatalf("Default().Validate() = %v, want a --backends error", err)
	}
	c := Default()
	c.Backends = []string{"127.0.0.1:6379"}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults with one backend: %v", err)
	}
}

func TestFlagsAndEnv(t *testing.T) {
	c, err := load(t, []string{"--backends", "a:1, b:2", "--request-timeout", "3s"},
		map[string]string{"JUPITER_LISTEN": "127.0.0.1:7000", "JUPITER_REQUEST_TIMEOUT": "9s", "JUPITER_BACKEND_CONNS": "4"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Backends, ","); got != "a:1,b:2" {
		t.Errorf("backends = %q", got)
	}
	if c.Listen != "127.0.0.1:7000" {
		t.Errorf("listen from env = %q", c.Listen)
	}
	if c.RequestTimeout != 3*time.Second {
		t.Errorf("flag must win over env: request timeout = %v", c.RequestTimeout)
	}
	if c.BackendConns != 4 {
		t.Errorf("backend conns from env = %d", c.BackendConns)
	}
	if _, err := load(t, nil, map[string]string{"JUPITER_BACKEND_CONNS": "x"}); err == nil || !strings.Contains(err.Error(), "JUPITER_BACKEND_CONNS") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--backends", "a:1,a:1"}, []string{"listed twice"}},
		{[]string{"--backends", "a:0"}, []string{"--backends"}},
		{[]string{"--backends", "a:1", "--listen", "nope"}, []string{"--listen"}},
		{[]string{"--backends", "a:1", "--max-arg-bytes", "10", "--log-level", "loud"}, []string{"--max-arg-bytes", "--log-level"}},
		{[]string{"--backends", "a:1", "--rebalance-hold-max", "1ms"}, []string{"--rebalance-hold-max"}},
		{[]string{"--backends", "a:1", "--rebalance-hold-max", "1m"}, []string{"--rebalance-hold-max"}},
		{[]string{"--backends", "a:1", "--capacity-interval", "10ms"}, []string{"--capacity-interval"}},
		{[]string{"--backends", "a:1", "--capacity-interval", "-1s"}, []string{"--capacity-interval"}},
		{[]string{"--backends", "a:1", "--slowlog-max-len", "-1", "--hotkeys-sample", "-2", "--bigkeys-threshold", "-1", "--hotkeys-half-life", "10ms"},
			[]string{"--slowlog-max-len", "--hotkeys-sample", "--bigkeys-threshold", "--hotkeys-half-life"}},
		{[]string{"--spanner-db", "projects/p"}, []string{"--spanner-db", "--hedge-addr"}},
		{[]string{"--spanner-db", "projects/p/instances/i/databases/d", "--hedge-addr", "10.0.0.1:7070", "--lock-table", "bad-name"}, []string{"--lock-table"}},
		{[]string{"--spanner-db", "projects/p/instances/i/databases/d", "--hedge-addr", "10.0.0.1:7070", "--migrate-inflight", "0"}, []string{"--migrate-inflight"}},
		{[]string{"--spanner-db", "projects/p/instances/i/databases/d", "--hedge-addr", "10.0.0.1:7070", "--migrate-inflight", "17"}, []string{"--migrate-inflight"}},
	}
	for _, tt := range tests {
		_, err := load(t, tt.args, nil)
		if err == nil {
			t.Errorf("%q: no error", tt.args)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", tt.args, err, w)
			}
		}
	}
	// A negative slow-log threshold is valid: it turns the log off.
	if c, err := load(t, []string{"--backends", "a:1", "--slowlog-slower-than", "-1", "--hotkeys-sample", "0"}, nil); err != nil || c.SlowlogSlowerThan != -1 {
		t.Errorf("--slowlog-slower-than -1: %v", err)
	}
	c, err := load(t, []string{"--spanner-db", "projects/p/instances/i/databases/d", "--hedge-addr", "10.0.0.1:7070"}, nil)
	if err != nil || !c.Cluster() {
		t.Errorf("cluster mode without backends must be valid: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("admin-listen"); got != "JUPITER_ADMIN_LISTEN" {
		t.Fatal(got)
	}
}

func TestCapacityInterval(t *testing.T) {
	if d := Default().CapacityInterval; d != 5*time.Second {
		t.Errorf("default capacity interval %v, want 5s", d)
	}
	for _, v := range []string{"0", "250ms", "10m"} {
		c, err := load(t, []string{"--backends", "a:1"}, map[string]string{"JUPITER_CAPACITY_INTERVAL": v})
		if err != nil {
			t.Errorf("JUPITER_CAPACITY_INTERVAL=%s: %v", v, err)
		} else if want, _ := time.ParseDuration(v); c.CapacityInterval != want {
			t.Errorf("JUPITER_CAPACITY_INTERVAL=%s gave %v", v, c.CapacityInterval)
		}
	}
}

// TestFleetHealthAndRoutes: --fleet-health is on by default and can be
// turned off (flag or env); --backend-route parses ring-addr=dial-addr
// pairs and names a malformed one.
func TestFleetHealthAndRoutes(t *testing.T) {
	if !Default().FleetHealth {
		t.Error("--fleet-health is off by default")
	}
	c, err := load(t, []string{"--backends", "a:1"}, map[string]string{"JUPITER_FLEET_HEALTH": "false"})
	if err != nil || c.FleetHealth {
		t.Errorf("JUPITER_FLEET_HEALTH=false: %v %v", c.FleetHealth, err)
	}
	c, err = load(t, []string{"--backends", "a:1", "--backend-route", "a:1=127.0.0.1:7001, b:2=tunnel:9"}, nil)
	if err == nil {
		err = c.Security.resolveSecrets()
	}
	if err != nil || len(c.Security.BackendRoutes) != 2 || c.Security.BackendRoutes["a:1"] != "127.0.0.1:7001" || c.Security.BackendRoutes["b:2"] != "tunnel:9" {
		t.Errorf("--backend-route: %v %v", c.Security.BackendRoutes, err)
	}
	c, _ = load(t, []string{"--backends", "a:1", "--backend-route", "a:1"}, nil)
	if err := c.Security.resolveSecrets(); err == nil || !strings.Contains(err.Error(), "--backend-route") {
		t.Errorf("a route without '=': %v", err)
	}
}
