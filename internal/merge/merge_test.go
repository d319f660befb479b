package merge

import (
	"strconv"
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/resp"
)

func ps(parts ...string) [][]byte {
	out := make([][]byte, len(parts))
	for i, p := range parts {
		out[i] = []byte(p)
	}
	return out
}

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

func arr(elems ...string) string {
	return "*" + strconv.Itoa(len(elems)) + "\r\n" + strings.Join(elems, "")
}

const nilBulk = "$-1\r\n"

func unexpectedText(what string) string {
	return "-ERR jupiter: unexpected reply from a node to " + what + "\r\n"
}

// checkValid fails unless out is exactly one complete RESP reply.
func checkValid(t *testing.T, out []byte) {
	t.Helper()
	if n, err := resp.ReplyLen(out); err != nil || n != len(out) {
		t.Fatalf("output %q is not one RESP reply (ReplyLen %d, %v)", out, n, err)
	}
}

func TestSum(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"three", []string{":1\r\n", ":2\r\n", ":3\r\n"}, ":6\r\n"},
		{"one", []string{":7\r\n"}, ":7\r\n"},
		{"none", nil, ":0\r\n"},
		{"negative", []string{":-1\r\n", ":5\r\n"}, ":4\r\n"},
		{"error wins", []string{":1\r\n", "-ERR boom\r\n", ":3\r\n"}, "-ERR boom\r\n"},
		{"first error wins", []string{"-ERR a\r\n", "-ERR b\r\n"}, "-ERR a\r\n"},
		{"error wins over malformed", []string{"+OK\r\n", "-MOVED x\r\n"}, "-MOVED x\r\n"},
		{"status part", []string{":1\r\n", "+OK\r\n"}, unexpectedText("a summed command")},
		{"bulk part", []string{":1\r\n", "$1\r\n1\r\n"}, unexpectedText("a summed command")},
		{"bad int", []string{":1x\r\n"}, unexpectedText("a summed command")},
	}
	for _, tt := range tests {
		out := Sum([]byte("pre"), ps(tt.parts...))
		if string(out) != "pre"+tt.want {
			t.Errorf("%s: Sum = %q, want %q", tt.name, out, tt.want)
		}
		checkValid(t, out[3:])
	}
}

func TestAllOK(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"+OK\r\n", "+OK\r\n", "+OK\r\n"}, "+OK\r\n"},
		{[]string{"+OK\r\n"}, "+OK\r\n"},
		{nil, "+OK\r\n"},
		{[]string{"+OK\r\n", "-OOM no\r\n"}, "-OOM no\r\n"},
		{[]string{"+OK\r\n", ":1\r\n"}, unexpectedText("a command sent to several nodes")},
		{[]string{"+QUEUED\r\n"}, unexpectedText("a command sent to several nodes")},
	}
	for _, tt := range tests {
		if out := AllOK(nil, ps(tt.parts...)); string(out) != tt.want {
			t.Errorf("AllOK(%q) = %q, want %q", tt.parts, out, tt.want)
		}
	}
}

func TestFirst(t *testing.T) {
	sha := bulk("e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{sha, sha, sha}, sha},
		{[]string{sha, "-NOSCRIPT x\r\n"}, "-NOSCRIPT x\r\n"},
		{nil, unexpectedText("a command sent to several nodes")},
	}
	for _, tt := range tests {
		if out := First(nil, ps(tt.parts...)); string(out) != tt.want {
			t.Errorf("First(%q) = %q, want %q", tt.parts, out, tt.want)
		}
	}
}

