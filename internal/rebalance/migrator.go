package rebalance

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// Phase of a migrator.
type Phase string

const (
	// PhaseScan is the first full SCAN pass, moving every moving key found.
	PhaseScan Phase = "scan"
	// PhaseVerify is a verification pass: a full SCAN that must find no
	// moving key at all. Keys it does find are moved and another
	// verification pass follows.
	PhaseVerify Phase = "verify"
	// PhaseDone: a verification pass found nothing; the source holds no
	// moving key.
	PhaseDone Phase = "done"
)

// Migrator defaults.
const (
	DefaultScanCount       = 200 // a SCAN (and the MGET of its records) holds the source for its whole reply: ~1 ms at 1000
	PacedScanCount         = 100 // with Config.TargetDelay
	DefaultCheckpointEvery = 5 * time.Second
	DefaultMaxVerifyPasses = 10
	DefaultMaxErrors       = 20
	DefaultInflight        = 2
	maxStuckKeys           = 32
)

var (
	// ErrAborted is returned by Run after Abort.
	ErrAborted = errors.New("rebalance: migrator aborted")
	// ErrNotConverged: MaxVerifyPasses verification passes all still found
	// moving keys (see Progress.StuckKeys and LastError).
	ErrNotConverged = errors.New("rebalance: verification passes still find moving keys")
)

// Config configures a Migrator for one source node.
type Config struct {
	// Source is the source node's PRIMARY endpoint.
	Source Node
	// SourceName identifies the source in Progress (the ring node name).
	SourceName string
	// Epoch is the target ring version (names the markers).
	Epoch uint64
	// Moving reports whether a key found on Source must move, and to which
	// destination (an index into Dests). Build it with MovingFrom: a key
	// moves when Source owns it under the old ring and another node owns it
	// under the new one. Marker keys are skipped before Moving is called.
	Moving func(key []byte) (dest int, ok bool)
	// Dests are the destination nodes by the index Moving returns.
	Dests map[int]Node

	// MarkerTTL is the marker lifetime T (0: DefaultMarkerTTL).
	MarkerTTL time.Duration
	// ScanCount is SCAN's COUNT (0: DefaultScanCount).
	ScanCount int
	// BatchKeys and BatchBytes bound one pipelined batch (see Mover).
	BatchKeys, BatchBytes int
	// Inflight is how many batches move at once to each destination node,
	// and half of how many at most leave one source (0: DefaultInflight,
	// 2). For Configs made by Plan the bound on a destination holds across
	// all their sources: an ADD's new node, fed by every other node,
	// otherwise queued one pipeline per source behind each client's GET.
	// With 32-key batches two in flight move 20-30% more keys/s than one
	// at the same p99 (BenchmarkMigrateLatency); a pass streams batches
	// across SCAN replies (stream.go), so the bound is what the source
	// and destination actually see.
	Inflight int
	// destSlots, set by Plan, is shared by the Configs of one plan.
	destSlots *slotSet
	// KeysPerSec and BytesPerSec throttle the moves (token buckets with a
	// 100 ms burst); 0 means unlimited. Bytes are DUMP payload bytes,
	// charged after each batch (the next batch waits for the debt).
	KeysPerSec, BytesPerSec float64
	// TargetDelay, if set, paces the moves by the nodes' latency instead
	// of a fixed rate (pacer.go): batches pause while PINGs to the source
	// or a destination take more than TargetDelay beyond their usual round
	// trip. The fixed throttles still apply.
	TargetDelay time.Duration

	// Checkpoint, if set, is called from Run's goroutine at most every
	// CheckpointEvery (0: DefaultCheckpointEvery), at the end of every pass,
	// and when Run returns. Persist the Progress; a new leader passes it as
	// From to resume.
	Checkpoint      func(Progress)
	CheckpointEvery time.Duration
	// From resumes from a checkpoint: phase, cursor and counters continue.
	// nil starts a fresh scan at cursor 0. After a failover of the source,
	// pass nil or set Cursor to 0: a SCAN cursor is only meaningful on the
	// server that issued it (a restarted scan is merely slower).
	From *Progress

	// MovingFraction is the share of the source's keys expected to move
	// (MovingFraction(old, new, source)), for the total estimate; 0 means
	// estimate it from the keys scanned.
	MovingFraction float64
	// MaxVerifyPasses bounds the verification passes (0: 10).
	MaxVerifyPasses int
	// MaxErrors bounds consecutive batch-level failures (SCAN or a move
	// pipeline failing on the network), retried with backoff from 100 ms
	// to 5 s, before Run gives up (0: 20, roughly a minute).
	MaxErrors int
	// Logf, if set, receives one line per notable event (errors, passes).
	Logf func(format string, args ...any)

	beforeRestore func() // test hook, see Mover
}

