package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/health"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// LoadConfig wires a LoadExchange.
type LoadConfig struct {
	// Interval is the time between two polls (the capacity gatherer's
	// interval). Required.
	Interval time.Duration
	// Timeout bounds one poll's broadcast: pods that have not answered by
	// then are left out of that round's sums. Default min(2s, Interval).
	Timeout time.Duration
	// Self is this pod's hedge address, its name in reports.
	Self string
	// IsLeader tells whether this pod polls (Member.IsLeader).
	IsLeader func() bool
	// Broadcast sends to every member, this pod included, and returns
	// the replies that came before ctx ended (Member.Broadcast).
	Broadcast func(ctx context.Context, msg []byte) []BroadcastResult
	// PodLoad is this pod's request rate per node address
	// (capacity.Gatherer.PodOps). Required.
	PodLoad func() map[string]float64
	// SetFleet receives the fleet-wide sums: on the leader after each
	// poll, on every pod from the next poll (capacity.Gatherer.SetFleet).
	// Required.
	SetFleet func(capacity.Fleet)
	// PodHealth, if set, is this pod's own view of each node of its ring
	// ("" reached, else why not), reported with every CapacityReport; the
	// leader decides the fleet's verdict from the reports (health.Decide)
	// and every pod receives it through SetHealth. nil: no fleet health.
	PodHealth func() map[string]string
	// SetHealth receives the fleet's verdict: on the leader after each
	// round, on every pod with each poll and at once when it changes.
	// Required with PodHealth.
	SetHealth func(health.Verdict)
	// Members is how many pods the leader knows (len(Member.Members())),
	// the fleet size of the quorum rule. nil: the pods that answered.
	Members func() int
	Logger  *slog.Logger
}

// LoadExchange is the fleet load exchange: how every pod learns the
// request rate each backend node gets from the whole fleet, not only from
// itself (JUPITER NODES ops_fleet, jupiter_node_ops_per_second{scope="fleet"}).
//
// Every Interval the leader broadcasts a CapacityPoll; every pod (the
// leader too) answers with a CapacityReport of its own per-node rates. The
// leader sums the reports that arrived within Timeout, keeps the sums and
// sends them with its next poll, so a pod's fleet figure is at most about
// two intervals old (its age is shown). The exchange rides on hedge's
// Broadcast: no Spanner read or write, one connection per pod per
// interval. It reaches the pods the leader knows (hedge's member list,
// synced every --member-sync-interval); a pod it misses is left out of that
// round's sums and the pod count says so. Rates are summed as reported,
// never stored: a report is a few dozen bytes per node.
type LoadExchange struct {
	cfg LoadConfig
	log *slog.Logger

	mu   sync.Mutex
	last capacity.Fleet // the leader's sums of its last poll
	// verdict is the fleet health this pod applies: the leader's own
	// decision, or the last one a poll or FleetHealth carried (a new
	// leader starts from it). heard is when a follower last received one.
	verdict health.Verdict
	heard   time.Time
}

// healthExpiry is how many intervals a follower keeps the fleet's verdict
// without hearing from a leader; then it drops it and falls back to its own
// per-pod behaviour (a pod cut off from the leader must not keep failing a
// node's keys forever on a verdict nobody refreshes).
const healthExpiry = 10

