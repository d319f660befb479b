package command

import (
	"github.com/alphauslabs/jupiter/internal/ring"
	"strconv"
	"strings"
)

// This file holds jupiter's decisions about Redis commands. The generated
// zz_table_gen.go says what Redis does; everything here says what jupiter
// does about it, so regenerating the table never changes behaviour silently:
// a keyless command without a decision is refused at run time and fails
// TestEveryKeylessCommandDecided.
//
// Order of precedence when classifying a command (see decide):
//  1. an explicit entry in decisions for the command itself;
//  2. an entry for its container marked inherit (CLUSTER, ACL, CLIENT…);
//  3. the "blocking" flag: refused (blocking commands need per-connection
//     state on a node that jupiter does not keep yet);
//  4. the "pubsub" flag: refused (pub/sub is not routed yet);
//  5. commands with keys: PolicySingle (the proxy checks that every key
//     lives on one node);
//  6. anything else: refused as undecided.

// Refusal reasons. A refusal reads "ERR jupiter: <COMMAND> <reason>".
const (
	whyProxy        = "is not supported through a sharding proxy"
	whyReplication  = whyProxy + " (replication is per node)"
	whyClusterProto = whyProxy + " (jupiter is not a Redis Cluster: it shards by itself)"
	whyAdmin        = whyProxy + " (per-node server administration: connect to a node directly)"
	whyDiagnostics  = whyProxy + " (per-node diagnostics: connect to a node directly)"
	whyMonitor      = whyProxy + " (it could only watch one node)"
	whyDatabases    = whyProxy + " (jupiter does not address other databases)"
	whyMigrate      = whyProxy + " (moving keys between nodes is jupiter's rebalancing job)"
	whyWait         = whyProxy + " (replica acknowledgements are per node)"
	whyScriptDebug  = whyProxy + " (the Lua debugger needs a direct connection)"
	whyPubSub       = "is not supported through jupiter (a pub/sub command without a routing decision)"
	whyBlocking     = "is not supported through jupiter (a blocking command without a routing decision)"
	whyUndecided    = "is not supported through jupiter (no routing decision for this command)"
)

// decision is jupiter's hand-written choice for one command.
type decision struct {
	policy Policy
	// class overrides the class derived from flags and key specs; classAuto
	// means derive it.
	class Class
	// why is the refusal reason for PolicyRefuse.
	why string
	// inherit applies this decision to every subcommand that has no entry of
	// its own, so a newer Redis adding e.g. a CLUSTER subcommand is covered.
	inherit bool
}

// classAuto marks "derive the class" in a decision; it is not a valid Class.
const classAuto Class = 255

func refuse(why string) decision {
	return decision{policy: PolicyRefuse, class: ClassBlocked, why: why}
}
func refuseAll(why string) decision    { d := refuse(why); d.inherit = true; return d }
func local(c Class) decision           { return decision{policy: PolicyLocal, class: c} }
func localAll(c Class) decision        { d := local(c); d.inherit = true; return d }
func keyless(p Policy) decision        { return decision{policy: p, class: ClassKeyless} }
func keyed(p Policy, c Class) decision { return decision{policy: p, class: c} }
func auto(p Policy) decision           { return decision{policy: p, class: classAuto} }

