// Package command is jupiter's command table: every Redis 7.0 command described
// as data (arity, key positions, class, reply policy), and the pure functions
// that read a client's arguments against it (lookup, arity check, key
// extraction, the trailing hash=<key> override and {tag} hashing).
//
// The proxy never switches on command names: it looks a command up here and
// acts on the Spec's Policy. The README's supported-command table is generated
// from the same table (see cmd/jupiter "commands" and TestREADMETable), so the
// documentation cannot drift from the code.
//
// Layout: zz_table_gen.go holds the Redis facts (generated from a live Redis
// 7.0 by ./gen: names, arity, flags, key specs, tips); policy.go holds
// jupiter's decisions on top of them (Class, Policy, refusals, and the few
// argument-dependent rules such as SET's options or XREAD … BLOCK); lookup.go
// reads arguments against the table; markdown.go renders the README table.
//
// A per-command request goes: Lookup → CheckArity → HashOverride (strip it)
// → Refuses → KeyIndexes → route by Policy (and ClassFor while rebalancing).
//
// The table is built once at init and never modified afterwards, so every
// function here is safe for concurrent use. Nothing in this package does I/O
// or reads a clock.
package command

// Class says what a command does to its keys. The rebalance stages use it to
// decide between the old owner, the new owner or both for a moving key.
type Class uint8

const (
	ClassKeyless    Class = iota // no keys (PING, TIME, DBSIZE, SCAN, INFO…)
	ClassRead                    // reads keys only (GET, HGETALL, EXISTS…)
	ClassWrite                   // blind overwrite (SET without options, MSET, SETEX…)
	ClassRMW                     // read-modify-write (INCR, LPUSH, SADD, EXPIRE…)
	ClassDelete                  // removes keys (DEL, UNLINK, GETDEL)
	ClassConnection              // connection state answered by the proxy (AUTH, HELLO, SELECT…)
	ClassBlocked                 // refused: cannot work through a sharding proxy
)

// Policy says how the proxy routes a command and builds its reply. The names
// follow Redis's own request/response tips (COMMAND DOCS) where they exist.
type Policy uint8

const (
	// PolicySingle: all keys (usually one) must live on one node; the command
	// is forwarded whole and the reply passes through untouched. Keyless
	// commands with this policy go to one random node (or the hash= node).
	PolicySingle Policy = iota
	// PolicyMGet: keys split per node; the per-node arrays are reassembled in
	// the client's key order (MGET).
	PolicyMGet
	// PolicyMSet: key/value pairs split per node; +OK only if every node
	// replied +OK (MSET).
	PolicyMSet
	// PolicySum: keys split per node; integer replies summed (DEL, UNLINK,
	// EXISTS, TOUCH).
	PolicySum
	// PolicyAllSum: keyless, sent to every node, integer replies summed (DBSIZE).
	PolicyAllSum
	// PolicyAllOK: keyless, sent to every node, +OK only if all succeeded
	// (FLUSHDB, FLUSHALL, SCRIPT FLUSH…).
	PolicyAllOK
	// PolicyAllConcat: keyless, sent to every node, array replies concatenated (KEYS).
	PolicyAllConcat
	// PolicyScan: cursor-based iteration across every node (SCAN).
	PolicyScan
	// PolicyLocal: answered by the proxy itself (PING, ECHO, HELLO, AUTH,
	// SELECT, CLIENT …, COMMAND, CONFIG GET, INFO, QUIT, JUPITER …).
	PolicyLocal
	// PolicyRefuse: answered with an error naming the command (Spec.Refusal).
	PolicyRefuse
	// PolicyAllFirst: keyless, sent to every node; if every node succeeded
	// the reply is the first node's reply, otherwise the first error. For
	// commands that must reach every node but whose reply is a value that is
	// the same everywhere rather than +OK (SCRIPT LOAD's sha1, FUNCTION
	// LOAD's library name). Added last so the values above stay stable.
	PolicyAllFirst
	// PolicyTransaction: MULTI, EXEC, DISCARD, WATCH, UNWATCH. The proxy
	// queues the transaction and runs it on the one node all its keys live
	// on: MULTI…EXEC in one write on the multiplexed connection, or on a
	// dedicated connection when WATCH needs the node to remember the client
	// between round trips.
	PolicyTransaction
	// PolicyBlocking: a command that may block (BLPOP, BRPOP, BLMOVE,
	// BLMPOP, BZPOPMIN/MAX, BZMPOP, BRPOPLPUSH): its keys must live on one
	// node, and it runs on a dedicated connection of that node while it
	// waits, so it never delays the multiplexed connection. XREAD and
	// XREADGROUP are PolicySingle and block only with BLOCK (BlockTimeout).
	PolicyBlocking
	// PolicyPubSub: SUBSCRIBE and the other (un)subscribe commands, PUBLISH,
	// SPUBLISH and PUBSUB …: a channel lives on the node of its name's slot
	// ({tag} aware), so PUBLISH and SUBSCRIBE meet; patterns listen on every
	// node. The proxy keeps a subscriber's connections to the nodes.
	PolicyPubSub
)

// Flags are the command flags Redis reports in COMMAND INFO. The first seven
// are the ones jupiter decides on; the rest are kept for completeness.
type Flags uint32

