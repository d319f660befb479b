package hotkeys

import (
	"bytes"
	"slices"
	"sync"
)

// BigItem is a key whose command carried a big request or reply.
type BigItem struct {
	Key      string `json:"key"`       // at most MaxKeyBytes of it; "" for a keyless command (KEYS…)
	KeyBytes int    `json:"key_bytes"` // the key's full length
	Command  string `json:"command"`   // lower case, "container|sub" for subcommands
	Node     string `json:"node"`      // the node(s) the command went to, comma-separated
	Size     int    `json:"size"`      // the largest request or reply seen, in bytes
	Reply    bool   `json:"reply"`     // Size is a reply's (else a request's)
	Count    uint64 `json:"count"`     // commands on this key and command at or above the threshold
	Last     int64  `json:"last"`      // unix seconds of the latest
}

// Big keeps the biggest commands seen (at or above a threshold), one entry
// per key and command, at most a fixed number: when full, a new one
// replaces the smallest if it is bigger. Safe for concurrent use; a nil *Big
// records nothing.
type Big struct {
	threshold int
	max       int

	mu    sync.Mutex
	items []bigItem
	seen  [2]uint64 // commands at or above the threshold: [0] by their request, [1] by their reply
}

type bigItem struct {
	BigItem
	key []byte // the stored key, compared on lookup
}

// NewBig returns a Big recording sizes ≥ threshold (≤ 0: none), keeping at
// most maxItems.
func NewBig(threshold, maxItems int) *Big {
	return &Big{threshold: threshold, max: max(maxItems, 1)}
}

// Threshold is the size from which a command is recorded; 0 when off.
func (b *Big) Threshold() int {
	if b == nil || b.threshold <= 0 {
		return 0
	}
	return b.threshold
}

// Add records a command on key (nil: keyless) whose request (reply false)
// or reply was size bytes, at unix time now (seconds). Sizes below the
// threshold are ignored.
func (b *Big) Add(key []byte, command, node string, size int, reply bool, now int64) {
	if b == nil || b.threshold <= 0 || size < b.threshold {
		return
	}
	k := key
	if len(k) > MaxKeyBytes {
		k = k[:MaxKeyBytes]
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if reply {
		b.seen[1]++
	} else {
		b.seen[0]++
	}
	for i := range b.items {
		it := &b.items[i]
		if it.Command == command && it.KeyBytes == len(key) && bytes.Equal(it.key, k) {
			it.Count++
			it.Last = now
			if size > it.Size {
				it.Size, it.Reply, it.Node = size, reply, node
			}
			return
		}
	}
	it := bigItem{BigItem: BigItem{Key: string(k), KeyBytes: len(key), Command: command, Node: node,
		Size: size, Reply: reply, Count: 1, Last: now}}
	it.key = []byte(it.Key)
	if len(b.items) < b.max {
		b.items = append(b.items, it)
		return
	}
	lo := 0
	for i := range b.items {
		if b.items[i].Size < b.items[lo].Size {
			lo = i
		}
	}
	if size > b.items[lo].Size {
		b.items[lo] = it
	}
}

// Seen is how many commands were recorded since the start (Reset keeps
// counting), by the size that made them big: the request's or the reply's.
func (b *Big) Seen() (requests, replies uint64) {
	if b == nil {
		return 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[0], b.seen[1]
}

// Len is how many key/command entries are held.
func (b *Big) Len() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items)
}

// Top returns up to n entries (n ≤ 0: all), biggest first.
func (b *Big) Top(n int) []BigItem {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	out := make([]BigItem, len(b.items))
	for i := range b.items {
		out[i] = b.items[i].BigItem
	}
	b.mu.Unlock()
	slices.SortStableFunc(out, func(x, y BigItem) int { return y.Size - x.Size })
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// Reset forgets every entry.
func (b *Big) Reset() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items = nil
}
