package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/alphauslabs/jupiter/internal/hotkeys"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/slowlog"
	"github.com/tidwall/redcon"
)

// Observers are what a pod records about the commands going through it:
// its own slow log and its hot and big keys. The proxy feeds them; JUPITER
// SLOWLOG|HOTKEYS|BIGKEYS, /v1/slowlog, /v1/hotkeys and /v1/bigkeys read
// them. Any of them may be nil (off). They are per pod: ask each pod —
// except hot keys, which are also merged fleet-wide (Fleet).
type Observers struct {
	Slowlog *slowlog.Log
	HotKeys *hotkeys.Sketch
	BigKeys *hotkeys.Big
	// Fleet returns the fleet's hot keys, every pod's ranking merged by
	// the leader (cluster.HotKeysExchange). nil in standalone mode, where
	// the fleet is this pod.
	Fleet func(ctx context.Context, n int, by hotkeys.Rank) (FleetHotKeys, error)
}

// FleetHotKeys is the fleet's hot keys as the leader merged them: per key
// the pods' counts summed (hotkeys.Merge), Item.Pods the pods that ranked it.
type FleetHotKeys struct {
	Keys    []hotkeys.Item
	Pods    int    // pods whose rankings were merged
	PodsOff int    // pods that answered with hot keys off
	Leader  string // the leader that merged them
}

// Scopes of a hot-key report.
const (
	ScopeFleet = "fleet" // every pod's ranking, merged through the leader (the default)
	ScopePod   = "pod"   // this pod's own ranking
)

// hotKeys returns the n hottest keys of scope. In standalone mode (no
// Fleet) the fleet is this pod. pods is how many pods the report covers.
func (o Observers) hotKeys(ctx context.Context, scope string, n int, by hotkeys.Rank) (items []hotkeys.Item, pods int, err error) {
	if scope == ScopeFleet && o.Fleet != nil {
		f, err := o.Fleet(ctx, n, by)
		switch {
		case err != nil:
			return nil, 0, errors.New("jupiter: fleet hot keys: " + err.Error() + " (JUPITER HOTKEYS POD shows this pod's)")
		case f.Pods == 0 && f.PodsOff > 0:
			return nil, 0, errFleetHotKeysOff
		}
		return f.Keys, f.Pods, nil
	}
	if o.HotKeys == nil {
		return nil, 0, errHotKeysOff
	}
	return o.HotKeys.Top(n, by), 1, nil
}

var (
	errHotKeysOff      = errors.New("jupiter: hot keys are off on this pod (--hotkeys-sample 0)")
	errFleetHotKeysOff = errors.New("jupiter: hot keys are off on every pod that answered (--hotkeys-sample 0)")
)

// defaultShown is how many entries JUPITER SLOWLOG/HOTKEYS/BIGKEYS show
// without a count (SLOWLOG GET's default).
const defaultShown = 10

// slowlogCommand answers JUPITER SLOWLOG [GET] [n] | LEN | RESET: this
// pod's slow log with what Redis's format has no room for, one line per
// entry (FormatSlowEntry), newest first. JUPITER SLOWLOG NODES (the nodes'
// own slow logs) is answered by the proxy, which can reach the nodes.
func (o Observers) slowlogCommand(args [][]byte) []byte {
	sub := ""
	if len(args) > 0 {
		sub = strings.ToUpper(string(args[0]))
	}
	switch {
	case sub == "LEN" && len(args) == 1:
		return redcon.AppendInt(nil, int64(o.Slowlog.Len()))
	case sub == "RESET" && len(args) == 1:
		o.Slowlog.Reset()
		return redcon.AppendOK(nil)
	case sub == "NODES":
		return redcon.AppendError(nil, "ERR jupiter: JUPITER SLOWLOG NODES is answered by the proxy")
	}
	if sub == "GET" {
		args = args[1:]
	}
	n, ok := shownCount(args, true)
	if !ok {
		return redcon.AppendError(nil, "ERR usage: JUPITER SLOWLOG [GET] [count|-1] | LEN | RESET | NODES [GET [count]|LEN|RESET]")
	}
	entries := o.Slowlog.Get(n)
	b := redcon.AppendArray(nil, len(entries))
	for _, e := range entries {
		b = redcon.AppendBulkString(b, FormatSlowEntry(e))
	}
	return b
}

