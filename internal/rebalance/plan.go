package rebalance

import (
	"context"
	"errors"
	"fmt"

	"github.com/alphauslabs/jupiter/internal/ring"
)

// MovingFrom returns the Config.Moving function for the source node named
// source: a key moves off source when source owns it under old and another
// node owns it under new; dest is that node's index in new (new.Node(dest)).
// Keys source does not own under old (leftovers) are not moved: the owner
// under new is authoritative for them, and restoring a stale copy there
// could resurrect a deleted value. The function is a slot-table lookup
// (no allocation) and safe for concurrent use. source must be in old.
func MovingFrom(old, new *ring.Ring, source string) (func(key []byte) (dest int, ok bool), error) {
	src := old.Index(source)
	if src < 0 {
		return nil, fmt.Errorf("rebalance: source %q is not in the old ring", source)
	}
	var dest [ring.Slots]int16
	for s := range ring.Slots {
		dest[s] = -1
		if old.SlotOwner(uint16(s)) != src {
			continue
		}
		d := new.SlotOwner(uint16(s))
		if new.Node(d).Name != source {
			dest[s] = int16(d)
		}
	}
	return func(key []byte) (int, bool) {
		d := dest[ring.Slot(key)]
		return int(d), d >= 0
	}, nil
}

// MovingFraction is the share of source's slots under old that move to
// another node under new: the expected share of its keys that move, for
// Config.MovingFraction.
func MovingFraction(old, new *ring.Ring, source string) float64 {
	src := old.Index(source)
	if src < 0 {
		return 0
	}
	owned, moving := 0, 0
	for s := range ring.Slots {
		if old.SlotOwner(uint16(s)) != src {
			continue
		}
		owned++
		if new.Node(new.SlotOwner(uint16(s))).Name != source {
			moving++
		}
	}
	if owned == 0 {
		return 0
	}
	return float64(moving) / float64(owned)
}

