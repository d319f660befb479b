// Package admin is jupiter's operator surface: the RESP `JUPITER …` command
// family and the HTTP status API. Both are thin front ends over a Controller,
// which is local in standalone mode and forwards to the cluster leader in
// cluster mode, so the two modes answer with exactly the same formats.
package admin

import (
	"context"
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

// Change is one requested ring change.
type Change struct {
	Op        string // "add", "remove" or "weight"
	Addr      string
	Weight    int
	RequestID string // makes a retried request idempotent (cluster mode)
}

// NodeStatus describes one ring node.
type NodeStatus struct {
	Addr   string `json:"addr"`
	Weight int    `json:"weight"`
	Slots  int    `json:"slots"`
	Up     bool   `json:"up"`
	// Capacity is what the capacity gatherer last saw of the node (nil
	// when it is off, --capacity-interval 0).
	Capacity *capacity.Figures `json:"capacity,omitempty"`
	// Health is the node's health: the fleet's verdict and this pod's own
	// view (nil when nothing reports health).
	Health *NodeHealth `json:"health,omitempty"`
}

// Status is what JUPITER STATUS and /v1/status report.
type Status struct {
	Mode        string       `json:"mode"` // "standalone" or "cluster"
	Self        string       `json:"self"`
	Leader      string       `json:"leader"`
	RingVersion uint64       `json:"ring_version"`
	Stage       string       `json:"stage"`
	Nodes       []NodeStatus `json:"nodes"`
	Members     []string     `json:"members"`
	// Extra lines, in order, appended after the contract fields.
	Extra [][2]string `json:"extra,omitempty"`
	// Rebalance is the rebalance progress when the Controller is a
	// Rebalancer. Controllers need not fill it: StatusWithRebalance does
	// (for /v1/status, and for JUPITER STATUS, which adds rebalance_*
	// lines while a rebalance runs).
	Rebalance *RebalanceStatus `json:"rebalance,omitempty"`
}

// Controller executes admin requests.
type Controller interface {
	Status(ctx context.Context) Status
	// Apply performs a validated change and returns the new ring version.
	// Invalid changes return an error whose text is shown to the operator
	// and leave the ring unchanged.
	Apply(ctx context.Context, c Change) (uint64, error)
}

// ErrInvalid marks a change refused because of its arguments or the ring's
// state (as opposed to an outage).
var ErrInvalid = errors.New("invalid change")

// Handler implements proxy.Admin over a Controller.
type Handler struct {
	C Controller
	// RequireAdmin makes ring changes need an admin-authorized context
	// (Authorize): set when an admin password is configured.
	RequireAdmin bool
	// Obs is what JUPITER SLOWLOG, HOTKEYS and BIGKEYS read.
	Obs Observers
}

type adminKey struct{}

// Authorize marks ctx as coming from a client authenticated as admin.
func Authorize(ctx context.Context) context.Context {
	return context.WithValue(ctx, adminKey{}, true)
}

// Authorized reports whether ctx was marked by Authorize.
func Authorized(ctx context.Context) bool {
	v, _ := ctx.Value(adminKey{}).(bool)
	return v
}

// errNoPerm is the reply to a ring change from a client that is not admin.
const errNoPerm = "NOPERM jupiter: ring changes need AUTH admin <admin-password>"

// errNoPermRebalance is the reply to a rebalance action from a client that
// is not admin.
const errNoPermRebalance = "NOPERM jupiter: rebalance actions need AUTH admin <admin-password>"

// Command answers `JUPITER <sub> …`; args[0] is "JUPITER".
func (h Handler) Command(ctx context.Context, args [][]byte) []byte {
	if len(args) < 2 {
		return redcon.AppendError(nil, "ERR wrong number of arguments for 'jupiter' command")
	}
	sub := strings.ToUpper(string(args[1]))
	rest := args[2:]
	switch sub {
	case "STATUS":
		return redcon.AppendBulkString(nil, FormatStatus(StatusWithRebalance(ctx, h.C)))
	case "NODES":
		st := h.C.Status(ctx)
		b := redcon.AppendArray(nil, len(st.Nodes))
		for _, n := range st.Nodes {
			b = redcon.AppendBulkString(b, FormatNode(n))
		}
		return b
	case "ADD", "REMOVE", "WEIGHT":
		if h.RequireAdmin && !Authorized(ctx) {
			return redcon.AppendError(nil, errNoPerm)
		}
		c, err := ParseChange(sub, rest)
		if err != nil {
			return redcon.AppendError(nil, "ERR "+err.Error())
		}
		if _, err := h.C.Apply(ctx, c); err != nil {
			return redcon.AppendError(nil, "ERR "+err.Error())
		}
		return redcon.AppendOK(nil)
	case "REBALANCE":
		return h.rebalance(ctx, rest)
	case "SLOWLOG":
		return h.Obs.slowlogCommand(rest)
	case "HOTKEYS":
		return h.Obs.hotkeysCommand(ctx, rest)
	case "BIGKEYS":
		return h.Obs.bigkeysCommand(rest)
	case "PLAN":
		c, err := ParsePlanArgs(rest)
		if err != nil {
			return redcon.AppendError(nil, "ERR "+err.Error())
		}
		rb, ok := h.C.(Rebalancer)
		if !ok {
			return redcon.AppendError(nil, "ERR jupiter: PLAN is "+ErrUnsupported.Error())
		}
		p, err := rb.Plan(ctx, c)
		if err != nil {
			return redcon.AppendError(nil, "ERR "+err.Error())
		}
		return redcon.AppendBulkString(nil, FormatPlan(p))
	case "HELP":
		lines := []string{
			"JUPITER STATUS                  - this pod's view: self, leader, ring_version, stage, nodes…",
			"JUPITER NODES                   - one line per ring node: addr weight slots up, then memory, keys, hits, ops/s… (key=value)",
			"JUPITER ADD <host:port> [weight] - add a Redis node to the ring",
			"JUPITER REMOVE <host:port>      - remove a node from the ring",
			"JUPITER WEIGHT <host:port> <w>  - change a node's weight (slot share)",
			"JUPITER REBALANCE [STATUS]      - rebalance progress: stage, epoch, moved/total keys, rate, ETA, sources",
			"JUPITER REBALANCE ABORT|PAUSE|RESUME - control the running rebalance",
			"JUPITER PLAN ADD <host:port> [weight] | REMOVE <host:port> | WEIGHT <host:port> <w> - dry run: slots/keys that would move (changes nothing)",
			"JUPITER SLOWLOG [GET] [n|-1] | LEN | RESET - this pod's slow log: one line per command, with node wait and proxy time",
			"JUPITER SLOWLOG NODES [GET [n]] | LEN | RESET - the nodes' own slow logs, merged",
			"JUPITER HOTKEYS [FLEET|POD] [COUNT|BYTES] [n] | RESET - hottest keys by commands or bytes (sampled, estimated): the fleet's, merged through the leader (default), or this pod's; RESET: this pod's",
			"JUPITER BIGKEYS [n] | RESET     - this pod's biggest requests/replies by key",
		}
		b := redcon.AppendArray(nil, len(lines))
		for _, l := range lines {
			b = redcon.AppendString(b, l)
		}
		return b
	}
	return redcon.AppendError(nil, "ERR unknown JUPITER subcommand '"+resp.Printable(args[1])+"'. Try JUPITER HELP.")
}

// rebalance answers JUPITER REBALANCE [STATUS|ABORT|PAUSE|RESUME].
func (h Handler) rebalance(ctx context.Context, args [][]byte) []byte {
	action, err := ParseRebalanceAction(args)
	if err != nil {
		return redcon.AppendError(nil, "ERR "+err.Error())
	}
	if action == "status" {
		st, err := rebalanceOf(ctx, h.C)
		if err != nil {
			return redcon.AppendError(nil, "ERR "+err.Error())
		}
		return redcon.AppendBulkString(nil, FormatRebalance(st))
	}
	if h.RequireAdmin && !Authorized(ctx) {
		return redcon.AppendError(nil, errNoPermRebalance)
	}
	rb, ok := h.C.(Rebalancer)
	if !ok {
		return redcon.AppendError(nil, "ERR jupiter: rebalance "+action+" is "+ErrUnsupported.Error())
	}
	if err := rb.RebalanceAction(ctx, action); err != nil {
		return redcon.AppendError(nil, "ERR "+err.Error())
	}
	return redcon.AppendOK(nil)
}

// ParseChange validates the arguments of ADD/REMOVE/WEIGHT (sub upper case).
func ParseChange(sub string, args [][]byte) (Change, error) {
	var c Change
	switch sub {
	case "ADD":
		if len(args) < 1 || len(args) > 2 {
			return c, errors.New("usage: JUPITER ADD <host:port> [weight]")
		}
		c = Change{Op: "add", Addr: string(args[0]), Weight: 1}
		if len(args) == 2 {
			w, err := parseWeight(args[1])
			if err != nil {
				return c, err
			}
			c.Weight = w
		}
	case "REMOVE":
		if len(args) != 1 {
			return c, errors.New("usage: JUPITER REMOVE <host:port>")
		}
		c = Change{Op: "remove", Addr: string(args[0])}
	case "WEIGHT":
		if len(args) != 2 {
			return c, errors.New("usage: JUPITER WEIGHT <host:port> <weight>")
		}
		w, err := parseWeight(args[1])
		if err != nil {
			return c, err
		}
		c = Change{Op: "weight", Addr: string(args[0]), Weight: w}
	default:
		return c, errors.New("unknown change " + sub)
	}
	if err := CheckAddr(c.Addr); err != nil {
		return c, err
	}
	return c, nil
}

func parseWeight(b []byte) (int, error) {
	w, err := strconv.Atoi(string(b))
	if err != nil || w < 1 || w > 10000 {
		return 0, errors.New("weight must be an integer from 1 to 10000")
	}
	return w, nil
}

// CheckAddr accepts host:port with a numeric port 1..65535.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, " \t\r\n,") {
		return errors.New("'" + resp.Printable([]byte(addr)) + "' is not a host:port address")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return errors.New("'" + resp.Printable([]byte(addr)) + "' has an invalid port")
	}
	return nil
}