// decisions is every command jupiter decided on explicitly. Keyless commands
// must all appear here (directly or through an inheriting container); keyed
// commands only when they are not plain PolicySingle.
var decisions = map[string]decision{
	// ---- keys split per node, replies merged -----------------------------
	"mget":   auto(PolicyMGet),
	"mset":   auto(PolicyMSet),
	"del":    keyed(PolicySum, ClassDelete),
	"unlink": keyed(PolicySum, ClassDelete),
	"exists": auto(PolicySum),
	"touch":  auto(PolicySum),
	"getdel": keyed(PolicySingle, ClassDelete),

	// ---- keyless, every node ---------------------------------------------
	"dbsize":           keyless(PolicyAllSum),
	"flushdb":          keyless(PolicyAllOK),
	"flushall":         keyless(PolicyAllOK),
	"keys":             keyless(PolicyAllConcat),
	"scan":             keyless(PolicyScan),
	"script|flush":     keyless(PolicyAllOK),
	"script|load":      keyless(PolicyAllFirst), // replies the sha1, identical on every node
	"function|load":    keyless(PolicyAllFirst), // replies the library name
	"function|flush":   keyless(PolicyAllOK),
	"function|delete":  keyless(PolicyAllOK),
	"function|restore": keyless(PolicyAllOK),

	// ---- keyless, one node (random, or the hash= override's node) ---------
	// Every node holds the same scripts and functions when they are loaded
	// through jupiter (PolicyAll*), so any node can answer questions about
	// them. KILL goes to one node: use hash=<key> to reach the busy one.
	"time":           keyless(PolicySingle),
	"randomkey":      keyless(PolicySingle), // a random key of a random node; may be nil while other nodes have keys
	"role":           keyless(PolicySingle),
	"lolwut":         keyless(PolicySingle),
	"script|exists":  keyless(PolicySingle),
	"script|kill":    keyless(PolicySingle),
	"script|help":    keyless(PolicySingle),
	"function|list":  keyless(PolicySingle),
	"function|dump":  keyless(PolicySingle),
	"function|stats": keyless(PolicySingle),
	"function|kill":  keyless(PolicySingle),
	"function|help":  keyless(PolicySingle),
	"object|help":    keyless(PolicySingle),
	"memory|help":    keyless(PolicySingle),

	// ---- server administration and diagnostics through the proxy --------
	// Changes reach every node (admin only when --admin-password is set);
	// a node's error is named. Per-node diagnostics go to every node and
	// are merged, or to one node (random, or the hash= override's) where
	// Redis's reply cannot be merged meaningfully.
	"config|set":       keyless(PolicyAllOK),
	"config|resetstat": keyless(PolicyAllOK),
	"config|rewrite":   keyless(PolicyAllOK),
	// SLOWLOG is jupiter's own slow log (time through the proxy, see
	// internal/slowlog); the nodes' are JUPITER SLOWLOG NODES GET|LEN|RESET.
	"slowlog":             local(ClassKeyless),
	"slowlog|get":         local(ClassKeyless),
	"slowlog|len":         local(ClassKeyless),
	"slowlog|reset":       local(ClassKeyless),
	"slowlog|help":        local(ClassKeyless),
	"latency":             keyless(PolicySingle),
	"latency|latest":      keyless(PolicyAllConcat),
	"latency|history":     keyless(PolicyAllConcat),
	"latency|reset":       keyless(PolicyAllSum),
	"latency|doctor":      keyless(PolicySingle),
	"latency|graph":       keyless(PolicySingle),
	"latency|histogram":   keyless(PolicySingle),
	"latency|help":        keyless(PolicySingle),
	"memory|stats":        keyless(PolicySingle),
	"memory|doctor":       keyless(PolicySingle),
	"memory|malloc-stats": keyless(PolicySingle),
	"memory|purge":        keyless(PolicyAllOK),
	"xinfo|help":          keyless(PolicySingle),
	"xgroup|help":         keyless(PolicySingle),

	// Container commands are only looked up on their own when the
	// subcommand is missing, which always fails the arity check (except
	// COMMAND, which is valid alone); their policy is then never used.
	"object":   keyless(PolicySingle),
	"memory":   keyless(PolicySingle),
	"xinfo":    keyless(PolicySingle),
	"xgroup":   keyless(PolicySingle),
	"script":   keyless(PolicySingle),
	"function": keyless(PolicySingle),

	// ---- answered by the proxy -------------------------------------------
	"ping":       local(ClassConnection),
	"echo":       local(ClassConnection),
	"hello":      local(ClassConnection),
	"auth":       local(ClassConnection),
	"select":     local(ClassConnection),
	"quit":       local(ClassConnection),
	"reset":      local(ClassConnection),
	"readonly":   local(ClassConnection),
	"readwrite":  local(ClassConnection),
	"client":     localAll(ClassConnection),
	"command":    localAll(ClassKeyless),
	"info":       local(ClassKeyless),
	"config":     local(ClassKeyless),
	"config|get": local(ClassKeyless),
	"jupiter":    local(ClassKeyless),

	// ---- refused: cannot work through a sharding proxy --------------------
	"monitor":        refuse(whyMonitor),
	"sync":           refuse(whyReplication),
	"psync":          refuse(whyReplication),
	"replconf":       refuse(whyReplication),
	"replicaof":      refuse(whyReplication),
	"slaveof":        refuse(whyReplication),
	"failover":       refuse(whyReplication),
	"wait":           refuse(whyWait),
	"cluster":        refuseAll(whyClusterProto),
	"asking":         refuse(whyClusterProto),
	"restore-asking": refuse(whyClusterProto),
	"shutdown":       refuse(whyAdmin),
	"debug":          refuse(whyAdmin),
	"acl":            refuseAll(whyAdmin),
	"module":         refuseAll(whyAdmin),
	"bgsave":         refuse(whyAdmin),
	"bgrewriteaof":   refuse(whyAdmin),
	"save":           refuse(whyAdmin),
	"lastsave":       refuse(whyAdmin),
	"config|help":    refuse(whyAdmin),
	"pfdebug":        refuse(whyDiagnostics),
	"pfselftest":     refuse(whyDiagnostics),
	"script|debug":   refuse(whyScriptDebug),
	"swapdb":         refuse(whyDatabases),
	"move":           refuse(whyDatabases),
	"migrate":        refuse(whyMigrate),

	// ---- refused until later work supports them ---------------------------
	// ---- transactions: queued by the proxy, run on one node --------------
	"multi":   {policy: PolicyTransaction, class: ClassConnection},
	"exec":    {policy: PolicyTransaction, class: ClassConnection},
	"discard": {policy: PolicyTransaction, class: ClassConnection},
	"watch":   {policy: PolicyTransaction, class: ClassConnection},
	"unwatch": {policy: PolicyTransaction, class: ClassConnection},

	// ---- pub/sub: channels by slot, patterns on every node ----------------
	"subscribe":    {policy: PolicyPubSub, class: ClassConnection},
	"psubscribe":   {policy: PolicyPubSub, class: ClassConnection},
	"ssubscribe":   {policy: PolicyPubSub, class: ClassConnection},
	"unsubscribe":  {policy: PolicyPubSub, class: ClassConnection},
	"punsubscribe": {policy: PolicyPubSub, class: ClassConnection},
	"sunsubscribe": {policy: PolicyPubSub, class: ClassConnection},
	"publish":      keyless(PolicyPubSub),
	"spublish":     keyless(PolicyPubSub),
	"pubsub":       {policy: PolicyPubSub, class: ClassKeyless, inherit: true},

	// ---- blocking: one node, a dedicated connection while blocked ---------
	"blpop":      auto(PolicyBlocking),
	"brpop":      auto(PolicyBlocking),
	"brpoplpush": auto(PolicyBlocking),
	"blmove":     auto(PolicyBlocking),
	"blmpop":     auto(PolicyBlocking),
	"bzpopmin":   auto(PolicyBlocking),
	"bzpopmax":   auto(PolicyBlocking),
	"bzmpop":     auto(PolicyBlocking),
	// Blocking only with a BLOCK argument (BlockTimeout).
	"xread":      auto(PolicySingle),
	"xreadgroup": auto(PolicySingle),
}

