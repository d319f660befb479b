package proxy

import (
	"strconv"
	"strings"
	"testing"

	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/test/testenv"
)

func TestPubSubAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	var addrs []string
	for range 3 {
		addrs = append(addrs, testenv.StartRedis(t).Addr)
	}
	px := startProxy(t, addrs, backend.Options{})
	sub, pub := dial(t, px.addr), dial(t, px.addr)
	r := ringOf(t, 1, addrs...)
	// Channels on every node.
	var chans []string
	seen := map[int]bool{}
	for i := 0; len(seen) < 3; i++ {
		ch := "ch" + strconv.Itoa(i)
		if n := r.Owner([]byte(ch)); !seen[n] {
			seen[n] = true
			chans = append(chans, ch)
		}
	}
	sub.send(cmd(append([]string{"SUBSCRIBE"}, chans...)...))
	for i, ch := range chans {
		if got, want := sub.reply(), "*3\r\n$9\r\nsubscribe\r\n$"+strconv.Itoa(len(ch))+"\r\n"+ch+"\r\n:"+strconv.Itoa(i+1)+"\r\n"; got != want {
			t.Fatalf("subscribe reply %d = %q, want %q", i, got, want)
		}
	}
	if got := sub.do("PSUBSCRIBE", "p*"); got != "*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:4\r\n" {
		t.Fatalf("PSUBSCRIBE = %q", got)
	}
	for _, a := range addrs {
		if n := px.pool.Node(a).DedicatedInUse(); n != 1 {
			t.Errorf("node %s: %d dedicated connections, want 1 (one per node for the subscriber)", a, n)
		}
	}
	if got := sub.do("GET", "k"); !strings.HasPrefix(got, "-ERR Can't execute 'get'") {
		t.Errorf("GET while subscribed = %q", got)
	}
	if got := sub.do("PING"); got != "*2\r\n$4\r\npong\r\n$0\r\n\r\n" {
		t.Errorf("PING while subscribed = %q", got)
	}
	for _, ch := range chans {
		if got := pub.do("PUBLISH", ch, "m-"+ch); got != ":1\r\n" {
			t.Fatalf("PUBLISH %s = %q", ch, got)
		}
		if got, want := sub.reply(), "*3\r\n$7\r\nmessage\r\n$"+strconv.Itoa(len(ch))+"\r\n"+ch+"\r\n$"+strconv.Itoa(len(ch)+2)+"\r\nm-"+ch+"\r\n"; got != want {
			t.Fatalf("message = %q, want %q", got, want)
		}
	}
	// A pattern matches channels of every node; each message arrives once.
	for i := range 12 {
		ch := "pc" + strconv.Itoa(i)
		if got := pub.do("PUBLISH", ch, "x"); got != ":1\r\n" {
			t.Fatalf("PUBLISH %s = %q", ch, got)
		}
		if got, want := sub.reply(), "*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$"+strconv.Itoa(len(ch))+"\r\n"+ch+"\r\n$1\r\nx\r\n"; got != want {
			t.Fatalf("pmessage = %q, want %q", got, want)
		}
	}
	if got := pub.do("PUBSUB", "NUMSUB", chans[0], "none"); got != "*4\r\n$"+strconv.Itoa(len(chans[0]))+"\r\n"+chans[0]+"\r\n:1\r\n$4\r\nnone\r\n:0\r\n" {
		t.Errorf("PUBSUB NUMSUB = %q", got)
	}
	if got := pub.do("PUBSUB", "NUMPAT"); got != ":1\r\n" {
		t.Errorf("PUBSUB NUMPAT = %q (the pattern is on every node, counted once)", got)
	}
	if got := pub.do("PUBSUB", "CHANNELS"); !strings.HasPrefix(got, "*3\r\n") {
		t.Errorf("PUBSUB CHANNELS = %q", got)
	}
	sub.send(cmd("UNSUBSCRIBE"))
	for i := range chans {
		if got := sub.reply(); !strings.HasPrefix(got, "*3\r\n$11\r\nunsubscribe\r\n") || !strings.HasSuffix(got, ":"+strconv.Itoa(3-i)+"\r\n") {
			t.Fatalf("unsubscribe reply %d = %q", i, got)
		}
	}
	if got := sub.do("PUNSUBSCRIBE"); got != "*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n" {
		t.Fatalf("PUNSUBSCRIBE = %q", got)
	}
	if got := sub.do("SET", "k", "v"); got != "+OK\r\n" {
		t.Errorf("SET after leaving subscribed state = %q", got)
	}
	waitFor(t, "the subscriber's connections closed", func() bool {
		for _, a := range addrs {
			if px.pool.Node(a).DedicatedInUse() != 0 {
				return false
			}
		}
		return px.srv.Stats.Subscribers.Load() == 0
	})
	// A subscriber that disconnects leaves nothing behind.
	c := dial(t, px.addr)
	c.send(cmd("SUBSCRIBE", chans[0]) + cmd("PSUBSCRIBE", "q*"))
	c.replies(2)
	c.nc.Close()
	waitFor(t, "a gone subscriber's connections closed", func() bool {
		for _, a := range addrs {
			if px.pool.Node(a).DedicatedInUse() != 0 {
				return false
			}
		}
		return px.srv.Stats.Subscribers.Load() == 0
	})
	if got := pub.do("PUBLISH", chans[0], "x"); got != ":0\r\n" {
		t.Errorf("PUBLISH after the subscriber left = %q", got)
	}
}

