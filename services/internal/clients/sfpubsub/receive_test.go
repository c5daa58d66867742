package sfpubsub

import (
	"context"
	"testing"

	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub/pubsubpb"
)

// TestWaitingResponsesAreAllTaken: the responses read ahead while a batch was handled are all handed over
// with the next one (one REST read for all of them), not one or two at a time as a random pick between a
// waiting response and an expired timeout gave (bursts of 7–8 events in the bench's backlog of 500 new
// Opportunities, one Composite read each).
func TestWaitingResponsesAreAllTaken(t *testing.T) {
	const waiting = 40
	recv := make(chan received, waiting)
	for range waiting {
		recv <- received{resp: &pubsubpb.FetchResponse{Events: []*pubsubpb.ConsumerEvent{{}}}}
	}
	taken := 0
	for {
		_, ok, err := receive(context.Background(), recv, -1)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		taken++
	}
	if taken != waiting {
		t.Fatalf("took %d of the %d responses waiting", taken, waiting)
	}
}
