package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

// policyInfo is a proxy-internal merge: INFO's own sections followed by the
// keyspace section summed over every node.
const policyInfo command.Policy = 200

// configValues are what CONFIG GET reports; redis-benchmark asks for save and
// appendonly before it starts, and some clients ask for databases.
var configValues = [][2]string{
	{"appendonly", "no"},
	{"databases", "1"},
	{"save", ""},
}

// local answers commands that are about the client connection or the proxy.
func (s *session) answerLocal(v *view, spec *command.Spec, args [][]byte) {
	switch spec.Name {
	case "ping":
		if len(args) > 2 {
			s.errorReply("ERR wrong number of arguments for 'ping' command")
		} else if len(args) > 1 {
			s.localBulk(args[1])
		} else {
			s.localReply([]byte("+PONG\r\n"))
		}
	case "echo":
		s.localBulk(args[1])
	case "hello":
		s.hello(args)
	case "auth":
		s.auth(args)
	case "select":
		if string(args[1]) == "0" {
			s.localReply([]byte("+OK\r\n"))
		} else {
			// One database per node keeps every key's place a function of
			// its name alone (and the rebalance's markers and moves in one
			// keyspace); Memorystore's other databases stay unused.
			s.errorReply("ERR DB index is out of range (jupiter serves database 0 of every node)")
		}
	case "quit":
		s.localReply([]byte("+OK\r\n"))
		s.closing = true
	case "reset":
		s.txReset()
		s.endPubSub()
		if s.cs != nil {
			s.cs.name = ""
		}
		s.localReply([]byte("+RESET\r\n"))
	case "readonly", "readwrite":
		s.localReply([]byte("+OK\r\n"))
	case "info":
		s.info(v, args)
	case "jupiter":
		if len(args) > 2 && strings.EqualFold(string(args[1]), "slowlog") && strings.EqualFold(string(args[2]), "nodes") {
			s.nodesSlowlog(v, args[3:])
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.AdminTimeout)
		if s.admin {
			ctx = admin.Authorize(ctx)
		}
		reply := s.srv.admin.Command(ctx, args)
		cancel()
		s.localReply(reply)
	default:
		switch {
		case strings.HasPrefix(spec.Name, "client"):
			s.client(spec, args)
		case strings.HasPrefix(spec.Name, "command"):
			s.command(spec, args)
		case spec.Name == "config|get":
			s.configGet(v, args)
		case strings.HasPrefix(spec.Name, "slowlog"):
			s.slowlogCommand(spec, args)
		default:
			s.errorReply("ERR jupiter: '" + spec.Name + "' is not supported through the proxy")
		}
	}
}

