package proxy

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
	"github.com/alphauslabs/jupiter/internal/ring"
)

// Message order across a channel's move.
//
// While a channel's slot moves, its subscriber listens on the old owner and
// on the new one, each through its own connection read by its own
// goroutine, and publishers switch from old to new pod by pod (FREEZE).
// Redis orders what one connection receives, not what two do: a message
// published on the new owner can reach the client before one published
// earlier on the old owner that still sits in the old connection's buffers
// (seen in TestRebalancePubSub). So a message that arrives from the new
// owner of a moving channel is held until a barrier on the old owner's
// connection returns: a PING sent after the message arrived, whose reply
// comes after everything the old owner had queued for this subscriber.
// Whatever was published on the old owner before the held message was
// published (the publisher's PUBLISH on the old owner had returned, or the
// publisher had not switched yet) was in that queue, so it reaches the
// client first, and per-publisher order holds across the switch.
//
// Messages of one connection keep their order: once one is held, the ones
// behind it wait too, even those that need no barrier. A burst read at once
// shares one barrier per old owner (sent when the connection has nothing
// more buffered), so a busy channel costs a PING per read, not per
// message. Outside a migration, and for channels that do not move, nothing
// changes: the check is one view load and a slot test.
//
// Not covered: an abort after FREEZE sends publishers back to the old owner
// while messages published on the new one may still be on their way; the
// reverse barrier is not taken (an abort is rare and already disturbs the
// stream less than a disconnect would).

// maxHeldBytes bounds what one subscriber holds for barriers: over it the
// client is disconnected, as Redis's pubsub output buffer limit (32 MiB)
// would disconnect a subscriber that falls that far behind.
const maxHeldBytes = 32 << 20

// pingCmd is the barrier.
var pingCmd = []byte("*1\r\n$4\r\nPING\r\n")

// orderGuard is a subscriber's held messages and barriers (pubsub.guard).
type orderGuard struct {
	mu sync.Mutex
	// queues: per connection that holds messages, its messages in arrival
	// order; a connection without a queue delivers directly.
	queues map[*subConn][]heldMsg
	// open: per old-owner connection, the barrier held messages join until
	// it is sent; sent: the barriers sent on it, in PING order.
	open  map[*subConn]*barrier
	sent  map[*subConn][]*barrier
	bytes int
	// held counts the queued messages and opened the open barriers, so
	// the readers' common case takes no lock.
	held   atomic.Int32
	opened atomic.Int32
}

type heldMsg struct {
	frame []byte
	wait  *barrier // nil: waits only for the messages before it
}

// barrier is one PING on an old owner's connection; done when its reply
// came (or the connection ended, or it timed out).
type barrier struct{ done bool }

// deliver passes a message frame r that c read to the client, or holds it
// (see above). It runs on c's reader goroutine, the only one that queues
// c's messages.
func (ps *pubsub) deliver(c *subConn, r []byte, kind string) {
	og := &ps.guard
	old := ps.barrierConn(c, r, kind)
	if old == nil && og.held.Load() == 0 {
		ps.write(r) // nothing of c is held: no order to keep
		return
	}
	og.mu.Lock()
	defer og.mu.Unlock()
	q := og.queues[c]
	if old == nil && len(q) == 0 {
		ps.write(r)
		return
	}
	h := heldMsg{frame: bytes.Clone(r)} // r is only valid until the next Receive
	if old != nil {
		b := og.open[old]
		if b == nil {
			b = &barrier{}
			if og.open == nil {
				og.open = map[*subConn]*barrier{}
			}
			og.open[old] = b
			og.opened.Add(1)
		}
		h.wait = b
	}
	if og.queues == nil {
		og.queues = map[*subConn][]heldMsg{}
	}
	og.queues[c] = append(q, h)
	og.held.Add(1)
	og.bytes += len(r)
	if og.bytes > maxHeldBytes {
		ps.nc.Close() // the readers fail next, and release everything
	}
}

