package command

import (
	"sort"
	"strconv"
	"strings"
)

// MarkdownTable renders the README's "supported commands" table from the
// command table, so the documentation is derived from the code that routes.
//
// One row per command. A container's subcommands are grouped into rows by
// identical (keys, class, handling), e.g. "OBJECT ENCODING, FREQ, IDLETIME,
// REFCOUNT"; a container whose subcommands are all handled alike gets one
// "CLUSTER (all subcommands)" row. Columns:
//
//   - Keys: "-" (none), a fixed count ("1", "2"), "1..N" (every remaining
//     argument, or every other one for MSET pairs), "numkeys" (counted by an
//     argument), "[STORE k]" (an optional keyword argument), combined with "+".
//   - Class: the static Class, with a note when ClassFor refines it.
//   - Handling: how the proxy routes the command and builds the reply.
//
// The output is deterministic (everything is sorted).
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Command | Keys | Class | Handling |\n")
	b.WriteString("|---|---|---|---|\n")
	row := func(cmd string, s *Spec) {
		b.WriteString("| ")
		b.WriteString(cell(cmd))
		b.WriteString(" | ")
		b.WriteString(cell(keysText(s)))
		b.WriteString(" | ")
		b.WriteString(cell(classText(s)))
		b.WriteString(" | ")
		b.WriteString(cell(handlingText(s)))
		b.WriteString(" |\n")
	}
	for _, s := range all {
		if s.Parent != nil {
			continue
		}
		if len(s.Subcommands) == 0 {
			row(s.DisplayName(), s)
			continue
		}
		if s.CheckArity(1) { // COMMAND is valid on its own
			row(s.DisplayName(), s)
		}
		type group struct {
			subs []string
			spec *Spec
		}
		var groups []*group
		byKey := map[string]*group{}
		names := make([]string, 0, len(s.Subcommands))
		for name := range s.Subcommands {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			sub := s.Subcommands[name]
			k := keysText(sub) + "\x00" + classText(sub) + "\x00" + handlingText(sub)
			g := byKey[k]
			if g == nil {
				g = &group{spec: sub}
				byKey[k] = g
				groups = append(groups, g)
			}
			g.subs = append(g.subs, strings.ToUpper(name))
		}
		parent := s.DisplayName()
		for _, g := range groups {
			if len(groups) == 1 && len(g.subs) > 1 {
				row(parent+" (all subcommands)", g.spec)
				continue
			}
			row(parent+" "+strings.Join(g.subs, ", "), g.spec)
		}
	}
	return b.String()
}

// cell escapes a markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// keysText summarises where the keys of s are (see MarkdownTable).
func keysText(s *Spec) string {
	switch s.Name {
	case "sort":
		return "1 + [STORE k]"
	case "migrate":
		return "1, or KEYS k…"
	}
	fixed := 0
	var parts []string
	for _, ks := range s.KeySpecs {
		if ks.Flags&KeyNotKey != 0 || ks.Begin.unknown() {
			continue
		}
		var what string
		n := 0
		switch {
		case ks.Find.KeyNumIdx >= 0:
			what = "numkeys"
		case ks.Find.LastKey >= 0:
			n = ks.Find.LastKey/max(ks.Find.KeyStep, 1) + 1
			what = strconv.Itoa(n)
		default:
			what = "1..N"
		}
		if ks.Begin.Keyword != "" {
			if n == 1 {
				parts = append(parts, "["+ks.Begin.Keyword+" k]")
			} else {
				parts = append(parts, ks.Begin.Keyword+" "+what)
			}
			continue
		}
		if n > 0 {
			fixed += n
			continue
		}
		parts = append(parts, what)
	}
	if fixed > 0 {
		parts = append([]string{strconv.Itoa(fixed)}, parts...)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " + ")
}

// classText is the Class column: the static class, and when ClassFor refines
// it, a note on how.
func classText(s *Spec) string {
	if s.classNote != "" {
		return s.Class.String() + "; " + s.classNote
	}
	return s.Class.String()
}

// handlingText is the Handling column.
func handlingText(s *Spec) string {
	var h string
	switch s.Policy {
	case PolicySingle:
		switch keysText(s) {
		case "-":
			h = "one node (random, or the hash= override's)"
		case "1":
			h = "single node"
		default:
			h = "single node (all keys on one node)"
		}
	case PolicyMGet:
		h = "split per node, merged in key order"
	case PolicyMSet:
		h = "split per node, OK if every node replied OK"
	case PolicySum:
		h = "split per node, integers summed"
	case PolicyAllSum:
		h = "all nodes, integers summed"
	case PolicyAllOK:
		h = "all nodes, OK if every node replied OK"
	case PolicyAllFirst:
		h = "all nodes, first node's reply if all succeeded"
	case PolicyAllConcat:
		h = "all nodes, arrays concatenated"
	case PolicyScan:
		h = "all nodes, one cursor across every node"
	case PolicyLocal:
		h = "answered by proxy"
	case PolicyPubSub:
		h = pubsubText(s.Name)
	case PolicyBlocking:
		h = "blocking: single node (all keys on one node), on a dedicated connection while blocked"
	case PolicyTransaction:
		h = "transaction: queued by the proxy, run on the one node of its keys (WATCH holds a dedicated connection)"
	case PolicyRefuse:
		h = "refused: " + strings.TrimPrefix(strings.TrimPrefix(s.Refusal, "ERR jupiter: "+s.DisplayName()+" "), "is ")
	default:
		h = s.Policy.String()
	}
	if s.refusesWhen != "" {
		h += "; refused " + s.refusesWhen
	}
	if s.blocksWhen != "" {
		h += "; " + s.blocksWhen + " on a dedicated connection while blocked"
	}
	return h
}

// pubsubText is the Handling column of the pub/sub commands.
func pubsubText(name string) string {
	switch name {
	case "publish", "spublish":
		return "pub/sub: the channel's node (by its slot, {tag} aware)"
	case "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe":
		return "pub/sub: the channel's node, on the subscriber's dedicated connection to it"
	case "psubscribe", "punsubscribe":
		return "pub/sub: every node, on the subscriber's dedicated connections"
	case "pubsub|numpat":
		return "pub/sub: every node, the largest count"
	case "pubsub|numsub", "pubsub|shardnumsub":
		return "pub/sub: every node, per channel the largest count"
	case "pubsub|channels", "pubsub|shardchannels":
		return "pub/sub: every node, the union of the channels"
	}
	return "pub/sub: one node (random)"
}
