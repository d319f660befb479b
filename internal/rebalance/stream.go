package rebalance

import (
	"context"
	"fmt"
	"sync"
)

// One SCAN pass of a Migrator as a stream: a scanner walks the source's
// cursor, each reply's placement records are read while the next SCAN
// runs, and a dispatcher cuts the moving keys of consecutive replies into
// batches per destination and starts them as the in-flight bounds allow.
//
// Why a stream: a pass used to move one SCAN reply's keys and wait for all
// of them before the next reply. When a quarter of the keys move (a source
// of an ADD) a 200-key reply holds ~50 moving keys, two batches, so the
// source had two batches in flight instead of 2 × Inflight, and every
// reply paid the slowest batch's three round trips; the verification pass
// paid the SCAN and MGET round trips one after the other.
//
// The checkpoint cursor still means what it did: every moving key of every
// reply before it is handled. Replies complete out of order (their batches
// do); the cursor advances past a reply only when it and all replies
// before it are complete.

// scanAheadReplies bounds how many SCAN replies the scanner runs ahead of
// the dispatcher (their keys and records are held in memory).
const scanAheadReplies = 4

// maxHeldReplies bounds the classified replies whose keys may wait in
// partial batches before those are sent anyway.
const maxHeldReplies = 16

// scanReply is one SCAN reply on its way through a pass.
type scanReply struct {
	next         uint64 // the cursor after it
	keys, places [][]byte
	err          error         // reading the records failed for good
	ready        chan struct{} // closed once places (or err) is set
	// pending counts its moving keys in batches not yet done, and
	// classified is set once all of them are in batches (both under
	// passState.mu).
	pending    int
	classified bool
}

// passState tracks which replies of a pass are complete.
type passState struct {
	m     *Migrator
	mu    sync.Mutex
	order []*scanReply // replies classified or being classified, oldest first
}

// batchDone marks the keys of a finished batch handled and advances the
// checkpoint cursor past every complete reply at the head of the queue.
func (ps *passState) batchDone(from []*scanReply) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, r := range from {
		r.pending--
	}
	ps.advanceLocked()
}

func (ps *passState) advanceLocked() {
	for len(ps.order) > 0 && ps.order[0].classified && ps.order[0].pending == 0 {
		next := ps.order[0].next
		ps.order = ps.order[1:]
		ps.m.update(func(p *Progress) { p.Cursor = next })
		// A reply whose keys all moved (or that had none) ends a run of
		// batch-level failures, as a whole reply handled did before.
		ps.m.consecutive.Store(0)
	}
}

// streamBatch is keys bound for one destination with the replies they came
// from (one entry per key).
type streamBatch struct {
	batch
	from []*scanReply
}