// jupiterSpec is jupiter's own command (JUPITER <subcommand> …), answered by
// the proxy. It is not a Redis command, so it is added here rather than by
// the generator.
var jupiterSpec = &Spec{Name: "jupiter", Arity: -2}

// laterSubcommands are subcommands newer than the Redis 7.0 table that
// current clients send on every connection (go-redis ≥ 9.2 sends CLIENT
// SETINFO); the proxy answers them itself, so they are added by hand.
var laterSubcommands = []*Spec{
	{Name: "client|setinfo", Arity: 4, Flags: FlagNoScript},
	{Name: "client|no-touch", Arity: 3, Flags: FlagNoScript},
}

// lookupDecision finds the decision for s: its own entry, or its container's
// if that one is marked inherit.
func lookupDecision(s *Spec) (decision, bool) {
	if d, ok := decisions[s.Name]; ok {
		return d, true
	}
	if s.Parent != nil {
		if d, ok := decisions[s.Parent.Name]; ok && d.inherit {
			return d, true
		}
	}
	return decision{}, false
}

// decide fills in s.Class, s.Policy, s.Refusal and the argument-dependent
// hooks. It runs once per spec at init.
func decide(s *Spec) {
	d, ok := lookupDecision(s)
	switch {
	case ok:
	case s.Flags&FlagBlocking != 0:
		d = refuse(whyBlocking)
	case s.Flags&FlagPubSub != 0:
		d = refuse(whyPubSub)
	case s.hasKeys():
		d = auto(PolicySingle)
	default:
		d = refuse(whyUndecided)
	}
	s.Policy = d.policy
	s.Class = d.class
	if d.class == classAuto {
		s.Class = deriveClass(s)
	}
	if d.policy == PolicyRefuse {
		s.Refusal = refusalText(s, d.why)
	}
	hooks(s)
}

