package pattern

import "sync"

// notifier runs user callbacks in order on a goroutine of its own, so that
// no internal goroutine ever waits for user code. Its queue is unbounded:
// callbacks are rare events (dead messages), not a data path.
type notifier struct {
	mu     sync.Mutex
	queue  []func()
	kick   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	closed bool
}

func newNotifier() *notifier {
	n := &notifier{kick: make(chan struct{}, 1), done: make(chan struct{})}
	n.wg.Add(1)
	go n.run()
	return n
}

func (n *notifier) post(f func()) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.queue = append(n.queue, f)
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	defer n.wg.Done()
	for {
		select {
		case <-n.kick:
		case <-n.done:
			n.drain()
			return
		}
		n.drain()
	}
}

func (n *notifier) drain() {
	for {
		n.mu.Lock()
		q := n.queue
		n.queue = nil
		n.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, f := range q {
			f()
		}
	}
}

// close runs what is queued and waits for it.
func (n *notifier) close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	close(n.done)
	n.wg.Wait()
}
