package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/hotkeys"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// HotKeysConfig wires a HotKeysExchange.
type HotKeysConfig struct {
	// Self is this pod's hedge address, its name in reports.
	Self string
	// Local is this pod's ranking (hotkeys.Sketch.Top); nil when the pod
	// samples no hot keys (--hotkeys-sample 0).
	Local func(n int, by hotkeys.Rank) []hotkeys.Item
	// Broadcast sends to every member, this pod included (Member.Broadcast).
	Broadcast func(ctx context.Context, msg []byte) []BroadcastResult
	// SendToLeader sends to the leader (Member.SendToLeader).
	SendToLeader func(ctx context.Context, msg []byte) ([]byte, error)
	// Timeout bounds the leader's broadcast: pods that have not answered
	// by then are left out of the merge (default 2s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// HotKeysExchange answers fleet-wide hot-key questions (JUPITER HOTKEYS,
// /v1/hotkeys, jupiter ctl hotkeys), on demand, through the leader:
//
//	any pod ──SendToLeader(HotKeysQuery)──► leader
//	leader ──Broadcast(HotKeysQuery)──► every pod (itself too)
//	every pod ──HotKeysReport (its whole ranking)──► leader
//	leader: hotkeys.Merge (counts summed per key) ──HotKeysReply──► the pod
//
// Nothing is stored or polled: a question costs one broadcast, and pods
// keep only their own sketches. Like every broadcast it reaches the pods
// hedge's member list holds; the reply says how many pods it merged.
// Pods of an older version answer the broadcast with a RingAck and are
// left out; an older leader answers the query with an admin error.
type HotKeysExchange struct {
	cfg HotKeysConfig
	log *slog.Logger
}

// NewHotKeysExchange returns a HotKeysExchange.
func NewHotKeysExchange(cfg HotKeysConfig) (*HotKeysExchange, error) {
	if cfg.Broadcast == nil || cfg.SendToLeader == nil {
		return nil, errors.New("cluster: NewHotKeysExchange needs Broadcast and SendToLeader")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &HotKeysExchange{cfg: cfg, log: lg.With("component", "cluster.hotkeys")}, nil
}

// Fleet asks the leader for the fleet's n hottest keys (n ≤ 0: all); it is
// admin.Observers.Fleet in cluster mode.
func (x *HotKeysExchange) Fleet(ctx context.Context, n int, by hotkeys.Rank) (admin.FleetHotKeys, error) {
	q := &jupiterv1.HotKeysQuery{N: int32(max(n, 0)), ByBytes: by == hotkeys.ByBytes}
	b, err := proto.Marshal(&jupiterv1.LeaderMessage{Msg: &jupiterv1.LeaderMessage_HotKeys{HotKeys: q}})
	if err != nil {
		return admin.FleetHotKeys{}, err
	}
	out, err := x.cfg.SendToLeader(ctx, b)
	if err != nil {
		return admin.FleetHotKeys{}, err
	}
	var lr jupiterv1.LeaderReply
	if err := proto.Unmarshal(out, &lr); err != nil {
		return admin.FleetHotKeys{}, fmt.Errorf("cluster: undecodable reply from leader: %w", err)
	}
	rep := lr.GetHotKeys()
	switch {
	case rep == nil && lr.GetAdmin() != nil:
		return admin.FleetHotKeys{}, fmt.Errorf("cluster: the leader cannot merge hot keys (older version?): %s", lr.GetAdmin().GetError())
	case rep == nil:
		return admin.FleetHotKeys{}, errors.New("cluster: leader replied without hot keys")
	case rep.GetError() != "":
		return admin.FleetHotKeys{}, errors.New(rep.GetError())
	}
	return admin.FleetHotKeys{Keys: itemsOf(rep.GetKeys()), Pods: int(rep.GetPods()), PodsOff: int(rep.GetPodsOff()),
		Leader: rep.GetLeader()}, nil
}

// HandleLeader answers msg on the leader if it is a HotKeysQuery: it
// broadcasts the query, merges the reports and returns the encoded
// LeaderReply. ok is false for any other message (the Controller's).
func (x *HotKeysExchange) HandleLeader(ctx context.Context, msg []byte) (reply []byte, ok bool) {
	var m jupiterv1.LeaderMessage
	if proto.Unmarshal(msg, &m) != nil || m.GetHotKeys() == nil {
		return nil, false
	}
	rep := x.merge(ctx, m.GetHotKeys())
	b, err := proto.Marshal(&jupiterv1.LeaderReply{Msg: &jupiterv1.LeaderReply_HotKeys{HotKeys: rep}})
	if err != nil {
		x.log.Error("encode hot keys reply", "err", err)
	}
	return b, true
}

func (x *HotKeysExchange) merge(ctx context.Context, q *jupiterv1.HotKeysQuery) *jupiterv1.HotKeysReply {
	rep := &jupiterv1.HotKeysReply{Leader: x.cfg.Self}
	b, err := proto.Marshal(&jupiterv1.BroadcastMessage{Msg: &jupiterv1.BroadcastMessage_HotKeysQuery{HotKeysQuery: q}})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	bctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	results := x.cfg.Broadcast(bctx, b)
	cancel()
	var lists [][]hotkeys.Item
	seen := map[string]bool{}
	for _, r := range results {
		var br jupiterv1.BroadcastReply
		if r.Err != nil || proto.Unmarshal(r.Reply, &br) != nil || br.GetHotKeysReport() == nil {
			continue // unreachable, or a pod of an older version (RingAck)
		}
		hr := br.GetHotKeysReport()
		if seen[hr.GetPod()] {
			continue
		}
		seen[hr.GetPod()] = true
		if hr.GetOff() {
			rep.PodsOff++
			continue
		}
		rep.Pods++
		lists = append(lists, itemsOf(hr.GetKeys()))
	}
	by := hotkeys.ByCount
	if q.GetByBytes() {
		by = hotkeys.ByBytes
	}
	rep.Keys = hotKeysOf(hotkeys.Merge(lists, int(q.GetN()), by))
	return rep
}

// HandleBroadcast answers msg if it is a HotKeysQuery with this pod's
// whole ranking. ok is false for any other message.
func (x *HotKeysExchange) HandleBroadcast(msg []byte) (reply []byte, ok bool) {
	var m jupiterv1.BroadcastMessage
	if proto.Unmarshal(msg, &m) != nil || m.GetHotKeysQuery() == nil {
		return nil, false
	}
	rep := &jupiterv1.HotKeysReport{Pod: x.cfg.Self, Off: x.cfg.Local == nil}
	if x.cfg.Local != nil {
		by := hotkeys.ByCount
		if m.GetHotKeysQuery().GetByBytes() {
			by = hotkeys.ByBytes
		}
		rep.Keys = hotKeysOf(x.cfg.Local(0, by))
	}
	b, _ := proto.Marshal(&jupiterv1.BroadcastReply{Msg: &jupiterv1.BroadcastReply_HotKeysReport{HotKeysReport: rep}})
	return b, true
}

func hotKeysOf(items []hotkeys.Item) []*jupiterv1.HotKey {
	out := make([]*jupiterv1.HotKey, len(items))
	for i, it := range items {
		out[i] = &jupiterv1.HotKey{Key: []byte(it.Key), KeyBytes: int64(it.KeyBytes), Node: it.Node, Count: it.Count,
			Bytes: it.Bytes, Reads: it.Reads, Writes: it.Writes, Pods: int32(it.Pods)}
	}
	return out
}

func itemsOf(keys []*jupiterv1.HotKey) []hotkeys.Item {
	out := make([]hotkeys.Item, len(keys))
	for i, k := range keys {
		key := string(k.GetKey())
		out[i] = hotkeys.Item{Key: key, ID: hotkeys.ID(key), KeyBytes: int(k.GetKeyBytes()), Node: k.GetNode(),
			Count: k.GetCount(), Bytes: k.GetBytes(), Reads: k.GetReads(), Writes: k.GetWrites(), Pods: int(k.GetPods())}
	}
	return out
}
