package test

// The consistency oracle of the rebalance tests (rebalance_e2e_test.go): it
// records what clients did to keys while the ring changed — every write
// with its invoke and response time and outcome, every read with what it
// returned — and afterwards decides whether any read saw something it may
// not see. It is pure bookkeeping (no Redis, no jupiter) so that
// TestRebalanceOracle can prove on a fake history that it catches each kind
// of failure.
//
// The model, per string key: one writer at a time issues blind overwrites
// (SET k <seq>:<k>) and deletes, each with a seq strictly greater than the
// previous one, and never two at once (operations of one key are
// sequential). A read invoked at ri and answered at rd may return the state
// left by
//
//   - the last write or delete acknowledged before ri (j below; the preload
//     counts as acknowledged at its time), or
//   - any later operation invoked before rd that did not definitely fail
//     (acknowledged, or unknown outcome: timeout, lost connection).
//
// Anything else is a violation, classified as
//
//   - lost: nil where a value must be (the key vanished after an acked
//     write, or a preloaded key is gone);
//   - stale: an older value than j's, with no acknowledged delete between;
//   - resurrected: a value that was written before an acknowledged delete
//     (the delete was undone);
//   - phantom: a value never written to that key, one whose write failed
//     with an error reply (TRYAGAIN: not executed), or one whose write had
//     not been sent yet.
//
// Operations with an unknown outcome are assumed to take effect, if at all,
// before the writer's next operation of the same key completes (a client
// that timed out does not send the next write of the key on another
// connection while the old request still waits in a proxy; with ReadTimeout
// far above any latency seen here that holds).
//
// Counters (INCR) must end in [init+acked, init+acked+unknown]; lists
// (RPUSH <seq> by one writer) must end as their preloaded elements followed
// by strictly increasing seqs that contain every acked push and only pushes
// that did not definitely fail.

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rbOutcome is what a client knows about one write.
type rbOutcome uint8

const (
	rbOK      rbOutcome = iota // acknowledged
	rbFailed                   // error reply that means "not executed" (TRYAGAIN)
	rbUnknown                  // no reply or an unexpected error: may have taken effect
)

func (o rbOutcome) String() string {
	return [...]string{"ok", "failed", "unknown"}[o]
}

// rbOp is one write (or delete) of a string key.
type rbOp struct {
	Seq          int64
	Del          bool
	Invoke, Done time.Duration // since the oracle's start
	Out          rbOutcome
}

// rbRead is one GET: Nil, or the seq of the value it returned (Bad if the
// value does not parse as this key's value).
type rbRead struct {
	Invoke, Done time.Duration
	Nil          bool
	Seq          int64
	Bad          string // unparseable or another key's value
}

type rbKeyHist struct {
	ops   []rbOp
	reads []rbRead
}

type rbCounter struct {
	init              int64
	ok, failed, unkn  int64
	final             int64
	finalSet, missing bool
}

type rbList struct {
	init     []string
	pushes   map[int64]rbOutcome
	final    []string
	finalSet bool
}

// rbOracle records a history; safe for concurrent use.
type rbOracle struct {
	start    time.Time
	mu       sync.Mutex
	keys     map[string]*rbKeyHist
	counters map[string]*rbCounter
	lists    map[string]*rbList
}

func newRBOracle() *rbOracle {
	return &rbOracle{start: time.Now(), keys: map[string]*rbKeyHist{},
		counters: map[string]*rbCounter{}, lists: map[string]*rbList{}}
}

// Now is the oracle's clock (monotonic, since its start).
func (o *rbOracle) Now() time.Duration { return time.Since(o.start) }

// rbValue is the value a write of seq to key stores.
func rbValue(key string, seq int64) string { return strconv.FormatInt(seq, 10) + ":" + key }

func (o *rbOracle) key(k string) *rbKeyHist {
	h := o.keys[k]
	if h == nil {
		h = &rbKeyHist{}
		o.keys[k] = h
	}
	return h
}

