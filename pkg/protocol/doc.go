// Package protocol defines the messenger's wire protocol: the handshake
// messages exchanged in the first WebSocket frames, the key schedule that
// turns the handshake into per-direction keys, the encrypted record layer
// that carries every later frame, the application messages inside records,
// and the error codes a peer reports.
//
// docs/protocol.md describes the same protocol byte by byte; the two must
// agree. Both the server (internal/server) and the Go client (pkg/client)
// build on this package, so a third-party client in Go can too.
//
// Every WebSocket message is one binary frame whose first byte is its type
// (TypeClientHello … TypeRecord). Handshake frames are plaintext; after both
// Finished messages every frame is a TypeRecord, authenticated and encrypted
// under the negotiated suite.
package protocol
