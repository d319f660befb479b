package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/tidwall/redcon"
)

// observed returns observers holding a few entries of each kind.
func observed() Observers {
	o := Observers{Slowlog: slowlog.New(time.Millisecond, 8), HotKeys: hotkeys.New(hotkeys.Config{Scale: 10, HalfLife: -1}),
		BigKeys: hotkeys.NewBig(100, 8)}
	o.Slowlog.Add(slowlog.Entry{Time: 1700000000, DurationUS: 2500, NodeUS: 2000, ProxyUS: 500, Nodes: []string{"10.0.0.1:6379"},
		Args: []string{"GET", "user:1"}, Client: "10.0.1.9:5000", ClientName: "app"})
	o.Slowlog.Add(slowlog.Entry{Time: 1700000001, DurationUS: 3000, NodeUS: -1, ProxyUS: -1, Nodes: []string{},
		Args: []string{"SET", "a b", "x\x00\"y\n"}, Client: "10.0.1.9:5001"})
	for range 3 {
		o.HotKeys.Add(hotkeys.Sample{Key: []byte("hot"), Node: "10.0.0.1:6379", Bytes: 10}, 0)
	}
	o.HotKeys.Add(hotkeys.Sample{Key: []byte("fat"), Node: "10.0.0.2:6379", Bytes: 1000, Write: true}, 0)
	o.BigKeys.Add([]byte("blob"), "set", "10.0.0.2:6379", 150, false, 1700000002)
	return o
}

