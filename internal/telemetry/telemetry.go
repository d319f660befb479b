// Package telemetry sets up jupiter's logging and its HTTP admin endpoint:
// /healthz (the process is alive), /readyz (the ring is loaded, the listener
// is up, and the pod is not draining), /metrics (Prometheus text format from
// a registry owned by the caller, never the global one) and /v1/status (JSON).
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewLogger returns a slog logger writing to w. format "auto" picks text on
// a terminal and JSON elsewhere (Kubernetes log collectors parse JSON).
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Health is the readiness state /readyz reports.
type Health struct {
	ready    atomic.Bool
	draining atomic.Bool
	// live, if set, is asked by /healthz: an error makes it answer 503 (a
	// state only a restart repairs).
	live atomic.Pointer[func() error]
}

// SetLive installs the liveness check /healthz consults.
func (h *Health) SetLive(f func() error) { h.live.Store(&f) }

// Live returns the liveness check's verdict (nil: alive).
func (h *Health) Live() error {
	if f := h.live.Load(); f != nil && *f != nil {
		return (*f)()
	}
	return nil
}

// SetReady marks the pod ready (ring loaded and listening) or not.
func (h *Health) SetReady(v bool) { h.ready.Store(v) }

// SetDraining takes the pod out of load balancing ahead of shutdown.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Ready reports whether /readyz answers 200.
func (h *Health) Ready() bool { return h.ready.Load() && !h.draining.Load() }

// Server is the HTTP admin endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
	mux *http.ServeMux
}

// Listen binds addr and serves the admin endpoints. status returns the
// value /v1/status encodes as JSON.
func Listen(addr string, h *Health, reg *prometheus.Registry, status func(context.Context) any, log *slog.Logger) (*Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := h.Live(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	// pprof lives on the admin port, never on the data port.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(status(ctx))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, mux: mux, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	return s, nil
}

// Handle mounts an extra handler (e.g. the admin API) next to the built-in
// endpoints; pattern is an http.ServeMux pattern.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve runs until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
