package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// Fencer proves leadership right before a leader-only write. Member
// implements it with spindle's HasLock, which reads the lock table; the
// returned token is then checked again inside the write transaction
// (Store.CompareAndSwap), so a leader deposed in between cannot write.
type Fencer interface {
	// Fence returns this process's spindle id (its hedge address) and lock
	// token, or ErrNotLeader.
	Fence(ctx context.Context) (leader string, token uint64, err error)
}

// Broadcaster sends a message to every known pod (including this one) and
// returns their replies. It is best-effort and must honour ctx's deadline.
type Broadcaster interface {
	Broadcast(ctx context.Context, msg []byte) []BroadcastResult
}

// BroadcastResult is one pod's answer to a broadcast.
type BroadcastResult struct {
	ID    string // the pod's hedge address
	Reply []byte
	Err   error
}

// Pinger checks that a backend node answers before it is added to the ring.
type Pinger interface {
	Ping(ctx context.Context, addr string) error
}

// AdminError is a refused admin request: Code says whether the operator
// must change the request (invalid, not found, already exists, failed
// precondition) or may retry (not leader, conflict, unavailable).
type AdminError struct {
	Code jupiterv1.ErrorCode
	Msg  string
}

func (e *AdminError) Error() string { return e.Msg }

// Temporary reports whether retrying the same request may succeed.
func (e *AdminError) Temporary() bool {
	switch e.Code {
	case jupiterv1.ErrorCode_ERROR_CODE_NOT_LEADER, jupiterv1.ErrorCode_ERROR_CODE_CONFLICT,
		jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return true
	}
	return false
}

func adminErr(code jupiterv1.ErrorCode, format string, args ...any) *AdminError {
	return &AdminError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ReplyError returns nil for a successful reply and an *AdminError otherwise.
func ReplyError(rep *jupiterv1.AdminReply) error {
	if rep == nil {
		return adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cluster: empty reply from leader")
	}
	if rep.GetOk() {
		return nil
	}
	return &AdminError{Code: rep.GetCode(), Msg: rep.GetError()}
}

// Weight bounds accepted by admin requests.
const (
	MinWeight = 1
	MaxWeight = ring.MaxWeight
)

// ControllerConfig wires a Controller.
type ControllerConfig struct {
	Store  Store  // required
	Fencer Fencer // required
	// Broadcaster announces new versions; nil disables announcements (pods
	// still converge by polling the Store).
	Broadcaster Broadcaster
	// Pinger checks nodes before ADD; nil skips the reachability check.
	Pinger Pinger
	Logger *slog.Logger
	// Self is this process's hedge address, reported as the leader in replies.
	Self string
	// BroadcastTimeout bounds the announcement after a write, so the admin
	// reply is not held hostage by a slow pod. Default 2s.
	BroadcastTimeout time.Duration
	// PingTimeout bounds the reachability check. Default 2s.
	PingTimeout time.Duration
	// ConflictRetries is how often a version conflict is retried (re-read,
	// re-validate, re-write) before it is reported. Default 3.
	ConflictRetries int
	// Immediate switches the ring at once on ADD/REMOVE/WEIGHT without
	// moving keys (keys whose owner changes are then cache misses, as with
	// twemproxy). The default starts a staged rebalance (rebalancer.go).
	Immediate bool
	// Seeded, when set, makes a ring change that finds no ring wait until
	// one is stored: it asks the leader's Syncer to sync now (which seeds
	// --backends, or re-seeds a store that lost the ring) and waits for
	// it, so an ADD sent to a fresh deployment lands on top of the seeds
	// instead of replacing them. Nil: a change may create the first ring.
	Seeded func()
	// SeedWait bounds that wait. Default 10s.
	SeedWait time.Duration
}

// Controller is the leader side of the control plane: it applies admin
// requests to the ring. Every change is validated against the current
// stored ring, fenced with the leader's spindle token and written with a
// compare-and-set, then announced. Requests are serialized in-process; they
// are idempotent by request id because hedge's SendToLeader retries.
type Controller struct {
	cfg ControllerConfig
	log *slog.Logger
	mu  sync.Mutex // one change at a time
	// reb runs the rebalances this controller starts (set by
	// NewRebalancer); nil refuses REBALANCE actions.
	reb *Rebalancer
}

// NewController returns a Controller; Store and Fencer are required.
func NewController(cfg ControllerConfig) (*Controller, error) {
	if cfg.Store == nil || cfg.Fencer == nil {
		return nil, errors.New("cluster: NewController needs a Store and a Fencer")
	}
	if cfg.BroadcastTimeout <= 0 {
		cfg.BroadcastTimeout = 2 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 2 * time.Second
	}
	if cfg.ConflictRetries <= 0 {
		cfg.ConflictRetries = 3
	}
	if cfg.SeedWait <= 0 {
		cfg.SeedWait = 10 * time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Controller{cfg: cfg, log: lg.With("component", "cluster.controller")}, nil
}

// HandleLeaderMessage is the hedge leader handler body: it decodes a
// LeaderMessage, dispatches on its type and returns an encoded LeaderReply.
// Failures are reported inside the reply, never as a Go error, because
// hedge turns a handler error into a Send error that SendToLeader retries
// ten times — pointless for a bad request.
func (c *Controller) HandleLeaderMessage(ctx context.Context, msg []byte) []byte {
	var m jupiterv1.LeaderMessage
	var rep *jupiterv1.AdminReply
	if err := proto.Unmarshal(msg, &m); err != nil {
		rep = c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "cluster: undecodable leader message: %v", err), nil)
	} else {
		switch x := m.GetMsg().(type) {
		case *jupiterv1.LeaderMessage_Admin:
			rep = c.Apply(ctx, x.Admin)
		default:
			rep = c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "cluster: unknown leader message %T (sender newer than leader?)", x), nil)
		}
	}
	b, err := proto.Marshal(&jupiterv1.LeaderReply{Msg: &jupiterv1.LeaderReply_Admin{Admin: rep}})
	if err != nil { // cannot happen for these messages
		c.log.Error("encode leader reply", "err", err)
	}
	return b
}

