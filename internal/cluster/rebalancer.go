package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
)

// The stage machine of an online rebalance (DESIGN.md "Rebalancing",
// research/rebalance.md §4.3). Every stage is one ring record, written by
// the leader with the fenced compare-and-set, so each step has its own
// version and the whole run is in the history table:
//
//	stable(R)  --ADD/REMOVE/WEIGHT-->  prepare(R → R')   pods open pools to R' nodes
//	prepare    --barrier, preflight-->  freeze            writes to moving keys held
//	freeze     --barrier-->             migrating         marked writes, read rule, migrator
//	migrating  --barrier, migrators done (verified)--> commit(R')  route by R' only
//	commit     --barrier, cleanup-->    stable(R')        markers and leftovers removed
//	freeze     --barrier timeout-->     prepare           unfreeze, wait out dead pods' leases (retreat.go)
//	prepare|freeze --timeout or ABORT--> stable(R)        nothing was written to R' yet
//
// A barrier passes when every pod with a live lease in the member registry
// has applied the stage's version (Registry), by its heartbeat or by its
// acknowledgement of the stage's broadcast, or is found gone: its hedge
// address refuses connections (barrier.go, liveness.go). The driver is a
// loop on the leader that re-reads the stored record and takes the next
// step, so a new leader resumes whatever stage it finds: migrators restart
// from the checkpoints in the ProgressStore (moves are idempotent), cleanup
// is idempotent, and prepare/freeze time out into an abort.

// RebalancerConfig wires a Rebalancer.
type RebalancerConfig struct {
	Controller *Controller // required: its Store, Fencer and announcements
	Registry   Registry    // required: barriers
	Progress   ProgressStore
	IsLeader   func() bool // required
	// Node returns a control-path client for a backend address (its
	// primary endpoint, with the data path's AUTH/TLS). Required.
	Node   func(addr string) (rebalance.Node, error)
	Logger *slog.Logger
	// Tick is how often the driver re-checks the stage during a rebalance
	// (once a second while stable). Default 100ms.
	Tick time.Duration
	// PrepareTimeout and FreezeTimeout bound those barriers; past them the
	// rebalance is aborted (nothing has been written to new owners yet),
	// except that a freeze timeout first goes back to prepare unless the
	// same pod held it up MaxFreezeRetreats times in a row or the retreats
	// went on for MaxRetreating (retreat.go). Defaults 30s and 5s.
	PrepareTimeout, FreezeTimeout time.Duration
	// Probe reports whether nothing listens at a pod's hedge address (the
	// connection is refused); a barrier then counts the pod as gone
	// (liveness.go). Default: a TCP dial.
	Probe func(ctx context.Context, addr string) bool
	// Migrator is the base migrator configuration (rates, batch sizes,
	// marker TTL); Source, Dests, Moving and Epoch are filled per source.
	Migrator rebalance.Config
}

// Rebalancer drives rebalances on the leader. Run it on every pod; it acts
// only while the pod leads.
type Rebalancer struct {
	cfg RebalancerConfig
	log *slog.Logger

	kick chan struct{}
	busy atomic.Bool // the last Step saw a rebalance running

	mu          sync.Mutex
	seen        map[uint64]time.Time // version → when this process first saw it (barrier timeouts)
	run         *migration           // the migration this leader runs (nil: none)
	lastErr     string
	waiting     []string                      // pods the current barrier waits for, "pod@vN"
	waitingPods []string                      // the same, pod names
	acked       map[string]uint64             // pod → highest ring version it acknowledged (broadcast)
	retreats    retreats                      // freeze → prepare retreats of the running rebalance
	live        *liveness                     // pods found gone (barrier.go)
	cached      map[string][]byte             // follower view of checkpoints
	cachedAt    time.Time                     // when cached was loaded
	cachedFor   uint64                        // epoch of cached
	final       map[string]rebalance.Progress // last progress of a finished migration, for STATUS
}

// migration is one epoch's migrators on this leader.
type migration struct {
	epoch  uint64
	cancel context.CancelFunc
	done   chan struct{}
	migs   []*rebalance.Migrator
	err    error // set before done closes
	paused bool
}

