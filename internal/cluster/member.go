package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/spanner"
	"github.com/flowerinthenight/hedge/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
)

// Config configures cluster mode.
type Config struct {
	// SpannerDB is "projects/P/instances/I/databases/D". The Spanner client
	// honours SPANNER_EMULATOR_HOST.
	SpannerDB string
	// HedgeAddr is this pod's hedge address "host:port", its identity in the
	// cluster (the pod IP in Kubernetes). hedge listens on port (TCP
	// protocol) and port+1 (gRPC). ":port" lets hedge pick the host IP.
	HedgeAddr string

	LockTable    string // spindle lock table; default "jupiter_lock"
	LogTable     string // hedge log table; default "jupiter_log"
	RingTable    string // default "jupiter_ring"
	HistoryTable string // default "jupiter_ring_history"
	// LockName is the spindle lock name (default "jupiter"); the lock row
	// is HedgeLockRow(LockName). Pods with the same LockName form one
	// cluster.
	LockName string
	// RingName is the ring's row key in RingTable; default "default".
	RingName string

	// LockDuration is spindle's lease: a dead leader is replaced after
	// about this long. hedge's minimum is 2s; default 10s.
	LockDuration time.Duration
	// SyncInterval is hedge's membership sync (member→leader heartbeat and
	// leader→all member list); hedge's minimum is 2s; default 10s.
	SyncInterval time.Duration
	// PollInterval is how often pods re-read the ring from Spanner, which
	// bounds how long a missed broadcast delays a pod. Default 2s.
	PollInterval time.Duration
	// BroadcastTimeout bounds a leader's announcement. Default 2s.
	BroadcastTimeout time.Duration
	// SendRetries is hedge SendToLeader's retry count; default 10.
	SendRetries int
	// Immediate switches the ring at once on a change, without moving keys
	// (--rebalance=remap). Default: a staged rebalance.
	Immediate bool
	// MemberLease is the member registry lease (default 10s): a pod that
	// stopped heartbeating for this long no longer holds up a rebalance.
	MemberLease time.Duration
	// FreezeTimeout bounds the freeze barrier before the rebalance goes
	// back to prepare (default 5s; aborted instead when one pod held up
	// MaxFreezeRetreats of them in a row, or after MaxRetreating);
	// PrepareTimeout bounds the prepare barrier (30s).
	FreezeTimeout, PrepareTimeout time.Duration
}

// Defaults for Config.
const (
	DefaultLockName         = "jupiter"
	DefaultRingName         = "default"
	DefaultLockDuration     = 10 * time.Second
	DefaultSyncInterval     = 10 * time.Second
	DefaultPollInterval     = 2 * time.Second
	DefaultBroadcastTimeout = 2 * time.Second
)

// WithDefaults returns c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	d := DefaultTableNames()
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&c.LockTable, d.Lock)
	set(&c.LogTable, d.Log)
	set(&c.RingTable, d.Ring)
	set(&c.HistoryTable, d.History)
	set(&c.LockName, DefaultLockName)
	set(&c.RingName, DefaultRingName)
	setD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	setD(&c.LockDuration, DefaultLockDuration)
	setD(&c.SyncInterval, DefaultSyncInterval)
	setD(&c.PollInterval, DefaultPollInterval)
	setD(&c.BroadcastTimeout, DefaultBroadcastTimeout)
	if c.SendRetries == 0 {
		c.SendRetries = 10
	}
	return c
}

// Tables returns the table names of c.
func (c Config) Tables() TableNames {
	return TableNames{Lock: c.LockTable, Log: c.LogTable, Ring: c.RingTable, History: c.HistoryTable}
}

