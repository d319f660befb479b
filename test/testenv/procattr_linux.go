package testenv

import "syscall"

// procAttr kills children with the test process, so a crashed or killed
// `go test` never leaves redis-server or jupiter processes behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
