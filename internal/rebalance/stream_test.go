package rebalance

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPassCursorWaitsForEarlierReplies pins the checkpoint rule of a
// streamed pass: replies complete out of order, and the cursor moves past a
// reply only when it and every reply before it are complete, so a resume
// from the checkpoint never skips a key whose batch had not finished.
func TestPassCursorWaitsForEarlierReplies(t *testing.T) {
	m := &Migrator{}
	m.p.Cursor = 7 // where the pass started
	ps := &passState{m: m}
	r1 := &scanReply{next: 11}
	r2 := &scanReply{next: 13}
	r3 := &scanReply{next: 0}
	cursor := func() uint64 { return m.Progress().Cursor }
	classify := func(r *scanReply, moving int) {
		ps.mu.Lock()
		ps.order = append(ps.order, r)
		r.pending += moving
		r.classified = true
		ps.advanceLocked()
		ps.mu.Unlock()
	}

	classify(r1, 2)
	classify(r2, 1)
	if got := cursor(); got != 7 {
		t.Fatalf("cursor %d before any batch is done, want 7", got)
	}
	// r2's only key done first: r1 still owes one.
	ps.batchDone([]*scanReply{r2})
	ps.batchDone([]*scanReply{r1})
	if got := cursor(); got != 7 {
		t.Fatalf("cursor %d with r1 half done, want 7", got)
	}
	ps.batchDone([]*scanReply{r1})
	if got := cursor(); got != 13 {
		t.Fatalf("cursor %d once r1 and r2 are done, want 13 (past both)", got)
	}
	// A reply without moving keys completes as it is classified.
	classify(r3, 0)
	if got := cursor(); got != 0 {
		t.Fatalf("cursor %d after the last reply, want 0", got)
	}
	if len(ps.order) != 0 {
		t.Fatalf("%d replies still queued", len(ps.order))
	}

	// A batch spanning two replies completes both at once.
	m.p.Cursor = 20
	a := &scanReply{next: 21}
	b := &scanReply{next: 22}
	classify(a, 1)
	classify(b, 1)
	ps.batchDone([]*scanReply{a, b})
	if got := cursor(); got != 22 {
		t.Fatalf("cursor %d after a batch of keys from two replies, want 22", got)
	}
}

// TestMigratorSparse moves a few keys scattered over many small SCAN
// replies: their partial batches must still go out (held replies, end of
// the pass), and the pass checkpoints on the way.
func TestMigratorSparse(t *testing.T) {
	ns := startNodes(t, 2)
	ctx := tctx(t, 60*time.Second)
	p := ns[0].c.Pipeline()
	for i := range 3000 {
		p.Set(ctx, fmtKey("s", i), "v", 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	moving := func(k []byte) (int, bool) { return 0, strings.HasSuffix(string(k), "00") } // 30 keys
	var mu sync.Mutex
	var cursors []uint64
	m, err := NewMigrator(Config{Source: ns[0].c, Dests: map[int]Node{0: ns[1].c}, Moving: moving, Epoch: 1,
		ScanCount: 10, CheckpointEvery: time.Millisecond,
		Checkpoint: func(p Progress) { mu.Lock(); cursors = append(cursors, p.Cursor); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := m.Run(ctx)
	if err != nil || pr.Phase != PhaseDone || pr.KeysMoved != 30 {
		t.Fatalf("Run: %v, %+v", err, pr)
	}
	for i := 0; i < 3000; i += 100 {
		k := fmtKey("s", i)
		if n := ns[1].c.Exists(ctx, k).Val(); n != 1 {
			t.Errorf("%s not on the destination", k)
		}
		if n := ns[0].c.Exists(ctx, k).Val(); n != 0 {
			t.Errorf("%s still on the source", k)
		}
	}
	if got := ns[0].c.DBSize(ctx).Val(); got != 3000-30 {
		t.Errorf("source holds %d keys, want %d", got, 3000-30)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(cursors) < 3 {
		t.Errorf("%d checkpoints over %d passes", len(cursors), pr.Passes)
	}
}
