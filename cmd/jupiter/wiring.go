package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/config"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/proxy"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/redis/go-redis/v9"
)

// The pieces both modes build the same way from the Config.

func backendSecurity(cfg config.Config) backend.Security {
	s := cfg.Security
	return backend.Security{Username: s.BackendUser, Password: s.BackendPass, Passwords: s.BackendPasses,
		CAFile: s.BackendTLSCA, ServerName: s.BackendTLSName, Routes: s.BackendRoutes}
}

func poolOptions(cfg config.Config) backend.Options {
	return backend.Options{
		ConnsPerNode:   cfg.BackendConns,
		Linger:         cfg.BackendLinger,
		MaxDedicated:   cfg.MaxDedicated,
		DialTimeout:    cfg.DialTimeout,
		RequestTimeout: cfg.RequestTimeout,
		Dialer:         backendSecurity(cfg).Dialer(),
	}
}

func pinger(cfg config.Config) backend.Pinger {
	return backend.Pinger{Security: backendSecurity(cfg), Timeout: cfg.DialTimeout}
}

// observers are the pod's slow log, hot keys and big keys, per the flags;
// the proxy feeds them, JUPITER SLOWLOG/HOTKEYS/BIGKEYS and /v1/… read them.
func observers(cfg config.Config) admin.Observers {
	o := admin.Observers{Slowlog: slowlog.New(time.Duration(cfg.SlowlogSlowerThan)*time.Microsecond, cfg.SlowlogMaxLen)}
	if cfg.HotkeysSample > 0 {
		o.HotKeys = hotkeys.New(hotkeys.Config{Scale: uint64(cfg.HotkeysSample), HalfLife: int64(cfg.HotkeysHalfLife)})
	}
	if cfg.BigkeysThreshold > 0 {
		o.BigKeys = hotkeys.NewBig(cfg.BigkeysThreshold, bigKeysKept)
	}
	return o
}

// bigKeysKept is how many key/command pairs JUPITER BIGKEYS remembers.
const bigKeysKept = 64

func proxyOptions(cfg config.Config, obs admin.Observers) proxy.Options {
	lim := resp.DefaultLimits
	lim.MaxBulk = cfg.MaxArgBytes
	lim.MaxArgs = cfg.MaxArgs
	return proxy.Options{
		Limits:        lim,
		HashPrefix:    cfg.HashPrefix,
		MaxClients:    cfg.MaxClients,
		IdleTimeout:   cfg.IdleTimeout,
		MaxPipeline:   cfg.MaxPipeline,
		Version:       version,
		Password:      cfg.Security.Password,
		AdminPassword: cfg.Security.AdminPassword,

		// Rebalancing: the moving-key path's hold and its control clients,
		// with the data path's AUTH/TLS. A moving-key command answers within
		// HoldMax + RequestTimeout, below go-redis's 3s read timeout.
		HoldMax:         cfg.RebalanceHoldMax,
		BackendSecurity: backendSecurity(cfg),
		ControlTimeout:  cfg.RequestTimeout,

		Obs: obs,
	}
}

func adminHandler(cfg config.Config, ctl admin.Controller, obs admin.Observers) admin.Handler {
	return admin.Handler{C: ctl, RequireAdmin: cfg.Security.AdminPassword != "", Obs: obs}
}

// newGatherer builds the capacity gatherer (nil with --capacity-interval
// 0): INFO on every node of the router's ring once per interval, over its
// own connections with the data path's AUTH/TLS, and the pod's request
// rates from the pool's per-node reply counters. cluster: the fleet's
// rates come from the leader (cluster.LoadExchange).
func newGatherer(cfg config.Config, router *proxy.Router, cluster bool, log *slog.Logger) *capacity.Gatherer {
	if cfg.CapacityInterval <= 0 {
		return nil
	}
	sec := backendSecurity(cfg)
	timeout := min(cfg.RequestTimeout, cfg.CapacityInterval)
	clients := capacity.NewClients(func(addr string) (*redis.Options, error) {
		return rebalance.ClientOptions(addr, sec, timeout)
	})
	return capacity.New(capacity.Config{
		Interval: cfg.CapacityInterval,
		Timeout:  timeout,
		Ring:     router.Ring,
		Requests: func() map[string]uint64 {
			out := map[string]uint64{}
			router.Nodes(func(addr string, n *backend.Node) { out[addr] = n.Stats.Count.Load() })
			return out
		},
		Info:    clients,
		Cluster: cluster,
		Logger:  log,
	})
}

