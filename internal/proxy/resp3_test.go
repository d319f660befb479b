package proxy

import (
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// resp3Ops is the alphabet of FuzzRESP3MatchesRedis: commands whose RESP3
// replies use every type Redis sends (maps, sets, doubles, nulls, verbatim
// strings, big arrays), those jupiter builds itself (HELLO, CLIENT GETNAME,
// CONFIG GET), merged ones and errors.
var resp3Ops = [][]string{
	{"SET", "s", "v"}, {"GET", "s"}, {"GET", "none"}, {"MGET", "s", "none", "h"},
	{"HSET", "h", "f", "1", "g", "2"}, {"HGETALL", "h"}, {"HGETALL", "none"}, {"HRANDFIELD", "none"},
	{"SADD", "set", "a"}, {"SMEMBERS", "set"}, {"SISMEMBER", "set", "a"}, {"SMISMEMBER", "set", "a", "z"},
	{"ZADD", "z", "1.5", "m", "2", "n"}, {"ZSCORE", "z", "m"}, {"ZSCORE", "z", "none"}, {"ZRANGE", "z", "0", "-1", "WITHSCORES"},
	{"ZINCRBY", "z", "0.25", "m"}, {"ZPOPMIN", "z"}, {"ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"}, {"ZMSCORE", "z", "m", "x"},
	{"INCRBYFLOAT", "f", "1.5"}, {"XADD", "x", "1-1", "a", "b"}, {"XRANGE", "x", "-", "+"}, {"XINFO", "STREAM", "x"},
	{"LPUSH", "l", "a", "b"}, {"LPOS", "l", "zz"}, {"LRANGE", "l", "0", "-1"}, {"TYPE", "h"},
	{"DEL", "s", "none"}, {"EXISTS", "s", "h"}, {"DBSIZE"}, {"KEYS", "h*"},
	{"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "me"}, {"CONFIG", "GET", "save"}, {"PING"},
	{"ECHO", "e"}, {"INCR", "h"}, {"BLPOP", "none", "0.01"}, {"OBJECT", "ENCODING", "h"},
	{"SETEX", "e", "100", "v"}, {"GETEX", "e", "PERSIST"}, {"HELLO", "2"}, {"HELLO", "3"}, {"HGET", "h", "none"}, {"SRANDMEMBER", "none"},
	{"GEOADD", "g", "13.361389", "38.115556", "p"}, {"GEOPOS", "g", "p", "none"}, {"GEODIST", "g", "p", "p"},
	{"EXPIRE", "h", "100"}, {"TTL", "h"}, {"PERSIST", "h"}, {"SCRIPT", "EXISTS", "abc"},
}

// FuzzRESP3MatchesRedis: after HELLO 3, any sequence of these commands gets
// byte-identical replies through a one-node jupiter and from redis-server.
func FuzzRESP3MatchesRedis(f *testing.F) {
	if testing.Short() {
		f.Skip("starts redis-server")
	}
	behind, direct := testenv.StartRedis(f), testenv.StartRedis(f)
	px := startProxy(f, []string{behind.Addr}, backend.Options{})
	var all []byte
	for i := range resp3Ops {
		all = append(all, byte(i))
	}
	f.Add(all)
	f.Add([]byte{4, 5, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19})
	f.Add([]byte{40, 0, 5, 41, 42, 1, 43, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 60 {
			ops = ops[:60]
		}
		run := func(addr string) []string {
			testenv.Cli(t, behind.Addr, "FLUSHALL")
			testenv.Cli(t, direct.Addr, "FLUSHALL")
			c := dial(t, addr)
			defer c.nc.Close()
			hello := c.do("HELLO", "3")
			out := []string{hello[:strings.Index(hello, "id\r\n")]} // ids differ
			for _, o := range ops {
				op := resp3Ops[int(o)%len(resp3Ops)]
				r := c.do(op...)
				if op[0] == "HELLO" {
					r = r[:strings.Index(r, "id\r\n")]
				}
				out = append(out, r)
			}
			return out
		}
		want, got := run(direct.Addr), run(px.addr)
		for i := range want {
			if got[i] != want[i] {
				op := "HELLO 3"
				if i > 0 {
					op = strings.Join(resp3Ops[int(ops[i-1])%len(resp3Ops)], " ")
				}
				t.Fatalf("reply %d (%s): jupiter %q, redis-server %q", i, op, got[i], want[i])
			}
		}
	})
}
