package command

import (
	"slices"
	"strings"
	"testing"
)

func TestPolicySpotChecks(t *testing.T) {
	tests := []struct {
		line   string
		policy Policy
		class  Class
	}{
		{"MGET", PolicyMGet, ClassRead},
		{"MSET", PolicyMSet, ClassWrite},
		{"DEL", PolicySum, ClassDelete},
		{"UNLINK", PolicySum, ClassDelete},
		{"EXISTS", PolicySum, ClassRead},
		{"TOUCH", PolicySum, ClassRead},
		{"GETDEL", PolicySingle, ClassDelete},
		{"DBSIZE", PolicyAllSum, ClassKeyless},
		{"FLUSHDB", PolicyAllOK, ClassKeyless},
		{"FLUSHALL", PolicyAllOK, ClassKeyless},
		{"SCRIPT FLUSH", PolicyAllOK, ClassKeyless},
		{"SCRIPT LOAD", PolicyAllFirst, ClassKeyless},
		{"FUNCTION LOAD", PolicyAllFirst, ClassKeyless},
		{"FUNCTION DELETE", PolicyAllOK, ClassKeyless},
		{"FUNCTION FLUSH", PolicyAllOK, ClassKeyless},
		{"FUNCTION RESTORE", PolicyAllOK, ClassKeyless},
		{"FUNCTION LIST", PolicySingle, ClassKeyless},
		{"FUNCTION DUMP", PolicySingle, ClassKeyless},
		{"FUNCTION STATS", PolicySingle, ClassKeyless},
		{"SCRIPT EXISTS", PolicySingle, ClassKeyless},
		{"KEYS", PolicyAllConcat, ClassKeyless},
		{"SCAN", PolicyScan, ClassKeyless},
		{"TIME", PolicySingle, ClassKeyless},
		{"RANDOMKEY", PolicySingle, ClassKeyless},
		{"ROLE", PolicySingle, ClassKeyless},
		{"LOLWUT", PolicySingle, ClassKeyless},
		{"PING", PolicyLocal, ClassConnection},
		{"ECHO", PolicyLocal, ClassConnection},
		{"HELLO", PolicyLocal, ClassConnection},
		{"AUTH", PolicyLocal, ClassConnection},
		{"SELECT", PolicyLocal, ClassConnection},
		{"QUIT", PolicyLocal, ClassConnection},
		{"RESET", PolicyLocal, ClassConnection},
		{"READONLY", PolicyLocal, ClassConnection},
		{"READWRITE", PolicyLocal, ClassConnection},
		{"CLIENT SETNAME", PolicyLocal, ClassConnection},
		{"CLIENT KILL", PolicyLocal, ClassConnection},
		{"COMMAND", PolicyLocal, ClassKeyless},
		{"COMMAND DOCS", PolicyLocal, ClassKeyless},
		{"COMMAND GETKEYS", PolicyLocal, ClassKeyless},
		{"CONFIG GET", PolicyLocal, ClassKeyless},
		{"CONFIG SET", PolicyAllOK, ClassKeyless},
		{"SLOWLOG GET", PolicyLocal, ClassKeyless},
		{"MEMORY STATS", PolicySingle, ClassKeyless},
		{"INFO", PolicyLocal, ClassKeyless},
		{"JUPITER", PolicyLocal, ClassKeyless},
		{"GET", PolicySingle, ClassRead},
		{"SET", PolicySingle, ClassRMW}, // static: ClassFor refines
		{"SETEX", PolicySingle, ClassWrite},
		{"PSETEX", PolicySingle, ClassWrite},
		{"SETNX", PolicySingle, ClassRMW},
		{"MSETNX", PolicySingle, ClassRMW},
		{"INCR", PolicySingle, ClassRMW},
		{"LPUSH", PolicySingle, ClassRMW},
		{"EXPIRE", PolicySingle, ClassRMW},
		{"RENAME", PolicySingle, ClassRMW},
		{"RESTORE", PolicySingle, ClassRMW},
		{"EVAL", PolicySingle, ClassRMW},
		{"EVAL_RO", PolicySingle, ClassRead},
		{"FCALL", PolicySingle, ClassRMW},
		{"OBJECT ENCODING", PolicySingle, ClassRead},
		{"OBJECT FREQ", PolicySingle, ClassRead},
		{"MEMORY USAGE", PolicySingle, ClassRead},
		{"XREAD", PolicySingle, ClassRead},
		{"XREADGROUP", PolicySingle, ClassRMW},
		{"SORT", PolicySingle, ClassRMW},
		{"SORT_RO", PolicySingle, ClassRead},
		{"PFCOUNT", PolicySingle, ClassRead},
	}
	for _, tt := range tests {
		s := Lookup(argv(tt.line))
		if s == nil {
			t.Fatalf("Lookup(%q) = nil", tt.line)
		}
		if s.Policy != tt.policy || s.Class != tt.class {
			t.Errorf("%s: policy %v class %v, want %v %v", tt.line, s.Policy, s.Class, tt.policy, tt.class)
		}
	}
}

