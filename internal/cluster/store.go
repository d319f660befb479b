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
// Only StageStable is produced today.
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
}

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
	return &jupiterv1.RingState{
		Version:   s.Version,
		Stage:     s.Stage,
		Nodes:     nodesToProto(s.Ring.Nodes()),
		Change:    s.Change,
		RequestId: s.RequestID,
		Leader:    s.Leader,
	}
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
	})
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
