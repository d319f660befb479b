package capacity

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
)

// Defaults for Config.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultParallel = 16
)

// InfoSource runs INFO on a node (Clients in production).
type InfoSource interface {
	Info(ctx context.Context, addr string) (string, error)
	// Retain drops whatever is kept for nodes not in keep (connections).
	Retain(keep []string)
}

// Config wires a Gatherer.
type Config struct {
	// Interval is the time between two rounds; a node is asked at most
	// once per Interval. Default DefaultInterval.
	Interval time.Duration
	// Timeout bounds one node's INFO. Default min(DefaultTimeout, Interval).
	Timeout time.Duration
	// Parallel is how many nodes are asked at once. Default DefaultParallel.
	Parallel int
	// Ring is the ring routed by now (proxy.Router.Ring): its nodes are
	// the ones asked, its slot counts give the slot shares. Required.
	Ring func() *ring.Ring
	// Requests returns, per node address, how many requests this pod has
	// sent to the node so far (backend.Node.Stats.Count). nil: no pod
	// rates.
	Requests func() map[string]uint64
	// Info runs INFO. Required.
	Info InfoSource
	// Cluster says the fleet's figures come from SetFleet (the leader's
	// sums). Otherwise this pod is the whole fleet.
	Cluster bool
	Logger  *slog.Logger
}

// Fleet is the fleet-wide request rate per node: the sum of every pod's
// rate as the cluster leader last collected them.
type Fleet struct {
	Pods int                // pods whose rates the sums hold
	Ops  map[string]float64 // requests/s per node address
	At   time.Time          // when the sums were made, by this pod's clock
}

// Figures are one ring node's capacity as this pod last saw it. -1 means
// unknown throughout (a node never heard from, no maxmemory, no lookup yet).
type Figures struct {
	Addr string `json:"-"`
	Info
	SlotShare      float64 `json:"slot_share"`        // share of the 16384 slots the node owns
	KeyShare       float64 `json:"key_share"`         // share of the keys on the ring's nodes
	MemoryRatio    float64 `json:"memory_ratio"`      // used_memory / maxmemory
	HitRatio       float64 `json:"hit_ratio"`         // keyspace_hits / (hits + misses), since the node started
	PodOpsPerSec   float64 `json:"pod_ops_per_sec"`   // requests/s this pod sent the node, last round
	FleetOpsPerSec float64 `json:"fleet_ops_per_sec"` // requests/s all pods sent the node
	InfoAgeMs      int64   `json:"info_age_ms"`       // age of the last INFO answered
	InfoError      string  `json:"info_error,omitempty"`
	InfoRequests   uint64  `json:"info_requests"` // INFO calls made so far
	InfoErrors     uint64  `json:"info_errors"`   // of which failed
}

// Full is how near the node is to full, for sorting: MemoryRatio when the
// node has a maxmemory, else its KeyShare (-1 unknown).
func (f Figures) Full() float64 {
	if r := f.MemoryRatio; r >= 0 {
		return r
	}
	return f.KeyShare
}

// nodeState is what the gatherer keeps per node between rounds.
type nodeState struct {
	info         Info
	at           time.Time // last INFO answered (zero: never)
	err          string    // last INFO's error ("" once one succeeds)
	calls, fails uint64
	// streak counts the INFOs failed in a row; slowOnly: every one of them
	// timed out (none was refused or reset), see Reach.
	streak   int
	slowOnly bool

	reqs   uint64 // Requests at reqAt
	reqAt  time.Time
	podOps float64 // -1 until two rounds have counted
}

// Gatherer collects the Figures of every ring node in the background.
type Gatherer struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	nodes  map[string]*nodeState
	fleet  Fleet
	counts struct { // slot counts of the last ring Snapshot saw
		r *ring.Ring
		n []int
	}

	startOnce, stopOnce sync.Once
	cancel              context.CancelFunc
	done                chan struct{}
}