// NewRebalancer returns a Rebalancer; call Run.
func NewRebalancer(cfg RebalancerConfig) (*Rebalancer, error) {
	if cfg.Controller == nil || cfg.Registry == nil || cfg.IsLeader == nil || cfg.Node == nil {
		return nil, errors.New("cluster: NewRebalancer needs a Controller, a Registry, IsLeader and Node")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.PrepareTimeout <= 0 {
		cfg.PrepareTimeout = 30 * time.Second
	}
	if cfg.FreezeTimeout <= 0 {
		cfg.FreezeTimeout = 5 * time.Second
	}
	if cfg.Migrator.CheckpointEvery <= 0 {
		cfg.Migrator.CheckpointEvery = 2 * time.Second
	}
	if cfg.Probe == nil {
		cfg.Probe = dialRefused
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	log := lg.With("component", "cluster.rebalancer")
	r := &Rebalancer{cfg: cfg, log: log, kick: make(chan struct{}, 1), seen: map[uint64]time.Time{}, acked: map[string]uint64{},
		live: &liveness{probe: cfg.Probe, log: log}}
	cfg.Controller.reb = r
	return r, nil
}

// Kick makes the driver look at the stage now (after an admin change).
func (r *Rebalancer) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run drives rebalances until ctx ends; the migrators stop with it.
func (r *Rebalancer) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	defer r.stopMigration()
	var last, pruned time.Time
	kicked := true
	for {
		// While stable, one Spanner read a second (and on every kick) is
		// enough; during a rebalance every tick counts.
		busy := r.busy.Load()
		if r.cfg.IsLeader() && (kicked || busy || time.Since(last) >= time.Second) {
			last = time.Now()
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := r.Step(sctx)
			cancel()
			r.noteErr(err)
			if !r.busy.Load() && time.Since(pruned) >= PruneEvery {
				pruned = time.Now()
				r.prune(ctx)
			}
		} else if !r.cfg.IsLeader() {
			r.stopMigration()
		}
		kicked = false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-r.kick:
			kicked = true
		}
	}
}

// PruneEvery and PruneAfter: while no rebalance runs, the leader deletes
// every PruneEvery the member registry entries whose lease ran out more
// than PruneAfter ago — pods that died without Leave (crash, OOM kill,
// node loss), which barriers already ignore but which every barrier
// query would read forever (docs/scale.md).
const (
	PruneEvery = time.Minute
	PruneAfter = 10 * time.Minute
)

func (r *Rebalancer) prune(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := r.cfg.Registry.Prune(pctx, PruneAfter)
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Warn("could not prune the member registry", "err", err)
	case n > 0:
		r.log.Info("pruned the member registry", "expired_entries", n)
	}
}

func (r *Rebalancer) noteErr(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	r.mu.Lock()
	changed := r.lastErr != err.Error()
	r.lastErr = err.Error()
	r.mu.Unlock()
	if changed {
		r.log.Warn("rebalance step failed; retrying", "err", err)
	}
}

// Step takes at most one step of the stage machine for the stored record.
func (r *Rebalancer) Step(ctx context.Context) error {
	st, err := r.cfg.Controller.cfg.Store.Load(ctx)
	if errors.Is(err, ErrNoRing) {
		return nil
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	if _, ok := r.seen[st.Version]; !ok {
		r.seen[st.Version] = time.Now()
		for v := range r.seen {
			if v < st.Version {
				delete(r.seen, v)
			}
		}
	}
	since := time.Since(r.seen[st.Version])
	r.mu.Unlock()

	r.busy.Store(stageOr(st.Stage) != StageStable)
	switch stageOr(st.Stage) {
	case StageStable:
		r.stopMigration()
		return nil
	case StagePrepare:
		ok, err := r.barrier(ctx, st.Version)
		if err != nil {
			return err
		}
		if !ok {
			if since > r.cfg.PrepareTimeout {
				return r.abort(ctx, st, fmt.Sprintf("prepare barrier timed out after %v (pods not applying: %v)", r.cfg.PrepareTimeout, r.Waiting()))
			}
			return nil
		}
		if err := r.preflight(ctx, st); err != nil {
			return r.abort(ctx, st, "preflight: "+err.Error())
		}
		return r.advance(ctx, st, StageFreeze)
	case StageFreeze:
		ok, err := r.barrier(ctx, st.Version)
		if err != nil {
			return err
		}
		if !ok {
			if since <= r.cfg.FreezeTimeout {
				return nil
			}
			why := fmt.Sprintf("freeze barrier timed out after %v (pods not applying: %v)", r.cfg.FreezeTimeout, r.Waiting())
			ok, stop := r.retreat(st.Epoch)
			if ok {
				// Most likely a pod died after the prepare barrier and its
				// address does not refuse connections (liveness.go): its
				// lease outlives the freeze timeout. Writes to moving keys
				// must not stay held for a lease, so unfreeze and wait in
				// prepare (whose timeout exceeds the lease) instead of
				// dropping the change; nothing was written to a new owner.
				r.log.Warn("rebalance back to prepare", "epoch", st.Epoch, "why", why)
				return r.advance(ctx, st, StagePrepare)
			}
			return r.abort(ctx, st, why+"; "+stop)
		}
		return r.advance(ctx, st, StageMigrating)
	case StageMigrating:
		ok, err := r.barrier(ctx, st.Version)
		if err != nil || !ok {
			return err
		}
		done, err := r.migrate(ctx, st)
		if err != nil || !done {
			return err
		}
		return r.commit(ctx, st)
	case StageCommit:
		ok, err := r.barrier(ctx, st.Version)
		if err != nil || !ok {
			return err
		}
		if err := r.cleanup(ctx, st); err != nil {
			return err
		}
		return r.finish(ctx, st)
	}
	return fmt.Errorf("cluster: unknown stage %q in ring v%d", st.Stage, st.Version)
}

// preflight checks, before any write is held, that every destination takes
// the restore script (EVALSHA/RESTORE allowed, reachable, AUTH right).
func (r *Rebalancer) preflight(ctx context.Context, st *State) error {
	for _, n := range st.Target.Nodes() {
		c, err := r.cfg.Node(n.Addr)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr, err)
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rebalance.LoadScript(pctx, c)
		cancel()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr, err)
		}
	}
	return nil
}

