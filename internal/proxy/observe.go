package proxy

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/tidwall/redcon"
)

// What operators look at: the proxy's own slow log, hot keys and big keys
// (admin.Observers), fed from the request path at the cost of a few
// comparisons per command and a clock read per batch; a command is looked
// at again (its arguments parsed anew from the read buffer, its keys found)
// only when it is slow, big, or sampled.
//
// Time through jupiter. Commands run in batches (all that one read
// brought, pipelined), and a batch's replies are written together, so a
// command's time is defined per batch:
//
//   - the batch starts when its bytes arrived (the read that completed
//     it), or when the previous batch of the same read ended;
//   - its replies are ready when the last of them is built, just before
//     the write to the client (time the client takes to read is not
//     counted, as Redis does not count it);
//   - a command's node wait is, over its Calls, the longest time from the
//     batch's queueing to the Call's reply (backend.Call.Done: when the
//     node's reply bytes were received);
//   - the proxy's time is the batch's duration less its longest node wait
//     — parsing, planning, queueing, merging, and the scheduling delays in
//     between — and is shared by the batch's commands;
//   - a command's duration is the proxy's time plus its own node wait. The
//     slowest command of a batch thus takes the batch's whole duration, and
//     a command whose node answered quickly is not logged because another
//     node of the same batch was slow (its reply waited for the other's, to
//     keep the request order, as a pipelined command waits in Redis
//     without counting in Redis's slow log either).
//
// Commands on the rebalance path and on dedicated connections (WATCH
// transactions, SUBSCRIBE…) are timed from when they start running to
// their reply, without a node wait; blocking commands (BLPOP…) are not
// logged, since their time is mostly the wait they asked for.

// observing is what the request path needs to know about the observers,
// computed once.
func (srv *Server) initObserve() {
	o := srv.opts.Obs
	srv.slowNs = -1
	if o.Slowlog != nil && o.Slowlog.SlowerThan() >= 0 {
		srv.slowNs = int64(o.Slowlog.SlowerThan())
	}
	srv.bigMin = math.MaxInt
	if t := o.BigKeys.Threshold(); t > 0 {
		srv.bigMin = t
	}
	if sc := o.HotKeys.Scale(); sc > 0 && sc <= math.MaxUint32 {
		srv.hotN = uint32(sc)
	}
}

// stamp is the time a batch starts, when the slow log needs it.
func (s *session) stamp() int64 {
	if s.srv.slowNs < 0 {
		return 0
	}
	return time.Now().UnixNano()
}

// cmdArgs parses the arguments of the command at s.buf[r0:r1] again (nil
// if that is not possible). They stay valid until the batch ends.
func (s *session) cmdArgs(r0, r1 int32) [][]byte {
	if r0 < 0 || r1 <= r0 || int(r1) > len(s.buf) {
		return nil
	}
	_, args, _, _, err := resp.ParseCommand(s.buf[r0:r1], s.obsArgv[:0], s.srv.opts.Limits)
	s.obsArgv = args[:0]
	if err != nil {
		return nil
	}
	return args
}

// callNodes returns the addresses of the nodes of e's Calls, in first use
// order.
func (s *session) callNodes(v *view, e *entry) []string {
	var out []string
next:
	for i := e.c0; i < e.c0+e.cn; i++ {
		a := v.addrs[s.callNode[i]]
		for _, o := range out {
			if o == a {
				continue next
			}
		}
		out = append(out, a)
	}
	return out
}

