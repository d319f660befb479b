package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/spanner"
	"cloud.google.com/go/spanner/apiv1/spannerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// newSpannerClient creates the Member's Spanner client (SPANNER_EMULATOR_HOST
// is honoured by the library) with a sessionHealer on its gRPC channels and,
// if rc is not nil, an RPC counter (spanner_rpcs.go).
func newSpannerClient(ctx context.Context, db string, logger *slog.Logger, rc *rpcCounter) (*spanner.Client, *sessionHealer, error) {
	h := newSessionHealer(logger)
	unary := []grpc.UnaryClientInterceptor{h.unary}
	stream := []grpc.StreamClientInterceptor{h.stream}
	if rc != nil {
		unary = append([]grpc.UnaryClientInterceptor{rc.unary}, unary...)
		stream = append([]grpc.StreamClientInterceptor{rc.stream}, stream...)
	}
	c, err := spanner.NewClientWithConfig(ctx, db, spanner.ClientConfig{},
		option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(unary...)),
		option.WithGRPCDialOption(grpc.WithChainStreamInterceptor(stream...)),
	)
	if err != nil {
		return nil, nil, err
	}
	return c, h, nil
}

// sessionHealer replaces a Spanner session the server no longer knows.
//
// The Spanner Go client (v1.85+: the session pool is gone) sends every
// request on one multiplexed session, created with the client and replaced
// only after 7 days; an answer "Session not found" is returned to the
// caller and the next request uses the same session again. A server that
// lost its sessions (a database recreated or restored; the emulator
// restarted) would fail this process's leader election, ring reads and
// writes forever, until a restart. hedge and spindle hold the
// *spanner.Client, so the client cannot be swapped under them.
//
// The healer sits on the client's gRPC channels instead: when a request on
// session S fails with NotFound "Session not found", it creates one new
// multiplexed session N (CreateSession, as the client does at start) in
// the background, and from then on sends the client's requests for S on N
// (the request's session field and its x-goog-request-params routing
// header). Only the request that saw the loss fails; the caller's retry
// (the next poll, spindle's next round) succeeds. Replacements are one at a
// time, at most one attempt per healRetry, and logged.
type sessionHealer struct {
	log *slog.Logger
	// repl maps a session the client uses to the session sent instead;
	// copy-on-write so that the request path reads it without a lock.
	repl atomic.Pointer[map[string]string]

	mu       sync.Mutex
	busy     bool      // a CreateSession is in flight
	lastTry  time.Time // last CreateSession attempt
	failures int       // consecutive failed attempts (logged once per run)

	replaced atomic.Int64 // sessions replaced so far
}

// healRetry is the minimum time between two replacement attempts (e.g.
// while the database itself is still missing).
const healRetry = time.Second

const (
	routingHeader       = "x-goog-request-params"
	resourcePrefixHdr   = "google-cloud-resource-prefix"
	createSessionMethod = "/google.spanner.v1.Spanner/CreateSession"
)

func newSessionHealer(logger *slog.Logger) *sessionHealer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &sessionHealer{log: logger.With("component", "cluster.spanner")}
	h.repl.Store(&map[string]string{})
	return h
}

// Replaced returns how many lost sessions were replaced.
func (h *sessionHealer) Replaced() int64 { return h.replaced.Load() }

// target returns the session to send for the client's session s.
func (h *sessionHealer) target(s string) string {
	if to, ok := (*h.repl.Load())[s]; ok {
		return to
	}
	return s
}

// sessionField returns m's string field "session" (every Spanner data
// request names its session there), or nil.
func sessionField(m proto.Message) protoreflect.FieldDescriptor {
	fd := m.ProtoReflect().Descriptor().Fields().ByName("session")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return nil
	}
	return fd
}

// rewrite returns req with its session replaced if the client's session
// was lost (a copy: the client may reuse req), the client's session and
// the one sent ("" if req has none).
func (h *sessionHealer) rewrite(req any) (out any, orig, sent string) {
	m, ok := req.(proto.Message)
	if !ok {
		return req, "", ""
	}
	fd := sessionField(m)
	if fd == nil {
		return req, "", ""
	}
	orig = m.ProtoReflect().Get(fd).String()
	if orig == "" {
		return req, "", ""
	}
	sent = h.target(orig)
	if sent == orig {
		return req, orig, orig
	}
	c := proto.Clone(m)
	c.ProtoReflect().Set(fd, protoreflect.ValueOfString(sent))
	return c, orig, sent
}

// headerSession returns the session named by the routing header of ctx
// ("session=<name>"), "" if none.
func headerSession(ctx context.Context) string {
	md, _ := metadata.FromOutgoingContext(ctx)
	for _, v := range md.Get(routingHeader) {
		if q, err := url.ParseQuery(v); err == nil && q.Get("session") != "" {
			return q.Get("session")
		}
	}
	return ""
}