// Write records a SET (del false) or DEL of key with seq. Calls for one key
// must come from its single writer, in order.
func (o *rbOracle) Write(key string, seq int64, del bool, inv, done time.Duration, out rbOutcome) {
	o.mu.Lock()
	h := o.key(key)
	h.ops = append(h.ops, rbOp{Seq: seq, Del: del, Invoke: inv, Done: done, Out: out})
	o.mu.Unlock()
}

// Read records a GET of key that returned val (isNil: no value).
func (o *rbOracle) Read(key string, inv, done time.Duration, val string, isNil bool) {
	r := rbRead{Invoke: inv, Done: done, Nil: isNil}
	if !isNil {
		s, k, ok := strings.Cut(val, ":")
		n, err := strconv.ParseInt(s, 10, 64)
		switch {
		case !ok || err != nil:
			r.Bad = fmt.Sprintf("unparseable value %q", val)
		case k != key:
			r.Bad = fmt.Sprintf("value %q of another key", val)
		default:
			r.Seq = n
		}
	}
	o.mu.Lock()
	h := o.key(key)
	h.reads = append(h.reads, r)
	o.mu.Unlock()
}

// CounterInit declares a counter whose value was init (acked) at preload.
func (o *rbOracle) CounterInit(key string, init int64) {
	o.mu.Lock()
	o.counters[key] = &rbCounter{init: init}
	o.mu.Unlock()
}

// Incr records one INCR of a declared counter.
func (o *rbOracle) Incr(key string, out rbOutcome) {
	o.mu.Lock()
	c := o.counters[key]
	switch out {
	case rbOK:
		c.ok++
	case rbFailed:
		c.failed++
	default:
		c.unkn++
	}
	o.mu.Unlock()
}

// CounterFinal records the counter's value at the end (missing: GET nil).
func (o *rbOracle) CounterFinal(key string, v int64, missing bool) {
	o.mu.Lock()
	c := o.counters[key]
	c.final, c.missing, c.finalSet = v, missing, true
	o.mu.Unlock()
}

// ListInit declares a list preloaded with elems.
func (o *rbOracle) ListInit(key string, elems []string) {
	o.mu.Lock()
	o.lists[key] = &rbList{init: elems, pushes: map[int64]rbOutcome{}}
	o.mu.Unlock()
}

// Push records RPUSH key <seq> of a declared list.
func (o *rbOracle) Push(key string, seq int64, out rbOutcome) {
	o.mu.Lock()
	o.lists[key].pushes[seq] = out
	o.mu.Unlock()
}

// ListFinal records the list's elements at the end.
func (o *rbOracle) ListFinal(key string, elems []string) {
	o.mu.Lock()
	l := o.lists[key]
	l.final, l.finalSet = elems, true
	o.mu.Unlock()
}

// rbReport is the oracle's verdict.
type rbReport struct {
	Keys, Reads                             int
	WritesOK, WritesFailed, WritesUnknown   int
	Lost, Stale, Resurrected, Phantom       int
	Counters, CounterLost, CounterExtra     int
	IncrOK, IncrFailed, IncrUnknown         int64
	Lists, ListLost, ListPhantom, ListOrder int
	Examples                                []string // the first violations, for the failure message
}

// Violations is the number of problems found.
func (r rbReport) Violations() int {
	return r.Lost + r.Stale + r.Resurrected + r.Phantom + r.CounterLost + r.CounterExtra +
		r.ListLost + r.ListPhantom + r.ListOrder
}

func (r rbReport) String() string {
	s := fmt.Sprintf("keys=%d reads=%d writes ok/failed/unknown=%d/%d/%d | lost=%d stale=%d resurrected=%d phantom=%d | "+
		"counters=%d (incr ok/failed/unknown=%d/%d/%d) lost-incr=%d extra-incr=%d | lists=%d lost-push=%d phantom-push=%d out-of-order=%d",
		r.Keys, r.Reads, r.WritesOK, r.WritesFailed, r.WritesUnknown, r.Lost, r.Stale, r.Resurrected, r.Phantom,
		r.Counters, r.IncrOK, r.IncrFailed, r.IncrUnknown, r.CounterLost, r.CounterExtra,
		r.Lists, r.ListLost, r.ListPhantom, r.ListOrder)
	if len(r.Examples) > 0 {
		s += "\n  " + strings.Join(r.Examples, "\n  ")
	}
	return s
}