// New returns a Gatherer; Start runs it.
func New(cfg Config) *Gatherer {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = min(DefaultTimeout, cfg.Interval)
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultParallel
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Gatherer{cfg: cfg, log: lg.With("component", "capacity"), nodes: map[string]*nodeState{},
		done: make(chan struct{})}
}

// Interval is the time between rounds.
func (g *Gatherer) Interval() time.Duration { return g.cfg.Interval }

// Start runs the gathering goroutine: a first round at once, then one per
// Interval, until Stop.
func (g *Gatherer) Start() {
	g.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		g.cancel = cancel
		go g.run(ctx)
	})
}

// Stop ends the goroutine and waits for it (at most one INFO Timeout), then
// closes the INFO connections (Retain(nil)). Safe without Start and more
// than once.
func (g *Gatherer) Stop() {
	g.stopOnce.Do(func() {
		// Once.Do returns after a concurrent Start's; a Start after Stop
		// does nothing.
		g.startOnce.Do(func() {})
		if g.cancel != nil {
			g.cancel()
			<-g.done
		}
		g.cfg.Info.Retain(nil) // close the connections
	})
}

func (g *Gatherer) run(ctx context.Context) {
	defer close(g.done)
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		g.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C: // a slow round skips ticks: never more than one per Interval
		}
	}
}

// Round asks every node of the current ring for INFO once (Parallel at a
// time, each bounded by Timeout) and updates the request rates. The
// goroutine calls it every Interval; tests call it directly.
func (g *Gatherer) Round(ctx context.Context) {
	r := g.cfg.Ring()
	if r == nil {
		return
	}
	addrs := make([]string, r.Len())
	for i, n := range r.Nodes() {
		addrs[i] = n.Addr
	}
	g.cfg.Info.Retain(addrs)
	g.countRequests(addrs)

	sem := make(chan struct{}, g.cfg.Parallel)
	var wg sync.WaitGroup
	for _, a := range addrs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ictx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
			text, err := g.cfg.Info.Info(ictx, a)
			cancel()
			g.record(a, text, err)
		}()
	}
	wg.Wait()
}

// countRequests turns the pod's request counters into rates, and forgets
// nodes that left the ring.
func (g *Gatherer) countRequests(addrs []string) {
	var reqs map[string]uint64
	if g.cfg.Requests != nil {
		reqs = g.cfg.Requests()
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	keep := make(map[string]*nodeState, len(addrs))
	for _, a := range addrs {
		st := g.nodes[a]
		if st == nil {
			st = &nodeState{info: unknownInfo(), podOps: -1}
		}
		keep[a] = st
		n, ok := reqs[a]
		switch {
		case !ok:
			st.podOps, st.reqAt = -1, time.Time{}
		case !st.reqAt.IsZero() && n >= st.reqs && now.After(st.reqAt):
			st.podOps = float64(n-st.reqs) / now.Sub(st.reqAt).Seconds()
		default: // first count, or a counter that restarted (node re-added)
			st.podOps = -1
		}
		if ok {
			st.reqs, st.reqAt = n, now
		}
	}
	g.nodes = keep
	if !g.cfg.Cluster {
		ops := make(map[string]float64, len(keep))
		for a, st := range keep {
			if st.podOps >= 0 {
				ops[a] = st.podOps
			}
		}
		g.fleet = Fleet{Pods: 1, Ops: ops, At: now}
	}
}

func (g *Gatherer) record(addr, text string, err error) {
	var in Info
	if err == nil {
		in = ParseInfo(text)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.nodes[addr]
	if st == nil { // left the ring during the round
		return
	}
	st.calls++
	if err != nil {
		st.fails++
		st.streak++
		st.slowOnly = isTimeout(err) && (st.streak == 1 || st.slowOnly)
		if st.err == "" {
			g.log.Warn("node does not answer INFO; showing its last figures", "node", addr, "err", err)
		}
		st.err = err.Error()
		return
	}
	if st.err != "" {
		g.log.Info("node answers INFO again", "node", addr)
	}
	st.info, st.at, st.err, st.streak = in, time.Now(), "", 0
}

// isTimeout reports whether an INFO failed by running out of time (the
// node may only be busy) rather than by being refused or reset.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// PodOps returns this pod's request rate per node (nodes with a known rate
// only), what the pod reports to the cluster leader.
func (g *Gatherer) PodOps() map[string]float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]float64, len(g.nodes))
	for a, st := range g.nodes {
		if st.podOps >= 0 {
			out[a] = st.podOps
		}
	}
	return out
}

