package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/ring"
)

// fakeRouter is a RingSource for Local.
type fakeRouter struct{ r *ring.Ring }

func (f *fakeRouter) Ring() *ring.Ring              { return f.r }
func (f *fakeRouter) Apply(r *ring.Ring) bool       { f.r = r; return true }
func (f *fakeRouter) NodeUp() map[string]bool       { return map[string]bool{"10.0.0.1:6379": true} }
func (fakePing) Ping(context.Context, string) error { return nil }

type fakePing struct{}

// downCtl refuses every change as unavailable (cluster mode, Spanner down).
type downCtl struct{ *Local }

func (d downCtl) Apply(context.Context, Change) (uint64, error) {
	return 0, Refusal(ErrUnavailable, "Spanner is unreachable")
}

func TestHTTPAdmin(t *testing.T) {
	r, err := ring.New(1, []ring.Node{{Addr: "10.0.0.1:6379"}, {Addr: "10.0.0.2:6379"}})
	if err != nil {
		t.Fatal(err)
	}
	ctl := &Local{Router: &fakeRouter{r: r}, Self: "x", Pinger: fakePing{}}
	mux := http.NewServeMux()
	RegisterHTTP(mux, ctl)
	do := func(method, path, body string) (int, ChangeJSON, string) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		var c ChangeJSON
		_ = json.Unmarshal(w.Body.Bytes(), &c)
		return w.Code, c, w.Body.String()
	}

	code, _, body := do("GET", "/v1/nodes", "")
	var nodes NodesJSON
	if err := json.Unmarshal([]byte(body), &nodes); err != nil || code != 200 || nodes.RingVersion != 1 ||
		len(nodes.Nodes) != 2 || !nodes.Nodes[0].Up || nodes.Nodes[1].Up || nodes.Nodes[0].Slots+nodes.Nodes[1].Slots != ring.Slots {
		t.Fatalf("GET /v1/nodes = %d %s", code, body)
	}
	for _, c := range []struct {
		method, path, body string
		code               int
		version            uint64
		errPart            string
	}{
		{"POST", "/v1/nodes", `{"addr":"10.0.0.3:6379","weight":2}`, 200, 2, ""},
		{"POST", "/v1/nodes", `{"addr":"10.0.0.4:6379"}`, 200, 3, ""},
		{"POST", "/v1/nodes", `{"addr":"10.0.0.4:6379"}`, 400, 0, "already in the ring"},
		{"POST", "/v1/nodes", `{"addr":"bad"}`, 400, 0, "not a host:port"},
		{"POST", "/v1/nodes", `{"addr":"10.0.0.5:6379","weight":0}`, 400, 0, "weight must be"},
		{"POST", "/v1/nodes", `{"addr":"10.0.0.5:6379","extra":1}`, 400, 0, "unknown field"},
		{"POST", "/v1/nodes", ``, 400, 0, "empty body"},
		{"POST", "/v1/nodes", `{`, 400, 0, "invalid JSON"},
		{"PUT", "/v1/nodes/10.0.0.3:6379/weight", `{"weight":5}`, 200, 4, ""},
		{"PUT", "/v1/nodes/10.0.0.3:6379/weight", `{}`, 400, 0, "weight"},
		{"DELETE", "/v1/nodes/10.0.0.4:6379", ``, 200, 5, ""},
		{"DELETE", "/v1/nodes/10.0.0.4:6379", ``, 400, 0, "not in the ring"},
	} {
		code, rep, body := do(c.method, c.path, c.body)
		if code != c.code || rep.OK != (c.code == 200) || rep.RingVersion != c.version || !strings.Contains(rep.Error, c.errPart) {
			t.Errorf("%s %s %s = %d %s", c.method, c.path, c.body, code, body)
		}
	}
	if code, _, _ := do("PATCH", "/v1/nodes", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("PATCH /v1/nodes = %d", code)
	}

	// Refusal kinds pick the status code.
	mux = http.NewServeMux()
	RegisterHTTP(mux, downCtl{Local: ctl})
	req := httptest.NewRequest("DELETE", "/v1/nodes/10.0.0.1:6379", nil)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	if w.Code != 503 || !strings.Contains(w.Body.String(), "Spanner is unreachable") {
		t.Fatalf("unavailable = %d %s", w.Code, w.Body.String())
	}
	for kind, want := range map[error]int{ErrNotFound: 404, ErrExists: 409, ErrInvalid: 400, ErrUnavailable: 503} {
		if got := StatusCode(Refusal(kind, "m")); got != want {
			t.Errorf("StatusCode(%v) = %d, want %d", kind, got, want)
		}
	}
	if got := StatusCode(errors.New("plain")); got != 400 {
		t.Errorf("StatusCode(plain) = %d", got)
	}
	if err := Refusal(ErrExists, "node x is already in the ring"); err.Error() != "node x is already in the ring" {
		t.Errorf("Refusal text %q", err)
	}
}

func TestHTTPAdminPassword(t *testing.T) {
	r, _ := ring.New(1, []ring.Node{{Addr: "10.0.0.1:6379"}})
	mux := http.NewServeMux()
	HTTP{C: &Local{Router: &fakeRouter{r: r}, Pinger: fakePing{}}, AdminPassword: "s3cret"}.Register(mux)
	do := func(method, path, body string, auth func(*http.Request)) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if auth != nil {
			auth(req)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w.Code
	}
	add := `{"addr":"10.0.0.2:6379"}`
	if c := do("GET", "/v1/nodes", "", nil); c != 200 {
		t.Fatalf("GET without a password = %d, want 200 (reads stay open)", c)
	}
	for name, auth := range map[string]func(*http.Request){
		"none":         nil,
		"wrong basic":  func(r *http.Request) { r.SetBasicAuth("admin", "nope") },
		"wrong user":   func(r *http.Request) { r.SetBasicAuth("default", "s3cret") },
		"wrong bearer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cre") },
	} {
		if c := do("POST", "/v1/nodes", add, auth); c != 401 {
			t.Errorf("POST with %s auth = %d, want 401", name, c)
		}
	}
	if c := do("POST", "/v1/nodes", add, func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }); c != 200 {
		t.Fatalf("POST with basic auth = %d", c)
	}
	if c := do("DELETE", "/v1/nodes/10.0.0.2:6379", "", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }); c != 200 {
		t.Fatalf("DELETE with bearer = %d", c)
	}
}