// Validate checks c (after WithDefaults).
func (c Config) Validate() error {
	if !dbPathRe.MatchString(c.SpannerDB) {
		return fmt.Errorf("cluster: spanner database %q is not projects/P/instances/I/databases/D", c.SpannerDB)
	}
	if _, port, err := net.SplitHostPort(c.HedgeAddr); err != nil || port == "" {
		return fmt.Errorf("cluster: hedge address %q is not host:port", c.HedgeAddr)
	}
	// spindle interpolates the lock row name into SQL string literals.
	if c.LockName == "" || strings.ContainsAny(c.LockName, "'\\\"` \t\r\n") {
		return fmt.Errorf("cluster: lock name %q must not be empty or contain quotes, backslashes or spaces", c.LockName)
	}
	if c.RingName == "" {
		return errors.New("cluster: empty ring name")
	}
	if c.LockDuration < 2*time.Second || c.SyncInterval < 2*time.Second {
		return errors.New("cluster: hedge needs a lock duration and a sync interval of at least 2s")
	}
	return c.Tables().Validate()
}

// Handlers are a Member's message handlers. ctx is the Member's lifetime.
type Handlers struct {
	// Leader handles what pods send with SendToLeader (only called while
	// this pod holds the lock). An error reaches the sender as a Send
	// error, which SendToLeader retries; report request failures in the
	// reply instead.
	Leader func(ctx context.Context, msg []byte) ([]byte, error)
	// Broadcast handles Broadcast messages (on every pod, the sender too).
	Broadcast func(ctx context.Context, msg []byte) ([]byte, error)
}

// errNoHandler is returned to hedge before handlers are installed; senders
// retry.
var errNoHandler = errors.New("cluster: pod is starting, no handler yet")

