package rawio

import (
	"bytes"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-done
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// on runs f with c's descriptor (non-blocking, owned by the netpoller).
func on(t *testing.T, c *net.TCPConn, f func(fd uintptr)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(f); err != nil {
		t.Fatal(err)
	}
}

func TestReadWrite(t *testing.T) {
	a, b := pair(t)
	msg := []byte("*1\r\n$4\r\nPING\r\n")
	var n int
	var err error
	on(t, a, func(fd uintptr) { n, err = Write(fd, msg) })
	if err != nil || n != len(msg) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := make([]byte, 64)
	deadline := time.Now().Add(5 * time.Second)
	for {
		on(t, b, func(fd uintptr) { n, err = Read(fd, got) })
		if err != syscall.EAGAIN || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // loopback delivery is asynchronous
	}
	if err != nil || !bytes.Equal(got[:n], msg) {
		t.Fatalf("Read = %q, %v; want %q", got[:n], err, msg)
	}
	// Drained: a non-blocking read must not wait.
	on(t, b, func(fd uintptr) { n, err = Read(fd, got) })
	if err != syscall.EAGAIN {
		t.Fatalf("Read on an empty socket = %d, %v; want EAGAIN", n, err)
	}
	// Empty buffers make no system call and cannot fail.
	on(t, b, func(fd uintptr) { n, err = Read(fd, nil) })
	if n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	on(t, a, func(fd uintptr) { n, err = Write(fd, nil) })
	if n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v", n, err)
	}
}

func TestEndOfStreamAndReset(t *testing.T) {
	a, b := pair(t)
	a.Close()
	got := make([]byte, 8)
	var n int
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		on(t, b, func(fd uintptr) { n, err = Read(fd, got) })
		if err != syscall.EAGAIN || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if n != 0 || err != nil {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, nil (end of stream)", n, err)
	}
	// Writing to a closed peer fails (RST, then EPIPE) instead of
	// blocking or killing the process with SIGPIPE.
	for i := 0; i < 100 && err == nil; i++ {
		on(t, b, func(fd uintptr) { _, err = Write(fd, []byte("x")) })
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write to a closed peer: %v; want EPIPE or ECONNRESET", err)
	}
}

func TestFullSocketDoesNotBlock(t *testing.T) {
	a, _ := pair(t)
	chunk := make([]byte, 1<<20)
	var err error
	total := 0
	for i := 0; i < 1024; i++ { // far beyond any socket buffer
		var n int
		on(t, a, func(fd uintptr) { n, err = Write(fd, chunk) })
		total += n
		if err != nil {
			break
		}
	}
	if err != syscall.EAGAIN {
		t.Fatalf("after %d bytes to a peer that never reads: %v; want EAGAIN", total, err)
	}
}

// TestPending: Pending sees bytes without consuming them, and reports
// nothing for an empty socket or one at its end of stream.
func TestPending(t *testing.T) {
	a, b := pair(t)
	var p bool
	on(t, b, func(fd uintptr) { p = Pending(fd) })
	if p {
		t.Fatal("Pending on an empty socket")
	}
	if _, err := a.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !p; time.Sleep(time.Millisecond) {
		on(t, b, func(fd uintptr) { p = Pending(fd) })
		if time.Now().After(deadline) {
			t.Fatal("Pending never saw the bytes written")
		}
	}
	got := make([]byte, 64)
	n, err := b.Read(got)
	if err != nil || string(got[:n]) != "PING\r\n" {
		t.Fatalf("Read after Pending = %q, %v: the peek consumed bytes", got[:n], err)
	}
	on(t, b, func(fd uintptr) { p = Pending(fd) })
	if p {
		t.Fatal("Pending after every byte was read")
	}
	if err := a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Read(got); err == nil {
		t.Fatal("no end of stream after CloseWrite")
	}
	on(t, b, func(fd uintptr) { p = Pending(fd) })
	if p {
		t.Fatal("Pending at the end of stream")
	}
}
