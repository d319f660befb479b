//go:build linux

package proxy

import (
	"errors"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Dormancy: a plain-TCP client that has sent nothing for
// Options.DormantAfter gives up its goroutine until it sends again.
//
// Why: a parked session's goroutine is most of what an idle connection
// costs. Its stack is 4 KiB: the first command grows it past the 2 KiB
// start (the read, plan and flush path is deeper than the 1.1 KiB a 2 KiB
// stack leaves above its guard), and the runtime never shrinks it back,
// because it shrinks a stack only when less than a quarter of it is in use
// and the parked read path alone uses more. Everything else a connection
// holds (session, netFD, addresses, poll descriptor) is about 2 KiB. So a
// dormant session's socket is watched instead by one epoll instance owned
// by the server, itself watched by Go's netpoller; the first byte or the
// end of stream starts a new goroutine for it.
//
// The socket is added level-triggered and one-shot: bytes (or a FIN) that
// arrived before the add are reported at once, so nothing is missed between
// the session's last read and its registration, and a session is woken at
// most once per registration.
type sleeper struct {
	s  *session
	fd int // its socket
}

type dormancy struct {
	srv  *Server
	epfd int
	ep   *os.File // epfd, registered with the netpoller
	rc   syscall.RawConn
	done chan struct{}

	// Stack reclaim (see reclaim): sessions gone dormant so far and when
	// the last one did (unix nanos); the thresholds; the reclaimer's stop
	// and end.
	slept, lastSlept       atomic.Int64
	policy                 reclaimPolicy
	stopReclaim, reclaimed chan struct{}

	mu       sync.Mutex
	sleeping map[uint32]sleeper // by session id, the epoll events' data
	closed   bool
}

func newDormancy(srv *Server) (*dormancy, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	ep := os.NewFile(uintptr(fd), "jupiter-dormant-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	d := &dormancy{srv: srv, epfd: fd, ep: ep, rc: rc, done: make(chan struct{}), sleeping: map[uint32]sleeper{},
		policy:      reclaimPolicy{after: 1024, quiet: 2 * time.Second, every: 30 * time.Second, tick: time.Second},
		stopReclaim: make(chan struct{}), reclaimed: make(chan struct{})}
	if p := srv.opts.reclaim; p != nil {
		d.policy = *p
	}
	go d.run()
	go d.reclaim()
	return d, nil
}

// reclaimPolicy: reclaim after this many sessions went dormant, the last
// one quiet ago, at most once per every, looking each tick.
type reclaimPolicy struct {
	after              int64
	quiet, every, tick time.Duration
}

// reclaim returns the stacks of sessions that went dormant to the OS once
// a burst of them has settled. A session's goroutine ends when it goes
// dormant, but its 4 KiB stack stays in the runtime's free lists until the
// next garbage collection, and an idle proxy allocates too little to start
// one (Go forces one every 2 minutes): 10,000 connections that arrive at
// once and go quiet kept ~6 KB each instead of ~2. So when at least
// policy.after (1024) sessions went dormant since the last reclaim, the
// last of them policy.quiet (2s) ago, and no reclaim ran for policy.every
// (30s), one forced collection with scavenging (debug.FreeOSMemory) gives
// the stacks back. Its cost, a full GC cycle, is paid at most once per
// policy.every and only after such a burst; the request path is not
// involved.
func (d *dormancy) reclaim() {
	defer close(d.reclaimed)
	p := d.policy
	t := time.NewTicker(p.tick)
	defer t.Stop()
	var base int64
	var last time.Time
	for {
		select {
		case <-d.stopReclaim:
			return
		case <-t.C:
		}
		n := d.slept.Load()
		quiet := time.Duration(time.Now().UnixNano() - d.lastSlept.Load())
		if n-base < p.after || quiet < p.quiet || time.Since(last) < p.every {
			continue
		}
		debug.FreeOSMemory()
		base, last = n, time.Now()
		d.srv.Stats.StackReclaims.Add(1)
	}
}

// sleep registers s, whose goroutine is about to end, and reports whether
// it did: from then on s belongs to whoever takes it from d.sleeping.
func (d *dormancy) sleep(s *session) bool {
	d.mu.Lock()
	if _, taken := d.sleeping[s.id]; d.closed || taken { // taken: the id wrapped around
		d.mu.Unlock()
		return false
	}
	var ctlErr error
	sl := sleeper{s: s}
	err := s.rawConn.Control(func(fd uintptr) {
		sl.fd = int(fd)
		// The event carries the session id (in the field named Fd): ids
		// are unique among open sessions, socket numbers are reused.
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(s.id)}
		ctlErr = syscall.EpollCtl(d.epfd, syscall.EPOLL_CTL_ADD, sl.fd, &ev)
	})
	if err != nil || ctlErr != nil {
		d.mu.Unlock()
		return false
	}
	d.sleeping[s.id] = sl
	d.srv.Stats.Dormant.Add(1)
	d.mu.Unlock()
	d.slept.Add(1)
	d.lastSlept.Store(time.Now().UnixNano())
	// Shutdown stops a session after setting stopping, then wakes it if it
	// sleeps: either it found s here, or s sees stopping now and takes
	// itself back (and ends, like any stopped session).
	if s.stopping.Load() && d.take(s) {
		return false
	}
	return true
}

