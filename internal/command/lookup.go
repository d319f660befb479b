package command

import (
	"errors"
	"sort"
	"strings"
)

// maxNameLen bounds command and subcommand names (the longest in Redis 7.0
// is 20 bytes); longer arguments cannot name a command, so Lookup rejects
// them without touching the map. TestNamesFitLookupBuffer guards it.
const maxNameLen = 32

var (
	// table holds the top-level commands by lower-case name.
	table map[string]*Spec
	// all is every spec sorted by name, subcommands after their parent.
	all []*Spec
)

func init() {
	table = make(map[string]*Spec, len(redisCommands)+1)
	for _, s := range redisCommands {
		if !strings.Contains(s.Name, "|") {
			table[s.Name] = s
		}
	}
	table[jupiterSpec.Name] = jupiterSpec
	for _, s := range append(append([]*Spec(nil), redisCommands...), laterSubcommands...) {
		parent, sub, ok := strings.Cut(s.Name, "|")
		if !ok {
			continue
		}
		p := table[parent]
		if p == nil {
			panic("command: generated subcommand " + s.Name + " has no parent")
		}
		if p.Subcommands == nil {
			p.Subcommands = make(map[string]*Spec)
		}
		p.Subcommands[sub] = s
		s.Parent = p
	}

	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := table[name]
		all = append(all, p)
		subs := make([]string, 0, len(p.Subcommands))
		for sub := range p.Subcommands {
			subs = append(subs, sub)
		}
		sort.Strings(subs)
		for _, sub := range subs {
			all = append(all, p.Subcommands[sub])
		}
	}
	for i, s := range all {
		s.ID = i
		decide(s)
	}
}

// IsContainer reports whether name (any case) is a command with
// subcommands, so an unknown subcommand can be told from an unknown command.
func IsContainer(name []byte) bool {
	var buf [maxNameLen]byte
	l, ok := lower(&buf, name)
	if !ok {
		return false
	}
	p := table[string(l)]
	return p != nil && p.Subcommands != nil
}

// Lookup finds the spec for a client's command. It is case-insensitive and
// does not allocate, because it runs for every command the proxy receives.
//
// For container commands (CLIENT, CONFIG, OBJECT, XINFO…) the subcommand in
// args[1] is resolved and its spec returned. When args[1] is missing the
// container's own spec is returned, so the caller's CheckArity reports the
// usual "wrong number of arguments" error. Lookup returns nil for an empty
// args, an unknown command ("ERR unknown command") or an unknown subcommand
// ("ERR unknown subcommand").
func Lookup(args [][]byte) *Spec {
	if len(args) == 0 {
		return nil
	}
	var buf [maxNameLen]byte
	name, ok := lower(&buf, args[0])
	if !ok {
		return nil
	}
	s := table[string(name)]
	if s == nil || s.Subcommands == nil || len(args) < 2 {
		return s
	}
	sub, ok := lower(&buf, args[1])
	if !ok {
		return nil
	}
	return s.Subcommands[string(sub)]
}

// lower copies b into buf in ASCII lower case; false if it does not fit.
func lower(buf *[maxNameLen]byte, b []byte) ([]byte, bool) {
	if len(b) > len(buf) {
		return nil, false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(b)], true
}

// CheckArity reports whether nargs arguments (the command name, and the
// subcommand name for subcommands, included) satisfy the Redis arity: exactly
// Arity when positive, at least -Arity when negative.
func (s *Spec) CheckArity(nargs int) bool {
	if s.Arity >= 0 {
		return nargs == s.Arity
	}
	return nargs >= -s.Arity
}

// Refuses reports whether jupiter refuses this invocation, and the error line
// to send (without the leading "-"). It covers PolicyRefuse commands and
// argument-dependent refusals of otherwise routed commands: XREAD/XREADGROUP
// with BLOCK, SORT/SORT_RO with a BY/GET pattern that may read keys on another
// node, COPY … DB. The proxy should call it for every command after the arity
// check. It does not allocate.
func (s *Spec) Refuses(args [][]byte) (string, bool) {
	if s.Policy == PolicyRefuse {
		return s.Refusal, true
	}
	if s.refuses != nil {
		return s.refuses(s, args)
	}
	return "", false
}

