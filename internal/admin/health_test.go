package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/tidwall/redcon"
)

type fakeHealth map[string]NodeHealth

func (f fakeHealth) NodeHealth() map[string]NodeHealth { return f }
func (f fakeHealth) HealthLines() [][2]string {
	return [][2]string{{"health_scope", "fleet"}, {"nodes_down", "10.0.0.2:6379"}}
}

// TestNodeHealth: the health fields follow the capacity fields (the
// leading fields unchanged), read back with ParseNode; STATUS carries the
// source's lines and GET /v1/nodes a health object per node.
func TestNodeHealth(t *testing.T) {
	down := NodeHealth{State: "down", Scope: "fleet", DownReports: 2, Reporters: 3, Quorum: 2,
		DownBy: []string{"10.1.0.1:7000", "10.1.0.2:7000"}, SinceMs: 1200, Error: "i/o timeout", Local: "down"}
	f := sampleFigures("10.0.0.2:6379")
	line := FormatNode(NodeStatus{Addr: "10.0.0.2:6379", Weight: 1, Slots: 9, Up: true, Capacity: &f, Health: &down})
	if !strings.HasPrefix(line, "10.0.0.2:6379 weight=1 slots=9 up=1 slot_share=") ||
		!strings.HasSuffix(line, " info_age_ms=1500 health=down fleet_down_reports=2/3 down_by=10.1.0.1:7000,10.1.0.2:7000 local=down") {
		t.Fatalf("FormatNode = %q", line)
	}
	got, err := ParseNode(line)
	if err != nil || got.Capacity == nil || got.Health == nil {
		t.Fatalf("ParseNode = %+v %v", got, err)
	}
	want := NodeHealth{State: "down", DownReports: 2, Reporters: 3, DownBy: down.DownBy, Local: "down"}
	if !reflect.DeepEqual(*got.Health, want) {
		t.Errorf("ParseNode health = %+v, want %+v", *got.Health, want)
	}
	up := NodeHealth{State: "up", Local: "unknown", DownBy: []string{}}
	got, _ = ParseNode(FormatNode(NodeStatus{Addr: "a:1", Health: &up}))
	if got.Health == nil || got.Health.State != "up" || got.Health.DownBy != nil || got.Health.Local != "unknown" || got.Capacity != nil {
		t.Errorf("up line read back as %+v", got.Health)
	}
	if _, err := ParseNode("a:1 fleet_down_reports=2"); err == nil {
		t.Error("ParseNode accepted fleet_down_reports=2")
	}

	r, err := ring.New(1, []ring.Node{{Addr: "10.0.0.1:6379"}, {Addr: "10.0.0.2:6379"}})
	if err != nil {
		t.Fatal(err)
	}
	ctl := &Local{Router: &fakeRouter{r: r}, Self: "x",
		Health: fakeHealth{"10.0.0.2:6379": down, "10.0.0.1:6379": up}}
	h := Handler{C: ctl}
	_, v := redcon.ReadNextRESP(h.Command(context.Background(), [][]byte{[]byte("JUPITER"), []byte("NODES")}))
	var lines []string
	v.ForEach(func(e redcon.RESP) bool { lines = append(lines, e.String()); return true })
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " health=up fleet_down_reports=0/0 down_by=- local=unknown") ||
		!strings.Contains(lines[1], " health=down ") {
		t.Errorf("JUPITER NODES = %q", lines)
	}
	_, st := redcon.ReadNextRESP(h.Command(context.Background(), [][]byte{[]byte("JUPITER"), []byte("STATUS")}))
	if s := st.String(); !strings.Contains(s, "\r\nhealth_scope:fleet\r\n") || !strings.Contains(s, "\r\nnodes_down:10.0.0.2:6379") {
		t.Errorf("STATUS lacks the health lines:\n%s", s)
	}
	mux := http.NewServeMux()
	RegisterHTTP(mux, ctl)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/v1/nodes", nil))
	var out NodesJSON
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || len(out.Nodes) != 2 || out.Nodes[1].Health == nil {
		t.Fatalf("GET /v1/nodes: %v %s", err, w.Body.String())
	}
	if got := *out.Nodes[1].Health; !reflect.DeepEqual(got, down) {
		t.Errorf("/v1/nodes health = %+v, want %+v", got, down)
	}
	var raw struct {
		Nodes []struct {
			Health map[string]any `json:"health"`
		} `json:"nodes"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &raw)
	for _, k := range []string{"state", "scope", "down_reports", "reporters", "quorum", "down_by", "since_ms", "error", "local"} {
		if _, ok := raw.Nodes[1].Health[k]; !ok {
			t.Errorf("/v1/nodes health lacks %q: %v", k, raw.Nodes[1].Health)
		}
	}
}