// capacitySource is g as the admin and metrics interfaces take it: a nil
// interface when the gatherer is off.
func capacitySource(g *capacity.Gatherer) admin.CapacitySource {
	if g == nil {
		return nil
	}
	return g
}

// listen opens the RESP listener, with TLS when --tls-cert is set.
func listen(cfg config.Config) (net.Listener, error) {
	var tcfg *tls.Config
	if cfg.Security.TLSCert != "" {
		var err error
		if tcfg, err = proxy.ServerTLS(cfg.Security.TLSCert, cfg.Security.TLSKey); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil || tcfg == nil {
		return ln, err
	}
	return tls.NewListener(ln, tcfg), nil
}

// openAdmin builds the HTTP admin server on --admin-listen (nil when empty):
// probes, metrics, status, the node API over ctl, and the slow log and hot
// and big keys of obs.
func openAdmin(cfg config.Config, health *telemetry.Health, reg *prometheus.Registry, ctl admin.Controller,
	obs admin.Observers, log *slog.Logger) (*telemetry.Server, error) {
	if cfg.AdminListen == "" {
		return nil, nil
	}
	hs, err := telemetry.Listen(cfg.AdminListen, health, reg, func(ctx context.Context) any { return admin.StatusWithRebalance(ctx, ctl) }, log)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	admin.HTTP{C: ctl, AdminPassword: cfg.Security.HTTPAdminPassword()}.Register(hs)
	obs.Register(hs, cfg.Security.HTTPAdminPassword())
	return hs, nil
}

// frontEnds are a pod's RESP and HTTP listeners, each served by a goroutine
// frontEnds owns and joins.
type frontEnds struct {
	srv  *proxy.Server
	ln   net.Listener
	hs   *telemetry.Server // nil when the admin listener is off
	wg   sync.WaitGroup
	errc chan error
}

func startFrontEnds(srv *proxy.Server, ln net.Listener, hs *telemetry.Server) *frontEnds {
	f := &frontEnds{srv: srv, ln: ln, hs: hs, errc: make(chan error, 2)}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := srv.Serve(ln); err != nil {
			f.errc <- fmt.Errorf("resp listener: %w", err)
		}
	}()
	if hs != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := hs.Serve(); err != nil {
				f.errc <- fmt.Errorf("admin listener: %w", err)
			}
		}()
	}
	return f
}

// wait blocks until ctx ends (SIGTERM) or a listener fails; the error is
// the listener's.
func (f *frontEnds) wait(ctx context.Context, log *slog.Logger) error {
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining clients")
		return nil
	case err := <-f.errc:
		log.Error("listener failed, shutting down", "err", err)
		return err
	}
}

// drainDelay keeps serving, with /readyz already failing, for
// --drain-delay after SIGTERM: endpoint removal and clients' pools take a
// few seconds to stop sending new work here.
func drainDelay(cfg config.Config, log *slog.Logger) {
	if cfg.DrainDelay > 0 {
		log.Info("draining: still serving while clients move away", "for", cfg.DrainDelay)
		time.Sleep(cfg.DrainDelay)
	}
}

// drain stops accepting and closes every client connection at its next
// command boundary (a pipeline, transaction or blocked command in progress
// completes first; a command still blocked shortly before ctx's deadline
// gets -UNBLOCKED), bounded by ctx.
func (f *frontEnds) drain(ctx context.Context, log *slog.Logger) {
	err := f.srv.Shutdown(ctx)
	drained := f.srv.Stats.Drained.Load()
	if err != nil {
		log.Warn("drain did not finish in time; closed remaining clients", "err", err, "closed_at_boundary", drained)
		return
	}
	log.Info("clients drained", "closed_at_boundary", drained)
}

// close stops the admin listener and joins both goroutines (briefly: they
// end as soon as their listeners are closed).
func (f *frontEnds) close(ctx context.Context) {
	if f.hs != nil {
		_ = f.hs.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