// Apply executes one admin request as the leader and returns the reply.
func (c *Controller) Apply(ctx context.Context, req *jupiterv1.AdminRequest) *jupiterv1.AdminReply {
	if req == nil || req.GetOp() == nil {
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "cluster: admin request without an operation"), nil)
	}
	if exp := req.GetExpiresUnixMs(); exp != 0 && time.Now().UnixMilli() > exp {
		// hedge's SendToLeader retries after the sender gave up; a change
		// nobody waits for any more must not happen late.
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cluster: request %s expired before the leader could apply it", req.GetRequestId()), nil)
	}
	if rb := req.GetRebalance(); rb != nil {
		return c.rebalanceAction(ctx, rb.GetAction())
	}
	if req.GetStatus() == nil {
		if rep := c.awaitSeed(ctx); rep != nil {
			return rep
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.GetStatus() != nil {
		cur, err := c.cfg.Store.Load(ctx)
		switch {
		case errors.Is(err, ErrNoRing):
			return c.okReply(nil, 0)
		case err != nil:
			return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cluster: load ring: %v", err), nil)
		}
		return c.okReply(cur, cur.Version)
	}
	for attempt := 0; ; attempt++ {
		rep, conflict := c.applyOnce(ctx, req)
		if !conflict || attempt >= c.cfg.ConflictRetries || ctx.Err() != nil {
			return rep
		}
		c.log.Warn("ring version conflict, retrying", "request_id", req.GetRequestId(), "attempt", attempt+1)
	}
}

// awaitSeed waits, outside c.mu (seeding takes it), until the store holds
// a ring, when it holds none and ControllerConfig.Seeded is set; it
// returns a reply only when the wait failed.
func (c *Controller) awaitSeed(ctx context.Context) *jupiterv1.AdminReply {
	if c.cfg.Seeded == nil {
		return nil
	}
	deadline := time.Now().Add(c.cfg.SeedWait)
	for {
		_, err := c.cfg.Store.Load(ctx)
		if !errors.Is(err, ErrNoRing) {
			return nil // a ring, or an error applyOnce reports
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
				"cluster: no ring stored yet and the leader did not seed one within %v; retry", c.cfg.SeedWait), nil)
		}
		c.cfg.Seeded()
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// rebalanceAction runs JUPITER REBALANCE ABORT|PAUSE|RESUME on the leader.
func (c *Controller) rebalanceAction(ctx context.Context, action string) *jupiterv1.AdminReply {
	r := c.reb
	if r == nil {
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "cluster: this leader does not run rebalances"), nil)
	}
	var err error
	// The stage machine writes new versions concurrently (prepare → freeze
	// → migrating …); an action that lost the CAS to it re-reads the
	// record and decides again rather than failing the operator's command.
	for attempt := 0; ; attempt++ {
		switch strings.ToLower(action) {
		case "abort":
			err = r.Abort(ctx)
		case "pause":
			err = r.SetPaused(ctx, true)
		case "resume":
			err = r.SetPaused(ctx, false)
		default:
			err = adminErr(jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "unknown rebalance action %q (want ABORT, PAUSE or RESUME)", action)
		}
		if !errors.Is(err, ErrVersionConflict) || attempt >= c.cfg.ConflictRetries || ctx.Err() != nil {
			break
		}
		c.log.Warn("ring version conflict, retrying rebalance action", "action", action, "attempt", attempt+1)
	}
	cur, lerr := c.cfg.Store.Load(ctx)
	if lerr != nil {
		cur = nil
	}
	var ae *AdminError
	switch {
	case err == nil:
		return c.okReply(cur, versionOf(cur))
	case errors.As(err, &ae):
		return c.failReply(ae, cur)
	case errors.Is(err, ErrNotLeader):
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_NOT_LEADER, "%v", err), cur)
	case errors.Is(err, ErrVersionConflict):
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_CONFLICT, "%v", err), cur)
	default:
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "%v", err), cur)
	}
}

