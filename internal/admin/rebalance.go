package admin

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/alphauslabs/jupiter/internal/ring"
)

// Stages of a ring, in the order a staged rebalance goes through them.
const (
	StageStable    = "stable"
	StagePrepare   = "prepare"
	StageFreeze    = "freeze"
	StageMigrating = "migrating"
	StageCommit    = "commit"
)

// Rebalance actions (RebalanceAction's action argument).
const (
	ActionAbort  = "abort"
	ActionPause  = "pause"
	ActionResume = "resume"
)

// More kinds of refusal (see Refusal) for the rebalance API.
var (
	// ErrNotRunning: a rebalance action while no rebalance runs (HTTP 409).
	ErrNotRunning = errors.New("no rebalance in progress")
	// ErrUnsupported: the controller cannot run rebalances or plans (HTTP 501).
	ErrUnsupported = errors.New("not supported in this mode")
)

// RebalanceStatus is the progress of a staged rebalance.
type RebalanceStatus struct {
	Stage      string           `json:"stage"` // stable|prepare|freeze|migrating|commit
	Epoch      uint64           `json:"epoch"` // 0 when no rebalance is running
	Change     string           `json:"change,omitempty"`
	From       []string         `json:"from_nodes,omitempty"`
	To         []string         `json:"to_nodes,omitempty"`
	Paused     bool             `json:"paused"`
	MovedKeys  int64            `json:"moved_keys"`
	TotalKeys  int64            `json:"total_keys"` // estimate
	MovedBytes int64            `json:"moved_bytes"`
	KeysPerSec float64          `json:"keys_per_sec"`
	ETASeconds float64          `json:"eta_seconds"` // -1 unknown
	Errors     int64            `json:"errors"`
	LastError  string           `json:"last_error,omitempty"`
	Sources    []SourceProgress `json:"sources,omitempty"`
}

// SourceProgress is one source node's part of a rebalance.
type SourceProgress struct {
	Node    string `json:"node"`
	Phase   string `json:"phase"`
	Scanned int64  `json:"scanned"`
	Moved   int64  `json:"moved"`
	Total   int64  `json:"total"` // estimate of moving keys on this source
	Errors  int64  `json:"errors"`
}

// PlanResult is a dry run of a ring change.
type PlanResult struct {
	Change string `json:"change"`
	// RingVersion is the version of the ring the plan was computed against
	// (the change would produce a later one).
	RingVersion uint64     `json:"ring_version"`
	MovingSlots int        `json:"moving_slots"`
	MovingKeys  int64      `json:"moving_keys"` // estimate; -1 when no node could be sized
	Nodes       []PlanNode `json:"nodes"`
}

// PlanNode is one node's part of a plan. Nodes are those of either ring,
// sorted by address.
type PlanNode struct {
	Addr       string `json:"addr"`
	SlotsNow   int    `json:"slots_now"`
	SlotsAfter int    `json:"slots_after"`
	SlotsOut   int    `json:"slots_out"`
	SlotsIn    int    `json:"slots_in"`
	KeysNow    int64  `json:"keys_now"` // DBSIZE, -1 unknown
	KeysOut    int64  `json:"keys_out"` // estimate: KeysNow * SlotsOut/SlotsNow; -1 unknown
	KeysIn     int64  `json:"keys_in"`  // estimate: sum over sources; -1 unknown
}

// Rebalancer is implemented by Controllers that run staged rebalances
// (cluster mode; standalone may too). Handler and HTTP use it when the
// Controller implements it.
type Rebalancer interface {
	RebalanceStatus(ctx context.Context) (RebalanceStatus, error)
	RebalanceAction(ctx context.Context, action string) error // "abort", "pause", "resume"
	Plan(ctx context.Context, c Change) (PlanResult, error)
}

