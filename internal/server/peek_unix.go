//go:build unix

package server

import "syscall"

// canPeek says that peekReadable works here.
const canPeek = true

// peekReadable reports whether the socket fd has bytes to read or has
// ended (or failed): false only when a read would block. It reads nothing
// (MSG_PEEK). For syscall.RawConn.Read, which waits for readability on
// false.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
}
