package main

import (
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/health"
	"github.com/alphauslabs/jupiter/internal/proxy"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeHealth is a pod's node health (docs/health.md): its own view of each
// node — the capacity round's INFO answered, and the data path's
// connection is up — and, in cluster mode, the fleet's verdict, which it
// applies to the pool (a node the fleet marks down fails its keys at once)
// and shows in JUPITER NODES, /v1/nodes and the jupiter_node_* health
// series. In standalone mode there is no fleet: it shows the pod's own
// view and enforces nothing beyond the data path's own fail-fast.
type nodeHealth struct {
	self    string
	gath    *capacity.Gatherer
	router  *proxy.Router
	pool    *backend.Pool
	cluster bool
	enforce bool // cluster mode with --fleet-health: apply the verdict to the pool
	log     *slog.Logger

	mu      sync.Mutex
	verdict health.Verdict
}

// newNodeHealth returns nil when the capacity gatherer is off (no probe,
// no exchange to carry reports).
func newNodeHealth(self string, gath *capacity.Gatherer, router *proxy.Router, pool *backend.Pool,
	cluster, enforce bool, log *slog.Logger) *nodeHealth {
	if gath == nil {
		return nil
	}
	return &nodeHealth{self: self, gath: gath, router: router, pool: pool, cluster: cluster,
		enforce: cluster && enforce, log: log.With("component", "health")}
}

// Local is this pod's own view, what it reports to the leader: per ring
// node probed at least once, "" when reached, else why not.
func (h *nodeHealth) Local() map[string]string {
	out := h.gath.Reach()
	h.router.Nodes(func(addr string, n *backend.Node) {
		if why, ok := out[addr]; ok && why == "" && !n.Up() {
			out[addr] = "data path connection down"
		}
	})
	return out
}

// Set applies the fleet's verdict (cluster.LoadConfig.SetHealth).
func (h *nodeHealth) Set(v health.Verdict) {
	h.mu.Lock()
	h.verdict = v
	h.mu.Unlock()
	if !h.enforce {
		return
	}
	down := map[string]bool{}
	for _, a := range v.DownNodes() {
		down[a] = true
	}
	for _, a := range h.pool.SetFleetDown(down) {
		n := v.Nodes[a]
		if down[a] {
			h.log.Warn("node marked down by the fleet: its keys fail at once on every pod", "node", a,
				"down_reports", n.DownReports(), "reporters", n.Reporters, "down_by", n.DownBy, "err", n.Error)
		} else {
			h.log.Info("node marked up again by the fleet", "node", a, "reporters", n.Reporters)
		}
	}
}

// Verdict returns the verdict shown: the fleet's in cluster mode, the
// pod's own view (its own quorum of one) in standalone mode.
func (h *nodeHealth) Verdict() health.Verdict {
	if !h.cluster {
		v := health.Decide(health.Verdict{}, []health.Report{{Pod: h.self, Nodes: h.Local()}}, 1, time.Now())
		for a, n := range v.Nodes {
			n.Since = time.Time{}
			v.Nodes[a] = n
		}
		return v
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.verdict
}

// NodeHealth implements admin.HealthSource.
func (h *nodeHealth) NodeHealth() map[string]admin.NodeHealth {
	v, local := h.Verdict(), h.Local()
	scope := "fleet"
	if !h.cluster {
		scope = "pod"
	}
	now := time.Now()
	out := map[string]admin.NodeHealth{}
	h.router.Nodes(func(addr string, _ *backend.Node) {
		n := v.Nodes[addr]
		nh := admin.NodeHealth{State: "up", Scope: scope, DownReports: n.DownReports(), Reporters: n.Reporters,
			Quorum: n.Quorum, DownBy: slices.Clone(n.DownBy), SinceMs: -1, Error: n.Error, Local: "unknown"}
		if nh.DownBy == nil {
			nh.DownBy = []string{}
		}
		if n.Down {
			nh.State = "down"
		}
		if !n.Since.IsZero() {
			nh.SinceMs = now.Sub(n.Since).Milliseconds()
		}
		if why, ok := local[addr]; ok {
			nh.Local, nh.LocalError = "up", why
			if why != "" {
				nh.Local = "down"
			}
		}
		out[addr] = nh
	})
	return out
}

// HealthLines implements admin.HealthSource: health_scope (fleet|pod),
// health_pods (pods whose reports made the verdict), health_age_ms (-1:
// no verdict yet) and nodes_down (the nodes it marks down).
func (h *nodeHealth) HealthLines() [][2]string {
	v := h.Verdict()
	scope, age := "fleet", int64(-1)
	if !h.cluster {
		scope = "pod"
	}
	if !v.At.IsZero() {
		age = time.Since(v.At).Milliseconds()
	}
	return [][2]string{{"health_scope", scope}, {"health_pods", strconv.Itoa(v.Pods)},
		{"health_age_ms", strconv.FormatInt(age, 10)}, {"nodes_down", strings.Join(v.DownNodes(), ",")}}
}

// healthSource is h as admin.HealthSource: a nil interface when h is nil.
func healthSource(h *nodeHealth) admin.HealthSource {
	if h == nil {
		return nil
	}
	return h
}

// registerHealth exports the health series per ring node:
// jupiter_node_fleet_down (1 while the verdict marks it down),
// jupiter_node_down_reports and jupiter_node_health_reporters (the round
// that made the verdict) and jupiter_node_local_down (this pod's own view).
func registerHealth(reg *prometheus.Registry, h *nodeHealth) {
	if h != nil {
		reg.MustRegister(healthCollector{h})
	}
}

type healthCollector struct{ h *nodeHealth }

var (
	descFleetDown = prometheus.NewDesc("jupiter_node_fleet_down",
		"1 while the fleet's health verdict marks the node down (standalone: this pod's own view); its keys then fail at once.", []string{"node"}, nil)
	descDownReports = prometheus.NewDesc("jupiter_node_down_reports",
		"Pods that reported the node unreachable in the round that made the verdict.", []string{"node"}, nil)
	descReporters = prometheus.NewDesc("jupiter_node_health_reporters",
		"Pods that reported on the node in the round that made the verdict.", []string{"node"}, nil)
	descLocalDown = prometheus.NewDesc("jupiter_node_local_down",
		"1 while this pod's own probe does not reach the node (what it reports to the leader).", []string{"node"}, nil)
)

func (c healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFleetDown
	ch <- descDownReports
	ch <- descReporters
	ch <- descLocalDown
}

func (c healthCollector) Collect(ch chan<- prometheus.Metric) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for addr, n := range c.h.NodeHealth() {
		ch <- prometheus.MustNewConstMetric(descFleetDown, prometheus.GaugeValue, b2f(n.State == "down"), addr)
		ch <- prometheus.MustNewConstMetric(descDownReports, prometheus.GaugeValue, float64(n.DownReports), addr)
		ch <- prometheus.MustNewConstMetric(descReporters, prometheus.GaugeValue, float64(n.Reporters), addr)
		ch <- prometheus.MustNewConstMetric(descLocalDown, prometheus.GaugeValue, b2f(n.Local == "down"), addr)
	}
}
