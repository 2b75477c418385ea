package sink_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
	"github.com/leadflow/leadflow/services/lifecycle/internal/sink"
	"github.com/leadflow/leadflow/services/lifecycle/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// event wraps payload as the producing service would.
func event(t testing.TB, ws, lead, source string, payload proto.Message) *eventsv1.Event {
	t.Helper()
	a, err := anypb.New(payload)
	if err != nil {
		t.Fatal(err)
	}
	return &eventsv1.Event{
		Id: uuid.NewString(), Type: string(payload.ProtoReflect().Descriptor().FullName()),
		Workspace: ws, Lead: lead, Source: source, OccurTime: timestamppb.Now(), Payload: a,
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

type fixture struct {
	pool *pgxpool.Pool
	svc  *lifecycle.Service
	sink *outbox.SinkServer
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	pool := pgtest.NewPool(t, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	st := store.New(pool, store.NewPublisher("lifecycle", "handoff"))
	svc := lifecycle.NewService(st)
	return fixture{pool: pool, svc: svc, sink: sink.NewServer(pool, svc, st)}
}

// deliver hands evs to the sink in one batch, as a relay does.
func (f fixture) deliver(t *testing.T, evs ...*eventsv1.Event) {
	t.Helper()
	if _, err := f.sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: evs}); err != nil {
		t.Fatalf("deliver: %v", err)
	}
}

// count runs a count(*) query with args.
func (f fixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(t.Context(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// rowsAbout counts what lifecycle holds about lead: its lifecycle, its
// moves, its journey steps and its StageChanged events.
func (f fixture) rowsAbout(t *testing.T, lead string) [4]int {
	t.Helper()
	return [4]int{
		f.count(t, `SELECT count(*) FROM leads WHERE lead_id = $1`, lead),
		f.count(t, `SELECT count(*) FROM transitions WHERE lead_id = $1`, lead),
		f.count(t, `SELECT count(*) FROM journey_steps WHERE lead_id = $1`, lead),
		f.count(t, `SELECT count(*) FROM outbox_events WHERE lead_id = $1`, lead),
	}
}

var (
	captured  = &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Source: "web"}}
	qualified = &eventsv1.LeadQualified{Reason: eventsv1.LeadQualified_REASON_SCORE_THRESHOLD, TotalScore: 85}
)

// Events about an erased lead, or about a lead merged into one that was
// erased since, change nothing, whatever else their batch holds.
func TestEventsAboutErasedLeadsAreIgnored(t *testing.T) {
	f := newFixture(t)
	f.deliver(t,
		event(t, "acme", "gone", "ingestion", captured),
		event(t, "acme", "dup", "ingestion", captured),
		event(t, "acme", "dup", "ingestion", &eventsv1.LeadMerged{SurvivorLead: "gone"}),
		event(t, "acme", "gone", "ingestion", &eventsv1.LeadErased{}),
	)
	before := f.count(t, `SELECT count(*) FROM outbox_events`)
	// What the first batch left: dup's own history (it was merged into a
	// lead with a lifecycle) and the events both published.
	held := map[string][4]int{"gone": f.rowsAbout(t, "gone"), "dup": f.rowsAbout(t, "dup")}
	f.deliver(t,
		event(t, "acme", "gone", "scoring", qualified),
		event(t, "acme", "gone", "ingestion", captured),
		event(t, "acme", "dup", "scoring", qualified), // merged into the erased lead
		event(t, "acme", "dup", "handoff", &eventsv1.HandoffAssigned{Owner: "owners/bert"}),
		event(t, "acme", "live", "ingestion", captured),
	)
	for _, lead := range []string{"gone", "dup"} {
		if got := f.rowsAbout(t, lead); got != held[lead] || got[0]+got[2] != 0 {
			t.Errorf("%s: lead, transitions, journey steps, events = %v, want %v and no lead or journey", lead, got, held[lead])
		}
	}
	if got := f.rowsAbout(t, "live"); got != [4]int{1, 1, 1, 1} {
		t.Errorf("live: lead, transitions, journey steps, events = %v, want one each", got)
	}
	if after := f.count(t, `SELECT count(*) FROM outbox_events`); after != before+1 {
		t.Errorf("outbox grew by %d events, want 1 (live's Inquiry)", after-before)
	}
}

// Events about a merged-away lead apply to the lead that stands for it now,
// through a chain of merges, journey steps included; the API still sees
// the merged-away lead as gone.
func TestEventsAboutMergedLeadsApplyToTheSurvivor(t *testing.T) {
	f := newFixture(t)
	f.deliver(t,
		event(t, "acme", "a", "ingestion", captured),
		event(t, "acme", "a", "ingestion", &eventsv1.LeadMerged{SurvivorLead: "b"}), // b unknown: a's lifecycle becomes b's
		event(t, "acme", "b", "ingestion", &eventsv1.LeadMerged{SurvivorLead: "c"}),
	)
	f.deliver(t,
		event(t, "acme", "a", "scoring", qualified),
		event(t, "acme", "a", "handoff", &eventsv1.HandoffAssigned{Owner: "owners/bert"}),
	)
	c, err := f.svc.Lead(t.Context(), "acme", "c")
	if err != nil || c.Stage != lifecycle.StageMQL || c.Source != "web" {
		t.Fatalf("survivor c = %+v (%v), want an MQL from web", c, err)
	}
	for _, lead := range []string{"a", "b"} {
		// Its StageChanged events stay: they were published before the merge.
		if got := f.rowsAbout(t, lead); got[0]+got[1]+got[2] != 0 {
			t.Errorf("%s: lead, transitions, journey steps = %v, want none", lead, got[:3])
		}
	}
	var kinds []string
	rows, err := f.pool.Query(t.Context(), `SELECT kind FROM journey_steps WHERE lead_id = 'c' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if kinds, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if want := []string{"captured", "qualified", "assigned"}; !slices.Equal(kinds, want) {
		t.Errorf("c's journey = %v, want %v", kinds, want)
	}
	if got := f.count(t, `SELECT count(*) FROM transitions WHERE lead_id = 'c' AND to_stage = 'mql' AND trigger = $1`,
		"leadflow.events.v1.LeadQualified"); got != 1 {
		t.Errorf("c has %d moves to MQL by the qualification, want 1", got)
	}

	_, _, err = f.svc.Transition(t.Context(), "acme", "a", lifecycle.TransitionRequest{To: lifecycle.StageSAL,
		Cause: lifecycle.Cause{Actor: lifecycle.Actor{Kind: lifecycle.ActorUser, ID: "u"}}})
	if !errors.Is(err, lifecycle.ErrLeadNotFound) {
		t.Errorf("moving merged-away a through the API: %v, want ErrLeadNotFound", err)
	}
}

// Merges are followed up to a bound (a cycle of merges must not loop).
func TestMergeChainIsFollowedUpToItsBound(t *testing.T) {
	f := newFixture(t)
	// m0 was merged into m1, m1 into m2, ... m14 into m15: 15 merges.
	const merge = `INSERT INTO gone_leads (workspace_id, lead_id, survivor_id) VALUES ('acme', $1, $2)`
	for i := range 15 {
		if _, err := f.pool.Exec(t.Context(), merge, fmt.Sprint("m", i), fmt.Sprint("m", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	f.deliver(t, event(t, "acme", "m0", "ingestion", captured))
	if _, err := f.svc.Lead(t.Context(), "acme", "m15"); err != nil {
		t.Fatalf("m15 after 15 merges: %v", err)
	}
	if _, err := f.pool.Exec(t.Context(), merge, "m15", "m16"); err != nil {
		t.Fatal(err)
	}
	_, err := f.sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: []*eventsv1.Event{
		event(t, "acme", "m0", "scoring", qualified),
	}})
	if err == nil || !strings.Contains(err.Error(), "merge chain longer than") {
		t.Fatalf("event after 16 merges: %v, want the chain refused", err)
	}
}

// Events creating the same lead at once make one lifecycle with one entry:
// the row lock, or the insert that finds the row made meanwhile, makes the
// later ones decide again on it.
func TestConcurrentEventsCreateALeadOnce(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			var p proto.Message = captured
			if i%2 == 1 {
				p = &eventsv1.LeadScored{TotalScore: int64(i)}
			}
			_, err := f.sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: []*eventsv1.Event{
				event(t, "acme", "new", "test", p),
			}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.rowsAbout(t, "new"); got != [4]int{1, 1, 4, 1} {
		t.Fatalf("lead, transitions, journey steps, events = %v, want 1, 1, 4 captures, 1", got)
	}
	l, err := f.svc.Lead(t.Context(), "acme", "new")
	if err != nil || l.Score == nil || l.Source != "web" {
		t.Fatalf("lead = %+v (%v), want scored, from web", l, err)
	}
}

// TestEventWaitingOnAnErasureDoesNotRecreateTheLead: an event about a lead
// whose erasure is under way waits for it; when the erasure commits, the
// event must find the lead gone, not make a new one. That holds whether or
// not lifecycle had a row for the lead to wait on.
func TestEventWaitingOnAnErasureDoesNotRecreateTheLead(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("known lead %v", known), func(t *testing.T) {
			f := newFixture(t)
			const lead = "lead-erased-meanwhile"
			if known {
				f.deliver(t, event(t, "acme", lead, "ingestion", &eventsv1.LeadCaptured{}))
			}

			st := store.New(f.pool, store.NewPublisher("lifecycle", "handoff"))
			tx, err := f.pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(t.Context()) //nolint:errcheck // committed below
			if err := st.WithTx(tx).Erase(t.Context(), "acme", lead); err != nil {
				t.Fatal(err)
			}

			done := make(chan error, 1)
			go func() {
				_, err := f.sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: []*eventsv1.Event{
					event(t, "acme", lead, "ingestion", &eventsv1.LeadCaptured{}),
				}})
				done <- err
			}()
			// Wait until the event's transaction waits for the erasure's.
			pgtest.AwaitLockWait(t, f.pool, done)
			if err := tx.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("deliver: %v", err)
			}
			if n := f.count(t, `SELECT count(*) FROM leads WHERE lead_id = $1`, lead); n != 0 {
				t.Fatalf("%d lifecycle rows for the erased lead, want 0", n)
			}
		})
	}
}

// A delivery's events handled together in a store unit leave exactly what
// handling them one by one leaves: the same lifecycles, moves, journeys,
// funnel counts and events, for new, known, merged-away and erased leads
// and for several events about one lead in a call.
func TestEventsInAUnitLeaveWhatOneByOneLeaves(t *testing.T) {
	setup := []*eventsv1.Event{
		event(t, "acme", "known", "ingestion", captured),
		event(t, "acme", "merged", "ingestion", captured),
		event(t, "acme", "merged", "ingestion", &eventsv1.LeadMerged{SurvivorLead: "known"}),
		event(t, "acme", "erased", "ingestion", captured),
		event(t, "acme", "erased", "ingestion", &eventsv1.LeadErased{}),
	}
	accepted := &eventsv1.HandoffAccepted{Owner: "owners/bert"}
	batch := []*eventsv1.Event{
		event(t, "acme", "new", "ingestion", captured),
		event(t, "acme", "new", "scoring", &eventsv1.LeadScored{TotalScore: 40}),
		event(t, "acme", "new", "scoring", qualified),
		event(t, "acme", "new", "handoff", &eventsv1.HandoffAssigned{Owner: "owners/bert"}),
		event(t, "acme", "new", "handoff", accepted),
		event(t, "acme", "known", "scoring", qualified),
		event(t, "acme", "merged", "handoff", &eventsv1.HandoffAssigned{Owner: "owners/ann"}), // lands on known
		event(t, "acme", "merged", "handoff", &eventsv1.HandoffRejected{Reason: "no budget"}),
		event(t, "acme", "erased", "scoring", qualified),
		event(t, "acme", "late", "scoring", &eventsv1.LeadScored{TotalScore: 12}), // scored before captured
		event(t, "acme", "late", "ingestion", captured),
		event(t, "globex", "new", "ingestion", captured), // same id, other workspace
	}
	states := make([]string, 2)
	for i, together := range []bool{true, false} {
		c := &pgtest.RoundTrips{}
		pool := pgtest.NewCountingPool(t, c, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
		st := store.New(pool, store.NewPublisher("lifecycle", "handoff"))
		svc := lifecycle.NewService(st)
		srv := sink.NewServer(pool, svc, st)
		if !together {
			srv = outbox.NewSinkServer(pool, sink.Handlers(svc, st))
		}
		f := fixture{pool: pool, svc: svc, sink: srv}
		f.deliver(t, setup...)
		c.Trips.Store(0)
		f.deliver(t, batch...)
		// Begin, inbox, turns, row locks and reads, writes, commit.
		if trips := c.Trips.Load(); together && trips > 6 {
			t.Errorf("the unit took %d round trips for %d events, want 6", trips, len(batch))
		}
		states[i] = f.state(t)
	}
	if states[0] != states[1] {
		t.Fatalf("in a unit:\n%s\none by one:\n%s", states[0], states[1])
	}
	for _, want := range []string{"acme/new sal", "acme/known recycled", "acme/late inquiry"} {
		if !strings.Contains(states[0], want) {
			t.Errorf("state lacks %q:\n%s", want, states[0])
		}
	}
}

// state describes what lifecycle holds, without the times and ids that
// differ between runs.
func (f fixture) state(t *testing.T) string {
	t.Helper()
	return pgtest.Dump(t, f.pool,
		`SELECT workspace_id || '/' || lead_id, stage, previous_stage, reason, recycle_count, version, score, source, campaign
		   FROM leads ORDER BY 1`,
		`SELECT workspace_id, lead_id, from_stage, to_stage, reason, trigger, event_id, temperature
		   FROM transitions ORDER BY workspace_id, lead_id, transition_time, id`,
		`SELECT workspace_id, lead_id, kind, description, source FROM journey_steps ORDER BY workspace_id, lead_id, id`,
		`SELECT workspace_id, stage, kind, sum(n) FROM funnel_moves GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
		`SELECT workspace_id, stage, sum(n) FROM funnel_stays GROUP BY 1, 2 ORDER BY 1, 2`,
		`SELECT workspace_id, from_stage, to_stage, sum(n) FROM funnel_conversions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
		`SELECT workspace_id, lead_id, event_type, count(*) FROM outbox_events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
		`SELECT workspace_id, lead_id, survivor_id FROM gone_leads ORDER BY 1, 2`,
	)
}

// An erasure waits for an event that writes on the lead under its row lock
// without taking its turn (an event about a lead merged into it), and then
// removes what that event wrote too.
func TestErasureWaitsForAnEventOnItsRow(t *testing.T) {
	f := newFixture(t)
	f.deliver(t, event(t, "acme", "b", "ingestion", captured))
	// What an event about a lead merged into b does: lock b's row and
	// write its history, under another lead's turn.
	tx, err := f.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context()) //nolint:errcheck // committed below
	if _, err := tx.Exec(t.Context(), `SELECT FROM leads WHERE workspace_id = 'acme' AND lead_id = 'b' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `
INSERT INTO journey_steps (workspace_id, lead_id, kind, step_time, description, source, traceparent, trace_id)
VALUES ('acme', 'b', 'assigned', now(), 'assigned to owners/bert', 'handoff', '', '')`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		st := store.New(f.pool, store.NewPublisher("lifecycle", "handoff"))
		done <- st.Erase(t.Context(), "acme", "b")
	}()
	pgtest.AwaitLockWait(t, f.pool, done)
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("erase: %v", err)
	}
	if got := f.rowsAbout(t, "b"); got[0]+got[1]+got[2] != 0 {
		t.Fatalf("after the erasure b keeps lead, transitions, journey steps = %v, want none", got[:3])
	}
}
