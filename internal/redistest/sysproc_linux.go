package redistest

import "syscall"

// killWithParent makes the kernel kill a started server when the test
// process dies without running its cleanups.
func killWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
