package proxy

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

// delayLink forwards TCP connections to target, holding every byte the
// target sends for delay: a node whose replies travel a slow link.
func delayLink(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	type chunk struct {
		at time.Time
		b  []byte
	}
	return serveTCP(t, func(in net.Conn) {
		out, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer out.Close()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		ch := make(chan chunk, 1024)
		go func() { // target → client: read at once, written after delay
			defer close(ch)
			buf := make([]byte, 64<<10)
			for {
				n, err := out.Read(buf)
				if n > 0 {
					ch <- chunk{time.Now().Add(delay), append([]byte(nil), buf[:n]...)}
				}
				if err != nil {
					return
				}
			}
		}()
		for c := range ch {
			time.Sleep(time.Until(c.at))
			if _, err := in.Write(c.b); err != nil {
				return
			}
		}
	})
}

// TestPubSubOrderAcrossMove: a publisher that published on a moving
// channel's old owner (a pod still routing by the old ring), then on its
// new owner, is heard in that order, even when the old owner's messages
// travel slower: the new owner's message waits for a barrier on the old
// owner's connection. Without it the second message arrives first.
func TestPubSubOrderAcrossMove(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	for _, proto := range []string{"2", "3"} {
		t.Run("RESP"+proto, func(t *testing.T) {
			a, b, c := testenv.StartRedis(t), testenv.StartRedis(t), testenv.StartRedis(t)
			slow := delayLink(t, a.Addr, 300*time.Millisecond)
			R, T := ringOf(t, 1, slow, b.Addr), ringOf(t, 1, slow, b.Addr, c.Addr)
			px := startProxyRing(t, R, backend.Options{}, Options{})
			rt := px.srv.Router()
			var ch string
			for i := 0; ch == ""; i++ {
				k := "ch:" + strconv.Itoa(i)
				if R.Node(R.Owner([]byte(k))).Addr == slow && T.Node(T.Owner([]byte(k))).Addr == c.Addr {
					ch = k
				}
			}
			sub, pub := dial(t, px.addr), dial(t, px.addr)
			if proto == "3" {
				if r := sub.do("HELLO", "3"); !strings.HasPrefix(r, "%") {
					t.Fatalf("HELLO 3 = %q", r)
				}
			}
			sub.send(cmd("SUBSCRIBE", ch) + cmd("PSUBSCRIBE", "ch:*"))
			sub.replies(2)
			for _, st := range []string{StagePrepare, StageFreeze} {
				if !rt.ApplyStage(R, &Migration{Stage: st, Target: T, Epoch: 9}) {
					t.Fatalf("ApplyStage(%s) refused", st)
				}
			}
			// A pod still in PREPARE publishes on the old owner; once that
			// returned, the publisher's next message goes through this pod
			// (FREEZE) to the new owner.
			if got := testenv.Cli(t, a.Addr, "PUBLISH", ch, "first"); !strings.HasSuffix(got, "2") {
				t.Fatalf("PUBLISH on the old owner = %q, want 2 receivers", got)
			}
			if got := pub.do("PUBLISH", ch, "second"); got != ":2\r\n" {
				t.Fatalf("PUBLISH through jupiter = %q", got)
			}
			var order []string
			for _, f := range sub.replies(4) {
				kind := "message"
				if strings.Contains(f, "pmessage") {
					kind = "pmessage"
				}
				switch {
				case strings.Contains(f, "first"):
					order = append(order, kind+":first")
				case strings.Contains(f, "second"):
					order = append(order, kind+":second")
				default:
					t.Fatalf("unexpected frame %q", f)
				}
			}
			want := []string{"message:first", "pmessage:first", "message:second", "pmessage:second"}
			if strings.Join(order, " ") != strings.Join(want, " ") {
				t.Fatalf("delivered %v, want %v", order, want)
			}
			// Outside a move nothing is held: a message on a channel that
			// stays comes straight through.
			if got := sub.do("PING"); proto == "2" && got != "*2\r\n$4\r\npong\r\n$0\r\n\r\n" {
				t.Fatalf("PING = %q (nothing may be pending)", got)
			}
		})
	}
}
