package resp

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// replies are complete replies of every type the Scanner frames.
var replies = []string{
	"+OK\r\n",
	"+\r\n",
	"-ERR wrong type\r\n",
	":0\r\n",
	":-12345\r\n",
	"$0\r\n\r\n",
	"$3\r\nfoo\r\n",
	"$4\r\n\r\n\r\n\r\n", // payload is CRLFCRLF
	"$-1\r\n",
	"*-1\r\n",
	"*0\r\n",
	"*2\r\n$1\r\na\r\n:1\r\n",
	"*3\r\n$-1\r\n*-1\r\n*0\r\n",
	"*2\r\n*2\r\n+a\r\n+b\r\n*1\r\n*1\r\n*1\r\n:7\r\n",
	"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n", // SCAN
	"*1\r\n-ERR inside\r\n",                         // EXEC with an error element
	// RESP3, framed too
	"_\r\n",
	",1.5\r\n",
	"#t\r\n",
	"(12345678901234567890\r\n",
	"=7\r\ntxt:abc\r\n",
	"!3\r\nerr\r\n",
	"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n",
	"~2\r\n+a\r\n+b\r\n",
	">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n",
}

func TestScannerTypes(t *testing.T) {
	for _, r := range replies {
		n, err := ReplyLen([]byte(r))
		if err != nil || n != len(r) {
			t.Errorf("ReplyLen(%q) = %d, %v; want %d", r, n, err, len(r))
		}
		// Followed by another reply: only the first is framed.
		n, err = ReplyLen([]byte(r + "+NEXT\r\n"))
		if err != nil || n != len(r) {
			t.Errorf("ReplyLen(%q + next) = %d, %v; want %d", r, n, err, len(r))
		}
		// Every proper prefix is incomplete.
		for i := 0; i < len(r); i++ {
			if n, err := ReplyLen([]byte(r[:i])); n != 0 || err != nil {
				t.Errorf("ReplyLen(%q) = %d, %v; want incomplete", r[:i], n, err)
			}
		}
	}
}

// TestScannerByteByByte: one Scanner fed a growing buffer one byte at a time
// frames the same reply as a scan of the whole, and is then ready for the
// next reply.
func TestScannerByteByByte(t *testing.T) {
	all := strings.Join(replies, "")
	var s Scanner
	start := 0
	got := 0
	for end := 1; end <= len(all); end++ {
		n, err := s.Scan([]byte(all[start:end]))
		if err != nil {
			t.Fatalf("at %d: %v", end, err)
		}
		if n == 0 {
			continue
		}
		if want := len(replies[got]); n != want || end-start != n {
			t.Fatalf("reply %d: framed %d bytes (buffer %d), want %d", got, n, end-start, want)
		}
		start += n
		got++
	}
	if got != len(replies) {
		t.Fatalf("framed %d replies, want %d", got, len(replies))
	}
}

func bigArray(n int) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(n) + "\r\n")
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			b.WriteString("$" + strconv.Itoa(len(strconv.Itoa(i))) + "\r\n" + strconv.Itoa(i) + "\r\n")
		case 1:
			b.WriteString(":" + strconv.Itoa(i) + "\r\n")
		case 2:
			b.WriteString("$-1\r\n")
		case 3:
			b.WriteString("*2\r\n+x\r\n$64\r\n" + strings.Repeat("v", 64) + "\r\n")
		}
	}
	return b.String()
}

// TestScannerLargeArrayChunks scans a large array arriving in chunks of
// several sizes; the Scanner resumes where it stopped, and the total work is
// checked by the length only.
func TestScannerLargeArrayChunks(t *testing.T) {
	r := bigArray(20000)
	for _, chunk := range []int{1, 7, 100, 4096, 65536} {
		var s Scanner
		var n int
		var err error
		for end := chunk; ; end += chunk {
			if end > len(r) {
				end = len(r)
			}
			n, err = s.Scan([]byte(r[:end]))
			if err != nil {
				t.Fatalf("chunk %d, end %d: %v", chunk, end, err)
			}
			if n != 0 {
				if end != len(r) && end-chunk >= len(r) {
					t.Fatalf("chunk %d: framed late", chunk)
				}
				break
			}
			if end == len(r) {
				break
			}
		}
		if n != len(r) {
			t.Fatalf("chunk %d: framed %d bytes, want %d", chunk, n, len(r))
		}
	}
}

