package cluster

import (
	"context"
	"testing"

	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeRing: whatever bytes sit in the ring column (a corrupted row, a
// row written by a newer version), decoding never panics, and a decoded ring
// survives a round trip unchanged.
func FuzzDecodeRing(f *testing.F) {
	r, _ := ring.New(3, []ring.Node{{Addr: "10.0.0.1:6379", Weight: 1}, {Name: "b", Addr: "10.0.0.2:6379", Weight: 3}})
	good, _ := encodeRing(r, Commit{Change: "ADD 10.0.0.2:6379", RequestID: "r1"})
	f.Add(good, uint64(3))
	f.Add([]byte{}, uint64(0))
	f.Add([]byte{0x0a, 0xff, 0xff}, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, version uint64) {
		got, rs, err := decodeRing(b, version)
		if err != nil {
			return
		}
		if got.Version() != version || rs == nil {
			t.Fatalf("decoded ring v%d (want v%d)", got.Version(), version)
		}
		again, err := encodeRing(got, Commit{Stage: rs.GetStage()})
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := decodeRing(again, version)
		if err != nil || !back.Equal(got) {
			t.Fatalf("round trip changed the ring: %v vs %v (%v)", back, got, err)
		}
	})
}

// FuzzHandleLeaderMessage: the leader answers any bytes arriving on its hedge
// port with a decodable reply and never panics; an undecodable or empty
// message changes nothing.
func FuzzHandleLeaderMessage(f *testing.F) {
	add, _ := proto.Marshal(&jupiterv1.LeaderMessage{Msg: &jupiterv1.LeaderMessage_Admin{Admin: &jupiterv1.AdminRequest{
		RequestId: "x", Op: &jupiterv1.AdminRequest_Add{Add: &jupiterv1.AddNode{Addr: "10.0.0.9:6379", Weight: 1}}}}})
	f.Add(add)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, msg []byte) {
		fx := newFixture(t, "10.0.0.1:6379", "10.0.0.2:6379")
		before, err := fx.store.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := fx.ctl.HandleLeaderMessage(context.Background(), msg)
		var rep jupiterv1.LeaderReply
		if err := proto.Unmarshal(out, &rep); err != nil || rep.GetAdmin() == nil {
			t.Fatalf("reply %x does not decode to an admin reply: %v", out, err)
		}
		after, err := fx.store.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !rep.GetAdmin().GetOk() && after.Version != before.Version {
			t.Fatalf("refused request changed the ring: v%d -> v%d", before.Version, after.Version)
		}
	})
}
