// Package resp holds the RESP2 wire code jupiter needs on its hot path: a
// zero-copy, limit-enforcing parser for client commands (multibulk and inline),
// a resumable scanner that finds where one backend reply ends without decoding
// it, and helpers that split or build replies for the merge step.
//
// Encoding of replies jupiter writes itself uses redcon's Append* helpers; this
// package only adds what redcon's server loop does not give a proxy: hard
// limits checked before buffering (a "$999999999" header is refused at once),
// no allocation per command, and byte-exact boundaries of replies that are
// passed through untouched.
package resp

import (
	"errors"
)

// Limits bound what one client command may cost the proxy. A command that
// exceeds a limit is a protocol error: the client gets an error and its
// connection is closed, exactly what redis-server does.
type Limits struct {
	MaxArgs     int // arguments per command (redis: 1024*1024)
	MaxBulk     int // bytes per argument (redis proto-max-bulk-len: 512 MiB)
	MaxInline   int // bytes of one inline command line (redis: 64 KiB)
	MaxMultiLen int // bytes of a "*N" or "$N" header line
}

// DefaultLimits mirrors redis-server's own defaults, except MaxBulk, which is
// lower because a proxy buffers the whole command before forwarding it.
var DefaultLimits = Limits{MaxArgs: 1 << 20, MaxBulk: 64 << 20, MaxInline: 64 << 10, MaxMultiLen: 32}

// ProtocolError is a malformed or over-limit client command. Its text is a
// complete Redis error line without the leading '-'.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return e.Msg }

var (
	errMultibulkLen = &ProtocolError{"ERR Protocol error: invalid multibulk length"}
	errBulkLen      = &ProtocolError{"ERR Protocol error: invalid bulk length"}
	errTooManyArgs  = &ProtocolError{"ERR Protocol error: too many arguments in one command"}
	errBulkTooBig   = &ProtocolError{"ERR Protocol error: argument larger than the proxy's limit"}
	errInlineTooBig = &ProtocolError{"ERR Protocol error: too big inline request"}
	errUnbalanced   = &ProtocolError{"ERR Protocol error: unbalanced quotes in request"}
	errExpectedBulk = &ProtocolError{"ERR Protocol error: expected '$'"}
)

// IsProtocolError reports whether err is a client protocol error.
func IsProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

// ParseCommand parses the first command in b.
//
// It returns the number of bytes the command used (0 when b holds only part of
// a command: read more and call again with the same bytes at the front), the
// arguments appended to args[:0] (multibulk arguments alias b; inline ones are
// freshly allocated because quotes may rewrite them), and whether the command
// was inline. need, when n is 0, is a lower bound of the total size the
// command will have, so the caller can grow its buffer once instead of many
// times for a large argument.
//
// An empty inline line ("\r\n") is consumed and returns n > 0 with no args;
// callers skip it, as redis-server does.
func ParseCommand(b []byte, args [][]byte, lim Limits) (n int, out [][]byte, inline bool, need int, err error) {
	out = args[:0]
	if len(b) == 0 {
		return 0, out, false, 0, nil
	}
	if b[0] != '*' {
		return parseInline(b, out, lim)
	}
	count, i, ok, err := parseHeader(b, 1, lim.MaxMultiLen, true, errMultibulkLen)
	if err != nil || !ok {
		return 0, out, false, 0, err
	}
	if count > int64(lim.MaxArgs) {
		return 0, out, false, 0, errTooManyArgs
	}
	if count <= 0 {
		// "*0" and "*-1" are empty commands; redis ignores them.
		return i, out, false, 0, nil
	}
	for j := int64(0); j < count; j++ {
		if i >= len(b) {
			return 0, out[:0], false, 0, nil
		}
		if b[i] != '$' {
			return 0, out[:0], false, 0, errExpectedBulk
		}
		size, next, ok, err := parseHeader(b, i+1, lim.MaxMultiLen, false, errBulkLen)
		if err != nil {
			return 0, out[:0], false, 0, err
		}
		if !ok {
			return 0, out[:0], false, 0, nil
		}
		if size < 0 {
			return 0, out[:0], false, 0, errBulkLen
		}
		if size > int64(lim.MaxBulk) {
			return 0, out[:0], false, 0, errBulkTooBig
		}
		end := next + int(size)
		if end+2 > len(b) {
			return 0, out[:0], false, end + 2, nil
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return 0, out[:0], false, 0, errBulkLen
		}
		out = append(out, b[next:end:end])
		i = end + 2
	}
	return i, out, false, 0, nil
}

// maxHeaderDigits bounds a length header: 18 digits cannot overflow int64,
// and no real command needs more.
const maxHeaderDigits = 18

