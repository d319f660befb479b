package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
)

// fakeAPI is an AdminAPI over a Controller on a MemStore, with knobs for
// the failures Submit can meet.
type fakeAPI struct {
	f         *fixture
	status    Status
	storeErr  error
	submitErr error
	submits   int
}

func (a *fakeAPI) Status() Status { return a.status }
func (a *fakeAPI) State() *State {
	st, err := a.f.store.Load(context.Background())
	if err != nil {
		return nil
	}
	return st
}
func (a *fakeAPI) StoreError() error { return a.storeErr }
func (a *fakeAPI) Submit(ctx context.Context, req *jupiterv1.AdminRequest) (*jupiterv1.AdminReply, error) {
	a.submits++
	if a.submitErr != nil {
		return nil, a.submitErr
	}
	return a.f.ctl.Apply(ctx, req), nil
}

func TestAdminControllerApply(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "10.0.0.10:6379", "10.0.0.11:6379")
	f.pinger.down["10.0.0.99:6379"] = true
	api := &fakeAPI{f: f, status: Status{Self: "10.0.0.2:7000", Leader: "10.0.0.1:7000"}}
	a := &AdminController{C: api}

	v, err := a.Apply(ctx, admin.Change{Op: "add", Addr: "10.0.0.12:6379", Weight: 2})
	if err != nil || v != 2 {
		t.Fatalf("add: v%d %v", v, err)
	}
	for _, c := range []struct {
		ch   admin.Change
		kind error
		msg  string
	}{
		{admin.Change{Op: "add", Addr: "10.0.0.12:6379", Weight: 1}, admin.ErrExists, "already in the ring"},
		{admin.Change{Op: "remove", Addr: "10.0.0.77:6379"}, admin.ErrNotFound, "not in the ring"},
		{admin.Change{Op: "weight", Addr: "10.0.0.77:6379", Weight: 3}, admin.ErrNotFound, "not in the ring"},
		{admin.Change{Op: "add", Addr: "10.0.0.99:6379", Weight: 1}, admin.ErrInvalid, "unreachable"},
		{admin.Change{Op: "frob", Addr: "10.0.0.10:6379"}, admin.ErrInvalid, "unknown change"},
	} {
		v, err := a.Apply(ctx, c.ch)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) || v != 2 {
			t.Errorf("%+v: v%d %v, want %v …%s…", c.ch, v, err, c.kind, c.msg)
		}
	}
	if st := f.mustRing(t); st.Version != 2 {
		t.Fatalf("refusals changed the ring: v%d", st.Version)
	}

	// Spanner down: refused at once, without bothering the leader.
	api.storeErr = errors.New("spanner: unavailable")
	n := api.submits
	v, err = a.Apply(ctx, admin.Change{Op: "remove", Addr: "10.0.0.12:6379"})
	if !errors.Is(err, admin.ErrUnavailable) || !strings.Contains(err.Error(), "Spanner is unreachable") ||
		!strings.Contains(err.Error(), "ring v2") || v != 2 || api.submits != n {
		t.Fatalf("with the store down: v%d %v (submits %d→%d)", v, err, n, api.submits)
	}
	api.storeErr = nil

	// Leader unreachable: unavailable, says who and that retrying is safe.
	api.submitErr = errors.New("cluster: send to leader: context deadline exceeded")
	_, err = a.Apply(ctx, admin.Change{Op: "remove", Addr: "10.0.0.12:6379"})
	if !errors.Is(err, admin.ErrUnavailable) || !strings.Contains(err.Error(), "no answer from the leader (10.0.0.1:7000)") ||
		!strings.Contains(err.Error(), "retrying it is safe") {
		t.Fatalf("leader unreachable: %v", err)
	}
	api.submitErr = nil

	// The fence refuses: temporary, says retry.
	f.fence.err = ErrNotLeader
	_, err = a.Apply(ctx, admin.Change{Op: "remove", Addr: "10.0.0.12:6379"})
	if !errors.Is(err, admin.ErrUnavailable) || !strings.HasSuffix(err.Error(), "(retry)") {
		t.Fatalf("not leader: %v", err)
	}
	f.fence.err = nil

	// Last node.
	for _, addr := range []string{"10.0.0.12:6379", "10.0.0.11:6379"} {
		if _, err := a.Apply(ctx, admin.Change{Op: "remove", Addr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Apply(ctx, admin.Change{Op: "remove", Addr: "10.0.0.10:6379"}); !errors.Is(err, admin.ErrInvalid) || !strings.Contains(err.Error(), "last node") {
		t.Fatalf("last node: %v", err)
	}
}

func TestAdminControllerStatus(t *testing.T) {
	f := newFixture(t, "10.0.0.10:6379", "10.0.0.11:6379")
	synced := time.Now().Add(-time.Second)
	api := &fakeAPI{f: f, status: Status{
		Self: "10.0.0.2:7000", Leader: "10.0.0.1:7000", Members: []string{"10.0.0.2:7000", "10.0.0.1:7000"},
		RingVersion: 1, Stage: StageStable, Ready: true, Change: "SEED x", RingLeader: "10.0.0.1:7000",
		LastSync: synced, SpannerError: "spanner:\n down",
	}}
	a := &AdminController{C: api, NodeUp: func() map[string]bool { return map[string]bool{"10.0.0.10:6379": true} }}
	st := a.Status(context.Background())
	if st.Mode != "cluster" || st.Self != "10.0.0.2:7000" || st.Leader != "10.0.0.1:7000" || st.RingVersion != 1 ||
		st.Stage != "stable" || len(st.Nodes) != 2 || !st.Nodes[0].Up || st.Nodes[1].Up ||
		st.Nodes[0].Slots+st.Nodes[1].Slots != ring.Slots {
		t.Fatalf("status = %+v", st)
	}
	text := admin.FormatStatus(st)
	for _, want := range []string{
		"mode:cluster\r\n", "self:10.0.0.2:7000\r\n", "leader:10.0.0.1:7000\r\n", "ring_version:1\r\n",
		"stage:stable\r\n", "nodes:10.0.0.10:6379,10.0.0.11:6379\r\n", "members:10.0.0.1:7000,10.0.0.2:7000\r\n",
		"is_leader:0\r\n", "ready:1\r\n", "ring_change:SEED x\r\n", "ring_leader:10.0.0.1:7000\r\n",
		"last_sync:" + synced.UTC().Format(time.RFC3339Nano) + "\r\n", "spanner_error:spanner: down\r\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("STATUS lacks %q:\n%s", want, text)
		}
	}

	// No ring yet: version 0, no nodes, still every line.
	a = &AdminController{C: &fakeAPI{f: newFixture(t), status: Status{Self: "s", Stage: StageStable}}}
	st = a.Status(context.Background())
	if st.RingVersion != 0 || len(st.Nodes) != 0 || !strings.Contains(admin.FormatStatus(st), "nodes:\r\n") {
		t.Fatalf("status without a ring = %+v", st)
	}
}
