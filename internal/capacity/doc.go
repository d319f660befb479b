// Package capacity answers the questions an operator asks of a fleet of
// Redis nodes: how full is each node (used memory against maxmemory, keys
// and their share, evictions), how well is it serving (hits, misses,
// expirations, clients, role) and how busy is it (requests per second
// through this pod, through the whole fleet, and the node's own estimate).
// JUPITER NODES, GET /v1/nodes, `jupiter ctl top` and the jupiter_node_*
// Prometheus series all show what one Gatherer collected.
//
// Why a background gatherer: an operator's command or a Prometheus scrape
// must not turn into a burst of INFO calls on every node (a scrape every 5s
// from each of N pods, plus whoever runs `ctl top`), and must answer even
// when a node does not. So one goroutine per server, owned by it (Start,
// Stop), asks every ring node for INFO once per Interval, at most Parallel
// nodes at a time, each call bounded by Timeout, on its own small
// connection per node (never the data path's multiplexed connections, so a
// slow INFO delays no client). Readers get the last figures, with their
// age; a node that stops answering keeps its last values and an ageing
// info_age_ms, and one never heard from is unknown (-1). INFO is the only
// command sent: Memorystore allows it and blocks CONFIG and CLIENT.
//
// Requests per second through this pod come from the proxy's own per-node
// reply counters (backend.Node.Stats), read once per round: no cost on the
// request path. The fleet's figure is the sum over pods: standalone, this
// pod is the fleet; in cluster mode the leader collects every pod's rates
// (cluster's load exchange over hedge Broadcast) and hands the sums back,
// and SetFleet records them.
//
// Shares are computed when read, against the ring routed by then: a node's
// share of the 16384 slots, and of the keys counted on the ring's nodes
// that have answered at least once.
package capacity
