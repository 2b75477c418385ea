package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
	"github.com/leadflow/leadflow/services/lifecycle/internal/server"
	"github.com/leadflow/leadflow/services/lifecycle/internal/sink"
	"github.com/leadflow/leadflow/services/lifecycle/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is a settable time source, so histories have known timestamps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

type fixture struct {
	client lifecyclev1.LifecycleServiceClient
	events eventsv1.EventSinkServiceClient
	pool   *pgxpool.Pool
	clock  *clock
	acme   context.Context // acme's key, read and write
	globex context.Context // another workspace's key
}

var base = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a Monday

func newFixture(t *testing.T) fixture {
	t.Helper()
	pool := pgtest.NewPool(t, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	st := store.New(pool, store.NewPublisher("lifecycle", "handoff"))
	svc := lifecycle.NewService(st)
	clk := &clock{t: base}
	svc.SetClock(clk.now)
	acmeKey, globexKey := grpctest.NewKey(t), grpctest.NewKey(t)
	scopes := []string{auth.ScopeLifecycleRead, auth.ScopeLifecycleWrite}
	conn := grpctest.Serve(t, grpctest.Options{
		Policy: server.Policy,
		Authn: grpctest.Keys{
			acmeKey:   {Workspace: "acme", KeyID: "k1", Scopes: scopes},
			globexKey: {Workspace: "globex", KeyID: "k2", Scopes: scopes},
		},
		Register: func(s *grpcserver.Server) {
			lifecyclev1.RegisterLifecycleServiceServer(s, server.New(svc))
			eventsv1.RegisterEventSinkServiceServer(s, sink.NewServer(pool, svc, st))
		},
	})
	return fixture{
		client: lifecyclev1.NewLifecycleServiceClient(conn),
		events: eventsv1.NewEventSinkServiceClient(conn),
		pool:   pool,
		clock:  clk,
		acme:   grpctest.WithKey(context.Background(), acmeKey),
		globex: grpctest.WithKey(context.Background(), globexKey),
	}
}

// newEvent wraps payload as the producing service would.
func newEvent(t *testing.T, ws, lead, source string, payload proto.Message) *eventsv1.Event {
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

// deliver hands ev to the sink as another service's relay would.
func (f fixture) deliver(t *testing.T, ev *eventsv1.Event) *eventsv1.DeliverEventResponse {
	t.Helper()
	resp, err := f.events.DeliverEvent(grpctest.WithKey(context.Background(), grpctest.InternalToken),
		&eventsv1.DeliverEventRequest{Event: ev})
	if err != nil {
		t.Fatalf("deliver %s: %v", ev.GetType(), err)
	}
	return resp
}

func (f fixture) capture(t *testing.T, lead, source string) {
	t.Helper()
	f.deliver(t, newEvent(t, "acme", lead, "ingestion", &eventsv1.LeadCaptured{
		Attributes: &eventsv1.LeadAttributes{Source: source, Campaign: "spring"},
	}))
}

func (f fixture) qualify(t *testing.T, lead string) {
	t.Helper()
	f.deliver(t, newEvent(t, "acme", lead, "scoring", &eventsv1.LeadQualified{
		Reason: eventsv1.LeadQualified_REASON_SCORE_THRESHOLD, TotalScore: 85,
	}))
}

func (f fixture) get(t *testing.T, lead string) *lifecyclev1.LeadLifecycle {
	t.Helper()
	resp, err := f.client.GetLeadLifecycle(f.acme, &lifecyclev1.GetLeadLifecycleRequest{Name: "leads/" + lead + "/lifecycle"})
	if err != nil {
		t.Fatalf("get %s: %v", lead, err)
	}
	return resp.GetLifecycle()
}

func (f fixture) move(t *testing.T, lead string, req *lifecyclev1.TransitionLeadRequest) *lifecyclev1.TransitionLeadResponse {
	t.Helper()
	req.Name = "leads/" + lead + "/lifecycle"
	resp, err := f.client.TransitionLead(f.acme, req)
	if err != nil {
		t.Fatalf("move %s to %v: %v", lead, req.GetToStage(), err)
	}
	return resp
}

func (f fixture) history(t *testing.T, lead string) []*lifecyclev1.Transition {
	t.Helper()
	resp, err := f.client.ListTransitions(f.acme, &lifecyclev1.ListTransitionsRequest{Parent: "leads/" + lead, PageSize: 1000})
	if err != nil {
		t.Fatalf("list %s: %v", lead, err)
	}
	return resp.GetTransitions()
}

// rule returns the precondition type a refusal names.
func rule(t *testing.T, err error) string {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("code = %v (%v), want FailedPrecondition", st.Code(), err)
	}
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok && len(pf.GetViolations()) > 0 {
			return pf.GetViolations()[0].GetType()
		}
	}
	t.Fatalf("no PreconditionFailure in %v", st.Details())
	return ""
}

