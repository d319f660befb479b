package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/health"
	"github.com/alphauslabs/jupiter/internal/proxy"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/prometheus/client_golang/prometheus"
)

// infoOf answers INFO for the addresses in ok and fails the others.
type infoOf map[string]bool

func (f infoOf) Info(_ context.Context, addr string) (string, error) {
	if f[addr] {
		return "# Server\r\nrole:master\r\n", nil
	}
	return "", errors.New("i/o timeout")
}
func (infoOf) Retain([]string) {}

// listenAny accepts and holds connections: a node the data path reaches.
func listenAny(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return ln.Addr().String()
}

// TestNodeHealthWiring: a pod's own view combines its INFO round and the
// data path's connection state; in cluster mode the verdict it is handed
// is enforced on the pool and shown (NODES fields, STATUS lines, metrics);
// standalone shows the pod's own view and enforces nothing.
func TestNodeHealthWiring(t *testing.T) {
	a, b := listenAny(t), listenAny(t)
	dead := "127.0.0.1:1" // nothing listens: the data path cannot connect
	r, err := ring.New(1, []ring.Node{{Addr: a, Weight: 1}, {Addr: b, Weight: 1}, {Addr: dead, Weight: 1}})
	if err != nil {
		t.Fatal(err)
	}
	pool := backend.NewPool(backend.Options{DialTimeout: 200 * time.Millisecond})
	defer pool.Close(context.Background())
	router := proxy.NewRouter(pool, r)
	gath := capacity.New(capacity.Config{Interval: time.Hour, Ring: router.Ring, Info: infoOf{a: true, dead: true}, Cluster: true})
	log := slog.New(slog.DiscardHandler)
	if newNodeHealth("self", nil, router, pool, true, true, log) != nil {
		t.Error("no gatherer, yet a nodeHealth")
	}
	nh := newNodeHealth("self", gath, router, pool, true, true, log)
	if len(nh.Local()) != 0 {
		t.Errorf("before any INFO round: %v", nh.Local())
	}
	gath.Round(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for !pool.Node(a).Up() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	local := nh.Local()
	if local[a] != "" || local[b] != "i/o timeout" || local[dead] != "data path connection down" {
		t.Fatalf("Local() = %q", local)
	}

	nh.Set(health.Verdict{Pods: 3, At: time.Now(), Nodes: map[string]health.Node{
		a: {Addr: a, Reporters: 3}, b: {Addr: b, Down: true, Reporters: 3, DownBy: []string{"p1", "p2"}, Since: time.Now()}}})
	if !pool.Node(b).FleetDown() || pool.Node(a).FleetDown() || pool.Node(dead).FleetDown() {
		t.Error("the verdict is not what the pool enforces")
	}
	hs := nh.NodeHealth()
	if h := hs[b]; h.State != "down" || h.Scope != "fleet" || h.DownReports != 2 || h.Local != "down" || h.SinceMs < 0 {
		t.Errorf("b: %+v", h)
	}
	if h := hs[dead]; h.State != "up" || h.Local != "down" || h.Reporters != 0 || h.DownBy == nil {
		t.Errorf("dead (no verdict, down here): %+v", h)
	}
	lines := map[string]string{}
	for _, kv := range nh.HealthLines() {
		lines[kv[0]] = kv[1]
	}
	if lines["health_scope"] != "fleet" || lines["health_pods"] != "3" || lines["nodes_down"] != b || lines["health_age_ms"] == "-1" {
		t.Errorf("STATUS lines %v", lines)
	}
	reg := prometheus.NewRegistry()
	registerHealth(reg, nh)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+" "+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if got["jupiter_node_fleet_down "+b] != 1 || got["jupiter_node_fleet_down "+a] != 0 ||
		got["jupiter_node_down_reports "+b] != 2 || got["jupiter_node_local_down "+dead] != 1 || got["jupiter_node_health_reporters "+a] != 3 {
		t.Errorf("metrics %v", got)
	}
	nh.Set(health.Verdict{})
	if pool.Node(b).FleetDown() {
		t.Error("an empty verdict did not lift the down mark")
	}

	// Standalone: the pod's own view, shown, never enforced.
	sa := newNodeHealth("self", gath, router, pool, false, true, log)
	sa.Set(health.Verdict{Nodes: map[string]health.Node{a: {Addr: a, Down: true}}})
	if pool.Node(a).FleetDown() {
		t.Error("standalone enforced a verdict")
	}
	hs = sa.NodeHealth()
	if hs[b].State != "down" || hs[b].Scope != "pod" || hs[a].State != "up" || hs[b].SinceMs != -1 ||
		!strings.Contains(strings.Join(hs[b].DownBy, ","), "self") {
		t.Errorf("standalone: %+v", hs)
	}
}
