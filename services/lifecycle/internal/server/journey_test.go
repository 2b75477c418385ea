package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
)

// The journey lists the key events lifecycle heard of and its own moves,
// oldest first, each with the trace behind it; erasure takes it away.
func TestLeadJourney(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "ada", "web-form")
	f.qualify(t, "ada")
	f.deliver(t, newEvent(t, "acme", "ada", "handoff", &eventsv1.HandoffAssigned{
		Handoff: "handoffs/h1", Owner: "owners/bert", Team: "teams/sales",
	}))
	f.deliver(t, newEvent(t, "acme", "ada", "handoff", &eventsv1.HandoffAccepted{Handoff: "handoffs/h1", Owner: "owners/bert"}))

	resp, err := f.client.GetLeadJourney(f.acme, &lifecyclev1.GetLeadJourneyRequest{Name: "leads/ada/journey"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []lifecyclev1.JourneyStep_Kind
	var sal bool
	for _, st := range resp.GetJourney().GetSteps() {
		kinds = append(kinds, st.GetKind())
		if st.GetTraceId() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("step %v has trace %q, want the event's", st.GetKind(), st.GetTraceId())
		}
		if st.GetKind() == lifecyclev1.JourneyStep_KIND_STAGE_CHANGED && st.GetToStage() == typesv1.Stage_STAGE_SAL {
			sal = true
		}
	}
	want := []lifecyclev1.JourneyStep_Kind{
		lifecyclev1.JourneyStep_KIND_CAPTURED, lifecyclev1.JourneyStep_KIND_STAGE_CHANGED, // inquiry
		lifecyclev1.JourneyStep_KIND_QUALIFIED, lifecyclev1.JourneyStep_KIND_STAGE_CHANGED, // mql
		lifecyclev1.JourneyStep_KIND_ASSIGNED,
		lifecyclev1.JourneyStep_KIND_ACCEPTED, lifecyclev1.JourneyStep_KIND_STAGE_CHANGED, // sal
	}
	if len(kinds) != len(want) || !sal {
		t.Fatalf("journey = %v, want the kinds %v ending in SAL", kinds, want)
	}
	for _, k := range want {
		found := false
		for _, g := range kinds {
			found = found || g == k
		}
		if !found {
			t.Errorf("journey %v lacks %v", kinds, k)
		}
	}

	if _, err := f.client.GetLeadJourney(f.globex, &lifecyclev1.GetLeadJourneyRequest{Name: "leads/ada/journey"}); status.Code(err) != codes.NotFound {
		t.Fatalf("another workspace's journey: %v, want NotFound", err)
	}
	f.deliver(t, newEvent(t, "acme", "ada", "ingestion", &eventsv1.LeadErased{}))
	if _, err := f.client.GetLeadJourney(f.acme, &lifecyclev1.GetLeadJourneyRequest{Name: "leads/ada/journey"}); status.Code(err) != codes.NotFound {
		t.Fatalf("erased lead's journey: %v, want NotFound", err)
	}
	var left int
	if err := f.pool.QueryRow(t.Context(), `SELECT count(*) FROM journey_steps WHERE lead_id = 'ada'`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d journey steps left after erasure (%v)", left, err)
	}
}
