package server_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/handoff/internal/store"
)

func TestOwnersAndTeams(t *testing.T) {
	f := newFixture(t)
	f.team("emea", handoffv1.AssignmentStrategy_ASSIGNMENT_STRATEGY_ROUND_ROBIN, "")
	boss := f.owner("boss", &handoffv1.Owner{DisplayName: "Boss"})
	jane := f.owner("jane", &handoffv1.Owner{
		DisplayName: "Jane", Email: "jane@example.com", ExternalId: "crm-1", Teams: []string{"teams/emea"},
		Manager: boss.GetName(), Attributes: map[string]string{"territory": "emea", "segment": "enterprise"},
		Capacity: &handoffv1.Capacity{MaxLeads: 20, Period: handoffv1.CapacityPeriod_CAPACITY_PERIOD_WEEK},
	})
	if jane.GetName() != "owners/jane" || jane.GetEtag() == "" || jane.GetCapacity().GetMaxLeads() != 20 ||
		jane.GetAttributes()["segment"] != "enterprise" || len(jane.GetTeams()) != 1 {
		t.Fatalf("created owner = %v", jane)
	}

	t.Run("create with the same request id returns the original", func(t *testing.T) {
		req := &handoffv1.CreateOwnerRequest{Owner: &handoffv1.Owner{DisplayName: "Retry"}, RequestId: "r-1"}
		a, err := f.client.CreateOwner(f.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.client.CreateOwner(f.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if a.GetOwner().GetName() != b.GetOwner().GetName() {
			t.Fatalf("retry created %s, then %s", a.GetOwner().GetName(), b.GetOwner().GetName())
		}
	})

	t.Run("duplicate id", func(t *testing.T) {
		_, err := f.client.CreateOwner(f.ctx, &handoffv1.CreateOwnerRequest{OwnerId: "jane", Owner: &handoffv1.Owner{}})
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("code = %v, want AlreadyExists", status.Code(err))
		}
	})

	t.Run("unknown team", func(t *testing.T) {
		_, err := f.client.CreateOwner(f.ctx, &handoffv1.CreateOwnerRequest{Owner: &handoffv1.Owner{Teams: []string{"teams/nope"}}})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("code = %v, want NotFound", status.Code(err))
		}
	})

	t.Run("out of office with a mask, guarded by the etag", func(t *testing.T) {
		resp, err := f.client.UpdateOwner(f.ctx, &handoffv1.UpdateOwnerRequest{
			Owner:      &handoffv1.Owner{Name: "owners/jane", OutOfOffice: true, Etag: jane.GetEtag()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"out_of_office"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetOwner()
		if !got.GetOutOfOffice() || got.GetDisplayName() != "Jane" || got.GetEtag() == jane.GetEtag() {
			t.Fatalf("updated owner = %v", got)
		}
		_, err = f.client.UpdateOwner(f.ctx, &handoffv1.UpdateOwnerRequest{
			Owner:      &handoffv1.Owner{Name: "owners/jane", Disabled: true, Etag: jane.GetEtag()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"disabled"}},
		})
		if status.Code(err) != codes.Aborted {
			t.Fatalf("stale etag: code = %v, want Aborted", status.Code(err))
		}
	})

	t.Run("list by team and manager", func(t *testing.T) {
		for _, tc := range []struct {
			req  *handoffv1.ListOwnersRequest
			want int
		}{
			{&handoffv1.ListOwnersRequest{Team: "teams/emea"}, 1},
			{&handoffv1.ListOwnersRequest{Manager: "owners/boss"}, 1},
			{&handoffv1.ListOwnersRequest{}, 3},
		} {
			resp, err := f.client.ListOwners(f.ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetOwners()) != tc.want {
				t.Fatalf("%v listed %d owners, want %d", tc.req, len(resp.GetOwners()), tc.want)
			}
		}
		team, err := f.client.GetTeam(f.ctx, &handoffv1.GetTeamRequest{Name: "teams/emea"})
		if err != nil || team.GetTeam().GetMemberCount() != 1 {
			t.Fatalf("team = %v, %v; want 1 member", team, err)
		}
	})

	t.Run("paginate", func(t *testing.T) {
		seen := map[string]bool{}
		req := &handoffv1.ListOwnersRequest{PageSize: 2}
		for range 5 {
			resp, err := f.client.ListOwners(f.ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range resp.GetOwners() {
				seen[o.GetName()] = true
			}
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		if len(seen) != 3 {
			t.Fatalf("paged through %d owners, want 3", len(seen))
		}
	})

	t.Run("a team the policy names cannot be deleted", func(t *testing.T) {
		f.policy("teams/emea")
		_, err := f.client.DeleteTeam(f.ctx, &handoffv1.DeleteTeamRequest{Name: "teams/emea"})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("code = %v, want FailedPrecondition", status.Code(err))
		}
	})

	t.Run("delete owner erases personal fields", func(t *testing.T) {
		if _, err := f.client.DeleteOwner(f.ctx, &handoffv1.DeleteOwnerRequest{Name: "owners/jane"}); err != nil {
			t.Fatal(err)
		}
		_, err := f.client.GetOwner(f.ctx, &handoffv1.GetOwnerRequest{Name: "owners/jane"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("code = %v, want NotFound", status.Code(err))
		}
		var name, email string
		if err := f.pool.QueryRow(context.Background(),
			`SELECT display_name, email FROM owners WHERE id = 'jane'`).Scan(&name, &email); err != nil {
			t.Fatal(err)
		}
		if name != "" || email != "" {
			t.Fatal("personal fields survived DeleteOwner")
		}
	})
}

func TestRoutingPolicyValidation(t *testing.T) {
	f := newFixture(t)
	f.team("dach", 0, "")
	for _, tc := range []struct {
		name      string
		rules     []*handoffv1.RoutingRule
		want      codes.Code
		wantField string
		wantText  string
	}{
		{"broken condition names rule and position", []*handoffv1.RoutingRule{
			{Id: "ok", Condition: "true", Team: "teams/dach"},
			{Id: "broken", Condition: "lead.country == ", Team: "teams/dach"},
		}, codes.InvalidArgument, "routing_policy.rules[1].condition", `rule "broken": 1:`},
		{"type error", []*handoffv1.RoutingRule{
			{Id: "typed", Condition: "lead.employee_count == 'many'", Team: "teams/dach"},
		}, codes.InvalidArgument, "routing_policy.rules[0].condition", `rule "typed"`},
		{"unknown team", []*handoffv1.RoutingRule{
			{Id: "ghost", Condition: "true", Team: "teams/ghost"},
		}, codes.FailedPrecondition, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.UpdateRoutingPolicy(f.ctx, &handoffv1.UpdateRoutingPolicyRequest{
				RoutingPolicy: &handoffv1.RoutingPolicy{Name: "routingPolicy", Rules: tc.rules},
			})
			st := status.Convert(err)
			if st.Code() != tc.want {
				t.Fatalf("code = %v (%v), want %v", st.Code(), err, tc.want)
			}
			if tc.wantField == "" {
				return
			}
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						if v.GetField() == tc.wantField && strings.Contains(v.GetDescription(), tc.wantText) {
							return
						}
					}
				}
			}
			t.Fatalf("no violation of %s containing %q in %v", tc.wantField, tc.wantText, st.Details())
		})
	}

	t.Run("validate only stores nothing; stale etag aborts", func(t *testing.T) {
		resp, err := f.client.UpdateRoutingPolicy(f.ctx, &handoffv1.UpdateRoutingPolicyRequest{
			ValidateOnly:  true,
			RoutingPolicy: &handoffv1.RoutingPolicy{Name: "routingPolicy", Rules: []*handoffv1.RoutingRule{{Id: "a", Condition: "true", Team: "teams/dach"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetRoutingPolicy().GetRevision() != 0 {
			t.Fatalf("validate_only revision = %d", resp.GetRoutingPolicy().GetRevision())
		}
		p := f.policy("", &handoffv1.RoutingRule{Id: "a", Condition: "true", Team: "teams/dach"})
		if p.GetRevision() != 1 || len(p.GetRules()) != 1 {
			t.Fatalf("policy = %v", p)
		}
		_, err = f.client.UpdateRoutingPolicy(f.ctx, &handoffv1.UpdateRoutingPolicyRequest{
			RoutingPolicy: &handoffv1.RoutingPolicy{Name: "routingPolicy", Etag: "0"},
		})
		if status.Code(err) != codes.Aborted {
			t.Fatalf("stale etag: code = %v, want Aborted", status.Code(err))
		}
	})
}

// setUpRouting creates teams dach (two owners) and general (one owner), with
// a rule sending DACH leads to dach and general as the fallback.
func setUpRouting(f *fixture) {
	f.team("dach", handoffv1.AssignmentStrategy_ASSIGNMENT_STRATEGY_ROUND_ROBIN, "")
	f.team("general", 0, "")
	f.owner("boss", &handoffv1.Owner{})
	f.owner("anna", &handoffv1.Owner{Teams: []string{"teams/dach"}, Manager: "owners/boss", ExternalId: "crm-anna"})
	f.owner("bert", &handoffv1.Owner{Teams: []string{"teams/dach"}, Manager: "owners/boss"})
	f.owner("gus", &handoffv1.Owner{Teams: []string{"teams/general"}})
	f.policy("teams/general", &handoffv1.RoutingRule{
		Id: "dach", Condition: `lead.country in ["DE", "AT", "CH"] && lead.temperature == Temperature.TEMPERATURE_HOT`,
		Team: "teams/dach",
	})
}

func TestQualificationCreatesOneHandoff(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)

	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE", Industry: "software", EmployeeCount: 500, Source: "webinar"})
	if h.GetState() != handoffv1.Handoff_STATE_ASSIGNED || h.GetOwner() != "owners/anna" || h.GetTeam() != "teams/dach" ||
		h.GetOrigin() != handoffv1.Handoff_ORIGIN_QUALIFIED || h.GetDueTime() == nil {
		t.Fatalf("handoff = %v", h)
	}
	r := h.GetRouting()
	if r.GetRule() != "dach" || r.GetMethod() != handoffv1.RoutingDecision_METHOD_RULE || r.GetPolicyRevision() != 1 ||
		!strings.Contains(r.GetExplanation(), `rule "dach" matched`) {
		t.Fatalf("routing = %v", r)
	}
	if rl := h.GetRoutedLead(); rl.GetCountry() != "DE" || rl.GetTotalScore() != 70 ||
		rl.GetTemperature() != typesv1.Temperature_TEMPERATURE_HOT || rl.GetSource() != "webinar" {
		t.Fatalf("routed lead = %v", rl)
	}
	if len(h.GetAssignments()) != 1 || h.GetAssignments()[0].GetOwner() != "owners/anna" {
		t.Fatalf("assignments = %v", h.GetAssignments())
	}

	t.Run("the same event delivered twice", func(t *testing.T) {
		ev := f.event("acme", "lead-2", mql())
		f.deliver(f.event("acme", "lead-2", &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Country: "US"}}))
		if f.deliver(ev).GetDuplicate() {
			t.Fatal("first delivery reported duplicate")
		}
		if !f.deliver(ev).GetDuplicate() {
			t.Fatal("second delivery not reported duplicate")
		}
		// A distinct event for the same qualification (e.g. a re-published
		// transition) does not open a second handoff either.
		f.deliver(f.event("acme", "lead-2", mql()))
		resp, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{Lead: "leads/lead-2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetHandoffs()) != 1 {
			t.Fatalf("lead-2 has %d handoffs, want 1", len(resp.GetHandoffs()))
		}
		if got := resp.GetHandoffs()[0]; got.GetOwner() != "owners/gus" ||
			got.GetRouting().GetMethod() != handoffv1.RoutingDecision_METHOD_FALLBACK {
			t.Fatalf("lead-2 handoff = %v, want the fallback team's gus", got)
		}
	})

	t.Run("concurrent distinct deliveries", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				ev := f.event("acme", "lead-3", mql())
				if _, err := f.sink.DeliverEvent(f.internal, &eventsv1.DeliverEventRequest{Event: ev}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		resp, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{Lead: "leads/lead-3"})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetHandoffs()) != 1 {
			t.Fatalf("lead-3 has %d handoffs, want 1", len(resp.GetHandoffs()))
		}
	})

	t.Run("a rejected lead qualifying again gets a new handoff", func(t *testing.T) {
		if _, err := f.client.RejectHandoff(f.ctx, &handoffv1.RejectHandoffRequest{Name: h.GetName(), Reason: "not now"}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(1)
		f.deliver(f.event("acme", "lead-1", mql()))
		resp, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{Lead: "leads/lead-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetHandoffs()) != 2 || resp.GetHandoffs()[0].GetOwner() != "owners/bert" {
			t.Fatalf("lead-1 handoffs = %v, want a second one, round-robin to bert", resp.GetHandoffs())
		}
	})

	t.Run("events without a handler are acknowledged", func(t *testing.T) {
		f.deliver(f.event("acme", "lead-1", &eventsv1.ActivityRecorded{Activity: "a"}))
	})

	t.Run("api keys cannot deliver events", func(t *testing.T) {
		_, err := f.sink.DeliverEvent(f.ctx, &eventsv1.DeliverEventRequest{Event: f.event("acme", "x", mql())})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("code = %v, want PermissionDenied", status.Code(err))
		}
	})
}