// applyOnce runs load → dedupe → plan → ping → fence → CAS → announce. It
// reports conflict=true when the CAS lost to another writer.
func (c *Controller) applyOnce(ctx context.Context, req *jupiterv1.AdminRequest) (rep *jupiterv1.AdminReply, conflict bool) {
	rid := req.GetRequestId()
	cur, err := c.cfg.Store.Load(ctx)
	if err != nil && !errors.Is(err, ErrNoRing) {
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cluster: load ring: %v", err), nil), false
	}
	if rid != "" {
		if cur != nil && cur.RequestID == rid {
			return c.okReply(cur, cur.Version), false
		}
		h, err := c.cfg.Store.FindRequest(ctx, rid)
		if err != nil {
			return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cluster: look up request %s: %v", rid, err), cur), false
		}
		if h != nil {
			return c.okReply(cur, h.Version), false
		}
	}

	p, aerr := Plan(cur, req)
	if aerr == nil && c.cfg.Immediate && p.Target != nil {
		next, err := ring.New(p.Next.Version(), p.Target)
		if err != nil {
			return c.failReply(ringErr(err), cur), false
		}
		p.Next, p.Stage, p.Target, p.Epoch = next, StageStable, nil, 0
	}
	if aerr != nil {
		return c.failReply(aerr, cur), false
	}
	if p.Next == nil { // nothing to change (e.g. same weight)
		return c.okReply(cur, versionOf(cur)), false
	}
	if p.Ping != "" && c.cfg.Pinger != nil {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.PingTimeout)
		err := c.cfg.Pinger.Ping(pctx, p.Ping)
		cancel()
		if err != nil {
			return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "node %s is unreachable: %v", p.Ping, err), cur), false
		}
	}

	cm := Commit{Stage: p.Stage, Change: p.Change, RequestID: rid, Target: p.Target, Epoch: p.Epoch}
	st, err := c.commit(ctx, cur, p.Next, cm)
	switch {
	case errors.Is(err, ErrVersionConflict):
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_CONFLICT, "%v", err), cur), true
	case errors.Is(err, ErrNotLeader):
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_NOT_LEADER, "%v", err), cur), false
	case err != nil:
		// The outcome may be unknown (commit sent, reply lost). A retry
		// with the same request id finds the version if it was committed.
		return c.failReply(adminErr(jupiterv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "%v", err), cur), false
	}
	c.log.Info("ring changed", "version", st.Version, "stage", st.Stage, "change", st.Change, "request_id", rid, "ring", RingText(st.Ring.Nodes()))
	c.announce(ctx, st)
	if st.Rebalancing() && c.reb != nil {
		c.reb.Kick()
	}
	return c.okReply(st, st.Version), false
}