var needBudget = &lifecyclev1.Bant{
	Need:   &lifecyclev1.BantItem{Confirmed: true, Note: "replacing a spreadsheet"},
	Budget: &lifecyclev1.BantItem{Confirmed: true, Note: "approved for Q3"},
}

func TestHappyPath(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	f.clock.set(base.Add(time.Hour))
	f.qualify(t, "l1")
	f.clock.set(base.Add(2 * time.Hour))
	f.deliver(t, newEvent(t, "acme", "l1", "handoff", &eventsv1.HandoffAccepted{Handoff: "h1", Owner: "u-7"}))
	f.clock.set(base.Add(3 * time.Hour))
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SQL, Bant: needBudget, User: "u-7"})
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_OPPORTUNITY})
	f.clock.set(base.Add(4 * time.Hour))
	resp := f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_WON, Etag: f.get(t, "l1").GetEtag()})

	lc := resp.GetLifecycle()
	if lc.GetStage() != typesv1.Stage_STAGE_WON || lc.GetPreviousStage() != typesv1.Stage_STAGE_OPPORTUNITY ||
		!lc.GetStageEnterTime().AsTime().Equal(base.Add(4*time.Hour)) || lc.GetBant().GetNeed().GetNote() == "" {
		t.Fatalf("lifecycle = %v", lc)
	}
	want := []struct {
		to      typesv1.Stage
		kind    lifecyclev1.Actor_Kind
		actor   string
		trigger string
	}{
		{typesv1.Stage_STAGE_WON, lifecyclev1.Actor_KIND_API_KEY, "workspaces/acme/apiKeys/k1", "api"},
		{typesv1.Stage_STAGE_OPPORTUNITY, lifecyclev1.Actor_KIND_API_KEY, "workspaces/acme/apiKeys/k1", "api"},
		{typesv1.Stage_STAGE_SQL, lifecyclev1.Actor_KIND_USER, "u-7", "api"},
		{typesv1.Stage_STAGE_SAL, lifecyclev1.Actor_KIND_SERVICE, "handoff", "leadflow.events.v1.HandoffAccepted"},
		{typesv1.Stage_STAGE_MQL, lifecyclev1.Actor_KIND_SERVICE, "scoring", "leadflow.events.v1.LeadQualified"},
		{typesv1.Stage_STAGE_INQUIRY, lifecyclev1.Actor_KIND_SERVICE, "ingestion", "leadflow.events.v1.LeadCaptured"},
	}
	got := f.history(t, "l1")
	if len(got) != len(want) {
		t.Fatalf("history has %d moves, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.GetToStage() != w.to || g.GetActor().GetKind() != w.kind || g.GetActor().GetId() != w.actor || g.GetTrigger() != w.trigger {
			t.Errorf("move %d = %v, want to %v by %v %s via %s", i, g, w.to, w.kind, w.actor, w.trigger)
		}
		if i+1 < len(got) && g.GetFromStage() != got[i+1].GetToStage() {
			t.Errorf("move %d starts at %v, previous ended at %v", i, g.GetFromStage(), got[i+1].GetToStage())
		}
	}
	if got[5].GetFromStage() != typesv1.Stage_STAGE_UNSPECIFIED || got[4].GetEvent() == "" {
		t.Errorf("creation or event id not recorded: %v", got[4:])
	}
	// Event-driven moves keep the producer's trace.
	if got[4].GetTraceId() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id = %q", got[4].GetTraceId())
	}
}

