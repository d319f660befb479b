package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	fail     error
	members  map[string]memLease
	progress map[uint64]map[string][]byte
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
	st, err := stateOf(next, c, now)
	if err != nil {
		return err
	}
	m.cur = st
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

type memLease struct {
	Lease
	expires time.Time
}

// Heartbeat implements Registry.
func (m *MemStore) Heartbeat(ctx context.Context, pod string, applied uint64, stage string, lease time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.members == nil {
		m.members = map[string]memLease{}
	}
	now := time.Now()
	m.members[pod] = memLease{Lease{Pod: pod, Applied: applied, Stage: stage, Updated: now}, now.Add(lease)}
	return nil
}

// Leave implements Registry.
func (m *MemStore) Leave(ctx context.Context, pod string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	delete(m.members, pod)
	return nil
}

// Members implements Registry.
func (m *MemStore) Members(ctx context.Context) ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	now := time.Now()
	out := make([]Lease, 0, len(m.members))
	for _, l := range m.members {
		l.Live = now.Before(l.expires)
		out = append(out, l.Lease)
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.Pod, b.Pod) })
	return out, nil
}

// Prune implements Registry.
func (m *MemStore) Prune(ctx context.Context, expiredFor time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	var n int64
	now := time.Now()
	for pod, l := range m.members {
		if now.After(l.expires.Add(expiredFor)) {
			delete(m.members, pod)
			n++
		}
	}
	return n, nil
}

// SaveProgress implements ProgressStore.
func (m *MemStore) SaveProgress(ctx context.Context, c Commit, epoch uint64, source string, progress []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if c.Token != m.token || c.Leader != m.holder || m.holder == "" {
		return fmt.Errorf("%w: lock is held by %q, caller is %q", ErrNotLeader, m.holder, c.Leader)
	}
	if m.progress == nil {
		m.progress = map[uint64]map[string][]byte{}
	}
	if m.progress[epoch] == nil {
		m.progress[epoch] = map[string][]byte{}
	}
	m.progress[epoch][source] = slices.Clone(progress)
	return nil
}

// LoadProgress implements ProgressStore.
func (m *MemStore) LoadProgress(ctx context.Context, epoch uint64) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	out := map[string][]byte{}
	for k, v := range m.progress[epoch] {
		out[k] = slices.Clone(v)
	}
	return out, nil
}