// hotkeysCommand answers JUPITER HOTKEYS [FLEET|POD] [COUNT|BYTES] [n] |
// RESET: by default the fleet's hottest keys (every pod's ranking merged
// through the leader; in standalone mode this pod's), with POD this pod's
// own. RESET forgets this pod's keys only.
func (o Observers) hotkeysCommand(ctx context.Context, args [][]byte) []byte {
	if len(args) == 1 && strings.EqualFold(string(args[0]), "reset") {
		if o.HotKeys == nil {
			return redcon.AppendError(nil, "ERR "+errHotKeysOff.Error())
		}
		o.HotKeys.Reset()
		return redcon.AppendOK(nil)
	}
	scope, by := ScopeFleet, hotkeys.ByCount
	if len(args) > 0 {
		switch strings.ToUpper(string(args[0])) {
		case "FLEET":
			args = args[1:]
		case "POD":
			scope, args = ScopePod, args[1:]
		}
	}
	if len(args) > 0 {
		switch strings.ToUpper(string(args[0])) {
		case "BYTES":
			by, args = hotkeys.ByBytes, args[1:]
		case "COUNT":
			args = args[1:]
		}
	}
	n, ok := shownCount(args, false)
	if !ok {
		return redcon.AppendError(nil, "ERR usage: JUPITER HOTKEYS [FLEET|POD] [COUNT|BYTES] [n] | RESET")
	}
	items, _, err := o.hotKeys(ctx, scope, n, by)
	if err != nil {
		return redcon.AppendError(nil, "ERR "+err.Error())
	}
	b := redcon.AppendArray(nil, len(items))
	for _, it := range items {
		b = redcon.AppendBulkString(b, FormatHotKey(it))
	}
	return b
}

// bigkeysCommand answers JUPITER BIGKEYS [n] | RESET.
func (o Observers) bigkeysCommand(args [][]byte) []byte {
	if o.BigKeys.Threshold() == 0 {
		return redcon.AppendError(nil, "ERR jupiter: big keys are off on this pod (--bigkeys-threshold 0)")
	}
	if len(args) == 1 && strings.EqualFold(string(args[0]), "reset") {
		o.BigKeys.Reset()
		return redcon.AppendOK(nil)
	}
	n, ok := shownCount(args, false)
	if !ok {
		return redcon.AppendError(nil, "ERR usage: JUPITER BIGKEYS [n] | RESET")
	}
	items := o.BigKeys.Top(n)
	b := redcon.AppendArray(nil, len(items))
	for _, it := range items {
		b = redcon.AppendBulkString(b, FormatBigKey(it))
	}
	return b
}

// shownCount reads an optional count: none is defaultShown; -1 (when
// allowed) and 0 mean all.
func shownCount(args [][]byte, minusOne bool) (int, bool) {
	switch len(args) {
	case 0:
		return defaultShown, true
	case 1:
		n, err := strconv.Atoi(string(args[0]))
		if err != nil || n < -1 || n == -1 && !minusOne {
			return 0, false
		}
		if n == 0 {
			n = -1
		}
		return n, true
	}
	return 0, false
}

