// Package proxy is jupiter's RESP front end: it accepts client connections and
// runs one session per connection.
//
// The request path of one session, for every batch of pipelined commands that
// one read brought in:
//
//	socket ─read─► buf ─resp.ParseCommand─► commands of the batch
//	      │
//	      ├─ command.Lookup / arity / hash= / refusals ─► local reply (PING, HELLO, INFO, JUPITER…)
//	      │
//	      └─ one atomic load of the ring (Router) ─► plan per command:
//	            single node: raw bytes appended to that node's share
//	            split (MGET/MSET/DEL…): one sub-command per node holding keys
//	            all nodes (DBSIZE, KEYS, FLUSHDB): one per node
//	                 │
//	                 ▼
//	         each node's share submitted once to its multiplexed connection
//	         (backend), all Calls of the batch counted by one Group
//	                 │ Group.Wait
//	                 ▼
//	         replies in request order: passed through untouched, or merged
//	         (merge.MGet / Sum / AllOK / Concat / Scan) ─► one write to the socket
//
// Sessions never block on a backend round trip per command, and never share a
// backend connection in a stateful way: connection-scoped commands (AUTH,
// SELECT, CLIENT, HELLO…) are answered here and never forwarded.
//
// Commands that need a node to remember the client between round trips
// take a dedicated connection of that node (backend.Node.Borrow) and give
// it back as soon as they can, each family in a file of its own:
// transactions (tx.go: MULTI…EXEC is one write on the multiplexed path;
// WATCH holds a dedicated connection), blocking commands (blocking.go),
// pub/sub (pubsub.go). RESP3 clients (resp3.go) use the nodes' RESP3
// connections so replies still pass through untouched; serveradmin.go
// holds CONFIG and INFO across the nodes. The state these need lives in a
// connState allocated at first use: an idle connection that never sends
// one pays a pointer.
//
// A plain-TCP session silent for Options.DormantAfter goes dormant: its
// goroutine (whose stack is most of an idle connection's memory) ends, and
// one epoll instance watches the socket until the client sends again
// (dormant.go).
//
// # Rebalancing
//
// Router.ApplyStage publishes the routed ring R together with the rebalance
// in progress (Migration: stage, target ring R', epoch; DESIGN.md
// "Rebalancing", research/rebalance.md §4.3–4.5). A key moves when the
// address owning its slot differs between R and R' (a per-slot table built
// with the view). Keys that do not move, and every key when no rebalance
// runs, take the path above unchanged and at no extra cost. A command that
// touches a moving key during FREEZE or MIGRATING takes the rebalance path
// (migrate.go): it ends its batch, runs after the batch's other commands,
// synchronously and bounded by ControlTimeout, through go-redis control
// clients and the internal/rebalance operations, and the rest of the
// pipeline is planned only after it, so replies keep the request order.
//
//   - PREPARE: route by R; connections to R ∪ R'; all-node commands (DBSIZE,
//     KEYS, SCAN, FLUSH*, SCRIPT LOAD…) go to R ∪ R' from now on, nodes
//     losing slots first.
//   - FREEZE: a single-key or split read of a moving key uses the read rule
//     (new, old, new); any other command touching one is held until the view
//     changes (then decided again: MIGRATING runs it, an abort routes it by
//     R), at most HoldMax, then answered -TRYAGAIN having run nowhere.
//   - MIGRATING (§4.4): reads by the read rule; blind overwrites WriteMarked;
//     read-modify-writes, TTL changes, GETDEL and scripts UpdateMarked;
//     multi-key commands MultiMarked, or -TRYAGAIN Multiple keys request
//     during rebalancing when the keys' old or new owners differ; split
//     commands (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH) key by key, DEL and
//     UNLINK with DeleteMarked, then merged. SCAN and KEYS drop a source's
//     moving keys whose destination holds the key or its marker;
//     RANDOMKEY tries several nodes for a key that is not a marker.
//   - Every stage: client keys in the marker namespace (rebalance.IsMarker)
//     are refused, and markers are filtered out of SCAN, KEYS and RANDOMKEY
//     (a marker from RANDOMKEY outside MIGRATING is answered nil).
//   - ApplyStage returns only once no batch routed the previous way is in
//     flight (entering FREEZE/MIGRATING, and leaving them), so a pod's
//     acknowledgement of a stage holds for every request.
//
// Deviations from research/rebalance.md, and limits:
//   - DBSIZE and INFO's keyspace sum R ∪ R' during a rebalance: approximate
//     (markers count, and a key is counted twice between its restore and
//     the unlink of its old copy).
//   - SCAN cursors carry a tag of the node order they were made under; a
//     cursor from another order (a stage change between two calls) restarts
//     the iteration: duplicates, never misses. Within one order a key moving
//     between two calls may be returned twice. Sources-first order cannot be
//     kept for a node that both loses and gains slots (a weight change):
//     a key moving onto such a node after it was scanned can be missed.
//   - RANDOMKEY during MIGRATING may return a source's stale copy of a key
//     deleted on its destination.
//   - A held command waits in its session (which reads nothing more
//     meanwhile), not in a per-pod queue.
//   - Transactions, blocking commands and subscriptions (§4.4's MULTI,
//     BLPOP and SUBSCRIBE rows) follow the rules in tx.go, blocking.go and
//     pubsub.go: a transaction on moving keys is held in FREEZE and runs on
//     the new owner after Ensure in MIGRATING; a WATCH whose keys' writes
//     moved makes EXEC fail (nil); a blocked client is re-blocked on the
//     new owner; a moving channel is listened to on both owners.
//   - hash=<key> overrides route by the override key, on the rebalance path
//     too; but the migrator moves keys by their own slot, so keys stored
//     under an override are only moved when a command touches them during
//     MIGRATING.
//   - FLUSHALL/FLUSHDB during a rebalance flush R ∪ R', markers included;
//     they are not coordinated with a running migrator.
//   - A failure on the rebalance path is an -ERR jupiter: … reply; nothing
//     is retried (a write's outcome may then be unknown, as with any lost
//     reply).
//
// The accept loop and session are jupiter's own rather than redcon's Server:
// redcon's conn allocates a Command and arguments per command and keeps about
// 10 KB of buffers per idle connection; jupiter's session allocates nothing per
// command in steady state and allocates its buffers only once a client sends
// something (see the memory benchmark in test/). redcon's RESP encoders are
// used for the replies jupiter writes itself.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/rebalance"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/stats"
)