// take removes s from the sleepers and reports whether it was one; the
// caller then owns it.
func (d *dormancy) take(s *session) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.takeLocked(s)
}

func (d *dormancy) takeLocked(s *session) bool {
	sl, ok := d.sleeping[s.id]
	if !ok || sl.s != s {
		return false
	}
	delete(d.sleeping, s.id)
	// The socket is still open (only s's owner closes it): deleting by
	// its number cannot hit another connection.
	_ = syscall.EpollCtl(d.epfd, syscall.EPOLL_CTL_DEL, sl.fd, nil)
	d.srv.Stats.Dormant.Add(-1)
	return true
}

// wake ends s's dormancy now if it sleeps (Shutdown): its new goroutine
// sees stopping and closes it.
func (d *dormancy) wake(s *session) {
	if d.take(s) {
		d.srv.goSession(s, runResume)
	}
}

// run waits for sleepers' sockets to become readable and hands each to a
// new goroutine; with an idle timeout it also closes sleepers that
// exceeded it, checking every sweep.
func (d *dormancy) run() {
	defer close(d.done)
	events := make([]syscall.EpollEvent, 64)
	var sweep time.Duration
	if idle := d.srv.opts.IdleTimeout; idle > 0 {
		sweep = max(min(idle/4, time.Second), 10*time.Millisecond)
	}
	for {
		if sweep > 0 {
			_ = d.ep.SetReadDeadline(time.Now().Add(sweep))
		}
		err := d.rc.Read(func(fd uintptr) bool {
			for {
				n, err := syscall.EpollWait(int(fd), events, 0)
				if err == syscall.EINTR {
					continue
				}
				if err != nil {
					d.srv.log.Error("dormant connections: epoll_wait failed; waking them all", "err", err)
					return true
				}
				d.wakeReady(events[:n])
				if n < len(events) {
					return false // drained: wait for the netpoller
				}
			}
		})
		switch {
		case err == nil:
			d.wakeAll() // epoll_wait failed: serve them the ordinary way
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			d.expire()
		default:
			return // closed
		}
	}
}

func (d *dormancy) wakeReady(events []syscall.EpollEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range events {
		if sl, ok := d.sleeping[uint32(ev.Fd)]; ok && d.takeLocked(sl.s) {
			d.srv.goSession(sl.s, runResume)
		}
	}
}

// expire ends the sleepers silent for the idle timeout.
func (d *dormancy) expire() {
	limit := time.Now().UnixNano() - int64(d.srv.opts.IdleTimeout)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, sl := range d.sleeping {
		if sl.s.rawLast <= limit && d.takeLocked(sl.s) {
			d.srv.goSession(sl.s, runExpire)
		}
	}
}

func (d *dormancy) wakeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.srv.noSleep.Store(true)
	for _, sl := range d.sleeping {
		if d.takeLocked(sl.s) {
			d.srv.goSession(sl.s, runResume)
		}
	}
}

// close wakes any sleeper left, stops run and the reclaimer and waits for
// them.
func (d *dormancy) close() {
	close(d.stopReclaim)
	<-d.reclaimed // bounded: a FreeOSMemory in progress, then the select
	d.wakeAll()
	d.ep.Close() // returns once run is out of the file's read
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.srv.log.Error("dormant connections: watcher did not stop within 5s")
	}
}