// FormatSlowEntry renders one JUPITER SLOWLOG line:
//
//	id=7 time=1700000000 duration_us=201532 node_us=200873 proxy_us=659 nodes=10.0.0.5:6379 client=10.0.1.9:50312 name=app cmd="GET" "user:1"
//
// node_us and proxy_us are "?" where the node wait was not measured (the
// rebalance path, dedicated connections); nodes is empty for a command
// jupiter answered itself. cmd is last: its arguments are quoted, as
// redis-cli shows them.
func FormatSlowEntry(e slowlog.Entry) string {
	var b strings.Builder
	num := func(k string, v int64) {
		b.WriteString(k)
		b.WriteByte('=')
		if v < 0 {
			b.WriteByte('?')
		} else {
			b.WriteString(strconv.FormatInt(v, 10))
		}
		b.WriteByte(' ')
	}
	num("id", e.ID)
	num("time", e.Time)
	num("duration_us", e.DurationUS)
	num("node_us", e.NodeUS)
	num("proxy_us", e.ProxyUS)
	b.WriteString("nodes=" + strings.Join(e.Nodes, ",") + " client=" + e.Client + " name=" + e.ClientName + " cmd=")
	for i, a := range e.Args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Quote(a))
	}
	return b.String()
}

// FormatHotKey renders one JUPITER HOTKEYS line:
//
//	key="user:1" count=120400 bytes=9873100 reads=118000 writes=2400 node=10.0.0.5:6379 id=h:9c1e0f4b2a7d3e65
//
// followed by pods=N in a fleet-wide report (how many pods reported the
// key), and key_bytes=N when the key is longer than the part shown. id is
// the key's name in jupiter_hotkey_score when key names are not exported.
func FormatHotKey(it hotkeys.Item) string {
	s := "key=" + Quote(it.Key) + " count=" + strconv.FormatUint(it.Count, 10) + " bytes=" + strconv.FormatUint(it.Bytes, 10) +
		" reads=" + strconv.FormatUint(it.Reads, 10) + " writes=" + strconv.FormatUint(it.Writes, 10) + " node=" + it.Node +
		" id=" + hotkeys.ID(it.Key)
	if it.Pods > 0 {
		s += " pods=" + strconv.Itoa(it.Pods)
	}
	if it.KeyBytes > len(it.Key) {
		s += " key_bytes=" + strconv.Itoa(it.KeyBytes)
	}
	return s
}

// FormatBigKey renders one JUPITER BIGKEYS line:
//
//	key="blob:1" command=set size=1048611 dir=request count=3 node=10.0.0.5:6379 last=1700000000
//
// followed by key_bytes=N when the key is longer than the part shown.
func FormatBigKey(it hotkeys.BigItem) string {
	dir := "request"
	if it.Reply {
		dir = "reply"
	}
	s := "key=" + Quote(it.Key) + " command=" + it.Command + " size=" + strconv.Itoa(it.Size) + " dir=" + dir +
		" count=" + strconv.FormatUint(it.Count, 10) + " node=" + it.Node + " last=" + strconv.FormatInt(it.Last, 10)
	if it.KeyBytes > len(it.Key) {
		s += " key_bytes=" + strconv.Itoa(it.KeyBytes)
	}
	return s
}

// Quote renders s in double quotes the way redis-cli shows a binary
// string (resp.AppendQuoted).
func Quote(s string) string {
	return string(resp.AppendQuoted(make([]byte, 0, len(s)+2), []byte(s)))
}

// SlowlogJSON is the reply of GET /v1/slowlog.
type SlowlogJSON struct {
	SlowerThanUS int64           `json:"slower_than_us"` // negative: the log is off
	MaxLen       int             `json:"max_len"`
	Len          int             `json:"len"`
	Entries      []slowlog.Entry `json:"entries"`
}

// HotKeysJSON is the reply of GET /v1/hotkeys.
type HotKeysJSON struct {
	Sample uint64         `json:"sample"` // one command in Sample is counted on this pod (0: off)
	By     string         `json:"by"`     // "count" or "bytes"
	Scope  string         `json:"scope"`  // "fleet" (merged through the leader) or "pod"
	Pods   int            `json:"pods"`   // pods the report covers
	Keys   []hotkeys.Item `json:"keys"`
}

// BigKeysJSON is the reply of GET /v1/bigkeys.
type BigKeysJSON struct {
	Threshold int               `json:"threshold"` // bytes; 0: off
	Keys      []hotkeys.BigItem `json:"keys"`
}

