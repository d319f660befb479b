package proxy

import (
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// txOps is the alphabet of FuzzTxMatchesRedis: transaction commands, plain
// commands, commands refused when queued (arity, unknown), a runtime error
// inside EXEC (LPUSH on a string), and a write from a second client
// (the '*' entries), which trips WATCH.
var txOps = [][]string{
	{"MULTI"}, {"EXEC"}, {"DISCARD"}, {"WATCH", "k1"}, {"WATCH", "k1", "k2"}, {"UNWATCH"},
	{"SET", "k1", "a"}, {"INCR", "k2"}, {"GET", "k1"}, {"SET", "k1"}, {"LPUSH", "k1", "x"},
	{"PING"}, {"FOO", "bar"}, {"*", "SET", "k1", "z"}, {"*", "DEL", "k2"}, {"DEL", "k1"},
}

// FuzzTxMatchesRedis: any sequence of transaction and plain commands gets
// the same replies through a one-node jupiter as from redis-server itself
// (with one node, no placement error can differ).
func FuzzTxMatchesRedis(f *testing.F) {
	if testing.Short() {
		f.Skip("starts redis-server")
	}
	behind, direct := testenv.StartRedis(f), testenv.StartRedis(f)
	px := startProxy(f, []string{behind.Addr}, backend.Options{})
	for _, seed := range []string{
		"\x00\x06\x07\x01",         // MULTI SET INCR EXEC
		"\x03\x0d\x00\x06\x01",     // WATCH k1, other SET k1, MULTI SET EXEC → nil
		"\x03\x05\x0d\x00\x06\x01", // WATCH, UNWATCH, other write, MULTI SET EXEC → runs
		"\x00\x09\x06\x01",         // arity error → EXECABORT
		"\x00\x06\x0a\x08\x01",     // WRONGTYPE inside EXEC
		"\x00\x00\x03\x02\x02\x01", // nested MULTI, WATCH inside MULTI, DISCARD twice, EXEC
		"\x04\x00\x0b\x0c\x01",     // PING and an unknown command inside MULTI
		"\x04\x0e\x00\x07\x01",     // WATCH k1 k2, other DEL k2
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 40 {
			ops = ops[:40]
		}
		run := func(addr string) []string {
			for _, a := range []string{behind.Addr, direct.Addr} {
				testenv.Cli(t, a, "FLUSHALL")
			}
			c, other := dial(t, addr), dial(t, addr)
			defer c.nc.Close()
			defer other.nc.Close()
			var out []string
			for _, o := range ops {
				op := txOps[int(o)%len(txOps)]
				if op[0] == "*" {
					out = append(out, "other:"+other.do(op[1:]...))
					continue
				}
				out = append(out, c.do(op...))
			}
			return out
		}
		want, got := run(direct.Addr), run(px.addr)
		for i := range want {
			if got[i] != want[i] {
				var seq []string
				for _, o := range ops {
					seq = append(seq, strings.Join(txOps[int(o)%len(txOps)], " "))
				}
				t.Fatalf("ops %q: reply %d is %q through jupiter, %q from redis-server", seq, i, got[i], want[i])
			}
		}
	})
}
