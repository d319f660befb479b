package resp

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// mb encodes args as a multibulk command (test shorthand).
func mb(args ...string) string {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return string(AppendCommand(nil, bs...))
}

func strs(args [][]byte) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

func eqArgs(a [][]byte, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if string(a[i]) != b[i] {
			return false
		}
	}
	return true
}

func TestParseCommandTable(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		n      int // -1: protocol error expected, 0: the whole input
		args   []string
		inline bool
	}{
		{"ping", "*1\r\n$4\r\nPING\r\n", 14, []string{"PING"}, false},
		{"set", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", 0, []string{"SET", "k", "hello"}, false},
		{"empty arg", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", 20, []string{"ECHO", ""}, false},
		{"binary arg", "*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\x00\xff\r\n", 24, []string{"ECHO", "\r\n\x00\xff"}, false},
		{"trailing bytes ignored", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI", 14, []string{"PING"}, false},
		{"star zero", "*0\r\n", 4, nil, false},
		{"star minus one", "*-1\r\n", 5, nil, false},
		{"ten args", mb("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e"), len(mb("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e")),
			[]string{"MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e"}, false},
		{"inline ping crlf", "PING\r\n", 6, []string{"PING"}, true},
		{"inline ping lf", "PING\n", 5, []string{"PING"}, true},
		{"inline empty line", "\r\n", 2, nil, true},
		{"inline only lf", "\n", 1, nil, true},
		{"inline spaces", "  SET   k \t v  \r\n", 17, []string{"SET", "k", "v"}, true},
		{"inline dquote", "SET k \"hello world\"\r\n", 21, []string{"SET", "k", "hello world"}, true},
		{"inline dquote escapes", `SET k "a\nb\r\t\b\a\\\"\x41\x7a"` + "\r\n", 34, []string{"SET", "k", "a\nb\r\t\b\a\\\"Az"}, true},
		{"inline squote", `SET k 'it\'s "x"'` + "\r\n", 19, []string{"SET", "k", `it's "x"`}, true},
		{"inline empty quotes", `SET k ""` + "\r\n", 10, []string{"SET", "k", ""}, true},
		{"inline unbalanced dq", "SET k \"abc\r\n", -1, nil, true},
		{"inline unbalanced sq", "SET k 'abc\r\n", -1, nil, true},
		{"inline quote then char", "SET k \"abc\"d\r\n", -1, nil, true},

		{"bad count", "*x\r\n", -1, nil, false},
		{"empty count", "*\r\n", -1, nil, false},
		{"count CR without LF", "*1\rx", -1, nil, false},
		{"count LF only", "*1\n", -1, nil, false},
		{"expected dollar", "*1\r\n:4\r\n", -1, nil, false},
		{"bulk minus one", "*1\r\n$-1\r\n", -1, nil, false},
		{"bulk minus two", "*1\r\n$-2\r\n", -1, nil, false},
		{"bulk bad digits", "*1\r\n$4x\r\n", -1, nil, false},
		{"bulk empty len", "*1\r\n$\r\n", -1, nil, false},
		{"bulk not crlf terminated", "*1\r\n$4\r\nPINGxx", -1, nil, false},
		{"bulk too long for header", "*1\r\n$3\r\nPING\r\n", -1, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, args, inline, need, err := ParseCommand([]byte(tt.in), nil, DefaultLimits)
			if tt.n < 0 {
				if err == nil {
					t.Fatalf("ParseCommand(%q) = n %d args %q, want a protocol error", tt.in, n, strs(args))
				}
				if !IsProtocolError(err) || !strings.HasPrefix(err.Error(), "ERR Protocol error") {
					t.Fatalf("error %q is not a protocol error line", err)
				}
				if n != 0 {
					t.Fatalf("n = %d with an error", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.in, err)
			}
			if tt.n == 0 {
				tt.n = len(tt.in)
			}
			if n != tt.n || !eqArgs(args, tt.args) || inline != tt.inline || need != 0 {
				t.Fatalf("ParseCommand(%q) = n %d args %q inline %v need %d, want n %d args %q inline %v",
					tt.in, n, strs(args), inline, need, tt.n, tt.args, tt.inline)
			}
		})
	}
}

// TestParseCommandAliasesInput: multibulk arguments point into the input
// with their capacity capped, so appending to one cannot overwrite the next.
func TestParseCommandAliasesInput(t *testing.T) {
	in := []byte(mb("SET", "key", "value"))
	_, args, _, _, err := ParseCommand(in, make([][]byte, 0, 8), DefaultLimits)
	if err != nil || len(args) != 3 {
		t.Fatal(err, args)
	}
	for _, a := range args {
		if cap(a) != len(a) {
			t.Fatalf("arg %q has cap %d > len", a, cap(a))
		}
	}
	args[1][0] = 'K'
	if !bytes.Contains(in, []byte("Key")) {
		t.Fatal("multibulk argument does not alias the input buffer")
	}
}

// pipeline is several commands of every shape, back to back.
var pipeline = []string{
	mb("PING"),
	"PING\r\n",
	mb("SET", "k", strings.Repeat("v", 64)),
	"SET k \"a b\" 'c d'\r\n",
	mb("MGET", "a", "b", "c"),
	"*0\r\n",
	"\r\n",
	mb("ECHO", ""),
	mb("ECHO", strings.Repeat("x", 300)),
	"ECHO \"\\x41\\n\"\n",
	mb("DEL", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11"),
}

// TestParseCommandEverySplit truncates a pipelined buffer at every byte
// offset: complete commands before the cut parse exactly as from the whole
// buffer, and the one the cut falls in is incomplete (n 0, no error), with
// a need hint that is a lower bound of its real size and asks for more than
// is there.
func TestParseCommandEverySplit(t *testing.T) {
	whole := strings.Join(pipeline, "")
	ends := make([]int, 0, len(pipeline))
	off := 0
	for _, c := range pipeline {
		off += len(c)
		ends = append(ends, off)
	}
	var args [][]byte
	sawNeed := 0
	for cut := 0; cut <= len(whole); cut++ {
		buf := []byte(whole[:cut])
		pos := 0
		for i, c := range pipeline {
			n, a, _, need, err := ParseCommand(buf[pos:], args, DefaultLimits)
			args = a
			if err != nil {
				t.Fatalf("cut %d, command %d %q: error %v", cut, i, c, err)
			}
			if ends[i] <= cut {
				if n != len(c) {
					t.Fatalf("cut %d, command %d %q: n = %d, want %d", cut, i, c, n, len(c))
				}
				pos += n
				continue
			}
			if n != 0 {
				t.Fatalf("cut %d inside command %d %q: n = %d, want 0", cut, i, c, n)
			}
			if len(a) != 0 {
				t.Fatalf("cut %d inside command %d: %d args returned with n 0", cut, i, len(a))
			}
			if need != 0 {
				sawNeed++
				if need > len(c) {
					t.Fatalf("cut %d inside command %d %q: need %d exceeds the command's size %d", cut, i, c, need, len(c))
				}
				if need <= cut-pos {
					t.Fatalf("cut %d inside command %d %q: need %d but %d bytes are already there", cut, i, c, need, cut-pos)
				}
			}
			break
		}
	}
	if sawNeed == 0 {
		t.Fatal("need was never set")
	}
}

// TestParseCommandNeedHint: once the header of the last argument is in, need
// is the command's exact size, so one buffer growth suffices.
func TestParseCommandNeedHint(t *testing.T) {
	big := strings.Repeat("x", 100000)
	cmd := mb("SET", "k", big)
	hdr := strings.Index(cmd, "$100000\r\n") + len("$100000\r\n")
	for _, cut := range []int{hdr, hdr + 1, hdr + 5000, len(cmd) - 2, len(cmd) - 1} {
		n, _, _, need, err := ParseCommand([]byte(cmd[:cut]), nil, DefaultLimits)
		if n != 0 || err != nil || need != len(cmd) {
			t.Errorf("cut %d: n %d need %d err %v, want n 0 need %d", cut, n, need, err, len(cmd))
		}
	}
}

func TestParseCommandLimits(t *testing.T) {
	lim := Limits{MaxArgs: 3, MaxBulk: 10, MaxInline: 16, MaxMultiLen: 6}
	tests := []struct {
		name string
		in   string
		ok   bool // complete command expected; otherwise an error
		want string
	}{
		{"args at limit", mb("A", "B", "C"), true, ""},
		{"args over limit, header only", "*4\r\n", false, "too many arguments"},
		{"huge count, header only", "*99999\r\n", false, "too many arguments"},
		{"inline args over limit", "A B C D\r\n", false, "too many arguments"},
		{"bulk at limit", mb("SET", "0123456789"), true, ""},
		// The bulk is refused from its header: its bytes never have to arrive.
		{"bulk over limit, header only", "*2\r\n$3\r\nSET\r\n$11\r\n", false, "argument larger"},
		{"bulk way over limit, header only", "*1\r\n$999999\r\n", false, "argument larger"},
		{"inline at limit", "0123456789abcdef\n", true, ""},
		{"inline over limit with newline", "0123456789abcdefg\n", false, "too big inline"},
		{"inline over limit without newline", "0123456789abcdefg", false, "too big inline"},
		{"multilen count over limit, no CRLF yet", "*1234567", false, "invalid multibulk length"},
		{"multilen bulk over limit, no CRLF yet", "*1\r\n$1234567", false, "invalid bulk length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, args, _, _, err := ParseCommand([]byte(tt.in), nil, lim)
			if tt.ok {
				if err != nil || n != len(tt.in) {
					t.Fatalf("n %d args %q err %v, want the whole command", n, strs(args), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("n %d args %q, want error containing %q", n, strs(args), tt.want)
			}
			if !strings.HasPrefix(err.Error(), "ERR Protocol error") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want an ERR Protocol error containing %q", err, tt.want)
			}
		})
	}
	// Incomplete but within limits: no error yet.
	for _, in := range []string{"0123456789abcdef", "*3", "*1\r\n$10\r\n01234", "*12345"} {
		n, _, _, _, err := ParseCommand([]byte(in), nil, lim)
		if n != 0 || err != nil {
			t.Errorf("%q: n %d err %v, want incomplete", in, n, err)
		}
	}
}

// TestParseCommandLengthHeaderOverflowIsError: a length header that cannot
// be an int64 must be refused. BUG: with DefaultLimits (MaxMultiLen 32) up
// to 31 digits are accepted and the value silently wraps around: a 20-digit
// bulk length can wrap to a small positive one and the command is then
// parsed as if it were valid (and forwarded raw to a backend that rejects
// it), and a 30-digit header is not refused until its CRLF arrives.
func TestParseCommandLengthHeaderOverflowIsError(t *testing.T) {
	for _, in := range []string{
		"*" + strings.Repeat("9", 30),                       // error immediately, no CRLF needed
		"*1\r\n$" + strings.Repeat("9", 30),                 // same for a bulk header
		"*9223372036854775808\r\n",                          // wraps to MinInt64: treated as an empty command
		"*1\r\n$18446744073709551619\r\nabc\r\n",            // wraps to 3: parsed as "abc"
		"*2\r\n$3\r\nGET\r\n$18446744073709551617\r\nk\r\n", // wraps to 1: GET k
	} {
		n, args, _, _, err := ParseCommand([]byte(in), nil, DefaultLimits)
		if err == nil {
			t.Errorf("ParseCommand(%q) = n %d args %q, nil error; want ERR Protocol error", in, n, strs(args))
		}
	}
}

// TestParseCommandRawIsCanonical: the proxy forwards a client's multibulk
// bytes untouched, so every command ParseCommand accepts must be one
// redis-server accepts too, or one client can make the node drop the
// multiplexed connection every other client shares. redis-server's
// string2ll refuses leading zeros, "-0" and overflow ("Protocol error:
// invalid bulk length"). BUG: ParseCommand accepts them.
func TestParseCommandRawIsCanonical(t *testing.T) {
	for _, in := range []string{
		"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n",
		"*02\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"*2\r\n$3\r\nGET\r\n$-0\r\n\r\n",
		"*2\r\n$3\r\nGET\r\n$18446744073709551617\r\nk\r\n",
	} {
		n, args, _, _, err := ParseCommand([]byte(in), nil, DefaultLimits)
		if err != nil {
			continue
		}
		if canon := AppendCommand(nil, args...); n > 0 && !bytes.Equal(canon, []byte(in[:n])) {
			t.Errorf("ParseCommand accepted %q (args %q) which redis-server refuses; canonical form is %q", in[:n], strs(args), canon)
		}
	}
}

func TestProtocolErrorTexts(t *testing.T) {
	lim := Limits{MaxArgs: 2, MaxBulk: 4, MaxInline: 8, MaxMultiLen: 4}
	for _, in := range []string{
		"*x\r\n", "*1\r\n$x\r\n", "*1\r\n:1\r\n", "*3\r\n", "*1\r\n$5\r\n", "123456789",
		"\"abc\r\n", "*12345", "*1\r\n$-1\r\n",
	} {
		_, _, _, _, err := ParseCommand([]byte(in), nil, lim)
		if err == nil {
			t.Errorf("%q: no error", in)
			continue
		}
		if !IsProtocolError(err) {
			t.Errorf("%q: %v is not a *ProtocolError", in, err)
		}
		if !strings.HasPrefix(err.Error(), "ERR Protocol error") || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q: error text %q is not an 'ERR Protocol error' line", in, err)
		}
	}
	if IsProtocolError(fmt.Errorf("x")) || IsProtocolError(nil) {
		t.Fatal("IsProtocolError true for a plain error")
	}
	if !IsProtocolError(fmt.Errorf("wrapped: %w", errBulkLen)) {
		t.Fatal("IsProtocolError false for a wrapped protocol error")
	}
}

func TestAppendCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "*0\r\n"},
		{[]string{""}, "*1\r\n$0\r\n\r\n"},
		{[]string{"GET", "k"}, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
		{[]string{strings.Repeat("a", 10)}, "*1\r\n$10\r\n" + strings.Repeat("a", 10) + "\r\n"},
		{[]string{strings.Repeat("a", 1234)}, "*1\r\n$1234\r\n" + strings.Repeat("a", 1234) + "\r\n"},
	}
	for _, tt := range tests {
		bs := make([][]byte, len(tt.args))
		for i, a := range tt.args {
			bs[i] = []byte(a)
		}
		got := string(AppendCommand([]byte("prefix"), bs...))
		if got != "prefix"+tt.want {
			t.Errorf("AppendCommand(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
	args := make([]string, 12)
	for i := range args {
		args[i] = fmt.Sprint(i)
	}
	if got := mb(args...); !strings.HasPrefix(got, "*12\r\n") {
		t.Errorf("12 args encoded as %q", got[:6])
	}
}

func TestParseCommandZeroAlloc(t *testing.T) {
	for _, c := range []string{mb("GET", "key"), mb("SET", "k", strings.Repeat("v", 64)), "*0\r\n"} {
		buf := []byte(c)
		args := make([][]byte, 0, 16)
		allocs := testing.AllocsPerRun(100, func() {
			_, args, _, _, _ = ParseCommand(buf, args, DefaultLimits)
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocs per parse, want 0", c, allocs)
		}
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"GET", "GET"},
		{"", ""},
		{"a\r\nb", "a??b"},
		{"\x00\x7f\xff~ ", "???~ "},
		{"héllo", "h??llo"},
		{strings.Repeat("x", 100), strings.Repeat("x", 64)},
	}
	for _, tt := range tests {
		if got := Printable([]byte(tt.in)); got != tt.want {
			t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