// String renders c the way ring history records changes:
// "ADD host:port w=1", "REMOVE host:port", "WEIGHT host:port w=2".
func (c Change) String() string {
	switch c.Op {
	case "add":
		return "ADD " + c.Addr + " w=" + strconv.Itoa(max(c.Weight, 1))
	case "remove":
		return "REMOVE " + c.Addr
	case "weight":
		return "WEIGHT " + c.Addr + " w=" + strconv.Itoa(c.Weight)
	}
	return strings.ToUpper(c.Op) + " " + c.Addr
}

// ComputePlan is pure: it diffs cur and next by slot (ring.SlotOwner by
// address, ring.Slots slots) and estimates keys from dbsize (addr →
// DBSIZE; missing or negative = unknown).
//
// Keys are assumed spread evenly over a node's slots: a node holding K
// keys in S slots sends K*out/S of them. KeysOut is -1 for a node whose
// size is unknown (unless it sends nothing). KeysIn and MovingKeys use,
// for a source of unknown size, the average keys per slot of the nodes
// that could be sized; they are -1 only when no node could be sized (and
// something moves). A nil ring owns no slots.
func ComputePlan(change string, cur, next *ring.Ring, dbsize map[string]int64) PlanResult {
	p := PlanResult{Change: change, Nodes: []PlanNode{}}
	if cur != nil {
		p.RingVersion = cur.Version()
	}
	idx := map[string]int{}
	node := func(addr string) int {
		i, ok := idx[addr]
		if !ok {
			i = len(p.Nodes)
			idx[addr] = i
			p.Nodes = append(p.Nodes, PlanNode{Addr: addr})
		}
		return i
	}
	addrsOf := func(r *ring.Ring) []int {
		if r == nil {
			return nil
		}
		out := make([]int, r.Len())
		for i := range out {
			out[i] = node(r.Node(i).Addr)
		}
		return out
	}
	curIdx, nextIdx := addrsOf(cur), addrsOf(next)

	type move struct{ from, to int } // plan node indexes; -1: no owner
	moves := make([]move, 0, ring.Slots)
	for s := range ring.Slots {
		from, to := -1, -1
		if cur != nil {
			from = curIdx[cur.SlotOwner(uint16(s))]
			p.Nodes[from].SlotsNow++
		}
		if next != nil {
			to = nextIdx[next.SlotOwner(uint16(s))]
			p.Nodes[to].SlotsAfter++
		}
		if from == to {
			continue
		}
		p.MovingSlots++
		if from >= 0 {
			p.Nodes[from].SlotsOut++
		}
		if to >= 0 {
			p.Nodes[to].SlotsIn++
		}
		moves = append(moves, move{from, to})
	}

	// Keys per slot of each node, and on average over the sized nodes.
	density := make([]float64, len(p.Nodes))
	known := make([]bool, len(p.Nodes))
	var sumKeys, sumSlots float64
	for i := range p.Nodes {
		n := &p.Nodes[i]
		n.KeysNow = -1
		if k, ok := dbsize[n.Addr]; ok && k >= 0 {
			n.KeysNow = k
			if n.SlotsNow > 0 {
				density[i], known[i] = float64(k)/float64(n.SlotsNow), true
				sumKeys += float64(k)
				sumSlots += float64(n.SlotsNow)
			}
		}
		switch {
		case n.SlotsOut == 0:
			n.KeysOut = 0
		case n.KeysNow >= 0:
			n.KeysOut = int64(math.Round(float64(n.KeysNow) * float64(n.SlotsOut) / float64(n.SlotsNow)))
		default:
			n.KeysOut = -1
		}
	}
	avg, haveAvg := 0.0, sumSlots > 0
	if haveAvg {
		avg = sumKeys / sumSlots
	}
	in := make([]float64, len(p.Nodes))
	unknownIn := make([]bool, len(p.Nodes))
	var moving float64
	unknownMoving := false
	for _, m := range moves {
		if m.from < 0 {
			continue // a slot nobody held carries no keys
		}
		d, ok := density[m.from], known[m.from]
		if !ok {
			d, ok = avg, haveAvg
		}
		if !ok {
			unknownMoving = true
			if m.to >= 0 {
				unknownIn[m.to] = true
			}
			continue
		}
		moving += d
		if m.to >= 0 {
			in[m.to] += d
		}
	}
	p.MovingKeys = int64(math.Round(moving))
	if unknownMoving {
		p.MovingKeys = -1
	}
	for i := range p.Nodes {
		p.Nodes[i].KeysIn = int64(math.Round(in[i]))
		if unknownIn[i] {
			p.Nodes[i].KeysIn = -1
		}
	}
	sort.Slice(p.Nodes, func(a, b int) bool { return p.Nodes[a].Addr < p.Nodes[b].Addr })
	return p
}

