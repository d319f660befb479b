package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/health"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// LeaderHandlerTimeout bounds the leader's work on one admin request
// (Spanner reads, ping, CAS, announcement); the sender's context bounds its
// wait independently.
const LeaderHandlerTimeout = 30 * time.Second

// Options are the runtime dependencies of Open.
type Options struct {
	// Holder is the ring the data path routes with; the Syncer keeps it
	// current. nil: Open makes one (Cluster.Holder).
	Holder *ring.Holder
	// Publish, if set, receives every ring the Syncer applies, before the
	// pod reports that version (see SyncerConfig.Publish). `jupiter serve`
	// hands it to the proxy Router and marks the pod ready on the first.
	Publish func(st *State)
	// Seed is written as ring version 1 by the leader if Spanner has no
	// ring yet (--backends in cluster mode). Ignored once a ring exists.
	Seed []ring.Node
	// Pinger checks nodes before ADD. nil: DialPinger with a 2s timeout.
	Pinger Pinger
	// Prepare runs before a pod publishes a new ring (see SyncerConfig).
	Prepare func(ctx context.Context, next *State) error
	Logger  *slog.Logger
	// ControlNode returns a control-path client for a backend address
	// (primary endpoint, the data path's AUTH/TLS): the leader's migrator
	// and cleanup use it. nil means changes switch the ring at once
	// (Config.Immediate).
	ControlNode func(addr string) (rebalance.Node, error)
	// Migrator is the base migrator configuration (rates, batch sizes).
	Migrator rebalance.Config
	// PodLoad, if set, runs the fleet load exchange (LoadExchange) every
	// LoadInterval: PodLoad is this pod's request rate per node, FleetLoad
	// receives the fleet-wide sums. Both are required together.
	PodLoad      func() map[string]float64
	FleetLoad    func(capacity.Fleet)
	LoadInterval time.Duration
	// PodHealth and SetHealth, if set (with PodLoad), add fleet node
	// health to the load exchange: every pod reports whether it reaches
	// each node, the leader decides by quorum (package health) and every
	// pod gets the verdict through SetHealth (LoadConfig).
	PodHealth func() map[string]string
	SetHealth func(health.Verdict)
	// HotKeys is this pod's hot-key ranking (hotkeys.Sketch.Top), which
	// it reports when the leader merges the fleet's (HotKeysExchange);
	// nil when the pod samples no hot keys.
	HotKeys func(n int, by hotkeys.Rank) []hotkeys.Item
}

