package asyncq

import "sync"

// Queue runs fn on each item posted, in the order posted, on one goroutine
// of its own. Close runs what is queued and waits for it.
type Queue[T any] struct {
	fn     func(T)
	max    int           // most items waiting; <= 0: no bound
	shrink func([]T) []T // at max, may drop items of lesser value
	kick   chan struct{} // capacity 1: something was queued
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu     sync.Mutex
	items  []T  // guarded by mu
	closed bool // guarded by mu
}

// New starts a Queue that runs fn. With max > 0, at most max items wait:
// when that many do, Post first gives shrink (if not nil) the waiting
// items to drop what matters least from, and drops the new item if they
// are still max.
func New[T any](fn func(T), max int, shrink func([]T) []T) *Queue[T] {
	q := &Queue[T]{fn: fn, max: max, shrink: shrink, kick: make(chan struct{}, 1), done: make(chan struct{})}
	q.wg.Add(1)
	go q.run()
	return q
}

// Post queues v for fn. It never blocks; it reports false when v was
// dropped: the queue is full (see New) or closed.
func (q *Queue[T]) Post(v T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if q.max > 0 && len(q.items) >= q.max {
		if q.shrink != nil {
			q.items = q.shrink(q.items)
		}
		if len(q.items) >= q.max {
			q.mu.Unlock()
			return false
		}
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	return true
}

func (q *Queue[T]) run() {
	defer q.wg.Done()
	for {
		select {
		case <-q.kick:
		case <-q.done:
			q.drain()
			return
		}
		q.drain()
	}
}

func (q *Queue[T]) drain() {
	for {
		q.mu.Lock()
		items := q.items
		q.items = nil
		q.mu.Unlock()
		if len(items) == 0 {
			return
		}
		for _, v := range items {
			q.fn(v)
		}
	}
}

// Close stops taking items, runs those queued and waits for fn to return.
// It is idempotent; it must not be called from fn.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.mu.Unlock()
	close(q.done)
	q.wg.Wait()
}
