// Package slowlog is jupiter's own slow log: the commands whose time through
// the proxy reached a threshold, kept per pod in a bounded ring buffer.
//
// An entry holds what Redis's SLOWLOG records — an id, the unix time, the
// duration in microseconds, the arguments, the client's address and name —
// so that SLOWLOG GET can be answered in Redis's own format, plus what only
// a proxy can tell: how much of the duration was spent waiting for the
// node(s), which nodes, and how much was the proxy's own work (parsing,
// planning, queueing, merging, scheduling). An operator looking at a slow
// command wants to know first whether the node or jupiter was slow.
//
// Arguments are stored the way Redis stores them (see Args): at most
// MaxArgs of them, each cut at MaxArgBytes, with "... (N more bytes)" and
// "... (N more arguments)" markers, and secrets (AUTH passwords, HELLO …
// AUTH, MIGRATE AUTH/AUTH2, CONFIG SET requirepass/masterauth…, ACL
// SETUSER rules) replaced by "(redacted)" before anything is kept.
//
// The package does no I/O and reads no clock: callers pass durations and
// times. A Log is safe for concurrent use; a nil *Log is an empty,
// disabled log.
package slowlog

import (
	"strconv"
	"sync"
	"time"
)

// Redis's limits on what one entry keeps (slowlog.c).
const (
	MaxArgs     = 32  // SLOWLOG_ENTRY_MAX_ARGC
	MaxArgBytes = 128 // SLOWLOG_ENTRY_MAX_STRING
)

// Redacted replaces a secret argument, as in Redis.
const Redacted = "(redacted)"

// Entry is one slow command.
type Entry struct {
	ID   int64 `json:"id"`
	Time int64 `json:"time"` // unix seconds when the command finished
	// DurationUS is the command's time through jupiter in microseconds
	// (what SLOWLOG GET reports); NodeUS the part spent waiting for the
	// node(s), -1 when not measured (rebalance path, dedicated
	// connections); ProxyUS the rest.
	DurationUS int64    `json:"duration_us"`
	NodeUS     int64    `json:"node_us"`
	ProxyUS    int64    `json:"proxy_us"`
	Nodes      []string `json:"nodes"`       // node addresses the command went to; empty: answered by jupiter
	Args       []string `json:"args"`        // truncated and redacted (Args)
	Client     string   `json:"client"`      // client address, host:port
	ClientName string   `json:"client_name"` // CLIENT SETNAME / HELLO SETNAME
	// Command is the command's name in jupiter's command table (lower
	// case, "container|sub" for subcommands; "unknown" when not in the
	// table). Per-command counts (Counts) are kept by it, so it must come
	// from a bounded set, never from the client's bytes.
	Command string `json:"command,omitempty"`
}

// Log is a bounded ring buffer of Entries, newest first when read.
type Log struct {
	slower time.Duration // record commands at least this slow; < 0 never
	maxLen int

	mu     sync.Mutex
	buf    []Entry // ring; len(buf) == min(entries ever added, maxLen)
	head   int     // where the next entry goes once buf is full
	nextID int64
	counts map[string]uint64 // entries ever added, by Entry.Command
}

// New returns a log recording commands that take at least slowerThan
// (negative: none; zero: every command) and keeping the maxLen newest.
func New(slowerThan time.Duration, maxLen int) *Log {
	return &Log{slower: slowerThan, maxLen: max(maxLen, 0)}
}

// SlowerThan is the threshold; negative means the log records nothing.
func (l *Log) SlowerThan() time.Duration {
	if l == nil {
		return -1
	}
	return l.slower
}

// MaxLen is how many entries the log keeps.
func (l *Log) MaxLen() int {
	if l == nil {
		return 0
	}
	return l.maxLen
}

// Add records e, giving it the next id (ids count every entry ever added,
// as Redis's do, also those the buffer no longer holds).
func (l *Log) Add(e Entry) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e.ID = l.nextID
	l.nextID++
	if l.counts == nil {
		l.counts = map[string]uint64{}
	}
	l.counts[e.Command]++
	switch {
	case l.maxLen == 0:
	case len(l.buf) < l.maxLen:
		l.buf = append(l.buf, e)
	default:
		l.buf[l.head] = e
		l.head = (l.head + 1) % l.maxLen
	}
}

