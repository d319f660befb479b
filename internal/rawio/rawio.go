// Package rawio makes read(2) and write(2) on non-blocking sockets without
// telling the Go scheduler that a system call is in progress.
//
// Why: syscall.Read and syscall.Write enter the runtime's syscall state, and
// while a goroutine is in it the scheduler's monitor thread (sysmon) may take
// its P away and start another thread to run the rest; when the call
// returns, that thread parks again. A non-blocking socket call never waits,
// but on a busy machine the calling thread can be descheduled inside it
// long enough for sysmon to step in. Under redis-benchmark -c 50 with
// GOMAXPROCS=1 that hand-off showed up as three extra runtime threads
// switching ~0.25 times per proxied MSET and a monitor waking every 20 µs
// instead of backing off to 10 ms — context switches and timer interrupts
// that cost more than the proxying itself on a small VM. The calls here
// cannot block (the descriptors are the netpoller's, always O_NONBLOCK), so
// holding the P through them is safe; waiting is still done by the
// netpoller (RawConn.Read/Write).
package rawio

import (
	"syscall"
	"unsafe"
)

// Read is read(2) on a non-blocking descriptor; EINTR is retried.
func Read(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// Write is write(2) on a non-blocking descriptor; EINTR is retried.
func Write(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// Pending reports whether a non-blocking socket has bytes waiting to be
// read (recv(2) with MSG_PEEK: nothing is consumed). An end of stream or an
// error counts as nothing pending.
func Pending(fd uintptr) bool {
	var b [1]byte
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		return e == 0 && n > 0
	}
}
