//go:build unix

package testenv

import "syscall"

// Pause freezes the server with SIGSTOP: its port stays open and its
// connections stay up, but nothing is answered (a hung node, not a dead one).
// Resume undoes it; the test's cleanup resumes it too, so Stop can work.
func (r *Redis) Pause() {
	r.tb.Helper()
	if r.cmd == nil || r.cmd.Process == nil {
		r.tb.Fatal("Pause: redis-server is not running")
	}
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		r.tb.Fatal(err)
	}
	r.tb.Cleanup(r.Resume)
}

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
	}
}
