package stack

import (
	"errors"
	"net"
	"sync"
)

// relay keeps pc-ingest's webhook address stable across pipeline restarts and crashes. The stack owns the
// listening socket; each pipeline's pc-ingest gets a listener over it (Listen), and a connection that
// arrives while none is held goes to idle instead (the stack answers it 503; Partner Center delivers
// again later), the way a load balancer in front of a restarting Deployment would.
type relay struct {
	ln   net.Listener
	idle *handoff

	mu  sync.Mutex
	cur *handoff
}

func newRelay(ln net.Listener) *relay {
	r := &relay{ln: ln, idle: newHandoff(ln.Addr())}
	go r.accept()
	return r
}

func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			r.idle.Close()
			r.release()
			return
		}
		r.mu.Lock()
		h := r.cur
		r.mu.Unlock()
		if h == nil || !h.offer(c) {
			if !r.idle.offer(c) {
				c.Close()
			}
		}
	}
}

// Listen hands out the listener the current pipeline's pc-ingest serves on; addr is the configured
// COSELL_PC_WEBHOOK_LISTEN, which the stack set to the relay's own address.
func (r *relay) Listen(addr string) (net.Listener, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if addr != r.ln.Addr().String() {
		return nil, errors.New("stack: pc-ingest asked for " + addr + ", the webhook relay listens on " + r.ln.Addr().String())
	}
	if r.cur != nil && !r.cur.isClosed() {
		return nil, errors.New("stack: the webhook listener is held by a running pc-ingest")
	}
	r.cur = newHandoff(r.ln.Addr())
	return r.cur, nil
}

// release cuts the current pc-ingest off at once (a crash); new connections go to idle.
func (r *relay) release() {
	r.mu.Lock()
	h := r.cur
	r.cur = nil
	r.mu.Unlock()
	if h != nil {
		h.Close()
	}
}

// Close stops accepting.
func (r *relay) Close() error { return r.ln.Close() }

// handoff is a net.Listener fed by the relay's accept loop.
type handoff struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// offer passes c to the server accepting on h; false when h is closed.
func (h *handoff) offer(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.closed:
		return false
	}
}

func (h *handoff) isClosed() bool {
	select {
	case <-h.closed:
		return true
	default:
		return false
	}
}

// Accept waits for the next connection the relay hands over.
func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this listener; the socket stays open for the next one.
func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

// Addr is the relay's address.
func (h *handoff) Addr() net.Addr { return h.addr }