// commit fences and compare-and-swaps cur → next with cm (its Leader and
// Token are filled in here).
func (c *Controller) commit(ctx context.Context, cur *State, next *ring.Ring, cm Commit) (*State, error) {
	leader, token, err := c.cfg.Fencer.Fence(ctx)
	if err != nil {
		return nil, err
	}
	var expect uint64
	if cur != nil {
		expect = cur.Version
	}
	cm.Stage = stageOr(cm.Stage)
	cm.Leader, cm.Token = leader, token
	if err := c.cfg.Store.CompareAndSwap(ctx, expect, next, cm); err != nil {
		return nil, err
	}
	return stateOf(next, cm, time.Now())
}

// Seed writes nodes as ring version 1 if the Store has no ring yet. It is
// what the leader does with --backends in cluster mode. Seeds are not
// pinged: they come from the deployment's configuration, and a backend that
// is down at startup must not keep the cluster without a ring. It returns
// nil when a ring already exists (someone seeded first).
func (c *Controller) Seed(ctx context.Context, nodes []ring.Node) error {
	return c.seed(ctx, 0, 1, nodes, "SEED ")
}

// Reseed replaces a store that lost the ring this leader serves (the
// database was recreated, or restored from an older backup): when the Store
// holds version expect (0: no ring at all), it writes nodes — the ring this
// pod routes by, the live topology; the --backends seeds may be long out of
// date — as `version`, above every version pods have applied, so none has
// to go back.
func (c *Controller) Reseed(ctx context.Context, expect, version uint64, nodes []ring.Node) error {
	return c.seed(ctx, expect, version, nodes, "RESEED after the store lost the ring: ")
}

func (c *Controller) seed(ctx context.Context, expect, version uint64, nodes []ring.Node, what string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, err := c.cfg.Store.Load(ctx)
	switch {
	case err == nil && cur.Version != expect:
		return nil // someone else wrote first
	case err != nil && !errors.Is(err, ErrNoRing):
		return err
	case errors.Is(err, ErrNoRing) && expect != 0:
		return nil
	}
	r, err := ring.New(version, nodes)
	if err != nil {
		return fmt.Errorf("cluster: seed ring: %w", err)
	}
	st, err := c.commit(ctx, cur, r, Commit{Change: what + RingText(r.Nodes())})
	if errors.Is(err, ErrVersionConflict) {
		return nil
	}
	if err != nil {
		return err
	}
	c.log.Info("ring seeded", "version", st.Version, "ring", RingText(r.Nodes()), "change", st.Change)
	// Announce in the background: Seed runs on the leader's Syncer
	// goroutine, whose own broadcast handler would otherwise wait for it.
	go c.announce(context.WithoutCancel(ctx), st)
	return nil
}

// announce broadcasts "version N exists" (best-effort, bounded).
func (c *Controller) announce(ctx context.Context, st *State) {
	if c.cfg.Broadcaster == nil {
		return
	}
	msg, err := proto.Marshal(&jupiterv1.BroadcastMessage{Msg: &jupiterv1.BroadcastMessage_RingUpdated{
		RingUpdated: &jupiterv1.RingUpdated{Version: st.Version, Stage: st.Stage, Leader: st.Leader},
	}})
	if err != nil {
		c.log.Error("encode ring announcement", "err", err)
		return
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.BroadcastTimeout)
	defer cancel()
	res := c.cfg.Broadcaster.Broadcast(bctx, msg)
	acks := map[string]uint64{}
	failed := 0
	for _, r := range res {
		var rep jupiterv1.BroadcastReply
		if r.Err != nil || proto.Unmarshal(r.Reply, &rep) != nil || rep.GetRingAck().GetAppliedVersion() < st.Version {
			failed++
			c.log.Debug("ring announcement not acknowledged", "pod", r.ID, "err", r.Err, "ack", rep.GetRingAck())
			continue
		}
		acks[rep.GetRingAck().GetPod()] = rep.GetRingAck().GetAppliedVersion()
	}
	c.log.Info("ring announced", "version", st.Version, "acked", len(acks), "not_acked", failed)
	if c.reb != nil {
		// The acks shorten a rebalance barrier (rebalancer.go).
		c.reb.noteAcks(acks)
	}
}

