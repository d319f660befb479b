package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/spanner"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// SyncerConfig wires a Syncer.
type SyncerConfig struct {
	Store  Store        // required
	Holder *ring.Holder // required: the ring the data path routes with
	// PollInterval is the period of the Spanner read that catches missed
	// broadcasts. Default 2s.
	PollInterval time.Duration
	// Seed, if not empty, is written as ring version 1 by the leader when
	// the Store has no ring (cluster mode's --backends).
	Seed []ring.Node
	// Seeder writes Seed (Controller.Seed). Required with Seed.
	Seeder func(ctx context.Context, nodes []ring.Node) error
	// Reseeder writes the applied ring back when the Store lost it
	// (Controller.Reseed); nil: pods only report it.
	Reseeder func(ctx context.Context, expect, version uint64, nodes []ring.Node) error
	// IsLeader tells whether this pod may seed (Member.IsLeader).
	IsLeader func() bool
	// Prepare, if set, runs before a new ring is published (e.g. open
	// connection pools to new nodes). An error keeps the old ring; the
	// Syncer retries at the next poll.
	Prepare func(ctx context.Context, next *State) error
	// Publish, if set, is called with every ring the Syncer applies, after
	// Holder.Store and before the version counts as applied (Ready,
	// Version, Submit's wait). cmd/jupiter publishes to the proxy Router
	// here, so that a pod reports a version only once it routes by it.
	Publish func(st *State)
	// SyncTimeout bounds one sync (the Spanner read, seeding, Prepare) in
	// Run. The Spanner client retries an unavailable backend until its
	// context ends, so without a bound an outage would never be reported.
	// Default max(5s, 2*PollInterval).
	SyncTimeout time.Duration
	// Self is this pod's hedge address, reported in broadcast acks.
	Self   string
	Logger *slog.Logger
	// AckWait bounds how long the broadcast handler waits for the announced
	// version to be applied before acknowledging. Default 1s.
	AckWait time.Duration
	// Registry, if set, is the member lease registry: the Syncer registers
	// the pod before its first ring read and heartbeats the version it
	// routes by after every sync, so rebalance barriers can wait for it.
	Registry Registry
	// Lease is the registry lease (default DefaultMemberLease); it must be
	// well above PollInterval.
	Lease time.Duration
}

// DefaultMemberLease is the member registry lease: a pod that stopped
// heartbeating for this long no longer holds up rebalance barriers.
const DefaultMemberLease = 10 * time.Second

// Syncer is the pod side of the control plane: it keeps a *ring.Holder
// equal to the ring stored in Spanner. It loads the ring at start, applies
// broadcast announcements at once (reading the Store, never trusting the
// message), and polls the Store so that a missed broadcast only delays a
// pod. When the Store is unreachable it keeps serving the last ring and
// reports the error (a cache prefers availability).
type Syncer struct {
	cfg    SyncerConfig
	log    *slog.Logger
	notify chan struct{}

	applied atomic.Uint64 // version of the last ring published from the Store
	// announced is the highest version a RingUpdated broadcast announced
	// whose ack reports it applied (or is about to): the leader's barrier
	// counts that ack, so applying it needs no registry write at once.
	announced atomic.Uint64
	state     atomic.Pointer[State]

	mu      sync.Mutex
	lastErr error
	// failKind, failSince and failLogged rate-limit the outage log lines.
	failKind   string
	failSince  time.Time
	failLogged time.Time
	storeErr   error // last Store.Load failure (nil once a read succeeds)
	lastSync   time.Time
	changed    chan struct{} // closed and replaced on every publish

	sessionLost time.Time // first of an unbroken run of "Session not found" reads (under mu)
	registered  bool      // owned by the sync goroutine
	hbVersion   uint64    // version and time of the last heartbeat (sync goroutine)
	hbAt        time.Time
	hbErr       error // last heartbeat failure (under mu)
}