// Member is this pod's membership in the hedge cluster: spindle leader
// election on the Spanner lock table, hedge's member list, Send to the
// leader and Broadcast to all. It wraps hedge.Op so the rest of jupiter
// never touches hedge directly, caches the leader flag from spindle's
// callback (hedge's HasLock reads Spanner on every call) and bounds hedge's
// blocking calls with contexts.
type Member struct {
	cfg       Config
	log       *slog.Logger
	client    *spanner.Client
	ownClient bool
	healer    *sessionHealer // replaces lost Spanner sessions (nil with NewWithClient)
	rpcs      *rpcCounter    // counts the client's Spanner calls (nil with NewWithClient)
	op        *hedge.Op

	handlers   atomic.Pointer[Handlers]
	isLeader   atomic.Bool
	leaderSeen atomic.Int64 // unix nanos of spindle's last leader callback
	leaderAddr atomic.Pointer[string]
	refresh    chan struct{}
	lookup     atomic.Bool // a leader lookup is in flight
	// lockGone is when refreshLeader first saw no lock row in an unbroken
	// run (zero: the row exists); owned by refreshLeader.
	lockGone time.Time

	startOnce sync.Once
	stopOnce  sync.Once
	runCtx    context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New creates a Member and its Spanner client (closed by Stop). cfg is
// completed with WithDefaults and validated. h may be the zero Handlers and
// set later with SetHandlers (the Controller needs the Member first).
func New(cfg Config, logger *slog.Logger, h Handlers) (*Member, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc := &rpcCounter{}
	client, healer, err := newSpannerClient(context.Background(), cfg.SpannerDB, logger, rc)
	if err != nil {
		return nil, fmt.Errorf("cluster: spanner client: %w", err)
	}
	m := newMember(cfg, client, logger, h)
	m.ownClient, m.healer, m.rpcs = true, healer, rc
	return m, nil
}

// NewWithClient is New with a caller-owned Spanner client (not closed by
// Stop). Unlike New's, that client does not replace a lost session.
func NewWithClient(cfg Config, client *spanner.Client, logger *slog.Logger, h Handlers) (*Member, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newMember(cfg, client, logger, h), nil
}

func newMember(cfg Config, client *spanner.Client, logger *slog.Logger, h Handlers) *Member {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Member{
		cfg:     cfg,
		log:     logger.With("component", "cluster.member"),
		client:  client,
		refresh: make(chan struct{}, 1),
	}
	m.runCtx, m.cancel = context.WithCancel(context.Background())
	m.SetHandlers(h)
	m.op = hedge.New(client, cfg.HedgeAddr, cfg.LockTable, cfg.LockName, cfg.LogTable,
		hedge.WithDuration(cfg.LockDuration.Milliseconds()),
		hedge.WithGroupSyncInterval(cfg.SyncInterval),
		hedge.WithLeaderCallback(nil, m.onLeader),
		hedge.WithLeaderHandler(nil, func(_ any, msg []byte) ([]byte, error) {
			if h := m.handlers.Load(); h.Leader != nil {
				return h.Leader(m.runCtx, msg)
			}
			return nil, errNoHandler
		}),
		// Always set: a nil broadcast handler disables hedge's membership heartbeat.
		hedge.WithBroadcastHandler(nil, func(_ any, msg []byte) ([]byte, error) {
			if h := m.handlers.Load(); h.Broadcast != nil {
				return h.Broadcast(m.runCtx, msg)
			}
			return nil, errNoHandler
		}),
		hedge.WithLogger(newStdLogger(logger.With("component", "hedge"))),
	)
	return m
}

// SetHandlers installs the message handlers (safe at any time).
func (m *Member) SetHandlers(h Handlers) { m.handlers.Store(&h) }

// Spanner returns the Member's Spanner client (for the Store).
func (m *Member) Spanner() *spanner.Client { return m.client }

// SessionsReplaced returns how many times the Member's Spanner client
// replaced a session the server had lost (see sessionHealer); 0 with
// NewWithClient.
func (m *Member) SessionsReplaced() int64 {
	if m.healer == nil {
		return 0
	}
	return m.healer.Replaced()
}

// SpannerRPCs returns how many Spanner calls the Member's client has made
// (zero with NewWithClient): jupiter's, spindle's and hedge's together.
func (m *Member) SpannerRPCs() SpannerRPCs { return m.rpcs.snapshot() }

// Config returns the effective configuration (defaults applied).
func (m *Member) Config() Config { return m.cfg }

// Start runs hedge (and through it spindle) in a goroutine owned by the
// Member, and returns once hedge listens, or with hedge's error (e.g. a port
// in use). It runs until ctx is cancelled or Stop is called.
func (m *Member) Start(ctx context.Context) error {
	err := errors.New("cluster: member already started")
	m.startOnce.Do(func() { err = m.start(ctx) })
	return err
}

func (m *Member) start(ctx context.Context) error {
	stop := context.AfterFunc(ctx, m.cancel)
	runErr := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer stop()
		err := m.op.Run(m.runCtx)
		if err != nil {
			m.log.Error("hedge stopped", "err", err)
		}
		runErr <- err
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !m.op.IsRunning() {
		select {
		case err := <-runErr:
			if err == nil {
				err = context.Canceled
			}
			m.cancel()
			return fmt.Errorf("cluster: hedge on %s: %w", m.cfg.HedgeAddr, err)
		case <-m.runCtx.Done():
			return m.runCtx.Err()
		case <-tick.C:
		}
	}
	m.wg.Add(1)
	go m.refreshLeader()
	m.log.Info("hedge member started", "self", m.Self(), "lock", HedgeLockRow(m.cfg.LockName))
	return nil
}

// Stop stops hedge and waits for it; it closes the Spanner client if New
// created it. Safe to call more than once and without Start.
func (m *Member) Stop() {
	m.stopOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.isLeader.Store(false)
		if m.ownClient {
			m.client.Close()
		}
	})
}

// onLeader is spindle's leader callback (via hedge). spindle calls it
// on every lock round (every LockDuration) with "1 <self>" while this pod
// holds the lock and "0 <self>" while another pod does.
func (m *Member) onLeader(_ any, msg []byte) {
	leader := len(msg) > 0 && msg[0] == '1'
	m.leaderSeen.Store(time.Now().UnixNano())
	if m.isLeader.Swap(leader) != leader {
		m.log.Info("leadership changed", "leader", leader, "self", m.Self())
	}
	if leader {
		self := m.Self()
		m.leaderAddr.Store(&self)
		return
	}
	select { // learn who leads, outside spindle's goroutine
	case m.refresh <- struct{}{}:
	default:
	}
}