// Planned is the outcome of Plan: the next ring (nil when the request
// changes nothing), its description and the address to ping first ("" for
// none).
type Planned struct {
	Next   *ring.Ring
	Change string
	Ping   string
	// Stage, Target and Epoch start a rebalance: Next is then the current
	// ring under the next version and Target the ring after the change.
	// With no ring stored yet there is nothing to move: Next is the new
	// ring and Stage is stable.
	Stage  string
	Target []ring.Node
	Epoch  uint64
}

// staged turns a computed ring change into the prepare record of a
// rebalance from cur to next (see rebalancer.go).
func staged(cur *State, next *ring.Ring, p Planned) (Planned, *AdminError) {
	if cur == nil {
		p.Next, p.Stage = next, StageStable
		return p, nil
	}
	routed, err := ring.New(next.Version(), cur.Ring.Nodes())
	if err != nil {
		return Planned{}, ringErr(err)
	}
	p.Next, p.Stage, p.Target, p.Epoch = routed, StagePrepare, next.Nodes(), next.Version()
	return p, nil
}

// Plan validates req against the current ring (nil: none stored yet) and
// computes the next ring with version cur.Version+1. It is pure: no I/O.
func Plan(cur *State, req *jupiterv1.AdminRequest) (Planned, *AdminError) {
	const (
		invalid   = jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
		precond   = jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION
		notFound  = jupiterv1.ErrorCode_ERROR_CODE_NOT_FOUND
		duplicate = jupiterv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS
	)
	if cur != nil && cur.Stage != "" && cur.Stage != StageStable {
		// Validate against where the running rebalance goes first, so a
		// repeated ADD says "already in the ring" rather than "busy".
		if cur.Target != nil {
			ahead := *cur
			ahead.Ring, ahead.Stage, ahead.Target = cur.Target, StageStable, nil
			if _, aerr := Plan(&ahead, req); aerr != nil {
				return Planned{}, aerr
			}
		}
		return Planned{}, adminErr(precond, "a rebalance is in progress (stage %s); retry when it is stable", cur.Stage)
	}
	var nextVersion uint64 = 1
	if cur != nil {
		nextVersion = cur.Version + 1
	}
	switch op := req.GetOp().(type) {
	case *jupiterv1.AdminRequest_Add:
		addr := strings.TrimSpace(op.Add.GetAddr())
		name := strings.TrimSpace(op.Add.GetName())
		w := int(op.Add.GetWeight())
		if addr == "" {
			return Planned{}, adminErr(invalid, "ADD needs a node address host:port")
		}
		if w == 0 {
			w = 1
		}
		if w < MinWeight || w > MaxWeight {
			return Planned{}, adminErr(invalid, "weight %d out of range %d..%d", w, MinWeight, MaxWeight)
		}
		n := ring.Node{Name: name, Addr: addr, Weight: w}
		if cur != nil {
			if i := findNode(cur.Ring, addr); i >= 0 {
				return Planned{}, adminErr(duplicate, "node %s is already in the ring", addr)
			}
			if name != "" && findNode(cur.Ring, name) >= 0 {
				return Planned{}, adminErr(duplicate, "node name %s is already in the ring", name)
			}
		}
		var next *ring.Ring
		var err error
		if cur == nil {
			next, err = ring.New(nextVersion, []ring.Node{n})
		} else {
			next, err = cur.Ring.Add(nextVersion, n)
		}
		if err != nil {
			return Planned{}, ringErr(err)
		}
		change := fmt.Sprintf("ADD %s w=%d", addr, w)
		if name != "" && name != addr {
			change = fmt.Sprintf("ADD %s@%s w=%d", name, addr, w)
		}
		return staged(cur, next, Planned{Change: change, Ping: addr})

	case *jupiterv1.AdminRequest_Remove:
		id := strings.TrimSpace(op.Remove.GetAddr())
		if id == "" {
			return Planned{}, adminErr(invalid, "REMOVE needs a node address")
		}
		if cur == nil {
			return Planned{}, adminErr(precond, "there is no ring yet")
		}
		i := findNode(cur.Ring, id)
		if i < 0 {
			return Planned{}, adminErr(notFound, "node %s is not in the ring", id)
		}
		if cur.Ring.Len() == 1 {
			return Planned{}, adminErr(precond, "cannot remove %s: it is the last node", id)
		}
		n := cur.Ring.Node(i)
		next, err := cur.Ring.Remove(nextVersion, n.Name)
		if err != nil {
			return Planned{}, ringErr(err)
		}
		return staged(cur, next, Planned{Change: "REMOVE " + n.Addr})

	case *jupiterv1.AdminRequest_Weight:
		id := strings.TrimSpace(op.Weight.GetAddr())
		w := int(op.Weight.GetWeight())
		if id == "" {
			return Planned{}, adminErr(invalid, "WEIGHT needs a node address")
		}
		if w < MinWeight || w > MaxWeight {
			return Planned{}, adminErr(invalid, "weight %d out of range %d..%d", w, MinWeight, MaxWeight)
		}
		if cur == nil {
			return Planned{}, adminErr(precond, "there is no ring yet")
		}
		i := findNode(cur.Ring, id)
		if i < 0 {
			return Planned{}, adminErr(notFound, "node %s is not in the ring", id)
		}
		n := cur.Ring.Node(i)
		if n.Weight == w {
			return Planned{}, nil
		}
		next, err := cur.Ring.SetWeight(nextVersion, n.Name, w)
		if err != nil {
			return Planned{}, ringErr(err)
		}
		return staged(cur, next, Planned{Change: fmt.Sprintf("WEIGHT %s w=%d", n.Addr, w)})

	case *jupiterv1.AdminRequest_Status:
		return Planned{}, nil
	default:
		return Planned{}, adminErr(invalid, "unknown admin operation %T", op)
	}
}