const rbMaxExamples = 25

func (r *rbReport) example(format string, args ...any) {
	if len(r.Examples) < rbMaxExamples {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

func rbMS(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// Check evaluates the whole history.
func (o *rbOracle) Check() rbReport {
	o.mu.Lock()
	defer o.mu.Unlock()
	var r rbReport
	names := make([]string, 0, len(o.keys))
	for k := range o.keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		h := o.keys[k]
		r.Keys++
		for _, op := range h.ops {
			switch op.Out {
			case rbOK:
				r.WritesOK++
			case rbFailed:
				r.WritesFailed++
			default:
				r.WritesUnknown++
			}
		}
		for _, rd := range h.reads {
			r.Reads++
			checkRead(&r, k, h.ops, rd)
		}
	}
	cnames := make([]string, 0, len(o.counters))
	for k := range o.counters {
		cnames = append(cnames, k)
	}
	sort.Strings(cnames)
	for _, k := range cnames {
		c := o.counters[k]
		r.Counters++
		r.IncrOK += c.ok
		r.IncrFailed += c.failed
		r.IncrUnknown += c.unkn
		if !c.finalSet {
			continue
		}
		lo, hi := c.init+c.ok, c.init+c.ok+c.unkn
		switch {
		case c.missing:
			r.CounterLost++
			r.example("counter %s missing at the end (init %d, %d acked INCR)", k, c.init, c.ok)
		case c.final < lo:
			r.CounterLost++
			r.example("counter %s = %d, want >= %d (init %d + %d acked INCR): %d increments lost", k, c.final, lo, c.init, c.ok, lo-c.final)
		case c.final > hi:
			r.CounterExtra++
			r.example("counter %s = %d, want <= %d (init %d + %d acked + %d unknown INCR; %d failed)", k, c.final, hi, c.init, c.ok, c.unkn, c.failed)
		}
	}
	lnames := make([]string, 0, len(o.lists))
	for k := range o.lists {
		lnames = append(lnames, k)
	}
	sort.Strings(lnames)
	for _, k := range lnames {
		l := o.lists[k]
		r.Lists++
		if l.finalSet {
			checkList(&r, k, l)
		}
	}
	return r
}

// checkRead classifies one read of key against its writes (in order).
func checkRead(r *rbReport, key string, ops []rbOp, rd rbRead) {
	// j: the last operation acknowledged before the read was invoked.
	j := -1
	for i, op := range ops {
		if op.Out == rbOK && op.Done < rd.Invoke {
			j = i
		}
	}
	allowed := func(i int) bool { // may the read return op i's state?
		if i == j {
			return true
		}
		return i > j && ops[i].Out != rbFailed && ops[i].Invoke < rd.Done
	}
	window := fmt.Sprintf("read [%s,%s]", rbMS(rd.Invoke), rbMS(rd.Done))
	if rd.Bad != "" {
		r.Phantom++
		r.example("phantom: %s %s returned %s", key, window, rd.Bad)
		return
	}
	if rd.Nil {
		if j < 0 {
			return // never written before the read, and nothing forces a value
		}
		for i := range ops {
			if allowed(i) && ops[i].Del {
				return
			}
		}
		r.Lost++
		r.example("lost: %s %s returned nil; seq %d acked at %s (%s)", key, window, ops[j].Seq, rbMS(ops[j].Done), describeOps(ops, j))
		return
	}
	idx := -1
	for i, op := range ops {
		if op.Seq == rd.Seq && !op.Del {
			idx = i
			break
		}
	}
	switch {
	case idx < 0:
		r.Phantom++
		r.example("phantom: %s %s returned seq %d, never written", key, window, rd.Seq)
	case allowed(idx):
		return
	case ops[idx].Out == rbFailed:
		r.Phantom++
		r.example("phantom: %s %s returned seq %d whose write failed [%s,%s]", key, window, rd.Seq, rbMS(ops[idx].Invoke), rbMS(ops[idx].Done))
	case idx > j:
		r.Phantom++
		r.example("phantom: %s %s returned seq %d, written only at %s", key, window, rd.Seq, rbMS(ops[idx].Invoke))
	default: // idx < j: older than what must be seen
		for i := idx + 1; i <= j; i++ {
			if ops[i].Del && ops[i].Out == rbOK {
				r.Resurrected++
				r.example("resurrected: %s %s returned seq %d, deleted by seq %d acked at %s (%s)", key, window, rd.Seq, ops[i].Seq, rbMS(ops[i].Done), describeOps(ops, j))
				return
			}
		}
		r.Stale++
		r.example("stale: %s %s returned seq %d, seq %d acked at %s (%s)", key, window, rd.Seq, ops[j].Seq, rbMS(ops[j].Done), describeOps(ops, j))
	}
}

// describeOps shows the operations around index j for an example line.
func describeOps(ops []rbOp, j int) string {
	lo, hi := max(0, j-2), min(len(ops), j+3)
	parts := make([]string, 0, hi-lo)
	for _, op := range ops[lo:hi] {
		kind := "set"
		if op.Del {
			kind = "del"
		}
		parts = append(parts, fmt.Sprintf("%s %d %s [%s,%s]", kind, op.Seq, op.Out, rbMS(op.Invoke), rbMS(op.Done)))
	}
	return strings.Join(parts, "; ")
}

func checkList(r *rbReport, key string, l *rbList) {
	f := l.final
	if len(f) < len(l.init) || strings.Join(f[:len(l.init)], "\x00") != strings.Join(l.init, "\x00") {
		r.ListLost++
		r.example("list %s does not start with its preloaded %q: %q", key, l.init, rbHead(f))
		return
	}
	seen := map[int64]bool{}
	last := int64(-1 << 62)
	for _, e := range f[len(l.init):] {
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			r.ListPhantom++
			r.example("list %s has an element %q nobody pushed", key, e)
			continue
		}
		if n <= last {
			r.ListOrder++
			r.example("list %s: %d after %d (duplicate or reordered push)", key, n, last)
		}
		last = n
		seen[n] = true
		if out, ok := l.pushes[n]; !ok || out == rbFailed {
			r.ListPhantom++
			r.example("list %s has %d, which was not pushed or whose push failed", key, n)
		}
	}
	for n, out := range l.pushes {
		if out == rbOK && !seen[n] {
			r.ListLost++
			r.example("list %s lacks acked push %d", key, n)
		}
	}
}

func rbHead(s []string) []string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// TestRebalanceOracle proves the oracle on a hand-made history: every kind
// of violation is found exactly where it was planted, and legal histories
// (overlapping writes, unknown outcomes, deletes) pass.
func TestRebalanceOracle(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	o := newRBOracle()
	// key a: preload 0, then set 1 [10,20], set 2 [30,40], del 3 [50,60],
	// set 4 unknown [70,80], set 5 failed (TRYAGAIN) [90,100].
	a := "a"
	o.Write(a, 0, false, 0, ms(1), rbOK)
	o.Write(a, 1, false, ms(10), ms(20), rbOK)
	o.Write(a, 2, false, ms(30), ms(40), rbOK)
	o.Write(a, 3, true, ms(50), ms(60), rbOK)
	o.Write(a, 4, false, ms(70), ms(80), rbUnknown)
	o.Write(a, 5, false, ms(90), ms(100), rbFailed)
	read := func(k string, inv, done int, seq int64, isNil bool) {
		o.Read(k, ms(inv), ms(done), rbValue(k, seq), isNil)
	}
	// Legal reads.
	read(a, 2, 5, 0, false)    // preload
	read(a, 15, 25, 0, false)  // set 1 not acked before the read: old value allowed
	read(a, 15, 25, 1, false)  // … and the new one
	read(a, 35, 45, 1, false)  // set 2 overlaps the read
	read(a, 35, 45, 2, false)  //
	read(a, 55, 65, 2, false)  // del overlaps
	read(a, 55, 65, 0, true)   //
	read(a, 65, 68, 0, true)   // after the del
	read(a, 75, 85, 4, false)  // unknown write may have applied
	read(a, 110, 120, 0, true) // … or not
	read(a, 110, 120, 4, false)
	// Planted violations.
	read(a, 45, 48, 1, false)   // stale: 2 acked at 40
	read(a, 21, 29, 0, true)    // lost: 1 acked at 20, nil
	read(a, 65, 68, 2, false)   // resurrected: deleted by 3 at 60
	read(a, 110, 120, 5, false) // phantom: its write failed
	read(a, 21, 29, 2, false)   // phantom: set 2 sent only at 30
	read(a, 110, 120, 9, false) // phantom: never written
	o.Read(a, ms(110), ms(120), "4:b", false)
	// key n: never preloaded; reads before its first write see nil.
	o.Write("n", 1, false, ms(50), ms(60), rbOK)
	read("n", 10, 20, 0, true)
	read("n", 55, 58, 0, true)
	read("n", 70, 80, 0, true) // lost

	// Counters: 10 acked, 2 unknown, 3 failed INCR from 100.
	for _, k := range []string{"c-ok-lo", "c-ok-hi", "c-lost", "c-extra", "c-gone"} {
		o.CounterInit(k, 100)
		for i := range 15 {
			o.Incr(k, []rbOutcome{rbOK, rbUnknown, rbFailed}[min(i/10+i/12, 2)])
		}
	}
	o.CounterFinal("c-ok-lo", 110, false)
	o.CounterFinal("c-ok-hi", 112, false)
	o.CounterFinal("c-lost", 109, false)
	o.CounterFinal("c-extra", 113, false) // a failed INCR applied
	o.CounterFinal("c-gone", 0, true)

	// Lists: preloaded [x], pushes 1..4: 1,2 ok, 3 unknown, 4 failed.
	for _, k := range []string{"l-ok", "l-ok3", "l-lost", "l-phantom", "l-order", "l-init"} {
		o.ListInit(k, []string{"x"})
		o.Push(k, 1, rbOK)
		o.Push(k, 2, rbOK)
		o.Push(k, 3, rbUnknown)
		o.Push(k, 4, rbFailed)
	}
	o.ListFinal("l-ok", []string{"x", "1", "2"})
	o.ListFinal("l-ok3", []string{"x", "1", "2", "3"})
	o.ListFinal("l-lost", []string{"x", "2"})
	o.ListFinal("l-phantom", []string{"x", "1", "2", "4"})
	o.ListFinal("l-order", []string{"x", "2", "1"})
	o.ListFinal("l-init", []string{"1", "2"})

	r := o.Check()
	t.Logf("%v", r)
	want := rbReport{Keys: 2, Reads: 21, WritesOK: 5, WritesFailed: 1, WritesUnknown: 1,
		Lost: 2, Stale: 1, Resurrected: 1, Phantom: 4,
		Counters: 5, CounterLost: 2, CounterExtra: 1, IncrOK: 50, IncrFailed: 15, IncrUnknown: 10,
		Lists: 6, ListLost: 2, ListPhantom: 1, ListOrder: 1}
	got := r
	got.Examples = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("oracle report\n got %+v\nwant %+v", got, want)
	}
	if r.Violations() != 15 || len(r.Examples) != 15 {
		t.Fatalf("violations %d, examples %d, want 15", r.Violations(), len(r.Examples))
	}
	for _, s := range []string{"stale: a", "lost: a", "lost: n", "resurrected: a", "never written", "whose write failed", "written only at", "another key",
		"increments lost", "counter c-gone missing", "lacks acked push 1", "does not start with", "4, which was not pushed", "1 after 2"} {
		found := false
		for _, ex := range r.Examples {
			found = found || strings.Contains(ex, s)
		}
		if !found {
			t.Errorf("no example mentions %q", s)
		}
	}
}
