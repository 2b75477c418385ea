package server_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/handoff/internal/app"
)

func TestSLABreachFiresOnceAfterRestart(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	f.sla(&handoffv1.SlaSettings{
		AcceptanceDeadline: durationpb.New(time.Hour),
		BreachAction:       handoffv1.BreachAction_BREACH_ACTION_RETURN_TO_MARKETING,
		EscalationEnabled:  true,
		EscalationDeadline: durationpb.New(2 * time.Hour),
	}, "acceptance_deadline", "breach_action", "escalation_enabled", "escalation_deadline")

	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	if want := f.clock.Now().Add(time.Hour); !h.GetDueTime().AsTime().Equal(want) {
		t.Fatalf("due = %v, want %v", h.GetDueTime().AsTime(), want)
	}

	f.clock.Advance(59 * time.Minute)
	if n := f.fire(f.app); n != 0 {
		t.Fatalf("%d timers fired before the deadline", n)
	}

	// The service goes down before the deadline and comes back long after
	// it, as two replicas: new workers over the same database.
	f.clock.Advance(3 * time.Hour)
	replicas := []*app.App{app.New(f.pool, app.Options{Clock: f.clock.Now}), app.New(f.pool, app.Options{Clock: f.clock.Now})}
	var wg sync.WaitGroup
	counts := make([]int, len(replicas))
	for i, r := range replicas {
		wg.Go(func() { counts[i] = f.fire(r) })
	}
	wg.Wait()
	if counts[0]+counts[1] != 1 {
		t.Fatalf("replicas fired %v, want 1 in all", counts)
	}
	for _, r := range replicas {
		if n := f.fire(r); n != 0 {
			t.Fatalf("fired again: %d", n)
		}
	}
	got := f.handoff(h.GetName())
	if got.GetState() != handoffv1.Handoff_STATE_ESCALATED || got.GetEscalatedTo() != "owners/boss" ||
		!got.GetEscalateTime().AsTime().Equal(f.clock.Now().Add(2*time.Hour)) {
		t.Fatalf("after breach = %v, want escalated to boss for 2h", got)
	}

	// The manager does not act either: the breach action returns the lead.
	f.clock.Advance(2 * time.Hour)
	if n := f.fire(app.New(f.pool, app.Options{Clock: f.clock.Now})); n != 1 {
		t.Fatalf("escalation deadline fired %d times, want 1", n)
	}
	got = f.handoff(h.GetName())
	if got.GetState() != handoffv1.Handoff_STATE_RETURNED || got.GetCloseReason() != "sla_breach" ||
		got.GetAssignments()[0].GetOutcome() != handoffv1.Assignment_OUTCOME_BREACHED {
		t.Fatalf("after escalation deadline = %v, want returned", got)
	}
	if n := f.fire(f.app); n != 0 {
		t.Fatalf("a returned handoff fired %d more times", n)
	}

	events := f.outboxEvents(service.Lifecycle, &eventsv1.HandoffRejected{})
	if len(events) != 1 {
		t.Fatalf("outbox holds %d events for lifecycle, want 1", len(events))
	}
	var rej eventsv1.HandoffRejected
	if err := events[0].GetPayload().UnmarshalTo(&rej); err != nil {
		t.Fatal(err)
	}
	if rej.GetReason() != "sla_breach" || rej.GetHandoff() != h.GetName() || rej.GetOwner() != "owners/anna" {
		t.Fatalf("returned event = %v", &rej)
	}

	resp, err := f.client.ListSlaBreaches(f.ctx, &handoffv1.ListSlaBreachesRequest{Manager: "owners/boss"})
	if err != nil {
		t.Fatal(err)
	}
	bs := resp.GetSlaBreaches()
	if len(bs) != 2 || bs[0].GetAction() != handoffv1.SlaBreach_ACTION_RETURNED ||
		bs[1].GetAction() != handoffv1.SlaBreach_ACTION_ESCALATED || bs[1].GetOwner() != "owners/anna" ||
		bs[1].GetManager() != "owners/boss" || bs[1].GetHandoff() != h.GetName() {
		t.Fatalf("breaches = %v", bs)
	}
	other, err := f.client.ListSlaBreaches(f.ctx, &handoffv1.ListSlaBreachesRequest{Team: "teams/general"})
	if err != nil || len(other.GetSlaBreaches()) != 0 {
		t.Fatalf("general's breaches = %v, %v; want none", other, err)
	}
}