// refusalText builds "ERR jupiter: OBJECT FOO <why>" for spec s.
func refusalText(s *Spec, why string) string {
	return "ERR jupiter: " + s.DisplayName() + " " + why
}

// DisplayName is the command's name as users write it: upper case, with a
// space between container and subcommand ("MEMORY USAGE").
func (s *Spec) DisplayName() string {
	return strings.ToUpper(strings.ReplaceAll(s.Name, "|", " "))
}

// hasKeys reports whether any key spec can find real keys (NOT_KEY specs,
// like SPUBLISH's shard channel, do not count).
func (s *Spec) hasKeys() bool {
	for i := range s.KeySpecs {
		if s.KeySpecs[i].Flags&KeyNotKey == 0 {
			return true
		}
	}
	return false
}

// deriveClass computes the static class of a keyed, routed command from
// Redis's flags and key specs.
//
// A command is a blind write (ClassWrite) only when every key it touches is
// overwritten without being read: key-spec flags OW+UPDATE, without ACCESS,
// without INSERT (SETNX/MSETNX only write when the key is absent, which
// depends on the old value), and without the "incomplete", "unknown" or
// "variable_flags" escapes. That is what lets a rebalance send the write to
// the new owner alone.
func deriveClass(s *Spec) Class {
	if !s.hasKeys() {
		return ClassKeyless
	}
	if s.Flags&FlagReadonly != 0 && s.Flags&FlagWrite == 0 {
		return ClassRead
	}
	if s.Flags&FlagWrite == 0 {
		// Neither readonly nor write with keys: EVAL, EVALSHA, FCALL may do
		// anything to their keys.
		return ClassRMW
	}
	blind := true
	for _, ks := range s.KeySpecs {
		if ks.Flags&KeyNotKey != 0 {
			continue
		}
		f := ks.Flags
		if f&KeyOW == 0 || f&KeyUpdate == 0 ||
			f&(KeyAccess|KeyInsert|KeyDelete|KeyRW|KeyRM|KeyIncomplete|KeyVariableFlags) != 0 ||
			ks.Begin.unknown() {
			blind = false
			break
		}
	}
	if blind {
		return ClassWrite
	}
	return ClassRMW
}

// unknown reports Redis's begin_search type "unknown" (see BeginSearch).
func (b BeginSearch) unknown() bool { return b.Index == 0 && b.Keyword == "" }

// Argument-dependent behaviour. The static Class of these commands is the
// conservative one; ClassFor refines it from the arguments.
func hooks(s *Spec) {
	switch s.Name {
	case "set":
		s.classFor = classSet
		s.classNote = "write without NX/XX/GET/KEEPTTL"
	case "getex":
		s.classFor = classGetEx
		s.classNote = "read without options"
	case "bitfield":
		s.classFor = classBitfield
		s.classNote = "read with GET only"
	case "restore":
		s.Class = ClassRMW // without REPLACE it fails when the key exists
		s.classFor = classRestore
		s.classNote = "write with REPLACE"
	case "sort":
		s.keys = keysSort
		s.classFor = classSort
		s.classNote = "read without STORE"
		s.refuses = refusesSort
		s.refusesWhen = "with a BY/GET pattern that may read another node"
		s.Refusal = refusalText(s, whySortPattern)
	case "sort_ro":
		s.refuses = refusesSort
		s.refusesWhen = "with a BY/GET pattern that may read another node"
		s.Refusal = refusalText(s, whySortPattern)
	case "georadius", "georadiusbymember":
		s.classFor = classGeoRadius
		s.classNote = "read without STORE/STOREDIST"
	case "migrate":
		s.keys = keysMigrate
	case "copy":
		s.refuses = refusesCopy
		s.refusesWhen = "with DB"
		s.Refusal = "ERR jupiter: COPY with DB " + whyDatabases
	case "xread", "xreadgroup":
		s.timeoutAt, s.timeoutMS = xreadBlock, true
		s.blocksWhen = "with BLOCK"
	case "blpop", "brpop", "bzpopmin", "bzpopmax", "brpoplpush", "blmove":
		s.timeoutAt = lastArg
	case "blmpop", "bzmpop":
		s.timeoutAt = firstArg
	}
}

