package pcemu

import (
	"context"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// webhookSenders is how many webhook POSTs the emulator has in flight at once (and the connections it
// keeps open to the receiver): enough that a burst of changes is not held back by the receiver's answers.
const webhookSenders = 64

// webhookClient is the default client for deliveries: its connections to the receiver are kept alive
// between notifications (net/http keeps only two idle per host by default, so a steady stream of
// notifications opened a connection for most of them).
func webhookClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = webhookSenders
	return &http.Client{Timeout: 10 * time.Second, Transport: t}
}

// outbound is one notification waiting for delivery: its body is encoded and signed once, whatever the
// number of attempts.
type outbound struct {
	n            pc.WebhookNotification
	reg          pc.WebhookRegistration
	validationID string
	done         chan struct{}
}

// webhookQueue delivers notifications concurrently across referrals and one after another, in the order
// of their change, for each referral: a receiver never gets a referral's notifications out of order from
// the emulator (Partner Center documents no order, so a receiver must still not rely on it), and one
// referral's failing deliveries and retries hold back only that referral's later notifications.
//
// Signing (RSA, most of the emulator's CPU per change) takes one of as many slots as there are CPUs, so
// a burst is signed first come, first served at full speed instead of every delivery slowing down together.
type webhookQueue struct {
	mu      sync.Mutex
	pending map[string][]*outbound // per referral (or validation), the head being delivered
	slots   chan struct{}          // a slot per POST in flight
	signing chan struct{}          // a slot per signature being computed
}

func newWebhookQueue() *webhookQueue {
	return &webhookQueue{pending: map[string][]*outbound{}, slots: make(chan struct{}, webhookSenders),
		signing: make(chan struct{}, runtime.GOMAXPROCS(0))}
}

// sign signs body in its turn among the deliveries waiting to be signed.
func (q *webhookQueue) sign(ctx context.Context, s *signer, body []byte) (string, error) {
	select {
	case q.signing <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-q.signing }()
	return s.signature(body)
}

// add queues o behind key's earlier notifications, by change date among those not yet being delivered;
// it reports whether key had none, so the caller starts its delivery loop.
func (q *webhookQueue) add(key string, o *outbound) (first bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.pending[key]
	// ResourceChangeUtcDate has a fixed width, so string order is time order. The head is in delivery.
	at := len(list)
	for at > 1 && list[at-1].n.ResourceChangeUTCDate > o.n.ResourceChangeUTCDate {
		at--
	}
	q.pending[key] = slices.Insert(list, at, o)
	return len(list) == 0
}

// next removes key's delivered head and returns the one after it (nil when key has no more).
func (q *webhookQueue) next(key string) *outbound {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.pending[key][1:]
	if len(list) == 0 {
		delete(q.pending, key)
		return nil
	}
	q.pending[key] = list
	return list[0]
}

// drain delivers key's notifications in order until none is left.
func (e *Emulator) drain(key string, o *outbound) {
	defer e.wg.Done()
	for ; o != nil; o = e.queue.next(key) {
		e.deliver(o)
		close(o.done)
	}
}
