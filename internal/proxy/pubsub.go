package proxy

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
	"github.com/tidwall/redcon"
)

// Pub/sub.
//
// A channel lives on one node: the owner of its name's slot ({tag} aware,
// like a key), so PUBLISH (forwarded on the multiplexed connection, its
// receiver count passed through) and SUBSCRIBE meet there. A pattern may
// match a channel of any node, so PSUBSCRIBE listens on every node; each
// message is still published on one node only, so a subscriber receives it
// once.
//
// A subscribed client has one dedicated connection per node it listens on
// (subConn), each read by a goroutine that writes messages to the client
// untouched. The session answers the (un)subscribe commands itself, in the
// client's order and with the client's own counts (the nodes count per
// connection), once the nodes confirmed: a node's reader that reads a
// confirmation waits until the session has written the client's, so no
// message of a channel reaches the client before its subscribe reply.
//
// In subscribed state only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT and
// RESET are accepted (RESP2), as Redis does. A subscriber's connection to a
// node that fails closes the client connection: clients resubscribe when
// they reconnect (go-redis, redis-py and redigo do), which is better than
// silently missing messages.
//
// Rebalancing: while a channel's slot moves (PREPARE to COMMIT, or an
// abort), the subscriber listens on both its old and its new owner, and
// patterns on R ∪ R'. Router.ApplyStage calls Server.followSubs before it
// returns, so a pod has subscribed on the new owners before it acknowledges
// PREPARE; PUBLISH goes to the new owner from FREEZE on, when every pod
// acknowledged PREPARE. So no message published after a stage change is
// acknowledged is lost, and none is delivered twice (it is published on one
// node). Old subscriptions are dropped once the view no longer needs them.
// A message from a channel's new owner waits until the old owner's
// connection has delivered what it held (pubsub_order.go), so a publisher's
// messages keep their order across the switch.

// Internal merge policies of PUBSUB's introspection subcommands.
const (
	policyUnion    command.Policy = 211 // arrays concatenated, duplicates dropped (CHANNELS)
	policyMaxPairs command.Policy = 212 // name/count pairs, per name the largest count (NUMSUB)
	policyMaxInt   command.Policy = 213 // the largest integer (NUMPAT)
)

const (
	// subWriteTimeout bounds one message's write to a subscriber that does
	// not read: it is disconnected, as Redis's pubsub output buffer limit
	// does.
	subWriteTimeout = 10 * time.Second
)

// subKinds: the three kinds of subscription and their commands.
type subKind uint8

const (
	kChannel subKind = iota
	kPattern
	kShard
)

var (
	subNames   = [3]string{"subscribe", "psubscribe", "ssubscribe"}
	unsubNames = [3]string{"unsubscribe", "punsubscribe", "sunsubscribe"}
)

// pubsub is a subscribed session's state.
type pubsub struct {
	srv *Server
	nc  net.Conn

	mu    sync.Mutex // the maps and conns; held by the session's commands and by follow
	conns map[string]*subConn
	subs  [3]map[string][]string // name → the node addresses it is subscribed on
	order [3][]string            // names in subscription order (UNSUBSCRIBE without arguments)

	resp3  bool       // frames are pushes; any command may run while subscribed
	wmu    sync.Mutex // writes to the client: the session's and the readers'
	closed atomic.Bool
	// names counts the subscriptions of every kind, for the session's
	// subscribed-state check without mu (follow changes only where a
	// subscription listens, never how many there are).
	names atomic.Int32
	// index is conns for the readers, which must not take mu (the session
	// holds it while it waits for them): replaced whole under mu.
	index atomic.Pointer[map[string]*subConn]
	guard orderGuard // message order across a channel's move (pubsub_order.go)
}

// subConn is a subscriber's dedicated connection to one node.
type subConn struct {
	ps      *pubsub
	addr    string
	d       *backend.Dedicated
	smu     sync.Mutex // Sends: the session's (un)subscribes and the readers' barriers
	emu     sync.Mutex
	expect  []*expectation // confirmations the node still owes, in order
	done    chan struct{}  // the reader ended
	closing atomic.Bool
}

