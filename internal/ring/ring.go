package ring

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits enforced by New.
const (
	// MaxNodes bounds the ring size. Owner indexes are stored as uint16,
	// and New costs O(nodes * Slots) score evaluations: about 35 ms at 128
	// nodes and a quarter of a second at 1024 on one current x86-64 core.
	MaxNodes = 1024
	// MaxWeight bounds Node.Weight. It is far above any sensible ratio
	// between backends and keeps weights exact in float64 arithmetic.
	MaxWeight = 10000
	// MaxNameLen bounds Node.Name in bytes, including a name defaulted
	// from Addr; names are hashed once per node in New and appear in logs.
	MaxNameLen = 255
)

// Errors returned by New and the ring-editing methods, always wrapped with
// context; test with errors.Is.
var (
	ErrNoNodes      = errors.New("ring: no nodes")
	ErrTooManyNodes = errors.New("ring: too many nodes")
	ErrDuplicate    = errors.New("ring: duplicate node")
	ErrUnknownNode  = errors.New("ring: unknown node")
	ErrLastNode     = errors.New("ring: cannot remove the last node")
	ErrBadAddr      = errors.New("ring: bad node address")
	ErrBadName      = errors.New("ring: bad node name")
	ErrBadWeight    = errors.New("ring: bad node weight")
)

// Node is one backend. Name is its identity for hashing: keys follow the
// name, so a node can change Addr without moving any key. An empty Name
// defaults to Addr. Weight is relative capacity, 1..MaxWeight; 0 means 1.
type Node struct {
	Name   string
	Addr   string
	Weight int
}

// Ring is an immutable, versioned assignment of the Slots hash slots to
// nodes. The zero Ring is not usable; build one with New. A *Ring is safe
// for concurrent use.
type Ring struct {
	version uint64
	nodes   []Node        // sorted by Name, Weight normalized to >= 1
	owner   [Slots]uint16 // slot -> index into nodes
}

// New builds the ring for nodes. The input is validated, copied (the caller
// may reuse the slice) and sorted by name, so the order of nodes never
// matters: the same set of nodes always gives the same ring.
//
// Validation: 1..MaxNodes nodes; Addr is "host:port" where host is an IP
// address or a DNS-style name and port is decimal 1..65535 without sign or
// leading zeros; names (after defaulting to Addr) are UTF-8, at most
// MaxNameLen bytes, without spaces or control characters; names are unique
// and addresses are unique; Weight is 0..MaxWeight (0 is stored as 1).
//
// The version is opaque to the ring; it is carried for Holder and Equal.
func New(version uint64, nodes []Node) (*Ring, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: a ring needs at least one", ErrNoNodes)
	}
	if len(nodes) > MaxNodes {
		return nil, fmt.Errorf("%w: %d nodes, at most %d", ErrTooManyNodes, len(nodes), MaxNodes)
	}
	ns := make([]Node, len(nodes))
	addrs := make(map[string]struct{}, len(nodes))
	for i, n := range nodes {
		if err := checkAddr(n.Addr); err != nil {
			return nil, err
		}
		if n.Name == "" {
			n.Name = n.Addr
		}
		if err := checkName(n.Name); err != nil {
			return nil, err
		}
		switch {
		case n.Weight < 0 || n.Weight > MaxWeight:
			return nil, fmt.Errorf("%w: node %q has weight %d, want 0..%d", ErrBadWeight, n.Name, n.Weight, MaxWeight)
		case n.Weight == 0:
			n.Weight = 1
		}
		if _, dup := addrs[n.Addr]; dup {
			return nil, fmt.Errorf("%w: address %q appears twice", ErrDuplicate, n.Addr)
		}
		addrs[n.Addr] = struct{}{}
		ns[i] = n
	}
	slices.SortFunc(ns, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(ns); i++ {
		if ns[i].Name == ns[i-1].Name {
			return nil, fmt.Errorf("%w: name %q appears twice", ErrDuplicate, ns[i].Name)
		}
	}

	r := &Ring{version: version, nodes: ns}
	r.assign()
	return r, nil
}

// assign fills r.owner by weighted rendezvous hashing. Nodes are visited in
// name order and a node replaces the current best only with a strictly
// higher score, so a tie goes to the smallest name.
func (r *Ring) assign() {
	seeds := make([]uint64, len(r.nodes))
	weights := make([]float64, len(r.nodes))
	for i, n := range r.nodes {
		seeds[i] = nameSeed(n.Name)
		weights[i] = float64(n.Weight)
	}
	for s := range Slots {
		slot := uint16(s)
		best, bestScore := 0, score(weights[0], slotHash(seeds[0], slot))
		for i := 1; i < len(seeds); i++ {
			if sc := score(weights[i], slotHash(seeds[i], slot)); sc > bestScore {
				best, bestScore = i, sc
			}
		}
		r.owner[s] = uint16(best)
	}
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrBadAddr, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%w: %q: empty host", ErrBadAddr, addr)
	}
	if !validHost(host) {
		return fmt.Errorf("%w: %q: host is neither an IP address nor a DNS name", ErrBadAddr, addr)
	}
	// ParseUint rejects signs; the round trip rejects leading zeros, so
	// "h:6379" and "h:06379" cannot both be in a ring as different nodes.
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return fmt.Errorf("%w: %q: port must be a decimal number 1..65535", ErrBadAddr, addr)
	}
	return nil
}