// Plan returns one migrator Config per source node (a node of old that loses
// slots under new), each a copy of base with Source, SourceName, Moving,
// Dests and MovingFraction filled in. node returns the client for a node
// name (its primary endpoint). The Configs share one bound per destination
// node: Inflight batches in flight to it from all sources together. Set
// From per source from its checkpoint before NewMigrator.
func Plan(old, new *ring.Ring, node func(name string) Node, base Config) ([]Config, error) {
	var out []Config
	inflight := base.Inflight
	if inflight <= 0 {
		inflight = DefaultInflight
	}
	base.destSlots = newSlotSet(inflight) // one bound per destination across the plan's sources
	for _, n := range old.Nodes() {
		if MovingFraction(old, new, n.Name) == 0 {
			continue
		}
		moving, err := MovingFrom(old, new, n.Name)
		if err != nil {
			return nil, err
		}
		c := base
		c.Source, c.SourceName, c.Moving = node(n.Name), n.Name, moving
		c.MovingFraction = MovingFraction(old, new, n.Name)
		if c.Source == nil {
			return nil, fmt.Errorf("rebalance: no client for source %q", n.Name)
		}
		c.Dests = map[int]Node{}
		src := old.Index(n.Name)
		for s := range ring.Slots {
			if old.SlotOwner(uint16(s)) != src {
				continue
			}
			d := new.SlotOwner(uint16(s))
			if name := new.Node(d).Name; name != n.Name && c.Dests[d] == nil {
				if c.Dests[d] = node(name); c.Dests[d] == nil {
					return nil, fmt.Errorf("rebalance: no client for destination %q", name)
				}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// sweep SCANs node (MATCH pattern if not empty) and, per SCAN reply,
// UNLINKs the keys pick returns as del and runs GCScript over the placement
// records it returns as recs. It returns the number of keys unlinked.
func sweep(ctx context.Context, node Node, pattern string, pick func(keys [][]byte) (del, recs [][]byte, err error)) (int64, error) {
	var total int64
	var cursor uint64
	for {
		keys, next, err := scanOnce(ctx, clientWire{node}, cursor, pattern, DefaultScanCount)
		if err != nil {
			return total, fmt.Errorf("SCAN: %w", err)
		}
		batch, recs, err := pick(keys)
		if err != nil {
			return total, err
		}
		if len(batch) > 0 {
			n, err := node.Do(ctx, UnlinkCommand(batch...).args()...).Int64()
			if err != nil {
				return total, fmt.Errorf("UNLINK: %w", err)
			}
			total += n
		}
		if _, err := gc(ctx, node, recs); err != nil {
			return total, fmt.Errorf("placement records: %w", err)
		}
		if cursor = next; cursor == 0 {
			return total, nil
		}
	}
}

// Cleanup deletes the markers of epoch from node (CLEANUP stage): `SCAN
// cursor MATCH <MarkerPattern(epoch)> COUNT 200` over the whole keyspace
// and `UNLINK` of what it finds. Run it on every destination only after
// the COMMIT barrier (no pod applies the read rule or Ensure of that epoch
// any more); markers also expire by themselves after their TTL. It returns
// the number of markers deleted.
func Cleanup(ctx context.Context, node Node, epoch uint64) (int64, error) {
	return sweep(ctx, node, MarkerPattern(epoch), func(keys [][]byte) (del, _ [][]byte, _ error) {
		for _, k := range keys {
			if e, _, ok := ParseMarker(k); ok && e == epoch {
				del = append(del, k)
			}
		}
		return del, nil, nil
	})
}

// RemoveLeftovers UNLINKs every non-marker key on node for which foreign
// returns true (CLEANUP stage, rebalance.md R9: copies a source failover
// brought back after their UNLINK was lost), with its placement record.
// foreign is typically "the owner under the new ring is not this node"; it
// is asked about a key's placement (its record's hash key, or the key
// itself). A record whose key is gone is deleted too (GCScript) when its
// hash key is foreign: the proxy never writes such a key here, so nothing
// can be creating it; records placed here are left alone (a write with
// hash= puts the record before the key, and could be between the two).
// Run only after the COMMIT barrier. Commands: `SCAN cursor COUNT 200`,
// `MGET pk…` (the keys' records), `MGET` (the records' own values),
// `UNLINK k…`, `EVAL <GCScript> …`. It returns the number of keys unlinked
// (records not counted).
func RemoveLeftovers(ctx context.Context, node Node, foreign func(key []byte) bool) (int64, error) {
	return sweep(ctx, node, "", func(keys [][]byte) (del, recs [][]byte, err error) {
		places, err := placesOf(ctx, clientWire{node}, keys)
		if err != nil {
			return nil, nil, err
		}
		var own [][]byte // the records SCAN returned
		for i, k := range keys {
			switch {
			case IsPlace(k):
				own = append(own, k)
			case IsMarker(k):
			case foreign(placeOr(k, places[i])):
				// The record goes with its key: GCScript runs after the UNLINK.
				del = append(del, k)
				recs = append(recs, PlaceKey(k))
			}
		}
		if len(own) > 0 {
			args := make([]any, 0, 1+len(own))
			args = append(args, "MGET")
			for _, r := range own {
				args = append(args, r)
			}
			v, err := node.Do(ctx, args...).Slice()
			if err != nil {
				return nil, nil, fmt.Errorf("MGET placement records: %w", err)
			}
			for j, x := range v {
				if s, ok := x.(string); ok && j < len(own) && foreign([]byte(s)) {
					recs = append(recs, own[j])
				}
			}
		}
		return del, recs, nil
	})
}

// ErrNotDrained: a node leaving the ring still holds keys.
var ErrNotDrained = errors.New("rebalance: node still holds keys")

// CheckDrained checks (`DBSIZE`) that a node removed from the ring is
// empty before it is dropped, returning ErrNotDrained with the count if
// not.
func CheckDrained(ctx context.Context, node Node) error {
	n, err := node.Do(ctx, "DBSIZE").Int64()
	if err != nil {
		return fmt.Errorf("DBSIZE: %w", err)
	}
	if n != 0 {
		return fmt.Errorf("%w: %d keys", ErrNotDrained, n)
	}
	return nil
}
