package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
)

// MemStore is an in-memory Store with the same semantics as SpannerStore,
// including the fence: SetLock plays the role of spindle's lock row. It is
// for tests of the controller and of packages built on it, and for
// single-process experiments; it is not durable.
type MemStore struct {
	mu      sync.Mutex
	cur     *State
	history []HistoryEntry // oldest first
	holder  string         // lock row writer
	token   uint64         // lock row token
	// Fail, if set, is returned by every method (simulates Spanner down).
	fail error
}

// NewMemStore returns an empty MemStore whose lock is held by nobody.
func NewMemStore() *MemStore { return &MemStore{} }

// SetLock sets the lock row: CompareAndSwap succeeds only for this
// leader/token pair.
func (m *MemStore) SetLock(leader string, token uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holder, m.token = leader, token
}

// SetError makes every later call fail with err (nil: work again).
func (m *MemStore) SetError(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// Load implements Store.
func (m *MemStore) Load(ctx context.Context) (*State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	if m.cur == nil {
		return nil, ErrNoRing
	}
	st := *m.cur
	return &st, nil
}

// CompareAndSwap implements Store.
func (m *MemStore) CompareAndSwap(ctx context.Context, expect uint64, next *ring.Ring, c Commit) error {
	if err := checkNext(expect, next); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if c.Token != m.token || c.Leader != m.holder || m.holder == "" {
		return fmt.Errorf("%w: lock is held by %q, caller is %q", ErrNotLeader, m.holder, c.Leader)
	}
	var have uint64
	if m.cur != nil {
		have = m.cur.Version
	}
	if have != expect {
		return fmt.Errorf("%w: stored version %d, expected %d", ErrVersionConflict, have, expect)
	}
	now := time.Now()
	m.cur = &State{
		Ring: next, Version: next.Version(), Stage: stageOr(c.Stage), Change: c.Change,
		RequestID: c.RequestID, Leader: c.Leader, Token: c.Token, UpdatedAt: now,
	}
	m.history = append(m.history, HistoryEntry{
		Version: next.Version(), Stage: stageOr(c.Stage), Nodes: next.Nodes(), RingText: RingText(next.Nodes()),
		Change: c.Change, Leader: c.Leader, RequestID: c.RequestID, CommittedAt: now,
	})
	return nil
}

// History implements Store.
func (m *MemStore) History(ctx context.Context, limit int) ([]HistoryEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	out := slices.Clone(m.history)
	slices.Reverse(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// FindRequest implements Store.
func (m *MemStore) FindRequest(ctx context.Context, requestID string) (*HistoryEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	if requestID == "" {
		return nil, nil
	}
	for _, h := range m.history {
		if h.RequestID == requestID {
			return &h, nil
		}
	}
	return nil, nil
}
