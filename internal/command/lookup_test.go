package command

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// argv splits a command line on spaces; "”" stands for an empty argument.
func argv(line string) [][]byte {
	var args [][]byte
	for _, f := range strings.Fields(line) {
		if f == "''" {
			f = ""
		}
		args = append(args, []byte(f))
	}
	return args
}

func TestLookup(t *testing.T) {
	tests := []struct {
		line string
		want string // "" = nil
	}{
		{"get k", "get"},
		{"GET k", "get"},
		{"gEt k", "get"},
		{"GET", "get"}, // arity is the caller's job
		{"zunionstore d 2 a b", "zunionstore"},
		{"GEORADIUSBYMEMBER_RO k m 1 km", "georadiusbymember_ro"},
		{"restore-asking k 0 x", "restore-asking"},
		{"object encoding k", "object|encoding"},
		{"OBJECT ENCODING k", "object|encoding"},
		{"Object Freq k", "object|freq"},
		{"OBJECT", "object"}, // parent: arity error follows
		{"OBJECT nosuch k", ""},
		{"config get maxmemory", "config|get"},
		{"CONFIG SET maxmemory 1", "config|set"},
		{"client list", "client|list"},
		{"CLIENT NO-EVICT on", "client|no-evict"},
		{"memory usage k", "memory|usage"},
		{"MEMORY MALLOC-STATS", "memory|malloc-stats"},
		{"xinfo stream s", "xinfo|stream"},
		{"xgroup createconsumer s g c", "xgroup|createconsumer"},
		{"script load x", "script|load"},
		{"function load x", "function|load"},
		{"COMMAND", "command"},
		{"command getkeys get k", "command|getkeys"},
		{"cluster info", "cluster|info"},
		{"jupiter status", "jupiter"},
		{"JUPITER", "jupiter"},
		{"nosuchcommand", ""},
		{"gett k", ""},
		{"ge k", ""},
		{strings.Repeat("x", 40), ""},
		{"object " + strings.Repeat("e", 40), ""},
		{"waitaof 1 0 0", ""}, // Redis 7.2, not in the 7.0 table
	}
	for _, tt := range tests {
		s := Lookup(argv(tt.line))
		got := ""
		if s != nil {
			got = s.Name
		}
		if got != tt.want {
			t.Errorf("Lookup(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
	if s := Lookup(nil); s != nil {
		t.Errorf("Lookup(nil) = %q", s.Name)
	}
	if s := Lookup([][]byte{{}}); s != nil {
		t.Errorf("Lookup(empty name) = %q", s.Name)
	}
}

func TestLookupEverySpec(t *testing.T) {
	for _, s := range All() {
		var args [][]byte
		if s.Parent != nil {
			_, sub, _ := strings.Cut(s.Name, "|")
			args = [][]byte{[]byte(strings.ToUpper(s.Parent.Name)), []byte(strings.ToUpper(sub))}
		} else {
			args = [][]byte{[]byte(strings.ToUpper(s.Name))}
		}
		if got := Lookup(args); got != s {
			t.Errorf("Lookup(%q) did not find %s", args, s.Name)
		}
	}
}

func TestNamesFitLookupBuffer(t *testing.T) {
	for _, s := range All() {
		for _, part := range strings.Split(s.Name, "|") {
			if len(part) > maxNameLen {
				t.Errorf("%s: %q is longer than maxNameLen %d", s.Name, part, maxNameLen)
			}
			if part != strings.ToLower(part) {
				t.Errorf("%s: name not lower case", s.Name)
			}
		}
	}
}

func TestAllSortedAndFlattened(t *testing.T) {
	specs := All()
	if len(specs) < 360 {
		t.Fatalf("All() has %d specs, want every Redis 7.0 command and subcommand (366) plus JUPITER", len(specs))
	}
	var lastTop string
	var parent *Spec
	for _, s := range specs {
		if s.Parent == nil {
			if s.Name <= lastTop {
				t.Errorf("%s after %s: not sorted", s.Name, lastTop)
			}
			lastTop, parent = s.Name, s
			continue
		}
		if s.Parent != parent {
			t.Errorf("%s is not right after its parent's group (current parent %s)", s.Name, parent.Name)
		}
	}
}

func TestCheckArity(t *testing.T) {
	tests := []struct {
		line  string
		nargs int
		want  bool
	}{
		{"get", 2, true},
		{"get", 1, false},
		{"get", 3, false},
		{"set", 3, true},
		{"set", 2, false},
		{"set", 9, true},
		{"mset", 3, true},
		{"mset", 5, true}, // pairs are checked by Redis, not by arity
		{"ping", 1, true},
		{"ping", 2, true},
		{"object encoding", 3, true},
		{"object encoding", 2, false},
		{"object encoding", 4, false},
		{"object", 1, false},
		{"command", 1, true},
		{"jupiter", 1, false},
		{"jupiter", 2, true},
		{"eval", 3, true},
		{"eval", 2, false},
	}
	for _, tt := range tests {
		s := Lookup(argv(tt.line))
		if s == nil {
			t.Fatalf("Lookup(%q) = nil", tt.line)
		}
		if got := s.CheckArity(tt.nargs); got != tt.want {
			t.Errorf("%s.CheckArity(%d) = %v, want %v (arity %d)", s.Name, tt.nargs, got, tt.want, s.Arity)
		}
	}
}

// keyIndexTests is shared with the benchmarks and the check against a live
// Redis (TestKeyIndexesMatchRedis).
var keyIndexTests = []struct {
	line string
	want []int
}{
	{"GET k", []int{1}},
	{"SET k v", []int{1}},
	{"set k v EX 10 NX GET", []int{1}},
	{"MSET a 1 b 2 c 3", []int{1, 3, 5}},
	{"MGET a b c", []int{1, 2, 3}},
	{"DEL a", []int{1}},
	{"DEL a b c d", []int{1, 2, 3, 4}},
	{"DEL a a", []int{1, 2}},
	{"UNLINK a b", []int{1, 2}},
	{"EXISTS a b", []int{1, 2}},
	{"EVAL script 0", nil},
	{"EVAL script 0 arg1 arg2", nil},
	{"EVAL script 2 k1 k2 arg1", []int{3, 4}},
	{"EVALSHA sha 1 k1", []int{3}},
	{"EVAL_RO script 1 k1 a", []int{3}},
	{"FCALL fn 2 k1 k2", []int{3, 4}},
	{"FCALL_RO fn 0 a", nil},
	{"XREAD STREAMS s1 0", []int{2}},
	{"XREAD COUNT 10 STREAMS s1 s2 0 0", []int{4, 5}},
	{"xread count 10 streams s1 s2 0 0", []int{4, 5}},
	{"XREAD STREAMS streams 0", []int{2}},
	{"XREADGROUP GROUP g c STREAMS s1 s2 > >", []int{5, 6}},
	{"XREADGROUP GROUP streams c COUNT 1 NOACK STREAMS s1 >", []int{8}},
	{"ZUNIONSTORE dest 2 a b", []int{1, 3, 4}},
	{"ZUNIONSTORE dest 2 a b WEIGHTS 1 2 AGGREGATE SUM", []int{1, 3, 4}},
	{"ZINTERSTORE dest 1 a", []int{1, 3}},
	{"ZUNION 2 a b WITHSCORES", []int{2, 3}},
	{"ZINTER 3 a b c", []int{2, 3, 4}},
	{"ZDIFF 2 a b", []int{2, 3}},
	{"ZDIFFSTORE d 2 a b", []int{1, 3, 4}},
	{"ZINTERCARD 2 a b LIMIT 1", []int{2, 3}},
	{"LMPOP 2 a b LEFT", []int{2, 3}},
	{"LMPOP 1 a RIGHT COUNT 2", []int{2}},
	{"ZMPOP 2 a b MIN", []int{2, 3}},
	{"SINTERCARD 2 a b LIMIT 1", []int{2, 3}},
	{"SINTERCARD 1 a", []int{2}},
	{"OBJECT ENCODING k", []int{2}},
	{"OBJECT FREQ k", []int{2}},
	{"MEMORY USAGE k", []int{2}},
	{"MEMORY USAGE k SAMPLES 5", []int{2}},
	{"XINFO STREAM s FULL", []int{2}},
	{"XGROUP CREATE s g $ MKSTREAM", []int{2}},
	{"SORT k", []int{1}},
	{"SORT k STORE d", []int{1, 3}},
	{"SORT k BY w_* LIMIT 0 10 GET # GET o_* DESC ALPHA STORE d", []int{1, 14}},
	{"SORT k STORE d1 STORE d2", []int{1, 5}}, // the last STORE wins, as in sortCommandGeneric
	{"SORT k GET store", []int{1}},            // "store" is GET's pattern here
	{"SORT k STORE", []int{1}},                // syntax error left to Redis
	{"SORT_RO k BY w_* GET #", []int{1}},
	{"GEORADIUS k 15 37 200 km", []int{1}},
	{"GEORADIUS k 15 37 200 km WITHDIST STORE d", []int{1, 8}},
	{"GEORADIUS k 15 37 200 km STOREDIST d", []int{1, 7}},
	{"GEORADIUS k 15 37 200 km COUNT 3 STORE d STOREDIST e", []int{1, 9, 11}},
	{"GEORADIUSBYMEMBER k m 200 km STORE d", []int{1, 6}},
	{"GEORADIUS k 15 37 200 km STORE", []int{1}},
	{"GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km", []int{1, 2}},
	{"BITOP AND dest a b", []int{2, 3, 4}},
	{"BITOP NOT dest a", []int{2, 3}},
	{"RENAME a b", []int{1, 2}},
	{"RENAMENX a b", []int{1, 2}},
	{"SMOVE a b m", []int{1, 2}},
	{"LMOVE a b LEFT RIGHT", []int{1, 2}},
	{"RPOPLPUSH a b", []int{1, 2}},
	{"COPY a b REPLACE", []int{1, 2}},
	{"PFCOUNT a b", []int{1, 2}},
	{"PFMERGE d a b", []int{1, 2, 3}},
	{"LCS a b", []int{1, 2}},
	{"SINTERSTORE d a b", []int{1, 2, 3}},
	{"BLPOP a b 0", []int{1, 2}},
	{"BLMPOP 0 2 a b LEFT", []int{3, 4}},
	{"BZMPOP 1.5 1 a MAX", []int{3}},
	{"MIGRATE h 6379 k 0 1000", []int{3}},
	{"MIGRATE h 6379 '' 0 1000 COPY REPLACE AUTH pw KEYS a b", []int{11, 12}},
	{"MIGRATE h 6379 '' 0 1000 AUTH2 u keys KEYS a", []int{10}},
	{"WATCH a b", []int{1, 2}},
	{"SPUBLISH ch msg", nil}, // NOT_KEY
	{"PING", nil},
	{"SCAN 0 MATCH a*", nil},
	{"TIME", nil},
	{"DBSIZE", nil},
	{"KEYS *", nil},
	{"JUPITER status", nil},
}

func TestKeyIndexes(t *testing.T) {
	for _, tt := range keyIndexTests {
		args := argv(tt.line)
		s := Lookup(args)
		if s == nil {
			t.Fatalf("Lookup(%q) = nil", tt.line)
		}
		got, err := s.KeyIndexes(args, nil)
		if err != nil {
			t.Errorf("%q: unexpected error %v", tt.line, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: KeyIndexes = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestKeyIndexesAppends(t *testing.T) {
	args := argv("MSET a 1 b 2")
	dst := []int{42}
	got, err := Lookup(args).KeyIndexes(args, dst)
	if err != nil || !slices.Equal(got, []int{42, 1, 3}) {
		t.Fatalf("KeyIndexes appended %v, %v; want [42 1 3]", got, err)
	}
	// On error the original prefix is kept and nothing is appended.
	args = argv("EVAL s 3 a b")
	got, err = Lookup(args).KeyIndexes(args, []int{7})
	if err == nil || !slices.Equal(got, []int{7}) {
		t.Fatalf("on error got %v, %v; want [7] and an error", got, err)
	}
}

func TestKeyIndexesErrors(t *testing.T) {
	tests := []struct {
		line string
		want error
	}{
		{"EVAL s x k", ErrNotInteger},
		{"EVAL s 1.5 k", ErrNotInteger},
		{"EVAL s +1 k", ErrNotInteger},
		{"EVAL s 01 k", ErrNotInteger},
		{"EVAL s '' k", ErrNotInteger},
		{"EVAL s 99999999999999999999999 k", ErrNotInteger},
		{"EVAL s -1 k", ErrNegativeKeys},
		{"EVAL s -9223372036854775808", ErrNegativeKeys},
		{"EVAL s 2 k", ErrTooManyKeys},
		{"EVAL s 9223372036854775807 k", ErrTooManyKeys},
		{"FCALL f 3 a b", ErrTooManyKeys},
		{"ZUNIONSTORE d 3 a b", ErrTooManyKeys},
		{"ZUNION x a b", ErrNotInteger},
		{"LMPOP -1 a LEFT", ErrNegativeKeys},
		{"SINTERCARD 5 a b", ErrTooManyKeys},
		{"XREAD COUNT 1 STREAMS a", ErrSyntax},
		{"MIGRATE h 6379 k 0 1000 KEYS a", ErrSyntax},
	}
	for _, tt := range tests {
		args := argv(tt.line)
		got, err := Lookup(args).KeyIndexes(args, nil)
		if !errors.Is(err, tt.want) {
			t.Errorf("%q: error %v, want %v (keys %v)", tt.line, err, tt.want, got)
		}
		if err != nil && (!strings.HasPrefix(err.Error(), "ERR ") || strings.ContainsAny(err.Error(), "\r\n")) {
			t.Errorf("%q: %q is not a Redis error line", tt.line, err)
		}
	}
}

func TestKeyIndexesZeroAllocs(t *testing.T) {
	dst := make([]int, 0, 16)
	for _, tt := range keyIndexTests {
		args := argv(tt.line)
		s := Lookup(args)
		allocs := testing.AllocsPerRun(50, func() {
			_, _ = s.KeyIndexes(args, dst[:0])
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocs", tt.line, allocs)
		}
	}
	args := argv("EVAL s x")
	if allocs := testing.AllocsPerRun(50, func() { _, _ = Lookup(args).KeyIndexes(args, dst[:0]) }); allocs != 0 {
		t.Errorf("error path: %v allocs", allocs)
	}
}

func TestLookupZeroAllocs(t *testing.T) {
	for _, line := range []string{"get k", "GET k", "object ENCODING k", "nosuch", "CLIENT nosuch", "XREADGROUP GROUP g c STREAMS s >"} {
		args := argv(line)
		if allocs := testing.AllocsPerRun(100, func() { _ = Lookup(args) }); allocs != 0 {
			t.Errorf("Lookup(%q): %v allocs", line, allocs)
		}
	}
}

func TestHashOverride(t *testing.T) {
	tests := []struct {
		line   string
		prefix string
		want   string
		ok     bool
	}{
		{"PING hash=k", "hash=", "k", true},
		{"PING", "hash=", "", false},
		{"PING hash=", "hash=", "", false}, // empty key
		{"PING hash=k", "", "", false},     // feature disabled
		{"PING HASH=k", "hash=", "", false},
		{"SCAN 0 MATCH x* hash=k", "hash=", "k", true},
		{"SCAN hash=k", "hash=", "", false}, // SCAN needs its cursor
		{"GET k hash=x", "hash=", "x", true},
		{"GET hash=x", "hash=", "", false}, // GET needs its key: hash=x is the key
		{"SET k hash=x", "hash=", "", false},
		{"SET k v hash=x", "hash=", "x", true},
		{"LPUSH k a hash=x", "hash=", "x", true}, // documented ambiguity
		{"EVAL s 2 a b hash={t}", "hash=", "{t}", true},
		{"DBSIZE hash=k", "hash=", "k", true},
		{"DBSIZE x hash=k", "hash=", "", false},
		{"TIME hash=k=v", "hash=", "k=v", true},
		{"OBJECT ENCODING k hash=x", "hash=", "x", true},
		{"GET k x hash=y", "hash=", "", false}, // fixed arity 2: GET k x is not GET
		{"MEMORY USAGE k hash=x", "hash=", "x", true},
		{"SCRIPT KILL hash=k", "hash=", "k", true},
		{"RANDOMKEY @k", "@", "k", true},
		{"JUPITER hash=x", "hash=", "", false},
	}
	for _, tt := range tests {
		args := argv(tt.line)
		s := Lookup(args)
		key, ok := HashOverride(s, args, tt.prefix)
		if ok != tt.ok || string(key) != tt.want {
			t.Errorf("HashOverride(%q, %q) = %q, %v; want %q, %v", tt.line, tt.prefix, key, ok, tt.want, tt.ok)
		}
	}
	if _, ok := HashOverride(nil, argv("NOSUCH hash=k"), "hash="); ok {
		t.Error("override on an unknown command")
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		s  string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{"-7", -7, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775808", -9223372036854775808, true},
		{"-9223372036854775809", 0, false},
		{"18446744073709551616", 0, false},
		{"-0", 0, false},
		{"00", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"-", 0, false},
		{"", 0, false},
		{"1a", 0, false},
	}
	for _, tt := range tests {
		n, ok := parseInt([]byte(tt.s))
		if n != tt.n || ok != tt.ok {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tt.s, n, ok, tt.n, tt.ok)
		}
	}
}