const whySortPattern = "with a BY/GET key pattern " + whyProxy +
	" unless the pattern holds the sorted key's {hash tag} before its '*'"

// classSet: SET k v is a blind write; NX, XX, GET and KEEPTTL make it depend
// on the old value.
func classSet(s *Spec, args [][]byte) Class {
	for i := 3; i < len(args); i++ {
		a := args[i]
		switch {
		case equalFold(a, "nx"), equalFold(a, "xx"), equalFold(a, "get"), equalFold(a, "keepttl"):
			return ClassRMW
		case equalFold(a, "ex"), equalFold(a, "px"), equalFold(a, "exat"), equalFold(a, "pxat"):
			i++ // skip the time, which cannot be an option
		}
	}
	return ClassWrite
}

// classGetEx: GETEX k without options is a plain read.
func classGetEx(s *Spec, args [][]byte) Class {
	if len(args) <= 2 {
		return ClassRead
	}
	return ClassRMW
}

// classBitfield: BITFIELD with GET operations only is a read.
func classBitfield(s *Spec, args [][]byte) Class {
	for i := 2; i < len(args); {
		if !equalFold(args[i], "get") {
			return ClassRMW
		}
		i += 3 // GET type offset
	}
	return ClassRead
}

// classRestore: RESTORE … REPLACE overwrites blindly; without REPLACE it fails
// when the key exists.
func classRestore(s *Spec, args [][]byte) Class {
	for i := 4; i < len(args); i++ {
		switch {
		case equalFold(args[i], "replace"):
			return ClassWrite
		case equalFold(args[i], "idletime"), equalFold(args[i], "freq"):
			i++
		}
	}
	return ClassRMW
}

// classSort: SORT without STORE only reads.
func classSort(s *Spec, args [][]byte) Class {
	if sortStore(args) > 0 {
		return ClassRMW
	}
	return ClassRead
}

// classGeoRadius: GEORADIUS[BYMEMBER] without STORE/STOREDIST only reads.
func classGeoRadius(s *Spec, args [][]byte) Class {
	// Options start after "key lon lat radius unit" / "key member radius unit",
	// which is where Redis's STORE key specs start searching too.
	start := 6
	if s.Name == "georadiusbymember" {
		start = 5
	}
	for i := start; i < len(args)-1; i++ {
		if equalFold(args[i], "store") || equalFold(args[i], "storedist") {
			return ClassRMW
		}
	}
	return ClassRead
}

// sortStore returns the index of SORT's STORE destination, 0 if none. It
// follows sortCommandGeneric's parser (not sortGetKeys, which does not skip
// option values): LIMIT takes 2 values, BY/GET/STORE take 1.
func sortStore(args [][]byte) int {
	store := 0
	for i := 2; i < len(args); i++ {
		left := len(args) - i - 1
		a := args[i]
		switch {
		case equalFold(a, "limit") && left >= 2:
			i += 2
		case (equalFold(a, "by") || equalFold(a, "get")) && left >= 1:
			i++
		case equalFold(a, "store") && left >= 1:
			store = i + 1
			i++
		}
	}
	return store
}

// keysSort: the sorted key, plus the STORE destination. Redis marks SORT's
// STORE key spec "unknown" because the keyword may appear anywhere.
func keysSort(s *Spec, args [][]byte, dst []int) ([]int, error) {
	if len(args) < 2 {
		return dst, nil
	}
	dst = append(dst, 1)
	if st := sortStore(args); st > 0 {
		dst = append(dst, st)
	}
	return dst, nil
}

