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
		"REMOVE 10.0.0.1:6379", "WEIGHT 10.0.0.1:6379 2", "ADD nope", "ADD :0", "WEIGHT x y", "ADD a:1\r\nb 1"} {
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