// TestPubSubFollowsRebalance: a channel whose slot moves is listened to on
// its old and its new owner from PREPARE on; PUBLISH goes to the new owner
// from FREEZE on; after COMMIT the old subscription is dropped. A pattern
// reaches the added node from PREPARE on.
func TestPubSubFollowsRebalance(t *testing.T) {
	e := newMigEnv(t, Options{})
	ch := e.key("chan", true)
	oldAddr := e.R.Node(e.R.Owner([]byte(ch))).Addr
	newAddr := e.T.Node(e.T.Owner([]byte(ch))).Addr
	added := e.T.Node(e.T.Len() - 1).Addr
	sub, pub := dial(t, e.px.addr), dial(t, e.px.addr)
	sub.send(cmd("SUBSCRIBE", ch) + cmd("PSUBSCRIBE", "pat*"))
	sub.replies(2)
	numsub := func(addr string) string { return testenv.Cli(t, addr, "PUBSUB", "NUMSUB", ch) }
	numpat := func(addr string) string { return testenv.Cli(t, addr, "PUBSUB", "NUMPAT") }
	if !strings.HasSuffix(numsub(oldAddr), "1") || !strings.HasSuffix(numsub(newAddr), "0") {
		t.Fatalf("before: NUMSUB old %q new %q", numsub(oldAddr), numsub(newAddr))
	}
	e.stage(t, StagePrepare, 9) // returns once the subscriber listens on the new owner too
	if !strings.HasSuffix(numsub(newAddr), "1") || !strings.HasSuffix(numsub(oldAddr), "1") {
		t.Fatalf("prepare: NUMSUB old %q new %q, want both 1", numsub(oldAddr), numsub(newAddr))
	}
	if !strings.HasSuffix(numpat(added), "1") {
		t.Fatalf("prepare: NUMPAT on the added node = %q", numpat(added))
	}
	msg := func(payload string) string {
		return "*3\r\n$7\r\nmessage\r\n$" + strconv.Itoa(len(ch)) + "\r\n" + ch + "\r\n$" + strconv.Itoa(len(payload)) + "\r\n" + payload + "\r\n"
	}
	for i, st := range []string{StageFreeze, StageMigrating} {
		e.stage(t, st, 9)
		p := "m" + strconv.Itoa(i)
		if got := pub.do("PUBLISH", ch, p); got != ":1\r\n" {
			t.Fatalf("%s: PUBLISH = %q", st, got)
		}
		if got := sub.reply(); got != msg(p) {
			t.Fatalf("%s: message = %q", st, got)
		}
	}
	// A publisher still routing by the old ring reaches the subscriber too.
	if got := testenv.Cli(t, oldAddr, "PUBLISH", ch, "late"); !strings.HasSuffix(got, "1") {
		t.Fatalf("PUBLISH on the old owner during MIGRATING = %q", got)
	}
	if got := sub.reply(); got != msg("late") {
		t.Fatalf("message from the old owner = %q", got)
	}
	if !e.rt.ApplyStage(e.T, nil) {
		t.Fatal("commit refused")
	}
	if !strings.HasSuffix(numsub(oldAddr), "0") || !strings.HasSuffix(numsub(newAddr), "1") {
		t.Fatalf("after commit: NUMSUB old %q new %q", numsub(oldAddr), numsub(newAddr))
	}
	if got := pub.do("PUBLISH", ch, "after"); got != ":1\r\n" {
		t.Fatalf("PUBLISH after commit = %q", got)
	}
	if got := sub.reply(); got != msg("after") {
		t.Fatalf("message after commit = %q", got)
	}
	if got := sub.do("PING", "x"); got != "*2\r\n$4\r\npong\r\n$1\r\nx\r\n" {
		t.Fatalf("no duplicate may be pending: PING = %q", got)
	}
}
