package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/tidwall/redcon"
)

// fakeCapacity is a CapacitySource with fixed figures.
type fakeCapacity struct {
	figs  []capacity.Figures
	fleet capacity.Fleet
}

func (f fakeCapacity) Snapshot() []capacity.Figures { return f.figs }
func (f fakeCapacity) Fleet() capacity.Fleet        { return f.fleet }

func sampleFigures(addr string) capacity.Figures {
	return capacity.Figures{Addr: addr, Info: capacity.Info{UsedMemory: 1048576, MaxMemory: 4194304,
		MaxMemoryPolicy: "allkeys-lru", Keys: 1200, Expires: 7, EvictedKeys: 3, ExpiredKeys: 9, KeyspaceHits: 75,
		KeyspaceMisses: 25, Clients: 12, OpsPerSec: 310, Role: "master"},
		SlotShare: 0.5, KeyShare: 0.6, MemoryRatio: 0.25, HitRatio: 0.75, PodOpsPerSec: 120.5,
		FleetOpsPerSec: 241, InfoAgeMs: 1500, InfoRequests: 10, InfoErrors: 1}
}

// TestNodeLineFormat: the capacity fields follow the unchanged leading
// "addr weight= slots= up=" fields, and ParseNode reads the line back.
func TestNodeLineFormat(t *testing.T) {
	f := sampleFigures("10.0.0.1:6379")
	n := NodeStatus{Addr: "10.0.0.1:6379", Weight: 2, Slots: 8192, Up: true, Capacity: &f}
	line := FormatNode(n)
	want := "10.0.0.1:6379 weight=2 slots=8192 up=1 slot_share=0.5000 used_memory=1048576 maxmemory=4194304 " +
		"maxmemory_policy=allkeys-lru memory_ratio=0.2500 keys=1200 key_share=0.6000 evicted_keys=3 expired_keys=9 " +
		"keyspace_hits=75 keyspace_misses=25 hit_ratio=0.7500 connected_clients=12 ops_pod=120.5 ops_fleet=241.0 " +
		"ops_node=310.0 role=master info_age_ms=1500"
	if line != want {
		t.Fatalf("FormatNode =\n%s\nwant\n%s", line, want)
	}
	legacy := FormatNode(NodeStatus{Addr: n.Addr, Weight: 2, Slots: 8192, Up: true})
	if legacy != "10.0.0.1:6379 weight=2 slots=8192 up=1" || !strings.HasPrefix(line, legacy+" ") {
		t.Fatalf("the leading fields changed: %q / %q", legacy, line)
	}
	got, err := ParseNode(line)
	if err != nil {
		t.Fatal(err)
	}
	// What the line does not carry (expires, INFO counts, error) stays unknown.
	wantF := f
	wantF.Expires, wantF.InfoRequests, wantF.InfoErrors = -1, 0, 0
	if got.Addr != n.Addr || got.Weight != 2 || got.Slots != 8192 || !got.Up || got.Capacity == nil || !reflect.DeepEqual(*got.Capacity, wantF) {
		t.Fatalf("ParseNode(FormatNode(n)) =\n%+v %+v\nwant\n%+v", got, got.Capacity, wantF)
	}

	// Unknown figures print as -1 / unknown and read back as such.
	u := *unknownFigures("10.0.0.2:6379")
	line = FormatNode(NodeStatus{Addr: u.Addr, Capacity: &u})
	for _, part := range []string{" used_memory=-1 ", " memory_ratio=-1 ", " hit_ratio=-1 ", " role=unknown ",
		" maxmemory_policy=unknown ", " ops_fleet=-1 ", " info_age_ms=-1"} {
		if !strings.Contains(line, part) {
			t.Errorf("unknown figures: %q lacks %q", line, part)
		}
	}
	if got, err := ParseNode(line); err != nil || got.Capacity.Role != "" || got.Capacity.UsedMemory != -1 || got.Capacity.HitRatio != -1 {
		t.Errorf("ParseNode(unknown) = %+v %v", got.Capacity, err)
	}
	// An old server's line: no capacity; a newer server's extra fields are ignored.
	if got, err := ParseNode("a:1 weight=1 slots=3 up=0 future=x"); err != nil || got.Capacity != nil || got.Slots != 3 {
		t.Errorf("ParseNode(legacy line) = %+v %v", got, err)
	}
	if _, err := ParseNode("a:1 keys=many"); err == nil {
		t.Error("ParseNode accepted keys=many")
	}
}

