package admin

import (
	"context"
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// FuzzAdminCommand: any JUPITER arguments get one well-formed RESP reply
// (never a panic, never a reply that would desync the client), and a change
// that was refused leaves the ring as it was.
func FuzzAdminCommand(f *testing.F) {
	for _, s := range []string{"STATUS", "NODES", "HELP", "ADD 10.0.0.9:6379", "ADD 10.0.0.9:6379 3",
		"REMOVE 10.0.0.1:6379", "WEIGHT 10.0.0.1:6379 2", "ADD nope", "ADD :0", "WEIGHT x y", "ADD a:1\r\nb 1",
		"REBALANCE", "REBALANCE STATUS", "REBALANCE ABORT", "REBALANCE pause", "REBALANCE RESUME x", "REBALANCE \r\n",
		"PLAN ADD 10.0.0.9:6379", "PLAN ADD 10.0.0.9:6379 7", "PLAN REMOVE 10.0.0.1:6379", "PLAN WEIGHT 10.0.0.2:6379 3",
		"PLAN REMOVE 10.0.0.9:6379", "PLAN", "PLAN ADD", "PLAN MOVE a:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, _ := ring.New(1, []ring.Node{{Addr: "10.0.0.1:6379"}, {Addr: "10.0.0.2:6379"}})
		rt := &fakeRouter{r: r}
		h := Handler{C: &Local{Router: rt, Self: "me"}}
		args := [][]byte{[]byte("JUPITER")}
		for _, a := range strings.Split(line, " ") {
			args = append(args, []byte(a))
		}
		out := h.Command(context.Background(), args)
		n, err := resp.ReplyLen(out)
		if err != nil || n != len(out) {
			t.Fatalf("JUPITER %q: reply %q is not exactly one RESP reply (%d of %d, %v)", line, out, n, len(out), err)
		}
		if resp.IsError(out) && rt.r.Version() != 1 {
			t.Fatalf("JUPITER %q was refused (%q) but the ring changed", line, out)
		}
	})
}

// FuzzRebalancePlanArgs: the REBALANCE and PLAN argument parsers accept
// exactly the documented forms, and whatever they accept is a valid action
// or change.
func FuzzRebalancePlanArgs(f *testing.F) {
	for _, s := range []string{"", "STATUS", "abort", "PAUSE", "Resume", "ABORT now", "ADD 10.0.0.9:6379", "ADD 10.0.0.9:6379 2",
		"REMOVE 10.0.0.1:6379", "WEIGHT 10.0.0.1:6379 3", "WEIGHT 10.0.0.1:6379", "ADD [::1]:6379", "ADD a:99999", "REMOVE a:1 b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var args [][]byte
		if line != "" {
			for _, a := range strings.Split(line, " ") {
				args = append(args, []byte(a))
			}
		}
		if a, err := ParseRebalanceAction(args); err == nil {
			switch a {
			case "status", ActionAbort, ActionPause, ActionResume:
			default:
				t.Fatalf("REBALANCE %q parsed to action %q", line, a)
			}
			if len(args) > 1 {
				t.Fatalf("REBALANCE %q: extra arguments accepted", line)
			}
		} else if !strings.HasPrefix(err.Error(), "usage: JUPITER REBALANCE") {
			t.Fatalf("REBALANCE %q: error %q", line, err)
		}
		c, err := ParsePlanArgs(args)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("PLAN %q: error %q spans lines", line, err)
			}
			return
		}
		if CheckAddr(c.Addr) != nil || (c.Op != "add" && c.Op != "remove" && c.Op != "weight") ||
			(c.Op != "remove" && (c.Weight < 1 || c.Weight > 10000)) || len(args) < 2 || len(args) > 3 {
			t.Fatalf("PLAN %q parsed to an invalid change %+v", line, c)
		}
	})
}
