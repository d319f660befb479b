package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
)

// AdminAPI is what AdminController needs from a Cluster (an interface so
// that the adapter is testable without hedge).
type AdminAPI interface {
	Status() Status
	State() *State
	StoreError() error
	Submit(ctx context.Context, req *jupiterv1.AdminRequest) (*jupiterv1.AdminReply, error)
}

// AdminController is admin.Controller in cluster mode: `JUPITER …` and the
// HTTP admin API on any pod answer status from this pod's view (no Spanner
// read) and forward changes to the leader with Submit.
//
// Errors are admin.Refusal values: the leader's refusals keep their
// message (bad address, duplicate, unknown node, last node, unreachable
// node) and map to ErrInvalid/ErrNotFound/ErrExists; an unreachable leader
// or Spanner is ErrUnavailable. While this pod's last ring read from
// Spanner failed, changes are refused at once with a message saying so —
// the leader could not write them either — and the pod keeps serving its
// last ring.
type AdminController struct {
	C AdminAPI
	// NodeUp reports per node address whether the data path reaches it
	// (proxy.Router.NodeUp). nil: every node is reported down.
	NodeUp func() map[string]bool
	// Capacity, if set, adds each node's capacity figures to Status.
	Capacity admin.CapacitySource
	// Health, if set, adds each node's health (the fleet's verdict and
	// this pod's view) to Status.
	Health admin.HealthSource
}

// Status implements admin.Controller. Besides the contract fields (mode,
// self, leader, ring_version, stage, nodes, members) it reports is_leader,
// ready, the change that produced the ring and who wrote it, and the last
// sync with Spanner.
func (a *AdminController) Status(context.Context) admin.Status {
	cs := a.C.Status()
	var r *ring.Ring
	if st := a.C.State(); st != nil {
		r = st.Ring
	}
	up := map[string]bool{}
	if a.NodeUp != nil {
		up = a.NodeUp()
	}
	s := admin.StatusOf("cluster", cs.Self, cs.Leader, r, up, cs.Members)
	s.Stage = cs.Stage
	last, age := "", ""
	if !cs.LastSync.IsZero() {
		last = cs.LastSync.UTC().Format(time.RFC3339Nano)
		age = strconv.FormatInt(time.Since(cs.LastSync).Milliseconds(), 10)
	}
	s.Extra = [][2]string{
		{"is_leader", boolDigit(cs.IsLeader)},
		{"ready", boolDigit(cs.Ready)},
		{"ring_change", oneLine(cs.Change)},
		{"ring_leader", cs.RingLeader},
		{"last_sync", last},
		{"last_sync_age_ms", age},
		{"last_sync_error", oneLine(cs.LastSyncError)},
		{"spanner_error", oneLine(cs.SpannerError)},
	}
	if st := a.C.State(); st != nil && st.Target != nil {
		s.Extra = append(s.Extra, [2]string{"target_nodes", RingText(st.Target.Nodes())})
	}
	admin.AddCapacity(&s, a.Capacity)
	admin.AddHealth(&s, a.Health)
	return s
}

// Apply implements admin.Controller: it forwards c to the leader and
// returns the version that holds it.
func (a *AdminController) Apply(ctx context.Context, c admin.Change) (uint64, error) {
	var cur uint64
	if st := a.C.State(); st != nil {
		cur = st.Version
	}
	req, err := ChangeRequest(c)
	if err != nil {
		return cur, admin.Refusal(admin.ErrInvalid, err.Error())
	}
	if serr := a.C.StoreError(); serr != nil {
		return cur, admin.Refusal(admin.ErrUnavailable, fmt.Sprintf(
			"cluster: Spanner is unreachable, ring changes are refused until it answers again (this pod keeps serving ring v%d): %s",
			cur, oneLine(serr.Error())))
	}
	start := time.Now()
	rep, err := a.C.Submit(ctx, req)
	if err != nil {
		leader := a.C.Status().Leader
		if leader == "" {
			leader = "unknown"
		}
		msg := fmt.Sprintf("cluster: no answer from the leader (%s) after %v: %s; the change is not confirmed, retrying it is safe",
			leader, time.Since(start).Round(time.Millisecond), oneLine(err.Error()))
		if serr := a.C.StoreError(); serr != nil {
			msg += "; Spanner is unreachable: " + oneLine(serr.Error())
		}
		return cur, admin.Refusal(admin.ErrUnavailable, msg)
	}
	if err := ReplyError(rep); err != nil {
		var ae *AdminError
		errors.As(err, &ae)
		msg := oneLine(ae.Msg)
		if ae.Temporary() {
			msg += " (retry)"
		}
		return rep.GetVersion(), admin.Refusal(refusalKind(ae.Code), msg)
	}
	return rep.GetVersion(), nil
}

