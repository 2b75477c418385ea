package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/pgtest"
)

// A delivery of routing-copy news handled in one store unit leaves exactly
// what handling each event on its own leaves, in a handful of round trips
// whatever its size; a delivery that might open a handoff goes one by one
// and opens it from the copies the unit wrote.
func TestRoutingCopyNewsInAUnitLeavesWhatOneByOneLeaves(t *testing.T) {
	// The events both fixtures get, built once so ids and times match.
	build := newFixture(t)
	attrs := func(country string) *eventsv1.LeadAttributes {
		return &eventsv1.LeadAttributes{Country: country, Industry: "Software", EmployeeCount: 120, Source: "web"}
	}
	older := build.event("acme", "ann", &eventsv1.LeadUpdated{Attributes: attrs("FR")})
	older.OccurTime = timestamppb.New(build.clock.Now().Add(-time.Hour)) // late news loses to newer
	setup := []*eventsv1.Event{
		build.event("acme", "gone", &eventsv1.LeadCaptured{Attributes: attrs("DE")}),
		build.event("acme", "gone", &eventsv1.LeadErased{}),
	}
	news := []*eventsv1.Event{
		build.event("acme", "ann", &eventsv1.LeadCaptured{Attributes: attrs("DE")}),
		build.event("acme", "ann", &eventsv1.LeadScored{FitScore: 40, EngagementScore: 30, TotalScore: 70, Grade: "B"}),
		older,
		build.event("acme", "ann", &eventsv1.StageChanged{ToStage: typesv1.Stage_STAGE_INQUIRY}),
		build.event("acme", "bob", &eventsv1.LeadQualified{Reason: eventsv1.LeadQualified_REASON_HAND_RAISER}),
		build.event("acme", "gone", &eventsv1.LeadScored{TotalScore: 90}), // erased: stays gone
		build.event("globex", "ann", &eventsv1.LeadCaptured{Attributes: attrs("US")}),
		build.event("acme", "", &eventsv1.LeadScored{TotalScore: 5}), // about no lead: ignored
		build.event("acme", "cid", &eventsv1.LeadCaptured{Attributes: attrs("IT")}),
		build.event("acme", "cid", &eventsv1.LeadScored{FitScore: 10, TotalScore: 10, Grade: "D"}),
		build.event("acme", "dan", &eventsv1.LeadCaptured{Attributes: attrs("ES")}),
		build.event("acme", "dan", &eventsv1.StageChanged{ToStage: typesv1.Stage_STAGE_INQUIRY}),
	}
	qualified := []*eventsv1.Event{build.event("acme", "ann", mql()), build.event("acme", "bob", &eventsv1.LeadScored{TotalScore: 3})}

	states := make([]string, 2)
	for i, together := range []bool{true, false} {
		f := newFixture(t)
		send := func(evs []*eventsv1.Event) {
			if !together {
				for _, ev := range evs {
					f.deliver(ev)
				}
				return
			}
			f.deliverAll(evs...)
		}
		send(setup)
		f.trips.Trips.Store(0)
		send(news)
		// Begin, inbox, turns, row locks and reads, writes, commit: 6, and
		// background workers may poll meanwhile. One by one takes two per
		// event.
		if trips := f.trips.Trips.Load(); together && trips >= int64(len(news)) {
			t.Errorf("the unit took %d round trips for %d events, want about 6", trips, len(news))
		}
		send(qualified)
		states[i] = f.routingState()
	}
	if states[0] != states[1] {
		t.Fatalf("in a unit:\n%s\none by one:\n%s", states[0], states[1])
	}
	for _, want := range []string{`"country": "DE", "fitScore": "40"`, `acme bob {"handRaiser": true`, "acme ann handoff"} {
		if !strings.Contains(states[0], want) {
			t.Errorf("state lacks %q:\n%s", want, states[0])
		}
	}
	if strings.Contains(states[0], "acme gone {") {
		t.Errorf("the erased lead came back:\n%s", states[0])
	}
}

// routingState describes the routing copies and handoffs, without ids.
func (f *fixture) routingState() string {
	f.t.Helper()
	return pgtest.Dump(f.t, f.pool,
		`SELECT workspace_id, id, facts::text, attributes_time, score_time, stage_time FROM leads ORDER BY 1, 2`,
		`SELECT workspace_id, lead_id, 'handoff', state FROM handoffs ORDER BY 1, 2`,
		`SELECT workspace_id, id FROM erased_leads ORDER BY 1, 2`,
	)
}
