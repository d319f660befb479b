package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alphauslabs/jupiter/internal/ring"
	jupiterv1 "github.com/alphauslabs/jupiter/proto/v1"
	"google.golang.org/protobuf/proto"
)

// Stage names of the rebalance stage machine (DESIGN.md, "Rebalancing").
// A rebalance walks stable → prepare → freeze → migrating → commit →
// stable; see rebalancer.go.
const (
	StageStable    = "stable"
	StagePrepare   = "prepare"
	StageFreeze    = "freeze"
	StageMigrating = "migrating"
	StageCommit    = "commit"
)

// Store errors. Anything else a Store returns is transient (Spanner
// unavailable, deadline exceeded): keep the last ring and retry.
var (
	// ErrNotLeader means the fence failed: the caller's spindle token is not
	// the current one in the lock table (or this process is not the leader),
	// so it must not write. A deposed leader gets this from CompareAndSwap.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrVersionConflict means the stored ring version is not the one the
	// caller expected: someone else wrote first. Reload and retry.
	ErrVersionConflict = errors.New("cluster: ring version conflict")
	// ErrNoRing means no ring has been stored yet (fresh database).
	ErrNoRing = errors.New("cluster: no ring stored yet")
)

// State is a ring as stored, with the metadata of the write that produced it.
type State struct {
	Ring      *ring.Ring // never nil; Ring.Version() == Version
	Version   uint64
	Stage     string
	Change    string // what produced this version, e.g. "ADD 10.0.0.4:6379 w=1"
	RequestID string // the admin request that produced it ("" for none)
	Leader    string // hedge address of the writing leader
	Token     uint64 // the writer's spindle token
	UpdatedAt time.Time
	// Target is the ring after the running rebalance (nil when none runs):
	// in prepare, freeze and migrating, keys whose owner's address differs
	// between Ring and Target are moving. Same version as Ring.
	Target *ring.Ring
	// Epoch names the running rebalance (the version of its prepare
	// record) and its markers; 0 when stable.
	Epoch  uint64
	Paused bool
	// From is the ring a commit record replaced (for the cleanup).
	From []ring.Node
}

// Rebalancing reports whether s is a stage in which keys are moving or about
// to (prepare, freeze, migrating).
func (s *State) Rebalancing() bool { return s != nil && s.Target != nil }

// Commit is the metadata CompareAndSwap writes along with the new ring.
type Commit struct {
	Stage     string // "" means StageStable
	Change    string
	RequestID string
	// Leader is the writer's spindle id, which for hedge is its host:port.
	// It must equal the lock row's writer.
	Leader string
	// Token is the writer's spindle fencing token, as HasLock returns it.
	Token uint64
	// Target, Epoch, Paused and From are stored with the ring (see State).
	Target []ring.Node
	Epoch  uint64
	Paused bool
	From   []ring.Node
}

// HistoryEntry is one committed ring version. Nodes must not be modified
// (it may be a ring's own slice).
type HistoryEntry struct {
	Version     uint64
	Stage       string
	Nodes       []ring.Node
	RingText    string
	Change      string
	Leader      string
	RequestID   string
	CommittedAt time.Time
}

// Store persists the ring. The single authoritative copy is written only by
// CompareAndSwap, which is fenced by the leader's spindle token and by the
// expected version, so neither a deposed leader nor a concurrent writer can
// fork it. Implementations are safe for concurrent use.
type Store interface {
	// Load returns the current ring, or ErrNoRing.
	Load(ctx context.Context) (*State, error)
	// CompareAndSwap replaces the ring whose version is expect (0 = no ring
	// yet) by next and appends next to the history, atomically. next's
	// version must be greater than expect. It fails with ErrNotLeader if
	// c.Token/c.Leader are not the lock's current holder, with
	// ErrVersionConflict if the stored version is not expect.
	CompareAndSwap(ctx context.Context, expect uint64, next *ring.Ring, c Commit) error
	// History returns up to limit entries, newest first (limit <= 0: all).
	History(ctx context.Context, limit int) ([]HistoryEntry, error)
	// FindRequest returns the history entry produced by requestID, or
	// (nil, nil) if there is none.
	FindRequest(ctx context.Context, requestID string) (*HistoryEntry, error)
}

// RingText renders nodes for humans and SQL audits: "addr=weight" joined by
// commas, in name order, with "name@" in front when the name is not the
// address, e.g. "10.0.0.1:6379=1,cache-b@10.0.0.2:6379=2".
func RingText(nodes []ring.Node) string {
	var b strings.Builder
	for i, n := range nodes {
		if i > 0 {
			b.WriteByte(',')
		}
		if n.Name != "" && n.Name != n.Addr {
			b.WriteString(n.Name)
			b.WriteByte('@')
		}
		b.WriteString(n.Addr)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(n.Weight))
	}
	return b.String()
}

// ToProto converts a State to its wire/storage form.
func (s *State) ToProto() *jupiterv1.RingState {
	if s == nil {
		return nil
	}
	rs := &jupiterv1.RingState{
		Version:   s.Version,
		Stage:     s.Stage,
		Nodes:     nodesToProto(s.Ring.Nodes()),
		Change:    s.Change,
		RequestId: s.RequestID,
		Leader:    s.Leader,
		Epoch:     s.Epoch,
		Paused:    s.Paused,
		From:      nodesToProto(s.From),
	}
	if s.Target != nil {
		rs.Target = nodesToProto(s.Target.Nodes())
	}
	return rs
}