// stageChanged reads the StageChanged events waiting in the outbox for handoff.
func stageChanged(t *testing.T, pool *pgxpool.Pool) []*eventsv1.StageChanged {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT event FROM outbox_events WHERE 'handoff' = ANY(subscribers) AND event_type = 'leadflow.events.v1.StageChanged' ORDER BY id, position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []*eventsv1.StageChanged
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(raw, ev); err != nil {
			t.Fatal(err)
		}
		sc := &eventsv1.StageChanged{}
		if err := ev.GetPayload().UnmarshalTo(sc); err != nil {
			t.Fatal(err)
		}
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStageChangedWrittenWithEachMove(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	f.qualify(t, "l1")
	// A refused move writes nothing.
	_, err := f.client.TransitionLead(f.acme, &lifecyclev1.TransitionLeadRequest{Name: "leads/l1/lifecycle", ToStage: typesv1.Stage_STAGE_WON})
	if got := rule(t, err); got != lifecycle.RuleNotAllowed {
		t.Fatalf("rule = %s", got)
	}
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_DISQUALIFIED, Reason: "spam", User: "u-1"})

	got := stageChanged(t, f.pool)
	want := []*eventsv1.StageChanged{
		{ToStage: typesv1.Stage_STAGE_INQUIRY, Actor: "service:ingestion"},
		// Qualification brings a score of 85 with it: the lead is hot from then on.
		{FromStage: typesv1.Stage_STAGE_INQUIRY, ToStage: typesv1.Stage_STAGE_MQL, Actor: "service:scoring", Temperature: typesv1.Temperature_TEMPERATURE_HOT},
		{FromStage: typesv1.Stage_STAGE_MQL, ToStage: typesv1.Stage_STAGE_DISQUALIFIED, Reason: "spam", Actor: "user:u-1", Temperature: typesv1.Temperature_TEMPERATURE_HOT},
	}
	if len(got) != len(want) {
		t.Fatalf("outbox holds %d StageChanged, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("event %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestGuards(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	f.qualify(t, "l1")
	f.deliver(t, newEvent(t, "acme", "l1", "handoff", &eventsv1.HandoffAccepted{}))
	name := "leads/l1/lifecycle"
	for _, tc := range []struct {
		name string
		req  *lifecyclev1.TransitionLeadRequest
		rule string
	}{
		{"sql without bant", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SQL}, lifecycle.RuleBANT},
		{"sql with need only", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SQL,
			Bant: &lifecyclev1.Bant{Need: &lifecyclev1.BantItem{Confirmed: true}}}, lifecycle.RuleBANT},
		{"same stage", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SAL}, lifecycle.RuleSameStage},
		{"not in graph", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_WON}, lifecycle.RuleNotAllowed},
		{"backward without reason", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_MQL}, lifecycle.RuleReasonMissing},
		{"disqualified with unlisted reason", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_DISQUALIFIED, Reason: "meh"}, lifecycle.RuleReasonNotList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Name = name
			_, err := f.client.TransitionLead(f.acme, tc.req)
			if got := rule(t, err); got != tc.rule {
				t.Fatalf("rule = %s, want %s", got, tc.rule)
			}
		})
	}
	if got := f.get(t, "l1").GetStage(); got != typesv1.Stage_STAGE_SAL {
		t.Fatalf("refusals moved the lead to %v", got)
	}
	resp := f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SQL, Bant: needBudget})
	if resp.GetLifecycle().GetStage() != typesv1.Stage_STAGE_SQL || !resp.GetLifecycle().GetBant().GetBudget().GetConfirmed() {
		t.Fatalf("lifecycle = %v", resp.GetLifecycle())
	}
	// Lost needs a listed reason.
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_OPPORTUNITY})
	_, err := f.client.TransitionLead(f.acme, &lifecyclev1.TransitionLeadRequest{Name: name, ToStage: typesv1.Stage_STAGE_LOST})
	if got := rule(t, err); got != lifecycle.RuleReasonNotList {
		t.Fatalf("lost without reason: rule = %s", got)
	}
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_LOST, Reason: "competitor"})
}