const (
	FlagWrite    Flags = 1 << iota // "write"
	FlagReadonly                   // "readonly"
	FlagBlocking                   // "blocking"
	FlagPubSub                     // "pubsub"
	FlagNoScript                   // "noscript"
	FlagAdmin                      // "admin"
	FlagMovable                    // "movablekeys": key positions depend on arguments

	// The remaining flags are every other flag Redis 7.0 reports. They are
	// kept so the table is a faithful copy of COMMAND INFO (the generator
	// fails on a flag it does not know, forcing a decision on new ones).

	FlagDenyOOM         // "denyoom": may grow memory, refused by Redis when over maxmemory
	FlagModule          // "module": implemented by a module
	FlagLoading         // "loading": allowed while the dataset loads
	FlagStale           // "stale": allowed on a replica with stale data
	FlagSkipMonitor     // "skip_monitor": not shown in MONITOR
	FlagSkipSlowlog     // "skip_slowlog": not shown in SLOWLOG
	FlagAsking          // "asking": Redis Cluster ASKING semantics
	FlagFast            // "fast": O(1) or O(log N)
	FlagNoAuth          // "no_auth": allowed before AUTH
	FlagNoMandatoryKeys // "no_mandatory_keys": may legitimately run with zero keys (EVAL … 0)
	FlagNoAsyncLoading  // "no_async_loading": refused during async loading
	FlagNoMulti         // "no_multi": refused inside MULTI
	FlagAllowBusy       // "allow_busy": allowed while a script is busy
)

// BeginSearch is where a key spec starts looking for keys, mirroring Redis 7
// key specifications (COMMAND INFO … key-specs).
type BeginSearch struct {
	Index     int    // type "index": absolute argument index (args[0] is the name)
	Keyword   string // type "keyword": upper-case keyword to search for
	StartFrom int    // keyword search start; negative = from the end
}

// The zero BeginSearch (Index 0, Keyword "") is Redis's type "unknown": the
// keys cannot be found from the arguments alone (SORT's STORE and BY/GET
// patterns). Index 0 can never be a key because args[0] is the command name.

// FindKeys says which arguments after the begin position are keys.
//
// A FindKeys with KeyNumIdx == -1 and KeyStep == 0 is Redis's type "unknown"
// (only ever paired with an unknown BeginSearch).
type FindKeys struct {
	// type "range"
	LastKey int // relative to begin; -1 = last argument, -2 = second to last…
	KeyStep int
	Limit   int // 0 = no limit; >1 = only 1/Limit of the remaining args
	// type "keynum" (KeyNumIdx >= 0 means keynum)
	KeyNumIdx int // relative to begin: where the number of keys is; -1 = range type
	FirstKey  int // relative to begin: first key
}

// KeySpecFlags are the flags of one Redis 7 key specification, as reported by
// COMMAND INFO. The rebalance logic needs more than "read or write" for some
// decisions (an OW key without ACCESS is a blind overwrite), so all of them
// are kept.
type KeySpecFlags uint16

const (
	KeyRO            KeySpecFlags = 1 << iota // "RO": read only
	KeyRW                                     // "RW": read and written
	KeyOW                                     // "OW": overwritten (old value not read)
	KeyRM                                     // "RM": removed
	KeyAccess                                 // "access": the value is returned or used
	KeyUpdate                                 // "update": the value is updated
	KeyInsert                                 // "insert": data is added
	KeyDelete                                 // "delete": data is removed
	KeyNotKey                                 // "not_key": looks like a key but is not (SPUBLISH channels)
	KeyIncomplete                             // "incomplete": the spec may miss keys
	KeyVariableFlags                          // "variable_flags": the real flags depend on arguments (SET … GET)
)

// KeySpec is one Redis 7 key specification.
type KeySpec struct {
	Begin BeginSearch
	Find  FindKeys
	// Write is true when the keys found by this spec are written (RW/OW/RM/
	// INSERT/DELETE/UPDATE flags), false for read-only (RO) keys.
	Write bool
	// Flags are Redis's raw key-spec flags; Write is derived from them.
	Flags KeySpecFlags
}

// Spec describes one command or one subcommand ("object|encoding").
type Spec struct {
	Name     string // lower case; subcommands as "parent|sub"
	Arity    int    // Redis convention: n > 0 exactly n args, n < 0 at least -n (name included)
	Flags    Flags
	KeySpecs []KeySpec
	Class    Class
	Policy   Policy
	// Refusal is the error text (without the leading "-") for PolicyRefuse.
	// Commands refused only with some arguments (XREAD … BLOCK, COPY … DB,
	// SORT BY/GET patterns) keep their routed Policy and hold the text for
	// that case here; use Refuses, which knows when it applies.
	Refusal string
	// Subcommands, for container commands (CLIENT, CONFIG, OBJECT, XINFO…),
	// keyed by lower-case subcommand name. The proxy resolves args[1] here.
	Subcommands map[string]*Spec
	// Tips are Redis's command tips from COMMAND INFO (for example
	// "request_policy:all_shards", "nondeterministic_output"). Informational:
	// jupiter's own decision is Policy.
	Tips []string

	// Parent is the container command of a subcommand (nil otherwise).
	Parent *Spec

	// ID is the spec's index in All(), so per-command statistics can live
	// in a slice instead of a map on the request path.
	ID int

	// Hand-written, argument-dependent behaviour (see policy.go). nil means
	// "use the static fields".
	keys    func(s *Spec, args [][]byte, dst []int) ([]int, error)
	refuses func(s *Spec, args [][]byte) (string, bool)
	// timeoutAt is the index of the blocking timeout argument, -1 when the
	// invocation does not block; nil: the command never blocks.
	timeoutAt func(args [][]byte) int
	// timeoutMS: the timeout is in milliseconds (XREAD BLOCK), not seconds.
	timeoutMS bool
	// blocksWhen says when a PolicySingle command blocks ("with BLOCK").
	blocksWhen string
	classFor   func(s *Spec, args [][]byte) Class
	// Short notes for MarkdownTable describing the hooks above.
	refusesWhen string // "with BLOCK"
	classNote   string // "write without NX/XX/GET/KEEPTTL"
}
