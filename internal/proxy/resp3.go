package proxy

import (
	"bytes"
	"strconv"

	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/tidwall/redcon"
)

// RESP3.
//
// HELLO 3 switches a client to RESP3 for the rest of its connection (HELLO
// 2 switches back). Replies that come from a node pass through untouched,
// so they must already be RESP3: a RESP3 client's requests go to the node's
// RESP3 connections (backend.Node.Enqueue3, multiplexed like the RESP2
// ones; dedicated connections are switched with HELLO when borrowed; the
// rebalance path uses RESP3 control clients). What jupiter writes itself
// follows the client's protocol: nulls ("_"), maps (HELLO, CONFIG GET),
// verbatim strings (INFO, CLIENT INFO/LIST) and push frames for pub/sub,
// exactly as redis-server sends them. Merged replies are built from the
// nodes' RESP3 elements, so they are RESP3 as well.
//
// A RESP3 subscriber may run any command while subscribed, as in Redis.

// resp3 reports whether the client switched to RESP3.
func (s *session) resp3() bool { return s.cs != nil && s.cs.resp3 }

// proto is the client's RESP version.
func (s *session) proto() int {
	if s.resp3() {
		return 3
	}
	return 2
}

// appendNull is the null reply in the client's protocol.
func appendNull(dst []byte, resp3 bool) []byte {
	if resp3 {
		return append(dst, "_\r\n"...)
	}
	return append(dst, "$-1\r\n"...)
}

// appendNullArray is a null array reply (a blocking command's timeout, an
// EXEC aborted by WATCH): RESP3 has one null for both.
func appendNullArray(dst []byte, resp3 bool) []byte {
	if resp3 {
		return append(dst, "_\r\n"...)
	}
	return append(dst, "*-1\r\n"...)
}

// appendMap starts a map of n pairs (RESP3), or a flat array of 2n (RESP2).
func appendMap(dst []byte, n int, resp3 bool) []byte {
	if resp3 {
		return append(strconv.AppendInt(append(dst, '%'), int64(n), 10), '\r', '\n')
	}
	return redcon.AppendArray(dst, 2*n)
}

// appendText is a bulk string, or in RESP3 the verbatim string ("txt")
// Redis uses for INFO and CLIENT INFO/LIST.
func appendText(dst []byte, text string, resp3 bool) []byte {
	if !resp3 {
		return redcon.AppendBulkString(dst, text)
	}
	dst = append(strconv.AppendInt(append(dst, '='), int64(len(text)+4), 10), "\r\ntxt:"...)
	return append(append(dst, text...), '\r', '\n')
}

// appendPush starts a pub/sub frame of n elements: a push in RESP3.
func appendPush(dst []byte, n int, resp3 bool) []byte {
	if resp3 {
		return append(strconv.AppendInt(append(dst, '>'), int64(n), 10), '\r', '\n')
	}
	return redcon.AppendArray(dst, n)
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]].
func (s *session) hello(args [][]byte) {
	proto := s.proto()
	if len(args) > 1 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			s.errorReply("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			s.errorReply("NOPROTO unsupported protocol version")
			return
		}
		proto = v
	}
	var name []byte
	setName := false
	for i := 2; i < len(args); i++ {
		left := len(args) - i - 1
		switch {
		case bytes.EqualFold(args[i], []byte("auth")) && left >= 2:
			if !s.login(string(args[i+1]), args[i+2]) {
				return
			}
			i += 2
		case bytes.EqualFold(args[i], []byte("setname")) && left >= 1:
			if bytes.ContainsAny(args[i+1], " \n") {
				s.errorReply("ERR Client names cannot contain spaces, newlines or special characters.")
				return
			}
			name, setName = args[i+1], true
			i++
		default:
			s.errorReply("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
			return
		}
	}
	if !s.authed {
		s.errorReply("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if setName {
		s.state().name = string(name)
	}
	if proto == 3 {
		s.state().resp3 = true
	} else if s.cs != nil {
		s.cs.resp3 = false
	}
	r3 := proto == 3
	b := appendMap(s.enc[:0], 7, r3)
	b = redcon.AppendBulkString(b, "server")
	b = redcon.AppendBulkString(b, "redis")
	b = redcon.AppendBulkString(b, "version")
	b = redcon.AppendBulkString(b, s.srv.opts.RedisVersion)
	b = redcon.AppendBulkString(b, "proto")
	b = redcon.AppendInt(b, int64(proto))
	b = redcon.AppendBulkString(b, "id")
	b = redcon.AppendInt(b, int64(s.id))
	b = redcon.AppendBulkString(b, "mode")
	b = redcon.AppendBulkString(b, "standalone")
	b = redcon.AppendBulkString(b, "role")
	b = redcon.AppendBulkString(b, "master")
	b = redcon.AppendBulkString(b, "modules")
	b = redcon.AppendArray(b, 0)
	s.localReply(b)
	s.enc = b[:0]
}

// textOf is the text of a bulk string, or of a RESP3 verbatim string
// (without its "txt:" format prefix).
func textOf(reply []byte) ([]byte, bool) {
	if len(reply) > 0 && reply[0] == '=' {
		b := append([]byte{'$'}, reply[1:]...)
		body, null, ok := resp.Bulk(b)
		if !ok || null || len(body) < 4 {
			return nil, false
		}
		return body[4:], true
	}
	body, null, ok := resp.Bulk(reply)
	return body, ok && !null
}
