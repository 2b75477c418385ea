package sink_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
	"github.com/leadflow/leadflow/services/lifecycle/internal/sink"
	"github.com/leadflow/leadflow/services/lifecycle/internal/store"
)

// roundTrips counts what the pool sends: each Query, QueryRow, Exec,
// SendBatch and CopyFrom is one round trip; a batch holds several
// statements.
type roundTrips struct {
	trips, statements atomic.Int64
}

func (c *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.trips.Add(1)
	c.statements.Add(1)
	return ctx
}

func (c *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.trips.Add(1)
	return ctx
}

func (c *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.statements.Add(1)
}

func (c *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (c *roundTrips) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.trips.Add(1)
	c.statements.Add(1)
	return ctx
}

func (c *roundTrips) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// countingPool opens a pool on a fresh lifecycle database whose statements
// c counts.
func countingPool(b *testing.B, c *roundTrips) *pgxpool.Pool {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewURL(b, store.Schema, store.Migrations,
		migrate.Set{Name: "outbox", FS: outbox.Migrations}))
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.Tracer = c
	pool, err := pgxpool.NewWithConfig(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

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
// and the round trips and statements per event:
//
//	go test -run XXX -bench DeliverEvents -benchtime 200x -count 3 ./services/lifecycle/internal/sink/
func BenchmarkDeliverEvents(b *testing.B) {
	const size = 100
	c := &roundTrips{}
	pool := countingPool(b, c)
	st := store.New(pool, store.NewPublisher("lifecycle", "handoff", "scoring"))
	srv := outbox.NewSinkServer(pool, sink.Handlers(lifecycle.NewService(st), st))
	ctx := context.Background()

	batches := make([][]*eventsv1.Event, b.N)
	for i := range batches {
		batches[i] = importBatch(b, i, size)
	}
	c.trips.Store(0)
	c.statements.Store(0)
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
	b.ReportMetric(float64(c.trips.Load())/events, "roundtrips/event")
	b.ReportMetric(float64(c.statements.Load())/events, "statements/event")
}
