//go:build !unix

package server

// canPeek says that peekReadable does not work here: waitReadable returns
// at once.
const canPeek = false

func peekReadable(uintptr) bool { return true }
