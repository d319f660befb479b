package merge

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// FuzzMGet builds an MGET split from the input: byte 0 picks the number of
// parts (1..4), then each byte is one key: its part (b % parts) and whether
// the key is missing (nil) or holds a value. Control bytes make one part an
// error (0xfe) or malformed (0xff: truncated, or a non-array). The merged
// reply must be exactly the expected array in key order, the error part, or
// the "unexpected reply" error; always one valid RESP reply.
//
// Inputs starting with 0x00 are raw instead: parts are arbitrary replies
// (each forced to be a complete RESP reply, as the backend's Scanner
// guarantees) and positions arbitrary; MGet must not panic and must still
// produce one valid RESP reply.
func FuzzMGet(f *testing.F) {
	f.Add([]byte("\x03\x02\x01\x00\x05\x02\x07\x01\x03"))
	f.Add([]byte("\x02\x01\xff\x80"))
	f.Add([]byte("\x02\x03\x00\x00\xfe"))
	f.Add([]byte("\x00*2\r\n:1\r\n$-1\r\n\x00\x01\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && data[0] == 0 {
			fuzzRaw(t, data[1:])
			return
		}
		nparts := 1
		if len(data) > 0 {
			nparts = 1 + int(data[0])%4
			data = data[1:]
		}
		elems := make([][][]byte, nparts)
		var pos []Pos
		var want [][]byte
		bad, errPart := -1, -1
		for i, b := range data {
			switch b {
			case 0xff:
				bad = i % nparts
				continue
			case 0xfe:
				errPart = i % nparts
				continue
			}
			p := int(b) % nparts
			var v []byte
			if b&0x40 != 0 {
				v = []byte("$-1\r\n")
			} else {
				s := strconv.Itoa(i) + string(bytes.Repeat([]byte{b}, int(b>>4)))
				v = []byte("$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n")
			}
			pos = append(pos, Pos{Part: int32(p), Index: int32(len(elems[p]))})
			elems[p] = append(elems[p], v)
			want = append(want, v)
		}
		parts := make([][]byte, nparts)
		for p := range parts {
			parts[p] = array(elems[p])
		}
		expect := array(want)
		if bad >= 0 {
			if len(parts[bad]) > 4 && len(elems[bad]) > 0 {
				parts[bad] = parts[bad][:len(parts[bad])-1] // truncated
			} else {
				parts[bad] = []byte("+OK\r\n")
			}
			expect = []byte("-ERR jupiter: unexpected reply from a node to a split multi-key read\r\n")
		}
		if errPart >= 0 {
			parts[errPart] = []byte("-ERR node says no\r\n")
			// An error reply wins even over a malformed part before it.
			expect = parts[errPart]
		}
		out, _ := MGet([]byte("pre"), parts, pos, nil)
		if !bytes.Equal(out, append([]byte("pre"), expect...)) {
			t.Fatalf("MGet = %q, want %q", out, expect)
		}
		if n, err := resp.ReplyLen(out[3:]); err != nil || n != len(out)-3 {
			t.Fatalf("output %q not one reply", out[3:])
		}
		if bad < 0 && errPart < 0 {
			got, _, ok := resp.Elements(out[3:], nil)
			if !ok || len(got) != len(want) {
				t.Fatalf("output has %d elements, want %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("element %d = %q, want %q", i, got[i], want[i])
				}
			}
		}
	})
}

func array(elems [][]byte) []byte {
	b := []byte("*" + strconv.Itoa(len(elems)) + "\r\n")
	for _, e := range elems {
		b = append(b, e...)
	}
	return b
}

// fuzzRaw: parts separated by 0x00 up to the last one, which holds
// positions (pairs of bytes).
func fuzzRaw(t *testing.T, data []byte) {
	chunks := bytes.Split(data, []byte{0})
	posBytes := chunks[len(chunks)-1]
	var parts [][]byte
	for _, c := range chunks[:len(chunks)-1] {
		if n, err := resp.ReplyLen(c); err == nil && n > 0 {
			parts = append(parts, c[:n])
		} else {
			parts = append(parts, []byte("$-1\r\n"))
		}
	}
	var pos []Pos
	for i := 0; i+1 < len(posBytes); i += 2 {
		pos = append(pos, Pos{Part: int32(int8(posBytes[i])), Index: int32(int8(posBytes[i+1]))})
	}
	out, _ := MGet(nil, parts, pos, nil)
	if n, err := resp.ReplyLen(out); err != nil || n != len(out) {
		t.Fatalf("parts %q pos %v: output %q not one reply", parts, pos, out)
	}
}
