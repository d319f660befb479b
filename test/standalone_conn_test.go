package test

import (
	"strings"
	"testing"
)

// TestStandaloneConnectionCommands checks the connection-scoped commands jupiter
// answers itself, byte-level on a raw connection, and that the connection stays
// usable after each (except QUIT).
func TestStandaloneConnectionCommands(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	addr := e.c.Jupiter.Addr

	t.Run("Table", func(t *testing.T) {
		c := dialRaw(t, addr)
		for _, tc := range []struct {
			args []string
			want string // reply.String(); a trailing "*" means prefix match
		}{
			{[]string{"PING"}, "+PONG"},
			{[]string{"ping", "hello world"}, `"hello world"`},
			{[]string{"ECHO", "a\r\nb"}, `"a\r\nb"`},
			{[]string{"HELLO", "4"}, "-NOPROTO unsupported protocol version"},
			{[]string{"HELLO", "x"}, "-ERR Protocol version is not an integer or out of range"},
			{[]string{"HELLO", "2", "BOGUS"}, "-ERR Syntax error in HELLO option 'BOGUS'"},
			{[]string{"PING"}, "+PONG"}, // still RESP2, still open after HELLO
			{[]string{"AUTH", "secret"}, "+OK"},
			{[]string{"AUTH", "default", "secret"}, "+OK"},
			{[]string{"SELECT", "0"}, "+OK"},
			{[]string{"SELECT", "1"}, "-ERR *"},
			{[]string{"SELECT", "15"}, "-ERR *"},
			{[]string{"CLIENT", "GETNAME"}, "(nil)"},
			{[]string{"CLIENT", "SETNAME", "conn-a"}, "+OK"},
			{[]string{"CLIENT", "GETNAME"}, `"conn-a"`},
			{[]string{"client", "setname", "bad name"}, "-ERR *"},
			{[]string{"CLIENT", "GETNAME"}, `"conn-a"`},
			{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis(x)"}, "+OK"},
			{[]string{"CLIENT", "SETINFO", "LIB-VER", "9.23.0"}, "+OK"},
			{[]string{"SET", "conn:k", "v"}, "+OK"},
			{[]string{"GET", "conn:k"}, `"v"`},
		} {
			got := c.do(tc.args...)
			s := got.String()
			if p, ok := strings.CutSuffix(tc.want, "*"); ok {
				if !strings.HasPrefix(s, p) {
					t.Errorf("%q = %s, want %s…", tc.args, s, p)
				}
			} else if s != tc.want {
				t.Errorf("%q = %s, want %s", tc.args, s, tc.want)
			}
		}
	})

	t.Run("ClientID", func(t *testing.T) {
		a, b := dialRaw(t, addr), dialRaw(t, addr)
		ra, rb := a.do("CLIENT", "ID"), b.do("CLIENT", "ID")
		if ra.kind != ':' || rb.kind != ':' || ra.n == rb.n || ra.n <= 0 {
			t.Errorf("CLIENT ID = %v and %v, want two different positive integers", ra, rb)
		}
		if again := a.do("CLIENT", "ID"); again.n != ra.n {
			t.Errorf("CLIENT ID changed on one connection: %v then %v", ra, again)
		}
		// Names are per connection.
		a.do("CLIENT", "SETNAME", "A")
		b.do("CLIENT", "SETNAME", "B")
		if r := a.do("CLIENT", "GETNAME"); r.str != "A" {
			t.Errorf("connection a's name = %v", r)
		}
		if r := b.do("CLIENT", "GETNAME"); r.str != "B" {
			t.Errorf("connection b's name = %v", r)
		}
	})

	t.Run("QUIT", func(t *testing.T) {
		c := dialRaw(t, addr)
		if r := c.do("QUIT"); r.String() != "+OK" {
			t.Errorf("QUIT = %v, want +OK", r)
		}
		c.expectClosed()
		// Commands pipelined after QUIT are not executed.
		c = dialRaw(t, addr)
		c.send(encode("SET", "conn:quit", "before") + encode("QUIT") + encode("SET", "conn:quit", "after"))
		if r := c.read(); r.String() != "+OK" {
			t.Errorf("SET before QUIT = %v", r)
		}
		if r := c.read(); r.String() != "+OK" {
			t.Errorf("QUIT = %v", r)
		}
		c.expectClosed()
		if v, _ := e.j.Get(ctxT(t), "conn:quit").Result(); v != "before" {
			t.Errorf("conn:quit = %q: a command after QUIT was executed", v)
		}
	})

	t.Run("Inline", func(t *testing.T) {
		// Inline commands (telnet style), quoted arguments included.
		c := dialRaw(t, addr)
		c.send("*0\r\n*-1\r\n\r\nPING\nSET conn:inl hello\r\nGET conn:inl\r\nSET \"conn:inl q\" \"a b\\r\\n\"\r\nGET \"conn:inl q\"\r\nECHO 'x y'\r\n")
		for _, want := range []string{"+PONG", "+OK", `"hello"`, "+OK", `"a b\r\n"`, `"x y"`} {
			if r := c.read(); r.String() != want {
				t.Errorf("inline reply %v, want %s", r, want)
			}
		}
	})

	t.Run("ArityAndUnknown", func(t *testing.T) {
		c := dialRaw(t, addr)
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"GET"}, "ERR wrong number of arguments for 'get' command"},
			{[]string{"GET", "a", "b"}, "ERR wrong number of arguments for 'get' command"},
			{[]string{"SET", "k"}, "ERR wrong number of arguments for 'set' command"},
			{[]string{"MSET", "a", "1", "b"}, "ERR wrong number of arguments for 'mset' command"},
			{[]string{"HSET", "h", "f"}, "ERR wrong number of arguments"},
			{[]string{"MGET"}, "ERR wrong number of arguments"},
			{[]string{"DEL"}, "ERR wrong number of arguments"},
			{[]string{"PING", "a", "b"}, "ERR wrong number of arguments"},
			{[]string{"ECHO"}, "ERR wrong number of arguments"},
			{[]string{"SELECT"}, "ERR wrong number of arguments"},
			{[]string{"NOSUCHCOMMAND", "x", "y"}, "ERR unknown command"},
			{[]string{"SETT", "k", "v"}, "ERR unknown command"},
			{[]string{"CLIENT", "NOSUCHSUB"}, "ERR unknown subcommand"},
			{[]string{"OBJECT", "NOSUCHSUB", "k"}, "ERR"},
		} {
			wantErrPrefix(t, strings.Join(tc.args, " "), c.do(tc.args...), tc.want)
		}
		if r := c.do("PING"); r.String() != "+PONG" {
			t.Errorf("PING after errors = %v", r)
		}
	})
}

