package slowlog

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

func words(s string) [][]byte {
	var out [][]byte
	for _, w := range strings.Fields(s) {
		out = append(out, []byte(w))
	}
	return out
}

func TestArgs(t *testing.T) {
	long := strings.Repeat("v", 300)
	many := make([][]byte, 0, 40)
	many = append(many, []byte("RPUSH"), []byte("l"))
	for i := range 38 {
		many = append(many, []byte(strconv.Itoa(i)))
	}
	exact := many[:MaxArgs]
	for _, tc := range []struct {
		name string
		args [][]byte
		want []string
	}{
		{"plain", words("GET k"), []string{"GET", "k"}},
		{"long", [][]byte{[]byte("SET"), []byte("k"), []byte(long)},
			[]string{"SET", "k", long[:128] + "... (172 more bytes)"}},
		{"129 bytes", [][]byte{[]byte(strings.Repeat("a", 129))}, []string{strings.Repeat("a", 128) + "... (1 more bytes)"}},
		{"128 bytes", [][]byte{[]byte(strings.Repeat("a", 128))}, []string{strings.Repeat("a", 128)}},
		{"40 args", many, append(slices.Collect(func(yield func(string) bool) {
			for _, a := range many[:31] {
				yield(string(a))
			}
		}), "... (9 more arguments)")},
		{"32 args", exact, func() []string {
			var s []string
			for _, a := range exact {
				s = append(s, string(a))
			}
			return s
		}()},
		{"auth", words("AUTH secret"), []string{"AUTH", Redacted}},
		{"auth user", words("auth admin secret"), []string{"auth", Redacted, Redacted}},
		{"hello auth", words("HELLO 3 AUTH bob pw SETNAME app"), []string{"HELLO", "3", "AUTH", Redacted, Redacted, "SETNAME", "app"}},
		{"hello setname auth", words("hello 2 setname auth auth u p"), []string{"hello", "2", "setname", "auth", "auth", Redacted, Redacted}},
		{"hello malformed", words("HELLO AUTH u p"), []string{"HELLO", "AUTH", Redacted, Redacted}},
		{"migrate auth", words("MIGRATE h 1 k 0 10 COPY AUTH pw"), []string{"MIGRATE", "h", "1", "k", "0", "10", "COPY", "AUTH", Redacted}},
		{"migrate auth2", words("migrate h 1 \"\" 0 10 auth2 u pw keys a b"),
			[]string{"migrate", "h", "1", "\"\"", "0", "10", "auth2", Redacted, Redacted, "keys", "a", "b"}},
		{"migrate keys named auth", words("migrate h 1 \"\" 0 10 keys auth x"),
			[]string{"migrate", "h", "1", "\"\"", "0", "10", "keys", "auth", "x"}},
		{"config set", words("CONFIG SET maxmemory 1 requirepass pw MasterAuth pw2 masteruser u"),
			[]string{"CONFIG", "SET", "maxmemory", "1", "requirepass", Redacted, "MasterAuth", Redacted, "masteruser", Redacted}},
		{"config get", words("CONFIG GET requirepass"), []string{"CONFIG", "GET", "requirepass"}},
		{"acl setuser", words("ACL SETUSER bob on >pw"), []string{"ACL", "SETUSER", Redacted, Redacted, Redacted}},
		{"auth 40 args", append(words("AUTH"), many[1:]...),
			append(append([]string{"AUTH"}, slices.Repeat([]string{Redacted}, 30)...), "... (9 more arguments)")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Args(tc.args); !slices.Equal(got, tc.want) {
				t.Errorf("Args(%q)\n got %q\nwant %q", tc.args, got, tc.want)
			}
		})
	}
}

// TestArgsMatchRedis sends commands to a real redis-server that logs every
// command, and checks that Args keeps each the way the server's SLOWLOG
// does (truncation and redaction).
func TestArgsMatchRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	if err := c.ConfigSet(ctx, "slowlog-log-slower-than", "0").Err(); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 1000)
	var many []any
	many = append(many, "RPUSH", "list")
	for i := range 50 {
		many = append(many, strconv.Itoa(i))
	}
	cmds := [][]any{
		{"SET", "k", long},
		{"SET", strings.Repeat("k", 129), "v"},
		many,
		{"AUTH", "nosuchpassword"},
		{"AUTH", "default", "x"},
		{"HELLO", "2", "AUTH", "default", "pw", "SETNAME", "n"},
		{"MIGRATE", "127.0.0.1", "1", "nokey", "0", "10", "AUTH", "pw"},
		{"MIGRATE", "127.0.0.1", "1", "nokey", "0", "10", "AUTH2", "u", "pw"},
		{"CONFIG", "SET", "masterauth", "secret"},
		{"ACL", "SETUSER", "bob", "on", ">pw", "~*"},
	}
	for _, cmd := range cmds {
		_ = c.Do(ctx, cmd...).Err() // errors (WRONGPASS, NOKEY) are fine: the command is logged
		entries, err := c.SlowLogGet(ctx, 1).Result()
		if err != nil || len(entries) != 1 {
			t.Fatalf("SLOWLOG GET 1 after %v: %v %v", cmd[0], entries, err)
		}
		args := make([][]byte, len(cmd))
		for i, a := range cmd {
			args[i] = []byte(a.(string))
		}
		if got, want := Args(args), entries[0].Args; !slices.Equal(got, want) {
			t.Errorf("%v %v…:\n jupiter %q\n   redis %q", cmd[0], cmd[1], got, want)
		}
	}
}

func TestLog(t *testing.T) {
	l := New(10*time.Millisecond, 3)
	if l.SlowerThan() != 10*time.Millisecond || l.MaxLen() != 3 {
		t.Fatal("threshold or length not kept")
	}
	for i := range 5 {
		l.Add(Entry{DurationUS: int64(i)})
	}
	if l.Len() != 3 {
		t.Fatalf("Len = %d, want 3", l.Len())
	}
	ids := func(es []Entry) string {
		var s []string
		for _, e := range es {
			s = append(s, strconv.FormatInt(e.ID, 10)+":"+strconv.FormatInt(e.DurationUS, 10))
		}
		return strings.Join(s, " ")
	}
	if got := ids(l.Get(-1)); got != "4:4 3:3 2:2" {
		t.Errorf("Get(-1) = %s, want the newest three, newest first", got)
	}
	if got := ids(l.Get(2)); got != "4:4 3:3" {
		t.Errorf("Get(2) = %s", got)
	}
	if got := ids(l.Get(10)); got != "4:4 3:3 2:2" {
		t.Errorf("Get(10) = %s", got)
	}
	l.Reset()
	if l.Len() != 0 || len(l.Get(-1)) != 0 {
		t.Error("Reset kept entries")
	}
	l.Add(Entry{})
	if got := l.Get(1); len(got) != 1 || got[0].ID != 5 {
		t.Errorf("after Reset the ids go on (as Redis's): %+v", got)
	}
	// Partly filled.
	p := New(0, 10)
	p.Add(Entry{DurationUS: 1})
	p.Add(Entry{DurationUS: 2})
	if got := ids(p.Get(-1)); got != "1:2 0:1" {
		t.Errorf("partly filled Get = %s", got)
	}
	z := New(0, 0)
	z.Add(Entry{})
	if z.Len() != 0 {
		t.Error("max len 0 must keep nothing")
	}
	var nl *Log
	nl.Add(Entry{})
	nl.Reset()
	if nl.Len() != 0 || nl.Get(-1) != nil || nl.SlowerThan() >= 0 {
		t.Error("a nil Log must be empty and disabled")
	}
}
