//go:build !linux

package redistest

import "syscall"

// killWithParent: only Linux can have the kernel kill a child when its
// parent dies; elsewhere the test's cleanup alone stops the servers.
func killWithParent() *syscall.SysProcAttr { return nil }