// expectation is one confirmation a node owes.
type expectation struct {
	seen chan struct{} // closed by the reader when it arrived (or the reader ended)
	ack  chan struct{} // nil: no client reply depends on it; else the reader waits for it
	err  []byte        // the node answered an error instead
}

// subscribed reports the RESP2 subscribed state, where only the
// subscription commands, PING, QUIT and RESET are accepted (RESP3 has no
// such state).
func (s *session) subscribed() bool {
	return s.cs != nil && s.cs.ps != nil && !s.cs.resp3 && s.cs.ps.names.Load() > 0
}

// pubsubCommand plans a pub/sub command.
func (s *session) pubsubCommand(v *view, spec *command.Spec, args [][]byte, raw []byte) {
	if v.ring == nil {
		s.errorReply(errNoRing)
		return
	}
	switch spec.Name {
	case "publish", "spublish":
		slot := ring.Slot(args[1])
		node := v.ring.SlotOwner(slot)
		if m := v.mig; m != nil && m.stage >= stFreeze && m.moves(slot) {
			node = int(m.dest[slot])
		}
		s.forward(v, node, args, raw)
	case "pubsub|channels", "pubsub|shardchannels":
		s.fanout(v, policyUnion, args, raw)
	case "pubsub|numsub", "pubsub|shardnumsub":
		s.fanout(v, policyMaxPairs, args, raw)
	case "pubsub|numpat":
		s.fanout(v, policyMaxInt, args, raw)
	case "pubsub|help":
		s.forward(v, s.random(v.ring.Len()), args, raw)
	default: // (un)subscribe
		s.connEntry(connOp{op: opPubSub, spec: spec, args: args})
	}
}

