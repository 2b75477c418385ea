package sink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
	"github.com/leadflow/leadflow/services/lifecycle/internal/sink"
	"github.com/leadflow/leadflow/services/lifecycle/internal/store"
)

// importBatch is what a relay hands lifecycle after an import of fresh
// leads: each lead captured and scored, every fifth one qualified too.
func importBatch(b testing.TB, batch, size int) []*eventsv1.Event {
	evs := make([]*eventsv1.Event, 0, size)
	for i := 0; len(evs) < size; i++ {
		lead := fmt.Sprintf("b%d-l%d", batch, i)
		evs = append(evs, event(b, "acme", lead, "ingestion", &eventsv1.LeadCaptured{
			Attributes: &eventsv1.LeadAttributes{Source: "import", Campaign: "spring"},
		}))
		evs = append(evs, event(b, "acme", lead, "scoring", &eventsv1.LeadScored{TotalScore: 42}))
		if i%5 == 0 {
			evs = append(evs, event(b, "acme", lead, "scoring", &eventsv1.LeadQualified{
				Reason: eventsv1.LeadQualified_REASON_SCORE_THRESHOLD, TotalScore: 85,
			}))
		}
	}
	return evs[:size]
}

// BenchmarkDeliverEvents hands the sink batches of 100 events as a relay
// does (one DeliverEvents call, one transaction each) and reports events/s
// and the round trips and statements per event, for the sink as it runs
// (events/unit: a call's events share a store unit) and, in the same run,
// with each event handled on its own (events/each):
//
//	go test -run XXX -bench DeliverEvents -benchtime 200x -count 3 ./services/lifecycle/internal/sink/
func BenchmarkDeliverEvents(b *testing.B) {
	for _, mode := range []string{"unit", "each"} {
		b.Run("events="+mode, func(b *testing.B) {
			const size = 100
			c := &pgtest.RoundTrips{}
			pool := pgtest.NewCountingPool(b, c, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
			st := store.New(pool, store.NewPublisher("lifecycle", "handoff", "scoring"))
			svc := lifecycle.NewService(st)
			srv := sink.NewServer(pool, svc, st)
			if mode == "each" {
				srv = outbox.NewSinkServer(pool, sink.Handlers(svc, st))
			}
			ctx := context.Background()

			batches := make([][]*eventsv1.Event, b.N)
			for i := range batches {
				batches[i] = importBatch(b, i, size)
			}
			c.Trips.Store(0)
			c.Statements.Store(0)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if _, err := srv.DeliverEvents(ctx, &eventsv1.DeliverEventsRequest{Events: batches[i]}); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			events := float64(b.N * size)
			b.ReportMetric(events/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(c.Trips.Load())/events, "roundtrips/event")
			b.ReportMetric(float64(c.Statements.Load())/events, "statements/event")
		})
	}
}
