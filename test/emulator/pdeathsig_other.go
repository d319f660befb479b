//go:build !linux

package emulator

import "os/exec"

func setPdeathsig(cmd *exec.Cmd) {}
