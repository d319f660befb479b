package telemetry

import (
	"github.com/alphauslabs/jupiter/internal/stats"
	"github.com/prometheus/client_golang/prometheus"
)

// NodeSample is one backend node as the metrics see it.
type NodeSample struct {
	Addr      string
	Op        *stats.Op
	Up        bool
	Inflight  int
	Connected int
	Dedicated int // connections clients hold for themselves (WATCH, blocking, pub/sub)
}

// Sources are read at scrape time; the request path only bumps atomics.
type Sources struct {
	Commands func(f func(name string, op *stats.Op))
	Nodes    func() []NodeSample
}

// Collector turns jupiter's request-path counters into Prometheus series.
type Collector struct {
	src                                                  Sources
	cmdTotal, cmdErrors, cmdSeconds                      *prometheus.Desc
	nodeTotal, nodeErrors, nodeSeconds                   *prometheus.Desc
	nodeUp, nodeInflight, nodeConnections, nodeDedicated *prometheus.Desc
}

// NewCollector returns a collector over src.
func NewCollector(src Sources) *Collector {
	cmd, node := []string{"command"}, []string{"node"}
	return &Collector{
		src:             src,
		cmdTotal:        prometheus.NewDesc("jupiter_command_calls_total", "Client commands by command name.", cmd, nil),
		cmdErrors:       prometheus.NewDesc("jupiter_command_errors_total", "Client commands that got an error reply, by command name.", cmd, nil),
		cmdSeconds:      prometheus.NewDesc("jupiter_command_duration_seconds", "Time from a client batch's dispatch to its replies, by command name.", cmd, nil),
		nodeTotal:       prometheus.NewDesc("jupiter_backend_requests_total", "Requests sent to each Redis node (one per reply awaited).", node, nil),
		nodeErrors:      prometheus.NewDesc("jupiter_backend_errors_total", "Requests that failed because the node could not answer.", node, nil),
		nodeSeconds:     prometheus.NewDesc("jupiter_backend_duration_seconds", "Time from queueing a request to a node to its reply.", node, nil),
		nodeUp:          prometheus.NewDesc("jupiter_backend_up", "1 if jupiter's last connection attempt to the node succeeded.", node, nil),
		nodeInflight:    prometheus.NewDesc("jupiter_backend_inflight_requests", "Requests waiting for a reply from the node (pool in use).", node, nil),
		nodeDedicated:   prometheus.NewDesc("jupiter_backend_dedicated_connections", "Connections to the node that clients hold for themselves: WATCH, blocked commands, subscriptions (bounded by --max-dedicated-conns).", node, nil),
		nodeConnections: prometheus.NewDesc("jupiter_backend_connections", "Open multiplexed connections to the node.", node, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cmdTotal, c.cmdErrors, c.cmdSeconds, c.nodeTotal,
		c.nodeErrors, c.nodeSeconds, c.nodeUp, c.nodeInflight, c.nodeConnections, c.nodeDedicated} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Commands != nil {
		c.src.Commands(func(name string, op *stats.Op) {
			c.op(ch, c.cmdTotal, c.cmdErrors, c.cmdSeconds, op, name)
		})
	}
	if c.src.Nodes != nil {
		for _, n := range c.src.Nodes() {
			c.op(ch, c.nodeTotal, c.nodeErrors, c.nodeSeconds, n.Op, n.Addr)
			up := 0.0
			if n.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(c.nodeUp, prometheus.GaugeValue, up, n.Addr)
			ch <- prometheus.MustNewConstMetric(c.nodeInflight, prometheus.GaugeValue, float64(n.Inflight), n.Addr)
			ch <- prometheus.MustNewConstMetric(c.nodeConnections, prometheus.GaugeValue, float64(n.Connected), n.Addr)
			ch <- prometheus.MustNewConstMetric(c.nodeDedicated, prometheus.GaugeValue, float64(n.Dedicated), n.Addr)
		}
	}
}

func (c *Collector) op(ch chan<- prometheus.Metric, total, errs, secs *prometheus.Desc, op *stats.Op, label string) {
	ch <- prometheus.MustNewConstMetric(total, prometheus.CounterValue, float64(op.Count.Load()), label)
	ch <- prometheus.MustNewConstMetric(errs, prometheus.CounterValue, float64(op.Errors.Load()), label)
	counts, n, sum := op.Latency.Snapshot()
	buckets := make(map[float64]uint64, stats.Buckets-1)
	var cum uint64
	for i := 0; i < stats.Buckets-1; i++ {
		cum += counts[i]
		buckets[stats.UpperBound(i)] = cum
	}
	ch <- prometheus.MustNewConstHistogram(secs, n, sum, buckets, label)
}
