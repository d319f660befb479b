package ring

import "sync/atomic"

// Holder publishes the current ring to the request hot path: Load is a
// single atomic pointer load, so routing never takes a lock, and a new ring
// is swapped in whole, so a request sees either the old ring or the new one,
// never a mix. The zero Holder holds nil and is ready to use.
type Holder struct {
	p atomic.Pointer[Ring]
}

// NewHolder returns a Holder holding r (which may be nil).
func NewHolder(r *Ring) *Holder {
	h := &Holder{}
	h.p.Store(r)
	return h
}

// Load returns the current ring (nil if none was ever stored).
func (h *Holder) Load() *Ring { return h.p.Load() }

// Store makes r the current ring and reports whether it did. It refuses
// (returns false) a nil ring and a ring whose version is lower than the
// current one, so a late, reordered update from a slow config source can
// never roll routing back. An equal version is accepted (re-publishing the
// same configuration is harmless). The check and the swap are one atomic
// step (a CompareAndSwap loop), so concurrent Stores cannot interleave
// between them.
func (h *Holder) Store(r *Ring) bool {
	if r == nil {
		return false
	}
	for {
		cur := h.p.Load()
		if cur != nil && r.version < cur.version {
			return false
		}
		if h.p.CompareAndSwap(cur, r) {
			return true
		}
	}
}
