package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/cluster"
	"github.com/alphauslabs/jupiter/internal/config"
	"github.com/alphauslabs/jupiter/internal/proxy"
	"github.com/alphauslabs/jupiter/internal/rebalance"
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
	controls := newControlClients(backendSecurity(cfg), cfg.RequestTimeout)
	defer controls.Close()
	gath := newGatherer(cfg, router, true, log)
	nh := newNodeHealth(cfg.HedgeAddr, gath, router, pool, true, cfg.FleetHealth, log)
	obs := observers(cfg)
	opts := cluster.Options{
		ControlNode: controls.Node,
		Migrator: rebalance.Config{KeysPerSec: cfg.MigrateKeysPerSec, BytesPerSec: cfg.MigrateBytesPerSec,
			TargetDelay: cfg.MigrateTargetDelay, Inflight: cfg.MigrateInflight},
		Seed:   seed,
		Pinger: pinger(cfg), // the leader checks new nodes with the backend AUTH/TLS settings
		// Every ring the Syncer applies goes to the data path before the
		// pod reports its version; the first one makes the pod ready.
		Publish: func(st *cluster.State) {
			router.ApplyStage(st.Ring, migrationOf(st))
			health.SetReady(true)
		},
		Logger: log,
	}
	if obs.HotKeys != nil {
		opts.HotKeys = obs.HotKeys.Top // reported when the leader merges the fleet's hot keys
	}
	if gath != nil {
		// The leader sums every pod's request rates per node once per
		// capacity interval and hands the sums back (ops_fleet).
		opts.PodLoad, opts.FleetLoad, opts.LoadInterval = gath.PodOps, gath.SetFleet, cfg.CapacityInterval
		// With it every pod reports which nodes it reaches and the leader
		// decides which are down for the fleet (docs/health.md).
		opts.PodHealth, opts.SetHealth = nh.Local, nh.Set
	}

	cl, err := cluster.Open(cluster.Config{
		SpannerDB:     cfg.SpannerDB,
		HedgeAddr:     cfg.HedgeAddr,
		LockTable:     cfg.LockTable,
		LogTable:      cfg.LogTable,
		RingTable:     cfg.RingTable,
		HistoryTable:  cfg.HistoryTable,
		LockName:      cfg.LockName,
		LockDuration:  cfg.LockLease,
		SyncInterval:  cfg.MemberSync,
		PollInterval:  cfg.PollInterval,
		Immediate:     cfg.Rebalance == "remap",
		MemberLease:   cfg.MemberLease,
		FreezeTimeout: cfg.FreezeTimeout,
	}, opts)
	if err != nil {
		_ = pool.Close(context.Background())
		return err
	}
	health.SetLive(cl.Live)
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
	ctl := &cluster.AdminController{C: cl, NodeUp: router.NodeUp, Capacity: capacitySource(gath), Health: healthSource(nh)}
	obs.Fleet = cl.HotKeys.Fleet // JUPITER HOTKEYS, /v1/hotkeys: the fleet's, merged by the leader
	srv := proxy.New(proxyOptions(cfg, obs), router, adminHandler(cfg, ctl, obs), log)

	reg := prometheus.NewRegistry()
	registerMetrics(reg, srv, router)
	registerObserve(reg, cfg, obs)
	registerStage(reg, func() string { return cl.Status().Stage })
	registerClusterMetrics(reg, cl)
	registerRebalanceMetrics(reg, ctl)
	registerCapacity(reg, gath)
	registerHealth(reg, nh)
	hs, err := openAdmin(cfg, health, reg, ctl, obs, log)
	if err != nil {
		ln.Close()
		closeAll()
		return err
	}
	startGatherer(gath)
	defer stopGatherer(gath) // also on the early return below
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
	drainDelay(cfg, log)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	fe.drain(sctx, log)
	mctx, mcancel := context.WithTimeout(sctx, memberStopTimeout)
	if err := cl.Shutdown(mctx); err != nil {
		log.Warn("hedge member did not stop in time", "err", err)
	}
	mcancel()
	stopGatherer(gath)
	if err := pool.Close(sctx); err != nil {
		log.Warn("backend connections did not close in time", "err", err)
	}
	fe.close(sctx)
	log.Info("jupiter stopped")
	return runErr
}

// migrationOf is the data path's view of a stored rebalance stage: nil
// when keys route by one ring (stable, commit).
func migrationOf(st *cluster.State) *proxy.Migration {
	if !st.Rebalancing() {
		return nil
	}
	return &proxy.Migration{Stage: st.Stage, Target: st.Target, Epoch: st.Epoch}
}

// newControlClients are the leader's control-path connections to backend
// nodes (migrator, cleanup, DBSIZE for plans), with the data path's AUTH/TLS.
func newControlClients(sec backend.Security, timeout time.Duration) *rebalance.Clients {
	return rebalance.NewClients(sec, max(timeout, rebalance.DefaultTimeout), 0)
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

// registerRebalanceMetrics exports the running rebalance's progress (the
// same numbers as JUPITER REBALANCE STATUS), computed at most every 500ms.
func registerRebalanceMetrics(reg *prometheus.Registry, ctl *cluster.AdminController) {
	var (
		mu   sync.Mutex
		at   time.Time
		last admin.RebalanceStatus
	)
	get := func() admin.RebalanceStatus {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) > 500*time.Millisecond {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if rs, err := ctl.RebalanceStatus(ctx); err == nil {
				last, at = rs, time.Now()
			}
			cancel()
		}
		return last
	}
	g := func(name, help string, f func(admin.RebalanceStatus) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(get()) })
	}
	reg.MustRegister(
		g("jupiter_rebalance_epoch", "Epoch of the running rebalance (0: none).", func(r admin.RebalanceStatus) float64 { return float64(r.Epoch) }),
		g("jupiter_rebalance_paused", "1 while the running rebalance is paused.", func(r admin.RebalanceStatus) float64 {
			if r.Paused {
				return 1
			}
			return 0
		}),
		g("jupiter_rebalance_moved_keys", "Keys the running rebalance has moved.", func(r admin.RebalanceStatus) float64 { return float64(r.MovedKeys) }),
		g("jupiter_rebalance_total_keys", "Estimated keys the running rebalance moves.", func(r admin.RebalanceStatus) float64 { return float64(r.TotalKeys) }),
		g("jupiter_rebalance_moved_bytes", "DUMP bytes the running rebalance has moved.", func(r admin.RebalanceStatus) float64 { return float64(r.MovedBytes) }),
		g("jupiter_rebalance_keys_per_second", "Current migration rate.", func(r admin.RebalanceStatus) float64 { return r.KeysPerSec }),
		g("jupiter_rebalance_eta_seconds", "Estimated seconds until the migration finishes (-1: unknown).", func(r admin.RebalanceStatus) float64 { return r.ETASeconds }),
		g("jupiter_rebalance_errors", "Migration errors of the running rebalance.", func(r admin.RebalanceStatus) float64 { return float64(r.Errors) }),
	)
}