func nodesToProto(ns []ring.Node) []*jupiterv1.Node {
	out := make([]*jupiterv1.Node, len(ns))
	for i, n := range ns {
		out[i] = &jupiterv1.Node{Name: n.Name, Addr: n.Addr, Weight: int32(n.Weight)}
	}
	return out
}

func nodesFromProto(ns []*jupiterv1.Node) []ring.Node {
	out := make([]ring.Node, len(ns))
	for i, n := range ns {
		out[i] = ring.Node{Name: n.GetName(), Addr: n.GetAddr(), Weight: int(n.GetWeight())}
	}
	return out
}

// encodeRing is the byte form of a ring in the ring and history tables.
func encodeRing(r *ring.Ring, c Commit) ([]byte, error) {
	return proto.Marshal(&jupiterv1.RingState{
		Version:   r.Version(),
		Stage:     stageOr(c.Stage),
		Nodes:     nodesToProto(r.Nodes()),
		Change:    c.Change,
		RequestId: c.RequestID,
		Leader:    c.Leader,
		Target:    nodesToProto(c.Target),
		Epoch:     c.Epoch,
		Paused:    c.Paused,
		From:      nodesToProto(c.From),
	})
}

// stateOf builds the State a successful CompareAndSwap of next with c
// stored (what Load returns afterwards, minus the commit time).
func stateOf(next *ring.Ring, c Commit, at time.Time) (*State, error) {
	st := &State{
		Ring: next, Version: next.Version(), Stage: stageOr(c.Stage), Change: c.Change,
		RequestID: c.RequestID, Leader: c.Leader, Token: c.Token, UpdatedAt: at,
		Epoch: c.Epoch, Paused: c.Paused, From: c.From,
	}
	if len(c.Target) > 0 {
		t, err := ring.New(next.Version(), c.Target)
		if err != nil {
			return nil, fmt.Errorf("cluster: target ring v%d is invalid: %w", next.Version(), err)
		}
		st.Target = t
	}
	return st, nil
}

// decodeRing parses the ring column; version is the row's version column,
// which is authoritative over the copy inside the message.
func decodeRing(b []byte, version uint64) (*ring.Ring, *jupiterv1.RingState, error) {
	var rs jupiterv1.RingState
	if err := proto.Unmarshal(b, &rs); err != nil {
		return nil, nil, fmt.Errorf("cluster: decode ring v%d: %w", version, err)
	}
	r, err := ring.New(version, nodesFromProto(rs.GetNodes()))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: stored ring v%d is invalid: %w", version, err)
	}
	return r, &rs, nil
}

// decodeState is decodeRing plus the rebalance fields of the record.
func decodeState(b []byte, version uint64) (*State, error) {
	r, rs, err := decodeRing(b, version)
	if err != nil {
		return nil, err
	}
	return stateOf(r, Commit{
		Stage: rs.GetStage(), Change: rs.GetChange(), RequestID: rs.GetRequestId(), Leader: rs.GetLeader(),
		Target: nodesFromProto(rs.GetTarget()), Epoch: rs.GetEpoch(), Paused: rs.GetPaused(),
		From: nodesFromProto(rs.GetFrom()),
	}, time.Time{})
}

func stageOr(s string) string {
	if s == "" {
		return StageStable
	}
	return s
}

func checkNext(expect uint64, next *ring.Ring) error {
	if next == nil {
		return errors.New("cluster: CompareAndSwap with a nil ring")
	}
	if next.Version() <= expect {
		return fmt.Errorf("cluster: next ring version %d must be greater than %d", next.Version(), expect)
	}
	return nil
}

// Lease is one pod's entry in the member registry: the ring version it
// routes by, and whether its lease is still running (judged by the store's
// clock, so pods need no synchronised clocks).
type Lease struct {
	Pod     string
	Applied uint64
	Stage   string
	Live    bool
	Updated time.Time
}

// Registry is the member lease registry that rebalance barriers trust
// (rebalance.md §4.2): every pod heartbeats the version it routes by, and
// the leader advances a stage only when every live pod has applied it.
// hedge's Broadcast only reaches the members the leader knows; the registry
// also holds pods that just started.
type Registry interface {
	// Heartbeat records that pod routes by version applied (stage) and
	// renews its lease for lease.
	Heartbeat(ctx context.Context, pod string, applied uint64, stage string, lease time.Duration) error
	// Leave removes pod (clean shutdown), so barriers need not wait for its
	// lease to expire.
	Leave(ctx context.Context, pod string) error
	// Members lists every registered pod.
	Members(ctx context.Context) ([]Lease, error)
	// Prune deletes the entries whose lease ran out more than expiredFor
	// ago (pods that died without Leave), judged by the store's clock in
	// one statement, so an entry renewed meanwhile stays. It returns how
	// many it deleted.
	Prune(ctx context.Context, expiredFor time.Duration) (int64, error)
}

// ProgressStore keeps the migrator's checkpoints, so a new leader resumes a
// half-done migration. Saves are fenced like CompareAndSwap.
type ProgressStore interface {
	SaveProgress(ctx context.Context, c Commit, epoch uint64, source string, progress []byte) error
	LoadProgress(ctx context.Context, epoch uint64) (map[string][]byte, error)
}