func TestAcceptAndRejectPublishToLifecycle(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	accepted := f.qualify("lead-a", &eventsv1.LeadAttributes{Country: "AT"})
	rejected := f.qualify("lead-r", &eventsv1.LeadAttributes{Country: "CH"})

	_, err := f.client.AcceptHandoff(f.ctx, &handoffv1.AcceptHandoffRequest{Name: accepted.GetName(), Etag: "999"})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("stale etag: code = %v, want Aborted", status.Code(err))
	}
	acc, err := f.client.AcceptHandoff(f.ctx, &handoffv1.AcceptHandoffRequest{
		Name: accepted.GetName(), Etag: accepted.GetEtag(), Note: "calling today", User: "u-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if h := acc.GetHandoff(); h.GetState() != handoffv1.Handoff_STATE_ACCEPTED || h.GetAcceptTime() == nil ||
		h.GetDueTime() != nil || h.GetAssignments()[0].GetOutcome() != handoffv1.Assignment_OUTCOME_ACCEPTED {
		t.Fatalf("accepted = %v", h)
	}
	rej, err := f.client.RejectHandoff(f.ctx, &handoffv1.RejectHandoffRequest{Name: rejected.GetName(), Reason: "not a buyer yet"})
	if err != nil {
		t.Fatal(err)
	}
	if h := rej.GetHandoff(); h.GetState() != handoffv1.Handoff_STATE_REJECTED || h.GetRejectReason() != "not a buyer yet" {
		t.Fatalf("rejected = %v", h)
	}

	for _, call := range []func() error{
		func() error {
			_, err := f.client.AcceptHandoff(f.ctx, &handoffv1.AcceptHandoffRequest{Name: accepted.GetName()})
			return err
		},
		func() error {
			_, err := f.client.RejectHandoff(f.ctx, &handoffv1.RejectHandoffRequest{Name: rejected.GetName(), Reason: "again"})
			return err
		},
	} {
		if status.Code(call()) != codes.FailedPrecondition {
			t.Fatal("a second decision was not refused with FailedPrecondition")
		}
	}

	assigned := f.outboxEvents(service.Lifecycle, &eventsv1.HandoffAssigned{})
	if len(assigned) != 2 {
		t.Fatalf("outbox holds %d HandoffAssigned for lifecycle, want 2", len(assigned))
	}
	var as eventsv1.HandoffAssigned
	if err := assigned[0].GetPayload().UnmarshalTo(&as); err != nil {
		t.Fatal(err)
	}
	if assigned[0].GetLead() != "lead-a" || as.GetHandoff() != accepted.GetName() || as.GetOwner() != "owners/anna" ||
		as.GetTeam() != "teams/dach" || as.GetRule() != "dach" {
		t.Fatalf("assigned event = %v / %v", assigned[0], &as)
	}
	var events []*eventsv1.Event
	for _, ev := range f.outboxEvents(service.Lifecycle, nil) {
		if ev.GetType() != "leadflow.events.v1.HandoffAssigned" {
			events = append(events, ev)
		}
	}
	if len(events) != 2 {
		t.Fatalf("outbox holds %d decisions for lifecycle, want 2", len(events))
	}
	var a eventsv1.HandoffAccepted
	if err := events[0].GetPayload().UnmarshalTo(&a); err != nil {
		t.Fatal(err)
	}
	if events[0].GetLead() != "lead-a" || events[0].GetWorkspace() != "acme" ||
		a.GetHandoff() != accepted.GetName() || a.GetOwner() != "owners/anna" {
		t.Fatalf("accepted event = %v / %v", events[0], &a)
	}
	var r eventsv1.HandoffRejected
	if err := events[1].GetPayload().UnmarshalTo(&r); err != nil {
		t.Fatal(err)
	}
	if events[1].GetLead() != "lead-r" || r.GetReason() != "not a buyer yet" || r.GetHandoff() != rejected.GetName() {
		t.Fatalf("rejected event = %v / %v", events[1], &r)
	}

	// The relay hands both to lifecycle's sink and empties the outbox.
	var mu sync.Mutex
	var got []string
	relay := outbox.NewRelay(f.pool, store.Schema, map[string]outbox.Sink{
		service.Lifecycle: outbox.SinkFunc(func(_ context.Context, ev *eventsv1.Event) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev.GetType())
			return nil
		}),
	}, outbox.RelayOptions{})
	if _, err := relay.DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || len(f.outboxEvents(service.Lifecycle, nil)) != 0 {
		t.Fatalf("relay delivered %v", got)
	}
}

