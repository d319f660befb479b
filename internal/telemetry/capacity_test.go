package telemetry

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type fixedCapacity struct {
	figs  []capacity.Figures
	pods  int
	calls int
}

func (f *fixedCapacity) Snapshot() []capacity.Figures { f.calls++; return f.figs }
func (f *fixedCapacity) Fleet() capacity.Fleet        { return capacity.Fleet{Pods: f.pods} }

// TestCapacityCollector: names, types, labels and values of the
// jupiter_node_* series; unknown figures have no series.
func TestCapacityCollector(t *testing.T) {
	known := capacity.Figures{Addr: "10.0.0.1:6379", Info: capacity.Info{UsedMemory: 1000, MaxMemory: 4000,
		Keys: 50, EvictedKeys: 2, ExpiredKeys: 3, KeyspaceHits: 30, KeyspaceMisses: 10, Clients: 7, OpsPerSec: 99,
		Role: "master"}, SlotShare: 0.5, KeyShare: 0.25, MemoryRatio: 0.25, HitRatio: 0.75, PodOpsPerSec: 12.5,
		FleetOpsPerSec: 40, InfoAgeMs: 1500, InfoRequests: 8, InfoErrors: 1}
	unknown := capacity.Figures{Addr: "10.0.0.2:6379", Info: capacity.ParseInfo(""), SlotShare: 0.5, KeyShare: -1,
		MemoryRatio: -1, HitRatio: -1, PodOpsPerSec: -1, FleetOpsPerSec: -1, InfoAgeMs: -1, InfoRequests: 2, InfoErrors: 2}
	src := &fixedCapacity{figs: []capacity.Figures{known, unknown}, pods: 3}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCapacityCollector(src))
	want := `
# HELP jupiter_fleet_pods Pods whose request rates jupiter_node_ops_per_second{scope="fleet"} sums.
# TYPE jupiter_fleet_pods gauge
jupiter_fleet_pods 3
# HELP jupiter_node_connected_clients Client connections the Redis node reports (all pods and other clients).
# TYPE jupiter_node_connected_clients gauge
jupiter_node_connected_clients{node="10.0.0.1:6379"} 7
# HELP jupiter_node_evicted_keys_total Keys the Redis node evicted for maxmemory since it started.
# TYPE jupiter_node_evicted_keys_total counter
jupiter_node_evicted_keys_total{node="10.0.0.1:6379"} 2
# HELP jupiter_node_expired_keys_total Keys the Redis node expired since it started.
# TYPE jupiter_node_expired_keys_total counter
jupiter_node_expired_keys_total{node="10.0.0.1:6379"} 3
# HELP jupiter_node_info_age_seconds Age of the node's last INFO answer (the figures above).
# TYPE jupiter_node_info_age_seconds gauge
jupiter_node_info_age_seconds{node="10.0.0.1:6379"} 1.5
# HELP jupiter_node_info_errors_total INFO calls to the node that failed.
# TYPE jupiter_node_info_errors_total counter
jupiter_node_info_errors_total{node="10.0.0.1:6379"} 1
jupiter_node_info_errors_total{node="10.0.0.2:6379"} 2
# HELP jupiter_node_info_requests_total INFO calls the capacity gatherer made to the node.
# TYPE jupiter_node_info_requests_total counter
jupiter_node_info_requests_total{node="10.0.0.1:6379"} 8
jupiter_node_info_requests_total{node="10.0.0.2:6379"} 2
# HELP jupiter_node_key_share The node's share of the keys on all ring nodes (0..1).
# TYPE jupiter_node_key_share gauge
jupiter_node_key_share{node="10.0.0.1:6379"} 0.25
# HELP jupiter_node_keys Keys in the Redis node's db0 (what DBSIZE counts).
# TYPE jupiter_node_keys gauge
jupiter_node_keys{node="10.0.0.1:6379"} 50
# HELP jupiter_node_keyspace_hit_ratio keyspace_hits / (hits + misses) of the Redis node since it started.
# TYPE jupiter_node_keyspace_hit_ratio gauge
jupiter_node_keyspace_hit_ratio{node="10.0.0.1:6379"} 0.75
# HELP jupiter_node_keyspace_hits_total Successful key lookups on the Redis node since it started.
# TYPE jupiter_node_keyspace_hits_total counter
jupiter_node_keyspace_hits_total{node="10.0.0.1:6379"} 30
# HELP jupiter_node_keyspace_misses_total Failed key lookups on the Redis node since it started.
# TYPE jupiter_node_keyspace_misses_total counter
jupiter_node_keyspace_misses_total{node="10.0.0.1:6379"} 10
# HELP jupiter_node_maxmemory_bytes The Redis node's maxmemory (0: no limit).
# TYPE jupiter_node_maxmemory_bytes gauge
jupiter_node_maxmemory_bytes{node="10.0.0.1:6379"} 4000
# HELP jupiter_node_memory_used_ratio used_memory / maxmemory of the Redis node (only for nodes with a maxmemory).
# TYPE jupiter_node_memory_used_ratio gauge
jupiter_node_memory_used_ratio{node="10.0.0.1:6379"} 0.25
# HELP jupiter_node_ops_per_second Requests per second to the Redis node: scope=pod through this pod, fleet through all pods (the leader's sum), node the node's own instantaneous_ops_per_sec.
# TYPE jupiter_node_ops_per_second gauge
jupiter_node_ops_per_second{node="10.0.0.1:6379",scope="fleet"} 40
jupiter_node_ops_per_second{node="10.0.0.1:6379",scope="node"} 99
jupiter_node_ops_per_second{node="10.0.0.1:6379",scope="pod"} 12.5
# HELP jupiter_node_role 1 for the Redis node's replication role (INFO role).
# TYPE jupiter_node_role gauge
jupiter_node_role{node="10.0.0.1:6379",role="master"} 1
# HELP jupiter_node_slot_share The node's share of the 16384 slots (0..1).
# TYPE jupiter_node_slot_share gauge
jupiter_node_slot_share{node="10.0.0.1:6379"} 0.5
jupiter_node_slot_share{node="10.0.0.2:6379"} 0.5
# HELP jupiter_node_used_memory_bytes Memory the Redis node uses (INFO used_memory).
# TYPE jupiter_node_used_memory_bytes gauge
jupiter_node_used_memory_bytes{node="10.0.0.1:6379"} 1000
`
	if got := scrape(t, reg); got != strings.TrimPrefix(want, "\n") {
		t.Fatalf("/metrics =\n%s\nwant\n%s", got, want)
	}
	if src.calls != 1 {
		t.Errorf("one scrape read the gatherer's snapshot %d times, want 1", src.calls)
	}
}

// scrape is reg's /metrics page, as promhttp serves it.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(body)
}
