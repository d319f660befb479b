package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// testDB is three scrapes, 1s apart, of two pods.
func testDB(t *testing.T) *db {
	t.Helper()
	d := newDB(1500)
	// Per scrape: get and set counters (get resets before the third),
	// cumulative buckets of a latency histogram, the stage.
	page := func(get, set, b1, b2 int, stage string) string {
		other := map[string]string{"stable": "migrating", "migrating": "stable"}[stage]
		return fmt.Sprintf(`jupiter_command_calls_total{command="get"} %d
jupiter_command_calls_total{command="set"} %d
jupiter_x_bucket{command="get",le="0.001"} %d
jupiter_x_bucket{command="get",le="0.01"} %d
jupiter_x_bucket{command="get",le="+Inf"} %d
jupiter_ring_stage{stage=%q} 1
jupiter_ring_stage{stage=%q} 0
`, get, set, b1, b2, b2, stage, other)
	}
	pages := []string{page(10, 0, 0, 0, "stable"), page(20, 5, 50, 100, "migrating"), page(4, 10, 100, 200, "migrating")}
	for i, p := range pages {
		for _, pod := range []string{"a", "b"} {
			if err := parseExposition(d, p, int64(i)*1000, labels{"instance": pod}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// TestEval: the PromQL subset over a small recording: rate with a counter
// reset, sums by label, histogram_quantile's interpolation, comparison
// filters, vector division and topk.
func TestEval(t *testing.T) {
	d := testDB(t)
	for _, tc := range []struct {
		expr string
		at   int64
		want string // legend {{command}}/{{stage}}=value, sorted
	}{
		{`sum by (command) (rate(jupiter_command_calls_total{instance=~".*"}[5s]))`, 2000, "get=14 set=10"}, // get: 10→20, reset to 4: (10+4)/2s per pod
		{`sum(rate(jupiter_command_calls_total{command="set"}[5s]))`, 2000, "=10"},
		{`sum by (command) (rate(jupiter_command_calls_total[5s]))`, 0, ""}, // one point: no rate
		{`histogram_quantile(0.75, sum by (le, command) (rate(jupiter_x_bucket[5s])))`, 2000, "get=0.0055"},
		{`histogram_quantile(0.25, sum by (le, command) (rate(jupiter_x_bucket[5s])))`, 2000, "get=0.0005"},
		{`max by (stage) (jupiter_ring_stage{instance="a"}) > 0`, 2000, "migrating=1"},
		{`max by (stage) (jupiter_ring_stage) > 0`, 0, "stable=1"},
		{`sum by (command) (jupiter_command_calls_total) / sum by (command) (jupiter_command_calls_total{instance="a"})`, 1000, "get=2 set=2"},
		{`topk(1, sum by (command) (jupiter_command_calls_total))`, 2000, "set=20"},
		{`count(jupiter_ring_stage{stage="stable"})`, 2000, "=2"},
		{`jupiter_command_calls_total{command="get",instance!~"a|c"} * 2 + 1`, 2000, "get=9"},
	} {
		n, err := parse(tc.expr)
		if err != nil {
			t.Fatalf("parse %s: %v", tc.expr, err)
		}
		v, err := n.eval(d, tc.at)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		var got []string
		for _, e := range v.vec {
			k := e.l["command"] + e.l["stage"]
			got = append(got, k+"="+strconv.FormatFloat(e.v, 'g', 6, 64))
		}
		sort.Strings(got)
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s at %d = %q, want %q", tc.expr, tc.at, g, tc.want)
		}
	}
	for _, bad := range []string{`rate(jupiter_x)`, `sum(`, `jupiter_x{a~"b"}`, `quantile(0.5, jupiter_x)`} {
		if n, err := parse(bad); err == nil {
			if _, err := n.eval(d, 0); err == nil {
				t.Errorf("%s: no error", bad)
			}
		}
	}
	if f := format("s", 0.0042, nil); f != "4.2 ms" {
		t.Errorf("format 4.2ms = %q", f)
	}
	if f := format("bytes", 3*1024*1024, nil); f != "3 MiB" {
		t.Errorf("format 3 MiB = %q", f)
	}
	if v := niceCeil(730); v != 1000 || math.IsNaN(niceCeil(0.3)) {
		t.Errorf("niceCeil(730) = %v", v)
	}
}

// TestRenderDashboard: every query of the shipped dashboard parses and
// evaluates, and every panel draws, over a recording of a few scrapes.
func TestRenderDashboard(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/jupiter-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	r := &recording{db: testDB(t), times: []int64{0, 1000, 2000}, interval: 1000}
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if _, err := parse(r.expand(tg.Expr)); err != nil {
				t.Errorf("panel %q: %s: %v", p.Title, tg.Expr, err)
			}
			n++
		}
	}
	if n < 20 {
		t.Fatalf("only %d queries in the dashboard", n)
	}
	img, err := draw(d, r, 1200, "test")
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 1200 || img.Bounds().Dy() < 1000 {
		t.Errorf("image %v", img.Bounds())
	}
}