// subAllowed answers, in subscribed state, a command Redis does not allow
// there, and reports whether the command may run.
func (s *session) subAllowed(spec *command.Spec, args [][]byte) bool {
	switch spec.Name {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "quit", "reset":
		return true
	case "ping":
		if len(args) > 2 {
			s.errorReply("ERR wrong number of arguments for 'ping' command")
			return false
		}
		b := redcon.AppendArray(s.enc[:0], 2)
		b = redcon.AppendBulkString(b, "pong")
		if len(args) == 2 {
			b = redcon.AppendBulk(b, args[1])
		} else {
			b = redcon.AppendBulkString(b, "")
		}
		s.localReply(b)
		return false
	}
	s.errorReply("ERR Can't execute '" + spec.Name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
	return false
}

// runPubSub runs an (un)subscribe command (the batch's kConn entry).
func (s *session) runPubSub(v *view, op connOp) {
	ps := s.pubsubState()
	if !s.flush() { // the replies before it go first, in order
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	name := op.spec.Name
	kind, sub := kChannel, true
	switch name {
	case "psubscribe":
		kind = kPattern
	case "ssubscribe":
		kind = kShard
	case "unsubscribe":
		sub = false
	case "punsubscribe":
		kind, sub = kPattern, false
	case "sunsubscribe":
		kind, sub = kShard, false
	}
	names := op.args[1:]
	if !sub && len(names) == 0 {
		for _, n := range ps.order[kind] {
			names = append(names, []byte(n))
		}
		if len(names) == 0 {
			ps.write(subFrame(unsubNames[kind], nil, ps.countFor(kind), ps.resp3))
			s.endPubSubIfIdle()
			return
		}
	}
	// Per name: the connections to change and the expectations the client's
	// reply waits for; commands are sent per connection, all names at once.
	type step struct {
		name  []byte
		exps  []*expectation
		ack   chan struct{}
		known bool // already in the wanted state: answered at once
		count int  // the client's count after this name, as Redis reports it
	}
	steps := make([]step, 0, len(names))
	perConn := map[*subConn][][]byte{}
	var connOrder []*subConn
	lost := false // a node could not be reached: the client must reconnect
	deadline := time.Now().Add(s.srv.opts.ControlTimeout)
	for _, n := range names {
		st := step{name: n, ack: make(chan struct{})}
		addrs, have := ps.subs[kind][string(n)]
		switch {
		case sub && !have:
			addrs = ps.want(v, kind, n)
			// Every node first: a subscription that cannot listen
			// everywhere it must is not made at all.
			var conns []*subConn
			for _, a := range addrs {
				c, err := ps.conn(v, a)
				if err != nil {
					st.exps = []*expectation{{err: redcon.AppendError(nil, "ERR jupiter: "+err.Error())}}
					lost = true
					break
				}
				conns = append(conns, c)
			}
			if st.exps == nil {
				ps.add(kind, string(n), addrs)
				for _, c := range conns {
					if perConn[c] == nil {
						connOrder = append(connOrder, c)
					}
					perConn[c] = append(perConn[c], n)
					st.exps = append(st.exps, c.expectOne(st.ack))
				}
			}
		case !sub && have:
			ps.remove(kind, string(n))
			for _, a := range addrs {
				if c := ps.conns[a]; c != nil && !c.closing.Load() {
					if perConn[c] == nil {
						connOrder = append(connOrder, c)
					}
					perConn[c] = append(perConn[c], n)
					st.exps = append(st.exps, c.expectOne(st.ack))
				}
			}
		default:
			st.known = true
		}
		st.count = ps.countFor(kind)
		steps = append(steps, st)
	}
	cmdName := []byte(name)
	for _, c := range connOrder {
		payload := resp.AppendCommand(nil, append([][]byte{cmdName}, perConn[c]...)...)
		if err := c.send(payload, deadline); err != nil {
			c.fail()
		}
	}
	for _, st := range steps {
		var failed []byte
		for _, e := range st.exps {
			if e.seen != nil && !waitClosed(e.seen, deadline) {
				failed = redcon.AppendError(nil, "ERR jupiter: a node did not confirm "+name)
			}
			if e.err != nil && failed == nil {
				failed = e.err
			}
		}
		if failed != nil {
			ps.write(failed)
		} else if sub {
			ps.write(subFrame(subNames[kind], st.name, st.count, ps.resp3))
		} else {
			ps.write(subFrame(unsubNames[kind], st.name, st.count, ps.resp3))
		}
		close(st.ack)
	}
	ps.retireIdle()
	s.endPubSubIfIdle()
	if lost {
		// As when a node a subscriber listens on fails: the client
		// reconnects and subscribes again (clients do that by themselves),
		// instead of living on with a subscription that hears nothing.
		s.closing = true
	}
}

// pubsubState returns the session's pub/sub state, creating it.
func (s *session) pubsubState() *pubsub {
	cs := s.state()
	if cs.ps == nil {
		cs.ps = &pubsub{srv: s.srv, nc: s.nc, conns: map[string]*subConn{}, resp3: cs.resp3}
		for k := range cs.ps.subs {
			cs.ps.subs[k] = map[string][]string{}
		}
		s.srv.subsAdd(cs.ps)
	}
	return cs.ps
}

// endPubSubIfIdle drops the pub/sub state of a session that subscribes to
// nothing any more. ps.mu is held.
func (s *session) endPubSubIfIdle() {
	if ps := s.cs.ps; ps.names.Load() == 0 {
		ps.closeLocked()
		s.cs.ps = nil
	}
}

// endPubSub closes a session's subscriptions when it ends (or RESETs).
func (s *session) endPubSub() {
	if s.cs == nil || s.cs.ps == nil {
		return
	}
	ps := s.cs.ps
	s.cs.ps = nil
	ps.mu.Lock()
	ps.closeLocked()
	ps.mu.Unlock()
}

func (ps *pubsub) closeLocked() {
	if ps.closed.Swap(true) {
		return
	}
	for _, c := range ps.conns {
		c.close()
	}
	ps.conns = map[string]*subConn{}
	ps.reindex()
	ps.srv.subsDel(ps)
}

// countFor is the count a (un)subscribe reply of kind reports: channels
// and patterns together, shard channels on their own (as Redis counts).
func (ps *pubsub) countFor(kind subKind) int {
	if kind == kShard {
		return len(ps.subs[kShard])
	}
	return len(ps.subs[kChannel]) + len(ps.subs[kPattern])
}

func (ps *pubsub) add(kind subKind, name string, addrs []string) {
	ps.subs[kind][name] = addrs
	ps.order[kind] = append(ps.order[kind], name)
	ps.names.Add(1)
}

func (ps *pubsub) remove(kind subKind, name string) {
	delete(ps.subs[kind], name)
	ps.names.Add(-1)
	if i := slices.Index(ps.order[kind], name); i >= 0 {
		ps.order[kind] = slices.Delete(ps.order[kind], i, i+1)
	}
}

// want is where a subscription of kind must listen under v: every node for
// a pattern; a channel's owner, and during a rebalance that moves its slot
// its new owner too.
func (ps *pubsub) want(v *view, kind subKind, name []byte) []string {
	if kind == kPattern {
		out := make([]string, 0, len(v.fan))
		for _, i := range v.fan {
			out = append(out, v.addrs[i])
		}
		return out
	}
	slot := ring.Slot(name)
	out := []string{v.addrs[v.ring.SlotOwner(slot)]}
	if m := v.mig; m != nil && m.moves(slot) {
		out = append(out, v.addrs[m.dest[slot]])
	}
	return out
}

// conn returns the subscriber's connection to addr, opening it.
func (ps *pubsub) conn(v *view, addr string) (*subConn, error) {
	if c := ps.conns[addr]; c != nil && !c.closing.Load() {
		return c, nil
	}
	i := slices.Index(v.addrs, addr)
	if i < 0 {
		return nil, errors.New("node " + addr + " is not in the ring")
	}
	proto := 2
	if ps.resp3 {
		proto = 3
	}
	d, err := v.nodes[i].BorrowProto(proto)
	if err != nil {
		return nil, err
	}
	c := &subConn{ps: ps, addr: addr, d: d, done: make(chan struct{})}
	ps.conns[addr] = c
	ps.reindex()
	ps.srv.wg.Add(1)
	go c.read()
	return c, nil
}

// retireIdle closes the connections no subscription uses any more.
func (ps *pubsub) retireIdle() {
	used := map[string]bool{}
	for k := range ps.subs {
		for _, addrs := range ps.subs[k] {
			for _, a := range addrs {
				used[a] = true
			}
		}
	}
	for a, c := range ps.conns {
		if !used[a] || c.closing.Load() {
			c.close()
			delete(ps.conns, a)
		}
	}
	ps.reindex()
}

// reindex publishes conns to the readers. mu is held.
func (ps *pubsub) reindex() {
	idx := make(map[string]*subConn, len(ps.conns))
	for a, c := range ps.conns {
		idx[a] = c
	}
	ps.index.Store(&idx)
}

// send writes payload to the node; Sends must not overlap.
func (c *subConn) send(payload []byte, deadline time.Time) error {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.d.Send(payload, deadline)
}

// write sends bytes to the client, serialized with the session's writes.
// A client that does not take them within subWriteTimeout is disconnected.
func (ps *pubsub) write(b []byte) {
	ps.wmu.Lock()
	defer ps.wmu.Unlock()
	_ = ps.nc.SetWriteDeadline(time.Now().Add(subWriteTimeout))
	if _, err := ps.nc.Write(b); err != nil {
		ps.nc.Close()
		return
	}
	_ = ps.nc.SetWriteDeadline(time.Time{})
}

// subFrame is a (un)subscribe reply: [kind, name, count] (a push in
// RESP3); name nil is a null (UNSUBSCRIBE with nothing subscribed).
func subFrame(kind string, name []byte, count int, resp3 bool) []byte {
	b := appendPush(nil, 3, resp3)
	b = redcon.AppendBulkString(b, kind)
	if name == nil {
		b = appendNull(b, resp3)
	} else {
		b = redcon.AppendBulk(b, name)
	}
	return redcon.AppendInt(b, int64(count))
}

func waitClosed(ch chan struct{}, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// expectOne queues a confirmation the node will send (ack: see expectation).
func (c *subConn) expectOne(ack chan struct{}) *expectation {
	e := &expectation{seen: make(chan struct{}), ack: ack}
	c.emu.Lock()
	if c.closing.Load() {
		close(e.seen)
		e.err = redcon.AppendError(nil, "ERR jupiter: connection to "+c.addr+" lost")
	} else {
		c.expect = append(c.expect, e)
	}
	c.emu.Unlock()
	return e
}

// read forwards the node's messages to the client and hands confirmations
// to whoever waits for them.
func (c *subConn) read() {
	defer c.ps.srv.wg.Done()
	defer close(c.done)
	for {
		r, err := c.d.Receive(time.Time{})
		if err != nil {
			if !c.closing.Load() && !c.ps.closed.Load() {
				// Messages would be missed silently: make the client
				// reconnect and resubscribe instead.
				c.ps.nc.Close()
			}
			c.fail()
			c.ps.barriersEnd(c)
			return
		}
		if len(r) > 0 && r[0] == '+' { // RESP3's PONG: nothing else is a simple string here
			c.ps.pong(c)
			continue
		}
		if len(r) > 0 && r[0] == '-' {
			if e := c.pop(); e != nil {
				e.err = bytes.Clone(r)
				close(e.seen)
			}
			continue
		}
		switch kind := frameKind(r); kind {
		case "message", "pmessage", "smessage":
			if !c.closing.Load() {
				c.ps.deliver(c, r, kind)
			}
			if !c.d.Buffered() {
				c.ps.sendBarriers()
			}
		case "pong": // a barrier's reply (RESP2): the client's PINGs are answered by the session
			c.ps.pong(c)
		case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
			if e := c.pop(); e != nil {
				close(e.seen)
				if e.ack != nil {
					<-e.ack // the session always closes it, having written the client's reply
				}
			}
		}
	}
}

func (c *subConn) pop() *expectation {
	c.emu.Lock()
	defer c.emu.Unlock()
	if len(c.expect) == 0 {
		return nil
	}
	e := c.expect[0]
	c.expect = c.expect[1:]
	return e
}

// fail ends every pending expectation (the connection is gone).
func (c *subConn) fail() {
	c.closing.Store(true)
	c.emu.Lock()
	for _, e := range c.expect {
		if e.err == nil {
			e.err = redcon.AppendError(nil, "ERR jupiter: connection to "+c.addr+" lost")
		}
		close(e.seen)
	}
	c.expect = nil
	c.emu.Unlock()
}

// close closes the connection (its subscriptions end with it) and makes
// the reader end.
func (c *subConn) close() {
	c.closing.Store(true)
	c.d.Close()
}

// frameKind is the first element of a RESP2 array (or RESP3 push) frame,
// lower-cased: a message's or confirmation's kind.
func frameKind(r []byte) string {
	if len(r) < 4 || (r[0] != '*' && r[0] != '>') {
		return ""
	}
	i := bytes.IndexByte(r, '\n')
	if i < 0 || i+1 >= len(r) || r[i+1] != '$' {
		return ""
	}
	var sc resp.Scanner
	n, err := sc.Scan(r[i+1:])
	if err != nil || n == 0 {
		return ""
	}
	body, _, ok := resp.Bulk(r[i+1 : i+1+n])
	if !ok || len(body) > 16 {
		return ""
	}
	return string(bytes.ToLower(body))
}

// followSubs moves every subscription to where v wants it (Router.ApplyStage
// calls it before it returns, see the pub/sub notes above).
func (s *Server) followSubs(v *view) {
	s.mu.Lock()
	all := make([]*pubsub, 0, len(s.subs))
	for ps := range s.subs {
		all = append(all, ps)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ps := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps.follow(v, time.Now().Add(s.opts.ControlTimeout))
		}()
	}
	wg.Wait()
}

// follow subscribes where v wants a subscription and the subscriber does
// not listen yet, waits for those confirmations, then unsubscribes where it
// is no longer wanted.
func (ps *pubsub) follow(v *view, deadline time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed.Load() || v.ring == nil {
		return
	}
	for _, phase := range []bool{true, false} { // subscribe first, then drop
		for kind := range ps.subs {
			k := subKind(kind)
			perConn := map[*subConn][][]byte{}
			var order []*subConn
			var exps []*expectation
			for name, have := range ps.subs[k] {
				want := ps.want(v, k, []byte(name))
				var diff []string
				if phase {
					diff = minus(want, have)
				} else {
					diff = minus(have, want)
				}
				if len(diff) == 0 {
					continue
				}
				if phase {
					ps.subs[k][name] = append(have, diff...)
				} else {
					ps.subs[k][name] = minus(have, diff)
				}
				for _, a := range diff {
					c, err := ps.conn(v, a)
					if err != nil {
						if c = ps.conns[a]; c == nil {
							continue
						}
					}
					if perConn[c] == nil {
						order = append(order, c)
					}
					perConn[c] = append(perConn[c], []byte(name))
					exps = append(exps, c.expectOne(nil))
				}
			}
			cmd := subNames[k]
			if !phase {
				cmd = unsubNames[k]
			}
			for _, c := range order {
				payload := resp.AppendCommand(nil, append([][]byte{[]byte(cmd)}, perConn[c]...)...)
				if err := c.send(payload, deadline); err != nil {
					c.fail()
				}
			}
			for _, e := range exps {
				waitClosed(e.seen, deadline)
			}
		}
	}
	ps.retireIdle()
}

// minus is a without b's elements.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func (s *Server) subsAdd(ps *pubsub) {
	s.mu.Lock()
	s.subs[ps] = struct{}{}
	s.mu.Unlock()
	s.Stats.Subscribers.Add(1)
}

func (s *Server) subsDel(ps *pubsub) {
	s.mu.Lock()
	_, ok := s.subs[ps]
	delete(s.subs, ps)
	s.mu.Unlock()
	if ok {
		s.Stats.Subscribers.Add(-1)
	}
}

// mergePubSub builds the reply of a PUBSUB introspection subcommand from
// every node's.
func mergePubSub(dst []byte, policy command.Policy, parts [][]byte) []byte {
	switch policy {
	case policyMaxInt:
		var best int64
		for _, p := range parts {
			if n, ok := resp.Int(p); ok && n > best {
				best = n
			}
		}
		return redcon.AppendInt(dst, best)
	case policyUnion:
		seen := map[string]bool{}
		var names [][]byte
		for _, p := range parts {
			for _, e := range arrayBulks(p) {
				if !seen[string(e)] {
					seen[string(e)] = true
					names = append(names, e)
				}
			}
		}
		dst = redcon.AppendArray(dst, len(names))
		for _, n := range names {
			dst = redcon.AppendBulk(dst, n)
		}
		return dst
	default: // policyMaxPairs: the same names in the same order from every node
		var names [][]byte
		var counts []int64
		for pi, p := range parts {
			elems := elemsOf(p)
			for i := 0; i+1 < len(elems); i += 2 {
				name, _, _ := resp.Bulk(elems[i])
				n, _ := resp.Int(elems[i+1])
				if pi == 0 {
					names = append(names, name)
					counts = append(counts, n)
				} else if j := i / 2; j < len(counts) && n > counts[j] {
					counts[j] = n
				}
			}
		}
		dst = redcon.AppendArray(dst, 2*len(names))
		for i, n := range names {
			dst = redcon.AppendBulk(dst, n)
			dst = redcon.AppendInt(dst, counts[i])
		}
		return dst
	}
}

// arrayBulks returns an array reply's bulk strings.
func arrayBulks(r []byte) [][]byte {
	var out [][]byte
	for _, e := range elemsOf(r) {
		if b, _, ok := resp.Bulk(e); ok {
			out = append(out, b)
		}
	}
	return out
}

// elemsOf is an array reply's elements (nil for anything else).
func elemsOf(r []byte) [][]byte {
	elems, _, ok := resp.Elements(r, nil)
	if !ok {
		return nil
	}
	return elems
}