// Cluster is cluster mode assembled: the hedge Member, the Spanner ring
// Store, the leader's Controller and the pod's Syncer, with the Member's
// handlers wired to the Controller and the Syncer. It is what `jupiter
// serve --spanner-db …` runs; the parts stay exported for tests and tools.
type Cluster struct {
	Member     *Member
	Store      *SpannerStore
	Controller *Controller
	Syncer     *Syncer
	// Rebalancer drives staged rebalances while this pod leads (nil with
	// Config.Immediate or without Options.ControlNode).
	Rebalancer *Rebalancer
	Holder     *ring.Holder
	// Load sums the pods' request rates per node (nil without
	// Options.PodLoad).
	Load *LoadExchange
	// HotKeys merges the pods' hot keys through the leader, on demand.
	HotKeys *HotKeysExchange

	controlNode func(addr string) (rebalance.Node, error)
	log         *slog.Logger
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// Open builds a Cluster (nothing runs until Start). cfg gets WithDefaults.
func Open(cfg Config, o Options) (*Cluster, error) {
	if o.Holder == nil {
		o.Holder = ring.NewHolder(nil)
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	m, err := New(cfg, lg, Handlers{})
	if err != nil {
		return nil, err
	}
	cfg = m.Config()
	store, err := NewSpannerStore(m.Spanner(), cfg.Tables(), HedgeLockRow(cfg.LockName), cfg.RingName)
	if err != nil {
		m.Stop()
		return nil, err
	}
	pinger := o.Pinger
	if pinger == nil {
		pinger = DialPinger{Timeout: 2 * time.Second}
	}
	ctl, err := NewController(ControllerConfig{
		Store: store, Fencer: m, Broadcaster: m, Pinger: pinger, Logger: lg,
		Self: m.Self(), BroadcastTimeout: cfg.BroadcastTimeout,
		Immediate: cfg.Immediate || o.ControlNode == nil,
	})
	if err != nil {
		m.Stop()
		return nil, err
	}
	sy, err := NewSyncer(SyncerConfig{
		Store: store, Holder: o.Holder, PollInterval: cfg.PollInterval,
		Seed: o.Seed, Seeder: ctl.Seed, Reseeder: ctl.Reseed, IsLeader: m.IsLeader, Prepare: o.Prepare,
		Publish: o.Publish, Self: m.Self(), Logger: lg,
		Registry: store, Lease: cfg.MemberLease,
	})
	if err != nil {
		m.Stop()
		return nil, err
	}
	if len(o.Seed) > 0 {
		// A change must not create the first ring while --backends would
		// seed it: let the Syncer seed (or re-seed) first.
		ctl.cfg.Seeded = func() { sy.Notify(math.MaxUint64) }
	}
	var reb *Rebalancer
	if o.ControlNode != nil {
		reb, err = NewRebalancer(RebalancerConfig{
			Controller: ctl, Registry: store, Progress: store, IsLeader: m.IsLeader,
			Node: o.ControlNode, Logger: lg, Migrator: o.Migrator,
			FreezeTimeout: cfg.FreezeTimeout, PrepareTimeout: cfg.PrepareTimeout,
		})
		if err != nil {
			m.Stop()
			return nil, err
		}
	}
	var load *LoadExchange
	if o.PodLoad != nil {
		load, err = NewLoadExchange(LoadConfig{Interval: o.LoadInterval, Self: m.Self(), IsLeader: m.IsLeader,
			Broadcast: m.Broadcast, PodLoad: o.PodLoad, SetFleet: o.FleetLoad, Logger: lg,
			PodHealth: o.PodHealth, SetHealth: o.SetHealth, Members: func() int { return len(m.Members()) }})
		if err != nil {
			m.Stop()
			return nil, err
		}
	}
	hot, err := NewHotKeysExchange(HotKeysConfig{Self: m.Self(), Local: o.HotKeys, Broadcast: m.Broadcast,
		SendToLeader: m.SendToLeader, Timeout: cfg.BroadcastTimeout, Logger: lg})
	if err != nil {
		m.Stop()
		return nil, err
	}
	m.SetHandlers(Handlers{
		Leader: func(ctx context.Context, msg []byte) ([]byte, error) {
			ctx, cancel := context.WithTimeout(ctx, LeaderHandlerTimeout)
			defer cancel()
			if rep, ok := hot.HandleLeader(ctx, msg); ok {
				return rep, nil
			}
			return ctl.HandleLeaderMessage(ctx, msg), nil
		},
		Broadcast: func(ctx context.Context, msg []byte) ([]byte, error) {
			if load != nil {
				if rep, ok := load.Handle(msg); ok {
					return rep, nil
				}
			}
			if rep, ok := hot.HandleBroadcast(msg); ok {
				return rep, nil
			}
			return sy.HandleBroadcast(ctx, msg), nil
		},
	})
	return &Cluster{Member: m, Store: store, Controller: ctl, Syncer: sy, Rebalancer: reb, Holder: o.Holder, Load: load,
		HotKeys: hot, controlNode: o.ControlNode, log: lg.With("component", "cluster")}, nil
}

// Start starts the hedge member and the ring Syncer. The pod is Ready once
// the Syncer has applied a ring from Spanner. Both run until ctx is done or
// Stop/Shutdown is called; a server passes a context that outlives its
// drain and calls Shutdown.
func (c *Cluster) Start(ctx context.Context) error {
	if err := c.Member.Start(ctx); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.Syncer.Run(sctx)
	}()
	if c.Rebalancer != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.Rebalancer.Run(sctx)
		}()
	}
	if c.Load != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.Load.Run(sctx)
		}()
	}
	return nil
}