func TestConcat(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"three", []string{arr(bulk("a")), arr(bulk("b"), bulk("c")), arr(bulk("d"))}, arr(bulk("a"), bulk("b"), bulk("c"), bulk("d"))},
		{"all empty", []string{"*0\r\n", "*0\r\n", "*0\r\n"}, "*0\r\n"},
		{"some empty", []string{"*0\r\n", arr(bulk("x")), "*0\r\n"}, arr(bulk("x"))},
		{"nil array counts as empty", []string{"*-1\r\n", arr(bulk("x"))}, arr(bulk("x"))},
		{"no parts", nil, "*0\r\n"},
		{"nested elements copied whole", []string{arr(arr(":1\r\n", ":2\r\n")), arr(nilBulk)}, arr(arr(":1\r\n", ":2\r\n"), nilBulk)},
		{"error wins", []string{arr(bulk("a")), "-ERR x\r\n"}, "-ERR x\r\n"},
		{"not an array", []string{arr(bulk("a")), "+OK\r\n"}, unexpectedText("a concatenated command")},
		{"truncated array", []string{"*2\r\n$1\r\na\r\n"}, unexpectedText("a concatenated command")},
	}
	for _, tt := range tests {
		scratch := make([][]byte, 0, 1)
		out, scratch2 := Concat(nil, ps(tt.parts...), scratch)
		if string(out) != tt.want {
			t.Errorf("%s: Concat = %q, want %q", tt.name, out, tt.want)
		}
		checkValid(t, out)
		if scratch2 == nil && len(tt.parts) > 0 {
			t.Errorf("%s: scratch lost", tt.name)
		}
	}
}

func TestMGet(t *testing.T) {
	// Keys k0..k8 spread over 3 parts, interleaved: part of key i is i%3,
	// except k7 on part 0 too.
	owner := []int32{0, 1, 2, 0, 1, 2, 0, 0, 2}
	var partElems [3][]string
	var pos []Pos
	var want []string
	for i, p := range owner {
		v := bulk("v" + strconv.Itoa(i))
		if i == 4 || i == 8 {
			v = nilBulk // missing keys
		}
		pos = append(pos, Pos{Part: p, Index: int32(len(partElems[p]))})
		partElems[p] = append(partElems[p], v)
		want = append(want, v)
	}
	parts := ps(arr(partElems[0]...), arr(partElems[1]...), arr(partElems[2]...))
	out, _ := MGet([]byte("pre"), parts, pos, nil)
	if string(out) != "pre"+arr(want...) {
		t.Fatalf("MGet = %q, want %q", out, arr(want...))
	}
	checkValid(t, out[3:])

	tests := []struct {
		name  string
		parts []string
		pos   []Pos
		want  string
	}{
		{"reversed", []string{arr(bulk("a"), bulk("b"))}, []Pos{{0, 1}, {0, 0}}, arr(bulk("b"), bulk("a"))},
		{"all nil", []string{arr(nilBulk), arr(nilBulk)}, []Pos{{1, 0}, {0, 0}}, arr(nilBulk, nilBulk)},
		{"no keys", []string{"*0\r\n"}, nil, "*0\r\n"},
		{"error wins", []string{arr(bulk("a")), "-WRONGTYPE x\r\n"}, []Pos{{0, 0}, {1, 0}}, "-WRONGTYPE x\r\n"},
		{"malformed part", []string{arr(bulk("a")), "+OK\r\n"}, []Pos{{0, 0}, {1, 0}}, unexpectedText("a split multi-key read")},
		{"truncated part", []string{"*2\r\n$1\r\na\r\n"}, []Pos{{0, 0}, {0, 1}}, unexpectedText("a split multi-key read")},
		{"short part", []string{arr(bulk("a")), arr()}, []Pos{{0, 0}, {1, 0}}, unexpectedText("a split multi-key read")},
		{"nil array part", []string{arr(bulk("a")), "*-1\r\n"}, []Pos{{0, 0}, {1, 0}}, unexpectedText("a split multi-key read")},
		{"part out of range", []string{arr(bulk("a"))}, []Pos{{1, 0}}, unexpectedText("a split multi-key read")},
		{"negative part", []string{arr(bulk("a"))}, []Pos{{-1, 0}}, unexpectedText("a split multi-key read")},
		{"negative index", []string{arr(bulk("a")), arr(bulk("b"))}, []Pos{{1, -1}}, unexpectedText("a split multi-key read")},
	}
	for _, tt := range tests {
		out, _ := MGet([]byte("pre"), ps(tt.parts...), tt.pos, make([][]byte, 0, 2))
		if string(out) != "pre"+tt.want {
			t.Errorf("%s: MGet = %q, want %q", tt.name, out, tt.want)
		}
		checkValid(t, out[3:])
	}
}

// TestMGetManyParts: more parts than the 16 kept on the stack.
func TestMGetManyParts(t *testing.T) {
	var parts [][]byte
	var pos []Pos
	var want []string
	for p := 0; p < 40; p++ {
		parts = append(parts, []byte(arr(bulk("x"+strconv.Itoa(p)))))
	}
	for p := 39; p >= 0; p-- {
		pos = append(pos, Pos{Part: int32(p)})
		want = append(want, bulk("x"+strconv.Itoa(p)))
	}
	out, _ := MGet(nil, parts, pos, nil)
	if string(out) != arr(want...) {
		t.Fatalf("MGet over 40 parts = %q", out)
	}
}