func TestRefused(t *testing.T) {
	type refusal struct {
		line string
		why  string // substring of the refusal
	}
	tests := []refusal{
		{"MONITOR", "not supported through a sharding proxy"},
		{"SYNC", "sharding proxy"},
		{"PSYNC", "sharding proxy"},
		{"REPLCONF", "sharding proxy"},
		{"CLUSTER INFO", "sharding proxy"},
		{"CLUSTER NODES", "sharding proxy"},
		{"REPLICAOF", "sharding proxy"},
		{"SLAVEOF", "sharding proxy"},
		{"SHUTDOWN", "sharding proxy"},
		{"DEBUG", "sharding proxy"},
		{"MIGRATE", "sharding proxy"},
		{"ACL WHOAMI", "sharding proxy"},
		{"ACL SETUSER", "sharding proxy"},
		{"BGSAVE", "sharding proxy"},
		{"BGREWRITEAOF", "sharding proxy"},
		{"SAVE", "sharding proxy"},
		{"FAILOVER", "sharding proxy"},
		{"MODULE LIST", "sharding proxy"},
		{"SWAPDB", "sharding proxy"},
		{"MOVE", "sharding proxy"},
		{"WAIT", "sharding proxy"},
		{"PFDEBUG", "sharding proxy"},
		{"PFSELFTEST", "sharding proxy"},
		{"ASKING", "sharding proxy"},
		{"RESTORE-ASKING", "sharding proxy"},
		{"SCRIPT DEBUG", "sharding proxy"},
	}
	for _, tt := range tests {
		args := argv(tt.line)
		s := Lookup(args)
		if s == nil {
			t.Fatalf("Lookup(%q) = nil", tt.line)
		}
		want := "ERR jupiter: " + tt.line + " "
		if s.Policy != PolicyRefuse || s.Class != ClassBlocked || !strings.HasPrefix(s.Refusal, want) || !strings.Contains(s.Refusal, tt.why) {
			t.Errorf("%s: policy %v class %v refusal %q; want refused, blocked, %q…%q", tt.line, s.Policy, s.Class, s.Refusal, want, tt.why)
		}
		if msg, ok := s.Refuses(args); !ok || msg != s.Refusal {
			t.Errorf("%s: Refuses = %q, %v", tt.line, msg, ok)
		}
		if c := s.ClassFor(args); c != ClassBlocked {
			t.Errorf("%s: ClassFor = %v", tt.line, c)
		}
	}
}

