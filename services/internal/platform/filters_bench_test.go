package platform

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkDurableFilters: what a durable's filter costs the server per delivery on a stream of many
// subjects, as COSELL_OBSERVED is (a snapshot and a notification subject per referral): two filters
// (mapper-observed as contracts names it), one wildcard naming the same messages, and the whole stream
// (">"). Each op reads the stream's matching messages once through a new durable, 100 at a time; server
// and client share the process, so ns per delivery counts both.
func BenchmarkDurableFilters(b *testing.B) {
	ns := startServer(b, "")
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	prefixes := []string{"t.pc.referral.observed.", "t.sf.opportunity.observed.", "t.pc.referral.notified."}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{prefixes[0] + ">", prefixes[1] + ">", prefixes[2] + ">"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	const subjects, rounds = 2000, 3
	for i := 0; i < subjects*rounds; i++ {
		for _, p := range prefixes {
			if _, err := js.PublishAsync(fmt.Sprintf("%sr%d", p, i%subjects), make([]byte, 512)); err != nil {
				b.Fatal(err)
			}
		}
	}
	<-js.PublishAsyncComplete()
	for _, c := range []struct {
		name    string
		filters []string
		want    int
	}{
		{"two-filters", []string{prefixes[0] + ">", prefixes[1] + ">"}, 2 * subjects * rounds},
		{"one-wildcard", []string{"t.*.*.observed.>"}, 2 * subjects * rounds},
		{"whole-stream", []string{">"}, 3 * subjects * rounds},
	} {
		b.Run(c.name, func(b *testing.B) {
			var got int
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("d%d", i)
				cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: name, FilterSubjects: c.filters, AckPolicy: jetstream.AckExplicitPolicy})
				if err != nil {
					b.Fatal(err)
				}
				for n := 0; n < c.want; {
					batch, err := cons.Fetch(100, jetstream.FetchMaxWait(5*time.Second))
					if err != nil {
						b.Fatal(err)
					}
					k := 0
					for m := range batch.Messages() {
						_ = m.Ack()
						k++
					}
					if k == 0 {
						b.Fatalf("%d of %d delivered", n, c.want)
					}
					n += k
				}
				got += c.want
				_ = js.DeleteConsumer(ctx, "T", name)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(got), "ns/delivery")
		})
	}
}