func TestScan(t *testing.T) {
	keys := arr(bulk("a"), bulk("b"))
	tests := []struct {
		name  string
		reply string
		next  uint64
		want  string
	}{
		{"rewrite", arr(bulk("17"), keys), 17<<10 | 2, arr(bulk(strconv.FormatUint(17<<10|2, 10)), keys)},
		{"end", arr(bulk("0"), arr()), 0, arr(bulk("0"), arr())},
		{"max", arr(bulk("5"), keys), 1<<64 - 1, arr(bulk("18446744073709551615"), keys)},
		{"error passes", "-ERR invalid cursor\r\n", 3, "-ERR invalid cursor\r\n"},
		{"not an array", "+OK\r\n", 3, unexpectedText("SCAN")},
		{"three elements", arr(bulk("1"), keys, keys), 3, unexpectedText("SCAN")},
		{"one element", arr(bulk("1")), 3, unexpectedText("SCAN")},
	}
	for _, tt := range tests {
		out := Scan([]byte("pre"), []byte(tt.reply), tt.next)
		if string(out) != "pre"+tt.want {
			t.Errorf("%s: Scan = %q, want %q", tt.name, out, tt.want)
		}
		checkValid(t, out[3:])
	}
}

func TestScanCursor(t *testing.T) {
	tests := []struct {
		reply string
		cur   uint64
		ok    bool
	}{
		{arr(bulk("0"), arr()), 0, true},
		{arr(bulk("123456"), arr(bulk("k"))), 123456, true},
		{arr(bulk("18446744073709551615"), arr()), 1<<64 - 1, true},
		{arr(bulk("18446744073709551616"), arr()), 0, false},
		{arr(bulk("-1"), arr()), 0, false},
		{arr(bulk("x"), arr()), 0, false},
		{arr(nilBulk, arr()), 0, false},
		{arr(":5\r\n", arr()), 0, false},
		{arr(bulk("5")), 0, false},
		{"-ERR x\r\n", 0, false},
		{"*2\r\n$1\r\n5\r\n", 0, false},
	}
	for _, tt := range tests {
		cur, ok := ScanCursor([]byte(tt.reply))
		if ok != tt.ok || (ok && cur != tt.cur) {
			t.Errorf("ScanCursor(%q) = %d, %v; want %d, %v", tt.reply, cur, ok, tt.cur, tt.ok)
		}
	}
}

// TestMergeZeroAlloc: with warm buffers, merging allocates nothing.
func TestMergeZeroAlloc(t *testing.T) {
	parts, pos := mget10()
	dst := make([]byte, 0, 1024)
	scratch := make([][]byte, 0, 16)
	if a := testing.AllocsPerRun(100, func() { dst, scratch = MGet(dst[:0], parts, pos, scratch) }); a != 0 {
		t.Errorf("MGet: %v allocs", a)
	}
	sums := ps(":1\r\n", ":2\r\n", ":3\r\n")
	if a := testing.AllocsPerRun(100, func() { dst = Sum(dst[:0], sums) }); a != 0 {
		t.Errorf("Sum: %v allocs", a)
	}
	sc := []byte(arr(bulk("17"), arr(bulk("a"))))
	if a := testing.AllocsPerRun(100, func() {
		c, _ := ScanCursor(sc)
		dst = Scan(dst[:0], sc, c<<10)
	}); a != 0 {
		t.Errorf("Scan: %v allocs", a)
	}
}

// mget10 is MGET of 10 keys over 3 parts, interleaved.
func mget10() ([][]byte, []Pos) {
	var elems [3][]string
	var pos []Pos
	for i := 0; i < 10; i++ {
		p := int32(i % 3)
		pos = append(pos, Pos{Part: p, Index: int32(len(elems[p]))})
		v := bulk(strings.Repeat(strconv.Itoa(i), 32))
		if i == 5 {
			v = nilBulk
		}
		elems[p] = append(elems[p], v)
	}
	return ps(arr(elems[0]...), arr(elems[1]...), arr(elems[2]...)), pos
}