func TestRecyclingCountsOneCycle(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	f.qualify(t, "l1")
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SAL})
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SQL, Bant: needBudget})
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_LOST, Reason: "timing"})
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_RECYCLED, Reason: "nurture until Q4"})
	if got := f.get(t, "l1").GetRecycleCount(); got != 1 {
		t.Fatalf("recycle count after Recycled = %d, want 1", got)
	}
	f.qualify(t, "l1") // qualifies again: back to MQL
	lc := f.get(t, "l1")
	if lc.GetStage() != typesv1.Stage_STAGE_MQL || lc.GetPreviousStage() != typesv1.Stage_STAGE_RECYCLED || lc.GetRecycleCount() != 1 {
		t.Fatalf("lifecycle = %v, want MQL from Recycled after one cycle", lc)
	}
	// A rejection by sales recycles again and counts a second cycle.
	f.deliver(t, newEvent(t, "acme", "l1", "handoff", &eventsv1.HandoffRejected{Reason: "not now"}))
	if lc := f.get(t, "l1"); lc.GetStage() != typesv1.Stage_STAGE_RECYCLED || lc.GetRecycleCount() != 2 || lc.GetReason() != "not now" {
		t.Fatalf("after rejection: %v", lc)
	}
}

func TestStaleEtagAborted(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	stale := f.get(t, "l1").GetEtag()
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_MQL, Etag: stale})
	_, err := f.client.TransitionLead(f.acme, &lifecyclev1.TransitionLeadRequest{
		Name: "leads/l1/lifecycle", ToStage: typesv1.Stage_STAGE_SAL, Etag: stale,
	})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("code = %v, want Aborted", status.Code(err))
	}
	if got := f.get(t, "l1").GetStage(); got != typesv1.Stage_STAGE_MQL {
		t.Fatalf("stage = %v, want MQL", got)
	}
}

func TestConcurrentTransitionsOneWins(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	f.qualify(t, "l1")
	etag := f.get(t, "l1").GetEtag()

	targets := []typesv1.Stage{typesv1.Stage_STAGE_SAL, typesv1.Stage_STAGE_TQL, typesv1.Stage_STAGE_SAL, typesv1.Stage_STAGE_TQL}
	start := make(chan struct{})
	codesOut := make([]codes.Code, len(targets))
	var wg sync.WaitGroup
	for i, to := range targets {
		wg.Go(func() {
			<-start
			_, err := f.client.TransitionLead(f.acme, &lifecyclev1.TransitionLeadRequest{
				Name: "leads/l1/lifecycle", ToStage: to, Etag: etag,
			})
			codesOut[i] = status.Code(err)
		})
	}
	close(start)
	wg.Wait()
	var ok, aborted int
	for _, c := range codesOut {
		switch c {
		case codes.OK:
			ok++
		case codes.Aborted:
			aborted++
		default:
			t.Errorf("unexpected code %v", c)
		}
	}
	if ok != 1 || aborted != len(targets)-1 {
		t.Fatalf("ok = %d, aborted = %d; want exactly one winner", ok, aborted)
	}
	if got := len(f.history(t, "l1")); got != 3 {
		t.Fatalf("history has %d moves, want 3 (Inquiry, MQL, the winner)", got)
	}
}

