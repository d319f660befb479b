package emulator

import (
	"os/exec"
	"syscall"
)

// setPdeathsig kills the emulator if the test process dies without Stop.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