// barrierConn is the connection to the old owner whose queue r must wait
// for: r is a message of a channel whose slot moves to c's node, and the
// subscriber listens on the slot's old owner too. Otherwise nil.
func (ps *pubsub) barrierConn(c *subConn, r []byte, kind string) *subConn {
	v := ps.srv.router.v.Load()
	m := v.mig
	if m == nil {
		return nil
	}
	i := 1 // message, smessage: [kind, channel, payload]
	if kind == "pmessage" {
		i = 2 // [pmessage, pattern, channel, payload]
	}
	name, ok := frameElem(r, i)
	if !ok {
		return nil
	}
	slot := ring.Slot(name)
	if !m.moves(slot) || v.addrs[m.dest[slot]] != c.addr {
		return nil
	}
	idx := ps.index.Load()
	if idx == nil {
		return nil
	}
	old := (*idx)[v.addrs[v.ring.SlotOwner(slot)]]
	if old == nil || old == c || old.closing.Load() {
		return nil
	}
	return old
}

// sendBarriers sends the open barriers. A reader calls it when it has
// nothing more buffered, so one PING covers a whole burst.
func (ps *pubsub) sendBarriers() {
	og := &ps.guard
	if og.opened.Load() == 0 {
		return
	}
	og.mu.Lock()
	olds := make([]*subConn, 0, len(og.open))
	for old, b := range og.open {
		if og.sent == nil {
			og.sent = map[*subConn][]*barrier{}
		}
		og.sent[old] = append(og.sent[old], b) // before the PING: its reply must find it
		olds = append(olds, old)
		delete(og.open, old)
		og.opened.Add(-1)
		time.AfterFunc(ps.srv.opts.ControlTimeout, func() { ps.expire(b) })
	}
	og.mu.Unlock()
	deadline := time.Now().Add(ps.srv.opts.ControlTimeout)
	for _, old := range olds {
		if err := old.send(pingCmd, deadline); err != nil {
			old.fail()
			ps.barriersEnd(old)
		}
	}
}

// pong is a barrier's reply on old: the oldest barrier sent there is done.
func (ps *pubsub) pong(old *subConn) {
	og := &ps.guard
	og.mu.Lock()
	defer og.mu.Unlock()
	s := og.sent[old]
	if len(s) == 0 {
		return
	}
	s[0].done = true
	if len(s) == 1 {
		delete(og.sent, old)
	} else {
		og.sent[old] = s[1:]
	}
	ps.releaseLocked()
}

// expire ends a barrier whose reply did not come within the control
// timeout (a node that stopped answering): the messages are late, not lost.
func (ps *pubsub) expire(b *barrier) {
	og := &ps.guard
	og.mu.Lock()
	defer og.mu.Unlock()
	if !b.done {
		b.done = true
		ps.releaseLocked()
	}
}

// barriersEnd ends every barrier on old (its connection ended: no reply
// will come, and nothing more will arrive through it).
func (ps *pubsub) barriersEnd(old *subConn) {
	og := &ps.guard
	og.mu.Lock()
	defer og.mu.Unlock()
	if b := og.open[old]; b != nil {
		b.done = true
		delete(og.open, old)
		og.opened.Add(-1)
	}
	for _, b := range og.sent[old] {
		b.done = true
	}
	delete(og.sent, old)
	ps.releaseLocked()
}

// releaseLocked writes every held message whose barrier and predecessors
// are done. og.mu is held.
func (ps *pubsub) releaseLocked() {
	og := &ps.guard
	for c, q := range og.queues {
		n := 0
		for n < len(q) && (q[n].wait == nil || q[n].wait.done) {
			ps.write(q[n].frame)
			og.bytes -= len(q[n].frame)
			n++
		}
		og.held.Add(int32(-n))
		if n == len(q) {
			delete(og.queues, c)
		} else {
			og.queues[c] = q[n:]
		}
	}
}

// frameElem is bulk element i of an array or push frame (frameKind's
// frames), without allocating.
func frameElem(r []byte, i int) ([]byte, bool) {
	off := bytes.IndexByte(r, '\n') + 1
	if off == 0 {
		return nil, false
	}
	var sc resp.Scanner
	for ; ; i-- {
		n, err := sc.Scan(r[off:])
		if err != nil || n == 0 {
			return nil, false
		}
		if i == 0 {
			b, _, ok := resp.Bulk(r[off : off+n])
			return b, ok
		}
		off += n
	}
}
