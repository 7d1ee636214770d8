package llm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// maxSSELine bounds one line of an event stream: a longer line is
// ErrMalformed rather than unbounded memory.
const maxSSELine = 1 << 20

// maxSSEEvent bounds the data of one event (its data lines together).
const maxSSEEvent = 4 << 20

// sseReader reads the events of a text/event-stream (the WHATWG
// "Server-sent events" format): lines of "field: value", an empty line
// ending an event. Only the data field matters to Chat Completions; the
// others (event, id, retry) and comments (":" lines) are skipped, as
// are lines with an unknown field, which the format says to ignore.
type sseReader struct {
	r *bufio.Reader
	// onLine is called after each line read (the watchdog's reset).
	onLine func()
}

func newSSEReader(r io.Reader, onLine func()) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 4096), onLine: onLine}
}

// next returns the data of the next event (data lines joined by "\n").
// At the end of the stream it returns io.EOF; an event cut off by the
// end is returned first if it has data.
func (s *sseReader) next() (string, error) {
	var data bytes.Buffer
	have := false
	for {
		line, err := s.readLine()
		if s.onLine != nil && (err == nil || len(line) > 0) {
			s.onLine()
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) == 0 {
				if have {
					return data.String(), nil
				}
				return "", io.EOF
			}
			if !errors.Is(err, io.EOF) {
				return "", err
			}
		}
		if len(line) == 0 {
			if have {
				return data.String(), nil
			}
			if err != nil {
				return "", io.EOF
			}
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		if string(field) == "data" {
			if have {
				data.WriteByte('\n')
			}
			if data.Len()+len(value) > maxSSEEvent {
				return "", fmt.Errorf("llm: event over %d bytes: %w", maxSSEEvent, ErrMalformed)
			}
			data.Write(value)
			have = true
		}
		if err != nil { // the last line, without its end of line
			return data.String(), nil
		}
	}
}

// readLine reads one line without its ending (\n, \r\n or \r alone is
// not supported: Chat Completions servers end lines with \n).
func (s *sseReader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := s.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxSSELine {
			return nil, fmt.Errorf("llm: line over %d bytes: %w", maxSSELine, ErrMalformed)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		return line, err
	}
}
