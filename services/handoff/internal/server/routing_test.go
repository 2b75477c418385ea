package server_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
)

// TestRoutingKeepsTeamState routes through the database: the round-robin
// cursor and smooth weights persist between leads, capacity is counted per
// period, and out-of-office ends by itself.
func TestRoutingKeepsTeamState(t *testing.T) {
	f := newFixture(t)
	f.team("rr", handoffv1.AssignmentStrategy_ASSIGNMENT_STRATEGY_ROUND_ROBIN, "")
	f.team("wt", handoffv1.AssignmentStrategy_ASSIGNMENT_STRATEGY_WEIGHTED_BY_CAPACITY, "")
	week := func(n int32) *handoffv1.Capacity {
		return &handoffv1.Capacity{MaxLeads: n, Period: handoffv1.CapacityPeriod_CAPACITY_PERIOD_WEEK}
	}
	f.owner("a", &handoffv1.Owner{Teams: []string{"teams/rr"}, Capacity: week(1)})
	f.owner("b", &handoffv1.Owner{Teams: []string{"teams/rr"}})
	f.owner("c", &handoffv1.Owner{Teams: []string{"teams/rr"}, OutOfOffice: true,
		OutOfOfficeEndTime: timestamppb.New(f.clock.Now().Add(48 * time.Hour))})
	f.owner("w1", &handoffv1.Owner{Teams: []string{"teams/wt"}, Capacity: week(100)})
	f.owner("w3", &handoffv1.Owner{Teams: []string{"teams/wt"}, Capacity: week(300)})
	f.policy("", &handoffv1.RoutingRule{Id: "rr", Condition: `lead.source == "rr"`, Team: "teams/rr"},
		&handoffv1.RoutingRule{Id: "wt", Condition: `lead.source == "wt"`, Team: "teams/wt"})

	lead := 0
	route := func(source string) string {
		t.Helper()
		lead++
		f.clock.Advance(time.Second)
		h := f.qualify(fmt.Sprintf("lead-%d", lead), &eventsv1.LeadAttributes{Source: source})
		return h.GetOwner()
	}
	var got []string
	for range 4 {
		got = append(got, route("rr"))
	}
	// a has capacity 1 this week, c is away: a, then b only.
	if want := []string{"owners/a", "owners/b", "owners/b", "owners/b"}; !equal(got, want) {
		t.Fatalf("first week = %v, want %v", got, want)
	}
	owner, err := f.client.GetOwner(f.ctx, &handoffv1.GetOwnerRequest{Name: "owners/a"})
	if err != nil || owner.GetOwner().GetPeriodAssignedCount() != 1 || owner.GetOwner().GetOpenHandoffCount() != 1 {
		t.Fatalf("owner a = %v, %v", owner, err)
	}

	// A week later a has capacity again and c is back.
	f.clock.Advance(7 * 24 * time.Hour)
	got = nil
	for range 3 {
		got = append(got, route("rr"))
	}
	if want := []string{"owners/c", "owners/a", "owners/b"}; !equal(got, want) {
		t.Fatalf("next week = %v, want %v (round-robin after b)", got, want)
	}

	counts := map[string]int{}
	for range 8 {
		counts[route("wt")]++
	}
	if counts["owners/w1"] != 2 || counts["owners/w3"] != 6 {
		t.Fatalf("weighted = %v, want w1 2, w3 6", counts)
	}

	t.Run("deleting an owner routes their open handoffs again", func(t *testing.T) {
		open, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{
			Owner: "owners/w1", States: []handoffv1.Handoff_State{handoffv1.Handoff_STATE_ASSIGNED},
		})
		if err != nil || len(open.GetHandoffs()) != 2 {
			t.Fatalf("w1's open handoffs = %v, %v", open, err)
		}
		if _, err := f.client.DeleteOwner(f.ctx, &handoffv1.DeleteOwnerRequest{Name: "owners/w1"}); err != nil {
			t.Fatal(err)
		}
		for _, h := range open.GetHandoffs() {
			got := f.handoff(h.GetName())
			if got.GetOwner() != "owners/w3" || len(got.GetAssignments()) != 2 ||
				got.GetAssignments()[0].GetOutcome() != handoffv1.Assignment_OUTCOME_REASSIGNED {
				t.Fatalf("after deleting w1 = %v", got)
			}
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
