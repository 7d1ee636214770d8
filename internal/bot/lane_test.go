package bot

import (
	"sync"
	"testing"
)

// TestLane: tasks run one at a time in the order pushed, on the lane's
// goroutine (push never waits, even while a task blocks); past the limit
// push refuses; clear drops the waiting ones but not the running one.
func TestLane(t *testing.T) {
	var wg sync.WaitGroup
	l := &lane{wg: &wg}
	block := make(chan struct{})
	started := make(chan struct{})
	var mu sync.Mutex
	var order []int
	record := func(i int) func() {
		return func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}
	}
	l.push(func() { close(started); <-block; record(0)() }, 2)
	<-started // task 0 runs and blocks; the next pushes return at once
	if n, ok := l.push(record(1), 2); !ok || n != 1 {
		t.Fatalf("push 1: %d waiting, %v", n, ok)
	}
	if n, ok := l.push(record(2), 2); !ok || n != 2 {
		t.Fatalf("push 2: %d waiting, %v", n, ok)
	}
	if n, ok := l.push(record(3), 2); ok || n != 2 {
		t.Fatalf("push 3 past the limit: %d waiting, %v (want refused)", n, ok)
	}
	if n := l.clear(); n != 2 {
		t.Fatalf("clear dropped %d, want 2", n)
	}
	l.push(record(4), 0)
	l.push(record(5), 0)
	close(block)
	wg.Wait()
	if len(order) != 3 || order[0] != 0 || order[1] != 4 || order[2] != 5 {
		t.Fatalf("ran %v, want [0 4 5]", order)
	}
	// An idle lane starts again.
	l.push(record(6), 1)
	wg.Wait()
	if order[len(order)-1] != 6 {
		t.Fatalf("ran %v", order)
	}
}
