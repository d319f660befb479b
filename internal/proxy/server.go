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

	"github.com/alphauslabs/jupiter/internal/command"
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
	Limits        resp.Limits   // per-command limits (default resp.DefaultLimits)
	HashPrefix    string        // trailing-argument hash override prefix, "" disables (default "hash=" set by config)
	MaxClients    int           // 0 = unlimited
	IdleTimeout   time.Duration // 0 = never close idle clients
	AdminTimeout  time.Duration // bound for one JUPITER command (default 10s)
	Version       string        // reported by INFO
	RedisVersion  string        // redis_version reported by INFO (clients gate features on it)
	MaxPipeline   int           // commands per batch (default 1024)
	Password      string        // clients must AUTH with it when set
	AdminPassword string        // AUTH admin <pw> grants ring changes when set
}

// Stats are the front end's counters, read by INFO and the metrics.
type Stats struct {
	Connected   atomic.Int64
	Accepted    atomic.Int64
	Rejected    atomic.Int64
	Commands    atomic.Int64
	ErrReplies  atomic.Int64
	ProtoErrors atomic.Int64
}

// Server is the RESP listener and its sessions.
type Server struct {
	opts   Options
	router *Router
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

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*session]struct{}
	closed   bool
	wg       sync.WaitGroup
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
	return &Server{opts: opts, router: router, admin: admin, log: log, start: time.Now(),
		sessions: map[*session]struct{}{}, cmdStats: make([]stats.Op, len(command.All())+1)}
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
	go func() {
		defer s.wg.Done()
		defer func() {
			// A bug must cost one client its connection, never the process.
			if p := recover(); p != nil {
				s.log.Error("session panicked; closing that client only", "panic", p, "stack", string(debug.Stack()))
			}
			nc.Close()
			s.Stats.Connected.Add(-1)
			s.mu.Lock()
			delete(s.sessions, ss)
			s.mu.Unlock()
		}()
		ss.serve()
	}()
}

// Shutdown stops accepting, lets sessions finish the batch they are
// executing, closes them, and waits for them, bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for ss := range s.sessions {
		ss.stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for ss := range s.sessions {
			ss.nc.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *Server) getBatch() *batch {
	if b, ok := s.batches.Get().(*batch); ok {
		return b
	}
	return &batch{}
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