func TestScannerDepth(t *testing.T) {
	nest := func(d int) string { return strings.Repeat("*1\r\n", d) + ":1\r\n" }
	if n, err := ReplyLen([]byte(nest(maxDepth))); err != nil || n != len(nest(maxDepth)) {
		t.Fatalf("depth %d: %d, %v", maxDepth, n, err)
	}
	if _, err := ReplyLen([]byte(nest(maxDepth + 1))); !errors.Is(err, ErrBadReply) {
		t.Fatalf("depth %d: err %v, want ErrBadReply", maxDepth+1, err)
	}
}

func TestScannerReset(t *testing.T) {
	var s Scanner
	if n, _ := s.Scan([]byte("*3\r\n:1\r\n:2")); n != 0 {
		t.Fatal("incomplete framed")
	}
	s.Reset()
	if n, err := s.Scan([]byte("+OK\r\n")); n != 5 || err != nil {
		t.Fatalf("after Reset: %d, %v", n, err)
	}
}

func TestScannerMalformed(t *testing.T) {
	for _, in := range []string{
		"?\r\n",
		"OK\r\n",
		"$x\r\n",
		"$\r\n",
		"$-\r\n",
		"$3\r\nfooXX",
		"$3\r\nfoo\n\n",
		"*x\r\n",
		"*\r\n",
		"*2\r\n:1\r\n?\r\n",
		"*1\r\n$99999999999999999999\r\n", // 20 digits
		"%x\r\n",
		"+" + strings.Repeat("a", 1<<16+10), // a header line that never ends
	} {
		if _, err := ReplyLen([]byte(in)); !errors.Is(err, ErrBadReply) {
			t.Errorf("ReplyLen(%.40q) err %v, want ErrBadReply", in, err)
		}
	}
}

// TestScannerCRWithoutLFIsBadReply: a CR not followed by LF cannot appear in
// a RESP line. BUG: lineEnd gives up at the first such CR and reports the
// reply as incomplete, so a desynchronised or non-RESP backend is noticed
// only after 64 KiB more arrive or at the request timeout, not at once.
func TestScannerCRWithoutLFIsBadReply(t *testing.T) {
	for _, in := range []string{"+OK\rX\r\n", ":1\r2\r\n", "$3\rx\r\nfoo\r\n", "*1\r\n+a\rb\r\n"} {
		if n, err := ReplyLen([]byte(in)); !errors.Is(err, ErrBadReply) {
			t.Errorf("ReplyLen(%q) = %d, %v; want ErrBadReply", in, n, err)
		}
	}
}

// TestScannerUnknownTypeFailsAtOnce: the first byte of a reply decides
// whether it can be RESP. BUG (minor): the type byte is checked only once a
// CRLF has arrived, so "HTTP/1.1 400 ..." or a lone "?" is reported as
// incomplete rather than ErrBadReply.
func TestScannerUnknownTypeFailsAtOnce(t *testing.T) {
	for _, in := range []string{"?", "HTTP/1.1 400", "\r"} {
		if n, err := ReplyLen([]byte(in)); !errors.Is(err, ErrBadReply) {
			t.Errorf("ReplyLen(%q) = %d, %v; want ErrBadReply", in, n, err)
		}
	}
}

// TestScannerRESP3Attribute: a RESP3 attribute ("|") is metadata that
// precedes the reply it annotates; the reply is the attribute map plus the
// next element. BUG (latent: jupiter talks RESP2 to nodes and answers HELLO
// itself): the Scanner frames the attribute map alone, which would
// desynchronise the connection if a node ever sent one, contrary to the
// package comment ("a backend speaking either is framed correctly").
func TestScannerRESP3Attribute(t *testing.T) {
	r := "|1\r\n+key\r\n+val\r\n+OK\r\n"
	if n, err := ReplyLen([]byte(r)); n != len(r) || err != nil {
		t.Errorf("ReplyLen(%q) = %d, %v; want %d", r, n, err, len(r))
	}
}

// TestScannerHugeBulkLength: a bulk length near MaxInt64 overflows the end
// offset. BUG: Scan indexes b with a negative offset and panics ("index out
// of range [-9223372036854775787]"); the backend reader goroutine has no
// recover, so one bad reply from a node crashes the whole proxy. A 19-digit
// length that overflows in atoi ("$9999999999999999999") wraps negative and
// is taken for a null bulk instead, silently desynchronising the stream.
func TestScannerHugeBulkLength(t *testing.T) {
	for _, in := range []string{
		"$9223372036854775807\r\nab",
		"*1\r\n$9223372036854775806\r\n",
		"=9223372036854775800\r\nxx",
		"$9999999999999999999\r\n",
	} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("ReplyLen(%q) panicked: %v", in, p)
				}
			}()
			n, err := ReplyLen([]byte(in))
			if n != 0 || (err != nil && !errors.Is(err, ErrBadReply)) {
				t.Errorf("ReplyLen(%q) = %d, %v; want incomplete or ErrBadReply", in, n, err)
			}
		}()
	}
}