// FormatRebalance renders st as key:value lines (the reply of JUPITER
// REBALANCE STATUS), then one "source:<node> phase=… scanned=… moved=…
// total=… errors=…" line per source.
func FormatRebalance(st RebalanceStatus) string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ":" + v + "\r\n") }
	line("stage", st.Stage)
	line("epoch", strconv.FormatUint(st.Epoch, 10))
	line("change", oneLine(st.Change))
	line("from_nodes", strings.Join(st.From, ","))
	line("to_nodes", strings.Join(st.To, ","))
	line("paused", boolDigit(st.Paused))
	line("moved_keys", strconv.FormatInt(st.MovedKeys, 10))
	line("total_keys", strconv.FormatInt(st.TotalKeys, 10))
	line("moved_bytes", strconv.FormatInt(st.MovedBytes, 10))
	line("keys_per_sec", formatFloat(st.KeysPerSec))
	line("eta_seconds", formatFloat(st.ETASeconds))
	line("errors", strconv.FormatInt(st.Errors, 10))
	line("last_error", oneLine(st.LastError))
	for _, s := range st.Sources {
		line("source", oneLine(s.Node)+" phase="+oneLine(s.Phase)+" scanned="+strconv.FormatInt(s.Scanned, 10)+
			" moved="+strconv.FormatInt(s.Moved, 10)+" total="+strconv.FormatInt(s.Total, 10)+
			" errors="+strconv.FormatInt(s.Errors, 10))
	}
	return b.String()
}

// ParseRebalance reads FormatRebalance's output back (jupiter ctl).
// Unknown keys are ignored, so that servers may add lines.
func ParseRebalance(s string) (RebalanceStatus, error) {
	st := RebalanceStatus{ETASeconds: -1}
	var err error
	for _, kv := range splitLines(s) {
		k, v := kv[0], kv[1]
		switch k {
		case "stage":
			st.Stage = v
		case "epoch":
			st.Epoch, err = strconv.ParseUint(v, 10, 64)
		case "change":
			st.Change = v
		case "from_nodes":
			st.From = splitList(v)
		case "to_nodes":
			st.To = splitList(v)
		case "paused":
			st.Paused = v == "1"
		case "moved_keys":
			st.MovedKeys, err = strconv.ParseInt(v, 10, 64)
		case "total_keys":
			st.TotalKeys, err = strconv.ParseInt(v, 10, 64)
		case "moved_bytes":
			st.MovedBytes, err = strconv.ParseInt(v, 10, 64)
		case "keys_per_sec":
			st.KeysPerSec, err = strconv.ParseFloat(v, 64)
		case "eta_seconds":
			st.ETASeconds, err = strconv.ParseFloat(v, 64)
		case "errors":
			st.Errors, err = strconv.ParseInt(v, 10, 64)
		case "last_error":
			st.LastError = v
		case "source":
			var src SourceProgress
			src, err = parseSource(v)
			st.Sources = append(st.Sources, src)
		}
		if err != nil {
			return st, fmt.Errorf("rebalance status line %q: %v", k+":"+v, err)
		}
	}
	if st.Stage == "" {
		return st, errors.New("rebalance status has no stage line")
	}
	return st, nil
}

