package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/alphauslabs/jupiter/internal/hotkeys"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// TestHotKeysExchange: a question asked on any pod goes to the leader,
// which broadcasts it and merges every pod's ranking (counts summed per
// key); a pod with hot keys off, an unreachable one, a duplicated reply
// and a pod of an older version (RingAck) are counted or left out, not
// merged; an older leader's admin error is an error.
func TestHotKeysExchange(t *testing.T) {
	rankings := map[string][]hotkeys.Item{
		"pod-a": {{Key: "a-hot", KeyBytes: 5, Node: "n1", Count: 100, Bytes: 10, Reads: 100}, {Key: "both", KeyBytes: 4, Node: "n2", Count: 5}},
		"pod-b": {{Key: "b-hot", KeyBytes: 5, Node: "n2", Count: 70, Bytes: 7000, Writes: 70}, {Key: "both", KeyBytes: 4, Node: "n2", Count: 6}},
	}
	var xs []*HotKeysExchange
	var leader *HotKeysExchange
	broadcast := func(_ context.Context, msg []byte) []BroadcastResult {
		var out []BroadcastResult
		for _, x := range xs {
			rep, ok := x.HandleBroadcast(msg)
			if !ok {
				t.Fatal("a pod did not recognise the hot-keys query")
			}
			out = append(out, BroadcastResult{Reply: rep})
		}
		ack, _ := proto.Marshal(&jupiterv1.BroadcastReply{Msg: &jupiterv1.BroadcastReply_RingAck{RingAck: &jupiterv1.RingAck{Pod: "old"}}})
		out = append(out, BroadcastResult{Reply: ack}, BroadcastResult{Err: errors.New("unreachable")}, out[0])
		return out
	}
	send := func(ctx context.Context, msg []byte) ([]byte, error) {
		rep, ok := leader.HandleLeader(ctx, msg)
		if !ok {
			t.Fatal("the leader did not recognise the hot-keys query")
		}
		return rep, nil
	}
	for _, pod := range []string{"pod-a", "pod-b", "pod-off"} {
		cfg := HotKeysConfig{Self: pod, Broadcast: broadcast, SendToLeader: send}
		if r, ok := rankings[pod]; ok {
			cfg.Local = func(n int, by hotkeys.Rank) []hotkeys.Item {
				if n != 0 {
					t.Errorf("a pod was asked for %d keys, want its whole ranking", n)
				}
				return r
			}
		}
		x, err := NewHotKeysExchange(cfg)
		if err != nil {
			t.Fatal(err)
		}
		xs = append(xs, x)
	}
	leader = xs[0]
	for _, asker := range xs {
		f, err := asker.Fleet(context.Background(), 2, hotkeys.ByCount)
		if err != nil {
			t.Fatal(err)
		}
		if f.Pods != 2 || f.PodsOff != 1 || f.Leader != "pod-a" || len(f.Keys) != 2 {
			t.Fatalf("Fleet = %+v", f)
		}
		if k := f.Keys[0]; k.Key != "a-hot" || k.Count != 100 || k.Pods != 1 || k.Node != "n1" || k.ID != hotkeys.ID("a-hot") {
			t.Errorf("hottest = %+v", k)
		}
		if k := f.Keys[1]; k.Key != "b-hot" || k.Count != 70 || k.Writes != 70 {
			t.Errorf("second = %+v", k)
		}
	}
	f, err := xs[2].Fleet(context.Background(), 0, hotkeys.ByBytes)
	if err != nil || len(f.Keys) != 3 || f.Keys[0].Key != "b-hot" || f.Keys[2].Key != "both" || f.Keys[2].Count != 11 || f.Keys[2].Pods != 2 {
		t.Errorf("Fleet by bytes, all = %+v, %v", f, err)
	}

	old := &HotKeysExchange{cfg: HotKeysConfig{SendToLeader: func(context.Context, []byte) ([]byte, error) {
		return proto.Marshal(&jupiterv1.LeaderReply{Msg: &jupiterv1.LeaderReply_Admin{Admin: &jupiterv1.AdminReply{Error: "cluster: unknown leader message"}}})
	}}}
	if _, err := old.Fleet(context.Background(), 10, hotkeys.ByCount); err == nil {
		t.Error("an older leader's admin error is not an error")
	}
	if _, ok := leader.HandleLeader(context.Background(), []byte("\x0a\x00")); ok {
		t.Error("HandleLeader took an admin message")
	}
	if _, ok := leader.HandleBroadcast([]byte("\x0a\x00")); ok {
		t.Error("HandleBroadcast took a RingUpdated")
	}
}
