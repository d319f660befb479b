package resp

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// chunks is a read function that hands out data in pieces of the given
// sizes, then err.
func chunks(data string, sizes []int, err error) func([]byte) (int, error) {
	return func(p []byte) (int, error) {
		if data == "" {
			return 0, err
		}
		n := len(data)
		if len(sizes) > 0 {
			n, sizes = min(sizes[0], n), sizes[1:]
		}
		n = copy(p, data[:n])
		data = data[n:]
		return n, nil
	}
}

func TestFramer(t *testing.T) {
	big := strings.Repeat("x", 2000) // beyond the first 512-byte buffer
	stream := "+OK\r\n*2\r\n$3\r\nabc\r\n:7\r\n$2000\r\n" + big + "\r\n-ERR no\r\n"
	want := []string{"+OK\r\n", "*2\r\n$3\r\nabc\r\n:7\r\n", "$2000\r\n" + big + "\r\n", "-ERR no\r\n"}
	for _, sizes := range [][]int{nil, {1, 1, 1, 1, 1, 1, 1}, {7, 3, 100, 2}} {
		var f Framer
		read := chunks(stream, sizes, io.EOF)
		for i, w := range want {
			start, end, err := f.Next(read, 16)
			if err != nil || string(f.Buf[start:end]) != w {
				t.Fatalf("sizes %v: reply %d = %q, %v; want %q", sizes, i, f.Buf[start:end], err, w)
			}
		}
		if _, _, err := f.Next(read, 16); !errors.Is(err, io.EOF) || f.Buffered() {
			t.Fatalf("sizes %v: after the stream: %v, buffered %v", sizes, err, f.Buffered())
		}
	}
	// A reply cut by a timeout is completed by the next call: the Scanner
	// keeps its place, and Compact keeps the unframed bytes.
	var f Framer
	timeout := errors.New("timeout")
	if _, _, err := f.Next(chunks("$5\r\nhel", nil, timeout), 0); err != timeout || !f.Buffered() {
		t.Fatalf("cut reply: %v, buffered %v", err, f.Buffered())
	}
	f.Compact()
	start, end, err := f.Next(chunks("lo\r\n", nil, io.EOF), 0)
	if err != nil || string(f.Buf[start:end]) != "$5\r\nhello\r\n" {
		t.Fatalf("completed reply %q, %v", f.Buf[start:end], err)
	}
	if _, _, err := f.Next(chunks("?bad\r\n", nil, io.EOF), 0); !errors.Is(err, ErrBadReply) {
		t.Fatalf("not RESP: %v", err)
	}
	f.Reset(0)
	if f.Buf != nil || f.Buffered() {
		t.Fatal("Reset(0) kept the buffer")
	}
}