// transition CAS-writes a successor of st (next version) and announces it.
func (r *Rebalancer) transition(ctx context.Context, st *State, routed []ring.Node, c Commit) error {
	ctl := r.cfg.Controller
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	next, err := ring.New(st.Version+1, routed)
	if err != nil {
		return err
	}
	c.RequestID = "" // the admin request belongs to the prepare record only
	nst, err := ctl.commit(ctx, st, next, c)
	if err != nil {
		return err
	}
	r.log.Info("rebalance stage", "stage", nst.Stage, "version", nst.Version, "epoch", nst.Epoch, "change", nst.Change)
	go ctl.announce(context.WithoutCancel(ctx), nst)
	return nil
}

// same returns the commit that keeps st's rebalance fields.
func same(st *State, stage string) Commit {
	c := Commit{Stage: stage, Change: st.Change, Epoch: st.Epoch, Paused: st.Paused, From: st.From}
	if st.Target != nil {
		c.Target = st.Target.Nodes()
	}
	return c
}

func (r *Rebalancer) advance(ctx context.Context, st *State, stage string) error {
	return r.transition(ctx, st, st.Ring.Nodes(), same(st, stage))
}

// abort returns to stable with the old ring. Only valid before migrating:
// until then nothing was written to a new owner.
func (r *Rebalancer) abort(ctx context.Context, st *State, why string) error {
	// Logged once it is stored: a commit that fails (a conflict, Spanner
	// busy) is retried by the next step, which would log it again.
	if err := r.transition(ctx, st, st.Ring.Nodes(), Commit{Stage: StageStable, Change: "ABORT " + st.Change + ": " + why}); err != nil {
		return err
	}
	r.log.Warn("rebalance aborted", "epoch", st.Epoch, "stage", st.Stage, "why", why)
	r.mu.Lock()
	r.lastErr = "aborted: " + why
	r.mu.Unlock()
	return nil
}

// commit switches routing to the target ring.
func (r *Rebalancer) commit(ctx context.Context, st *State) error {
	c := Commit{Stage: StageCommit, Change: st.Change, Epoch: st.Epoch, From: st.Ring.Nodes()}
	return r.transition(ctx, st, st.Target.Nodes(), c)
}

// finish returns to stable after the cleanup.
func (r *Rebalancer) finish(ctx context.Context, st *State) error {
	r.stopMigration()
	return r.transition(ctx, st, st.Ring.Nodes(), Commit{Stage: StageStable, Change: "DONE " + st.Change})
}

// SetPaused pauses or resumes the migrator of the running rebalance (a new
// record with the flag, so a new leader honours it).
func (r *Rebalancer) SetPaused(ctx context.Context, paused bool) error {
	st, err := r.cfg.Controller.cfg.Store.Load(ctx)
	if err != nil {
		return err
	}
	if !st.Rebalancing() {
		return adminErr(errPrecond, "no rebalance is running")
	}
	if st.Paused == paused {
		return nil
	}
	c := same(st, st.Stage)
	c.Paused = paused
	if err := r.transition(ctx, st, st.Ring.Nodes(), c); err != nil {
		return err
	}
	r.Kick()
	return nil
}

