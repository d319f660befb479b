package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kinds of refusal a Controller can wrap its errors in (see Refusal), so
// that the HTTP API answers with a fitting status code. RESP shows only the
// message. An error matching none of them (nor ErrInvalid) is reported as
// a bad request: Local's refusals are all about the request.
var (
	ErrNotFound    = errors.New("not found")      // HTTP 404: the node is not in the ring
	ErrExists      = errors.New("already exists") // HTTP 409: the node is already in the ring
	ErrUnavailable = errors.New("unavailable")    // HTTP 503: leader or Spanner unreachable; retry
)

// Refusal returns an error whose text is msg and which matches kind
// (ErrInvalid, ErrNotFound, ErrExists, ErrUnavailable, ErrNotRunning or
// ErrUnsupported) with errors.Is.
func Refusal(kind error, msg string) error { return &refusal{kind: kind, msg: msg} }

type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

// HTTPTimeout bounds one HTTP admin request (the same budget as a RESP
// JUPITER command).
const HTTPTimeout = 10 * time.Second

// Mux is where RegisterHTTP mounts its handlers (*http.ServeMux,
// *telemetry.Server).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// NodeJSON is one ring node in the HTTP API (the same fields as STATUS).
type NodeJSON = NodeStatus

// NodesJSON is the reply of GET /v1/nodes.
type NodesJSON struct {
	RingVersion uint64     `json:"ring_version"`
	Stage       string     `json:"stage"`
	Nodes       []NodeJSON `json:"nodes"`
}

// ChangeJSON is the reply of a change: ok with the ring version that holds
// it, or an error (ring unchanged).
type ChangeJSON struct {
	OK          bool   `json:"ok"`
	RingVersion uint64 `json:"ring_version,omitempty"`
	Error       string `json:"error,omitempty"`
}

// RegisterHTTP mounts the node admin API over c on mux without
// authentication (HTTP{C: c}.Register).
func RegisterHTTP(mux Mux, c Controller) { HTTP{C: c}.Register(mux) }

// HTTP is the node admin API over a Controller.
type HTTP struct {
	C Controller
	// AdminPassword, if set, is required by the changing endpoints (POST,
	// PUT, DELETE): HTTP Basic auth as user "admin" (curl -u admin:<pw>)
	// or "Authorization: Bearer <pw>". Reads stay open, like JUPITER
	// STATUS.
	AdminPassword string
}