func TestRefusesByArguments(t *testing.T) {
	tests := []struct {
		line    string
		refused bool
		prefix  string
	}{
		{"XREAD BLOCK 0 STREAMS s $", false, ""},
		{"SORT k", false, ""},
		{"SORT k BY nosort GET #", false, ""},
		{"SORT k LIMIT 0 10 ALPHA STORE d", false, ""},
		{"SORT k BY w_*", true, "ERR jupiter: SORT with a BY/GET key pattern is not supported through a sharding proxy"},
		{"SORT k GET o_*->f", true, "ERR jupiter: SORT"},
		{"SORT {t}k BY w_{t}_*", false, ""},
		{"SORT {t}k BY w_{t}_*->field GET o_{t}* GET #", false, ""},
		{"SORT {t}k BY w_{u}_*", true, "ERR jupiter: SORT"},
		{"SORT {t}k BY w_*_{t}", true, "ERR jupiter: SORT"}, // the element could hold a '{'
		{"SORT {t}k BY w_{*}", true, "ERR jupiter: SORT"},
		{"SORT {t}k BY w_{}*", true, "ERR jupiter: SORT"},
		{"SORT mylist BY {mylist}w_*", false, ""}, // no tag: the whole key is the tag
		{"SORT k GET store", false, ""},
		{"SORT_RO k BY w_*", true, "ERR jupiter: SORT_RO with a BY/GET"},
		{"SORT_RO {t}k GET {t}o_*", false, ""},
		{"COPY a b", false, ""},
		{"COPY a b REPLACE", false, ""},
		{"COPY a b DB 1", true, "ERR jupiter: COPY with DB"},
		{"COPY a db", false, ""}, // destination named "db"
		{"GET k", false, ""},
		{"PING", false, ""},
	}
	for _, tt := range tests {
		args := argv(tt.line)
		s := Lookup(args)
		msg, refused := s.Refuses(args)
		if refused != tt.refused || !strings.HasPrefix(msg, tt.prefix) {
			t.Errorf("%q: Refuses = %q, %v; want %v, %q…", tt.line, msg, refused, tt.refused, tt.prefix)
		}
		if refused && s.ClassFor(args) != ClassBlocked {
			t.Errorf("%q: refused but ClassFor = %v", tt.line, s.ClassFor(args))
		}
		if refused && s.Policy == PolicyRefuse {
			t.Errorf("%q: conditional refusal on a PolicyRefuse command", tt.line)
		}
	}
	args := argv("SORT k BY w_*")
	if allocs := testing.AllocsPerRun(50, func() { _, _ = Lookup(args).Refuses(args) }); allocs != 0 {
		t.Errorf("Refuses: %v allocs", allocs)
	}
}

func TestBlockTimeout(t *testing.T) {
	for _, tt := range []struct {
		line string
		idx  int
		ms   bool
	}{
		{"XREAD STREAMS s 0", -1, true},
		{"XREAD COUNT 5 STREAMS s 0", -1, true},
		{"XREAD BLOCK 0 STREAMS s $", 2, true},
		{"xread count 1 block 100 streams s $", 4, true},
		{"XREAD STREAMS block 0", -1, true}, // a stream named "block"
		{"XREADGROUP GROUP g c STREAMS s >", -1, true},
		{"XREADGROUP GROUP block block STREAMS s >", -1, true},
		{"XREADGROUP GROUP g c NOACK BLOCK 10 STREAMS s >", 6, true},
		{"BLPOP a b 0", 3, false},
		{"BRPOP a 1.5", 2, false},
		{"BLMOVE a b LEFT RIGHT 0", 5, false},
		{"BRPOPLPUSH a b 0", 3, false},
		{"BZPOPMIN z 0", 2, false},
		{"BLMPOP 0 2 a b LEFT", 1, false},
		{"BZMPOP 0.1 1 z MIN COUNT 2", 1, false},
		{"LPOP a", -1, false},
	} {
		args := argv(tt.line)
		idx, ms := Lookup(args).BlockTimeout(args)
		if idx != tt.idx || (idx >= 0 && ms != tt.ms) {
			t.Errorf("BlockTimeout(%q) = %d, %v; want %d, %v", tt.line, idx, ms, tt.idx, tt.ms)
		}
	}
}