// refusesSort refuses SORT/SORT_RO whose BY or GET pattern reads keys that
// may live on another node. A pattern is safe when it does not read keys
// (BY without '*', GET #, GET without '*') or when its key part carries a
// {hash tag}, fixed before the '*', equal to the sorted key's hash tag — the
// same rule Redis Cluster applies, and it assumes jupiter places keys by
// HashTag.
func refusesSort(s *Spec, args [][]byte) (string, bool) {
	if len(args) < 2 {
		return "", false
	}
	tag := ring.HashTag(args[1])
	for i := 2; i < len(args); i++ {
		left := len(args) - i - 1
		a := args[i]
		switch {
		case equalFold(a, "limit") && left >= 2:
			i += 2
		case (equalFold(a, "by") || equalFold(a, "get")) && left >= 1:
			if !patternSameNode(args[i+1], tag) {
				return s.Refusal, true
			}
			i++
		case equalFold(a, "store") && left >= 1:
			i++
		}
	}
	return "", false
}

// patternSameNode reports whether a SORT BY/GET pattern only reads keys with
// hash tag tag (or no keys at all).
func patternSameNode(p, tag []byte) bool {
	star := indexByte(p, '*')
	if star < 0 || (len(p) == 1 && p[0] == '#') {
		return true // no substitution: no key is read
	}
	open := indexByte(p[:star], '{')
	if open < 0 {
		return false
	}
	closing := indexByte(p[open+1:star], '}')
	if closing <= 0 {
		return false // no '}' before '*', or empty tag
	}
	return string(p[open+1:open+1+closing]) == string(tag)
}

// keysMigrate mirrors Redis's migrateGetKeys: the key at index 3, or, when
// it is empty, every argument after KEYS.
func keysMigrate(s *Spec, args [][]byte, dst []int) ([]int, error) {
	if len(args) < 4 {
		return dst, nil
	}
	for i := 6; i < len(args); i++ {
		switch {
		case equalFold(args[i], "auth"):
			i++
		case equalFold(args[i], "auth2"):
			i += 2
		case equalFold(args[i], "keys"):
			if len(args[3]) > 0 {
				return dst, ErrSyntax
			}
			for j := i + 1; j < len(args); j++ {
				dst = append(dst, j)
			}
			return dst, nil
		}
	}
	return append(dst, 3), nil
}

// refusesCopy refuses COPY … DB n: jupiter does not address other databases.
func refusesCopy(s *Spec, args [][]byte) (string, bool) {
	for i := 3; i < len(args)-1; i++ {
		if equalFold(args[i], "db") {
			return s.Refusal, true
		}
	}
	return "", false
}

func lastArg(args [][]byte) int  { return len(args) - 1 }
func firstArg(args [][]byte) int { return 1 }

// xreadBlock finds the milliseconds of XREAD/XREADGROUP … BLOCK ms,
// following xreadCommand's option parser so that a group or consumer named
// "block" is not mistaken for the option.
func xreadBlock(args [][]byte) int {
	for i := 1; i < len(args); i++ {
		left := len(args) - i - 1
		a := args[i]
		switch {
		case equalFold(a, "block") && left >= 1:
			return i + 1
		case equalFold(a, "count") && left >= 1:
			i++
		case equalFold(a, "group") && left >= 2:
			i += 2
		case equalFold(a, "noack"):
		default:
			return -1 // STREAMS, or a syntax error Redis will report
		}
	}
	return -1
}

// String returns the class's lower-case name, as used in the README table.
func (c Class) String() string {
	switch c {
	case ClassKeyless:
		return "keyless"
	case ClassRead:
		return "read"
	case ClassWrite:
		return "write"
	case ClassRMW:
		return "rmw"
	case ClassDelete:
		return "delete"
	case ClassConnection:
		return "connection"
	case ClassBlocked:
		return "blocked"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// String returns the policy's name without the "Policy" prefix.
func (p Policy) String() string {
	switch p {
	case PolicySingle:
		return "single"
	case PolicyMGet:
		return "mget"
	case PolicyMSet:
		return "mset"
	case PolicySum:
		return "sum"
	case PolicyAllSum:
		return "all-sum"
	case PolicyAllOK:
		return "all-ok"
	case PolicyAllConcat:
		return "all-concat"
	case PolicyScan:
		return "scan"
	case PolicyLocal:
		return "local"
	case PolicyRefuse:
		return "refuse"
	case PolicyAllFirst:
		return "all-first"
	case PolicyTransaction:
		return "transaction"
	case PolicyBlocking:
		return "blocking"
	case PolicyPubSub:
		return "pubsub"
	}
	return "policy(" + strconv.Itoa(int(p)) + ")"
}