// NewLoadExchange returns a LoadExchange; Run polls while this pod leads,
// Handle answers polls.
func NewLoadExchange(cfg LoadConfig) (*LoadExchange, error) {
	if cfg.Interval <= 0 || cfg.PodLoad == nil || cfg.SetFleet == nil || cfg.IsLeader == nil || cfg.Broadcast == nil {
		return nil, errors.New("cluster: NewLoadExchange needs Interval, PodLoad, SetFleet, IsLeader and Broadcast")
	}
	if cfg.PodHealth != nil && cfg.SetHealth == nil {
		return nil, errors.New("cluster: NewLoadExchange needs SetHealth with PodHealth")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = min(2*time.Second, cfg.Interval)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &LoadExchange{cfg: cfg, log: lg.With("component", "cluster.load")}, nil
}

// Run polls every Interval while this pod is the leader, until ctx ends.
func (x *LoadExchange) Run(ctx context.Context) {
	t := time.NewTicker(x.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if x.cfg.IsLeader() {
			x.Poll(ctx)
		} else {
			x.expireHealth()
		}
	}
}

// expireHealth drops a follower's fleet verdict once no leader has sent
// one for healthExpiry intervals.
func (x *LoadExchange) expireHealth() {
	if x.cfg.PodHealth == nil {
		return
	}
	x.mu.Lock()
	stale := !x.heard.IsZero() && time.Since(x.heard) > healthExpiry*x.cfg.Interval
	if stale {
		x.verdict, x.heard = health.Verdict{}, time.Time{}
	}
	x.mu.Unlock()
	if stale {
		x.log.Warn("no fleet health verdict from a leader for a while; falling back to this pod's own view",
			"after", healthExpiry*x.cfg.Interval)
		x.cfg.SetHealth(health.Verdict{})
	}
}

// Poll is one round on the leader: broadcast a CapacityPoll carrying the
// previous sums, sum the reports, record the new sums (SetFleet) and
// return them.
func (x *LoadExchange) Poll(ctx context.Context) capacity.Fleet {
	x.mu.Lock()
	prev, verdict := x.last, x.verdict
	x.mu.Unlock()
	poll := &jupiterv1.CapacityPoll{Pods: int32(prev.Pods), AgeMs: -1}
	if x.cfg.PodHealth != nil {
		poll.Health = healthMessage(verdict) // nil before the first verdict
	}
	if !prev.At.IsZero() {
		poll.AgeMs = time.Since(prev.At).Milliseconds()
	}
	for addr, ops := range prev.Ops {
		poll.Fleet = append(poll.Fleet, &jupiterv1.NodeLoad{Addr: addr, OpsPerSec: ops})
	}
	msg, err := proto.Marshal(&jupiterv1.BroadcastMessage{Msg: &jupiterv1.BroadcastMessage_CapacityPoll{CapacityPoll: poll}})
	if err != nil {
		x.log.Warn("cannot encode the capacity poll", "err", err)
		return prev
	}
	bctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	results := x.cfg.Broadcast(bctx, msg)
	cancel()
	next := capacity.Fleet{Ops: map[string]float64{}, At: time.Now()}
	seen := map[string]bool{}
	var reports []health.Report
	for _, r := range results {
		if r.Err != nil {
			continue
		}
		var rep jupiterv1.BroadcastReply
		if proto.Unmarshal(r.Reply, &rep) != nil || rep.GetCapacityReport() == nil {
			continue // a pod of an older version answers with a RingAck
		}
		cr := rep.GetCapacityReport()
		if seen[cr.GetPod()] {
			continue
		}
		seen[cr.GetPod()] = true
		if hs := cr.GetHealth(); len(hs) > 0 {
			r := health.Report{Pod: cr.GetPod(), Nodes: make(map[string]string, len(hs))}
			for _, h := range hs {
				r.Nodes[h.GetAddr()] = reachError(h)
			}
			reports = append(reports, r)
		}
		next.Pods++
		for _, n := range cr.GetNodes() {
			if n.GetOpsPerSec() >= 0 {
				next.Ops[n.GetAddr()] += n.GetOpsPerSec()
			}
		}
	}
	x.mu.Lock()
	x.last = next
	x.mu.Unlock()
	x.cfg.SetFleet(next)
	if x.cfg.PodHealth != nil {
		x.decide(ctx, verdict, reports)
	}
	return next
}

// decide makes the round's health verdict, applies it on the leader and,
// when a node changed, broadcasts it at once rather than with the next
// poll.
func (x *LoadExchange) decide(ctx context.Context, prev health.Verdict, reports []health.Report) {
	fleet := 0
	if x.cfg.Members != nil {
		fleet = x.cfg.Members()
	}
	next := health.Decide(prev, reports, fleet, time.Now())
	x.mu.Lock()
	x.verdict = next
	x.mu.Unlock()
	x.cfg.SetHealth(next)
	if next.Equal(prev) {
		return
	}
	x.log.Warn("fleet node health changed", "down", next.DownNodes(), "was_down", prev.DownNodes(), "pods", next.Pods)
	msg, err := proto.Marshal(&jupiterv1.BroadcastMessage{Msg: &jupiterv1.BroadcastMessage_FleetHealth{FleetHealth: healthMessage(next)}})
	if err != nil {
		return
	}
	bctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	x.cfg.Broadcast(bctx, msg)
	cancel()
}

// Handle answers msg if it is a CapacityPoll: it records the sums the poll
// carries and replies with this pod's rates. ok is false for any other
// message (the Syncer's).
func (x *LoadExchange) Handle(msg []byte) (reply []byte, ok bool) {
	var m jupiterv1.BroadcastMessage
	if proto.Unmarshal(msg, &m) != nil {
		return nil, false
	}
	if fh := m.GetFleetHealth(); fh != nil {
		x.applyHealth(fh)
		b, _ := proto.Marshal(&jupiterv1.BroadcastReply{Msg: &jupiterv1.BroadcastReply_CapacityReport{
			CapacityReport: &jupiterv1.CapacityReport{Pod: x.cfg.Self}}})
		return b, true
	}
	if m.GetCapacityPoll() == nil {
		return nil, false
	}
	poll := m.GetCapacityPoll()
	if fh := poll.GetHealth(); fh != nil {
		x.applyHealth(fh)
	}
	if poll.GetPods() > 0 && poll.GetAgeMs() >= 0 && !x.cfg.IsLeader() {
		f := capacity.Fleet{Pods: int(poll.GetPods()), Ops: make(map[string]float64, len(poll.GetFleet())),
			At: time.Now().Add(-time.Duration(poll.GetAgeMs()) * time.Millisecond)}
		for _, n := range poll.GetFleet() {
			f.Ops[n.GetAddr()] = n.GetOpsPerSec()
		}
		x.cfg.SetFleet(f)
	}
	rep := &jupiterv1.CapacityReport{Pod: x.cfg.Self}
	for addr, ops := range x.cfg.PodLoad() {
		rep.Nodes = append(rep.Nodes, &jupiterv1.NodeLoad{Addr: addr, OpsPerSec: ops})
	}
	if x.cfg.PodHealth != nil {
		for addr, why := range x.cfg.PodHealth() {
			rep.Health = append(rep.Health, &jupiterv1.NodeReach{Addr: addr, Down: why != "", Error: why})
		}
	}
	b, _ := proto.Marshal(&jupiterv1.BroadcastReply{Msg: &jupiterv1.BroadcastReply_CapacityReport{CapacityReport: rep}})
	return b, true
}

// applyHealth takes the verdict a leader sent, on a follower (the leader
// applies its own decision in decide).
func (x *LoadExchange) applyHealth(fh *jupiterv1.FleetHealth) {
	if x.cfg.PodHealth == nil || x.cfg.IsLeader() {
		return
	}
	v := verdictOf(fh, time.Now())
	x.mu.Lock()
	x.verdict, x.heard = v, time.Now()
	x.mu.Unlock()
	x.cfg.SetHealth(v)
}

// reachError is a NodeReach as a health.Report entry: "" when reached.
func reachError(h *jupiterv1.NodeReach) string {
	if !h.GetDown() {
		return ""
	}
	if h.GetError() == "" {
		return "unreachable"
	}
	return h.GetError()
}

// healthMessage encodes v (nil when there is no verdict yet). Times travel
// as ages, so pods need no clock agreement.
func healthMessage(v health.Verdict) *jupiterv1.FleetHealth {
	if v.At.IsZero() {
		return nil
	}
	now := time.Now()
	fh := &jupiterv1.FleetHealth{Pods: int32(v.Pods), AgeMs: now.Sub(v.At).Milliseconds()}
	for _, n := range v.Nodes {
		since := int64(-1)
		if !n.Since.IsZero() {
			since = now.Sub(n.Since).Milliseconds()
		}
		fh.Nodes = append(fh.Nodes, &jupiterv1.NodeVerdict{Addr: n.Addr, Down: n.Down, DownBy: n.DownBy,
			Reporters: int32(n.Reporters), Quorum: int32(n.Quorum), SinceMs: since, Error: n.Error})
	}
	return fh
}

// verdictOf decodes a FleetHealth received at now.
func verdictOf(fh *jupiterv1.FleetHealth, now time.Time) health.Verdict {
	v := health.Verdict{Nodes: make(map[string]health.Node, len(fh.GetNodes())), Pods: int(fh.GetPods()),
		At: now.Add(-time.Duration(fh.GetAgeMs()) * time.Millisecond)}
	for _, n := range fh.GetNodes() {
		hn := health.Node{Addr: n.GetAddr(), Down: n.GetDown(), DownBy: n.GetDownBy(),
			Reporters: int(n.GetReporters()), Quorum: int(n.GetQuorum()), Error: n.GetError()}
		if n.GetSinceMs() >= 0 {
			hn.Since = now.Add(-time.Duration(n.GetSinceMs()) * time.Millisecond)
		}
		v.Nodes[n.GetAddr()] = hn
	}
	return v
}

// Health returns the fleet verdict this pod applies (At zero: none).
func (x *LoadExchange) Health() health.Verdict {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.verdict
}
