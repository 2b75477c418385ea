package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/pgtest"
)

// A delivery of facts and activities handled in one store unit leaves
// exactly what handling each event on its own leaves (scores, activities,
// crossings, events), in a handful of round trips whatever its size.
func TestFactsAndActivitiesInAUnitLeaveWhatOneByOneLeaves(t *testing.T) {
	build := newFixture(t)
	vp := &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Industry: "software", Title: "VP Marketing"}}
	activity := func(id string, typ typesv1.ActivityType) *eventsv1.ActivityRecorded {
		return &eventsv1.ActivityRecorded{Activity: id, ActivityType: typ, OccurTime: timestamppb.New(build.clock.Now())}
	}
	demo := typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST
	older := build.event(t, "n1", &eventsv1.LeadUpdated{Attributes: &eventsv1.LeadAttributes{Industry: "retail"}})
	older.OccurTime = timestamppb.New(build.clock.Now().Add(-time.Hour)) // late news: ignored
	setup := []*eventsv1.Event{
		build.event(t, "known", vp),
		build.event(t, "known", activity("a0", emailOpen)),
		build.event(t, "gone", vp),
		build.event(t, "gone", &eventsv1.LeadErased{}),
	}
	batch := []*eventsv1.Event{
		build.event(t, "n1", vp),
		build.event(t, "n1", activity("b1", demo)),
		build.event(t, "n1", activity("b1", demo)), // the same activity again
		older,
		build.event(t, "n1", &eventsv1.StageChanged{ToStage: typesv1.Stage_STAGE_MQL}), // nothing for scoring
		build.event(t, "known", activity("b2", emailOpen)),
		build.event(t, "known", activity("a0", emailOpen)), // stored already
		build.event(t, "gone", activity("b3", demo)),       // erased: dropped
		build.event(t, "n2", activity("b4", emailOpen)),    // before its capture
		build.event(t, "n2", vp),
	}
	internal := grpctest.WithKey(context.Background(), grpctest.InternalToken)
	states := make([]string, 2)
	for i, together := range []bool{true, false} {
		f := newFixture(t)
		for _, ev := range setup {
			if _, err := f.sink.DeliverEvent(internal, &eventsv1.DeliverEventRequest{Event: ev}); err != nil {
				t.Fatal(err)
			}
		}
		f.trips.Trips.Store(0)
		if together {
			if _, err := f.sink.DeliverEvents(internal, &eventsv1.DeliverEventsRequest{Events: batch}); err != nil {
				t.Fatal(err)
			}
			// Begin, inbox, turns, open, writes, commit: 6, and the rescorer
			// may poll meanwhile. One by one takes two per event.
			if trips := f.trips.Trips.Load(); trips >= int64(len(batch)) {
				t.Errorf("the unit took %d round trips for %d events, want about 6", trips, len(batch))
			}
		} else {
			for _, ev := range batch {
				if _, err := f.sink.DeliverEvent(internal, &eventsv1.DeliverEventRequest{Event: ev}); err != nil {
					t.Fatal(err)
				}
			}
		}
		states[i] = f.scoringState(t)
	}
	if states[0] != states[1] {
		t.Fatalf("in a unit:\n%s\none by one:\n%s", states[0], states[1])
	}
	for _, want := range []string{"acme n1 b1", "acme known b2", "acme n2 b4", `"id":"n1"`, "LeadQualified"} {
		if !strings.Contains(states[0], want) {
			t.Errorf("state lacks %q:\n%s", want, states[0])
		}
	}
	if strings.Contains(states[0], "b3") {
		t.Errorf("the erased lead got an activity:\n%s", states[0])
	}
}

// An activity whose id another lead holds makes the unit's write fail, the
// whole call with it, leaving nothing; handled on its own, it is ignored.
func TestUnitRefusesAnActivityIdOfAnotherLead(t *testing.T) {
	f := newFixture(t)
	internal := grpctest.WithKey(context.Background(), grpctest.InternalToken)
	open := &eventsv1.ActivityRecorded{Activity: "a1", ActivityType: emailOpen, OccurTime: timestamppb.New(f.clock.Now())}
	if _, err := f.sink.DeliverEvent(internal, &eventsv1.DeliverEventRequest{Event: f.event(t, "l1", open)}); err != nil {
		t.Fatal(err)
	}
	ev := f.event(t, "l2", open)
	if _, err := f.sink.DeliverEvents(internal, &eventsv1.DeliverEventsRequest{Events: []*eventsv1.Event{ev}}); err == nil {
		t.Fatal("the unit stored an activity id another lead holds")
	}
	if state := f.scoringState(t); strings.Contains(state, `"id":"l2"`) {
		t.Fatalf("the failed call left l2 behind:\n%s", state)
	}
	if _, err := f.sink.DeliverEvent(internal, &eventsv1.DeliverEventRequest{Event: ev}); err != nil {
		t.Fatalf("one by one: %v", err)
	}
}

// scoringState describes what scoring holds, without generated ids.
func (f *fixture) scoringState(t *testing.T) string {
	t.Helper()
	return pgtest.Dump(t, f.pool,
		`SELECT row_to_json(l)::text FROM leads l ORDER BY workspace_id, id`,
		`SELECT workspace_id, lead_id, id, type FROM activities ORDER BY 1, 2, 3`,
		`SELECT workspace_id, lead_id, up, total_score FROM threshold_crossings ORDER BY 1, 2, 3, 4`,
		`SELECT lead_id, event_type, count(*) FROM outbox_events GROUP BY 1, 2 ORDER BY 1, 2`,
		`SELECT workspace_id, lead_id, survivor_id FROM lead_tombstones ORDER BY 1, 2`,
	)
}