// Admin answers the JUPITER command family. The reply is a complete RESP
// reply. Implementations may forward to the cluster leader, so they must
// bound their own waits.
type Admin interface {
	Command(ctx context.Context, args [][]byte) []byte
}

// Options configure the front end. Zero values mean the default.
type Options struct {
	Limits      resp.Limits   // per-command limits (default resp.DefaultLimits)
	HashPrefix  string        // trailing-argument hash override prefix, "" disables (default "hash=" set by config)
	MaxClients  int           // 0 = unlimited
	IdleTimeout time.Duration // 0 = never close idle clients
	// DormantAfter: a plain-TCP client silent this long gives up its
	// goroutine until it sends again (dormant.go); default 1s, < 0 never.
	DormantAfter time.Duration
	// reclaim overrides the stack reclaim's thresholds (tests).
	reclaim       *reclaimPolicy
	AdminTimeout  time.Duration // bound for one JUPITER command (default 10s)
	Version       string        // reported by INFO
	RedisVersion  string        // redis_version reported by INFO (clients gate features on it)
	MaxPipeline   int           // commands per batch (default 1024)
	Password      string        // clients must AUTH with it when set
	AdminPassword string        // AUTH admin <pw> grants ring changes when set

	// Rebalancing (see "Rebalancing" above).
	HoldMax   time.Duration // FREEZE: longest a write to a moving key waits for MIGRATING (default 500ms), then -TRYAGAIN
	MarkerTTL time.Duration // lifetime of the markers set on new owners (0 = rebalance.DefaultMarkerTTL)
	// BackendSecurity is the AUTH/TLS of the control clients the rebalance
	// path uses (the data path's own is in its backend.Pool).
	BackendSecurity backend.Security
	// ControlTimeout bounds one rebalance-path command (after any hold) and
	// each of its control clients' network operations (default 5s).
	ControlTimeout time.Duration

	// Obs are the slow log, hot keys and big keys the request path feeds
	// (observe.go); nil members are off. SLOWLOG answers from Obs.Slowlog.
	Obs admin.Observers
}