// findNode returns the index of the node whose address or name is id, or -1.
func findNode(r *ring.Ring, id string) int {
	if i := r.Index(id); i >= 0 {
		return i
	}
	for i, n := range r.Nodes() {
		if n.Addr == id {
			return i
		}
	}
	return -1
}

// ringErr maps a ring validation error to an AdminError.
func ringErr(err error) *AdminError {
	code := jupiterv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	switch {
	case errors.Is(err, ring.ErrDuplicate):
		code = jupiterv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS
	case errors.Is(err, ring.ErrUnknownNode):
		code = jupiterv1.ErrorCode_ERROR_CODE_NOT_FOUND
	case errors.Is(err, ring.ErrLastNode), errors.Is(err, ring.ErrTooManyNodes):
		code = jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION
	}
	return &AdminError{Code: code, Msg: err.Error()}
}

func (c *Controller) okReply(st *State, version uint64) *jupiterv1.AdminReply {
	return &jupiterv1.AdminReply{Ok: true, Version: version, Ring: st.ToProto(), Leader: c.leader(st)}
}

func (c *Controller) failReply(e *AdminError, cur *State) *jupiterv1.AdminReply {
	return &jupiterv1.AdminReply{Error: e.Msg, Code: e.Code, Version: versionOf(cur), Ring: cur.ToProto(), Leader: c.leader(cur)}
}

// leader names the answering leader: this process when Self is set, else
// the writer of the stored ring.
func (c *Controller) leader(st *State) string {
	if c.cfg.Self != "" || st == nil {
		return c.cfg.Self
	}
	return st.Leader
}

func versionOf(st *State) uint64 {
	if st == nil {
		return 0
	}
	return st.Version
}