// refreshLeader keeps the cached leader address current: on every callback
// that says "not me" (spindle's round, every LockDuration) and, as a
// backstop for when those stop (spindle skips the callback when its lock
// read fails), on a LockDuration ticker that looks up only if no lookup
// ran for a LockDuration. Each lookup is a Spanner read, on every pod.
func (m *Member) refreshLeader() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.LockDuration)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-m.runCtx.Done():
			return
		case <-m.refresh:
		case <-t.C:
			if time.Since(last) < m.cfg.LockDuration {
				continue
			}
		}
		if !m.op.IsRunning() {
			continue
		}
		last = time.Now()
		if m.IsLeader() {
			m.lockGone = time.Time{}
			continue
		}
		switch addr, err := m.lookupLeader(); {
		case err != nil:
			m.lockGone = time.Time{}
		case addr != "":
			m.lockGone = time.Time{}
			m.leaderAddr.Store(&addr)
		default: // no lock row (or one without a writer)
			m.lockRowMissing()
		}
	}
}

// lockRowMissing re-creates spindle's lock row once it has been missing
// for 2 lock durations, as a vacant lease that expired long ago (no
// writer, a token nobody holds). spindle inserts the row itself only from
// a process that never lost an initial insert; in a cluster that has been
// through a failover no process qualifies, so after the database was
// recreated (or the lock row deleted) no leader would ever be elected
// again. With the vacant row spindle's ordinary takeover elects one at its
// next round. Safe for every pod to try: the insert fails if the row
// exists, and a token no process holds passes no Fence.
func (m *Member) lockRowMissing() {
	now := time.Now()
	if m.lockGone.IsZero() {
		m.lockGone = now
		return
	}
	gone := now.Sub(m.lockGone)
	if gone < 2*m.cfg.LockDuration {
		return
	}
	m.lockGone = time.Time{}
	ctx, cancel := context.WithTimeout(m.runCtx, m.cfg.LockDuration)
	defer cancel()
	expired := now.Add(-time.Hour)
	_, err := m.client.Apply(ctx, []*spanner.Mutation{spanner.Insert(m.cfg.LockTable,
		[]string{"name", "heartbeat", "token", "writer"},
		[]any{HedgeLockRow(m.cfg.LockName), expired, expired, ""})})
	switch {
	case spanner.ErrCode(err) == codes.AlreadyExists: // spindle or another pod was first
	case err != nil:
		m.log.Warn("spindle's lock row is missing; re-creating it failed", "lock", HedgeLockRow(m.cfg.LockName), "err", err)
	default:
		m.log.Warn("spindle's lock row was missing (database recreated?); re-created it vacant so that a leader is elected",
			"lock", HedgeLockRow(m.cfg.LockName), "missing_for", gone.Round(time.Millisecond))
	}
}

// lookupLeader is hedge's Leader (a Spanner read of the lock row that takes
// no context), bounded by LockDuration so that a Spanner outage cannot pin
// refreshLeader — and Stop, which waits for it. A lookup left behind ends
// when its read does; at most one is in flight.
func (m *Member) lookupLeader() (string, error) {
	if !m.lookup.CompareAndSwap(false, true) {
		return "", errors.New("cluster: leader lookup already in flight")
	}
	type res struct {
		addr string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		defer m.lookup.Store(false)
		addr, err := m.op.Leader()
		ch <- res{addr, err}
	}()
	t := time.NewTimer(m.cfg.LockDuration)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.addr, r.err
	case <-t.C:
		return "", errors.New("cluster: leader lookup timed out")
	case <-m.runCtx.Done():
		return "", m.runCtx.Err()
	}
}

// IsLeader reports whether this pod holds the lock, from the cached
// callback (no Spanner read). The flag expires if spindle has not confirmed
// it for 3 lock durations (e.g. Spanner unreachable). Leader-only writes
// must still go through Fence; this is for routing and status.
func (m *Member) IsLeader() bool {
	if !m.isLeader.Load() {
		return false
	}
	return time.Since(time.Unix(0, m.leaderSeen.Load())) < 3*m.cfg.LockDuration
}

