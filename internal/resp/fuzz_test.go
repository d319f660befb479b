package resp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// fuzzLimits are small enough for the fuzzer to reach every limit.
var fuzzLimits = Limits{MaxArgs: 64, MaxBulk: 1 << 10, MaxInline: 256, MaxMultiLen: 32}

// FuzzParseCommand: ParseCommand never panics; n stays within the input;
// errors are protocol error lines; a parsed command re-encoded with
// AppendCommand parses back to the same arguments and exactly its own size;
// a prefix of a parsed command is incomplete, never an error.
func FuzzParseCommand(f *testing.F) {
	for _, c := range pipeline {
		f.Add([]byte(c))
	}
	f.Add([]byte(strings.Join(pipeline, "")))
	for _, s := range []string{"*1\r\n$-1\r\n", "*3\r\n", "*1\r\n$4\r\nPINGxx", "\"a\\x4", "*-5\r\n", "*1\r\n$2000\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, args, inline, need, err := ParseCommand(data, nil, fuzzLimits)
		if err != nil {
			if n != 0 || !IsProtocolError(err) || !strings.HasPrefix(err.Error(), "ERR Protocol error") {
				t.Fatalf("n %d, error %v", n, err)
			}
			return
		}
		if n < 0 || n > len(data) {
			t.Fatalf("n %d outside [0, %d]", n, len(data))
		}
		if n == 0 {
			if len(args) != 0 {
				t.Fatalf("incomplete with %d args", len(args))
			}
			if need != 0 && need <= len(data) {
				t.Fatalf("need %d but %d bytes are there", need, len(data))
			}
			return
		}
		if len(args) > fuzzLimits.MaxArgs {
			t.Fatalf("%d args over the limit", len(args))
		}
		for _, a := range args {
			if !inline && len(a) > fuzzLimits.MaxBulk {
				t.Fatalf("arg of %d bytes over the limit", len(a))
			}
		}
		want := make([][]byte, len(args))
		for i, a := range args {
			want[i] = bytes.Clone(a)
		}
		// The same bytes alone parse the same.
		n2, args2, _, _, err := ParseCommand(data[:n], nil, fuzzLimits)
		if err != nil || n2 != n || !sameArgs(args2, want) {
			t.Fatalf("alone: n %d err %v args %q, want n %d args %q", n2, err, args2, n, want)
		}
		// A prefix is incomplete.
		if n2, _, _, _, err := ParseCommand(data[:n/2], nil, fuzzLimits); n2 != 0 || err != nil {
			t.Fatalf("prefix %q: n %d err %v", data[:n/2], n2, err)
		}
		if len(args) == 0 {
			return
		}
		enc := AppendCommand(nil, want...)
		n3, args3, inl3, _, err := ParseCommand(enc, nil, Limits{MaxArgs: 1 << 20, MaxBulk: 1 << 20, MaxInline: 1 << 20, MaxMultiLen: 32})
		if err != nil || n3 != len(enc) || inl3 || !sameArgs(args3, want) {
			t.Fatalf("re-encoded %q: n %d err %v args %q, want %q", enc, n3, err, args3, want)
		}
	})
}

func sameArgs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// FuzzScanner: Scan never panics, and a Scanner fed the input in chunks
// (sizes taken from the input) reaches the same verdict as one scan of the
// whole: the same length, at the first chunk that holds the whole reply,
// or an error.
func FuzzScanner(f *testing.F) {
	for _, r := range replies {
		f.Add([]byte(r), uint8(1))
	}
	f.Add([]byte(bigArray(50)), uint8(13))
	f.Add([]byte("*2\r\n$3\r\nfoo\r\n*1\r\n:1\r\n+next\r\n"), uint8(3))
	f.Add([]byte("$3\r\nfooXX"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		whole, werr := ReplyLen(data)
		if werr != nil && !errors.Is(werr, ErrBadReply) {
			t.Fatalf("error %v is not ErrBadReply", werr)
		}
		if whole < 0 || whole > len(data) || (werr != nil && whole != 0) {
			t.Fatalf("ReplyLen = %d, %v for %d bytes", whole, werr, len(data))
		}
		k := int(step%31) + 1
		var s Scanner
		for end := k; ; end += k {
			if end > len(data) {
				end = len(data)
			}
			n, err := s.Scan(data[:end])
			if err != nil {
				if werr == nil {
					t.Fatalf("chunked (%d) scan error %v at %d, whole scan %d", k, err, end, whole)
				}
				return
			}
			if n != 0 {
				if werr != nil || n != whole {
					t.Fatalf("chunked (%d) scan framed %d at %d, whole scan %d, %v", k, n, end, whole, werr)
				}
				if end-k >= whole {
					t.Fatalf("chunked (%d) scan framed %d only at %d", k, n, end)
				}
				return
			}
			if end == len(data) {
				break
			}
		}
		if whole != 0 {
			t.Fatalf("chunked (%d) scan never framed the %d-byte reply", k, whole)
		}
		// Incomplete in chunks; the whole may still be an error only if the
		// chunked scan saw the same bytes, which it did.
		if werr != nil {
			t.Fatalf("whole scan error %v, chunked scan incomplete", werr)
		}
	})
}

// FuzzSplitArgs: SplitArgs never panics; on lines without \v, \f and NUL
// (where it knowingly differs, see TestSplitArgsWhitespaceLikeRedis) it
// agrees with the port of sdssplitargs; its arguments quoted again split
// back to themselves.
func FuzzSplitArgs(f *testing.F) {
	for _, l := range splitLines {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := SplitArgs(line, nil)
		if !bytes.ContainsAny(line, "\v\f\x00") {
			want, ok := redisSplitArgs(line)
			if ok != (err == nil) || (ok && !sameArgs(got, want)) {
				t.Fatalf("SplitArgs(%q) = %q, %v; sdssplitargs %q, %v", line, got, err, want, ok)
			}
		}
		if err != nil {
			if err.Error() != "ERR Protocol error: unbalanced quotes in request" {
				t.Fatalf("error %q", err)
			}
			return
		}
		var re []byte
		for i, a := range got {
			if i > 0 {
				re = append(re, ' ')
			}
			re = AppendQuoted(re, a)
		}
		back, err := SplitArgs(re, nil)
		if err != nil || !sameArgs(back, got) {
			t.Fatalf("requoted %q split into %q, %v; want %q", re, back, err, got)
		}
	})
}