func parseSource(v string) (SourceProgress, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return SourceProgress{}, errors.New("no node")
	}
	s := SourceProgress{Node: f[0]}
	for _, kv := range f[1:] {
		k, val, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "phase":
			s.Phase = val
		case "scanned":
			s.Scanned, err = strconv.ParseInt(val, 10, 64)
		case "moved":
			s.Moved, err = strconv.ParseInt(val, 10, 64)
		case "total":
			s.Total, err = strconv.ParseInt(val, 10, 64)
		case "errors":
			s.Errors, err = strconv.ParseInt(val, 10, 64)
		}
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

// FormatPlan renders p as key:value lines (the reply of JUPITER PLAN):
// change, ring_version, moving_slots, moving_keys, then one "node:<addr>
// slots_now=… slots_after=… slots_out=… slots_in=… keys_now=… keys_out=…
// keys_in=…" line per node (-1: unknown).
func FormatPlan(p PlanResult) string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ":" + v + "\r\n") }
	line("change", oneLine(p.Change))
	line("ring_version", strconv.FormatUint(p.RingVersion, 10))
	line("moving_slots", strconv.Itoa(p.MovingSlots))
	line("moving_keys", strconv.FormatInt(p.MovingKeys, 10))
	for _, n := range p.Nodes {
		line("node", oneLine(n.Addr)+" slots_now="+strconv.Itoa(n.SlotsNow)+" slots_after="+strconv.Itoa(n.SlotsAfter)+
			" slots_out="+strconv.Itoa(n.SlotsOut)+" slots_in="+strconv.Itoa(n.SlotsIn)+
			" keys_now="+strconv.FormatInt(n.KeysNow, 10)+" keys_out="+strconv.FormatInt(n.KeysOut, 10)+
			" keys_in="+strconv.FormatInt(n.KeysIn, 10))
	}
	return b.String()
}

// ParsePlan reads FormatPlan's output back (jupiter ctl).
func ParsePlan(s string) (PlanResult, error) {
	p := PlanResult{Nodes: []PlanNode{}}
	var err error
	seen := false
	for _, kv := range splitLines(s) {
		k, v := kv[0], kv[1]
		switch k {
		case "change":
			p.Change, seen = v, true
		case "ring_version":
			p.RingVersion, err = strconv.ParseUint(v, 10, 64)
		case "moving_slots":
			p.MovingSlots, err = strconv.Atoi(v)
		case "moving_keys":
			p.MovingKeys, err = strconv.ParseInt(v, 10, 64)
		case "node":
			var n PlanNode
			n, err = parsePlanNode(v)
			p.Nodes = append(p.Nodes, n)
		}
		if err != nil {
			return p, fmt.Errorf("plan line %q: %v", k+":"+v, err)
		}
	}
	if !seen {
		return p, errors.New("plan has no change line")
	}
	return p, nil
}