// Leader returns the leader's hedge address as last observed ("" if not
// known yet). hedge exposes it through spindle: the lock row's writer
// column is the leader's spindle id, which hedge sets to its host:port.
func (m *Member) Leader() string {
	if m.IsLeader() {
		return m.Self()
	}
	if p := m.leaderAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// Self returns this pod's hedge address (host:port).
func (m *Member) Self() string { return m.op.HostPort() }

// Members returns the hedge member list as this pod knows it, sorted. It is
// eventually consistent (hedge syncs it every SyncInterval).
func (m *Member) Members() []string {
	ms := m.op.Members()
	slices.Sort(ms)
	return ms
}

// Fence implements Fencer: it confirms leadership by reading the lock table
// (spindle HasLock) and returns this pod's id and spindle token. A failure
// to read Spanner is returned as such, not as ErrNotLeader.
func (m *Member) Fence(ctx context.Context) (string, uint64, error) {
	if !m.op.IsRunning() {
		return "", 0, fmt.Errorf("%w: hedge is not running", ErrNotLeader)
	}
	type res struct {
		ok  bool
		tok uint64
	}
	ch := make(chan res, 1)
	go func() { // HasLock takes no context
		ok, tok := m.op.HasLock()
		ch <- res{ok, tok}
	}()
	select {
	case r := <-ch:
		if r.ok {
			return m.Self(), r.tok, nil
		}
	case <-ctx.Done():
		return "", 0, fmt.Errorf("cluster: fence: %w", ctx.Err())
	}
	m.isLeader.Store(false)
	// HasLock says false both when another pod leads and when Spanner
	// failed; tell them apart for the caller.
	writer, err := m.lockWriter(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: fence: read lock: %w", err)
	}
	return "", 0, fmt.Errorf("%w (leader is %q)", ErrNotLeader, writer)
}

// lockWriter reads the lock row's writer (spindle's getCurrentToken query).
func (m *Member) lockWriter(ctx context.Context) (string, error) {
	iter := m.client.Single().Query(ctx, spanner.Statement{
		SQL:    "select token, writer from " + m.cfg.LockTable + " where name = @name",
		Params: map[string]any{"name": HedgeLockRow(m.cfg.LockName)},
	})
	defer iter.Stop()
	var writer string
	for {
		row, err := iter.Next()
		if err == iterator.Done {
			return writer, nil
		}
		if err != nil {
			return "", err
		}
		var t spanner.NullTime
		var w spanner.NullString
		if err := row.Columns(&t, &w); err != nil {
			return "", err
		}
		writer = w.StringVal
	}
}

// SendToLeader sends msg to the leader's Leader handler and returns its
// reply. It uses hedge.SendToLeader, which retries (SendRetries times,
// exponential backoff) — so the leader handler must be idempotent. ctx
// bounds the whole exchange.
func (m *Member) SendToLeader(ctx context.Context, msg []byte) ([]byte, error) {
	if !m.op.IsRunning() {
		return nil, hedge.ErrNotRunning
	}
	b, err := hedge.SendToLeader(ctx, m.op, msg, &hedge.SendToLeaderArgs{Retries: m.cfg.SendRetries})
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("cluster: send to leader: %w", ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: send to leader: %w", err)
	}
	return b, nil
}

// Broadcast sends msg to every member hedge knows (this pod included) and
// returns the replies that arrive before ctx is done; members that have not
// answered by then are left out. hedge's own Broadcast has no deadline (it
// blocks until every member answers), so it runs in the background and is
// drained after ctx ends.
func (m *Member) Broadcast(ctx context.Context, msg []byte) []BroadcastResult {
	if !m.op.IsRunning() {
		return nil
	}
	out := make(chan hedge.BroadcastOutput, 16)
	go func() {
		// hedge closes out when done, except when it is not running (nil).
		if res := m.op.Broadcast(ctx, msg, hedge.BroadcastArgs{Out: out}); res == nil {
			close(out)
		}
	}()
	var results []BroadcastResult
	for {
		select {
		case o, ok := <-out:
			if !ok {
				return results
			}
			results = append(results, BroadcastResult{ID: o.Id, Reply: o.Reply, Err: o.Error})
		case <-ctx.Done():
			go func() {
				for range out {
				}
			}()
			return results
		}
	}
}