// ChangeRequest converts an admin.Change to the leader's request.
func ChangeRequest(c admin.Change) (*jupiterv1.AdminRequest, error) {
	req := &jupiterv1.AdminRequest{RequestId: c.RequestID}
	switch c.Op {
	case "add":
		req.Op = &jupiterv1.AdminRequest_Add{Add: &jupiterv1.AddNode{Addr: c.Addr, Weight: int32(c.Weight)}}
	case "remove":
		req.Op = &jupiterv1.AdminRequest_Remove{Remove: &jupiterv1.RemoveNode{Addr: c.Addr}}
	case "weight":
		req.Op = &jupiterv1.AdminRequest_Weight{Weight: &jupiterv1.SetWeight{Addr: c.Addr, Weight: int32(c.Weight)}}
	default:
		return nil, fmt.Errorf("unknown change %q", c.Op)
	}
	return req, nil
}

func refusalKind(code jupiterv1.ErrorCode) error {
	switch code {
	case jupiterv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		return admin.ErrNotFound
	case jupiterv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
		return admin.ErrExists
	case jupiterv1.ErrorCode_ERROR_CODE_NOT_LEADER, jupiterv1.ErrorCode_ERROR_CODE_CONFLICT,
		jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return admin.ErrUnavailable
	}
	return admin.ErrInvalid
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// oneLine keeps a value on its STATUS line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// RebalanceAPI is what AdminController needs for rebalance status, actions
// and dry-run plans; a Cluster implements it. Optional: without it the
// controller reports only the stage.
type RebalanceAPI interface {
	// RebalanceProgress is the migrators' progress for epoch (live on the
	// leader, from the checkpoints elsewhere).
	RebalanceProgress(ctx context.Context, epoch uint64) []rebalance.Progress
	// RebalanceError is the leader's last rebalance step failure.
	RebalanceError() string
	// DBSize counts the keys on a backend node.
	DBSize(ctx context.Context, addr string) (int64, error)
}

var _ admin.Rebalancer = (*AdminController)(nil)

// RebalanceStatus implements admin.Rebalancer from this pod's view of the
// stored record, plus the migrators' progress.
func (a *AdminController) RebalanceStatus(ctx context.Context) (admin.RebalanceStatus, error) {
	rs := admin.RebalanceStatus{Stage: StageStable, ETASeconds: -1}
	st := a.C.State()
	if st == nil {
		return rs, nil
	}
	rs.Stage = stageOr(st.Stage)
	if !st.Rebalancing() && rs.Stage != StageCommit {
		return rs, nil
	}
	rs.Epoch, rs.Change, rs.Paused = st.Epoch, st.Change, st.Paused
	for _, n := range st.Ring.Nodes() {
		rs.To = append(rs.To, n.Addr)
	}
	if st.Target != nil {
		rs.From, rs.To = rs.To, nil
		for _, n := range st.Target.Nodes() {
			rs.To = append(rs.To, n.Addr)
		}
	} else {
		for _, n := range st.From {
			rs.From = append(rs.From, n.Addr)
		}
	}
	rb, ok := a.C.(RebalanceAPI)
	if !ok {
		return rs, nil
	}
	rs.LastError = oneLine(rb.RebalanceError())
	var remaining float64
	for _, p := range rb.RebalanceProgress(ctx, st.Epoch) {
		// "Moved" counts every moving key dealt with: moved by the
		// migrator, found already on its new owner (a client's write or
		// read-modify-write moved it first) or expired on the way; once a
		// source is done its total is exact.
		rs.MovedKeys += p.Handled()
		rs.MovedBytes += p.BytesMoved
		if p.Phase == rebalance.PhaseDone {
			rs.TotalKeys += p.Handled()
		} else {
			rs.TotalKeys += max(p.TotalEstimate, p.Handled())
		}
		rs.KeysPerSec += p.KeysPerSec
		rs.Errors += p.Errors
		if p.LastError != "" && rs.LastError == "" {
			rs.LastError = oneLine(p.LastError)
		}
		if p.Phase != rebalance.PhaseDone {
			remaining += float64(max(p.TotalEstimate-p.Handled(), 0))
		}
		rs.Sources = append(rs.Sources, admin.SourceProgress{
			Node: p.Source, Phase: string(p.Phase), Scanned: p.KeysScanned,
			Moved: p.Handled(), Total: max(p.TotalEstimate, p.Handled()), Errors: p.Errors,
		})
	}
	switch {
	case rs.Stage == StageCommit:
		rs.ETASeconds = 0
	case rs.KeysPerSec > 0:
		rs.ETASeconds = remaining / rs.KeysPerSec
	}
	return rs, nil
}

// RebalanceAction implements admin.Rebalancer: ABORT, PAUSE and RESUME go
// to the leader.
func (a *AdminController) RebalanceAction(ctx context.Context, action string) error {
	action = strings.ToLower(action)
	switch action {
	case "abort", "pause", "resume":
	default:
		return admin.Refusal(admin.ErrInvalid, fmt.Sprintf("unknown rebalance action %q (want ABORT, PAUSE or RESUME)", action))
	}
	if serr := a.C.StoreError(); serr != nil {
		return admin.Refusal(admin.ErrUnavailable, "cluster: Spanner is unreachable: "+oneLine(serr.Error()))
	}
	rep, err := a.C.Submit(ctx, &jupiterv1.AdminRequest{
		Op: &jupiterv1.AdminRequest_Rebalance{Rebalance: &jupiterv1.Rebalance{Action: action}},
	})
	if err != nil {
		return admin.Refusal(admin.ErrUnavailable, "cluster: no answer from the leader: "+oneLine(err.Error())+"; retrying is safe")
	}
	if err := ReplyError(rep); err != nil {
		var ae *AdminError
		errors.As(err, &ae)
		return admin.Refusal(refusalKind(ae.Code), oneLine(ae.Msg))
	}
	return nil
}

// Plan implements admin.Rebalancer: the change validated as the leader
// would, against this pod's ring, and the slots and (estimated) keys that
// would move. Nothing is changed.
func (a *AdminController) Plan(ctx context.Context, c admin.Change) (admin.PlanResult, error) {
	st := a.C.State()
	if st == nil {
		return admin.PlanResult{}, admin.Refusal(admin.ErrUnavailable, "cluster: this pod has not loaded the ring yet")
	}
	req, err := ChangeRequest(c)
	if err != nil {
		return admin.PlanResult{}, admin.Refusal(admin.ErrInvalid, err.Error())
	}
	base := *st
	base.Stage, base.Target = StageStable, nil // a dry run may look past a running rebalance
	if st.Target != nil {
		base.Ring = st.Target
	}
	p, aerr := Plan(&base, req)
	if aerr != nil {
		return admin.PlanResult{}, admin.Refusal(refusalKind(aerr.Code), oneLine(aerr.Msg))
	}
	next := p.Next
	if p.Target != nil {
		if next, err = ring.New(p.Next.Version(), p.Target); err != nil {
			return admin.PlanResult{}, admin.Refusal(admin.ErrInvalid, err.Error())
		}
	}
	if next == nil {
		next = base.Ring
	}
	sizes := map[string]int64{}
	if rb, ok := a.C.(RebalanceAPI); ok {
		for _, r := range []*ring.Ring{base.Ring, next} {
			for _, n := range r.Nodes() {
				if _, done := sizes[n.Addr]; done {
					continue
				}
				dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if k, err := rb.DBSize(dctx, n.Addr); err == nil {
					sizes[n.Addr] = k
				}
				cancel()
			}
		}
	}
	return admin.ComputePlan(p.Change, base.Ring, next, sizes), nil
}