// withHeaderSession returns ctx with the routing header naming to instead
// of from.
func withHeaderSession(ctx context.Context, from, to string) context.Context {
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		return ctx
	}
	md = md.Copy()
	vals := md.Get(routingHeader)
	for i, v := range vals {
		vals[i] = strings.ReplaceAll(v, url.QueryEscape(from), url.QueryEscape(to))
	}
	md.Set(routingHeader, vals...)
	return metadata.NewOutgoingContext(ctx, md)
}

// sessionNotFound reports the server's answer for an unknown session.
func sessionNotFound(err error) bool {
	return err != nil && status.Code(err) == codes.NotFound && strings.Contains(err.Error(), "Session not found")
}

func (h *sessionHealer) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	req, orig, sent := h.rewrite(req)
	if orig != sent {
		ctx = withHeaderSession(ctx, orig, sent)
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if orig != "" && sessionNotFound(err) {
		h.lost(cc, orig, sent)
	}
	return err
}

func (h *sessionHealer) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	// The headers leave with the stream, before the request: take the
	// session from the routing header (the request will name the same).
	if s := headerSession(ctx); s != "" {
		if to := h.target(s); to != s {
			ctx = withHeaderSession(ctx, s, to)
		}
	}
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return cs, err
	}
	return &healStream{ClientStream: cs, h: h, cc: cc}, nil
}

// healStream rewrites the session of the requests it sends and reports a
// lost session seen in its responses.
type healStream struct {
	grpc.ClientStream
	h          *sessionHealer
	cc         *grpc.ClientConn
	orig, sent string
}

func (s *healStream) SendMsg(m any) error {
	m, orig, sent := s.h.rewrite(m)
	if orig != "" {
		s.orig, s.sent = orig, sent
	}
	err := s.ClientStream.SendMsg(m)
	if s.orig != "" && sessionNotFound(err) {
		s.h.lost(s.cc, s.orig, s.sent)
	}
	return err
}

func (s *healStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if s.orig != "" && sessionNotFound(err) {
		s.h.lost(s.cc, s.orig, s.sent)
	}
	return err
}

// lost handles "Session not found" for a request of the client's session
// orig that was sent on sent: unless that was already replaced (or a
// replacement is in flight, or the last attempt was less than healRetry
// ago), it creates a new session in the background.
func (h *sessionHealer) lost(cc *grpc.ClientConn, orig, sent string) {
	h.mu.Lock()
	if h.target(orig) != sent || h.busy || time.Since(h.lastTry) < healRetry {
		h.mu.Unlock()
		return
	}
	h.busy, h.lastTry = true, time.Now()
	h.mu.Unlock()
	go h.replace(cc, orig, sent)
}

func (h *sessionHealer) replace(cc *grpc.ClientConn, orig, sent string) {
	start := time.Now()
	name, err := createSession(cc, orig)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busy = false
	if err != nil {
		h.failures++
		lvl := slog.LevelDebug
		if h.failures == 1 {
			lvl = slog.LevelWarn
		}
		h.log.Log(context.Background(), lvl, "Spanner lost this client's session; creating a new one failed, will retry",
			"session", sent, "attempt", h.failures, "err", err)
		return
	}
	// Every client session that was sent on the lost one moves to the new
	// one (the client has one multiplexed session; earlier replacements
	// map to the lost one too).
	next := map[string]string{orig: name}
	for k, v := range *h.repl.Load() {
		if v == sent {
			v = name
		}
		next[k] = v
	}
	h.repl.Store(&next)
	h.replaced.Add(1)
	h.log.Warn("Spanner lost this client's session; replaced it with a new one",
		"lost", sent, "new", name, "client_session", orig, "failed_attempts", h.failures, "took", time.Since(start).Round(time.Millisecond))
	h.failures = 0
}

// createSession creates a multiplexed session in the database of session
// (".../databases/D/sessions/X") on cc, with the headers the client sends
// with CreateSession; the channel adds its credentials.
func createSession(cc *grpc.ClientConn, session string) (string, error) {
	i := strings.Index(session, "/sessions/")
	if i < 0 {
		return "", fmt.Errorf("cluster: unexpected Spanner session name %q", session)
	}
	db := session[:i]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, resourcePrefixHdr, db, routingHeader, "database="+url.QueryEscape(db))
	var s spannerpb.Session
	err := cc.Invoke(ctx, createSessionMethod,
		&spannerpb.CreateSessionRequest{Database: db, Session: &spannerpb.Session{Multiplexed: true}}, &s)
	if err != nil {
		return "", err
	}
	if s.GetName() == "" {
		return "", fmt.Errorf("cluster: CreateSession returned no session name")
	}
	return s.GetName(), nil
}
