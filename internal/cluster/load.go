package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/capacity"
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
	Logger   *slog.Logger
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
}

// NewLoadExchange returns a LoadExchange; Run polls while this pod leads,
// Handle answers polls.
func NewLoadExchange(cfg LoadConfig) (*LoadExchange, error) {
	if cfg.Interval <= 0 || cfg.PodLoad == nil || cfg.SetFleet == nil || cfg.IsLeader == nil || cfg.Broadcast == nil {
		return nil, errors.New("cluster: NewLoadExchange needs Interval, PodLoad, SetFleet, IsLeader and Broadcast")
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
		}
	}
}

// Poll is one round on the leader: broadcast a CapacityPoll carrying the
// previous sums, sum the reports, record the new sums (SetFleet) and
// return them.
func (x *LoadExchange) Poll(ctx context.Context) capacity.Fleet {
	x.mu.Lock()
	prev := x.last
	x.mu.Unlock()
	poll := &jupiterv1.CapacityPoll{Pods: int32(prev.Pods), AgeMs: -1}
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
	return next
}

// Handle answers msg if it is a CapacityPoll: it records the sums the poll
// carries and replies with this pod's rates. ok is false for any other
// message (the Syncer's).
func (x *LoadExchange) Handle(msg []byte) (reply []byte, ok bool) {
	var m jupiterv1.BroadcastMessage
	if proto.Unmarshal(msg, &m) != nil || m.GetCapacityPoll() == nil {
		return nil, false
	}
	poll := m.GetCapacityPoll()
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
	b, _ := proto.Marshal(&jupiterv1.BroadcastReply{Msg: &jupiterv1.BroadcastReply_CapacityReport{CapacityReport: rep}})
	return b, true
}
