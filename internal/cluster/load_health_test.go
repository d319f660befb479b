package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/capacity"
	"github.com/alphauslabs/jupiter/internal/health"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// healthPod is one pod of the fleet health test: its own view of the
// nodes and the verdicts it was handed.
type healthPod struct {
	x      *LoadExchange
	self   string
	leader bool

	mu       sync.Mutex
	reach    map[string]string
	verdicts []health.Verdict
}

func (p *healthPod) set(addr, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reach[addr] = why
}

func (p *healthPod) last() (health.Verdict, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.verdicts) == 0 {
		return health.Verdict{}, 0
	}
	return p.verdicts[len(p.verdicts)-1], len(p.verdicts)
}

// healthFleet wires 3 pods (the first leads) over an in-memory broadcast
// that reaches the pods reach says; it counts the FleetHealth broadcasts.
func healthFleet(t *testing.T) (pods []*healthPod, reach func(i int, ok bool), fleetMsgs func() int) {
	t.Helper()
	var mu sync.Mutex
	cut := map[int]bool{}
	msgs := 0
	for i := range 3 {
		pods = append(pods, &healthPod{self: string(rune('a' + i)), leader: i == 0,
			reach: map[string]string{"n1": "", "n2": ""}})
	}
	broadcast := func(_ context.Context, msg []byte) []BroadcastResult {
		var m jupiterv1.BroadcastMessage
		if proto.Unmarshal(msg, &m) == nil && m.GetFleetHealth() != nil {
			mu.Lock()
			msgs++
			mu.Unlock()
		}
		var out []BroadcastResult
		for i, p := range pods {
			mu.Lock()
			c := cut[i]
			mu.Unlock()
			if c {
				continue
			}
			rep, ok := p.x.Handle(msg)
			if !ok {
				t.Errorf("pod %d did not take the message", i)
			}
			out = append(out, BroadcastResult{ID: p.self, Reply: rep})
		}
		return out
	}
	for _, p := range pods {
		x, err := NewLoadExchange(LoadConfig{Interval: time.Second, Self: p.self,
			IsLeader: func() bool { return p.leader }, Broadcast: broadcast,
			PodLoad: func() map[string]float64 { return nil }, SetFleet: func(capacity.Fleet) {},
			PodHealth: func() map[string]string {
				p.mu.Lock()
				defer p.mu.Unlock()
				out := map[string]string{}
				for k, v := range p.reach {
					out[k] = v
				}
				return out
			},
			SetHealth: func(v health.Verdict) {
				p.mu.Lock()
				defer p.mu.Unlock()
				p.verdicts = append(p.verdicts, v)
			},
			Members: func() int { return 3 }})
		if err != nil {
			t.Fatal(err)
		}
		p.x = x
	}
	return pods, func(i int, ok bool) {
			mu.Lock()
			defer mu.Unlock()
			cut[i] = !ok
		}, func() int {
			mu.Lock()
			defer mu.Unlock()
			return msgs
		}
}