func TestSLAReassignsThenQueues(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	f.sla(&handoffv1.SlaSettings{
		AcceptanceDeadline: durationpb.New(time.Hour),
		BreachAction:       handoffv1.BreachAction_BREACH_ACTION_REASSIGN,
		MaxReassignments:   5,
	}, "acceptance_deadline", "breach_action", "max_reassignments", "escalation_enabled")

	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	if h.GetOwner() != "owners/anna" {
		t.Fatalf("first owner = %s", h.GetOwner())
	}
	f.clock.Advance(time.Hour)
	if n := f.fire(f.app); n != 1 {
		t.Fatalf("fired %d, want 1", n)
	}
	got := f.handoff(h.GetName())
	if got.GetState() != handoffv1.Handoff_STATE_ASSIGNED || got.GetOwner() != "owners/bert" ||
		got.GetRouting().GetMethod() != handoffv1.RoutingDecision_METHOD_SLA_REASSIGN || len(got.GetAssignments()) != 2 ||
		!got.GetDueTime().AsTime().Equal(f.clock.Now().Add(time.Hour)) {
		t.Fatalf("after first breach = %v, want bert with a fresh hour", got)
	}
	if assigned := f.outboxEvents(service.Lifecycle, &eventsv1.HandoffAssigned{}); len(assigned) != 2 {
		t.Fatalf("%d HandoffAssigned events, want the first assignment and the reassignment", len(assigned))
	}

	// Bert misses it too; nobody else in the team is left, so it is queued.
	f.clock.Advance(time.Hour)
	if n := f.fire(f.app); n != 1 {
		t.Fatalf("fired %d, want 1", n)
	}
	got = f.handoff(h.GetName())
	if got.GetState() != handoffv1.Handoff_STATE_QUEUED || got.GetOwner() != "" || got.GetDueTime() != nil {
		t.Fatalf("after second breach = %v, want queued", got)
	}
	resp, err := f.client.ListSlaBreaches(f.ctx, &handoffv1.ListSlaBreachesRequest{Team: "teams/dach"})
	if err != nil {
		t.Fatal(err)
	}
	if bs := resp.GetSlaBreaches(); len(bs) != 2 || bs[0].GetAction() != handoffv1.SlaBreach_ACTION_QUEUED ||
		bs[1].GetAction() != handoffv1.SlaBreach_ACTION_REASSIGNED || bs[0].GetOwner() != "owners/bert" {
		t.Fatalf("breaches = %v", bs)
	}
}

func TestSLAAcceptBeforeDeadlineStopsTheTimer(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	if _, err := f.client.AcceptHandoff(f.ctx, &handoffv1.AcceptHandoffRequest{Name: h.GetName()}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * 24 * time.Hour)
	if n := f.fire(f.app); n != 0 {
		t.Fatalf("an accepted handoff fired %d timers", n)
	}
}

func TestSLAWorkingHoursDeadline(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	f.sla(&handoffv1.SlaSettings{
		AcceptanceDeadline: durationpb.New(4 * time.Hour),
		WorkingHours:       &handoffv1.WorkingHours{Enabled: true, TimeZone: "UTC", StartHour: 9, EndHour: 17},
	}, "acceptance_deadline", "working_hours")
	// Friday 15:00 UTC: two hours left that day, two more on Monday.
	f.clock.Advance(4*24*time.Hour + 6*time.Hour)
	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	if want := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC); !h.GetDueTime().AsTime().Equal(want) {
		t.Fatalf("due = %v, want %v", h.GetDueTime().AsTime(), want)
	}
	st, err := f.client.GetSlaSettings(f.ctx, &handoffv1.GetSlaSettingsRequest{Name: "slaSettings"})
	if err != nil {
		t.Fatal(err)
	}
	if wh := st.GetSlaSettings().GetWorkingHours(); len(wh.GetWeekdays()) != 5 || wh.GetWeekdays()[0] != handoffv1.Weekday_WEEKDAY_MONDAY {
		t.Fatalf("working hours = %v, want Monday to Friday by default", wh)
	}
}