// Stats are the front end's counters, read by INFO and the metrics.
type Stats struct {
	Connected   atomic.Int64
	Accepted    atomic.Int64
	Rejected    atomic.Int64
	Commands    atomic.Int64
	ErrReplies  atomic.Int64
	ProtoErrors atomic.Int64
	// Rebalancing: commands run on the rebalance path, writes held in
	// FREEZE, and held writes refused with TRYAGAIN after HoldMax.
	Rebalance atomic.Int64
	Held      atomic.Int64
	TryAgain  atomic.Int64
	// Dormant: open client connections without a goroutine (dormant.go).
	Dormant atomic.Int64
	// StackReclaims counts the forced collections that returned the stacks
	// of a burst of sessions gone dormant to the OS (dormancy.reclaim).
	StackReclaims atomic.Int64
	// Drained: client connections closed at a command boundary by a
	// graceful Shutdown.
	Drained atomic.Int64
	// Blocked: clients waiting in a blocking command (blocking.go).
	Blocked atomic.Int64
	// Subscribers: clients subscribed to a channel or pattern (pubsub.go).
	Subscribers atomic.Int64
}

// Server is the RESP listener and its sessions.
type Server struct {
	opts   Options
	router *Router
	ctl    *rebalance.Clients // rebalance path clients
	ctl3   *rebalance.Clients // the same, speaking RESP3 (for RESP3 clients)
	admin  Admin
	log    *slog.Logger
	start  time.Time
	Stats  Stats

	nextID atomic.Uint32

	// Scratch for executing a batch, shared by all sessions.
	batches sync.Pool

	// cmdStats[spec.ID] counts each command; the last entry counts unknown
	// and malformed commands.
	cmdStats []stats.Op

	// What the request path needs of opts.Obs (initObserve): the slow
	// log's threshold in ns (-1: off), the smallest big request or reply
	// (MaxInt: off), the hot-key sampling rate (one in hotN; 0: off).
	slowNs int64
	bigMin int
	hotN   uint32

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*session]struct{}
	// blockedBy is every blocked command by client id (CLIENT UNBLOCK).
	blockedBy map[uint32]*blockState
	// subs is every subscribed client's state (followSubs).
	subs   map[*pubsub]struct{}
	closed bool
	// draining: Shutdown runs; sessions leave at their next command
	// boundary (session.drainNow). drainFinal: its last phase runs
	// (drainLast).
	draining   atomic.Bool
	drainFinal atomic.Bool
	// lingering counts the sessions closed at a boundary that wait for
	// their clients' own close (closeGracefully).
	lingering atomic.Int64
	wg        sync.WaitGroup // one per session, dormant or not
	// dorm watches dormant sessions' sockets; started by the first
	// session to go dormant (nil before, or if it could not start).
	dorm       *dormancy
	dormFailed bool
	// noSleep: sessions cannot go dormant (dormancy unavailable or
	// stopped), so a session must not wake up just to try.
	noSleep atomic.Bool
}

// New returns a server routing by router and answering JUPITER with admin.
func New(opts Options, router *Router, admin Admin, log *slog.Logger) *Server {
	if opts.Limits == (resp.Limits{}) {
		opts.Limits = resp.DefaultLimits
	}
	if opts.MaxPipeline <= 0 {
		opts.MaxPipeline = 1024
	}
	if opts.AdminTimeout <= 0 {
		opts.AdminTimeout = 10 * time.Second
	}
	if opts.RedisVersion == "" {
		opts.RedisVersion = "7.0.15"
	}
	if opts.HoldMax <= 0 {
		opts.HoldMax = 500 * time.Millisecond
	}
	if opts.ControlTimeout <= 0 {
		opts.ControlTimeout = 5 * time.Second
	}
	if opts.DormantAfter == 0 {
		opts.DormantAfter = time.Second
	}
	s := &Server{opts: opts, router: router, admin: admin, log: log, start: time.Now(),
		ctl:      rebalance.NewClients(opts.BackendSecurity, opts.ControlTimeout, ctlPoolSize),
		ctl3:     rebalance.NewClients3(opts.BackendSecurity, opts.ControlTimeout, ctlPoolSize),
		sessions: map[*session]struct{}{}, blockedBy: map[uint32]*blockState{}, subs: map[*pubsub]struct{}{}, cmdStats: make([]stats.Op, len(command.All())+1)}
	s.initObserve()
	router.mu.Lock()
	router.inUse = s.viewInUse
	router.follow = s.followSubs
	router.drainMax = max(router.drainMax, opts.HoldMax+opts.ControlTimeout+time.Second)
	router.mu.Unlock()
	return s
}

