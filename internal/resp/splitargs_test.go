package resp

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
)

// redisSplitArgs is a line-by-line port of redis-server's sdssplitargs
// (src/sds.c), which processInlineBuffer runs on an inline command line. The
// line is a C string there: it ends at the first NUL, and isspace() is C's
// (space, \t, \n, \v, \f, \r). ok is false where sdssplitargs returns NULL
// (unbalanced quotes, or a closing quote followed by a non-space).
func redisSplitArgs(line []byte) (args [][]byte, ok bool) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	cspace := func(c byte) bool {
		return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
	}
	args = [][]byte{}
	p := 0
	for {
		for at(p) != 0 && cspace(at(p)) {
			p++
		}
		if at(p) == 0 {
			return args, true
		}
		inq, insq, done := false, false, false
		cur := []byte{}
		for !done {
			c := at(p)
			switch {
			case inq:
				switch {
				case c == '\\' && at(p+1) == 'x' && isHex(at(p+2)) && isHex(at(p+3)):
					cur = append(cur, hexVal(at(p+2))*16+hexVal(at(p+3)))
					p += 3
				case c == '\\' && at(p+1) != 0:
					p++
					switch at(p) {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, at(p))
					}
				case c == '"':
					if at(p+1) != 0 && !cspace(at(p+1)) {
						return nil, false
					}
					done = true
				case c == 0:
					return nil, false
				default:
					cur = append(cur, c)
				}
			case insq:
				switch {
				case c == '\\' && at(p+1) == '\'':
					p++
					cur = append(cur, '\'')
				case c == '\'':
					if at(p+1) != 0 && !cspace(at(p+1)) {
						return nil, false
					}
					done = true
				case c == 0:
					return nil, false
				default:
					cur = append(cur, c)
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					cur = append(cur, c)
				}
			}
			if at(p) != 0 {
				p++
			}
		}
		args = append(args, cur)
	}
}

// splitLines are inline lines (without the line terminator) whose splitting
// jupiter and redis-server must agree on.
var splitLines = []string{
	"",
	"   ",
	"a",
	"a b c",
	"  a\t\tb  ",
	"a\rb",
	`"a b"`,
	`'a b'`,
	`"a\"b"`,
	`'a\'b'`,
	`'a\"b'`,
	`'a\nb'`,
	`"\x41\x4a\x4A\x7e"`,
	`"\x4"`,
	`"\xzz"`,
	`"\x"`,
	`"\\"`,
	`"\n\r\t\b\a"`,
	`"\q\0"`,
	`"\x00"`,
	`""`,
	`''`,
	`"" ''`,
	`a"b c"`,
	`a'b c'`,
	`a\ b`,
	`"a"` + "\tb",
	`"héllo wörld"`,
	`set "key with spaces" 'val "quoted"'`,
	// refused by both
	`"a"b`,
	`'a'b`,
	`"abc`,
	`'abc`,
	`"a\`,
	`'a\'`,
	`a "b`,
}

func TestSplitArgsMatchesSdssplitargs(t *testing.T) {
	for _, line := range splitLines {
		want, wantOK := redisSplitArgs([]byte(line))
		got, err := SplitArgs([]byte(line), nil)
		if !wantOK {
			if err == nil {
				t.Errorf("SplitArgs(%q) = %q, redis refuses the line", line, strs(got))
			} else if err.Error() != "ERR Protocol error: unbalanced quotes in request" {
				t.Errorf("SplitArgs(%q) error %q", line, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("SplitArgs(%q): %v, redis gives %q", line, err, strs(want))
			continue
		}
		if !eqArgs(got, strs(want)) {
			t.Errorf("SplitArgs(%q) = %q, redis gives %q", line, strs(got), strs(want))
		}
	}
}

// TestSplitArgsWhitespaceLikeRedis: sdssplitargs skips blanks with C's
// isspace(), which includes \v and \f, and accepts them after a closing
// quote. BUG: SplitArgs's isSpace lacks \v and \f (and has NUL instead), so
// "GET \vk" is GET of "\vk" instead of "k", and `GET "k"\v` is refused as
// unbalanced quotes while redis-server accepts it.
func TestSplitArgsWhitespaceLikeRedis(t *testing.T) {
	for _, line := range []string{"GET \vk", "GET \fk", "GET k \v", `GET "k"` + "\v", `GET 'k'` + "\f x"} {
		want, _ := redisSplitArgs([]byte(line))
		got, err := SplitArgs([]byte(line), nil)
		if err != nil || !eqArgs(got, strs(want)) {
			t.Errorf("SplitArgs(%q) = %q, %v; redis-server gives %q", line, strs(got), err, strs(want))
		}
	}
}

// TestSplitArgsAgainstRedisServer sends every table line to a real
// redis-server as "RPUSH l <line>" and reads the list back, so the reference
// port above is itself checked against the real thing.
func TestSplitArgsAgainstRedisServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	r := testenv.StartRedis(t)
	var nc net.Conn
	var buf []byte
	dial := func() {
		var err error
		if nc != nil {
			nc.Close()
		}
		nc, err = net.Dial("tcp", r.Addr)
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[:0]
	}
	read := func() []byte {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if n, err := ReplyLen(buf); err != nil {
				t.Fatalf("bad reply %q", buf)
			} else if n > 0 {
				rep := append([]byte(nil), buf[:n]...)
				buf = append(buf[:0], buf[n:]...)
				return rep
			}
			tmp := make([]byte, 4096)
			n, err := nc.Read(tmp)
			if err != nil {
				t.Fatalf("read: %v (have %q)", err, buf)
			}
			buf = append(buf, tmp[:n]...)
		}
	}
	dial()
	defer func() { nc.Close() }()
	lines := append([]string{"GET \vk", "GET k \v", `"k"` + "\v", "a\vb \fc"}, splitLines...)
	for _, line := range lines {
		want, wantOK := redisSplitArgs([]byte(line))
		if wantOK && len(want) == 0 {
			continue // RPUSH needs a value
		}
		if _, err := nc.Write([]byte("DEL l\r\nRPUSH l " + line + "\r\n")); err != nil {
			t.Fatal(err)
		}
		read() // DEL
		rep := read()
		if !wantOK {
			if string(rep) != "-ERR Protocol error: unbalanced quotes in request\r\n" {
				t.Errorf("%q: redis-server replied %q, reference port says unbalanced", line, rep)
			}
			dial() // redis closes the connection after a protocol error
			continue
		}
		if IsError(rep) {
			t.Errorf("%q: redis-server replied %q, reference port gives %q", line, rep, strs(want))
			dial()
			continue
		}
		nc.Write([]byte("LRANGE l 0 -1\r\n"))
		elems, _, ok := Elements(read(), nil)
		if !ok {
			t.Fatalf("%q: LRANGE reply not an array", line)
		}
		got := make([]string, len(elems))
		for i, e := range elems {
			b, _, _ := Bulk(e)
			got[i] = string(b)
		}
		if len(got) != len(want) {
			t.Errorf("%q: redis-server split into %q, reference port into %q", line, got, strs(want))
			continue
		}
		for i := range got {
			if got[i] != string(want[i]) {
				t.Errorf("%q: redis-server split into %q, reference port into %q", line, got, strs(want))
				break
			}
		}
	}
}