// TestNodesWithCapacity: JUPITER NODES, JUPITER STATUS and GET /v1/nodes of
// a Local controller with a capacity source.
func TestNodesWithCapacity(t *testing.T) {
	r, err := ring.New(1, []ring.Node{{Addr: "10.0.0.1:6379"}, {Addr: "10.0.0.2:6379"}})
	if err != nil {
		t.Fatal(err)
	}
	src := fakeCapacity{figs: []capacity.Figures{sampleFigures("10.0.0.2:6379"), sampleFigures("10.0.0.1:6379")},
		fleet: capacity.Fleet{Pods: 3, At: time.Now().Add(-2 * time.Second)}}
	ctl := &Local{Router: &fakeRouter{r: r}, Self: "x", Capacity: src}
	h := Handler{C: ctl}
	_, v := redcon.ReadNextRESP(h.Command(context.Background(), [][]byte{[]byte("JUPITER"), []byte("NODES")}))
	var lines []string
	v.ForEach(func(e redcon.RESP) bool { lines = append(lines, e.String()); return true })
	if len(lines) != 2 {
		t.Fatalf("JUPITER NODES: %q", lines)
	}
	for i, l := range lines {
		n, err := ParseNode(l)
		if err != nil || n.Addr != r.Node(i).Addr || n.Capacity == nil || n.Capacity.Keys != 1200 {
			t.Errorf("NODES line %d %q: %+v %v", i, l, n, err)
		}
	}
	_, st := redcon.ReadNextRESP(h.Command(context.Background(), [][]byte{[]byte("JUPITER"), []byte("STATUS")}))
	s := st.String()
	if !strings.Contains(s, "\r\nfleet_pods:3\r\n") || !strings.Contains(s, "\r\nfleet_age_ms:2") {
		t.Errorf("STATUS lacks fleet lines:\n%s", s)
	}

	mux := http.NewServeMux()
	RegisterHTTP(mux, ctl)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/v1/nodes", nil))
	var out struct {
		Nodes []struct {
			Addr     string         `json:"addr"`
			Capacity map[string]any `json:"capacity"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || len(out.Nodes) != 2 {
		t.Fatalf("GET /v1/nodes: %v %s", err, w.Body.String())
	}
	c := out.Nodes[0].Capacity
	for k, want := range map[string]any{"used_memory": 1048576.0, "maxmemory": 4194304.0, "keys": 1200.0,
		"evicted_keys": 3.0, "keyspace_hits": 75.0, "hit_ratio": 0.75, "connected_clients": 12.0,
		"pod_ops_per_sec": 120.5, "fleet_ops_per_sec": 241.0, "role": "master", "key_share": 0.6,
		"slot_share": 0.5, "info_age_ms": 1500.0} {
		if c[k] != want {
			t.Errorf("GET /v1/nodes capacity.%s = %v, want %v", k, c[k], want)
		}
	}

	// Without a source (gatherer off) nothing is added.
	ctl.Capacity = nil
	if st := ctl.Status(context.Background()); st.Nodes[0].Capacity != nil || len(st.Extra) != 0 {
		t.Errorf("no capacity source: %+v", st)
	}
}

// FuzzParseNode: any line parses or errors without panicking, and what
// parses renders to a line that parses to the same node.
func FuzzParseNode(f *testing.F) {
	s := sampleFigures("a:1")
	f.Add(FormatNode(NodeStatus{Addr: "a:1", Weight: 1, Slots: 3, Up: true, Capacity: &s}))
	f.Add("a:1 weight=1 slots=3 up=0")
	f.Add("a:1 keys=-1 role= hit_ratio=NaN")
	f.Fuzz(func(t *testing.T, line string) {
		n, err := ParseNode(line)
		if err != nil || strings.ContainsAny(n.Addr, "\r\n") {
			return
		}
		again, err := ParseNode(FormatNode(n))
		if err != nil {
			t.Fatalf("FormatNode(ParseNode(%q)) = %q does not parse: %v", line, FormatNode(n), err)
		}
		if FormatNode(again) != FormatNode(n) {
			t.Fatalf("round trip changed %q into %q", FormatNode(n), FormatNode(again))
		}
	})
}