// Get returns up to n entries, newest first; n < 0 returns them all.
func (l *Log) Get(n int) []Entry {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n < 0 || n > len(l.buf) {
		n = len(l.buf)
	}
	out := make([]Entry, 0, n)
	// The newest is just before head (or the last appended while filling).
	newest := len(l.buf) - 1
	if len(l.buf) == l.maxLen {
		newest = (l.head - 1 + l.maxLen) % l.maxLen
	}
	for i := 0; i < n; i++ {
		out = append(out, l.buf[(newest-i+len(l.buf))%len(l.buf)])
	}
	return out
}

// Added is how many entries were ever added (what the next id will be):
// a counter, which RESET does not reset.
func (l *Log) Added() int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextID
}

// Counts calls f with the number of entries ever added per command name
// (Entry.Command), in no particular order. Like Added, RESET does not
// reset them: they are counters.
func (l *Log) Counts(f func(command string, n uint64)) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for c, n := range l.counts {
		f(c, n)
	}
}

// Len is the number of entries held.
func (l *Log) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buf)
}

// Reset drops every entry (ids keep counting, as in Redis).
func (l *Log) Reset() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.buf)
	l.buf = l.buf[:0]
	l.head = 0
}

// Args copies a command's arguments the way Redis's slow log keeps them:
// secrets replaced by Redacted; at most MaxArgs arguments, the last of them
// "... (N more arguments)" when there were more; each longer than
// MaxArgBytes cut there and followed by "... (N more bytes)".
func Args(args [][]byte) []string {
	red := redactions(args)
	n := min(len(args), MaxArgs)
	out := make([]string, n)
	for j := 0; j < n; j++ {
		a := args[j]
		switch {
		case n != len(args) && j == n-1:
			out[j] = "... (" + strconv.Itoa(len(args)-n+1) + " more arguments)"
		case red.has(j):
			out[j] = Redacted
		case len(a) > MaxArgBytes:
			out[j] = string(a[:MaxArgBytes]) + "... (" + strconv.Itoa(len(a)-MaxArgBytes) + " more bytes)"
		default:
			out[j] = string(a)
		}
	}
	return out
}

// redacted is the set of argument positions that hold secrets: every
// position from all on (all > 0), and the listed ones.
type redacted struct {
	all int
	idx []int
}

func (r redacted) has(j int) bool {
	if r.all > 0 && j >= r.all {
		return true
	}
	for _, i := range r.idx {
		if i == j {
			return true
		}
	}
	return false
}

// sensitiveConfig are the CONFIG SET parameters whose values are secrets
// (Redis's SENSITIVE_CONFIG, and the TLS key passphrases).
var sensitiveConfig = []string{"requirepass", "masterauth", "masteruser", "primaryauth", "primaryuser",
	"tls-key-file-pass", "tls-client-key-file-pass"}

// redactions finds the secrets among args. It errs on the side of
// redacting: keyword options are looked for at every position, not only
// where the command's own parser would accept them, so that a malformed
// command (which Redis would reject before redacting) leaks nothing either.
func redactions(args [][]byte) redacted {
	if len(args) < 2 {
		return redacted{}
	}
	var r redacted
	switch {
	case fold(args[0], "auth"):
		r.all = 1
	case fold(args[0], "hello"):
		for j := 1; j < len(args); j++ {
			switch {
			case fold(args[j], "auth"):
				r.idx = append(r.idx, j+1, j+2)
				j += 2
			case fold(args[j], "setname"):
				j++
			}
		}
	case fold(args[0], "migrate"):
		for j := 1; j < len(args); j++ {
			switch {
			case fold(args[j], "auth"):
				r.idx = append(r.idx, j+1)
				j++
			case fold(args[j], "auth2"):
				r.idx = append(r.idx, j+1, j+2)
				j += 2
			case fold(args[j], "keys"):
				j = len(args)
			}
		}
	case fold(args[0], "config") && fold(args[1], "set"):
		for j := 2; j+1 < len(args); j += 2 {
			for _, p := range sensitiveConfig {
				if fold(args[j], p) {
					r.idx = append(r.idx, j+1)
					break
				}
			}
		}
	case fold(args[0], "acl") && fold(args[1], "setuser"):
		r.all = 2 // the user's name and every rule, as Redis does
	}
	return r
}

// fold reports whether b equals the lower-case ASCII word s, ignoring case.
func fold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