func (s *session) client(spec *command.Spec, args [][]byte) {
	switch spec.Name {
	case "client|setname":
		if bytes.ContainsAny(args[2], " \n") {
			s.errorReply("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		s.state().name = string(args[2])
		s.localReply([]byte("+OK\r\n"))
	case "client|getname":
		if s.clientName() == "" {
			s.localReply(appendNull(s.enc[:0], s.resp3()))
		} else {
			s.localReply(redcon.AppendBulkString(s.enc[:0], s.clientName()))
		}
	case "client|id":
		s.localReply(redcon.AppendInt(s.enc[:0], int64(s.id)))
	case "client|unblock":
		s.clientUnblock(args)
	case "client|tracking", "client|caching", "client|getredir", "client|trackinginfo":
		// Invalidation messages come from the node holding a key, on the
		// connection that read it: with keys on many nodes and reads on
		// shared connections, jupiter cannot deliver them correctly.
		s.errorReply("ERR jupiter: " + spec.DisplayName() + " is not supported through a sharding proxy (client-side caching invalidations are per node and per connection)")
	case "client|setinfo", "client|no-evict", "client|no-touch":
		s.localReply([]byte("+OK\r\n"))
	case "client|info", "client|list":
		line := "id=" + strconv.FormatUint(uint64(s.id), 10) + " addr=" + s.nc.RemoteAddr().String() +
			" laddr=" + s.nc.LocalAddr().String() + " name=" + s.clientName() + " db=0 resp=" + strconv.Itoa(s.proto()) + "\n"
		s.localReply(appendText(s.enc[:0], line, s.resp3()))
	default:
		sub := spec.Name
		if len(args) > 1 {
			sub = string(args[1])
		}
		s.errorReply("ERR unknown subcommand '" + resp.Printable([]byte(sub)) + "'. Try CLIENT HELP. (jupiter answers CLIENT itself)")
	}
}

func (s *session) command(spec *command.Spec, args [][]byte) {
	switch spec.Name {
	case "command":
		s.localReply([]byte("*0\r\n"))
	case "command|count":
		s.localReply(redcon.AppendInt(s.enc[:0], int64(len(command.All()))))
	case "command|list":
		b := s.enc[:0]
		all := command.All()
		b = redcon.AppendArray(b, len(all))
		for _, c := range all {
			b = redcon.AppendBulkString(b, c.Name)
		}
		s.localReply(b)
		s.enc = b[:0]
	case "command|getkeys":
		sub := command.Lookup(args[2:])
		if sub == nil || !sub.CheckArity(len(args)-2) {
			s.errorReply("ERR Invalid command specified")
			return
		}
		keys, err := sub.KeyIndexes(args[2:], nil)
		if err != nil {
			s.errorReply(err.Error())
			return
		}
		if len(keys) == 0 {
			s.errorReply("ERR The command has no key arguments")
			return
		}
		b := redcon.AppendArray(s.enc[:0], len(keys))
		for _, k := range keys {
			b = redcon.AppendBulk(b, args[2+k])
		}
		s.localReply(b)
	default:
		// COMMAND DOCS / INFO: an error makes redis-cli fall back to its
		// built-in help, which is better than an empty table.
		s.errorReply("ERR jupiter does not serve '" + spec.Name + "'")
	}
}

// INFO sections, as a bit set (entry.aux of a policyInfo entry).
const (
	infoServer = 1 << iota
	infoClients
	infoMemory
	infoStats
	infoReplication
	infoKeyspace
	infoJupiter
	infoNodes = infoMemory | infoStats | infoKeyspace // what the nodes contribute
)

var infoNames = map[string]int32{"server": infoServer, "clients": infoClients, "memory": infoMemory,
	"stats": infoStats, "replication": infoReplication, "keyspace": infoKeyspace, "jupiter": infoJupiter}

// info answers INFO [section …]: the proxy's own sections, and the nodes'
// memory, stats and keyspace summed (serveradmin.go); the reply is built
// by mergeInfo once the nodes answered.
func (s *session) info(v *view, args [][]byte) {
	var mask int32
	for _, a := range args[1:] {
		switch n := strings.ToLower(string(a)); n {
		case "all", "everything", "default":
			mask = -1
		default:
			mask |= infoNames[n]
		}
	}
	if len(args) == 1 {
		mask = -1
	}
	if v.ring == nil {
		mask &^= infoNodes | infoJupiter
	}
	c0 := s.ncall
	cn := 0
	if mask&infoNodes != 0 {
		for _, i := range v.fan {
			s.newCall(int(i))
			s.shares[i].payload = resp.AppendCommand(s.shares[i].payload, []byte("INFO"), []byte("memory"), []byte("stats"), []byte("keyspace"))
			cn++
		}
	}
	s.cmds = append(s.cmds, entry{kind: kMerge, policy: policyInfo, c0: int32(c0), cn: int32(cn), aux: mask})
}

// mergeInfo builds the INFO reply. Unreachable nodes are skipped and
// counted, since INFO is for humans and must not fail because one node did.
func (s *session) mergeInfo(v *view, dst []byte, e *entry) []byte {
	mask := e.aux
	replies := make([][]byte, 0, e.cn)
	errs := make([]bool, 0, e.cn)
	for _, c := range s.calls[e.c0 : e.c0+e.cn] {
		replies = append(replies, c.Reply)
		errs = append(errs, c.Err != nil)
	}
	ni := parseNodeInfo(replies, errs)
	srv := s.srv
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	var b strings.Builder
	if mask&infoServer != 0 {
		b.WriteString("# Server\r\n")
		b.WriteString("redis_version:" + srv.opts.RedisVersion + "\r\n")
		b.WriteString("redis_mode:standalone\r\n")
		b.WriteString("jupiter_version:" + srv.opts.Version + "\r\n")
		b.WriteString("process_id:" + strconv.Itoa(os.Getpid()) + "\r\n")
		b.WriteString("uptime_in_seconds:" + itoa(int64(time.Since(srv.start).Seconds())) + "\r\n\r\n")
	}
	if mask&infoClients != 0 {
		b.WriteString("# Clients\r\nconnected_clients:" + itoa(srv.Stats.Connected.Load()) + "\r\n")
		b.WriteString("blocked_clients:" + itoa(srv.Stats.Blocked.Load()) + "\r\n")
		b.WriteString("pubsub_clients:" + itoa(srv.Stats.Subscribers.Load()) + "\r\n\r\n")
	}
	if mask&infoMemory != 0 {
		ni.writeSection(&b, "Memory", "memory", nil)
	}
	if mask&infoStats != 0 {
		ni.writeSection(&b, "Stats", "stats", [][2]string{
			{"total_connections_received", itoa(srv.Stats.Accepted.Load())},
			{"total_commands_processed", itoa(srv.Stats.Commands.Load())},
			{"rejected_connections", itoa(srv.Stats.Rejected.Load())},
		})
	}
	if mask&infoReplication != 0 {
		b.WriteString("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n")
	}
	if mask&infoKeyspace != 0 {
		ni.writeSection(&b, "Keyspace", "keyspace", nil)
	}
	if mask&infoJupiter != 0 && v.ring != nil {
		b.WriteString("# Jupiter\r\n")
		b.WriteString("ring_version:" + strconv.FormatUint(v.ring.Version(), 10) + "\r\n")
		up := 0
		addrs := make([]string, 0, v.ring.Len())
		for i := range v.ring.Len() {
			addrs = append(addrs, v.addrs[i])
			if v.nodes[i].Up() {
				up++
			}
		}
		b.WriteString("nodes:" + strings.Join(addrs, ",") + "\r\n")
		b.WriteString("nodes_up:" + strconv.Itoa(up) + "\r\n")
		if ni.missing > 0 {
			b.WriteString("info_nodes_unreachable:" + strconv.Itoa(ni.missing) + "\r\n")
		}
		b.WriteString("\r\n")
	}
	return appendText(dst, b.String(), s.resp3())
}

// auth handles AUTH <pw> and AUTH <user> <pw>. The users are "default"
// (--password) and "admin" (--admin-password, which also grants ring
// changes). Without any password configured AUTH succeeds, so applications
// configured with a Memorystore AUTH string keep working behind jupiter.
func (s *session) auth(args [][]byte) {
	user, pw := "default", args[1]
	if len(args) == 3 {
		user, pw = string(args[1]), args[2]
	} else if len(args) != 2 {
		s.errorReply("ERR syntax error")
		return
	}
	if s.login(user, pw) {
		s.localReply([]byte("+OK\r\n"))
	}
}

// login checks user's password (AUTH, HELLO … AUTH); a failure is answered
// with WRONGPASS.
func (s *session) login(user string, pw []byte) bool {
	o := &s.srv.opts
	switch {
	case o.Password == "" && o.AdminPassword == "":
		s.authed = true
	case user == "admin" && o.AdminPassword != "" && secretEqual(pw, o.AdminPassword):
		s.authed, s.admin = true, true
	case user == "default" && o.Password != "" && secretEqual(pw, o.Password):
		s.authed, s.admin = true, false
	default:
		// Includes a wrong AUTH when only an admin password is set: data
		// access needs no AUTH then, and it must not silently pass as admin.
		s.errorReply(errWrongPass)
		return false
	}
	return true
}

// secretEqual compares in constant time; hashing first hides the length too.
func secretEqual(got []byte, want string) bool {
	a, b := sha256.Sum256(got), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// localBulk answers with a bulk string, built in place.
func (s *session) localBulk(b []byte) {
	lo := len(s.local)
	s.local = redcon.AppendBulk(s.local, b)
	s.cmds = append(s.cmds, entry{kind: kLocal, lo: int32(lo), hi: int32(len(s.local))})
}