// FormatStatus renders Status as the key:value lines of JUPITER STATUS.
func FormatStatus(st Status) string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ":" + v + "\r\n") }
	addrs := make([]string, len(st.Nodes))
	up := 0
	for i, n := range st.Nodes {
		addrs[i] = n.Addr
		if n.Up {
			up++
		}
	}
	line("mode", st.Mode)
	line("self", st.Self)
	line("leader", st.Leader)
	line("ring_version", strconv.FormatUint(st.RingVersion, 10))
	line("stage", st.Stage)
	line("nodes", strings.Join(addrs, ","))
	line("nodes_up", strconv.Itoa(up))
	members := append([]string(nil), st.Members...)
	sort.Strings(members)
	line("members", strings.Join(members, ","))
	have := map[string]bool{}
	for _, kv := range st.Extra {
		line(kv[0], kv[1])
		have[kv[0]] = true
	}
	if rb := st.Rebalance; rb != nil && (rb.Epoch != 0 || rb.Stage != StageStable) {
		for _, kv := range rebalanceLines(rb) {
			if !have[kv[0]] {
				line(kv[0], kv[1])
			}
		}
	}
	return b.String()
}

// FormatNode renders one JUPITER NODES line: "addr weight=W slots=S
// up=0|1", then, when the capacity gatherer runs, the node's figures as
// key=value fields (capacityFields; -1 and "unknown" are unknown), then its
// health fields (healthFields) when health is reported.
func FormatNode(n NodeStatus) string {
	up := "0"
	if n.Up {
		up = "1"
	}
	var b strings.Builder
	b.WriteString(n.Addr + " weight=" + strconv.Itoa(n.Weight) + " slots=" + strconv.Itoa(n.Slots) + " up=" + up)
	if n.Capacity != nil {
		for _, f := range capacityFields {
			b.WriteString(" " + f.key + "=" + f.format(n.Capacity))
		}
	}
	if n.Health != nil {
		b.WriteString(healthFields(n.Health))
	}
	return b.String()
}