// Reach returns, per node of the last round that has been asked INFO at
// least once, "" if its last INFO answered and the error if it did not:
// this pod's own view of which nodes it reaches, what it reports for fleet
// node health. Nodes not asked yet are left out (no view), and so is a
// node whose only failure so far is one INFO that timed out: a node busy
// for longer than the INFO timeout once (a long KEYS or DEL, a fork) is not
// down, and one round of every pod seeing it slow would otherwise mark it
// down for the whole fleet. A second failure in a row, or a refused or
// reset connection, is reported at once (SlowRounds).
func (g *Gatherer) Reach() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]string, len(g.nodes))
	for a, st := range g.nodes {
		switch {
		case st.calls == 0:
		case st.err != "" && st.slowOnly && st.streak < SlowRounds:
		default:
			out[a] = st.err
		}
	}
	return out
}

// SlowRounds is how many INFO rounds in a row must time out before Reach
// reports a node unreachable (a refused or reset connection counts at once).
const SlowRounds = 2

// SetFleet records the fleet-wide rates (cluster mode: the leader's sums).
func (g *Gatherer) SetFleet(f Fleet) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fleet = f
}

// Fleet returns the fleet-wide rates last recorded (Pods 0: none yet).
func (g *Gatherer) Fleet() Fleet {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fleet
}

// Snapshot returns the Figures of every node of the ring routed by now, in
// ring order, with shares computed against that ring. It makes no call to
// any node.
func (g *Gatherer) Snapshot() []Figures {
	r := g.cfg.Ring()
	if r == nil {
		return nil
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	counts := g.slotCounts(r)
	var keys int64
	for _, n := range r.Nodes() {
		if st := g.nodes[n.Addr]; st != nil && !st.at.IsZero() && st.info.Keys >= 0 {
			keys += st.info.Keys
		}
	}
	out := make([]Figures, r.Len())
	for i, n := range r.Nodes() {
		f := Figures{Addr: n.Addr, Info: unknownInfo(), SlotShare: float64(counts[i]) / ring.Slots,
			KeyShare: -1, PodOpsPerSec: -1, FleetOpsPerSec: -1, InfoAgeMs: -1}
		if st := g.nodes[n.Addr]; st != nil {
			if !st.at.IsZero() {
				f.Info = st.info
				f.InfoAgeMs = now.Sub(st.at).Milliseconds()
			}
			f.InfoError, f.InfoRequests, f.InfoErrors = st.err, st.calls, st.fails
			f.PodOpsPerSec = st.podOps
		}
		if f.Keys >= 0 {
			f.KeyShare = 0
			if keys > 0 {
				f.KeyShare = float64(f.Keys) / float64(keys)
			}
		}
		f.MemoryRatio, f.HitRatio = f.Info.MemoryRatio(), f.Info.HitRatio()
		if v, ok := g.fleet.Ops[n.Addr]; ok {
			f.FleetOpsPerSec = v
		}
		out[i] = f
	}
	return out
}

// slotCounts caches r.SlotCounts (a pass over all slots) per ring.
func (g *Gatherer) slotCounts(r *ring.Ring) []int {
	if g.counts.r != r {
		g.counts.r, g.counts.n = r, r.SlotCounts()
	}
	return g.counts.n
}