// Abort aborts a rebalance that has not started moving keys.
func (r *Rebalancer) Abort(ctx context.Context) error {
	st, err := r.cfg.Controller.cfg.Store.Load(ctx)
	if err != nil {
		return err
	}
	switch stageOr(st.Stage) {
	case StagePrepare, StageFreeze:
		return r.abort(ctx, st, "aborted by the operator")
	case StageStable:
		return adminErr(errPrecond, "no rebalance is running")
	default:
		return adminErr(errPrecond, "the rebalance is %s: keys are already on their new owners, so it can only complete (PAUSE throttles it; a reverse ADD/REMOVE undoes it afterwards)", st.Stage)
	}
}

const errPrecond = jupiterv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION

// migrate makes sure this leader runs the migrators of st's epoch and
// reports whether they all finished (verified).
func (r *Rebalancer) migrate(ctx context.Context, st *State) (bool, error) {
	r.mu.Lock()
	m := r.run
	r.mu.Unlock()
	if m != nil && m.epoch != st.Epoch {
		r.stopMigration()
		m = nil
	}
	if m == nil {
		var err error
		if m, err = r.startMigration(ctx, st); err != nil {
			return false, err
		}
	}
	if st.Paused != m.paused {
		for _, mg := range m.migs {
			if st.Paused {
				mg.Pause()
			} else {
				mg.Resume()
			}
		}
		m.paused = st.Paused
	}
	select {
	case <-m.done:
	default:
		return false, nil
	}
	r.mu.Lock()
	r.run = nil
	fin := map[string]rebalance.Progress{}
	for _, mg := range m.migs {
		p := mg.Progress()
		fin[p.Source] = p
	}
	r.final = fin
	r.mu.Unlock()
	if m.err != nil {
		return false, fmt.Errorf("migration of epoch %d: %w (restarting from the checkpoints)", m.epoch, m.err)
	}
	return true, nil
}

func (r *Rebalancer) startMigration(ctx context.Context, st *State) (*migration, error) {
	addr := map[string]string{}
	for _, n := range st.Ring.Nodes() {
		addr[n.Name] = n.Addr
	}
	for _, n := range st.Target.Nodes() {
		addr[n.Name] = n.Addr
	}
	var nodeErr error
	node := func(name string) rebalance.Node {
		c, err := r.cfg.Node(addr[name])
		if err != nil {
			nodeErr = errors.Join(nodeErr, err)
			return nil
		}
		return c
	}
	base := r.cfg.Migrator
	base.Epoch = st.Epoch
	cfgs, err := rebalance.Plan(st.Ring, st.Target, node, base)
	if err != nil {
		return nil, errors.Join(err, nodeErr)
	}
	saved := map[string][]byte{}
	if r.cfg.Progress != nil {
		if saved, err = r.cfg.Progress.LoadProgress(ctx, st.Epoch); err != nil {
			return nil, err
		}
	}
	leader, token, err := r.cfg.Controller.cfg.Fencer.Fence(ctx)
	if err != nil {
		return nil, err
	}
	fence := Commit{Leader: leader, Token: token}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m := &migration{epoch: st.Epoch, cancel: cancel, done: make(chan struct{})}
	for _, c := range cfgs {
		if b, ok := saved[c.SourceName]; ok {
			var p rebalance.Progress
			if json.Unmarshal(b, &p) == nil && p.Epoch == st.Epoch {
				c.From = &p
			}
		}
		src := c.SourceName
		c.Checkpoint = func(p rebalance.Progress) { r.checkpoint(mctx, cancel, fence, st.Epoch, src, p) }
		c.Logf = func(format string, args ...any) { r.log.Info(fmt.Sprintf(format, args...), "source", src) }
		mg, err := rebalance.NewMigrator(c)
		if err != nil {
			cancel()
			return nil, err
		}
		if st.Paused {
			mg.Pause()
		}
		m.migs = append(m.migs, mg)
	}
	m.paused = st.Paused
	r.log.Info("migration started", "epoch", st.Epoch, "sources", len(m.migs), "resumed", len(saved) > 0)
	go func() {
		var wg sync.WaitGroup
		errs := make([]error, len(m.migs))
		for i, mg := range m.migs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = mg.Run(mctx)
			}()
		}
		wg.Wait()
		m.err = errors.Join(errs...)
		close(m.done)
		r.Kick()
	}()
	r.mu.Lock()
	r.run = m
	r.mu.Unlock()
	return m, nil
}