// parseHeader reads the integer of a "*N\r\n" or "$N\r\n" line whose digits
// start at b[i]. ok is false when the line is not complete yet. Only the
// canonical form redis-server accepts is allowed — no leading zeros, no "-0",
// a sign only where allowNeg — because jupiter forwards the raw bytes, and a
// header a node refuses would make it close the connection every client
// shares.
func parseHeader(b []byte, i, maxLen int, allowNeg bool, bad *ProtocolError) (v int64, next int, ok bool, err error) {
	neg := false
	if i < len(b) && b[i] == '-' {
		if !allowNeg {
			return 0, 0, false, bad
		}
		neg = true
		i++
	}
	limit := min(maxLen, maxHeaderDigits)
	digits := 0
	for ; i < len(b); i++ {
		c := b[i]
		if c == '\r' {
			if i+1 >= len(b) {
				return 0, 0, false, nil
			}
			if b[i+1] != '\n' || digits == 0 || neg && v == 0 {
				return 0, 0, false, bad
			}
			if neg {
				v = -v
			}
			return v, i + 2, true, nil
		}
		if c < '0' || c > '9' || digits == limit || digits == 1 && v == 0 {
			return 0, 0, false, bad
		}
		v = v*10 + int64(c-'0')
		digits++
	}
	return 0, 0, false, nil
}

func parseInline(b []byte, out [][]byte, lim Limits) (n int, args [][]byte, inline bool, need int, err error) {
	end := -1
	for i, c := range b {
		if c == '\n' {
			end = i
			break
		}
	}
	if end < 0 {
		if len(b) > lim.MaxInline {
			return 0, out, true, 0, errInlineTooBig
		}
		return 0, out, true, 0, nil
	}
	if end > lim.MaxInline {
		return 0, out, true, 0, errInlineTooBig
	}
	line := b[:end]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	out, err = SplitArgs(line, out)
	if err != nil {
		return 0, out[:0], true, 0, err
	}
	if len(out) > lim.MaxArgs {
		return 0, out[:0], true, 0, errTooManyArgs
	}
	return end + 1, out, true, 0, nil
}

// AppendQuoted appends arg in double quotes the way redis-cli shows a
// binary string (sdscatrepr): printable ASCII as is, \" \\ \n \r \t \a
// \b escaped, other bytes as \xhh. SplitArgs reads it back.
func AppendQuoted(dst, arg []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range arg {
		switch c {
		case '\\', '"':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\a':
			dst = append(dst, '\\', 'a')
		case '\b':
			dst = append(dst, '\\', 'b')
		default:
			if c < ' ' || c > '~' {
				dst = append(dst, '\\', 'x', hex[c>>4], hex[c&15])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}

// SplitArgs splits an inline command line the way redis-server's
// sdssplitargs does: spaces separate arguments, "double quotes" understand
// \n \r \t \b \a \\ \" and \xHH escapes, 'single quotes' understand \'.
func SplitArgs(line []byte, out [][]byte) ([][]byte, error) {
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return out, nil
		}
		// An argument without quotes is a slice of the line, like a RESP
		// argument is a slice of the read buffer: no copy, no allocation.
		start := i
		for i < len(line) && !isSpace(line[i]) && line[i] != '"' && line[i] != '\'' {
			i++
		}
		if i >= len(line) || isSpace(line[i]) {
			out = append(out, line[start:i:i])
			continue
		}
		i = start
		var arg []byte
		inDQ, inSQ, done := false, false, false
		for !done {
			if inDQ {
				if i >= len(line) {
					return out, errUnbalanced
				}
				c := line[i]
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					arg = append(arg, hexVal(line[i+2])<<4|hexVal(line[i+3]))
					i += 3
				case c == '\\' && i+1 < len(line):
					i++
					arg = append(arg, unescape(line[i]))
				case c == '"':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return out, errUnbalanced
					}
					done = true
				default:
					arg = append(arg, c)
				}
			} else if inSQ {
				if i >= len(line) {
					return out, errUnbalanced
				}
				c := line[i]
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					i++
					arg = append(arg, '\'')
				case c == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return out, errUnbalanced
					}
					done = true
				default:
					arg = append(arg, c)
				}
			} else {
				if i >= len(line) {
					done = true
					break
				}
				switch c := line[i]; c {
				case ' ', '\t', '\r', '\n', '\v', '\f':
					done = true
				case '"':
					inDQ = true
				case '\'':
					inSQ = true
				default:
					arg = append(arg, c)
				}
			}
			if i < len(line) {
				i++
			}
		}
		if arg == nil {
			arg = []byte{}
		}
		out = append(out, arg)
	}
}

// isSpace is C's isspace(), which sdssplitargs uses.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}
func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}

// AppendCommand encodes args as a RESP multibulk command.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = appendHeader(dst, '*', len(args))
	for _, a := range args {
		dst = appendHeader(dst, '$', len(a))
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

func appendHeader(dst []byte, c byte, n int) []byte {
	dst = append(dst, c)
	if n < 10 {
		dst = append(dst, byte('0'+n))
	} else {
		var tmp [20]byte
		i := len(tmp)
		for n > 0 {
			i--
			tmp[i] = byte('0' + n%10)
			n /= 10
		}
		dst = append(dst, tmp[i:]...)
	}
	return append(dst, '\r', '\n')
}

// Printable returns client bytes fit to quote in an error line: at most 64
// bytes, with anything but printable ASCII replaced by '?', so a reply can
// never be split or forged by CR/LF in what a client sent.
func Printable(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < ' ' || c > '~' {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}
