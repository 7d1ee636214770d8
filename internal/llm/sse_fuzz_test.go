package llm

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzSSE: the event-stream reader never panics, returns each event's
// data within its bound, and ends (EOF or an error) on any input.
func FuzzSSE(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte(": comment\nevent: x\ndata: a\ndata: b\n\n"))
	f.Add([]byte("data:no-space\r\n\r\ndata"))
	f.Add([]byte("\n\n\nid: 1\nretry: 5\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := newSSEReader(bytes.NewReader(in), nil)
		for range len(in) + 2 {
			data, err := r.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(data) > maxSSEEvent || len(data) > len(in) {
				t.Fatalf("event of %d bytes from %d bytes", len(data), len(in))
			}
		}
		t.Fatal("the reader did not end")
	})
}