// observe feeds a command that was sampled, or whose request or reply
// (s.out[at:]) is big, to the hot-key sketch and the big-key list.
func (s *session) observe(v *view, e *entry, at int, now int64) {
	args := s.cmdArgs(e.r0, e.r1)
	if len(args) == 0 {
		return
	}
	o := s.srv.opts.Obs
	spec := command.Lookup(args)
	var keys []int
	hkey := []byte(nil)
	if spec != nil {
		if k, ok := command.HashOverride(spec, args, s.srv.opts.HashPrefix); ok {
			hkey, args = k, args[:len(args)-1]
		}
		keys, _ = spec.KeyIndexes(args, s.obsKeys[:0])
		s.obsKeys = keys[:0]
	}
	req, rep := int(e.r1-e.r0), len(s.out)-at
	if e.sampled && len(keys) > 0 {
		c := spec.ClassFor(args)
		write := c == command.ClassWrite || c == command.ClassRMW || c == command.ClassDelete
		keys = keys[:min(len(keys), maxSampledKeys)]
		per := (req + rep) / len(keys)
		for _, k := range keys {
			o.HotKeys.Add(hotkeys.Sample{Key: args[k], Node: keyNode(v, args[k], hkey), Bytes: per, Write: write}, now)
		}
	}
	if big := s.srv.bigMin; req >= big || rep >= big {
		var key []byte
		if len(keys) > 0 {
			key = args[keys[0]]
		}
		name := "unknown"
		if spec != nil {
			name = spec.Name
		}
		size, reply := req, false
		if rep > req {
			size, reply = rep, true
		}
		var node string
		if e.cn > 0 {
			node = strings.Join(s.callNodes(v, e), ",")
		}
		o.BigKeys.Add(key, name, node, size, reply, now/1e9)
	}
}

// maxSampledKeys bounds how many keys of one sampled multi-key command
// (MGET, MSET, DEL…) are counted; its bytes are shared among them.
const maxSampledKeys = 16

// keyNode is the address of the node serving key (or its hash= override
// hkey) under v, "" if there is no ring.
func keyNode(v *view, key, hkey []byte) string {
	if v == nil || v.ring == nil {
		return ""
	}
	if hkey != nil {
		key = hkey
	}
	return v.addrs[v.ring.Owner(key)]
}

// slowBatch logs the commands of s.cmds[:n] whose duration reached the
// threshold (see "Time through jupiter"); the batch was queued at enq and
// its replies were ready at end.
func (s *session) slowBatch(v *view, n int, enq, end int64) {
	var waitMax int64
	for _, c := range s.calls[:s.ncall] {
		waitMax = max(waitMax, c.Done-enq)
	}
	proxy := max(end-s.start-waitMax, 0)
	for i := range n {
		e := &s.cmds[i]
		var wait int64
		for _, c := range s.calls[e.c0 : e.c0+e.cn] {
			wait = max(wait, c.Done-enq)
		}
		if proxy+wait < s.srv.slowNs {
			continue
		}
		var nodes []string
		if e.cn > 0 {
			nodes = s.callNodes(v, e)
		}
		s.logSlow(e, proxy+wait, wait, nodes, end)
	}
}

// logSlow records one slow command; nodeWait < 0: not measured.
func (s *session) logSlow(e *entry, d, nodeWait int64, nodes []string, end int64) {
	args := s.cmdArgs(e.r0, e.r1)
	en := slowlog.Entry{Time: end / 1e9, DurationUS: d / 1e3, NodeUS: -1, ProxyUS: -1, Nodes: nodes,
		Args: slowlog.Args(args), Client: s.nc.RemoteAddr().String(), ClientName: s.clientName(), Command: "unknown"}
	if spec := command.Lookup(args); spec != nil {
		en.Command = spec.Name
	}
	if nodeWait >= 0 {
		en.NodeUS = nodeWait / 1e3
		en.ProxyUS = en.DurationUS - en.NodeUS
	}
	if en.Nodes == nil {
		en.Nodes = []string{}
	}
	s.srv.opts.Obs.Slowlog.Add(en)
}

// noteRun observes the batch's last command (s.tail) after the rebalance
// path or a dedicated connection ran it from start, its reply at s.out[at:].
// nodeWait is -1 when not measured.
func (s *session) noteRun(v *view, at int, start time.Time, nodeWait int64) {
	e := &s.tail
	big := s.srv.bigMin
	if s.srv.slowNs < 0 && !e.sampled && len(s.out)-at < big && int(e.r1-e.r0) < big {
		return
	}
	end := time.Now().UnixNano()
	e.cn = 0 // its Calls, if any, are not the batch's
	if e.sampled || len(s.out)-at >= big || int(e.r1-e.r0) >= big {
		s.observe(v, e, at, end)
	}
	if s.srv.slowNs >= 0 {
		if d := end - start.UnixNano(); d >= s.srv.slowNs {
			s.logSlow(e, d, nodeWait, nil, end)
		}
		s.start = end
	}
}

