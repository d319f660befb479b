package cluster

import (
	"context"
	"slices"
	"testing"
	"time"
)

// registryPods lists the pods of r.
func registryPods(t *testing.T, r Registry) []string {
	t.Helper()
	ms, err := r.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Pod)
	}
	return out
}

// testPrune: an entry whose lease ran out more than expiredFor ago goes;
// a live one, and one whose lease ran out less than expiredFor ago, stay.
func testPrune(t *testing.T, r Registry) {
	ctx := context.Background()
	for _, h := range []struct {
		pod   string
		lease time.Duration
	}{{"dead", time.Millisecond}, {"live", time.Hour}} {
		if err := r.Heartbeat(ctx, h.pod, 1, StageStable, h.lease); err != nil {
			t.Fatal(err)
		}
	}
	var pruned int64
	deadline := time.Now().Add(10 * time.Second)
	for pruned == 0 && time.Now().Before(deadline) { // until dead's lease is 100ms over
		n, err := r.Prune(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		pruned += n
	}
	if got := registryPods(t, r); pruned != 1 || !slices.Equal(got, []string{"live"}) {
		t.Fatalf("pruned %d, left %v; want 1, [live]", pruned, got)
	}
	if err := r.Heartbeat(ctx, "recent", 1, StageStable, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Prune(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("Prune(1h) = %d, %v; want nothing", n, err)
	}
	if got := registryPods(t, r); !slices.Equal(got, []string{"live", "recent"}) {
		t.Fatalf("left %v, want [live recent]", got)
	}
}

func TestMemStorePrune(t *testing.T) { testPrune(t, NewMemStore()) }

func TestSpannerStorePrune(t *testing.T) {
	_, client := newEmulatorDB(t, "prune")
	s, err := NewSpannerStore(client, DefaultTableNames(), HedgeLockRow("prune"), "default")
	if err != nil {
		t.Fatal(err)
	}
	testPrune(t, s)
}