// checkpoint persists one source's progress (fenced: a deposed leader's
// migrator cannot overwrite its successor's checkpoints).
func (r *Rebalancer) checkpoint(ctx context.Context, stop context.CancelFunc, fence Commit, epoch uint64, source string, p rebalance.Progress) {
	if r.cfg.Progress == nil {
		return
	}
	b, err := json.Marshal(p)
	if err != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.cfg.Progress.SaveProgress(sctx, fence, epoch, source, b); err != nil {
		r.log.Warn("checkpoint failed", "source", source, "err", err)
		if errors.Is(err, ErrNotLeader) {
			stop() // deposed: the new leader runs the migration (runs on Run's goroutine: no waiting here)
		}
	}
}

// stopMigration cancels this process's migrators (lost leadership, stage
// moved on, shutdown) and waits for them.
func (r *Rebalancer) stopMigration() {
	r.mu.Lock()
	m := r.run
	r.run = nil
	r.mu.Unlock()
	if m == nil {
		return
	}
	m.cancel()
	<-m.done
}

// cleanup removes the markers of the epoch from every node, the copies
// left on nodes that no longer own them, and empties removed nodes.
func (r *Rebalancer) cleanup(ctx context.Context, st *State) error {
	cur := st.Ring
	var errs []error
	for _, n := range cur.Nodes() {
		c, err := r.cfg.Node(n.Addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := rebalance.Cleanup(ctx, c, st.Epoch); err != nil {
			errs = append(errs, fmt.Errorf("markers on %s: %w", n.Addr, err))
		}
	}
	owner := func(k []byte) string { return cur.Node(cur.Owner(k)).Addr }
	for _, n := range st.From {
		c, err := r.cfg.Node(n.Addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cur.Index(n.Name) < 0 {
			// Removed: everything on it has been verified moved; what is
			// left are copies whose UNLINK was lost and stray keys.
			if _, err := rebalance.RemoveLeftovers(ctx, c, func([]byte) bool { return true }); err != nil {
				errs = append(errs, fmt.Errorf("leftovers on removed %s: %w", n.Addr, err))
			} else if _, err := rebalance.Cleanup(ctx, c, st.Epoch); err != nil {
				errs = append(errs, fmt.Errorf("markers on removed %s: %w", n.Addr, err))
			} else if err := rebalance.CheckDrained(ctx, c); err != nil {
				errs = append(errs, fmt.Errorf("removed %s: %w", n.Addr, err))
			}
			continue
		}
		addr := n.Addr
		if _, err := rebalance.RemoveLeftovers(ctx, c, func(k []byte) bool { return owner(k) != addr }); err != nil {
			errs = append(errs, fmt.Errorf("leftovers on %s: %w", n.Addr, err))
		}
	}
	return errors.Join(errs...)
}

// Progress returns the progress of the running (or last) migration of
// epoch: live from this leader's migrators, else from the checkpoints
// (refreshed at most every 2s).
func (r *Rebalancer) Progress(ctx context.Context, epoch uint64) []rebalance.Progress {
	r.mu.Lock()
	m := r.run
	fin := r.final
	r.mu.Unlock()
	var out []rebalance.Progress
	switch {
	case m != nil && m.epoch == epoch:
		for _, mg := range m.migs {
			out = append(out, mg.Progress())
		}
	case len(fin) > 0 && anyEpoch(fin) == epoch:
		for _, p := range fin {
			out = append(out, p)
		}
	case r.cfg.Progress != nil && epoch != 0:
		r.mu.Lock()
		fresh := r.cachedFor == epoch && time.Since(r.cachedAt) < 2*time.Second
		saved := r.cached
		r.mu.Unlock()
		if !fresh {
			lctx, cancel := context.WithTimeout(ctx, time.Second)
			got, err := r.cfg.Progress.LoadProgress(lctx, epoch)
			cancel()
			if err == nil {
				saved = got
				r.mu.Lock()
				r.cached, r.cachedAt, r.cachedFor = got, time.Now(), epoch
				r.mu.Unlock()
			}
		}
		for _, b := range saved {
			var p rebalance.Progress
			if json.Unmarshal(b, &p) == nil {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b rebalance.Progress) int {
		if a.Source < b.Source {
			return -1
		}
		if a.Source > b.Source {
			return 1
		}
		return 0
	})
	return out
}

func anyEpoch(m map[string]rebalance.Progress) uint64 {
	for _, p := range m {
		return p.Epoch
	}
	return 0
}

// GoneCounted returns how many times a barrier counted a waited-for pod
// as gone because its hedge address refused connections (liveness.go).
func (r *Rebalancer) GoneCounted() int64 { return r.live.gone.Load() }

// LastError is the last failure of a step ("" if none since start).
func (r *Rebalancer) LastError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}