func TestClassFor(t *testing.T) {
	tests := []struct {
		line string
		want Class
	}{
		{"SET k v", ClassWrite},
		{"SET k v EX 10", ClassWrite},
		{"set k v px 10", ClassWrite},
		{"SET k v EXAT 10", ClassWrite},
		{"SET k v NX", ClassRMW},
		{"SET k v xx", ClassRMW},
		{"SET k v GET", ClassRMW},
		{"SET k v KEEPTTL", ClassRMW},
		{"SET k v EX 10 NX", ClassRMW},
		{"SET k nx", ClassWrite}, // the value, not the option
		{"GETEX k", ClassRead},
		{"GETEX k PERSIST", ClassRMW},
		{"BITFIELD k GET u8 0", ClassRead},
		{"BITFIELD k GET u8 0 GET i4 8", ClassRead},
		{"BITFIELD k GET u8 0 SET u8 0 1", ClassRMW},
		{"BITFIELD k OVERFLOW SAT INCRBY u8 0 1", ClassRMW},
		{"BITFIELD k", ClassRead},
		{"SORT k", ClassRead},
		{"SORT k STORE d", ClassRMW},
		{"SORT k GET store", ClassRead},
		{"GEORADIUS k 1 2 3 km", ClassRead},
		{"GEORADIUS k 1 2 3 km STORE d", ClassRMW},
		{"GEORADIUSBYMEMBER k m 3 km STOREDIST d", ClassRMW},
		{"GEORADIUSBYMEMBER k store 3 km", ClassRead}, // a member named "store"
		{"RESTORE k 0 payload", ClassRMW},
		{"RESTORE k 0 payload REPLACE", ClassWrite},
		{"RESTORE k 0 payload IDLETIME 5 REPLACE", ClassWrite},
		{"MSET a 1", ClassWrite},
		{"GET k", ClassRead},
		{"DEL a b", ClassDelete},
		{"INCR k", ClassRMW},
		{"PING", ClassConnection},
		{"DBSIZE", ClassKeyless},
		{"XREAD BLOCK 0 STREAMS s $", ClassRead},
		{"MONITOR", ClassBlocked},
	}
	for _, tt := range tests {
		args := argv(tt.line)
		if got := Lookup(args).ClassFor(args); got != tt.want {
			t.Errorf("ClassFor(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

// TestEveryKeylessCommandDecided: every keyless command must have an explicit
// decision (its own entry in decisions, or an inheriting container's). A
// newer Redis adding a keyless command fails here instead of being routed
// to a random node by accident; until decided it is refused at run time.
func TestEveryKeylessCommandDecided(t *testing.T) {
	for _, s := range All() {
		if s.hasKeys() {
			continue
		}
		if _, ok := lookupDecision(s); !ok {
			t.Errorf("keyless command %s (%s) has no decision: add it to decisions in policy.go", s.DisplayName(), s.Name)
		}
		if strings.Contains(s.Refusal, whyUndecided) {
			t.Errorf("%s refused as undecided", s.Name)
		}
	}
}

// TestEveryCommandClassified: every spec has a valid policy and class, and
// refusals are consistent.
func TestEveryCommandClassified(t *testing.T) {
	for _, s := range All() {
		if s.Policy > PolicyPubSub {
			t.Errorf("%s: invalid policy %d", s.Name, s.Policy)
		}
		if s.Class > ClassBlocked {
			t.Errorf("%s: invalid class %d", s.Name, s.Class)
		}
		if (s.Policy == PolicyRefuse) != (s.Class == ClassBlocked) {
			t.Errorf("%s: policy %v with class %v", s.Name, s.Policy, s.Class)
		}
		if s.Policy == PolicyRefuse || s.refuses != nil {
			if !strings.HasPrefix(s.Refusal, "ERR jupiter: "+s.DisplayName()+" ") || strings.ContainsAny(s.Refusal, "\r\n") {
				t.Errorf("%s: bad refusal %q", s.Name, s.Refusal)
			}
		} else if s.Refusal != "" {
			t.Errorf("%s: refusal %q on a routed command", s.Name, s.Refusal)
		}
		if s.Flags&FlagBlocking != 0 && s.Policy != PolicyRefuse && s.timeoutAt == nil {
			t.Errorf("%s: blocking command neither refused nor given its timeout argument", s.Name)
		}
		if (s.Policy == PolicyBlocking) != (s.timeoutAt != nil && s.blocksWhen == "") {
			t.Errorf("%s: PolicyBlocking must go with an unconditional timeout argument", s.Name)
		}
		if s.Flags&FlagPubSub != 0 && s.Policy != PolicyPubSub {
			t.Errorf("%s: pub/sub command not routed as pub/sub", s.Name)
		}
		keyed := s.hasKeys()
		switch s.Policy {
		case PolicyMGet, PolicyMSet, PolicySum:
			// Split per node needs a single spec covering 1..N (or pairs).
			if len(s.KeySpecs) != 1 || s.KeySpecs[0].Begin.Index != 1 || s.KeySpecs[0].Find.LastKey != -1 {
				t.Errorf("%s: %v needs one index-1 range key spec, has %+v", s.Name, s.Policy, s.KeySpecs)
			}
		case PolicyAllSum, PolicyAllOK, PolicyAllFirst, PolicyAllConcat, PolicyScan:
			if keyed {
				t.Errorf("%s: %v on a keyed command", s.Name, s.Policy)
			}
		}
		if keyed && s.Class == ClassKeyless {
			t.Errorf("%s: keyed but ClassKeyless", s.Name)
		}
		if !keyed && s.Policy != PolicyRefuse && s.Policy != PolicyLocal && s.Policy != PolicyTransaction && s.Policy != PolicyPubSub && s.Class != ClassKeyless {
			t.Errorf("%s: keyless but class %v", s.Name, s.Class)
		}
	}
}

// TestDecisionsExist: no stale entries for commands Redis no longer has.
func TestDecisionsExist(t *testing.T) {
	names := map[string]bool{}
	for _, s := range All() {
		names[s.Name] = true
	}
	for name := range decisions {
		if !names[name] {
			t.Errorf("decision for unknown command %q", name)
		}
	}
}

// TestAllShardsTipsReviewed: Redis tags some commands request_policy
// all_shards/all_nodes (Redis Cluster clients fan them out). Each must be
// fanned out by jupiter too, or be listed here with the reason it is not.
func TestAllShardsTipsReviewed(t *testing.T) {
	deviations := map[string]string{
		"ping":                "answered by the proxy",
		"info":                "answered by the proxy",
		"latency|doctor":      "one node (random, or the hash= override's): the report is per node",
		"latency|graph":       "one node (random, or the hash= override's): the graph is per node",
		"latency|histogram":   "one node (random, or the hash= override's): histograms cannot be added up from the reply",
		"memory|doctor":       "one node (random, or the hash= override's): the report is per node",
		"memory|malloc-stats": "one node (random, or the hash= override's): allocator text is per node",
		"memory|stats":        "one node (random, or the hash= override's): INFO memory sums the fleet",
		"randomkey":           "one random node is a random key (may be nil while other nodes have keys)",
		"slowlog|get":         "jupiter's own slow log (time through the proxy); the nodes': JUPITER SLOWLOG NODES",
		"slowlog|len":         "jupiter's own slow log; the nodes': JUPITER SLOWLOG NODES LEN",
		"slowlog|reset":       "jupiter's own slow log; the nodes': JUPITER SLOWLOG NODES RESET",
		"script|exists":       "scripts are loaded on every node through jupiter, so one node knows",
		"script|kill":         "one node (use hash= to reach the busy one); Redis tip: one_succeeded",
		"function|kill":       "one node (use hash= to reach the busy one); Redis tip: one_succeeded",
		"function|stats":      "one node; a per-node view",
		"wait":                "refused",
	}
	for _, s := range All() {
		fanOut := slices.Contains(s.Tips, "request_policy:all_shards") || slices.Contains(s.Tips, "request_policy:all_nodes")
		if !fanOut {
			continue
		}
		switch s.Policy {
		case PolicyAllSum, PolicyAllOK, PolicyAllFirst, PolicyAllConcat, PolicyScan:
			continue
		}
		if s.Policy == PolicyRefuse && s.Parent != nil && decisions[s.Parent.Name].inherit {
			continue // LATENCY, SLOWLOG…: refused as a whole
		}
		if _, ok := deviations[s.Name]; ok || (s.Policy == PolicyRefuse && strings.Contains(s.Refusal, "per-node")) {
			continue
		}
		t.Errorf("%s: Redis fans it out (%v) but jupiter's policy is %v: decide, or list it in deviations", s.Name, s.Tips, s.Policy)
	}
}

func TestJupiterCommand(t *testing.T) {
	s := Lookup(argv("JUPITER ring"))
	if s == nil || s.Arity != -2 || s.Policy != PolicyLocal || s.Class != ClassKeyless || s.Parent != nil || len(s.KeySpecs) != 0 {
		t.Fatalf("JUPITER spec = %+v", s)
	}
}
