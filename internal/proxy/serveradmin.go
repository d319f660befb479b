package proxy

import (
	"bytes"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/alphauslabs/jupiter/internal/command"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

// Server administration through the proxy: CONFIG, INFO, LATENCY, MEMORY
// (the command table decides which go to every node and how their replies
// merge; this file holds what the table cannot say). SLOWLOG is the
// proxy's own (observe.go).
//
//   - CONFIG SET/RESETSTAT/REWRITE change every node, so with
//     --admin-password they need AUTH admin (NOPERM otherwise); the reply is
//     OK only if every node said OK, else the first error, naming the node.
//   - CONFIG GET answers what a node has (one node: the fleet is configured
//     alike), with databases reported as 1 since jupiter serves database 0
//     only; a node that refuses CONFIG (Memorystore) leaves the proxy's own
//     answers for the few parameters clients ask about.
//   - INFO: the proxy's own sections (server, clients, stats, jupiter) and,
//     from every node, memory, stats and keyspace summed (integers added,
//     other values taken from the first node), replication as a master's.

const (
	policyConfigGet command.Policy = 220 // one node's CONFIG GET, databases rewritten
)

// adminOnly reports whether spec changes every node's configuration.
func adminOnly(spec *command.Spec) bool {
	switch spec.Name {
	case "config|set", "config|resetstat", "config|rewrite":
		return true
	}
	return false
}

// errNotAdmin is the reply to a node-wide change without AUTH admin.
const errNotAdmin = "NOPERM jupiter: this command changes every node's configuration: AUTH admin <admin-password> first"

// nodeNamed returns the first error among parts with the node that sent
// it, for a reply fanned out in v's fan order; nil when none failed.
func nodeNamed(v *view, parts [][]byte) []byte {
	for i, p := range parts {
		if !resp.IsError(p) {
			continue
		}
		line := strings.TrimRight(string(p[1:]), "\r\n")
		addr := "?"
		if i < len(v.fan) {
			addr = v.addrs[v.fan[i]]
		}
		return redcon.AppendError(nil, line+" (jupiter: node "+addr+")")
	}
	return nil
}

// configGet sends CONFIG GET to one node (merged by configGetReply).
func (s *session) configGet(v *view, args [][]byte) {
	if v == nil || v.ring == nil {
		s.localReply(s.configGetLocal(args))
		return
	}
	node := s.random(v.ring.Len())
	c0 := s.ncall
	s.newCall(node)
	s.shares[node].payload = resp.AppendCommand(s.shares[node].payload, args...)
	lo := len(s.local)
	s.local = append(s.local, s.configGetLocal(args)...)
	s.cmds = append(s.cmds, entry{kind: kMerge, policy: policyConfigGet, c0: int32(c0), cn: 1,
		lo: int32(lo), hi: int32(len(s.local))})
}

// configGetReply is the node's CONFIG GET reply with databases set to 1;
// a node that refused it is answered with the proxy's values (fallback).
func (s *session) configGetReply(dst []byte, reply, fallback []byte) []byte {
	elems, ok := pairsOf(reply)
	if !ok {
		return append(dst, fallback...)
	}
	dst = appendMap(dst, len(elems)/2, s.resp3())
	for i := 0; i+1 < len(elems); i += 2 {
		dst = append(dst, elems[i]...)
		if name, _, ok := resp.Bulk(elems[i]); ok && string(name) == "databases" {
			dst = redcon.AppendBulkString(dst, "1")
			continue
		}
		dst = append(dst, elems[i+1]...)
	}
	return dst
}

// pairsOf returns the elements of a flat name/value array (RESP2) or of a
// map (RESP3).
func pairsOf(reply []byte) ([][]byte, bool) {
	if len(reply) > 0 && reply[0] == '%' {
		i := bytes.IndexByte(reply, '\n')
		if i < 0 {
			return nil, false
		}
		n, err := strconv.Atoi(string(bytes.TrimSpace(reply[1:i])))
		if err != nil || n < 0 {
			return nil, false
		}
		arr := append(strconv.AppendInt([]byte{'*'}, int64(2*n), 10), reply[i-1:]...)
		elems, _, ok := resp.Elements(arr, nil)
		return elems, ok
	}
	elems, _, ok := resp.Elements(reply, nil)
	return elems, ok && len(elems)%2 == 0
}

// configGetLocal answers CONFIG GET from the proxy's own values: what
// redis-benchmark and some clients ask for when the nodes cannot say.
func (s *session) configGetLocal(args [][]byte) []byte {
	var pairs []string
	for _, pat := range args[2:] {
		p := strings.ToLower(string(pat))
		for _, kv := range configValues {
			if ok, _ := path.Match(p, kv[0]); ok {
				pairs = append(pairs, kv[0], kv[1])
			}
		}
	}
	b := appendMap(nil, len(pairs)/2, s.resp3())
	for _, p := range pairs {
		b = redcon.AppendBulkString(b, p)
	}
	return b
}

// nodeInfo is what the nodes' INFO replies say, merged: per section, the
// fields in first-seen order with integers summed.
type nodeInfo struct {
	sections map[string][]string          // section → field names in order
	values   map[string]map[string]string // section → field → value
	missing  int                          // nodes that did not answer
}

func parseNodeInfo(replies [][]byte, errs []bool) *nodeInfo {
	ni := &nodeInfo{sections: map[string][]string{}, values: map[string]map[string]string{}}
	for i, r := range replies {
		if errs[i] {
			ni.missing++
			continue
		}
		body, ok := textOf(r)
		if !ok {
			ni.missing++
			continue
		}
		sec := ""
		for _, line := range strings.Split(string(body), "\r\n") {
			if strings.HasPrefix(line, "# ") {
				sec = strings.ToLower(strings.TrimPrefix(line, "# "))
				continue
			}
			name, val, ok := strings.Cut(line, ":")
			if !ok || sec == "" {
				continue
			}
			if ni.values[sec] == nil {
				ni.values[sec] = map[string]string{}
			}
			old, seen := ni.values[sec][name]
			if !seen {
				ni.sections[sec] = append(ni.sections[sec], name)
				ni.values[sec][name] = val
				continue
			}
			ni.values[sec][name] = addInfo(sec, old, val)
		}
	}
	return ni
}

// addInfo combines two nodes' values of one field: integers add up (and
// the keyspace's keys/expires), anything else keeps the first node's.
func addInfo(sec, a, b string) string {
	if x, err := strconv.ParseInt(a, 10, 64); err == nil {
		if y, err := strconv.ParseInt(b, 10, 64); err == nil {
			return strconv.FormatInt(x+y, 10)
		}
		return a
	}
	if sec != "keyspace" {
		return a
	}
	var out []string
	bv := map[string]string{}
	for _, f := range strings.Split(b, ",") {
		k, v, _ := strings.Cut(f, "=")
		bv[k] = v
	}
	for _, f := range strings.Split(a, ",") {
		k, v, _ := strings.Cut(f, "=")
		if k == "keys" || k == "expires" {
			x, _ := strconv.ParseInt(v, 10, 64)
			y, _ := strconv.ParseInt(bv[k], 10, 64)
			v = strconv.FormatInt(x+y, 10)
		}
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ",")
}

// humanBytes formats like Redis's used_memory_human.
func humanBytes(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "K", "M", "G", "T"} {
		if f < 1024 || u == "T" {
			if u == "B" {
				return strconv.FormatInt(n, 10) + "B"
			}
			return strconv.FormatFloat(f, 'f', 2, 64) + u
		}
		f /= 1024
	}
	return ""
}

// writeSection appends a section the nodes reported, summed, with the
// proxy's own values for the fields in own.
func (ni *nodeInfo) writeSection(b *strings.Builder, title, sec string, own [][2]string) {
	b.WriteString("# " + title + "\r\n")
	done := map[string]bool{}
	for _, name := range ni.sections[sec] {
		val := ni.values[sec][name]
		if i := slices.IndexFunc(own, func(kv [2]string) bool { return kv[0] == name }); i >= 0 {
			val = own[i][1]
			done[name] = true
		} else if strings.HasSuffix(name, "_human") {
			if n, err := strconv.ParseInt(ni.values[sec][strings.TrimSuffix(name, "_human")], 10, 64); err == nil {
				val = humanBytes(n)
			}
		}
		b.WriteString(name + ":" + val + "\r\n")
	}
	for _, kv := range own {
		if !done[kv[0]] {
			b.WriteString(kv[0] + ":" + kv[1] + "\r\n")
		}
	}
	b.WriteString("\r\n")
}