func parsePlanNode(v string) (PlanNode, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return PlanNode{}, errors.New("no address")
	}
	n := PlanNode{Addr: f[0], KeysNow: -1, KeysOut: -1, KeysIn: -1}
	for _, kv := range f[1:] {
		k, val, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "slots_now":
			n.SlotsNow, err = strconv.Atoi(val)
		case "slots_after":
			n.SlotsAfter, err = strconv.Atoi(val)
		case "slots_out":
			n.SlotsOut, err = strconv.Atoi(val)
		case "slots_in":
			n.SlotsIn, err = strconv.Atoi(val)
		case "keys_now":
			n.KeysNow, err = strconv.ParseInt(val, 10, 64)
		case "keys_out":
			n.KeysOut, err = strconv.ParseInt(val, 10, 64)
		case "keys_in":
			n.KeysIn, err = strconv.ParseInt(val, 10, 64)
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ParseRebalanceAction validates the arguments of JUPITER REBALANCE:
// none or STATUS → "status"; ABORT, PAUSE, RESUME → the action.
func ParseRebalanceAction(args [][]byte) (string, error) {
	if len(args) == 0 {
		return "status", nil
	}
	if len(args) == 1 {
		switch a := strings.ToLower(string(args[0])); a {
		case "status", ActionAbort, ActionPause, ActionResume:
			return a, nil
		}
	}
	return "", errors.New("usage: JUPITER REBALANCE [STATUS|ABORT|PAUSE|RESUME]")
}

// ParsePlanArgs validates the arguments of JUPITER PLAN: ADD <host:port>
// [weight] | REMOVE <host:port> | WEIGHT <host:port> <weight>.
func ParsePlanArgs(args [][]byte) (Change, error) {
	if len(args) == 0 {
		return Change{}, errors.New("usage: JUPITER PLAN ADD <host:port> [weight] | REMOVE <host:port> | WEIGHT <host:port> <weight>")
	}
	sub := strings.ToUpper(string(args[0]))
	switch sub {
	case "ADD", "REMOVE", "WEIGHT":
	default:
		return Change{}, errors.New("usage: JUPITER PLAN ADD <host:port> [weight] | REMOVE <host:port> | WEIGHT <host:port> <weight>")
	}
	c, err := ParseChange(sub, args[1:])
	if err != nil {
		return c, errors.New(strings.Replace(err.Error(), "usage: JUPITER ", "usage: JUPITER PLAN ", 1))
	}
	return c, nil
}

// StatusWithRebalance is c.Status with Rebalance filled in when c is a
// Rebalancer (and answers); /v1/status reports it as "rebalance", and
// JUPITER STATUS as rebalance_* lines while a rebalance runs.
func StatusWithRebalance(ctx context.Context, c Controller) Status {
	st := c.Status(ctx)
	if rb, ok := c.(Rebalancer); ok && st.Rebalance == nil {
		if rs, err := rb.RebalanceStatus(ctx); err == nil {
			st.Rebalance = &rs
		}
	}
	return st
}

// rebalanceOf is c's RebalanceStatus, or for a Controller that is not a
// Rebalancer the stage its Status reports.
func rebalanceOf(ctx context.Context, c Controller) (RebalanceStatus, error) {
	if rb, ok := c.(Rebalancer); ok {
		return rb.RebalanceStatus(ctx)
	}
	return RebalanceStatus{Stage: c.Status(ctx).Stage, ETASeconds: -1}, nil
}

// rebalanceLines are the rebalance_* lines JUPITER STATUS appends while a
// rebalance runs (Epoch != 0 or Stage != stable).
func rebalanceLines(st *RebalanceStatus) [][2]string {
	return [][2]string{
		{"rebalance_epoch", strconv.FormatUint(st.Epoch, 10)},
		{"rebalance_change", oneLine(st.Change)},
		{"rebalance_paused", boolDigit(st.Paused)},
		{"rebalance_moved_keys", strconv.FormatInt(st.MovedKeys, 10)},
		{"rebalance_total_keys", strconv.FormatInt(st.TotalKeys, 10)},
		{"rebalance_moved_bytes", strconv.FormatInt(st.MovedBytes, 10)},
		{"rebalance_keys_per_sec", formatFloat(st.KeysPerSec)},
		{"rebalance_eta_seconds", formatFloat(st.ETASeconds)},
		{"rebalance_errors", strconv.FormatInt(st.Errors, 10)},
		{"rebalance_last_error", oneLine(st.LastError)},
	}
}

// splitLines splits key:value lines (CRLF or LF); lines without a colon
// are skipped.
func splitLines(s string) [][2]string {
	var out [][2]string
	for _, l := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// oneLine keeps a value on its line (and a space-separated field in one
// field when it has no spaces to begin with).
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// formatFloat renders rates and durations with at most one decimal
// (integers without one); NaN and ±Inf become -1 (unknown).
func formatFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "-1"
	}
	return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64)
}