func TestRedeliveredQualificationMakesNoSecondMove(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	ev := newEvent(t, "acme", "l1", "scoring", &eventsv1.LeadQualified{TotalScore: 70})
	if f.deliver(t, ev).GetDuplicate() {
		t.Fatal("first delivery reported as duplicate")
	}
	if !f.deliver(t, ev).GetDuplicate() {
		t.Fatal("redelivery not reported as duplicate")
	}
	// A distinct, later qualification of an MQL does not move it either.
	f.qualify(t, "l1")
	got := f.history(t, "l1")
	if len(got) != 2 || got[0].GetToStage() != typesv1.Stage_STAGE_MQL {
		t.Fatalf("history = %v, want Inquiry then one MQL", got)
	}
	if n := len(stageChanged(t, f.pool)); n != 2 {
		t.Fatalf("%d StageChanged published, want 2", n)
	}
}

func TestEventsInAnyOrder(t *testing.T) {
	f := newFixture(t)
	f.qualify(t, "l1") // before ingestion's capture arrives
	f.capture(t, "l1", "web")
	lc := f.get(t, "l1")
	if lc.GetStage() != typesv1.Stage_STAGE_MQL {
		t.Fatalf("stage = %v, want MQL", lc.GetStage())
	}
	got := f.history(t, "l1")
	if len(got) != 2 || got[1].GetToStage() != typesv1.Stage_STAGE_INQUIRY {
		t.Fatalf("history = %v, want Inquiry then MQL", got)
	}
	// The late capture still attributed the lead: the funnel filter finds it.
	rep, err := f.client.GetFunnelReport(f.acme, &lifecyclev1.GetFunnelReportRequest{
		StartTime: timestamppb.New(base.Add(-time.Hour)), EndTime: timestamppb.New(base.Add(time.Hour)), Source: "web",
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := rep.GetReport().GetStages()[0].GetEnteredCount(); n != 1 {
		t.Fatalf("inquiries from web = %d, want 1", n)
	}
}

func TestStageAsOfPastInstant(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web") // at base
	f.clock.set(base.Add(24 * time.Hour))
	f.qualify(t, "l1")
	f.clock.set(base.Add(48 * time.Hour))
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_RECYCLED, Reason: "not ready"})
	f.clock.set(base.Add(72 * time.Hour))
	f.qualify(t, "l1")

	for _, tc := range []struct {
		name     string
		at       time.Time
		stage    typesv1.Stage
		entered  time.Time
		recycles int32
	}{
		{"just after capture", base.Add(time.Minute), typesv1.Stage_STAGE_INQUIRY, base, 0},
		{"at the qualification", base.Add(24 * time.Hour), typesv1.Stage_STAGE_MQL, base.Add(24 * time.Hour), 0},
		{"while recycled", base.Add(60 * time.Hour), typesv1.Stage_STAGE_RECYCLED, base.Add(48 * time.Hour), 1},
		{"after re-qualifying", base.Add(100 * time.Hour), typesv1.Stage_STAGE_MQL, base.Add(72 * time.Hour), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.client.GetLeadLifecycle(f.acme, &lifecyclev1.GetLeadLifecycleRequest{
				Name: "leads/l1/lifecycle", ReadTime: timestamppb.New(tc.at),
			})
			if err != nil {
				t.Fatal(err)
			}
			lc := resp.GetLifecycle()
			if lc.GetStage() != tc.stage || !lc.GetStageEnterTime().AsTime().Equal(tc.entered) ||
				lc.GetRecycleCount() != tc.recycles || lc.GetEtag() != "" || !lc.GetReadTime().AsTime().Equal(tc.at) {
				t.Fatalf("lifecycle = %v, want %v entered %v with %d recycles", lc, tc.stage, tc.entered, tc.recycles)
			}
		})
	}
	_, err := f.client.GetLeadLifecycle(f.acme, &lifecyclev1.GetLeadLifecycleRequest{
		Name: "leads/l1/lifecycle", ReadTime: timestamppb.New(base.Add(-time.Second)),
	})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("before the lead existed: code = %v, want NotFound", status.Code(err))
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	for name, call := range map[string]func() error{
		"get": func() error {
			_, err := f.client.GetLeadLifecycle(f.globex, &lifecyclev1.GetLeadLifecycleRequest{Name: "leads/l1/lifecycle"})
			return err
		},
		"get as of": func() error {
			_, err := f.client.GetLeadLifecycle(f.globex, &lifecyclev1.GetLeadLifecycleRequest{
				Name: "leads/l1/lifecycle", ReadTime: timestamppb.New(base.Add(time.Hour)),
			})
			return err
		},
		"transition": func() error {
			_, err := f.client.TransitionLead(f.globex, &lifecyclev1.TransitionLeadRequest{Name: "leads/l1/lifecycle", ToStage: typesv1.Stage_STAGE_MQL})
			return err
		},
		"list": func() error {
			_, err := f.client.ListTransitions(f.globex, &lifecyclev1.ListTransitionsRequest{Parent: "leads/l1"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := status.Code(call()); got != codes.NotFound {
				t.Fatalf("code = %v, want NotFound", got)
			}
		})
	}
	rep, err := f.client.GetFunnelReport(f.globex, &lifecyclev1.GetFunnelReportRequest{StartTime: timestamppb.New(base.Add(-time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if n := rep.GetReport().GetStages()[0].GetEnteredCount(); n != 0 {
		t.Fatalf("globex's funnel sees %d of acme's inquiries", n)
	}
	if f.get(t, "l1").GetStage() != typesv1.Stage_STAGE_INQUIRY {
		t.Fatal("globex's attempt moved acme's lead")
	}
}

func TestAuthorization(t *testing.T) {
	f := newFixture(t)
	ev := newEvent(t, "acme", "l1", "scoring", &eventsv1.LeadQualified{})
	_, err := f.events.DeliverEvent(f.acme, &eventsv1.DeliverEventRequest{Event: ev})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("event from an API key: code = %v, want PermissionDenied", status.Code(err))
	}
	_, err = f.client.GetLifecycleSettings(context.Background(), &lifecyclev1.GetLifecycleSettingsRequest{Name: "lifecycleSettings"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no key: code = %v, want Unauthenticated", status.Code(err))
	}
}

func TestRequestIDReplays(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "l1", "web")
	req := &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_MQL, RequestId: "r-1"}
	first := f.move(t, "l1", req)
	again := f.move(t, "l1", req)
	if !proto.Equal(first.GetTransition(), again.GetTransition()) {
		t.Fatalf("retry made %v, want the original %v", again.GetTransition(), first.GetTransition())
	}
	if n := len(f.history(t, "l1")); n != 2 {
		t.Fatalf("history has %d moves, want 2", n)
	}
}

func TestSalesGeneratedLeadEntersAtSGL(t *testing.T) {
	f := newFixture(t)
	resp := f.move(t, "s1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SGL, User: "rep-1"})
	if resp.GetLifecycle().GetStage() != typesv1.Stage_STAGE_SGL || resp.GetTransition().GetFromStage() != typesv1.Stage_STAGE_UNSPECIFIED {
		t.Fatalf("resp = %v", resp)
	}
	_, err := f.client.TransitionLead(f.acme, &lifecyclev1.TransitionLeadRequest{Name: "leads/nope/lifecycle", ToStage: typesv1.Stage_STAGE_MQL})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown lead to MQL: code = %v, want NotFound", status.Code(err))
	}
}

func TestEraseAndMerge(t *testing.T) {
	f := newFixture(t)
	f.capture(t, "gone", "web")
	f.deliver(t, newEvent(t, "acme", "gone", "ingestion", &eventsv1.LeadErased{}))
	f.qualify(t, "gone") // late: must not resurrect the lead
	if _, err := f.client.GetLeadLifecycle(f.acme, &lifecyclev1.GetLeadLifecycleRequest{Name: "leads/gone/lifecycle"}); status.Code(err) != codes.NotFound {
		t.Fatalf("erased lead: code = %v, want NotFound", status.Code(err))
	}
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM transitions WHERE lead_id = 'gone'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("erased lead keeps %d transitions (%v)", n, err)
	}

	// Only the loser is known: its lifecycle becomes the survivor's.
	f.capture(t, "dup", "web")
	f.qualify(t, "dup")
	f.deliver(t, newEvent(t, "acme", "dup", "ingestion", &eventsv1.LeadMerged{SurvivorLead: "keep"}))
	if lc := f.get(t, "keep"); lc.GetStage() != typesv1.Stage_STAGE_MQL || len(f.history(t, "keep")) != 2 {
		t.Fatalf("survivor = %v", lc)
	}
	// Late events about the loser reach the survivor.
	f.deliver(t, newEvent(t, "acme", "dup", "handoff", &eventsv1.HandoffAccepted{}))
	if got := f.get(t, "keep").GetStage(); got != typesv1.Stage_STAGE_SAL {
		t.Fatalf("survivor stage = %v, want SAL", got)
	}
}

func TestSettings(t *testing.T) {
	f := newFixture(t)
	got, err := f.client.GetLifecycleSettings(f.acme, &lifecyclev1.GetLifecycleSettingsRequest{Name: "lifecycleSettings"})
	if err != nil {
		t.Fatal(err)
	}
	s := got.GetLifecycleSettings()
	if len(s.GetAllowedTransitions()) != 10 || len(s.GetLostReasons()) != 6 || s.GetEtag() != "0" {
		t.Fatalf("defaults = %v", s)
	}
	// Allow Inquiry -> SAL, and only "won_by_rival" as a lost reason.
	for _, at := range s.GetAllowedTransitions() {
		if at.GetFromStage() == typesv1.Stage_STAGE_INQUIRY {
			at.ToStages = append(at.ToStages, typesv1.Stage_STAGE_SAL)
		}
	}
	s.LostReasons = []*lifecyclev1.ReasonCode{{Code: "won_by_rival"}}
	upd, err := f.client.UpdateLifecycleSettings(f.acme, &lifecyclev1.UpdateLifecycleSettingsRequest{LifecycleSettings: s})
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetLifecycleSettings().GetEtag() != "1" {
		t.Fatalf("etag = %q, want 1", upd.GetLifecycleSettings().GetEtag())
	}
	f.capture(t, "l1", "web")
	f.move(t, "l1", &lifecyclev1.TransitionLeadRequest{ToStage: typesv1.Stage_STAGE_SAL})

	for _, tc := range []struct {
		name string
		s    *lifecyclev1.LifecycleSettings
		mask []string
		want codes.Code
	}{
		{"stale etag", &lifecyclev1.LifecycleSettings{Name: "lifecycleSettings", Etag: "0", LostReasons: s.GetLostReasons()}, []string{"lost_reasons"}, codes.Aborted},
		{"empty reasons", &lifecyclev1.LifecycleSettings{Name: "lifecycleSettings"}, []string{"lost_reasons"}, codes.InvalidArgument},
		{"unknown path", &lifecyclev1.LifecycleSettings{Name: "lifecycleSettings"}, []string{"etag"}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.UpdateLifecycleSettings(f.acme, &lifecyclev1.UpdateLifecycleSettingsRequest{
				LifecycleSettings: tc.s, UpdateMask: &fieldmaskpb.FieldMask{Paths: tc.mask},
			})
			if status.Code(err) != tc.want {
				t.Fatalf("code = %v, want %v", status.Code(err), tc.want)
			}
		})
	}
	// globex still has the defaults.
	g, err := f.client.GetLifecycleSettings(f.globex, &lifecyclev1.GetLifecycleSettingsRequest{Name: "lifecycleSettings"})
	if err != nil || g.GetLifecycleSettings().GetEtag() != "0" {
		t.Fatalf("globex settings = %v, %v", g, err)
	}
}