// Register mounts the API on mux:
//
//	GET    /v1/nodes                  the ring's nodes (NodesJSON)
//	POST   /v1/nodes                  add a node: {"addr":"host:port","weight":1}
//	DELETE /v1/nodes/{addr}           remove a node
//	PUT    /v1/nodes/{addr}/weight    set a node's weight: {"weight":2}
//	GET    /v1/rebalance              rebalance progress (RebalanceStatus)
//	POST   /v1/rebalance/{action}     abort, pause or resume the running rebalance
//	GET    /v1/plan?op=add|remove|weight&addr=host:port[&weight=N]
//	                                  dry run of a change (PlanResult); changes nothing
//
// Changes answer 200 with {"ok":true,"ring_version":N} once applied (in
// cluster mode: once the leader accepted them), or 400 (bad request, last
// node, unreachable node), 404 (unknown node), 409 (duplicate), 401
// (admin password missing or wrong) or 503 (leader or Spanner unavailable)
// with {"ok":false,"error":"…"}; the ring is then unchanged. Rebalance
// actions answer like changes: 409 when no rebalance runs, 501 when the
// controller is not a Rebalancer (so is GET /v1/plan). GET /v1/status is
// served by telemetry (StatusWithRebalance adds the rebalance object).
func (h HTTP) Register(mux Mux) {
	c := h.C
	mux.Handle("GET /v1/nodes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), HTTPTimeout)
		defer cancel()
		st := c.Status(ctx)
		out := NodesJSON{RingVersion: st.RingVersion, Stage: st.Stage, Nodes: append([]NodeJSON{}, st.Nodes...)}
		writeJSON(w, http.StatusOK, out)
	}))
	mux.Handle("POST /v1/nodes", h.admin(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Addr   string `json:"addr"`
			Weight *int   `json:"weight"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		args := [][]byte{[]byte(body.Addr)}
		if body.Weight != nil {
			args = append(args, []byte(strconv.Itoa(*body.Weight)))
		}
		change(w, r, c, "ADD", args)
	}))
	mux.Handle("DELETE /v1/nodes/{addr}", h.admin(func(w http.ResponseWriter, r *http.Request) {
		change(w, r, c, "REMOVE", [][]byte{[]byte(r.PathValue("addr"))})
	}))
	mux.Handle("PUT /v1/nodes/{addr}/weight", h.admin(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Weight *int `json:"weight"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		if body.Weight == nil {
			writeJSON(w, http.StatusBadRequest, ChangeJSON{Error: `body must be {"weight":<1..10000>}`})
			return
		}
		change(w, r, c, "WEIGHT", [][]byte{[]byte(r.PathValue("addr")), []byte(strconv.Itoa(*body.Weight))})
	}))
	mux.Handle("GET /v1/rebalance", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), HTTPTimeout)
		defer cancel()
		st, err := rebalanceOf(ctx, c)
		if err != nil {
			writeJSON(w, StatusCode(err), ChangeJSON{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, st)
	}))
	mux.Handle("POST /v1/rebalance/{action}", h.admin(func(w http.ResponseWriter, r *http.Request) {
		action, err := ParseRebalanceAction([][]byte{[]byte(r.PathValue("action"))})
		if err != nil || action == "status" {
			writeJSON(w, http.StatusNotFound, ChangeJSON{Error: "want POST /v1/rebalance/abort, /pause or /resume"})
			return
		}
		rb, ok := c.(Rebalancer)
		if !ok {
			writeJSON(w, http.StatusNotImplemented, ChangeJSON{Error: "jupiter: rebalance " + action + " is " + ErrUnsupported.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), HTTPTimeout)
		defer cancel()
		if err := rb.RebalanceAction(ctx, action); err != nil {
			writeJSON(w, StatusCode(err), ChangeJSON{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ChangeJSON{OK: true})
	}))
	mux.Handle("GET /v1/plan", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		args := [][]byte{[]byte(q.Get("op")), []byte(q.Get("addr"))}
		if q.Has("weight") {
			args = append(args, []byte(q.Get("weight")))
		}
		ch, err := ParsePlanArgs(args)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, ChangeJSON{Error: "want ?op=add|remove|weight&addr=host:port[&weight=N]: " + err.Error()})
			return
		}
		rb, ok := c.(Rebalancer)
		if !ok {
			writeJSON(w, http.StatusNotImplemented, ChangeJSON{Error: "jupiter: plan is " + ErrUnsupported.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), HTTPTimeout)
		defer cancel()
		p, err := rb.Plan(ctx, ch)
		if err != nil {
			writeJSON(w, StatusCode(err), ChangeJSON{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, p)
	}))
}

// admin wraps a changing endpoint with the admin password check.
func (h HTTP) admin(f http.HandlerFunc) http.Handler {
	return h.guard(f, "ring changes need the admin password (curl -u admin:<admin-password>)")
}

// guard requires the admin password (when set) before f, answering 401
// with why otherwise.
func (h HTTP) guard(f http.HandlerFunc, why string) http.Handler {
	if h.AdminPassword == "" {
		return f
	}
	want := sha256.Sum256([]byte(h.AdminPassword))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got string
		if user, pw, ok := r.BasicAuth(); ok && user == "admin" {
			got = pw
		} else if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = b
		}
		sum := sha256.Sum256([]byte(got)) // hashing first hides the length too
		if got == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="jupiter admin"`)
			writeJSON(w, http.StatusUnauthorized, ChangeJSON{Error: why})
			return
		}
		f(w, r.WithContext(Authorize(r.Context())))
	})
}

// change validates exactly like the RESP command (ParseChange) and applies.
func change(w http.ResponseWriter, r *http.Request, c Controller, sub string, args [][]byte) {
	ch, err := ParseChange(sub, args)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ChangeJSON{Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), HTTPTimeout)
	defer cancel()
	v, err := c.Apply(ctx, ch)
	if err != nil {
		writeJSON(w, StatusCode(err), ChangeJSON{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ChangeJSON{OK: true, RingVersion: v})
}

// StatusCode maps a Controller error to an HTTP status.
func StatusCode(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrNotRunning):
		return http.StatusConflict
	case errors.Is(err, ErrUnsupported):
		return http.StatusNotImplemented
	}
	return http.StatusBadRequest
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "invalid JSON body: " + err.Error()
		if errors.Is(err, io.EOF) {
			msg = "empty body: want JSON"
		}
		writeJSON(w, http.StatusBadRequest, ChangeJSON{Error: msg})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
