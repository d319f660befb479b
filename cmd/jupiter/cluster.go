package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/cluster"
	"github.com/alphauslabs/jupiter/internal/config"
	"github.com/alphauslabs/jupiter/internal/proxy"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/alphauslabs/jupiter/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// memberStopTimeout bounds stopping the hedge member on SIGTERM: with
// Spanner unreachable hedge may never return, and the lock lease expires on
// its own anyway.
const memberStopTimeout = 5 * time.Second

// serveCluster is `jupiter serve --spanner-db …`: the same proxy as
// standalone mode, with the ring read from Spanner and kept current by the
// cluster Syncer, and admin changes forwarded to the hedge leader. The pod
// is not ready (and keyed commands get -TRYAGAIN) until the first ring is
// loaded; --backends only seeds a database that has no ring yet.
func serveCluster(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	seed := make([]ring.Node, len(cfg.Backends))
	for i, b := range cfg.Backends {
		seed[i] = ring.Node{Addr: b, Weight: 1}
	}
	pool := backend.NewPool(poolOptions(cfg))
	router := proxy.NewRouter(pool, nil)
	health := &telemetry.Health{}

	cl, err := cluster.Open(cluster.Config{
		SpannerDB:    cfg.SpannerDB,
		HedgeAddr:    cfg.HedgeAddr,
		LockTable:    cfg.LockTable,
		LogTable:     cfg.LogTable,
		RingTable:    cfg.RingTable,
		HistoryTable: cfg.HistoryTable,
		LockName:     cfg.LockName,
		LockDuration: cfg.LockLease,
		SyncInterval: cfg.MemberSync,
		PollInterval: cfg.PollInterval,
	}, cluster.Options{
		Seed:   seed,
		Pinger: pinger(cfg), // the leader checks new nodes with the backend AUTH/TLS settings
		// Every ring the Syncer applies goes to the data path before the
		// pod reports its version; the first one makes the pod ready.
		Publish: func(st *cluster.State) {
			router.Apply(st.Ring)
			health.SetReady(true)
		},
		Logger: log,
	})
	if err != nil {
		_ = pool.Close(context.Background())
		return err
	}
	closeAll := func() {
		sctx, cancel := context.WithTimeout(context.Background(), memberStopTimeout)
		defer cancel()
		_ = cl.Shutdown(sctx)
		_ = pool.Close(sctx)
	}

	ln, err := listen(cfg)
	if err != nil {
		closeAll()
		return err
	}
	ctl := &cluster.AdminController{C: cl, NodeUp: router.NodeUp}
	srv := proxy.New(proxyOptions(cfg), router, adminHandler(cfg, ctl), log)

	reg := prometheus.NewRegistry()
	registerMetrics(reg, srv, router)
	registerStage(reg, func() string { return cl.Status().Stage })
	registerClusterMetrics(reg, cl)
	hs, err := openAdmin(cfg, health, reg, ctl, log)
	if err != nil {
		ln.Close()
		closeAll()
		return err
	}
	fe := startFrontEnds(srv, ln, hs)
	// The member outlives ctx (SIGTERM): the pod keeps following ring
	// changes while it drains, and is stopped explicitly below.
	if err := cl.Start(context.Background()); err != nil {
		health.SetDraining()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fe.drain(sctx, log)
		fe.close(sctx)
		cancel()
		closeAll()
		return err
	}
	log.Info("jupiter serving", "mode", "cluster", "listen", ln.Addr().String(), "admin", cfg.AdminListen,
		"hedge", cl.Member.Self(), "spanner_db", cfg.SpannerDB, "seed", cfg.Backends, "version", version)

	runErr := fe.wait(ctx, log)
	health.SetDraining()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	fe.drain(sctx, log)
	mctx, mcancel := context.WithTimeout(sctx, memberStopTimeout)
	if err := cl.Shutdown(mctx); err != nil {
		log.Warn("hedge member did not stop in time", "err", err)
	}
	mcancel()
	if err := pool.Close(sctx); err != nil {
		log.Warn("backend connections did not close in time", "err", err)
	}
	fe.close(sctx)
	log.Info("jupiter stopped")
	return runErr
}

func registerClusterMetrics(reg *prometheus.Registry, cl *cluster.Cluster) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_cluster_leader",
			Help: "1 while this pod holds the leader lock."}, func() float64 { return b2f(cl.Member.IsLeader()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_cluster_members",
			Help: "hedge members this pod knows."}, func() float64 { return float64(len(cl.Member.Members())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_cluster_spanner_up",
			Help: "1 if the last ring read from Spanner succeeded."}, func() float64 { return b2f(cl.StoreError() == nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jupiter_cluster_last_sync_timestamp_seconds",
			Help: "Unix time of the last successful ring sync with Spanner."}, func() float64 {
			t, _ := cl.Syncer.LastSync()
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
	)
}