// BlockTimeout returns the index of this invocation's blocking timeout
// argument (seconds; milliseconds when ms), or -1 when it does not block:
// a PolicyBlocking command always blocks, XREAD and XREADGROUP only with
// BLOCK.
func (s *Spec) BlockTimeout(args [][]byte) (idx int, ms bool) {
	if s.timeoutAt == nil {
		return -1, false
	}
	return s.timeoutAt(args), s.timeoutMS
}

// ClassFor is the class of this invocation. It refines the static Class for
// commands whose effect depends on their options (SET without NX/XX/GET/
// KEEPTTL is a blind write, otherwise read-modify-write; GETEX without options,
// BITFIELD with only GET, SORT without STORE and GEORADIUS without STORE are
// reads; RESTORE … REPLACE is a blind write) and returns ClassBlocked for an
// invocation Refuses rejects.
func (s *Spec) ClassFor(args [][]byte) Class {
	if _, refused := s.Refuses(args); refused {
		return ClassBlocked
	}
	if s.classFor != nil {
		return s.classFor(s, args)
	}
	return s.Class
}

// Errors returned by KeyIndexes. Their texts are complete Redis error lines
// (without the leading "-") so the proxy can send them as they are.
var (
	ErrNotInteger   = errors.New("ERR value is not an integer or out of range")
	ErrNegativeKeys = errors.New("ERR Number of keys can't be negative")
	ErrTooManyKeys  = errors.New("ERR Number of keys can't be greater than number of args")
	ErrSyntax       = errors.New("ERR syntax error")
)

// KeyIndexes appends to dst the index in args of every key of this
// invocation, in increasing order without duplicates, and returns the
// extended slice. It interprets Redis 7 key specifications generically (index
// or keyword begin search; range, with Limit, or keynum find keys), skips
// NOT_KEY specs (SPUBLISH's channel) and "unknown" ones, and uses hand-written
// extraction where Redis's specs are incomplete (SORT … STORE, MIGRATE … KEYS).
//
// args must be the whole command, args[0] being the name, and should already
// have passed CheckArity (and had a hash= override removed). A numkeys
// argument that is not an integer, negative or larger than the remaining
// arguments yields ErrNotInteger, ErrNegativeKeys or ErrTooManyKeys; keys that
// a spec places beyond the arguments yield ErrSyntax. On error dst is returned
// with its original length. It does not allocate when dst has capacity.
func (s *Spec) KeyIndexes(args [][]byte, dst []int) ([]int, error) {
	start := len(dst)
	var err error
	if s.keys != nil {
		dst, err = s.keys(s, args, dst)
	} else {
		for i := range s.KeySpecs {
			ks := &s.KeySpecs[i]
			if ks.Flags&KeyNotKey != 0 || ks.Begin.unknown() {
				continue
			}
			if dst, err = ks.appendKeys(args, dst); err != nil {
				break
			}
		}
	}
	if err != nil {
		return dst[:start], err
	}
	return dst[:start+sortUnique(dst[start:])], nil
}