// Stop stops the Syncer and the Member and waits for them. With Spanner
// unreachable hedge may never return (its membership loop reads Spanner
// without a deadline); use Shutdown to bound the wait.
func (c *Cluster) Stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	// Leave the member registry so a running rebalance's barriers do not
	// wait for this pod's lease to expire.
	lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := c.Syncer.Leave(lctx); err != nil {
		c.log.Warn("could not leave the member registry (its lease will expire)", "err", err)
	}
	cancel()
	c.Member.Stop()
}

// Shutdown is Stop bounded by ctx: it returns ctx's error if hedge has not
// stopped by then (the process is about to exit; the lock lease expires on
// its own and another pod takes over).
func (c *Cluster) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.Stop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: hedge member did not stop in time: %w", ctx.Err())
	}
}

// State returns the ring state this pod serves (nil before the first).
func (c *Cluster) State() *State { return c.Syncer.State() }

// StoreError reports whether the last ring read from Spanner failed.
func (c *Cluster) StoreError() error { return c.Syncer.StoreError() }

// Ready reports whether this pod serves a ring read from Spanner.
func (c *Cluster) Ready() bool { return c.Syncer.Ready() }

// Submit forwards an admin request to the leader (whichever pod it is,
// this one included) and returns its reply. A request without a request id
// gets a random one, which makes SendToLeader's retries safe. On success
// Submit waits (within ctx, at most 2s) until this pod serves the new
// version, so that a STATUS right after a change on the same pod shows it.
// A non-nil error means the leader could not be reached (retry); a refused
// request is a reply with ok=false (see ReplyError).
func (c *Cluster) Submit(ctx context.Context, req *jupiterv1.AdminRequest) (*jupiterv1.AdminReply, error) {
	if req.GetRequestId() == "" {
		req.RequestId = NewRequestID()
	}
	if dl, ok := ctx.Deadline(); ok && req.GetExpiresUnixMs() == 0 {
		// hedge keeps retrying after we give up; the leader drops the
		// request once nobody waits for its answer.
		req.ExpiresUnixMs = dl.UnixMilli()
	}
	b, err := proto.Marshal(&jupiterv1.LeaderMessage{Msg: &jupiterv1.LeaderMessage_Admin{Admin: req}})
	if err != nil {
		return nil, err
	}
	out, err := c.Member.SendToLeader(ctx, b)
	if err != nil {
		return nil, err
	}
	var lr jupiterv1.LeaderReply
	if err := proto.Unmarshal(out, &lr); err != nil {
		return nil, fmt.Errorf("cluster: undecodable reply from leader: %w", err)
	}
	rep := lr.GetAdmin()
	if rep == nil {
		return nil, errors.New("cluster: leader replied without an admin reply")
	}
	if rep.GetOk() && rep.GetVersion() > c.Syncer.Version() {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c.Syncer.waitApplied(wctx, rep.GetVersion())
		cancel()
	}
	return rep, nil
}

// NodeStatus is one ring node in Status.
type NodeStatus struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Weight int    `json:"weight"`
}

// Status is what `JUPITER STATUS` and /v1/status report about cluster mode.
type Status struct {
	Self        string       `json:"self"`
	Leader      string       `json:"leader"`
	IsLeader    bool         `json:"is_leader"`
	Members     []string     `json:"members"`
	RingVersion uint64       `json:"ring_version"`
	Stage       string       `json:"stage"`
	Nodes       []NodeStatus `json:"nodes"`
	Ready       bool         `json:"ready"`
	// Change is what produced RingVersion (e.g. "ADD 10.0.0.4:6379 w=1")
	// and RingLeader the pod that wrote it.
	Change        string    `json:"change,omitempty"`
	RingLeader    string    `json:"ring_leader,omitempty"`
	LastSync      time.Time `json:"last_sync"`
	LastSyncError string    `json:"last_sync_error,omitempty"`
	// SpannerError is set while the ring cannot be read from Spanner.
	SpannerError string `json:"spanner_error,omitempty"`
}