// validHost accepts an IP address (IPv6 in brackets in the addr, possibly
// with a zone) or something shaped like a DNS name: letters, digits, '.',
// '-' and '_' (common in container and service names), at most 253 bytes.
// It is a typo guard, not a resolver: the name may still not resolve.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadName, len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) || hasCtlOrSpace(name) {
		return fmt.Errorf("%w: %q is not UTF-8 without spaces and control characters", ErrBadName, name)
	}
	return nil
}

func hasCtlOrSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// Version returns the version the ring was built with.
func (r *Ring) Version() uint64 { return r.version }

// Nodes returns the nodes sorted by name, with weights normalized (0 became
// 1). The slice is the ring's own: callers must not modify it (that would
// change the ring under every other goroutine using it). Use slices.Clone
// to get a copy to edit.
func (r *Ring) Nodes() []Node { return r.nodes }

// Len returns the number of nodes.
func (r *Ring) Len() int { return len(r.nodes) }

// Node returns the node at index i (0 <= i < Len()), in name order.
func (r *Ring) Node(i int) Node { return r.nodes[i] }

// Index returns the index of the node named name, or -1 if there is none.
func (r *Ring) Index(name string) int {
	i, ok := slices.BinarySearchFunc(r.nodes, name, func(n Node, name string) int {
		return strings.Compare(n.Name, name)
	})
	if !ok {
		return -1
	}
	return i
}

// SlotOwner returns the index of the node owning slot. slot must be less
// than Slots (as every Slot result is); a larger value panics.
func (r *Ring) SlotOwner(slot uint16) int { return int(r.owner[slot]) }

// Owner returns the index of the node owning key. It does not allocate.
func (r *Ring) Owner(key []byte) int { return int(r.owner[Slot(key)]) }

// SlotCounts returns how many slots each node owns, indexed like Nodes.
func (r *Ring) SlotCounts() []int {
	c := make([]int, len(r.nodes))
	for _, o := range r.owner {
		c[o]++
	}
	return c
}

// Move is one slot changing owner between two rings; From and To are node
// names (indexes differ between rings).
type Move struct {
	Slot     uint16
	From, To string
}

// Diff returns the slots whose owner name differs between old and new,
// sorted by slot. A nil ring owns nothing: Diff(nil, r) moves every slot
// from "" and Diff(r, nil) every slot to "". Nodes that only changed Addr
// produce no moves, since ownership follows names.
func Diff(old, new *Ring) []Move {
	var moves []Move
	for s := range Slots {
		var from, to string
		if old != nil {
			from = old.nodes[old.owner[s]].Name
		}
		if new != nil {
			to = new.nodes[new.owner[s]].Name
		}
		if from != to {
			moves = append(moves, Move{Slot: uint16(s), From: from, To: to})
		}
	}
	return moves
}

// With returns a new ring with the given version and nodes; it is New,
// offered as a method for symmetry with Add, Remove and SetWeight.
func (r *Ring) With(version uint64, nodes []Node) (*Ring, error) {
	return New(version, nodes)
}

// Add returns a new ring with n added. A name or address already in the
// ring is ErrDuplicate; n is validated like New's input.
func (r *Ring) Add(version uint64, n Node) (*Ring, error) {
	ns := make([]Node, 0, len(r.nodes)+1)
	ns = append(append(ns, r.nodes...), n)
	return New(version, ns)
}

// Remove returns a new ring without the node named name: ErrUnknownNode if
// there is no such node, ErrLastNode if it is the only one.
func (r *Ring) Remove(version uint64, name string) (*Ring, error) {
	i := r.Index(name)
	if i < 0 {
		return nil, fmt.Errorf("%w: remove %q", ErrUnknownNode, name)
	}
	if len(r.nodes) == 1 {
		return nil, fmt.Errorf("%w: remove %q", ErrLastNode, name)
	}
	return New(version, slices.Delete(slices.Clone(r.nodes), i, i+1))
}

// SetWeight returns a new ring in which the node named name has weight w
// (0..MaxWeight, 0 meaning 1): ErrUnknownNode if there is no such node.
func (r *Ring) SetWeight(version uint64, name string, w int) (*Ring, error) {
	i := r.Index(name)
	if i < 0 {
		return nil, fmt.Errorf("%w: set weight of %q", ErrUnknownNode, name)
	}
	ns := slices.Clone(r.nodes)
	ns[i].Weight = w
	return New(version, ns)
}

// Equal reports whether r and o have the same version and the same nodes
// (names, addresses and weights). Since owners are a function of the nodes,
// equal rings route identically. Two nil rings are equal.
func (r *Ring) Equal(o *Ring) bool {
	if r == nil || o == nil {
		return r == o
	}
	return r.version == o.version && slices.Equal(r.nodes, o.nodes)
}

// String describes the ring for logs, e.g. "ring v7 [a:1(w1) b:1(w2)]".
func (r *Ring) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ring v%d [", r.version)
	for i, n := range r.nodes {
		if i > 0 {
			b.WriteByte(' ')
		}
		if n.Name != n.Addr {
			fmt.Fprintf(&b, "%s=", n.Name)
		}
		fmt.Fprintf(&b, "%s(w%d)", n.Addr, n.Weight)
	}
	b.WriteByte(']')
	return b.String()
}
