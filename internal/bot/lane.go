package bot

import "sync"

// lane runs one place's work in order, on a goroutine of its own that
// lives only while there is work, so that whoever pushes never waits.
type lane struct {
	wg *sync.WaitGroup

	mu    sync.Mutex
	tasks []func()
	busy  bool
}

// push queues f behind the tasks pushed before, unless limit tasks are
// waiting already (limit 0: no limit). It reports how many tasks wait
// now (f included; the one running is not counted) and whether f was
// queued.
func (l *lane) push(f func(), limit int) (waiting int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit > 0 && len(l.tasks) >= limit {
		return len(l.tasks), false
	}
	l.tasks = append(l.tasks, f)
	if !l.busy {
		l.busy = true
		l.wg.Add(1)
		go l.run()
	}
	return len(l.tasks), true
}

func (l *lane) run() {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		if len(l.tasks) == 0 {
			l.busy = false
			l.mu.Unlock()
			return
		}
		f := l.tasks[0]
		l.tasks[0] = nil
		l.tasks = l.tasks[1:]
		l.mu.Unlock()
		f()
	}
}

// clear drops the waiting tasks (not the one running) and returns how
// many there were.
func (l *lane) clear() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.tasks)
	l.tasks = nil
	return n
}