// appendKeys follows getKeysUsingKeySpecs (Redis 7.0 db.c) for one spec.
func (ks *KeySpec) appendKeys(args [][]byte, dst []int) ([]int, error) {
	argc := len(args)
	first := 0
	if ks.Begin.Keyword == "" {
		first = ks.Begin.Index
	} else {
		// Forward from StartFrom up to (excluding) the last argument, or
		// backward from argc+StartFrom down to 1. A keyword in last position
		// cannot be followed by a key.
		if ks.Begin.StartFrom > 0 {
			for i := ks.Begin.StartFrom; i < argc-1; i++ {
				if equalFold(args[i], ks.Begin.Keyword) {
					first = i + 1
					break
				}
			}
		} else {
			for i := argc + ks.Begin.StartFrom; i >= 1 && i < argc; i-- {
				if equalFold(args[i], ks.Begin.Keyword) {
					first = i + 1
					break
				}
			}
		}
		if first == 0 {
			return dst, nil // optional keyword absent: no keys from this spec
		}
	}
	if first >= argc {
		return dst, ErrSyntax
	}

	var last int
	if ks.Find.KeyNumIdx < 0 {
		switch {
		case ks.Find.LastKey >= 0:
			last = first + ks.Find.LastKey
		case ks.Find.Limit <= 1:
			last = argc + ks.Find.LastKey
		default:
			// Only LastKey -1 is meaningful with a limit (XREAD STREAMS:
			// keys are the first half of what follows).
			last = first + (argc-first)/ks.Find.Limit + ks.Find.LastKey
		}
	} else {
		idx := first + ks.Find.KeyNumIdx
		if idx >= argc {
			return dst, ErrSyntax
		}
		n, ok := parseInt(args[idx])
		switch {
		case !ok:
			return dst, ErrNotInteger
		case n < 0:
			return dst, ErrNegativeKeys
		case n == 0:
			return dst, nil // EVAL script 0: no keys
		case n > int64(argc):
			return dst, ErrTooManyKeys
		}
		first += ks.Find.FirstKey
		last = first + int(n) - 1
		if last >= argc {
			return dst, ErrTooManyKeys
		}
	}
	if last >= argc || last < first {
		return dst, ErrSyntax
	}
	step := ks.Find.KeyStep
	if step < 1 {
		step = 1
	}
	for i := first; i <= last; i += step {
		dst = append(dst, i)
	}
	return dst, nil
}

// sortUnique sorts a (almost always already sorted, and short) in place,
// removes duplicates and returns the new length.
func sortUnique(a []int) int {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
	n := 0
	for i, v := range a {
		if i == 0 || v != a[n-1] {
			a[n] = v
			n++
		}
	}
	return n
}

// HashOverride implements jupiter's trailing hash override: a last argument
// "<prefix><key>" (prefix typically "hash=") routes the command as if its key
// were <key>, which lets keyless commands reach a chosen node (PING hash=k,
// SCAN 0 MATCH x* hash=k, SCRIPT KILL hash=k) and pins multi-key scripts.
//
// The override applies only when s is known, prefix is non-empty, args has at
// least two elements, the last one starts with prefix (case-sensitively), and
// the arguments without it still satisfy s's arity. It returns the bytes after
// the prefix, sharing args' memory; an empty key is not an override. The
// caller strips the last argument before KeyIndexes and before forwarding.
//
// Ambiguity: the override is recognised by position and arity alone, so a
// genuine last value that starts with the prefix is taken as an override
// whenever the arguments without it still satisfy the arity: "LPUSH k a
// hash=x" pushes only "a", routed by "x", whereas "SET k hash=x" is a plain
// SET because "SET k" would be too short. Clients that store such values must
// append an explicit override (… hash=k) or the operator must choose another
// prefix. An empty prefix disables the feature.
func HashOverride(s *Spec, args [][]byte, prefix string) (key []byte, ok bool) {
	if s == nil || prefix == "" || len(args) < 2 {
		return nil, false
	}
	last := args[len(args)-1]
	if len(last) <= len(prefix) || string(last[:len(prefix)]) != prefix {
		return nil, false
	}
	if !s.CheckArity(len(args) - 1) {
		return nil, false
	}
	return last[len(prefix):], true
}

// All returns every spec (the JUPITER command included) sorted by name, each
// container's subcommands right after it, sorted too. The slice is shared:
// callers must not modify it or the specs.
func All() []*Spec { return all }

// equalFold compares b with an ASCII keyword case-insensitively.
func equalFold(b []byte, kw string) bool {
	if len(b) != len(kw) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, k := b[i], kw[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= k && k <= 'Z' {
			k += 'a' - 'A'
		}
		if c != k {
			return false
		}
	}
	return true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// parseInt parses a decimal integer the way Redis's string2ll does: optional
// '-', no '+', no leading zeros, no spaces, within int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	i := 0
	if b[0] == '-' {
		neg = true
		i = 1
		if len(b) == 1 {
			return 0, false
		}
	}
	if b[i] < '1' || b[i] > '9' {
		return 0, false
	}
	var v uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<63)/10 || v*10 > (1<<63)-d {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}
