package resp

import (
	"errors"
	"math"
)

// ErrBadReply means a backend sent bytes that are not RESP. The connection
// it came from cannot be trusted any more and must be closed.
var ErrBadReply = errors.New("resp: malformed reply")

// maxDepth bounds nesting so a hostile or broken backend cannot make the
// scanner's stack grow without bound.
const maxDepth = 64

// Scanner finds the end of one RESP reply in a growing buffer. It remembers
// how far it got, so a large reply that arrives in many reads is scanned once
// in total, not once per read.
//
// Usage: call Scan with the buffer that starts at the reply's first byte
// (more bytes appended between calls); when it returns n > 0 the reply is
// b[:n] and the Scanner is ready for the next reply.
type Scanner struct {
	off     int           // bytes of the current reply already accounted for
	pending [maxDepth]int // elements still expected at each open array level
	depth   int
}

// Reset forgets a partially scanned reply.
func (s *Scanner) Reset() { s.off, s.depth = 0, 0 }

// maxReplyBulk and maxReplyElems bound what a node may announce. Redis's
// own limits are far below (512 MiB bulk strings, 2^32 elements); anything
// beyond is not a Redis reply, and accepting it would overflow arithmetic.
const (
	maxReplyBulk  = 1 << 30
	maxReplyElems = 1 << 32
)

// Scan returns the length of the complete reply at the start of b, or 0 if b
// does not hold all of it yet. It accepts the RESP2 types and the RESP3
// scalar/aggregate types, so a backend speaking either is framed correctly.
// Bytes that cannot be RESP are reported as soon as they are seen.
func (s *Scanner) Scan(b []byte) (int, error) {
	for {
		// One element at s.off.
		if s.off >= len(b) {
			return 0, nil
		}
		t := b[s.off]
		if !knownType(t) {
			return 0, ErrBadReply
		}
		end, bad := lineEnd(b, s.off+1)
		if bad {
			return 0, ErrBadReply
		}
		if end < 0 {
			if len(b)-s.off > 1<<16 {
				return 0, ErrBadReply // a header line this long is not RESP
			}
			return 0, nil
		}
		next := end + 2
		switch t {
		case '+', '-', ':', ',', '#', '_', '(':
			// single-line value
		case '$', '=', '!':
			n, ok := atoi(b[s.off+1 : end])
			if !ok || n > maxReplyBulk || n < -1 {
				return 0, ErrBadReply
			}
			if n >= 0 {
				next += int(n) + 2
				if next > len(b) {
					return 0, nil
				}
				if b[next-2] != '\r' || b[next-1] != '\n' {
					return 0, ErrBadReply
				}
			}
		default: // '*', '%', '~', '>', '|'
			n, ok := atoi(b[s.off+1 : end])
			if !ok || n > maxReplyElems || n < -1 {
				return 0, ErrBadReply
			}
			switch t {
			case '%':
				n *= 2
			case '|':
				n = 2*n + 1 // an attribute map, then the value it annotates
			}
			if n > 0 {
				if s.depth == maxDepth {
					return 0, ErrBadReply
				}
				s.off = next
				s.pending[s.depth] = int(n)
				s.depth++
				continue
			}
		}
		s.off = next
		// An element finished: close every array it completes.
		for s.depth > 0 {
			s.pending[s.depth-1]--
			if s.pending[s.depth-1] > 0 {
				break
			}
			s.depth--
		}
		if s.depth == 0 {
			n := s.off
			s.off = 0
			return n, nil
		}
	}
}

func knownType(t byte) bool {
	switch t {
	case '+', '-', ':', ',', '#', '_', '(', '$', '=', '!', '*', '%', '~', '>', '|':
		return true
	}
	return false
}

// ReplyLen returns the length of the complete reply at the start of b, 0 if
// it is incomplete.
func ReplyLen(b []byte) (int, error) {
	var s Scanner
	return s.Scan(b)
}

// lineEnd returns the index of the CR ending the line that starts at from,
// or -1 if the line is not complete; bad reports a CR not followed by LF.
func lineEnd(b []byte, from int) (int, bool) {
	for i := from; i < len(b); i++ {
		if b[i] == '\r' {
			if i+1 == len(b) {
				return -1, false
			}
			if b[i+1] != '\n' {
				return -1, true
			}
			return i, false
		}
	}
	return -1, false
}

func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, false // overflow: not a number a node sends
		}
		v = v*10 + d
	}
	if neg {
		v = -v
	}
	return v, true
}

// Elements splits a complete array reply into its elements' raw bytes,
// appended to dst. A nil array ("*-1") gives no elements and nilArray true.
// A non-array reply (typically an error) returns ok false and dst unchanged.
func Elements(reply []byte, dst [][]byte) (elems [][]byte, nilArray, ok bool) {
	elems = dst
	if len(reply) < 4 || reply[0] != '*' {
		return elems, false, false
	}
	end, _ := lineEnd(reply, 1)
	if end < 0 {
		return elems, false, false
	}
	n, good := atoi(reply[1:end])
	if !good {
		return elems, false, false
	}
	if n < 0 {
		return elems, true, true
	}
	off := end + 2
	var s Scanner
	for i := int64(0); i < n; i++ {
		l, err := s.Scan(reply[off:])
		if err != nil || l == 0 {
			return dst, false, false
		}
		elems = append(elems, reply[off:off+l])
		off += l
	}
	return elems, false, true
}

// Int parses an integer reply (":123\r\n").
func Int(reply []byte) (int64, bool) {
	if len(reply) < 4 || reply[0] != ':' {
		return 0, false
	}
	return atoi(reply[1 : len(reply)-2])
}

// Bulk returns the payload of a bulk string reply; ok is false for anything
// else, null is true for "$-1".
func Bulk(reply []byte) (payload []byte, null, ok bool) {
	if len(reply) < 4 || reply[0] != '$' {
		return nil, false, false
	}
	end, _ := lineEnd(reply, 1)
	if end < 0 {
		return nil, false, false
	}
	n, good := atoi(reply[1:end])
	if !good {
		return nil, false, false
	}
	if n < 0 {
		return nil, true, true
	}
	start := end + 2
	if start+int(n)+2 != len(reply) {
		return nil, false, false
	}
	return reply[start : start+int(n)], false, true
}

// IsError reports whether reply is an error reply.
func IsError(reply []byte) bool { return len(reply) > 0 && reply[0] == '-' }

// IsOK reports whether reply is "+OK".
func IsOK(reply []byte) bool { return string(reply) == "+OK\r\n" }
