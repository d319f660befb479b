// Package hotkeys finds, in bounded memory, the keys that take the most
// commands and the most bytes through a jupiter pod (Sketch), and keeps the
// commands whose request or reply was big (Big).
//
// Why a sketch: a pod sees millions of distinct keys; counting each exactly
// would cost memory in proportion. The Sketch is a count-min sketch with
// conservative update (Estan & Varghese) — Depth rows of Width counters,
// each key counted in one counter per row, its estimate the smallest of
// them, and only the counters equal to that minimum incremented — plus,
// for each ranking (commands, bytes), the TopK keys with the highest
// estimates seen. An estimate never falls below the key's true count and
// exceeds it only by the collisions left after conservative update.
//
// Space-saving or a plain top-K counter table would be smaller, but a key
// 10× as hot as each of 100,000 others holds about 1/10,000 of the traffic:
// space-saving only guarantees keys above 1/counters of it, i.e. it would
// need ~10,000 counters with their keys, and HeavyKeeper with 8,192×2
// buckets still lost such a key in a quarter of simulated runs. The
// conservative-update sketch at its default size (8192×4 32-bit counters for
// commands and as many 64-bit ones for bytes: 384 KiB per pod) found it
// first in every run of the simulation, and TestFindsHotKey checks it.
//
// Counts decay: every Config.HalfLife all counters halve, so the ranking
// follows what is hot now rather than since the pod started. The caller
// passes the time; the package reads no clock and does no I/O.
//
// Sampling: the proxy feeds the sketch one command in Config.Scale (the
// Sampler decides which), so a pod pays for a sketch update on a fraction
// of its commands; reported counts and bytes are scaled back up.
package hotkeys

