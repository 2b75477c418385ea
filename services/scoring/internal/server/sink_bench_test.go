package server_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/server"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

// BenchmarkDeliverEvents hands scoring's event sink what an import makes:
// a LeadCaptured per lead and, for every fourth lead, an ActivityRecorded
// right after it (every eighth a demo request, which qualifies the lead),
// in calls of 100 events as the relay sends them. It reports events per
// second and the statements and round trips per event, counted on the pool,
// for the sink as it runs (events=unit: a call's events share a store unit)
// and, in the same run, with each event handled on its own (events=each).
func BenchmarkDeliverEvents(b *testing.B) {
	for _, mode := range []string{"unit", "each"} {
		b.Run("events="+mode, func(b *testing.B) { benchmarkDeliverEvents(b, mode == "unit") })
	}
}

func benchmarkDeliverEvents(b *testing.B, unit bool) {
	leads := 4000
	if testing.Short() {
		leads = 400
	}
	ctx := context.Background()
	counter := &pgtest.RoundTrips{}
	pool := pgtest.NewCountingPool(b, counter, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	st := store.New(pool, outbox.NewPublisher("scoring", store.Schema, server.Routes))
	svc := scoring.NewService(st)
	sink := server.NewSink(pool, svc, st)
	if !unit {
		sink = outbox.NewSinkServer(pool, server.Handlers(svc, st))
	}

	now := time.Now()
	event := func(lead string, payload proto.Message) *eventsv1.Event {
		p, err := anypb.New(payload)
		if err != nil {
			b.Fatal(err)
		}
		return &eventsv1.Event{Id: uuid.NewString(), Type: string(payload.ProtoReflect().Descriptor().FullName()),
			Workspace: "acme", Lead: lead, OccurTime: timestamppb.New(now), Source: "ingestion", Payload: p}
	}
	industries := []string{"software", "retail", "saas", "manufacturing"}
	titles := []string{"VP Marketing", "Engineer", "Director of Sales", "Marketing Manager", "CEO"}
	events := func(round int) []*eventsv1.Event {
		var evs []*eventsv1.Event
		for i := range leads {
			lead := fmt.Sprintf("lead-%d-%06d", round, i)
			evs = append(evs, event(lead, &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{
				CompanyDomain: "example.com", Title: titles[i%len(titles)], Country: "DE",
				Industry: industries[i%len(industries)], EmployeeCount: int32(i % 3000), Source: "import",
			}}))
			if i%4 == 0 {
				typ := typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW
				if i%8 == 0 {
					typ = typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST
				}
				evs = append(evs, event(lead, &eventsv1.ActivityRecorded{Activity: "act-" + lead, ActivityType: typ,
					Url: "https://acme.com/pricing", OccurTime: timestamppb.New(now)}))
			}
		}
		return evs
	}
	var calls []time.Duration
	deliver := func(evs []*eventsv1.Event) {
		for start := 0; start < len(evs); start += 100 {
			callStart := time.Now()
			resp, err := sink.DeliverEvents(ctx, &eventsv1.DeliverEventsRequest{Events: evs[start:min(start+100, len(evs))]})
			if err != nil {
				b.Fatal(err)
			}
			calls = append(calls, time.Since(callStart))
			for _, dup := range resp.GetDuplicate() {
				if dup {
					b.Fatal("a fresh event was taken for a duplicate")
				}
			}
		}
	}
	// As in a running system, the workspace and its default model exist
	// before the timer starts, as do other leads, and the tables have
	// statistics: without them the server plans its lookups for empty
	// tables and scans them whole, a cost that grows with every lead.
	deliver([]*eventsv1.Event{event("warm-up", &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{}})})
	if _, err := pool.Exec(ctx, `
INSERT INTO leads (workspace_id, id, facts, create_time)
SELECT 'acme', 'old-' || lpad(i::text, 8, '0'), jsonb_build_object('industry', 'software'), now()
  FROM generate_series(1, 20000) AS i`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
INSERT INTO activities (workspace_id, id, lead_id, type, url, occur_time)
SELECT 'acme', 'old-act-' || i, 'old-' || lpad(i::text, 8, '0'), 1, 'https://acme.com/blog', now()
  FROM generate_series(1, 20000) AS i`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE leads, activities, lead_tombstones, models, threshold_crossings`); err != nil {
		b.Fatal(err)
	}

	calls = calls[:0]
	var total, statements, roundTrips int64
	var elapsed time.Duration
	b.ResetTimer()
	for round := range b.N {
		b.StopTimer()
		evs := events(round)
		s0, r0 := counter.Statements.Load(), counter.Trips.Load()
		start := time.Now()
		b.StartTimer()
		deliver(evs)
		b.StopTimer()
		elapsed += time.Since(start)
		total += int64(len(evs))
		statements += counter.Statements.Load() - s0
		roundTrips += counter.Trips.Load() - r0
		b.StartTimer()
	}
	slices.Sort(calls)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(calls[len(calls)/2].Microseconds())/1000, "ms/call-median")
	b.ReportMetric(float64(statements)/float64(total), "statements/event")
	b.ReportMetric(float64(roundTrips)/float64(total), "roundtrips/event")
}