// viewInUse reports whether a session is executing a batch routed by a
// view old approves of (Router.ApplyStage waits for them).
func (s *Server) viewInUse(old func(*view) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		if u := ss.using.Load(); u != nil && old(u) {
			return true
		}
	}
	return false
}

// Router returns the server's router.
func (s *Server) Router() *Router { return s.router }

// Serve accepts connections on ln until Shutdown or a fatal accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off, keep serving.
				if delay = min(max(2*delay, 5*time.Millisecond), time.Second); true {
					s.log.Warn("accept failed, retrying", "err", err, "delay", delay)
					time.Sleep(delay)
				}
				continue
			}
			return err
		}
		delay = 0
		s.accept(nc)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) accept(nc net.Conn) {
	if s.opts.MaxClients > 0 && s.Stats.Connected.Load() >= int64(s.opts.MaxClients) {
		s.Stats.Rejected.Add(1)
		// Not in the accept loop: on a TLS listener this write runs the
		// handshake, and a client that never sends a ClientHello would
		// stop jupiter from accepting anyone.
		go func() {
			_ = nc.SetDeadline(time.Now().Add(time.Second))
			_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
			nc.Close()
		}()
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	ss := &session{srv: s, nc: nc, id: s.nextID.Add(1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.Stats.Connected.Add(1)
	s.Stats.Accepted.Add(1)
	s.goSession(ss, runStart)
}

// How a session goroutine starts: a new connection, a dormant one that
// became readable (or is being stopped), or a dormant one past the idle
// timeout.
const (
	runStart = iota
	runResume
	runExpire
)

// goSession starts a goroutine for ss. The goroutine ends the session
// (closes the client, forgets it) unless ss went dormant: then ss belongs
// to s.dorm until it hands it to a new goroutine.
func (s *Server) goSession(ss *session, how int) {
	go func() {
		dormant := false
		defer func() {
			// A bug must cost one client its connection, never the process.
			if p := recover(); p != nil {
				s.log.Error("session panicked; closing that client only", "panic", p, "stack", string(debug.Stack()))
			} else if dormant {
				return
			}
			ss.endTx()    // gives back a WATCH's dedicated connection
			ss.endBlock() // unblocks a blocked command
			ss.endPubSub()
			ss.flushHeld() // replies held back while draining
			if ss.graceful {
				s.Stats.Drained.Add(1)
				s.lingering.Add(1)
				closeGracefully(ss.nc)
				s.lingering.Add(-1)
			}
			ss.nc.Close()
			s.Stats.Connected.Add(-1)
			s.mu.Lock()
			delete(s.sessions, ss)
			s.mu.Unlock()
			s.wg.Done()
		}()
		switch how {
		case runStart:
			dormant = ss.serve()
		case runResume:
			dormant = ss.serveRaw(ss.rawConn)
		}
	}()
}

// sleep makes ss dormant if it can (see dormancy); false: ss keeps its
// goroutine.
func (s *Server) sleep(ss *session) bool {
	s.mu.Lock()
	if s.dorm == nil && !s.dormFailed && !s.closed {
		d, err := newDormancy(s)
		if err != nil {
			s.dormFailed = true
			s.noSleep.Store(true)
			s.log.Warn("idle clients keep their goroutines: dormancy unavailable", "err", err)
		}
		s.dorm = d
	}
	d := s.dorm
	s.mu.Unlock()
	return d != nil && d.sleep(ss)
}

// Shutdown stops accepting, lets sessions finish the batch they are
// executing, closes them, and waits for them, bounded by ctx.
//
// Each session closes at a command boundary once its client waits for
// replies (session.drainNow): a pipeline, transaction or blocked command
// in progress completes first. When ctx has a deadline, the drain's last
// phase (drainLast) starts shortly before it: blocked commands are
// cancelled with errShutdown, and sessions whose clients never paused
// close at their next boundary. At the deadline the sessions left (a
// transaction still open, a client that stopped reading, a node that does
// not answer) are closed where they are, and Shutdown returns ctx's
// error; sessions already closed at a boundary that only wait for their
// clients' own close (closeGracefully) are closed without it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	// Graceful: every session leaves at its next command boundary (now,
	// for an idle one: the deadline wakes it); a pipeline, transaction or
	// blocked command in progress completes first.
	s.draining.Store(true)
	for ss := range s.sessions {
		_ = ss.nc.SetReadDeadline(time.Now())
		if s.dorm != nil {
			s.dorm.wake(ss)
		}
	}
	dorm := s.dorm
	s.mu.Unlock()
	if dorm != nil {
		defer dorm.close()
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		last := time.AfterFunc(left-min(left/4, drainLastLead), s.drainLast)
		defer last.Stop()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer s.ctl.Close() // a session still running past ctx gets errors from it, not a hang
	defer s.ctl3.Close()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		// A lingering session was drained: its client has every reply
		// and the end of stream, only its own close is awaited.
		active := len(s.sessions) - int(s.lingering.Load())
		for ss := range s.sessions {
			ss.stop()
			// Close unblocks the session's reads and writes at once, but
			// returns only when its serveRaw is out of the socket's read
			// lock: not in this goroutine, which must return now.
			go ss.nc.Close()
		}
		s.mu.Unlock()
		if active <= 0 {
			return nil
		}
		return ctx.Err()
	}
}

// drainLast is the drain's last phase (see Shutdown): from now on sessions
// close at their next command boundary without waiting for their clients
// to be quiet, and blocked commands are cancelled. Their clients get
// errShutdown (or the element the node handed out just before the
// cancel), then the close; the command ran nowhere, and the client can
// retry it on another connection.
func (s *Server) drainLast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drainFinal.Store(true)
	for _, b := range s.blockedBy {
		b.stop(whyShutdown)
	}
	for ss := range s.sessions {
		_ = ss.nc.SetReadDeadline(time.Now()) // look again now (drainNow)
	}
}

// drainLastLead is how long before Shutdown's deadline its last phase
// starts, at most (a quarter of the time left, if that is less): enough to
// unblock a command on its node, write the reply, and see the client close.
const drainLastLead = 2 * time.Second

// closeGracefully ends a client connection without losing what was sent
// to it: a FIN after the last reply, then whatever the client still sends
// (commands written before it saw the FIN, never executed: a client retries
// them elsewhere) is read and dropped until it closes too, for at most
// drainLinger. Closing at once with unread bytes would send a reset, which
// can destroy replies the client has not read yet.
func closeGracefully(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok || tc.CloseWrite() != nil {
		return
	}
	_ = nc.SetReadDeadline(time.Now().Add(drainLinger))
	var buf [512]byte
	for {
		if _, err := nc.Read(buf[:]); err != nil {
			return
		}
	}
}

// drainLinger bounds how long a gracefully closed connection waits for the
// client's own close.
const drainLinger = time.Second

func (s *Server) getBatch() *batch {
	if b, ok := s.batches.Get().(*batch); ok {
		return b
	}
	b := &batch{}
	b.rawWrite = b.writeOut
	return b
}

func (s *Server) putBatch(b *batch) {
	b.trim()
	s.batches.Put(b)
}

// CommandStats calls f for every command that was used, with its name
// ("unknown" for commands jupiter could not parse or look up).
func (s *Server) CommandStats(f func(name string, op *stats.Op)) {
	all := command.All()
	for i := range s.cmdStats {
		op := &s.cmdStats[i]
		if op.Count.Load() == 0 {
			continue
		}
		name := "unknown"
		if i < len(all) {
			name = all[i].Name
		}
		f(name, op)
	}
}
