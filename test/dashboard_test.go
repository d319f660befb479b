package test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// dashboardFile is the Grafana dashboard shipped in deploy/.
const dashboardFile = "../deploy/grafana/jupiter-dashboard.json"

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// seriesName matches a jupiter metric name in a PromQL expression: every
// series jupiter exports starts with jupiter_, and no label or function does.
var seriesName = regexp.MustCompile(`\bjupiter_[a-z0-9_]+\b`)

// loadDashboard parses the dashboard, checks its structure (what Grafana
// needs to load it as it is) and returns the metric names its panels' and
// variables' queries reference.
func loadDashboard(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 36 || len(d.Panels) == 0 {
		t.Fatalf("%s: title %q uid %q schemaVersion %d, %d panels", dashboardFile, d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]bool{}
	names := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if q, _ := json.Marshal(v.Query); v.Type == "query" {
			for _, n := range seriesName.FindAllString(string(q), -1) {
				names[n] = true
			}
		}
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("variables %v: want a datasource variable and an instance variable", vars)
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if o, ok := used[cell{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at %d,%d", o, p.Title, x, y)
				}
				used[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d queries; want the ${datasource} variable and a query", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			found := seriesName.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: query %q reads no jupiter series", p.Title, tg.Expr)
			}
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %q ignores the instance variable", p.Title, tg.Expr)
			}
			for _, n := range found {
				names[n] = true
			}
		}
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// scrapeNames returns the sample names on a /metrics page (histograms'
// _bucket, _sum and _count included).
func scrapeNames(addr string) (map[string]bool, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			out[l[:i]] = true
		}
	}
	return out, nil
}

// dashboardTraffic drives what makes every series of the dashboard
// appear: reads that hit and miss, writes, a command error, a big value
// (the pods run with every command slow-logged and sampled, and a 1 KiB
// big-key threshold).
func dashboardTraffic(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		k := "dash:" + string(rune('a'+i%26))
		if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET through jupiter: %v", err)
		}
		rdb.Get(ctx, k)
		rdb.Get(ctx, k+":missing")
	}
	if err := rdb.Incr(ctx, "dash:a").Err(); err == nil {
		t.Fatal("INCR of a string did not fail")
	}
	if err := rdb.Set(ctx, "dash:big", strings.Repeat("x", 4096), 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// dashboardFlags make every observer series appear quickly.
var dashboardFlags = []string{"--capacity-interval", "500ms", "--slowlog-slower-than", "0",
	"--hotkeys-sample", "1", "--bigkeys-threshold", "1024"}

// missingSeries waits (up to within) until every name is on addr's
// /metrics and returns those that never came.
func missingSeries(t *testing.T, addr string, names []string, within time.Duration) []string {
	t.Helper()
	var missing []string
	for end := time.Now().Add(within); ; time.Sleep(250 * time.Millisecond) {
		have, err := scrapeNames(addr)
		if err != nil {
			t.Fatalf("scrape %s: %v", addr, err)
		}
		missing = missing[:0]
		for _, n := range names {
			if !have[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(end) {
			return missing
		}
	}
}

// clusterOnlySeries are the dashboard's series that only cluster mode
// exports (the leader's rebalance progress).
var clusterOnlySeries = regexp.MustCompile(`^jupiter_rebalance_(epoch|paused|moved_keys|total_keys|moved_bytes|keys_per_second|eta_seconds|errors)$`)

// TestDashboardSeries: every metric that a panel or variable of
// deploy/grafana/jupiter-dashboard.json reads is exported by a live
// jupiter: a cluster-mode pod on the Spanner emulator (all of them), and a
// standalone one (all but the cluster-only rebalance progress). A panel
// whose series does not exist would show "No data" forever; renaming a
// metric without the dashboard fails here. In CI a missing redis-server
// or emulator is a failure, not a skip (testenv.Need, emulator.Host).
func TestDashboardSeries(t *testing.T) {
	names := loadDashboard(t)
	t.Logf("the dashboard reads %d series: %s", len(names), strings.Join(names, " "))
	if testing.Short() {
		t.Skip("starts jupiter processes; skipped with -short (the dashboard's structure was checked)")
	}

	t.Run("cluster", func(t *testing.T) {
		e := startClEnv(t, 2)
		p := e.startPod(e.addrs(0, 1), dashboardFlags...)
		e.waitRingV1(t)
		dashboardTraffic(t, p.rdb)
		if missing := missingSeries(t, p.AdminAddr, names, 30*time.Second); len(missing) > 0 {
			t.Fatalf("the dashboard reads series a cluster-mode pod does not export: %v", missing)
		}
	})
	t.Run("standalone", func(t *testing.T) {
		c := testenv.StartCluster(t, 2, dashboardFlags...)
		rdb := newClient(t, c.Jupiter.Addr)
		dashboardTraffic(t, rdb)
		var want []string
		for _, n := range names {
			if !clusterOnlySeries.MatchString(n) {
				want = append(want, n)
			}
		}
		if missing := missingSeries(t, c.Jupiter.AdminAddr, want, 30*time.Second); len(missing) > 0 {
			t.Fatalf("the dashboard reads series a standalone jupiter does not export: %v", missing)
		}
		if have, _ := scrapeNames(c.Jupiter.AdminAddr); slices.ContainsFunc(names, func(n string) bool { return clusterOnlySeries.MatchString(n) && have[n] }) {
			t.Log("standalone now exports rebalance progress too: clusterOnlySeries can shrink")
		}
	})
}