// TestStandaloneRefusedCommands checks that commands that cannot work through
// a sharding proxy get an immediate error naming them (a 2 s deadline turns a
// hang into a failure), and that the connection keeps working afterwards.
func TestStandaloneRefusedCommands(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := ctxT(t)
	e.j.RPush(ctx, "ref:list", "x") // MOVE must not take it anywhere
	c := dialRaw(t, e.c.Jupiter.Addr)
	for _, tc := range []struct {
		args []string
		name string // what the error must mention
	}{
		{[]string{"MONITOR"}, "MONITOR"},
		{[]string{"CLUSTER", "INFO"}, "CLUSTER"},
		{[]string{"CLUSTER", "SLOTS"}, "CLUSTER"},
		{[]string{"SHUTDOWN"}, "SHUTDOWN"},
		{[]string{"SHUTDOWN", "NOSAVE"}, "SHUTDOWN"},
		{[]string{"DEBUG", "SLEEP", "0"}, "DEBUG"},
		{[]string{"SYNC"}, "SYNC"},
		{[]string{"PSYNC", "?", "-1"}, "PSYNC"},
		{[]string{"REPLICAOF", "NO", "ONE"}, "REPLICAOF"},
		{[]string{"SLAVEOF", "127.0.0.1", "1"}, "SLAVEOF"},
		{[]string{"MOVE", "ref:list", "1"}, "MOVE"},
		{[]string{"SWAPDB", "0", "1"}, "SWAPDB"},
		{[]string{"WAIT", "1", "0"}, "WAIT"},
		{[]string{"MIGRATE", "127.0.0.1", "1", "ref:list", "0", "100"}, "MIGRATE"},
	} {
		r := c.do(tc.args...)
		if r.kind != '-' || !strings.HasPrefix(r.str, "ERR") || !strings.Contains(strings.ToUpper(r.str), tc.name) {
			t.Errorf("%q = %v, want -ERR naming %s", tc.args, r, tc.name)
		}
		if p := c.do("PING"); p.String() != "+PONG" {
			t.Fatalf("PING after %q = %v: connection not usable", tc.args, p)
		}
	}
	// Nothing refused reached a node: the list is intact, every node still
	// answers and is still a master.
	if n, err := e.j.LLen(ctx, "ref:list").Result(); err != nil || n != 1 {
		t.Errorf("LLEN ref:list = %d, %v: a refused MOVE changed it", n, err)
	}
	for i, nc := range e.nodes {
		info, err := nc.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:master") {
			t.Errorf("node %d: INFO replication = %q, %v", i, info, err)
		}
	}
}