func TestAssignAndQueue(t *testing.T) {
	f := newFixture(t)
	f.team("dach", 0, "")
	f.owner("anna", &handoffv1.Owner{Teams: []string{"teams/dach"}, OutOfOffice: true})
	f.owner("off", &handoffv1.Owner{Disabled: true})
	f.policy("", &handoffv1.RoutingRule{Id: "dach", Condition: "true", Team: "teams/dach"})

	// Anna is out of office: nobody eligible, so the handoff waits in the queue.
	h := f.qualify("lead-q", &eventsv1.LeadAttributes{Country: "DE"})
	if h.GetState() != handoffv1.Handoff_STATE_QUEUED || h.GetOwner() != "" ||
		h.GetRouting().GetMethod() != handoffv1.RoutingDecision_METHOD_QUEUE || h.GetDueTime() != nil {
		t.Fatalf("handoff = %v, want queued", h)
	}
	_, err := f.client.AssignHandoff(f.ctx, &handoffv1.AssignHandoffRequest{Name: h.GetName(), Owner: "owners/off"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("assign to disabled owner: code = %v, want FailedPrecondition", status.Code(err))
	}
	resp, err := f.client.AssignHandoff(f.ctx, &handoffv1.AssignHandoffRequest{
		Name: h.GetName(), Owner: "owners/anna", Etag: h.GetEtag(), Reason: "back tomorrow", User: "mgr-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetHandoff()
	if got.GetState() != handoffv1.Handoff_STATE_ASSIGNED || got.GetOwner() != "owners/anna" || got.GetDueTime() == nil ||
		got.GetRouting().GetMethod() != handoffv1.RoutingDecision_METHOD_MANUAL || got.GetAssignments()[0].GetUser() != "mgr-1" {
		t.Fatalf("assigned = %v", got)
	}

	t.Run("create by hand; one open handoff per lead", func(t *testing.T) {
		req := &handoffv1.CreateHandoffRequest{Lead: "leads/sgl-1", Owner: "owners/anna", RequestId: "req-1"}
		a, err := f.client.CreateHandoff(f.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if a.GetHandoff().GetOrigin() != handoffv1.Handoff_ORIGIN_MANUAL || a.GetHandoff().GetOwner() != "owners/anna" {
			t.Fatalf("created = %v", a.GetHandoff())
		}
		b, err := f.client.CreateHandoff(f.ctx, req)
		if err != nil || b.GetHandoff().GetName() != a.GetHandoff().GetName() {
			t.Fatalf("retry = %v, %v; want the original", b, err)
		}
		_, err = f.client.CreateHandoff(f.ctx, &handoffv1.CreateHandoffRequest{Lead: "leads/sgl-1"})
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("second open handoff: code = %v, want AlreadyExists", status.Code(err))
		}
	})

	t.Run("queue listing by owner and state, ordered by due time", func(t *testing.T) {
		resp, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{
			Owner: "owners/anna", States: []handoffv1.Handoff_State{handoffv1.Handoff_STATE_ASSIGNED},
			OrderBy: "due_time", PageSize: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetHandoffs()) != 1 || resp.GetNextPageToken() == "" {
			t.Fatalf("first page = %v", resp)
		}
		next, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{
			Owner: "owners/anna", States: []handoffv1.Handoff_State{handoffv1.Handoff_STATE_ASSIGNED},
			OrderBy: "due_time", PageSize: 1, PageToken: resp.GetNextPageToken(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(next.GetHandoffs()) != 1 || next.GetHandoffs()[0].GetName() == resp.GetHandoffs()[0].GetName() {
			t.Fatalf("second page = %v", next)
		}
		queued, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{
			States: []handoffv1.Handoff_State{handoffv1.Handoff_STATE_QUEUED},
		})
		if err != nil || len(queued.GetHandoffs()) != 0 {
			t.Fatalf("queued = %v, %v; want none", queued, err)
		}
	})
}

func TestLeadErasedAndMerged(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	f.qualify("loser", &eventsv1.LeadAttributes{Country: "DE"})
	f.qualify("survivor", &eventsv1.LeadAttributes{Country: "DE"})

	f.deliver(f.event("acme", "loser", &eventsv1.LeadMerged{SurvivorLead: "survivor"}))
	resp, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{Lead: "leads/survivor"})
	if err != nil {
		t.Fatal(err)
	}
	states := map[handoffv1.Handoff_State]int{}
	for _, h := range resp.GetHandoffs() {
		states[h.GetState()]++
	}
	if len(resp.GetHandoffs()) != 2 || states[handoffv1.Handoff_STATE_CANCELLED] != 1 || states[handoffv1.Handoff_STATE_ASSIGNED] != 1 {
		t.Fatalf("survivor's handoffs after merge = %v", resp.GetHandoffs())
	}
	// Late events about the merged-away lead, one by one and in a unit,
	// neither bring back its routing copy nor open a handoff for it.
	f.deliver(f.event("acme", "loser", &eventsv1.LeadScored{TotalScore: 90}))
	f.deliverAll(f.event("acme", "loser", mql()), f.event("acme", "other", mql()))
	var loserRows int
	if err := f.pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM leads WHERE id = 'loser') + (SELECT count(*) FROM handoffs WHERE lead_id = 'loser')`).Scan(&loserRows); err != nil {
		t.Fatal(err)
	}
	if loserRows != 0 {
		t.Fatalf("%d rows about the merged-away lead came back", loserRows)
	}
	if _, err := f.client.GetLeadHandoff(f.ctx, &handoffv1.GetLeadHandoffRequest{Lead: "leads/other"}); err != nil {
		t.Fatalf("the unit's other lead got no handoff: %v", err)
	}

	f.deliver(f.event("acme", "survivor", &eventsv1.LeadErased{}))
	_, err = f.client.GetLeadHandoff(f.ctx, &handoffv1.GetLeadHandoffRequest{Lead: "leads/survivor"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("erased lead's handoff: code = %v, want NotFound", status.Code(err))
	}
	// Late events do not bring the lead back.
	f.deliver(f.event("acme", "survivor", mql()))
	var n int
	if err := f.pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM leads WHERE id = 'survivor') + (SELECT count(*) FROM handoffs WHERE lead_id = 'survivor')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows about the erased lead remain", n)
	}
}

// A merge takes the loser's turn as well as the survivor's: it waits for
// an event about the loser under way, so it never moves a routing copy
// that event is still changing.
func TestMergeWaitsForTheLosersTurn(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	f.qualify("loser", &eventsv1.LeadAttributes{Country: "DE"})
	f.qualify("survivor", &eventsv1.LeadAttributes{Country: "DE"})

	tx, err := f.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // committed below
	if _, err := tx.Exec(t.Context(), postgres.LockKey, "acme", "loser"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.sink.DeliverEvent(f.internal, &eventsv1.DeliverEventRequest{
			Event: f.event("acme", "loser", &eventsv1.LeadMerged{SurvivorLead: "survivor"})})
		done <- err
	}()
	pgtest.AwaitLockWait(t, f.pool, done)
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("merge: %v", err)
	}
	resp, err := f.client.ListHandoffs(f.ctx, &handoffv1.ListHandoffsRequest{Lead: "leads/survivor"})
	if err != nil || len(resp.GetHandoffs()) != 2 {
		t.Fatalf("survivor's handoffs after the merge = %v (%v), want both leads'", resp.GetHandoffs(), err)
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})

	for name, call := range map[string]func() error{
		"get handoff": func() error {
			_, err := f.client.GetHandoff(f.other, &handoffv1.GetHandoffRequest{Name: h.GetName()})
			return err
		},
		"get lead handoff": func() error {
			_, err := f.client.GetLeadHandoff(f.other, &handoffv1.GetLeadHandoffRequest{Lead: "leads/lead-1"})
			return err
		},
		"accept": func() error {
			_, err := f.client.AcceptHandoff(f.other, &handoffv1.AcceptHandoffRequest{Name: h.GetName()})
			return err
		},
		"reject": func() error {
			_, err := f.client.RejectHandoff(f.other, &handoffv1.RejectHandoffRequest{Name: h.GetName(), Reason: "x"})
			return err
		},
		"get owner": func() error {
			_, err := f.client.GetOwner(f.other, &handoffv1.GetOwnerRequest{Name: "owners/anna"})
			return err
		},
		"get team": func() error {
			_, err := f.client.GetTeam(f.other, &handoffv1.GetTeamRequest{Name: "teams/dach"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := status.Code(call()); got != codes.NotFound {
				t.Fatalf("code = %v, want NotFound", got)
			}
		})
	}
	resp, err := f.client.ListHandoffs(f.other, &handoffv1.ListHandoffsRequest{})
	if err != nil || len(resp.GetHandoffs()) != 0 {
		t.Fatalf("globex lists %v, %v; want nothing", resp, err)
	}
	// The event of another workspace about the same lead id opens nothing here.
	f.deliver(f.event("globex", "lead-1", mql()))
	if got := f.handoff(h.GetName()); got.GetState() != handoffv1.Handoff_STATE_ASSIGNED {
		t.Fatalf("acme's handoff changed: %v", got)
	}
}