// Register mounts the read-only observation API on mux:
//
//	GET /v1/slowlog[?n=N]            this pod's slow log, newest first (SlowlogJSON; default all)
//	GET /v1/hotkeys[?n=N&by=bytes&scope=pod]  hottest keys by commands or bytes (HotKeysJSON; default 10),
//	                                 the fleet's (merged through the leader) or with scope=pod this pod's
//	GET /v1/bigkeys[?n=N]            biggest commands by key (BigKeysJSON; default 10)
//
// They show key names and command arguments — the applications' data — so
// when adminPassword is set they need it, as the ring changes do (HTTP
// Basic "admin" or Bearer); on RESP, JUPITER SLOWLOG/HOTKEYS/BIGKEYS are
// open to authenticated clients, as Redis's SLOWLOG is.
func (o Observers) Register(mux Mux, adminPassword string) {
	h := HTTP{AdminPassword: adminPassword}
	handle := func(pattern string, f http.HandlerFunc) {
		mux.Handle(pattern, h.guard(f, "key names and command arguments need the admin password (curl -u admin:<admin-password>)"))
	}
	handle("GET /v1/slowlog", func(w http.ResponseWriter, r *http.Request) {
		n, ok := queryCount(w, r, -1)
		if !ok {
			return
		}
		out := SlowlogJSON{SlowerThanUS: o.Slowlog.SlowerThan().Microseconds(), MaxLen: o.Slowlog.MaxLen(),
			Len: o.Slowlog.Len(), Entries: o.Slowlog.Get(n)}
		if o.Slowlog.SlowerThan() < 0 {
			out.SlowerThanUS = -1
		}
		if out.Entries == nil {
			out.Entries = []slowlog.Entry{}
		}
		writeJSON(w, http.StatusOK, out)
	})
	handle("GET /v1/hotkeys", func(w http.ResponseWriter, r *http.Request) {
		n, ok := queryCount(w, r, defaultShown)
		if !ok {
			return
		}
		out := HotKeysJSON{Sample: o.HotKeys.Scale(), By: "count", Scope: ScopeFleet, Keys: []hotkeys.Item{}}
		by := hotkeys.ByCount
		switch r.URL.Query().Get("by") {
		case "", "count":
		case "bytes":
			by, out.By = hotkeys.ByBytes, "bytes"
		default:
			writeJSON(w, http.StatusBadRequest, ChangeJSON{Error: "by must be count or bytes"})
			return
		}
		switch r.URL.Query().Get("scope") {
		case "", ScopeFleet:
		case ScopePod:
			out.Scope = ScopePod
		default:
			writeJSON(w, http.StatusBadRequest, ChangeJSON{Error: "scope must be fleet or pod"})
			return
		}
		keys, pods, err := o.hotKeys(r.Context(), out.Scope, n, by)
		switch {
		case errors.Is(err, errHotKeysOff), errors.Is(err, errFleetHotKeysOff):
			// Off is a state, not a failure: an empty report (sample 0).
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, ChangeJSON{Error: err.Error()})
			return
		}
		out.Pods = pods
		if keys != nil {
			out.Keys = keys
		}
		writeJSON(w, http.StatusOK, out)
	})
	handle("GET /v1/bigkeys", func(w http.ResponseWriter, r *http.Request) {
		n, ok := queryCount(w, r, defaultShown)
		if !ok {
			return
		}
		out := BigKeysJSON{Threshold: o.BigKeys.Threshold(), Keys: []hotkeys.BigItem{}}
		if keys := o.BigKeys.Top(n); keys != nil {
			out.Keys = keys
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// queryCount reads ?n= (0 or -1: all; absent: def); a bad value is
// answered 400.
func queryCount(w http.ResponseWriter, r *http.Request, def int) (int, bool) {
	q := r.URL.Query().Get("n")
	if q == "" {
		return def, true
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < -1 {
		writeJSON(w, http.StatusBadRequest, ChangeJSON{Error: "n must be a count (0 or -1: all)"})
		return 0, false
	}
	if n == 0 {
		n = -1
	}
	return n, true
}