// NewSyncer returns a Syncer; call Run.
func NewSyncer(cfg SyncerConfig) (*Syncer, error) {
	if cfg.Store == nil || cfg.Holder == nil {
		return nil, errors.New("cluster: NewSyncer needs a Store and a Holder")
	}
	if len(cfg.Seed) > 0 && cfg.Seeder == nil {
		return nil, errors.New("cluster: NewSyncer: Seed needs a Seeder")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = time.Second
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = max(5*time.Second, 2*cfg.PollInterval)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultMemberLease
	}
	if cfg.IsLeader == nil {
		cfg.IsLeader = func() bool { return false }
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Syncer{
		cfg:     cfg,
		log:     lg.With("component", "cluster.syncer"),
		notify:  make(chan struct{}, 1),
		changed: make(chan struct{}),
	}, nil
}

// Run syncs once immediately, then on every announcement and every
// PollInterval, until ctx is done. Each sync is bounded by SyncTimeout.
func (s *Syncer) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
		s.SyncOnce(sctx)
		cancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-s.notify:
		}
	}
}

// Notify tells the Syncer that version exists; it syncs now if that is
// newer than what it serves.
func (s *Syncer) Notify(version uint64) {
	if version <= s.applied.Load() {
		return
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// SyncOnce reads the Store and publishes its ring if it is newer. With no
// ring stored, the leader seeds one (if seeds are configured); other pods
// wait. Errors are recorded for Status and returned.
func (s *Syncer) SyncOnce(ctx context.Context) error {
	err := s.syncOnce(ctx)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return err // shutting down: not an outage
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	switch {
	case err != nil:
		// One line when the failure starts or changes kind, then one a
		// minute: a Spanner outage fails every poll, and the errors differ
		// only in request ids.
		k := errKind(err)
		if s.failKind != k || now.Sub(s.failLogged) >= time.Minute {
			if s.failKind == "" {
				s.failSince = now
			}
			s.failKind, s.failLogged = k, now
			if v := s.applied.Load(); v > 0 {
				s.log.Warn("ring sync failed; serving the last ring", "version", v, "err", err, "failing_for", now.Sub(s.failSince).Round(time.Second))
			} else {
				s.log.Warn("no ring yet; not ready", "err", err, "failing_for", now.Sub(s.failSince).Round(time.Second))
			}
		}
	case s.failKind != "":
		s.log.Info("ring sync recovered", "version", s.applied.Load(), "failed_for", now.Sub(s.failSince).Round(time.Second))
		s.failKind = ""
	}
	s.lastErr = err
	if err == nil {
		s.lastSync = now
	}
	return err
}

// errKind groups errors that are the same failure: Spanner and gRPC errors
// by their status code, others by their text.
func errKind(err error) string {
	if c := spanner.ErrCode(err); c != codes.Unknown && c != codes.OK {
		return "grpc:" + c.String()
	}
	return err.Error()
}

func (s *Syncer) syncOnce(ctx context.Context) error {
	if !s.registered && s.cfg.Registry != nil {
		// Register before the first read: a barrier that does not see this
		// pod committed its stage before this read, so the pod starts in
		// that stage (or later) and never writes a moving key to its old
		// owner (rebalance.md R2).
		if err := s.heartbeat(ctx); err != nil {
			s.setStoreErr(err) // the registry lives in the same Spanner database
			return fmt.Errorf("cluster: register in the member registry: %w", err)
		}
		s.registered = true
	}
	err := s.load(ctx)
	if s.cfg.Registry != nil && !errors.Is(ctx.Err(), context.Canceled) &&
		heartbeatDue(s.applied.Load(), s.hbVersion, s.announced.Load(), time.Since(s.hbAt), s.cfg.Lease, s.cfg.PollInterval) {
		if herr := s.heartbeat(ctx); herr != nil && err == nil {
			s.log.Debug("member heartbeat failed", "err", herr)
		}
	}
	return err
}

// heartbeatDue decides whether a sync writes a registry heartbeat: every
// third of the lease (to renew it); at once after applying a version the
// leader's barrier has no other word of — one that arrived by polling
// (applied above announced); and for a version announced by broadcast, at
// the first sync a poll interval after the last heartbeat. Such a version
// is reported by this pod's ack, which the barrier counts (rebalancer.go):
// writing each at once would cost every pod one Spanner commit per
// rebalance stage, all at the same moment (docs/scale.md); the delayed
// write covers an ack the leader did not receive in time, and coalesces
// the stages of one rebalance into one or two writes. Pure.
func heartbeatDue(applied, hbVersion, announced uint64, sinceLast, lease, poll time.Duration) bool {
	switch {
	case sinceLast >= lease/3:
		return true
	case applied == hbVersion:
		return false
	case applied > announced:
		return true
	}
	return sinceLast >= poll
}

// heartbeat renews this pod's lease with the version it routes by.
func (s *Syncer) heartbeat(ctx context.Context) error {
	stage := ""
	if st := s.state.Load(); st != nil {
		stage = stageOr(st.Stage)
	}
	v := s.applied.Load()
	err := s.cfg.Registry.Heartbeat(ctx, s.cfg.Self, v, stage, s.cfg.Lease)
	if err == nil {
		s.hbVersion, s.hbAt = v, time.Now()
	}
	s.mu.Lock()
	s.hbErr = err
	s.mu.Unlock()
	return err
}

// Leave removes this pod from the member registry (clean shutdown), so
// barriers do not wait for its lease to run out.
func (s *Syncer) Leave(ctx context.Context) error {
	if s.cfg.Registry == nil {
		return nil
	}
	return s.cfg.Registry.Leave(ctx, s.cfg.Self)
}

func (s *Syncer) load(ctx context.Context) error {
	st, err := s.cfg.Store.Load(ctx)
	if err != nil && !errors.Is(err, ErrNoRing) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The Spanner client retries an unreachable server until the
		// deadline; say so rather than just "deadline exceeded".
		err = fmt.Errorf("no answer from Spanner within the %v sync timeout: %w", s.cfg.SyncTimeout, err)
	}
	s.setStoreErr(err)
	if applied := s.applied.Load(); applied > 0 && (errors.Is(err, ErrNoRing) || err == nil && st.Version < applied) {
		return s.regressed(ctx, st, applied)
	}
	if errors.Is(err, ErrNoRing) {
		if len(s.cfg.Seed) == 0 {
			return errors.New("cluster: no ring stored yet and no seed backends; add a node with JUPITER ADD")
		}
		if !s.cfg.IsLeader() {
			return errors.New("cluster: no ring stored yet; waiting for the leader to seed it")
		}
		if err := s.cfg.Seeder(ctx, s.cfg.Seed); err != nil {
			return err
		}
		st, err = s.cfg.Store.Load(ctx)
	}
	if err != nil {
		return err
	}
	if st.Version <= s.applied.Load() {
		return nil
	}
	if s.cfg.Prepare != nil {
		if err := s.cfg.Prepare(ctx, st); err != nil {
			return err
		}
	}
	if !s.cfg.Holder.Store(st.Ring) {
		// The holder has a newer ring than the Store (set from elsewhere,
		// e.g. standalone flags in a test): leave it, but remember.
		s.log.Warn("holder refused stored ring", "stored", st.Version, "holder", s.cfg.Holder.Load().Version())
	}
	if s.cfg.Publish != nil {
		s.cfg.Publish(st)
	}
	s.state.Store(st)
	s.applied.Store(st.Version)
	s.log.Info("ring applied", "version", st.Version, "stage", st.Stage, "change", st.Change, "ring", RingText(st.Ring.Nodes()))
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// regressed handles a Store that no longer holds the ring this pod routes
// by (none at all, or a lower version): the database was recreated or
// restored. Pods keep serving what they have (a lower version would be a
// step back in time); the leader writes its own ring back above it.
func (s *Syncer) regressed(ctx context.Context, st *State, applied uint64) error {
	var expect uint64
	have := "no ring"
	if st != nil {
		expect, have = st.Version, fmt.Sprintf("ring v%d", st.Version)
	}
	if !s.cfg.IsLeader() || s.cfg.Reseeder == nil {
		return fmt.Errorf("cluster: the store holds %s but this pod routes by v%d (database recreated or restored?); serving v%d until the leader writes it back", have, applied, applied)
	}
	cur := s.state.Load()
	nodes := cur.Ring.Nodes()
	if cur.Target != nil && (cur.Stage == StageMigrating || cur.Stage == StageCommit) {
		nodes = cur.Target.Nodes() // new writes already live on the target owners
	}
	s.log.Error("the store lost the ring this pod routes by; writing it back", "store", have, "applied", applied)
	if err := s.cfg.Reseeder(ctx, expect, applied+1, nodes); err != nil {
		return fmt.Errorf("cluster: the store holds %s but this pod routes by v%d; writing it back failed: %w", have, applied, err)
	}
	return s.load(ctx)
}

// HandleBroadcast is the hedge broadcast handler body: for RingUpdated it
// triggers a sync and waits (up to AckWait) until the version is applied,
// then replies a RingAck with the version this pod serves.
func (s *Syncer) HandleBroadcast(ctx context.Context, msg []byte) []byte {
	var m jupiterv1.BroadcastMessage
	ack := &jupiterv1.RingAck{Pod: s.cfg.Self}
	if err := proto.Unmarshal(msg, &m); err != nil {
		ack.Error = "undecodable broadcast: " + err.Error()
	} else {
		switch x := m.GetMsg().(type) {
		case *jupiterv1.BroadcastMessage_RingUpdated:
			v := x.RingUpdated.GetVersion()
			// Before waiting: the sync that applies v checks it (heartbeatDue).
			prev := storeMax(&s.announced, v)
			s.waitApplied(ctx, v)
			if s.applied.Load() < v {
				// This ack will not count: let the sync that applies v
				// heartbeat it at once after all.
				s.announced.CompareAndSwap(v, prev)
			}
		default:
			ack.Error = "unknown broadcast message"
		}
	}
	ack.AppliedVersion = s.applied.Load()
	b, _ := proto.Marshal(&jupiterv1.BroadcastReply{Msg: &jupiterv1.BroadcastReply_RingAck{RingAck: ack}})
	return b
}

func (s *Syncer) waitApplied(ctx context.Context, version uint64) {
	t := time.NewTimer(s.cfg.AckWait)
	defer t.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if s.applied.Load() >= version {
			return
		}
		s.Notify(version)
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Ready reports whether a ring from the Store has been applied. A pod is
// not ready until it has one.
func (s *Syncer) Ready() bool { return s.applied.Load() > 0 }

// Version returns the version of the last applied ring (0: none).
func (s *Syncer) Version() uint64 { return s.applied.Load() }

// State returns the last applied State (nil: none).
func (s *Syncer) State() *State { return s.state.Load() }

// setStoreErr records the outcome of a Store.Load: ErrNoRing is an answer,
// anything else means the Store (Spanner) could not be read.
func (s *Syncer) setStoreErr(err error) {
	if errors.Is(err, ErrNoRing) {
		err = nil
	}
	s.mu.Lock()
	s.storeErr = err
	switch {
	case !sessionLost(err):
		s.sessionLost = time.Time{}
	case s.sessionLost.IsZero():
		s.sessionLost = time.Now()
	}
	s.mu.Unlock()
}

// sessionLost reports a Spanner error saying the server no longer knows
// the client's session (the server was restarted or lost its state).
func sessionLost(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Session not found")
}

// SessionLostFor returns how long every ring read has failed with "Session
// not found" (0 if the last read did not). The Member's client replaces a
// lost session by itself (spanner_client.go); the liveness check that fails
// past a bound (Cluster.Live) is the backstop if that keeps failing.
func (s *Syncer) SessionLostFor() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessionLost.IsZero() {
		return 0
	}
	return time.Since(s.sessionLost)
}

// StoreError returns the error of the last ring read if it failed (the
// Store, i.e. Spanner, is unreachable), nil if it succeeded. Admin changes
// are refused at once while it is set: the leader could not write anyway.
func (s *Syncer) StoreError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeErr
}

// LastSync returns the time of the last successful sync and the error of
// the last sync (nil if it succeeded).
func (s *Syncer) LastSync() (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSync, s.lastErr
}

// storeMax raises a to v if v is higher and returns a's previous value.
func storeMax(a *atomic.Uint64, v uint64) uint64 {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return old
		}
	}
}