// slowlogCommand answers SLOWLOG GET [count] | LEN | RESET | HELP from
// the proxy's own slow log, in Redis's formats (an entry is id, unix time,
// microseconds, arguments, client address, client name; the same in RESP2
// and RESP3). JUPITER SLOWLOG shows what Redis's format leaves out.
func (s *session) slowlogCommand(spec *command.Spec, args [][]byte) {
	l := s.srv.opts.Obs.Slowlog
	switch spec.Name {
	case "slowlog|len":
		s.localReply(redcon.AppendInt(s.enc[:0], int64(l.Len())))
	case "slowlog|reset":
		l.Reset()
		s.localReply([]byte("+OK\r\n"))
	case "slowlog|get":
		count := 10
		if len(args) > 2 {
			n, err := strconv.ParseInt(string(args[2]), 10, 64)
			if err != nil || n < -1 {
				s.errorReply("ERR count should be greater than or equal to -1") // Redis's reply to both
				return
			}
			count = int(min(n, math.MaxInt32))
		}
		s.localReply(appendSlowlog(s.enc[:0], l.Get(count)))
	default:
		lines := []string{
			"SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
			"GET [<count>]",
			"    Return top <count> entries from jupiter's slow log (default: 10, -1 mean all).",
			"    Entries are made of:",
			"    id, timestamp, time in microseconds, arguments array, client IP and port,",
			"    client name",
			"    (the time through jupiter; JUPITER SLOWLOG shows the node wait and nodes too)",
			"LEN",
			"    Return the length of jupiter's slow log.",
			"RESET",
			"    Reset jupiter's slow log.",
			"HELP",
			"    Prints this help.",
			"The nodes' own slow logs: JUPITER SLOWLOG NODES [GET [<count>]|LEN|RESET].",
		}
		b := redcon.AppendArray(s.enc[:0], len(lines))
		for _, l := range lines {
			b = redcon.AppendString(b, l)
		}
		s.localReply(b)
	}
}

// appendSlowlog encodes entries as SLOWLOG GET's reply.
func appendSlowlog(b []byte, entries []slowlog.Entry) []byte {
	b = redcon.AppendArray(b, len(entries))
	for _, e := range entries {
		b = redcon.AppendArray(b, 6)
		b = redcon.AppendInt(b, e.ID)
		b = redcon.AppendInt(b, e.Time)
		b = redcon.AppendInt(b, e.DurationUS)
		b = redcon.AppendArray(b, len(e.Args))
		for _, a := range e.Args {
			b = redcon.AppendBulkString(b, a)
		}
		b = redcon.AppendBulkString(b, e.Client)
		b = redcon.AppendBulkString(b, e.ClientName)
	}
	return b
}

// nodesSlowlog answers JUPITER SLOWLOG NODES [GET [count]] | LEN | RESET:
// the nodes' own slow logs, asked of every node and merged (GET: entries
// node after node; LEN: summed; RESET: OK if every node said OK).
func (s *session) nodesSlowlog(v *view, args [][]byte) {
	if v.ring == nil {
		s.errorReply(errNoRing)
		return
	}
	sub := "GET"
	if len(args) > 0 {
		sub = strings.ToUpper(string(args[0]))
	}
	var policy command.Policy
	switch {
	case sub == "GET" && len(args) <= 2:
		policy = command.PolicyAllConcat
	case sub == "LEN" && len(args) == 1:
		policy = command.PolicyAllSum
	case sub == "RESET" && len(args) == 1:
		policy = command.PolicyAllOK
	default:
		s.errorReply("ERR usage: JUPITER SLOWLOG NODES [GET [count]] | LEN | RESET")
		return
	}
	fwd := [][]byte{[]byte("SLOWLOG"), []byte(sub)}
	if len(args) == 2 {
		fwd = append(fwd, args[1])
	}
	s.fanout(v, policy, fwd, nil)
}
