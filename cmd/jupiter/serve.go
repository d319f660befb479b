package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/config"
	"github.com/alphauslabs/jupiter/internal/proxy"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// serve runs the proxy until ctx is cancelled (SIGTERM), then drains.
func serve(ctx context.Context, cfg config.Config, logw io.Writer) error {
	log := telemetry.NewLogger(logw, cfg.LogLevel, cfg.LogFormat)
	// go-redis (control path: capacity, rebalance) prints its own dial
	// retries on the standard logger, once per attempt: a dead node would
	// repeat the same line every capacity round. Ours report it once, with
	// the node, so its lines go to debug.
	redis.SetLogger(goredisLog{log})
	if cfg.Cluster() {
		return serveCluster(ctx, cfg, log)
	}
	nodes := make([]ring.Node, len(cfg.Backends))
	for i, b := range cfg.Backends {
		nodes[i] = ring.Node{Addr: b, Weight: 1}
	}
	r, err := ring.New(1, nodes)
	if err != nil {
		return err
	}
	pool := backend.NewPool(poolOptions(cfg))
	router := proxy.NewRouter(pool, r)

	ln, err := listen(cfg)
	if err != nil {
		_ = pool.Close(context.Background())
		return err
	}
	self := ln.Addr().String()
	controls := newControlClients(backendSecurity(cfg), cfg.RequestTimeout)
	defer controls.Close()
	gath := newGatherer(cfg, router, false, log)
	nh := newNodeHealth(self, gath, router, pool, false, false, log)
	ctl := &admin.Local{Router: router, Self: self, Pinger: pinger(cfg), DBSize: controls.DBSize,
		Capacity: capacitySource(gath), Health: healthSource(nh)}
	obs := observers(cfg)
	srv := proxy.New(proxyOptions(cfg, obs), router, adminHandler(cfg, ctl, obs), log)

	health := &telemetry.Health{}
	reg := prometheus.NewRegistry()
	registerMetrics(reg, srv, router)
	registerObserve(reg, cfg, obs)
	registerStage(reg, func() string { return "stable" })
	registerCapacity(reg, gath)
	registerHealth(reg, nh)
	hs, err := openAdmin(cfg, health, reg, ctl, obs, log)
	if err != nil {
		ln.Close()
		_ = pool.Close(context.Background())
		return err
	}
	startGatherer(gath)
	fe := startFrontEnds(srv, ln, hs)
	health.SetReady(true)
	log.Info("jupiter serving", "mode", "standalone", "listen", self, "admin", cfg.AdminListen,
		"backends", cfg.Backends, "ring_version", r.Version(), "version", version)

	runErr := fe.wait(ctx, log)
	health.SetDraining()
	drainDelay(cfg, log)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	fe.drain(sctx, log)
	stopGatherer(gath)
	if err := pool.Close(sctx); err != nil {
		log.Warn("backend connections did not close in time", "err", err)
	}
	fe.close(sctx)
	log.Info("jupiter stopped")
	return runErr
}

func registerMetrics(reg *prometheus.Registry, srv *proxy.Server, router *proxy.Router) {
	st := &srv.Stats
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_client_connections",
			Help: "Client connections currently open."}, func() float64 { return float64(st.Connected.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_client_connections_dormant",
			Help: "Open client connections silent long enough to have given up their goroutine."}, func() float64 { return float64(st.Dormant.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_client_blocked",
			Help: "Clients waiting in a blocking command (BLPOP, XREAD BLOCK…)."}, func() float64 { return float64(st.Blocked.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_client_subscribers",
			Help: "Clients subscribed to a channel or pattern."}, func() float64 { return float64(st.Subscribers.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jupiter_client_connections_accepted_total",
			Help: "Client connections accepted."}, func() float64 { return float64(st.Accepted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jupiter_commands_total",
			Help: "Client commands executed."}, func() float64 { return float64(st.Commands.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jupiter_error_replies_total",
			Help: "Error replies jupiter generated itself."}, func() float64 { return float64(st.ErrReplies.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jupiter_protocol_errors_total",
			Help: "Client connections closed for a protocol error."}, func() float64 { return float64(st.ProtoErrors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jupiter_rebalance_commands_total",
			Help: "Commands on moving keys run by the rebalance rules (read rule, marked writes)."}, func() float64 { return float64(st.Rebalance.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jupiter_rebalance_held_total",
			Help: "Writes to moving keys held during the freeze stage."}, func() float64 { return float64(st.Held.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jupiter_rebalance_tryagain_total",
			Help: "Writes answered -TRYAGAIN (held past --rebalance-hold-max, or keys split across nodes mid-rebalance)."}, func() float64 { return float64(st.TryAgain.Load()) }),
		telemetry.NewCollector(telemetry.Sources{
			Commands: srv.CommandStats,
			Nodes: func() []telemetry.NodeSample {
				var out []telemetry.NodeSample
				router.Nodes(func(addr string, n *backend.Node) {
					out = append(out, telemetry.NodeSample{Addr: addr, Op: &n.Stats, Up: n.Up(),
						Inflight: n.Inflight(), Connected: n.Connected(), Dedicated: n.DedicatedInUse()})
				})
				return out
			},
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_ring_version",
			Help: "Version of the ring this pod routes by."}, func() float64 { return float64(router.Ring().Version()) }),
	)
}

// registerObserve exports the slow log, hot keys and big keys of obs
// (jupiter_slowlog_*, jupiter_hotkey*, jupiter_bigkeys_*).
func registerObserve(reg *prometheus.Registry, cfg config.Config, obs admin.Observers) {
	reg.MustRegister(telemetry.NewObserveCollector(telemetry.ObserveSources{Slowlog: obs.Slowlog, HotKeys: obs.HotKeys,
		BigKeys: obs.BigKeys, HotKeysTop: cfg.HotkeysMetrics, HotKeyNames: cfg.HotkeysMetricsNames}))
}

// registerCapacity exports the capacity gatherer's figures (jupiter_node_*),
// read from its last round at scrape time; nothing when it is off.
func registerCapacity(reg *prometheus.Registry, g *capacity.Gatherer) {
	if g != nil {
		reg.MustRegister(telemetry.NewCapacityCollector(g))
	}
}

func startGatherer(g *capacity.Gatherer) {
	if g != nil {
		g.Start()
	}
}

// stopGatherer stops the gatherer and waits for it (at most one INFO
// timeout); it closes the gatherer's connections.
func stopGatherer(g *capacity.Gatherer) {
	if g != nil {
		g.Stop()
	}
}

// stages are the values jupiter_ring_stage reports (one series each, 1 for
// the current stage), so dashboards can plot a rebalance's progress.
var stages = []string{"stable", "prepare", "freeze", "migrating", "commit"}

func registerStage(reg *prometheus.Registry, current func() string) {
	for _, st := range stages {
		st := st
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_ring_stage",
			Help: "1 for the ring stage this pod is in (stable outside a rebalance).", ConstLabels: prometheus.Labels{"stage": st}},
			func() float64 {
				if current() == st {
					return 1
				}
				return 0
			}))
	}
}

// goredisLog sends go-redis's log lines to slog at debug level.
type goredisLog struct{ log *slog.Logger }

func (l goredisLog) Printf(ctx context.Context, format string, args ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, args...))
}
