package proxy

import (
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// subOps is the alphabet of FuzzPubSubMatchesRedis. "*" entries are sent by
// a second client (a publisher): its PUBLISH reply says how many messages
// the subscriber must then read.
var subOps = [][]string{
	{"SUBSCRIBE", "a"}, {"SUBSCRIBE", "a", "b"}, {"UNSUBSCRIBE"}, {"UNSUBSCRIBE", "a"},
	{"UNSUBSCRIBE", "zz"}, {"PSUBSCRIBE", "a*"}, {"PSUBSCRIBE", "b*", "c*"}, {"PUNSUBSCRIBE"},
	{"PUNSUBSCRIBE", "a*"}, {"PING"}, {"PING", "hi"}, {"GET", "k"}, {"SSUBSCRIBE", "s"},
	{"SUNSUBSCRIBE"}, {"*", "PUBLISH", "a", "m"}, {"*", "PUBLISH", "b", "n"}, {"*", "PUBLISH", "cc", "o"},
	{"*", "SPUBLISH", "s", "p"}, {"SET", "k", "v"},
}

// FuzzPubSubMatchesRedis: any sequence of (un)subscribe commands, commands
// in subscribed state and publications gets the same replies and messages
// through a one-node jupiter as from redis-server itself.
func FuzzPubSubMatchesRedis(f *testing.F) {
	if testing.Short() {
		f.Skip("starts redis-server")
	}
	behind, direct := testenv.StartRedis(f), testenv.StartRedis(f)
	px := startProxy(f, []string{behind.Addr}, backend.Options{})
	for _, seed := range []string{
		"\x01\x0e\x0f\x02",                 // SUBSCRIBE a b, publish a, b, UNSUBSCRIBE
		"\x00\x05\x0e\x09\x0b\x03\x07\x12", // a + a*, publish a (2 messages), PING, GET refused, unsubscribe all, SET
		"\x02\x07\x04\x0a",                 // unsubscribe with nothing subscribed
		"\x06\x10\x08\x07",                 // patterns b* c*, publish cc
		"\x0c\x11\x0d\x0b",                 // shard channel
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 30 {
			ops = ops[:30]
		}
		seq := func() []string {
			var out []string
			for _, o := range ops {
				out = append(out, strings.Join(subOps[int(o)%len(subOps)], " "))
			}
			return out
		}
		run := func(addr string) []string {
			c, pub := dial(t, addr), dial(t, addr)
			// Bounded below the fuzzer's 10 s hang detector, so a missing
			// reply is reported with the sequence that lost it.
			replies := func(n int) []string {
				var out []string
				for range n {
					r, err := c.next(3 * time.Second)
					if err != nil {
						t.Fatalf("ops %q through %s: reply missing: %v (got so far %q)", seq(), addr, err, out)
					}
					out = append(out, r)
				}
				return out
			}
			defer c.nc.Close()
			defer pub.nc.Close()
			// The subscriptions per kind, to know how many replies an
			// UNSUBSCRIBE without arguments brings (their order follows
			// Redis's dict: compared as a set).
			subs := map[string]map[string]bool{"UNSUBSCRIBE": {}, "PUNSUBSCRIBE": {}, "SUNSUBSCRIBE": {}}
			kindOf := map[string]string{"SUBSCRIBE": "UNSUBSCRIBE", "PSUBSCRIBE": "PUNSUBSCRIBE", "SSUBSCRIBE": "SUNSUBSCRIBE"}
			var out []string
			for _, o := range ops {
				op := subOps[int(o)%len(subOps)]
				if op[0] == "*" {
					r := pub.do(op[1:]...)
					out = append(out, "pub:"+r)
					if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(r, ":"))); err == nil {
						out = append(out, replies(n)...)
					}
					continue
				}
				c.send(cmd(op...))
				if k, ok := kindOf[op[0]]; ok {
					for _, n := range op[1:] {
						subs[k][n] = true
					}
					out = append(out, replies(len(op)-1)...)
					continue
				}
				if set, ok := subs[op[0]]; ok {
					if len(op) > 1 {
						for _, n := range op[1:] {
							delete(set, n)
						}
						out = append(out, replies(len(op)-1)...)
						continue
					}
					rs := replies(max(1, len(set)))
					last := rs[len(rs)-1]
					for i, r := range rs { // names as a set, counts by position
						rs[i] = r[:strings.LastIndexByte(r[:len(r)-2], ':')]
					}
					sort.Strings(rs)
					out = append(out, "all:"+strings.Join(rs, ",")+" last count "+last[strings.LastIndexByte(last[:len(last)-2], ':'):])
					clear(set)
					continue
				}
				out = append(out, replies(1)...)
			}
			return out
		}
		// The previous input's subscriber leaves asynchronously (its
		// session, then the node, notice the closed connection): wait until
		// no node counts it, or its messages would be counted here.
		for _, a := range []string{behind.Addr, direct.Addr} {
			c := dial(t, a)
			waitFor(t, "no subscriber left on "+a, func() bool {
				return c.do("PUBSUB", "NUMPAT") == ":0\r\n" &&
					c.do("PUBSUB", "NUMSUB", "a", "b", "cc") == "*6\r\n$1\r\na\r\n:0\r\n$1\r\nb\r\n:0\r\n$2\r\ncc\r\n:0\r\n" &&
					c.do("PUBSUB", "SHARDNUMSUB", "s") == "*2\r\n$1\r\ns\r\n:0\r\n"
			})
			c.nc.Close()
		}
		want, got := run(direct.Addr), run(px.addr)
		if strings.Join(want, "|") != strings.Join(got, "|") {
			t.Fatalf("ops %q:\njupiter: %q\nredis:   %q", seq(), got, want)
		}
	})
}
