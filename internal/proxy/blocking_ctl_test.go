package proxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// slowNode is a fake Redis node that answers every command at once except
// those named in delay (upper-case name, "CLIENT ID" for the subcommand),
// which it answers after the given time: CLIENT ID with :7, EVAL with :1,
// BLPOP with a nil array, PING with PONG, anything else with OK.
func slowNode(t *testing.T, delay map[string]time.Duration) string {
	t.Helper()
	return serveTCP(t, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		for {
			args, err := readCommand(br)
			if err != nil {
				return
			}
			name := strings.ToUpper(args[0])
			if name == "CLIENT" && len(args) > 1 {
				name += " " + strings.ToUpper(args[1])
			}
			time.Sleep(delay[name])
			reply := "+OK\r\n"
			switch name {
			case "CLIENT ID":
				reply = ":7\r\n"
			case "EVAL":
				reply = ":1\r\n"
			case "BLPOP":
				reply = "*-1\r\n"
			case "PING":
				reply = "+PONG\r\n"
			}
			if _, err := io.WriteString(nc, reply); err != nil {
				return
			}
		}
	})
}

// readCommand reads one RESP array of bulk strings.
func readCommand(br *bufio.Reader) ([]string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil || n < 1 {
		return nil, io.ErrUnexpectedEOF
	}
	args := make([]string, n)
	for i := range args {
		if line, err = br.ReadString('\n'); err != nil {
			return nil, err
		}
		l, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil {
			return nil, err
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:l])
	}
	return args, nil
}

// TestBlockingControlReplyLate: a blocking command is sent after CLIENT ID
// (and, with hash= placing its key elsewhere, the records' preset) on its
// own connection; when the node answers one of those later than
// ControlTimeout, the client must get an error, never that late control
// reply as the blocking command's reply (the connection still delivers it
// after the timeout).
func TestBlockingControlReplyLate(t *testing.T) {
	const timeout = 100 * time.Millisecond
	for _, c := range []struct {
		name, slow string
		args       []string
	}{
		{"client id", "CLIENT ID", []string{"BLPOP", "k", "1"}},
		{"preset", "EVAL", []string{"BLPOP", "k", "1", "hash=x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if ring.Slot([]byte("k")) == ring.Slot([]byte("x")) {
				t.Fatal("k and x share a slot: the preset case needs keys placed elsewhere")
			}
			node := slowNode(t, map[string]time.Duration{c.slow: 3 * timeout})
			p := startProxyRing(t, ringOf(t, 1, node), backend.Options{}, Options{HashPrefix: "hash=", ControlTimeout: timeout})
			cl := dial(t, p.addr)
			r := cl.do(c.args...)
			if !strings.HasPrefix(r, "-") {
				t.Fatalf("%q with the node answering %s after %v (ControlTimeout %v): %q, want an error", c.args, c.slow, 3*timeout, timeout, r)
			}
			t.Logf("%q: %q", c.args, r)
		})
	}
}