import (
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Config sizes a Sketch. Zero values take the defaults.
type Config struct {
	Width int // counters per row, rounded up to a power of two (default 8192)
	Depth int // rows (default 4, at most 8)
	TopK  int // keys kept per ranking (default 64)
	// Scale is how many commands each sample stands for (the sampling
	// rate's N); reports multiply by it (default 1).
	Scale uint64
	// HalfLife: every HalfLife nanoseconds of the caller's clock, every
	// count halves (default one minute; negative: never).
	HalfLife int64
}

// MaxKeyBytes is the most of a key a Sketch or Big keeps for display;
// longer keys are told apart by their hash and shown cut.
const MaxKeyBytes = 256

const (
	defaultWidth    = 8192
	defaultDepth    = 4
	defaultTopK     = 64
	defaultHalfLife = int64(60e9)
	maxDepth        = 8
)

func (c Config) withDefaults() Config {
	if c.Width <= 0 {
		c.Width = defaultWidth
	}
	w := 1
	for w < c.Width {
		w <<= 1
	}
	c.Width = w
	if c.Depth <= 0 {
		c.Depth = defaultDepth
	}
	c.Depth = min(c.Depth, maxDepth)
	if c.TopK <= 0 {
		c.TopK = defaultTopK
	}
	if c.Scale == 0 {
		c.Scale = 1
	}
	if c.HalfLife == 0 {
		c.HalfLife = defaultHalfLife
	}
	return c
}

// Sample is one sampled command's use of one key.
type Sample struct {
	Key   []byte
	Node  string // the node serving the key (shown, not counted)
	Bytes int    // request and reply bytes attributed to this key
	Write bool   // the command may change the key
}

// Rank orders a report.
type Rank uint8

// Rankings.
const (
	ByCount Rank = iota // estimated commands
	ByBytes             // estimated request + reply bytes
)

// Item is one key of a report. Count and Bytes are the sketch's estimates
// (upper bounds, scaled by the sampling rate); Reads and Writes split Count
// in the proportion of reads and writes seen since the key entered the
// ranking.
type Item struct {
	Key      string `json:"key"`
	KeyBytes int    `json:"key_bytes"` // the key's full length (Key holds at most MaxKeyBytes)
	Node     string `json:"node"`
	Count    uint64 `json:"count"`
	Bytes    uint64 `json:"bytes"`
	Reads    uint64 `json:"reads"`
	Writes   uint64 `json:"writes"`
	// ID is ID(Key): how jupiter_hotkey_score names the key when names
	// are not exported.
	ID string `json:"id"`
	// Pods is, in a fleet-wide report (Merge), how many pods reported the
	// key; 0 in one pod's own report.
	Pods int `json:"pods,omitempty"`
}

// Sketch is the bounded top-K of hot keys. Safe for concurrent use; a nil
// *Sketch ignores samples and reports nothing.
type Sketch struct {
	cfg  Config
	mask uint64

	mu      sync.Mutex
	counts  []uint32 // Depth rows of Width
	bytes   []uint64
	byCount topList
	byBytes topList
	decayAt int64  // the caller's time of the next halving; 0: not started
	samples uint64 // samples ever added (Reset keeps counting)
}

// New returns an empty Sketch.
func New(cfg Config) *Sketch {
	cfg = cfg.withDefaults()
	n := cfg.Width * cfg.Depth
	return &Sketch{cfg: cfg, mask: uint64(cfg.Width - 1), counts: make([]uint32, n), bytes: make([]uint64, n),
		byCount: newTopList(cfg.TopK), byBytes: newTopList(cfg.TopK)}
}

// Scale is how many commands one sample stands for.
func (s *Sketch) Scale() uint64 {
	if s == nil {
		return 0
	}
	return s.cfg.Scale
}

// Add counts one sample at time now (the caller's clock, nanoseconds).
func (s *Sketch) Add(smp Sample, now int64) {
	if s == nil {
		return
	}
	h := Hash(smp.Key)
	var idx [maxDepth]int
	s.indexes(h, idx[:s.cfg.Depth])
	w := uint64(max(smp.Bytes, 0))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	s.decay(now)
	cnt := s.addCount(idx[:s.cfg.Depth])
	byt := s.addBytes(idx[:s.cfg.Depth], w)
	s.byCount.offer(h, smp, uint64(cnt))
	s.byBytes.offer(h, smp, byt)
}

// indexes fills idx with the key's counter in each row (double hashing).
func (s *Sketch) indexes(h uint64, idx []int) {
	h1, h2 := h, (h>>32|h<<32)|1
	for i := range idx {
		idx[i] = i*s.cfg.Width + int((h1+uint64(i)*h2)&s.mask)
	}
}

// addCount is the conservative update by one: only the counters at the
// minimum grow. It returns the new estimate.
func (s *Sketch) addCount(idx []int) uint32 {
	m := s.counts[idx[0]]
	for _, j := range idx[1:] {
		m = min(m, s.counts[j])
	}
	if m == ^uint32(0) {
		return m
	}
	for _, j := range idx {
		if s.counts[j] == m {
			s.counts[j] = m + 1
		}
	}
	return m + 1
}

// addBytes is the conservative update by w: every counter is raised to at
// least the new estimate, none further.
func (s *Sketch) addBytes(idx []int, w uint64) uint64 {
	m := s.bytes[idx[0]]
	for _, j := range idx[1:] {
		m = min(m, s.bytes[j])
	}
	est := m + w
	if est < m {
		est = ^uint64(0)
	}
	for _, j := range idx {
		s.bytes[j] = max(s.bytes[j], est)
	}
	return est
}

// estimate is the key's current count and bytes estimates (unscaled).
func (s *Sketch) estimate(h uint64) (cnt uint32, byt uint64) {
	var idx [maxDepth]int
	s.indexes(h, idx[:s.cfg.Depth])
	cnt, byt = ^uint32(0), ^uint64(0)
	for _, j := range idx[:s.cfg.Depth] {
		cnt = min(cnt, s.counts[j])
		byt = min(byt, s.bytes[j])
	}
	return cnt, byt
}

// decay halves every count once per HalfLife that passed by now.
func (s *Sketch) decay(now int64) {
	hl := s.cfg.HalfLife
	if hl < 0 {
		return
	}
	if s.decayAt == 0 {
		s.decayAt = now + hl
		return
	}
	shift := 0
	for now >= s.decayAt && shift < 64 {
		s.decayAt += hl
		shift++
	}
	if now >= s.decayAt { // a clock jump: start over from now
		s.decayAt = now + hl
	}
	if shift == 0 {
		return
	}
	for i := range s.counts {
		s.counts[i] = uint32(uint64(s.counts[i]) >> shift)
		s.bytes[i] >>= shift
	}
	s.byCount.halve(shift)
	s.byBytes.halve(shift)
}

// Samples is how many samples were ever added (not scaled; Reset does not
// reset it): a counter for metrics.
func (s *Sketch) Samples() uint64 {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// Top reports up to n keys (n ≤ 0: all kept) of a ranking, hottest first.
func (s *Sketch) Top(n int, by Rank) []Item {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.byCount
	if by == ByBytes {
		l = &s.byBytes
	}
	sc := s.cfg.Scale
	out := make([]Item, 0, len(l.c))
	for i := range l.c {
		c := &l.c[i]
		cnt, byt := s.estimate(c.h)
		if cnt == 0 && byt == 0 {
			continue
		}
		it := Item{Key: string(c.key), ID: ID(string(c.key)), KeyBytes: c.keyLen, Node: c.node, Count: uint64(cnt) * sc, Bytes: byt * sc}
		if seen := c.reads + c.writes; seen > 0 {
			it.Reads = uint64(float64(it.Count) * float64(c.reads) / float64(seen))
			it.Writes = it.Count - it.Reads
		}
		out = append(out, it)
	}
	return rank(out, n, by)
}

// rank sorts items hottest first by the ranking (stable: ties keep their
// order) and keeps n of them (n ≤ 0: all).
func rank(items []Item, n int, by Rank) []Item {
	slices.SortStableFunc(items, func(a, b Item) int {
		x, y := a.Count, b.Count
		if by == ByBytes {
			x, y = a.Bytes, b.Bytes
		}
		switch {
		case x > y:
			return -1
		case x < y:
			return 1
		}
		return 0
	})
	if n > 0 && len(items) > n {
		items = items[:n]
	}
	return items
}

// Merge sums several pods' reports into a fleet-wide one: per key, the
// counts, bytes, reads and writes add up, Pods counts the reports that
// hold it and Node is the one the pod with the highest count saw (they
// differ only while a rebalance moves the key). It returns the n hottest
// (n ≤ 0: all), ordered as Top orders them, ties by key.
//
// Each pod ranks only its own hottest keys, so a key hot across the fleet
// but outside some pod's ranking misses that pod's share: merged figures
// are sums of upper bounds over the pods that ranked the key, and a lower
// bound on the fleet's share of pods that did not. Pods report every key
// they rank (64 by default), not only their top n, to keep that small.
func Merge(reports [][]Item, n int, by Rank) []Item {
	type acc struct {
		Item
		best uint64 // the count of the report Node came from
	}
	idx := map[string]int{}
	var all []acc
	for _, rep := range reports {
		for _, it := range rep {
			id := strconv.Itoa(it.KeyBytes) + ":" + it.Key
			i, ok := idx[id]
			if !ok {
				i = len(all)
				idx[id] = i
				all = append(all, acc{Item: Item{Key: it.Key, ID: it.ID, KeyBytes: it.KeyBytes}})
			}
			a := &all[i]
			a.Count += it.Count
			a.Bytes += it.Bytes
			a.Reads += it.Reads
			a.Writes += it.Writes
			a.Pods += max(it.Pods, 1)
			if !ok || it.Count > a.best {
				a.Node, a.best = it.Node, it.Count
			}
		}
	}
	out := make([]Item, len(all))
	for i := range all {
		out[i] = all[i].Item
		if out[i].ID == "" {
			out[i].ID = ID(out[i].Key)
		}
	}
	slices.SortFunc(out, func(a, b Item) int { return strings.Compare(a.Key, b.Key) })
	return rank(out, n, by)
}

// Reset forgets every key.
func (s *Sketch) Reset() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	clear(s.bytes)
	s.byCount.c = s.byCount.c[:0]
	s.byBytes.c = s.byBytes.c[:0]
	s.decayAt = 0
}

// cand is a key of a ranking.
type cand struct {
	h             uint64
	key           []byte // at most MaxKeyBytes of it; the buffer is reused
	keyLen        int
	node          string
	est           uint64 // the ranking's estimate when last offered
	reads, writes uint64 // samples since it entered the ranking
}

// topList is one ranking's candidates: at most cap(c), the lowest estimate
// replaced by a key whose estimate beats it. Linear scans: for a few dozen
// entries they cost less than a heap and a map, and allocate nothing.
type topList struct {
	c []cand
}

func newTopList(k int) topList { return topList{c: make([]cand, 0, k)} }

func (t *topList) offer(h uint64, smp Sample, est uint64) {
	for i := range t.c {
		if c := &t.c[i]; c.h == h {
			c.est, c.node = est, smp.Node
			c.count(smp.Write)
			return
		}
	}
	var c *cand
	if len(t.c) < cap(t.c) {
		t.c = t.c[:len(t.c)+1]
		c = &t.c[len(t.c)-1]
	} else {
		lo := 0
		for i := range t.c {
			if t.c[i].est < t.c[lo].est {
				lo = i
			}
		}
		if est <= t.c[lo].est {
			return
		}
		c = &t.c[lo]
	}
	k := smp.Key
	if len(k) > MaxKeyBytes {
		k = k[:MaxKeyBytes]
	}
	*c = cand{h: h, key: append(c.key[:0], k...), keyLen: len(smp.Key), node: smp.Node, est: est}
	c.count(smp.Write)
}

func (c *cand) count(write bool) {
	if write {
		c.writes++
	} else {
		c.reads++
	}
}

// halve applies a decay of shift halvings; keys decayed to nothing leave.
func (t *topList) halve(shift int) {
	n := 0
	for i := range t.c {
		c := &t.c[i]
		c.est >>= shift
		c.reads >>= shift
		c.writes >>= shift
		if c.est > 0 {
			// Swap, not copy: every slot keeps a key buffer of its own
			// for reuse.
			t.c[n], t.c[i] = t.c[i], t.c[n]
			n++
		}
	}
	t.c = t.c[:n]
}

// ID names a key without showing it: "h:" and the 16 hex digits of its
// Hash. Reports carry it (Item.ID) and jupiter_hotkey_score labels keys
// with it unless names are allowed, so that a key seen on a dashboard can
// be found in JUPITER HOTKEYS, behind the passwords.
func ID(key string) string {
	const hex = "0123456789abcdef"
	h := Hash([]byte(key))
	b := [18]byte{'h', ':'}
	for i := 17; i >= 2; i-- {
		b[i] = hex[h&15]
		h >>= 4
	}
	return string(b[:])
}

// Hash is the 64-bit hash keys are counted by: FNV-1a, finished with a
// multiply-xorshift so that every bit depends on every input byte.
func Hash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