// Status returns a snapshot without any Spanner read.
func (c *Cluster) Status() Status {
	s := Status{
		Self:     c.Member.Self(),
		Leader:   c.Member.Leader(),
		IsLeader: c.Member.IsLeader(),
		Members:  c.Member.Members(),
		Stage:    StageStable,
		Ready:    c.Syncer.Ready(),
	}
	if st := c.Syncer.State(); st != nil {
		s.RingVersion = st.Version
		s.Stage = stageOr(st.Stage)
		for _, n := range st.Ring.Nodes() {
			s.Nodes = append(s.Nodes, NodeStatus{Name: n.Name, Addr: n.Addr, Weight: n.Weight})
		}
		if s.Leader == "" {
			s.Leader = st.Leader
		}
		s.Change, s.RingLeader = st.Change, st.Leader
	}
	var err error
	s.LastSync, err = c.Syncer.LastSync()
	if err != nil {
		s.LastSyncError = err.Error()
	}
	if err := c.Syncer.StoreError(); err != nil {
		s.SpannerError = err.Error()
	}
	return s
}

// NewRequestID returns a random admin request id (32 hex digits).
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// DialPinger is the default Pinger: it connects to addr, sends a RESP PING
// and accepts any RESP status or error line as proof of life (a server that
// answers -NOAUTH is reachable; credentials are the data path's business).
type DialPinger struct {
	Timeout time.Duration // per attempt; default 2s
	// TLSConfig, if set, wraps the connection in TLS (Memorystore in-transit
	// encryption).
	TLSConfig *tls.Config
}

// Ping implements Pinger.
func (p DialPinger) Ping(ctx context.Context, addr string) error {
	to := p.Timeout
	if to <= 0 {
		to = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	var conn net.Conn
	var err error
	if p.TLSConfig != nil {
		d := tls.Dialer{Config: p.TLSConfig}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no reply to PING: %w", err)
	}
	if line[0] != '+' && line[0] != '-' {
		return fmt.Errorf("not a Redis server (PING reply %q)", line)
	}
	return nil
}

var _ RebalanceAPI = (*Cluster)(nil)

// RebalanceProgress implements RebalanceAPI.
func (c *Cluster) RebalanceProgress(ctx context.Context, epoch uint64) []rebalance.Progress {
	if c.Rebalancer == nil {
		return nil
	}
	return c.Rebalancer.Progress(ctx, epoch)
}

// RebalanceError implements RebalanceAPI.
func (c *Cluster) RebalanceError() string {
	if c.Rebalancer == nil {
		return ""
	}
	return c.Rebalancer.LastError()
}

// DBSize implements RebalanceAPI.
func (c *Cluster) DBSize(ctx context.Context, addr string) (int64, error) {
	if c.controlNode == nil {
		return 0, errors.New("cluster: no control clients configured")
	}
	n, err := c.controlNode(addr)
	if err != nil {
		return 0, err
	}
	return n.Do(ctx, "DBSIZE").Int64()
}

// SessionLostLimit is how long ring reads may fail with "Session not
// found" before Live reports the pod dead.
const SessionLostLimit = 30 * time.Second

// Live is the pod's liveness beyond "the process answers": it fails when
// Spanner has been answering "Session not found" for SessionLostLimit. The
// Member's client replaces a lost session by itself (spanner_client.go);
// this is the backstop for when that keeps failing, which a restart repairs.
// A Spanner outage does not fail it: the pod keeps serving its last ring.
func (c *Cluster) Live() error {
	if d := c.Syncer.SessionLostFor(); d > SessionLostLimit {
		return fmt.Errorf("cluster: Spanner has answered \"Session not found\" for %v; restart to get a new session", d.Round(time.Second))
	}
	return nil
}