// Progress is a migrator's state: what a checkpoint persists, what a new
// leader resumes from (Config.From), and what STATUS shows. Counters are
// cumulative across passes and resumes.
type Progress struct {
	Source string `json:"source"`
	Epoch  uint64 `json:"epoch"`
	Phase  Phase  `json:"phase"`
	// Cursor is where the current pass resumes: every key SCAN returned
	// before it has been handled.
	Cursor uint64 `json:"cursor"`
	// Passes counts completed full passes (the first scan and verifications).
	Passes       int `json:"passes"`
	VerifyPasses int `json:"verify_passes"`
	// PassMoving counts moving keys found (not Missing) in the current pass;
	// a verification pass succeeds if it ends at 0.
	PassMoving int64 `json:"pass_moving"`

	KeysScanned  int64  `json:"keys_scanned"`
	KeysMoving   int64  `json:"keys_moving"`
	KeysMoved    int64  `json:"keys_moved"`
	BytesMoved   int64  `json:"bytes_moved"`
	AlreadyOnNew int64  `json:"already_on_new"` // busy or marker: a newer write or delete won
	Missing      int64  `json:"missing"`        // gone between SCAN and DUMP
	Expired      int64  `json:"expired_skipped"`
	Errors       int64  `json:"errors"`
	LastError    string `json:"last_error,omitempty"`
	// StuckKeys lists (Go-quoted) keys whose move failed in the latest
	// passes, for the operator; at most 32.
	StuckKeys []string `json:"stuck_keys,omitempty"`

	// SourceKeys is the source's DBSIZE when the migration first started.
	SourceKeys     int64   `json:"source_keys"`
	MovingFraction float64 `json:"moving_fraction"`
	// TotalEstimate ≈ SourceKeys × MovingFraction: keys expected to move.
	TotalEstimate int64 `json:"total_estimate"`
	// ScanFraction approximates how far the current pass is (SCAN walks
	// the hash table in reversed-bit order). Approximate.
	ScanFraction float64 `json:"scan_fraction"`
	// KeysPerSec and BytesPerSec are this run's average move rates (keys
	// handled: moved, already on new, or expired); ETA is the estimated time
	// to finish the first pass (0 when unknown or done).
	KeysPerSec  float64       `json:"keys_per_sec"`
	BytesPerSec float64       `json:"bytes_per_sec"`
	ETA         time.Duration `json:"eta_ns"`
	StartedAt   time.Time     `json:"started_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
	Paused      bool          `json:"paused"`
}

// Handled returns the moving keys dealt with: moved, already on new, or
// expired during the move.
func (p Progress) Handled() int64 { return p.KeysMoved + p.AlreadyOnNew + p.Expired }

// Migrator moves every moving key off one source node (rebalance.md §4.6):
// SCAN the source's primary, keep the moving keys, move them in pipelined
// batches to their destinations, then run verification passes until a
// full SCAN finds no moving key. Run one Migrator per source, concurrently;
// run them only in MIGRATING (after the FREEZE barrier), never before.
//
// Methods are safe for concurrent use; Run must be called once.
type Migrator struct {
	cfg    Config
	movers map[int]*Mover
	keysB  *bucket
	bytesB *bucket
	pace   *pacer // nil: no latency pacing
	// src reaches the source for SCAN, MGET and the movers' snapshots and
	// UNLINKs; raw are the raw connection pools Run closes (wire.go).
	src wire
	raw []*rawPool
	// srcSlots bounds the batches in flight on the source across all
	// destinations (2 × Inflight): a removed node's keys go to every
	// other node, Inflight to each would be dozens at once on it.
	srcSlots chan struct{}

	mu       sync.Mutex
	p        Progress
	paused   bool
	resumeCh chan struct{}
	abort    context.CancelCauseFunc
	aborted  bool

	runStart      time.Time
	handledAtRun  int64
	bytesAtRun    int64
	passDBSize    int64
	lastCkpt      time.Time    // under mu
	consecutive   atomic.Int32 // batch-level failures in a row
	sampleScanned int64        // keys scanned and found moving in PhaseScan (under mu)
	sampleMoving  int64
	// sampleInternal counts the markers and placement records among
	// sampleScanned: DBSIZE counts them, the estimate must not.
	sampleInternal int64
	passFailed     int64 // keys that failed in the current pass (under mu)
}

// NewMigrator validates cfg and returns a migrator ready to Run.
func NewMigrator(cfg Config) (*Migrator, error) {
	if cfg.Source == nil || cfg.Moving == nil {
		return nil, errors.New("rebalance: Config needs Source and Moving")
	}
	if len(cfg.Dests) == 0 {
		return nil, errors.New("rebalance: Config needs Dests")
	}
	if cfg.ScanCount <= 0 {
		cfg.ScanCount = DefaultScanCount
		if cfg.TargetDelay > 0 {
			// A SCAN holds the source for its whole reply; a migrator
			// that yields to clients takes it in smaller bites.
			cfg.ScanCount = PacedScanCount
		}
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.MaxVerifyPasses <= 0 {
		cfg.MaxVerifyPasses = DefaultMaxVerifyPasses
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = DefaultMaxErrors
	}
	if cfg.Inflight <= 0 {
		cfg.Inflight = DefaultInflight
	}
	m := &Migrator{cfg: cfg, movers: map[int]*Mover{}, keysB: newBucket(cfg.KeysPerSec), bytesB: newBucket(cfg.BytesPerSec),
		pace: newPacer(cfg.TargetDelay)}
	m.src = m.wireFor(cfg.Source)
	m.srcSlots = make(chan struct{}, 2*cfg.Inflight)
	for d, n := range cfg.Dests {
		if n == nil {
			return nil, fmt.Errorf("rebalance: Dests[%d] is nil", d)
		}
		m.movers[d] = &Mover{Old: cfg.Source, New: n, Epoch: cfg.Epoch, MarkerTTL: cfg.MarkerTTL,
			BatchKeys: cfg.BatchKeys, BatchBytes: cfg.BatchBytes, beforeRestore: cfg.beforeRestore,
			oldWire: m.src, newWire: m.wireFor(n)}
	}
	if cfg.From != nil {
		m.p = *cfg.From
		m.p.StuckKeys = append([]string(nil), cfg.From.StuckKeys...)
	}
	m.p.Source, m.p.Epoch = cfg.SourceName, cfg.Epoch
	if m.p.Phase == "" {
		m.p.Phase = PhaseScan
	}
	if cfg.MovingFraction > 0 {
		m.p.MovingFraction = cfg.MovingFraction
	}
	return m, nil
}

// wireFor is a raw connection pool for n (closed when Run returns), or n's
// own pipelines if n is not a go-redis client.
func (m *Migrator) wireFor(n Node) wire {
	if p := rawPoolFor(n); p != nil {
		m.raw = append(m.raw, p)
		return p
	}
	return clientWire{n}
}

// Pause stops the migrator at the next batch boundary until Resume.
func (m *Migrator) Pause() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.paused {
		m.paused, m.resumeCh = true, make(chan struct{})
	}
}

// Resume undoes Pause.
func (m *Migrator) Resume() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.paused {
		m.paused = false
		close(m.resumeCh)
	}
}

// Abort stops Run (at once, even mid-batch: every step is idempotent), which
// then returns ErrAborted after a final checkpoint.
func (m *Migrator) Abort() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.aborted = true
	if m.abort != nil {
		m.abort(ErrAborted)
	}
}

// Progress returns a snapshot of the migrator's state, with rates and ETA.
func (m *Migrator) Progress() Progress {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshotLocked()
}

func (m *Migrator) snapshotLocked() Progress {
	p := m.p
	p.StuckKeys = append([]string(nil), m.p.StuckKeys...)
	p.Paused = m.paused
	data := m.sampleScanned - m.sampleInternal
	if p.MovingFraction == 0 && data > 0 {
		p.MovingFraction = float64(m.sampleMoving) / float64(data)
	}
	keys := float64(p.SourceKeys)
	if m.sampleScanned > 0 {
		keys *= float64(data) / float64(m.sampleScanned)
	}
	p.TotalEstimate = int64(keys*p.MovingFraction + 0.5)
	if h := p.Handled(); p.TotalEstimate < h {
		p.TotalEstimate = h
	}
	p.ScanFraction = scanFraction(p.Cursor, m.passDBSize)
	if p.Phase == PhaseDone {
		p.ScanFraction = 1
	}
	if !m.runStart.IsZero() {
		if secs := time.Since(m.runStart).Seconds(); secs > 0 {
			p.KeysPerSec = float64(p.Handled()-m.handledAtRun) / secs
			p.BytesPerSec = float64(p.BytesMoved-m.bytesAtRun) / secs
		}
	}
	if p.Phase == PhaseScan && p.KeysPerSec > 0 {
		if left := p.TotalEstimate - p.Handled(); left > 0 {
			p.ETA = time.Duration(float64(left) / p.KeysPerSec * float64(time.Second))
		}
	}
	return p
}

// scanFraction maps a SCAN cursor to the approximate share of the hash
// table already visited: Redis iterates the table's buckets in reversed-bit
// order, so reversing the cursor's low log2(size) bits gives the position.
// The table size is taken as the next power of two >= dbsize.
func scanFraction(cursor uint64, dbsize int64) float64 {
	if cursor == 0 {
		return 0
	}
	n := bits.Len64(uint64(max(dbsize, 2) - 1))
	if c := bits.Len64(cursor); c > n {
		n = c
	}
	r := bits.Reverse64(cursor) >> (64 - n)
	return float64(r) / float64(uint64(1)<<n)
}

func (m *Migrator) logf(format string, args ...any) {
	if m.cfg.Logf != nil {
		m.cfg.Logf("rebalance %s: "+format, append([]any{m.cfg.SourceName}, args...)...)
	}
}

// checkpointDue reports whether CheckpointEvery has passed since the last
// checkpoint.
func (m *Migrator) checkpointDue() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Since(m.lastCkpt) >= m.cfg.CheckpointEvery
}

// checkpoint calls Config.Checkpoint with the current state.
func (m *Migrator) checkpoint() {
	m.mu.Lock()
	m.p.UpdatedAt = time.Now()
	p := m.snapshotLocked()
	m.lastCkpt = time.Now()
	m.mu.Unlock()
	if m.cfg.Checkpoint != nil {
		m.cfg.Checkpoint(p)
	}
}

func (m *Migrator) update(f func(p *Progress)) {
	m.mu.Lock()
	f(&m.p)
	m.mu.Unlock()
}

func (m *Migrator) noteError(err error) {
	m.update(func(p *Progress) { p.Errors++; p.LastError = err.Error() })
}

// backoff records a batch-level failure and sleeps before the retry; it
// returns an error when MaxErrors consecutive failures have been reached.
func (m *Migrator) backoff(ctx context.Context, err error) error {
	m.noteError(err)
	n := int(m.consecutive.Add(1))
	m.logf("%v (attempt %d/%d)", err, n, m.cfg.MaxErrors)
	if n >= m.cfg.MaxErrors {
		return fmt.Errorf("rebalance %s: giving up after %d consecutive failures: %w", m.cfg.SourceName, n, err)
	}
	d := min(5*time.Second, 100*time.Millisecond<<min(n-1, 6))
	return sleepCtx(ctx, d)
}

// Run migrates until the source holds no moving key (PhaseDone), and
// returns the final Progress. It stops early on ctx (returning ctx's
// error), Abort (ErrAborted), ErrPayloadVersion, MaxErrors consecutive
// batch failures, or ErrNotConverged. Every stop checkpoints first, so a
// later Run with From = the returned Progress continues where this one
// stopped.
func (m *Migrator) Run(ctx context.Context) (p Progress, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	m.mu.Lock()
	if m.aborted {
		m.mu.Unlock()
		return m.Progress(), ErrAborted
	}
	m.abort = cancel
	m.runStart = time.Now()
	m.handledAtRun, m.bytesAtRun = m.p.Handled(), m.p.BytesMoved
	if m.p.StartedAt.IsZero() {
		m.p.StartedAt = m.runStart
	}
	m.mu.Unlock()
	defer func() {
		for _, p := range m.raw {
			p.close()
		}
	}()
	defer func() {
		if c := context.Cause(ctx); err != nil && errors.Is(c, ErrAborted) {
			err = ErrAborted
		}
		m.checkpoint()
		p = m.Progress()
	}()

	if m.pace != nil {
		nodes := []Node{m.cfg.Source}
		for _, d := range m.cfg.Dests {
			nodes = append(nodes, d)
		}
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.pace.probeLoop(pctx, nodes)
		}()
		defer func() { stop(); <-done }()
	}

	size, err := m.dbsize(ctx)
	if err != nil {
		return p, err
	}
	m.update(func(p *Progress) {
		m.passDBSize = size
		if p.SourceKeys == 0 {
			p.SourceKeys = size
		}
	})
	m.mu.Lock()
	m.lastCkpt = time.Now()
	m.mu.Unlock()
	for {
		m.mu.Lock()
		phase, cursor := m.p.Phase, m.p.Cursor
		m.mu.Unlock()
		if phase == PhaseDone {
			return p, nil
		}
		if err := m.waitResumed(ctx); err != nil {
			return p, err
		}
		if err := m.pass(ctx, cursor); err != nil {
			return p, err
		}
		// A full pass ended.
		var done bool
		m.update(func(p *Progress) {
			p.Passes++
			switch p.Phase {
			case PhaseScan:
				if data := m.sampleScanned - m.sampleInternal; p.MovingFraction == 0 && data > 0 {
					p.MovingFraction = float64(m.sampleMoving) / float64(data)
				}
				p.Phase = PhaseVerify
			case PhaseVerify:
				p.VerifyPasses++
				if p.PassMoving == 0 {
					p.Phase, done = PhaseDone, true
				}
			}
			if m.passFailed == 0 {
				p.StuckKeys = nil
			}
			m.passFailed = 0
		})
		m.mu.Lock()
		pm, vp := m.p.PassMoving, m.p.VerifyPasses
		m.p.PassMoving = 0
		m.mu.Unlock()
		m.logf("pass done (found %d moving keys, verification passes %d)", pm, vp)
		m.checkpoint()
		if done {
			return p, nil
		}
		if vp >= m.cfg.MaxVerifyPasses {
			return p, fmt.Errorf("%w: %d passes on %s, last found %d", ErrNotConverged, vp, m.cfg.SourceName, pm)
		}
		if size, err := m.dbsize(ctx); err == nil {
			m.update(func(*Progress) { m.passDBSize = size })
		}
	}
}

func (m *Migrator) waitResumed(ctx context.Context) error {
	m.mu.Lock()
	paused, ch := m.paused, m.resumeCh
	m.mu.Unlock()
	if !paused {
		return nil
	}
	m.checkpoint()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (m *Migrator) dbsize(ctx context.Context) (int64, error) {
	for {
		n, err := m.cfg.Source.Do(ctx, "DBSIZE").Int64()
		if err == nil {
			m.consecutive.Store(0)
			return n, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err := m.backoff(ctx, fmt.Errorf("DBSIZE: %w", err)); err != nil {
			return 0, err
		}
	}
}

func scanOnce(ctx context.Context, w wire, cursor uint64, match string, count int) (keys [][]byte, next uint64, err error) {
	c := cmd("SCAN", strconv.AppendUint(nil, cursor, 10))
	if match != "" {
		c = append(c, []byte("MATCH"), []byte(match))
	}
	c = append(c, []byte("COUNT"), strconv.AppendInt(nil, int64(count), 10))
	err = w.roundTrip(ctx, []Command{c}, func(r [][]byte) error {
		v, _, ok := resp.Elements(r[0], nil)
		if !ok || len(v) != 2 {
			return fmt.Errorf("SCAN replied %s", replyText(r[0]))
		}
		cs, null, ok := resp.Bulk(v[0])
		if !ok || null {
			return fmt.Errorf("SCAN cursor %s", replyText(v[0]))
		}
		if next, err = strconv.ParseUint(string(cs), 10, 64); err != nil {
			return fmt.Errorf("SCAN cursor %q: %w", cs, err)
		}
		ks, _, ok := resp.Elements(v[1], nil)
		if !ok {
			return fmt.Errorf("SCAN keys %s", replyText(v[1]))
		}
		// One allocation holds every key of the reply (the wire's buffer
		// is reused by the next round trip).
		size := 0
		for _, k := range ks {
			size += len(k)
		}
		arena := make([]byte, 0, size)
		keys = make([][]byte, 0, len(ks))
		for _, k := range ks {
			b, null, ok := resp.Bulk(k)
			if !ok || null {
				return fmt.Errorf("SCAN key %s", replyText(k))
			}
			arena = append(arena, b...)
			keys = append(keys, arena[len(arena)-len(b):len(arena):len(arena)])
		}
		return nil
	})
	return keys, next, err
}

// classify groups the moving keys among one SCAN reply by destination and
// counts what it found. A key with a placement record moves by the
// record's hash key (the move carries the record).
func (m *Migrator) classify(keys, places [][]byte) (map[int]*batch, error) {
	groups := map[int]*batch{}
	var moving, internal int64
	for i, k := range keys {
		if IsMarker(k) {
			internal++
			continue
		}
		d, ok := m.cfg.Moving(placeOr(k, places[i]))
		if !ok {
			continue
		}
		if m.movers[d] == nil {
			return nil, fmt.Errorf("rebalance %s: Moving returned destination %d, which is not in Dests", m.cfg.SourceName, d)
		}
		g := groups[d]
		if g == nil {
			g = &batch{}
			groups[d] = g
		}
		g.keys = append(g.keys, k)
		g.places = append(g.places, places[i])
		moving++
	}
	m.update(func(p *Progress) {
		p.KeysScanned += int64(len(keys))
		p.KeysMoving += moving
		if p.Phase == PhaseScan {
			m.sampleScanned += int64(len(keys))
			m.sampleMoving += moving
			m.sampleInternal += internal
		}
	})
	return groups, nil
}

// batch is keys to move with their placement records (nil: none), as SCAN
// and MGET found them on the source in this stage.
type batch struct{ keys, places [][]byte }

// cut splits off the first n keys.
func (b batch) cut(n int) (head, rest batch) {
	return batch{b.keys[:n], b.places[:n]}, batch{b.keys[n:], b.places[n:]}
}

// moveBatch moves one batch, retrying batch-level failures (only the keys
// that were not handled) with backoff. Batches of one source run
// concurrently: everything here is safe for that.
func (m *Migrator) moveBatch(ctx context.Context, mv *Mover, keys batch) error {
	for len(keys.keys) > 0 {
		if err := m.waitResumed(ctx); err != nil {
			return err
		}
		n := min(len(keys.keys), mv.batchKeys())
		if err := sleepCtx(ctx, m.pace.pause()); err != nil && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err := m.keysB.take(ctx, float64(n)); err != nil {
			return context.Cause(ctx)
		}
		now, later := keys.cut(n)
		out, berr := mv.moveBatch(ctx, now.keys, now.places)
		var retry batch
		var fatal error
		var payloadBytes int64
		m.update(func(p *Progress) {
			for j, o := range out {
				payloadBytes += int64(o.Bytes)
				if berr != nil && o.Err == berr {
					retry.keys = append(retry.keys, o.Key)
					retry.places = append(retry.places, now.places[j])
					continue
				}
				if o.Result != Missing {
					p.PassMoving++
				}
				switch o.Result {
				case Moved:
					p.KeysMoved++
					p.BytesMoved += int64(o.Bytes)
				case AlreadyOnNew:
					p.AlreadyOnNew++
				case Missing:
					p.Missing++
				case Expired:
					p.Expired++
				}
				if o.Err != nil {
					p.Errors++
					p.LastError = fmt.Sprintf("%q: %v", o.Key, o.Err)
					if o.Result == Failed {
						m.passFailed++
						if q := strconv.Quote(string(o.Key)); len(p.StuckKeys) < maxStuckKeys && !slices.Contains(p.StuckKeys, q) {
							p.StuckKeys = append(p.StuckKeys, q)
						}
					}
					if errors.Is(o.Err, ErrPayloadVersion) {
						fatal = o.Err
					}
				}
			}
		})
		if fatal != nil {
			return fatal
		}
		if err := m.bytesB.take(ctx, float64(payloadBytes)); err != nil {
			return context.Cause(ctx)
		}
		keys = batch{append(retry.keys, later.keys...), append(retry.places, later.places...)}
		if berr != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if err := m.backoff(ctx, fmt.Errorf("move batch: %w", berr)); err != nil {
				return err
			}
			continue
		}
		m.consecutive.Store(0)
	}
	return nil
}