func TestObserveCommands(t *testing.T) {
	h := Handler{C: &Local{Router: &fakeRouter{}, Self: "x"}, Obs: observed()}
	ctx := context.Background()
	do := func(args ...string) []byte {
		bs := make([][]byte, len(args))
		for i, a := range args {
			bs[i] = []byte(a)
		}
		return h.Command(ctx, append([][]byte{[]byte("JUPITER")}, bs...))
	}
	lines := func(reply []byte) []string {
		t.Helper()
		_, v := redcon.ReadNextRESP(reply)
		if v.Type != redcon.Array {
			t.Fatalf("reply %q is not an array", reply)
		}
		var out []string
		v.ForEach(func(e redcon.RESP) bool {
			out = append(out, e.String())
			return true
		})
		return out
	}
	got := lines(do("SLOWLOG"))
	want := []string{
		`id=1 time=1700000001 duration_us=3000 node_us=? proxy_us=? nodes= client=10.0.1.9:5001 name= cmd="SET" "a b" "x\x00\"y\n"`,
		`id=0 time=1700000000 duration_us=2500 node_us=2000 proxy_us=500 nodes=10.0.0.1:6379 client=10.0.1.9:5000 name=app cmd="GET" "user:1"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("JUPITER SLOWLOG =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := lines(do("SLOWLOG", "GET", "1")); len(got) != 1 || !strings.HasPrefix(got[0], "id=1 ") {
		t.Errorf("JUPITER SLOWLOG GET 1 = %q", got)
	}
	if got := lines(do("SLOWLOG", "-1")); len(got) != 2 {
		t.Errorf("JUPITER SLOWLOG -1 = %q", got)
	}
	if r := string(do("SLOWLOG", "LEN")); r != ":2\r\n" {
		t.Errorf("JUPITER SLOWLOG LEN = %q", r)
	}
	for _, bad := range [][]string{{"SLOWLOG", "x"}, {"SLOWLOG", "-2"}, {"SLOWLOG", "GET", "1", "2"}, {"HOTKEYS", "-1"}, {"BIGKEYS", "x"}} {
		if r := string(do(bad...)); !strings.HasPrefix(r, "-ERR usage") {
			t.Errorf("JUPITER %v = %q, want a usage error", bad, r)
		}
	}
	if r := string(do("SLOWLOG", "NODES")); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("JUPITER SLOWLOG NODES outside the proxy = %q", r)
	}

	hot := lines(do("HOTKEYS"))
	if len(hot) != 2 || hot[0] != `key="hot" count=30 bytes=300 reads=30 writes=0 node=10.0.0.1:6379 id=`+hotkeys.ID("hot") ||
		hot[1] != `key="fat" count=10 bytes=10000 reads=0 writes=10 node=10.0.0.2:6379 id=`+hotkeys.ID("fat") {
		t.Errorf("JUPITER HOTKEYS = %q", hot)
	}
	if b := lines(do("HOTKEYS", "BYTES", "1")); len(b) != 1 || !strings.HasPrefix(b[0], `key="fat" `) {
		t.Errorf("JUPITER HOTKEYS BYTES 1 = %q", b)
	}
	big := lines(do("BIGKEYS"))
	if len(big) != 1 || big[0] != `key="blob" command=set size=150 dir=request count=1 node=10.0.0.2:6379 last=1700000002` {
		t.Errorf("JUPITER BIGKEYS = %q", big)
	}
	for _, sub := range []string{"SLOWLOG", "HOTKEYS", "BIGKEYS"} {
		if r := string(do(sub, "RESET")); r != "+OK\r\n" {
			t.Errorf("JUPITER %s RESET = %q", sub, r)
		}
		if got := lines(do(sub)); len(got) != 0 {
			t.Errorf("JUPITER %s after RESET = %q", sub, got)
		}
	}
	off := Handler{C: h.C}
	for _, sub := range []string{"HOTKEYS", "BIGKEYS"} {
		if r := string(off.Command(ctx, [][]byte{[]byte("JUPITER"), []byte(sub)})); !strings.Contains(r, "off on this pod") {
			t.Errorf("JUPITER %s with it off = %q", sub, r)
		}
	}
	if r := string(off.Command(ctx, [][]byte{[]byte("JUPITER"), []byte("SLOWLOG")})); r != "*0\r\n" {
		t.Errorf("JUPITER SLOWLOG without a log = %q", r)
	}
}

func TestObserveHTTP(t *testing.T) {
	mux := http.NewServeMux()
	observed().Register(mux, "")
	get := func(path string, v any) int {
		t.Helper()
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code == 200 {
			if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
				t.Fatalf("%s: %v in %s", path, err, w.Body)
			}
		}
		return w.Code
	}
	var sl SlowlogJSON
	if code := get("/v1/slowlog", &sl); code != 200 || sl.SlowerThanUS != 1000 || sl.MaxLen != 8 || sl.Len != 2 || len(sl.Entries) != 2 {
		t.Fatalf("/v1/slowlog = %d %+v", code, sl)
	}
	e := sl.Entries[1]
	if e.NodeUS != 2000 || e.ProxyUS != 500 || e.Nodes[0] != "10.0.0.1:6379" || e.Args[1] != "user:1" || e.ClientName != "app" {
		t.Errorf("/v1/slowlog entry %+v", e)
	}
	if code := get("/v1/slowlog?n=1", &sl); code != 200 || len(sl.Entries) != 1 || sl.Entries[0].ID != 1 {
		t.Errorf("/v1/slowlog?n=1 = %d %+v", code, sl)
	}
	var hk HotKeysJSON
	if code := get("/v1/hotkeys?by=bytes", &hk); code != 200 || hk.Sample != 10 || hk.By != "bytes" || len(hk.Keys) != 2 ||
		hk.Keys[0].Key != "fat" || hk.Keys[0].Bytes != 10000 {
		t.Errorf("/v1/hotkeys?by=bytes = %d %+v", code, hk)
	}
	if code := get("/v1/hotkeys?n=1", &hk); code != 200 || hk.By != "count" || len(hk.Keys) != 1 || hk.Keys[0].Key != "hot" {
		t.Errorf("/v1/hotkeys?n=1 = %d %+v", code, hk)
	}
	var bk BigKeysJSON
	if code := get("/v1/bigkeys", &bk); code != 200 || bk.Threshold != 100 || len(bk.Keys) != 1 || bk.Keys[0].Size != 150 {
		t.Errorf("/v1/bigkeys = %d %+v", code, bk)
	}
	for _, bad := range []string{"/v1/slowlog?n=x", "/v1/hotkeys?by=keys", "/v1/bigkeys?n=-5"} {
		if code := get(bad, nil); code != http.StatusBadRequest {
			t.Errorf("%s = %d, want 400", bad, code)
		}
	}
	// With an admin password: 401 without it, 200 with it.
	mux = http.NewServeMux()
	observed().Register(mux, "adm")
	for _, path := range []string{"/v1/slowlog", "/v1/hotkeys", "/v1/bigkeys"} {
		if code := get(path, nil); code != http.StatusUnauthorized {
			t.Errorf("%s without the admin password = %d, want 401", path, code)
		}
		req := httptest.NewRequest("GET", path, nil)
		req.SetBasicAuth("admin", "adm")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"keys"`) && !strings.Contains(w.Body.String(), `"entries"`) {
			t.Errorf("%s with the admin password = %d %s", path, w.Code, w.Body)
		}
	}
	// Off: valid, empty replies.
	mux = http.NewServeMux()
	Observers{}.Register(mux, "")
	if code := get("/v1/hotkeys", &hk); code != 200 || hk.Sample != 0 || hk.Keys == nil || len(hk.Keys) != 0 {
		t.Errorf("/v1/hotkeys off = %d %+v", code, hk)
	}
	if code := get("/v1/slowlog", &sl); code != 200 || sl.SlowerThanUS != -1 || sl.Entries == nil {
		t.Errorf("/v1/slowlog off = %d %+v", code, sl)
	}
	// Scopes: the fleet's by default, this pod's with scope=pod; a fleet
	// that cannot be asked is a 503.
	o := observed()
	o.Fleet = func(context.Context, int, hotkeys.Rank) (FleetHotKeys, error) {
		return FleetHotKeys{Pods: 2, Keys: []hotkeys.Item{{Key: "k", Count: 9, Pods: 2}}}, nil
	}
	mux = http.NewServeMux()
	o.Register(mux, "")
	if code := get("/v1/hotkeys", &hk); code != 200 || hk.Scope != "fleet" || hk.Pods != 2 || len(hk.Keys) != 1 || hk.Keys[0].Pods != 2 {
		t.Errorf("/v1/hotkeys with a fleet = %d %+v", code, hk)
	}
	if code := get("/v1/hotkeys?scope=pod", &hk); code != 200 || hk.Scope != "pod" || hk.Pods != 1 || len(hk.Keys) != 2 {
		t.Errorf("/v1/hotkeys?scope=pod = %d %+v", code, hk)
	}
	if code := get("/v1/hotkeys?scope=all", nil); code != http.StatusBadRequest {
		t.Errorf("/v1/hotkeys?scope=all = %d, want 400", code)
	}
	o.Fleet = func(context.Context, int, hotkeys.Rank) (FleetHotKeys, error) {
		return FleetHotKeys{}, errors.New("no leader")
	}
	mux = http.NewServeMux()
	o.Register(mux, "")
	if code := get("/v1/hotkeys", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/v1/hotkeys without a leader = %d, want 503", code)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":             `""`,
		"plain key":    `"plain key"`,
		"a\"b\\c":      `"a\"b\\c"`,
		"\r\n\t\a\b":   `"\r\n\t\a\b"`,
		"\x00\xff\x7f": `"\x00\xff\x7f"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestHotKeysScopes: JUPITER HOTKEYS is the fleet's report when the pod
// is part of one (Fleet set), FLEET and POD choose, standalone's fleet is
// the pod, and a fleet that cannot be asked is an error that points to
// POD.
func TestHotKeysScopes(t *testing.T) {
	o := observed()
	do := func(o Observers, args ...string) string {
		bs := [][]byte{[]byte("JUPITER"), []byte("HOTKEYS")}
		for _, a := range args {
			bs = append(bs, []byte(a))
		}
		return string(Handler{C: &Local{Router: &fakeRouter{}, Self: "x"}, Obs: o}.Command(context.Background(), bs))
	}
	pod := do(o, "POD")
	if do(o) != pod || do(o, "FLEET") != pod || !strings.Contains(pod, `key="hot"`) || strings.Contains(pod, "pods=") {
		t.Errorf("standalone: HOTKEYS %q, FLEET %q, POD %q", do(o), do(o, "FLEET"), pod)
	}
	var asked []any
	o.Fleet = func(_ context.Context, n int, by hotkeys.Rank) (FleetHotKeys, error) {
		asked = append(asked, n, by)
		return FleetHotKeys{Pods: 3, Keys: []hotkeys.Item{{Key: "k", KeyBytes: 1, Node: "n", Count: 9, Pods: 2}}}, nil
	}
	if r := do(o, "FLEET", "BYTES", "5"); !strings.Contains(r, `key="k" count=9 `) || !strings.Contains(r, " pods=2") {
		t.Errorf("HOTKEYS FLEET BYTES 5 = %q", r)
	}
	if r := do(o); !strings.Contains(r, `key="k"`) {
		t.Errorf("HOTKEYS with a fleet = %q", r)
	}
	if r := do(o, "POD", "1"); !strings.Contains(r, `key="hot"`) {
		t.Errorf("HOTKEYS POD 1 with a fleet = %q", r)
	}
	if want := []any{5, hotkeys.ByBytes, defaultShown, hotkeys.ByCount}; !reflect.DeepEqual(asked, want) {
		t.Errorf("Fleet asked %v, want %v", asked, want)
	}
	o.Fleet = func(context.Context, int, hotkeys.Rank) (FleetHotKeys, error) {
		return FleetHotKeys{}, errors.New("no leader")
	}
	if r := do(o); !strings.HasPrefix(r, "-ERR jupiter: fleet hot keys: no leader") || !strings.Contains(r, "HOTKEYS POD") {
		t.Errorf("HOTKEYS without a leader = %q", r)
	}
	o.Fleet = func(context.Context, int, hotkeys.Rank) (FleetHotKeys, error) { return FleetHotKeys{PodsOff: 2}, nil }
	if r := do(o); !strings.Contains(r, "off on every pod") {
		t.Errorf("HOTKEYS with every pod off = %q", r)
	}
	if r := do(o, "POD", "COUNT", "1", "2"); !strings.HasPrefix(r, "-ERR usage") {
		t.Errorf("HOTKEYS with too many arguments = %q", r)
	}
}