func TestElements(t *testing.T) {
	tests := []struct {
		in       string
		elems    []string
		nilArray bool
		ok       bool
	}{
		{"*0\r\n", nil, false, true},
		{"*-1\r\n", nil, true, true},
		{"*2\r\n$1\r\na\r\n$-1\r\n", []string{"$1\r\na\r\n", "$-1\r\n"}, false, true},
		{"*2\r\n*1\r\n:1\r\n+x\r\n", []string{"*1\r\n:1\r\n", "+x\r\n"}, false, true},
		{"*3\r\n:1\r\n:2\r\n", nil, false, false}, // truncated
		{"-ERR x\r\n", nil, false, false},
		{"$1\r\na\r\n", nil, false, false},
		{"*x\r\n", nil, false, false},
		{"*1\r\n?\r\n", nil, false, false},
		{"*1", nil, false, false},
	}
	for _, tt := range tests {
		dst := [][]byte{[]byte("keep")}
		elems, nilArray, ok := Elements([]byte(tt.in), dst)
		if ok != tt.ok || nilArray != tt.nilArray {
			t.Errorf("Elements(%q): nil %v ok %v, want nil %v ok %v", tt.in, nilArray, ok, tt.nilArray, tt.ok)
			continue
		}
		if string(elems[0]) != "keep" {
			t.Errorf("Elements(%q) overwrote dst", tt.in)
		}
		if !ok {
			if len(elems) != 1 {
				t.Errorf("Elements(%q) not ok but appended %d", tt.in, len(elems)-1)
			}
			continue
		}
		if !eqArgs(elems[1:], tt.elems) {
			t.Errorf("Elements(%q) = %q, want %q", tt.in, strs(elems[1:]), tt.elems)
		}
	}
}

func TestIntBulkIsErrorIsOK(t *testing.T) {
	ints := []struct {
		in string
		v  int64
		ok bool
	}{
		{":0\r\n", 0, true},
		{":42\r\n", 42, true},
		{":-7\r\n", -7, true},
		{":9223372036854775807\r\n", 1<<63 - 1, true},
		{":\r\n", 0, false},
		{":x\r\n", 0, false},
		{"+1\r\n", 0, false},
		{"$1\r\n1\r\n", 0, false},
		{"", 0, false},
	}
	for _, tt := range ints {
		if v, ok := Int([]byte(tt.in)); v != tt.v || ok != tt.ok {
			t.Errorf("Int(%q) = %d, %v; want %d, %v", tt.in, v, ok, tt.v, tt.ok)
		}
	}
	bulks := []struct {
		in      string
		payload string
		null    bool
		ok      bool
	}{
		{"$0\r\n\r\n", "", false, true},
		{"$3\r\nfoo\r\n", "foo", false, true},
		{"$2\r\n\r\n\r\n", "\r\n", false, true},
		{"$-1\r\n", "", true, true},
		{"$3\r\nfo\r\n", "", false, false},
		{"$3\r\nfooo\r\n", "", false, false},
		{"+foo\r\n", "", false, false},
		{"$x\r\nfoo\r\n", "", false, false},
		{"$9223372036854775807\r\nfoo\r\n", "", false, false},
	}
	for _, tt := range bulks {
		p, null, ok := Bulk([]byte(tt.in))
		if string(p) != tt.payload || null != tt.null || ok != tt.ok {
			t.Errorf("Bulk(%q) = %q, %v, %v; want %q, %v, %v", tt.in, p, null, ok, tt.payload, tt.null, tt.ok)
		}
	}
	for in, want := range map[string]bool{"-ERR x\r\n": true, "-\r\n": true, "+OK\r\n": false, "": false, ":1\r\n": false} {
		if IsError([]byte(in)) != want {
			t.Errorf("IsError(%q) != %v", in, want)
		}
	}
	for in, want := range map[string]bool{"+OK\r\n": true, "+OK": false, "+ok\r\n": false, "$2\r\nOK\r\n": false, "+OK\r\n+OK\r\n": false} {
		if IsOK([]byte(in)) != want {
			t.Errorf("IsOK(%q) != %v", in, want)
		}
	}
}

func TestScannerZeroAlloc(t *testing.T) {
	r := []byte(bigArray(100))
	var s Scanner
	if a := testing.AllocsPerRun(100, func() { _, _ = s.Scan(r) }); a != 0 {
		t.Fatalf("%v allocs per Scan", a)
	}
}
