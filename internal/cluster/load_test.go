package cluster

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/internal/capacity"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// loadPod is one pod of the load exchange test: its exchange, its rates
// and the fleet figures it was handed.
type loadPod struct {
	x      *LoadExchange
	leader bool

	mu    sync.Mutex
	ops   map[string]float64
	fleet []capacity.Fleet
}

func (p *loadPod) podLoad() map[string]float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]float64{}
	for k, v := range p.ops {
		out[k] = v
	}
	return out
}

func (p *loadPod) lastFleet() (capacity.Fleet, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.fleet) == 0 {
		return capacity.Fleet{}, 0
	}
	return p.fleet[len(p.fleet)-1], len(p.fleet)
}

// TestLoadExchange: the leader sums the rates every pod reports (itself
// included), keeps them, and the next poll hands them to every pod; pods
// of an older version (they answer with a RingAck), failed members and a
// duplicated reply do not distort the sums.
func TestLoadExchange(t *testing.T) {
	pods := []*loadPod{
		{leader: true, ops: map[string]float64{"n1": 100, "n2": 10}},
		{ops: map[string]float64{"n1": 50}},
		{ops: map[string]float64{"n1": 25, "n2": 5, "n3": 1}},
	}
	broadcast := func(_ context.Context, msg []byte) []BroadcastResult {
		var out []BroadcastResult
		for i, p := range pods {
			rep, ok := p.x.Handle(msg)
			if !ok {
				t.Errorf("pod %d did not take a CapacityPoll", i)
			}
			out = append(out, BroadcastResult{ID: p.x.cfg.Self, Reply: rep})
			if i == 1 { // hedge delivered this one twice
				out = append(out, BroadcastResult{ID: p.x.cfg.Self, Reply: rep})
			}
		}
		old, _ := proto.Marshal(&jupiterv1.BroadcastReply{Msg: &jupiterv1.BroadcastReply_RingAck{RingAck: &jupiterv1.RingAck{Pod: "old", Error: "unknown broadcast message"}}})
		return append(out, BroadcastResult{ID: "old", Reply: old}, BroadcastResult{ID: "gone", Err: errors.New("connection refused")})
	}
	for i, p := range pods {
		x, err := NewLoadExchange(LoadConfig{Interval: time.Second, Self: string(rune('a' + i)),
			IsLeader: func() bool { return p.leader }, Broadcast: broadcast, PodLoad: p.podLoad,
			SetFleet: func(f capacity.Fleet) {
				p.mu.Lock()
				defer p.mu.Unlock()
				p.fleet = append(p.fleet, f)
			}})
		if err != nil {
			t.Fatal(err)
		}
		p.x = x
	}
	leader := pods[0]
	sums := leader.x.Poll(context.Background())
	want := map[string]float64{"n1": 175, "n2": 15, "n3": 1}
	if sums.Pods != 3 || len(sums.Ops) != 3 || sums.Ops["n1"] != 175 || sums.Ops["n2"] != 15 || sums.Ops["n3"] != 1 {
		t.Fatalf("first poll sums = %+v, want 3 pods %v", sums, want)
	}
	if f, n := leader.lastFleet(); n != 1 || f.Pods != 3 || f.Ops["n1"] != 175 {
		t.Errorf("leader's fleet after its poll = %+v (%d calls)", f, n)
	}
	for i, p := range pods[1:] {
		if _, n := p.lastFleet(); n != 0 {
			t.Errorf("pod %d got fleet figures from the first poll, which has none to carry", i+1)
		}
	}

	// The second poll carries the first one's sums to every pod.
	pods[1].mu.Lock()
	pods[1].ops["n1"] = 70
	pods[1].mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	sums = leader.x.Poll(context.Background())
	if sums.Ops["n1"] != 195 {
		t.Errorf("second poll n1 = %v, want 195", sums.Ops["n1"])
	}
	for i, p := range pods[1:] {
		f, n := p.lastFleet()
		if n != 1 || f.Pods != 3 || f.Ops["n1"] != 175 || f.Ops["n3"] != 1 {
			t.Errorf("pod %d fleet = %+v, want the first poll's sums", i+1, f)
		}
		if age := time.Since(f.At); age < 20*time.Millisecond || age > 5*time.Second {
			t.Errorf("pod %d: fleet sums %v old, want the time since the first poll", i+1, age)
		}
	}
	if f, n := leader.lastFleet(); n != 2 || f.Ops["n1"] != 195 {
		t.Errorf("the leader must keep its own newer sums, not the carried ones: %+v (%d calls)", f, n)
	}

	// Not a capacity poll: left to the Syncer.
	ru, _ := proto.Marshal(&jupiterv1.BroadcastMessage{Msg: &jupiterv1.BroadcastMessage_RingUpdated{RingUpdated: &jupiterv1.RingUpdated{Version: 3}}})
	if _, ok := pods[1].x.Handle(ru); ok {
		t.Error("Handle took a RingUpdated")
	}
	if _, ok := pods[1].x.Handle([]byte{0xff, 0xff}); ok {
		t.Error("Handle took garbage")
	}
	if _, err := NewLoadExchange(LoadConfig{Interval: time.Second}); err == nil {
		t.Error("NewLoadExchange without its functions: no error")
	}
}

// TestLoadExchangeRun: Run polls once per Interval while the pod leads,
// never while it does not, and stops with its context.
func TestLoadExchangeRun(t *testing.T) {
	var mu sync.Mutex
	leader, polls := false, 0
	x, err := NewLoadExchange(LoadConfig{Interval: 50 * time.Millisecond,
		IsLeader: func() bool { mu.Lock(); defer mu.Unlock(); return leader },
		Broadcast: func(context.Context, []byte) []BroadcastResult {
			mu.Lock()
			defer mu.Unlock()
			polls++
			return nil
		},
		PodLoad: func() map[string]float64 { return nil }, SetFleet: func(capacity.Fleet) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	if polls != 0 {
		t.Errorf("%d polls while not leading", polls)
	}
	leader = true
	mu.Unlock()
	time.Sleep(520 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not stop with its context")
	}
	mu.Lock()
	defer mu.Unlock()
	if math.Abs(float64(polls)-10) > 3 {
		t.Errorf("%d polls in 520ms at a 50ms interval, want about 10", polls)
	}
}