// pass runs one SCAN pass from cursor until cursor 0, with every moving key
// it found handled; Progress.Cursor ends at 0.
func (m *Migrator) pass(ctx context.Context, from uint64) error {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ps := &passState{m: m}
	replies := make(chan *scanReply, scanAheadReplies)
	var wg sync.WaitGroup // every goroutine of the pass
	var scanErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		scanErr = m.scanner(pctx, from, replies, &wg)
	}()

	slots := m.cfg.destSlots
	if slots == nil {
		slots = newSlotSet(m.cfg.Inflight)
	}
	pending := map[int]*streamBatch{}
	var order []int // destinations in the order first seen, for fair flushing
	// dispatch starts b (to destination d) once a slot on d and one on the
	// source are free; false if the pass is ending.
	dispatch := func(d int, b streamBatch) bool {
		sem := slots.get(d)
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
			return false
		}
		select {
		case m.srcSlots <- struct{}{}:
		case <-pctx.Done():
			<-sem
			return false
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-m.srcSlots; <-sem }()
			if err := m.moveBatch(pctx, m.movers[d], b.batch); err != nil {
				cancel(err) // the first cause is the pass's error
				return
			}
			ps.batchDone(b.from)
		}()
		return true
	}
	// cut starts every full batch of d, and the rest too when all is set.
	cut := func(d int, all bool) bool {
		sb, mv := pending[d], m.movers[d]
		for sb != nil && (len(sb.keys) >= mv.batchKeys() || (all && len(sb.keys) > 0)) {
			n := min(len(sb.keys), mv.batchKeys())
			head := streamBatch{batch{sb.keys[:n:n], sb.places[:n:n]}, sb.from[:n:n]}
			sb.keys, sb.places, sb.from = sb.keys[n:], sb.places[n:], sb.from[n:]
			if !dispatch(d, head) {
				return false
			}
		}
		return true
	}

	ok := true
	for r := range replies {
		if !ok {
			continue // drain: the scanner stops at pctx
		}
		select {
		case <-r.ready:
		case <-pctx.Done():
			ok = false
			continue
		}
		if r.err != nil {
			cancel(r.err)
			ok = false
			continue
		}
		groups, err := m.classify(r.keys, r.places)
		if err != nil {
			cancel(err)
			ok = false
			continue
		}
		ps.mu.Lock()
		ps.order = append(ps.order, r)
		for d, g := range groups {
			r.pending += len(g.keys)
			sb := pending[d]
			if sb == nil {
				sb = &streamBatch{}
				pending[d] = sb
				order = append(order, d)
			}
			sb.keys = append(sb.keys, g.keys...)
			sb.places = append(sb.places, g.places...)
			for range g.keys {
				sb.from = append(sb.from, r)
			}
		}
		r.classified = true
		ps.advanceLocked()
		held := len(ps.order)
		ps.mu.Unlock()
		// Full batches go now; partial ones only when no reply is waiting
		// (the scanner is behind), when the replies waiting for them pile
		// up (few moving keys: the checkpoint and memory would lag), or at
		// the end of the pass, so batches stay full while SCAN keeps up.
		flushAll := len(replies) == 0 || held > maxHeldReplies
		for _, d := range order {
			if ok = cut(d, flushAll); !ok {
				break
			}
		}
		if ok && m.checkpointDue() {
			m.checkpoint()
		}
	}
	if ok {
		for _, d := range order {
			if ok = cut(d, true); !ok {
				break
			}
		}
	}
	wg.Wait()
	// pctx ends only by a failure here (the first cause is kept) or with
	// ctx (its cause); the scanner's own give-up does not cancel it.
	if err := context.Cause(pctx); err != nil {
		return err
	}
	return scanErr
}

// scanner walks the source's cursor from cursor to 0, sending each reply
// to out (closed when it returns) with its placement records read in the
// background (wg owns those goroutines).
func (m *Migrator) scanner(ctx context.Context, cursor uint64, out chan<- *scanReply, wg *sync.WaitGroup) error {
	defer close(out)
	for {
		if err := m.waitResumed(ctx); err != nil {
			return err
		}
		// A SCAN is work on the source too: it waits out the pacer's
		// pause like a batch (pacer.go).
		if err := sleepCtx(ctx, m.pace.pause()); err != nil && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		keys, next, err := scanOnce(ctx, m.src, cursor, "", m.cfg.ScanCount)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if err := m.backoff(ctx, fmt.Errorf("SCAN %d: %w", cursor, err)); err != nil {
				return err
			}
			continue
		}
		r := &scanReply{next: next, keys: keys, ready: make(chan struct{})}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(r.ready)
			r.places, r.err = m.records(ctx, keys)
		}()
		select {
		case out <- r:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// records reads the placement records of keys, retrying with backoff.
func (m *Migrator) records(ctx context.Context, keys [][]byte) ([][]byte, error) {
	for {
		places, err := placesOf(ctx, m.src, keys)
		if err == nil {
			return places, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if err := m.backoff(ctx, err); err != nil {
			return nil, err
		}
	}
}

// slotSet is a semaphore per destination (by ring index): Inflight batches
// in flight to it, whichever source they come from.
type slotSet struct {
	n  int
	mu sync.Mutex
	m  map[int]chan struct{}
}

func newSlotSet(n int) *slotSet { return &slotSet{n: n, m: map[int]chan struct{}{}} }

func (s *slotSet) get(d int) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[d]
	if c == nil {
		c = make(chan struct{}, s.n)
		s.m[d] = c
	}
	return c
}