// TestLoadExchangeHealth: the leader decides from every pod's reports; one
// pod's view alone changes nothing; a quorum marks a node down and every
// pod gets the verdict at once (a FleetHealth broadcast), with who
// reported it; recovery too; a new leader starts from the verdict it was
// handed; a follower that stops hearing from any leader drops it.
func TestLoadExchangeHealth(t *testing.T) {
	pods, reach, fleetMsgs := healthFleet(t)
	leader := pods[0]
	ctx := context.Background()
	down := func(p *healthPod) []string { v, _ := p.last(); return v.DownNodes() }

	leader.x.Poll(ctx)
	if v, n := leader.last(); n != 1 || v.Pods != 3 || len(v.Nodes) != 2 || len(v.DownNodes()) != 0 || v.Nodes["n1"].Reporters != 3 {
		t.Fatalf("first verdict %+v (%d)", v, n)
	}
	if fleetMsgs() != 0 {
		t.Error("a verdict without a change was broadcast on its own")
	}

	// Pod c alone cannot reach n1: nothing changes, but it is shown.
	pods[2].set("n1", "i/o timeout")
	leader.x.Poll(ctx)
	v, _ := leader.last()
	if len(v.DownNodes()) != 0 || !slices.Equal(v.Nodes["n1"].DownBy, []string{"c"}) || v.Nodes["n1"].Error != "i/o timeout" {
		t.Fatalf("one pod's report: verdict %+v", v.Nodes["n1"])
	}

	// Pod b agrees: n1 is down, broadcast at once to every pod.
	pods[1].set("n1", "i/o timeout")
	leader.x.Poll(ctx)
	if fleetMsgs() != 1 {
		t.Errorf("%d FleetHealth broadcasts after the change, want 1", fleetMsgs())
	}
	for i, p := range pods {
		if d := down(p); !slices.Equal(d, []string{"n1"}) {
			t.Errorf("pod %d: down %v, want [n1]", i, d)
		}
	}
	got, _ := pods[2].last()
	if n := got.Nodes["n1"]; !slices.Equal(n.DownBy, []string{"b", "c"}) || n.Reporters != 3 || n.Quorum != 2 || n.Since.IsZero() {
		t.Errorf("follower's view of n1: %+v; want down by b and c of 3, quorum 2", n)
	}

	// All three lose it; then one pod reaching it again is not enough,
	// two are.
	pods[0].set("n1", "i/o timeout")
	leader.x.Poll(ctx)
	pods[1].set("n1", "")
	leader.x.Poll(ctx)
	if d := down(pods[1]); !slices.Equal(d, []string{"n1"}) {
		t.Errorf("one pod reaching n1 brought it up: %v", d)
	}
	pods[2].set("n1", "")
	leader.x.Poll(ctx)
	for i, p := range pods {
		if d := down(p); len(d) != 0 {
			t.Errorf("pod %d: down %v after a quorum reached n1 again", i, d)
		}
	}

	// Only the leader answers (the others are cut off): a fleet of 3 needs
	// 2 reports, so its own view changes nothing.
	pods[0].set("n2", "connection refused")
	reach(1, false)
	reach(2, false)
	leader.x.Poll(ctx)
	if d := down(leader); len(d) != 0 {
		t.Errorf("the leader alone marked %v down", d)
	}

	// n2 goes down for real; the leadership moves to b, which starts from
	// the verdict it was handed.
	reach(1, true)
	reach(2, true)
	pods[1].set("n2", "connection refused")
	leader.x.Poll(ctx)
	pods[0].leader, pods[1].leader = false, true
	if v := pods[1].x.Health(); !slices.Equal(v.DownNodes(), []string{"n2"}) {
		t.Fatalf("new leader's inherited verdict %v", v.DownNodes())
	}
	pods[0].set("n2", "")
	pods[1].set("n2", "") // split 1 down / 2 up of 3: n2 comes back
	pods[1].x.Poll(ctx)
	if d := down(pods[2]); len(d) != 0 {
		t.Errorf("after the new leader's round: down %v", d)
	}

	// A follower that hears from no leader for healthExpiry intervals
	// drops the verdict.
	pods[2].set("n1", "x")
	pods[0].set("n1", "x")
	pods[1].x.Poll(ctx)
	if d := down(pods[2]); !slices.Equal(d, []string{"n1"}) {
		t.Fatalf("down %v", d)
	}
	pods[2].x.mu.Lock()
	pods[2].x.heard = time.Now().Add(-healthExpiry*time.Second - time.Second)
	pods[2].x.mu.Unlock()
	pods[2].x.expireHealth()
	if v, _ := pods[2].last(); !v.At.IsZero() || len(v.DownNodes()) != 0 {
		t.Errorf("stale verdict kept: %+v", v)
	}
}
