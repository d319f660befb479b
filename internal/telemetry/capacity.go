package telemetry

import (
	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/prometheus/client_golang/prometheus"
)

// CapacitySource is what CapacityCollector reads at scrape time (a
// *capacity.Gatherer): the figures its background loop last gathered. A
// scrape never reaches a Redis node.
type CapacitySource interface {
	Snapshot() []capacity.Figures
	Fleet() capacity.Fleet
}

// CapacityCollector exports the capacity figures of every ring node as
// jupiter_node_* series (label node = the node's address). An unknown
// figure (a node never heard from, no maxmemory) has no series rather than
// a made-up value; counters that Redis keeps since it started (evictions,
// hits…) are exported as counters so that rate() works.
type CapacityCollector struct {
	src CapacitySource

	usedMemory, maxMemory, memoryRatio, keys, keyShare, slotShare *prometheus.Desc
	evicted, expired, hits, misses, hitRatio, clients             *prometheus.Desc
	ops, role, infoAge, infoRequests, infoErrors, fleetPods       *prometheus.Desc
}

// NewCapacityCollector returns a collector over src.
func NewCapacityCollector(src CapacitySource) *CapacityCollector {
	node := []string{"node"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(node, labels...), nil)
	}
	return &CapacityCollector{
		src:          src,
		usedMemory:   d("jupiter_node_used_memory_bytes", "Memory the Redis node uses (INFO used_memory)."),
		maxMemory:    d("jupiter_node_maxmemory_bytes", "The Redis node's maxmemory (0: no limit)."),
		memoryRatio:  d("jupiter_node_memory_used_ratio", "used_memory / maxmemory of the Redis node (only for nodes with a maxmemory)."),
		keys:         d("jupiter_node_keys", "Keys in the Redis node's db0 (what DBSIZE counts)."),
		keyShare:     d("jupiter_node_key_share", "The node's share of the keys on all ring nodes (0..1)."),
		slotShare:    d("jupiter_node_slot_share", "The node's share of the 16384 slots (0..1)."),
		evicted:      d("jupiter_node_evicted_keys_total", "Keys the Redis node evicted for maxmemory since it started."),
		expired:      d("jupiter_node_expired_keys_total", "Keys the Redis node expired since it started."),
		hits:         d("jupiter_node_keyspace_hits_total", "Successful key lookups on the Redis node since it started."),
		misses:       d("jupiter_node_keyspace_misses_total", "Failed key lookups on the Redis node since it started."),
		hitRatio:     d("jupiter_node_keyspace_hit_ratio", "keyspace_hits / (hits + misses) of the Redis node since it started."),
		clients:      d("jupiter_node_connected_clients", "Client connections the Redis node reports (all pods and other clients)."),
		ops:          d("jupiter_node_ops_per_second", "Requests per second to the Redis node: scope=pod through this pod, fleet through all pods (the leader's sum), node the node's own instantaneous_ops_per_sec.", "scope"),
		role:         d("jupiter_node_role", "1 for the Redis node's replication role (INFO role).", "role"),
		infoAge:      d("jupiter_node_info_age_seconds", "Age of the node's last INFO answer (the figures above)."),
		infoRequests: d("jupiter_node_info_requests_total", "INFO calls the capacity gatherer made to the node."),
		infoErrors:   d("jupiter_node_info_errors_total", "INFO calls to the node that failed."),
		fleetPods:    prometheus.NewDesc("jupiter_fleet_pods", "Pods whose request rates jupiter_node_ops_per_second{scope=\"fleet\"} sums.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *CapacityCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.usedMemory, c.maxMemory, c.memoryRatio, c.keys, c.keyShare, c.slotShare,
		c.evicted, c.expired, c.hits, c.misses, c.hitRatio, c.clients, c.ops, c.role, c.infoAge,
		c.infoRequests, c.infoErrors, c.fleetPods} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CapacityCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		if v >= 0 {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		if v >= 0 {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
	}
	for _, f := range c.src.Snapshot() {
		a := f.Addr
		gauge(c.usedMemory, float64(f.UsedMemory), a)
		gauge(c.maxMemory, float64(f.MaxMemory), a)
		gauge(c.memoryRatio, f.MemoryRatio, a)
		gauge(c.keys, float64(f.Keys), a)
		gauge(c.keyShare, f.KeyShare, a)
		gauge(c.slotShare, f.SlotShare, a)
		counter(c.evicted, f.EvictedKeys, a)
		counter(c.expired, f.ExpiredKeys, a)
		counter(c.hits, f.KeyspaceHits, a)
		counter(c.misses, f.KeyspaceMisses, a)
		gauge(c.hitRatio, f.HitRatio, a)
		gauge(c.clients, float64(f.Clients), a)
		gauge(c.ops, f.PodOpsPerSec, a, "pod")
		gauge(c.ops, f.FleetOpsPerSec, a, "fleet")
		gauge(c.ops, f.OpsPerSec, a, "node")
		if f.Role != "" {
			gauge(c.role, 1, a, f.Role)
		}
		if f.InfoAgeMs >= 0 {
			gauge(c.infoAge, float64(f.InfoAgeMs)/1000, a)
		}
		counter(c.infoRequests, int64(f.InfoRequests), a)
		counter(c.infoErrors, int64(f.InfoErrors), a)
	}
	ch <- prometheus.MustNewConstMetric(c.fleetPods, prometheus.GaugeValue, float64(c.src.Fleet().Pods))
}
