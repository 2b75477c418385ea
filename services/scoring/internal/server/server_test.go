package server_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	scoringv1 "github.com/leadflow/leadflow/gen/go/leadflow/scoring/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/logging"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/server"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const day = 24 * time.Hour

// clock is a settable time source for decay.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	pool   *pgxpool.Pool
	trips  *pgtest.RoundTrips // of pool
	clock  *clock
	client scoringv1.ScoringServiceClient
	sink   eventsv1.EventSinkServiceClient
	ctx    context.Context // acme's admin key
	other  context.Context // globex's admin key
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	trips := &pgtest.RoundTrips{}
	pool := pgtest.NewCountingPool(t, trips, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	st := store.New(pool, outbox.NewPublisher("scoring", store.Schema, server.Routes))
	// Small rescore batches, so a test's few hundred leads take two, the
	// first written in two chunks.
	svc := scoring.NewService(st, scoring.WithClock(clk.Now), scoring.WithRescoreBatchSize(300))
	acme, globex := grpctest.NewKey(t), grpctest.NewKey(t)
	conn := grpctest.Serve(t, grpctest.Options{
		Policy: server.Policy,
		Authn: grpctest.Keys{
			acme:   auth.Principal{Workspace: "acme", Scopes: []string{auth.ScopeAdmin}},
			globex: auth.Principal{Workspace: "globex", Scopes: []string{auth.ScopeAdmin}},
		},
		Register: func(s *grpcserver.Server) {
			scoringv1.RegisterScoringServiceServer(s, server.New(svc))
			eventsv1.RegisterEventSinkServiceServer(s, server.NewSink(pool, svc, st))
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.RunRescorer(ctx, logging.Discard(), 50*time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("rescorer: %v", err)
		}
	})
	return &fixture{
		pool: pool, trips: trips, clock: clk,
		client: scoringv1.NewScoringServiceClient(conn), sink: eventsv1.NewEventSinkServiceClient(conn),
		ctx:   grpctest.WithKey(context.Background(), acme),
		other: grpctest.WithKey(context.Background(), globex),
	}
}

// event builds an event of acme about lead, occurring now.
func (f *fixture) event(t *testing.T, lead string, payload proto.Message) *eventsv1.Event {
	t.Helper()
	p, err := anypb.New(payload)
	if err != nil {
		t.Fatal(err)
	}
	return &eventsv1.Event{
		Id: uuid.NewString(), Type: string(payload.ProtoReflect().Descriptor().FullName()), Workspace: "acme",
		Lead: lead, OccurTime: timestamppb.New(f.clock.Now()), Source: "ingestion", Payload: p,
	}
}

func (f *fixture) deliver(t *testing.T, ev *eventsv1.Event) *eventsv1.DeliverEventResponse {
	t.Helper()
	resp, err := f.sink.DeliverEvent(grpctest.WithKey(context.Background(), grpctest.InternalToken),
		&eventsv1.DeliverEventRequest{Event: ev})
	if err != nil {
		t.Fatalf("deliver %s: %v", ev.GetType(), err)
	}
	return resp
}

// activity delivers an ActivityRecorded of acme's lead, occurring now.
func (f *fixture) activity(t *testing.T, lead, id string, typ typesv1.ActivityType, url string) {
	t.Helper()
	f.deliver(t, f.event(t, lead, &eventsv1.ActivityRecorded{Activity: id, ActivityType: typ, Url: url,
		OccurTime: timestamppb.New(f.clock.Now())}))
}

func (f *fixture) score(t *testing.T, lead string) *scoringv1.LeadScore {
	t.Helper()
	resp, err := f.client.GetLeadScore(f.ctx, &scoringv1.GetLeadScoreRequest{Name: "leads/" + lead + "/score"})
	if err != nil {
		t.Fatalf("get score of %s: %v", lead, err)
	}
	checkExplanation(t, resp.GetScore())
	return resp.GetScore()
}

// publish creates a draft of m and makes it live; it returns the job.
func (f *fixture) publish(t *testing.T, id string, m *scoringv1.ScoringModel) *scoringv1.RescoreJob {
	t.Helper()
	created, err := f.client.CreateScoringModel(f.ctx, &scoringv1.CreateScoringModelRequest{ScoringModel: m, ScoringModelId: id})
	if err != nil {
		t.Fatalf("create model: %v", err)
	}
	pub, err := f.client.PublishScoringModel(f.ctx, &scoringv1.PublishScoringModelRequest{
		Name: created.GetScoringModel().GetName(), Etag: created.GetScoringModel().GetEtag()})
	if err != nil {
		t.Fatalf("publish model: %v", err)
	}
	// The background rescore must not race the test's own events (it would
	// score leads at whatever time the test's clock has moved to).
	return f.waitJob(t, pub.GetRescoreJob().GetName())
}

// waitJob polls a rescore job until it ends.
func (f *fixture) waitJob(t *testing.T, name string) *scoringv1.RescoreJob {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := f.client.GetRescoreJob(f.ctx, &scoringv1.GetRescoreJobRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		switch resp.GetRescoreJob().GetState() {
		case scoringv1.RescoreJob_STATE_SUCCEEDED, scoringv1.RescoreJob_STATE_FAILED, scoringv1.RescoreJob_STATE_CANCELLED:
			return resp.GetRescoreJob()
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %v", name, resp.GetRescoreJob().GetState())
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, as the model editor does
	}
}

// outboxEvents counts the events of a type waiting for lifecycle.
func (f *fixture) outboxEvents(t *testing.T, lead string, payload proto.Message) int {
	t.Helper()
	var n int
	err := f.pool.QueryRow(context.Background(), `
SELECT count(*) FROM outbox_events
 WHERE 'lifecycle' = ANY(subscribers) AND event_type = $1 AND workspace_id = 'acme' AND ($2 = '' OR lead_id = $2)`,
		string(payload.ProtoReflect().Descriptor().FullName()), lead).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func checkExplanation(t *testing.T, s *scoringv1.LeadScore) {
	t.Helper()
	var fit, eng, total int64
	for _, c := range s.GetContributions() {
		switch c.GetComponent() {
		case scoringv1.ScoreComponent_SCORE_COMPONENT_FIT:
			fit += c.GetMilliPoints()
		case scoringv1.ScoreComponent_SCORE_COMPONENT_ENGAGEMENT:
			eng += c.GetMilliPoints()
		}
		total += c.GetMilliPoints()
	}
	if fit != s.GetFitMilliPoints() || eng != s.GetEngagementMilliPoints() || total != s.GetTotalMilliPoints() {
		t.Fatalf("explanation sums to %d/%d/%d, score is %d/%d/%d", fit, eng, total,
			s.GetFitMilliPoints(), s.GetEngagementMilliPoints(), s.GetTotalMilliPoints())
	}
}

var (
	pageView  = typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW
	emailOpen = typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN
	demo      = typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST
)

func classicModel() *scoringv1.ScoringModel {
	return &scoringv1.ScoringModel{
		DisplayName: "classic",
		EngagementRules: []*scoringv1.EngagementRule{
			{Id: "pricing", Points: 10, Condition: `activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW && activity.url.matches("/pricing")`},
			{Id: "email-open", Points: 5, Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPEN`},
			{Id: "page", Points: 2, Condition: `activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW && !activity.url.matches("/pricing")`},
		},
		ExclusionRules: []*scoringv1.ExclusionRule{{Id: "careers", Condition: `activity.url.matches("/careers")`}},
		MqlThreshold:   50,
	}
}

func TestClassicExample(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "classic", classicModel())
	f.deliver(t, f.event(t, "l1", &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Industry: "software"}}))

	for _, step := range []struct {
		name      string
		id        string
		typ       typesv1.ActivityType
		url       string
		wantTotal int64
	}{
		{"pricing page +10", "a1", pageView, "https://acme.com/pricing", 10},
		{"email open +5", "a2", emailOpen, "", 15},
		{"careers page 0", "a3", pageView, "https://acme.com/careers/engineering", 15},
	} {
		t.Run(step.name, func(t *testing.T) {
			f.activity(t, "l1", step.id, step.typ, step.url)
			s := f.score(t, "l1")
			if s.GetTotalScore() != step.wantTotal || s.GetEngagementScore() != step.wantTotal {
				t.Fatalf("total = %d, engagement = %d, want %d", s.GetTotalScore(), s.GetEngagementScore(), step.wantTotal)
			}
		})
	}
	s := f.score(t, "l1")
	if s.GetScoringModel() != "scoringModels/classic" || s.GetModelVersion() != 2 || len(s.GetContributions()) != 2 {
		t.Fatalf("score = %v", s)
	}
	for _, c := range s.GetContributions() {
		if strings.HasSuffix(c.GetActivity(), "/a3") {
			t.Fatalf("the careers page contributes: %v", c)
		}
	}
}

func TestHalfLifeAppliesOnRead(t *testing.T) {
	f := newFixture(t)
	m := &scoringv1.ScoringModel{EngagementRules: []*scoringv1.EngagementRule{{
		Id: "open", Points: 10, Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPEN`,
		Decay: &scoringv1.Decay{Kind: &scoringv1.Decay_HalfLife{HalfLife: durationpb.New(30 * day)}},
	}}, MqlThreshold: 100}
	f.publish(t, "decaying", m)
	f.activity(t, "l1", "a1", emailOpen, "")
	if s := f.score(t, "l1"); s.GetEngagementMilliPoints() != 10000 {
		t.Fatalf("fresh: %d milli, want 10000", s.GetEngagementMilliPoints())
	}
	f.clock.Advance(30 * day)
	s := f.score(t, "l1")
	if s.GetEngagementMilliPoints() != 5000 || s.GetTotalScore() != 5 {
		t.Fatalf("after one half-life: %d milli (%d points), want 5000", s.GetEngagementMilliPoints(), s.GetTotalScore())
	}
	if c := s.GetContributions()[0]; c.GetDecayFactor() != 0.5 || c.GetBasePoints() != 10 {
		t.Fatalf("contribution = %v", c)
	}
	if !s.GetScoreTime().AsTime().Equal(f.clock.Now()) {
		t.Fatalf("score_time = %v, want now", s.GetScoreTime().AsTime())
	}
}

func TestDemoRequestQualifiesAtScoreZero(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "no-points", &scoringv1.ScoringModel{MqlThreshold: 50})
	ev := f.event(t, "l1", &eventsv1.ActivityRecorded{Activity: "d1", ActivityType: demo, OccurTime: timestamppb.New(f.clock.Now())})
	f.deliver(t, ev)
	if resp := f.deliver(t, ev); !resp.GetDuplicate() {
		t.Fatal("redelivery not reported as a duplicate")
	}
	f.activity(t, "l1", "d2", demo, "") // a second hand-raise

	s := f.score(t, "l1")
	q := s.GetQualification()
	if s.GetTotalScore() != 0 || q.GetReason() != scoringv1.QualificationReason_QUALIFICATION_REASON_HAND_RAISER ||
		q.GetActivity() != "leads/l1/activities/d1" || q.GetTotalScore() != 0 {
		t.Fatalf("score = %d, qualification = %v", s.GetTotalScore(), q)
	}
	if n := f.outboxEvents(t, "l1", &eventsv1.LeadQualified{}); n != 1 {
		t.Fatalf("%d LeadQualified events, want 1", n)
	}
}

func TestThresholdQualifiesOnceAndFallingBackIsRecorded(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "threshold", &scoringv1.ScoringModel{EngagementRules: []*scoringv1.EngagementRule{{
		Id: "open", Points: 30, Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPEN`,
		Decay: &scoringv1.Decay{Kind: &scoringv1.Decay_Window{Window: durationpb.New(7 * day)}},
	}}, MqlThreshold: 50})
	f.activity(t, "l1", "a1", emailOpen, "")
	if f.score(t, "l1").GetQualification() != nil {
		t.Fatal("qualified at 30 points")
	}
	f.activity(t, "l1", "a2", emailOpen, "")
	s := f.score(t, "l1")
	if s.GetTotalScore() != 60 || s.GetQualification().GetReason() != scoringv1.QualificationReason_QUALIFICATION_REASON_SCORE_THRESHOLD {
		t.Fatalf("score = %d, qualification = %v", s.GetTotalScore(), s.GetQualification())
	}
	// Both opens leave the window; a new one rescores the lead at 30.
	f.clock.Advance(8 * day)
	f.activity(t, "l1", "a3", emailOpen, "")
	s = f.score(t, "l1")
	if s.GetTotalScore() != 30 || s.GetQualification() == nil {
		t.Fatalf("after falling back: score = %d, qualification = %v", s.GetTotalScore(), s.GetQualification())
	}
	cs := s.GetThresholdCrossings()
	if len(cs) != 2 || cs[0].GetDirection() != scoringv1.ThresholdCrossing_DIRECTION_DOWN || cs[1].GetDirection() != scoringv1.ThresholdCrossing_DIRECTION_UP {
		t.Fatalf("crossings = %v", cs)
	}
	if n := f.outboxEvents(t, "l1", &eventsv1.LeadQualified{}); n != 1 {
		t.Fatalf("%d LeadQualified events, want 1", n)
	}
	if n := f.outboxEvents(t, "l1", &eventsv1.LeadScored{}); n != 3 {
		t.Fatalf("%d LeadScored events, want 3", n)
	}
}

func TestInvalidConditionRejectedWithPosition(t *testing.T) {
	f := newFixture(t)
	m := classicModel()
	m.EngagementRules[1].Condition = `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPN`
	_, err := f.client.CreateScoringModel(f.ctx, &scoringv1.CreateScoringModelRequest{ScoringModel: m})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v, want InvalidArgument", st.Code())
	}
	var got []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			got = append(got, br.GetFieldViolations()...)
		}
	}
	if len(got) != 1 || got[0].GetField() != "scoring_model.engagement_rules[1].condition" ||
		!strings.HasPrefix(got[0].GetDescription(), `rule "email-open": 1:`) {
		t.Fatalf("violations = %v", got)
	}
	// Nothing was stored.
	list, err := f.client.ListScoringModels(f.ctx, &scoringv1.ListScoringModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetScoringModels()) != 1 || list.GetScoringModels()[0].GetName() != "scoringModels/default" {
		t.Fatalf("models = %v", list.GetScoringModels())
	}
}

func TestDuplicatedActivityDoesNotDoublePoints(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "classic", classicModel())
	ev := f.event(t, "l1", &eventsv1.ActivityRecorded{Activity: "a1", ActivityType: emailOpen, OccurTime: timestamppb.New(f.clock.Now())})
	f.deliver(t, ev)
	for name, again := range map[string]*eventsv1.Event{
		"same event redelivered":         ev,
		"same activity in another event": proto.CloneOf(ev),
	} {
		t.Run(name, func(t *testing.T) {
			if again != ev {
				again.Id = uuid.NewString()
			}
			f.deliver(t, again)
			if s := f.score(t, "l1"); s.GetTotalScore() != 5 {
				t.Fatalf("total = %d, want 5", s.GetTotalScore())
			}
		})
	}
}

func TestPublishedModelRescoresExistingLeads(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "classic", classicModel())
	const leads = 450 // two rescore batches
	for i := range leads {
		lead := "lead-" + uuid.NewString()[:8]
		f.activity(t, lead, "open-"+lead, emailOpen, "")
		if i%3 == 0 {
			f.activity(t, lead, "pricing-"+lead, pageView, "https://acme.com/pricing")
		}
	}
	m := classicModel()
	m.EngagementRules[1].Points = 50 // email opens now qualify
	job := f.publish(t, "opens-matter", m)
	if job.GetTotalLeads() != leads || job.GetModelVersion() != 3 {
		t.Fatalf("job = %v", job)
	}
	job = f.waitJob(t, job.GetName())
	if job.GetState() != scoringv1.RescoreJob_STATE_SUCCEEDED || job.GetProcessedLeads() != leads ||
		job.GetChangedLeads() != leads || job.GetQualifiedLeads() != leads || job.GetFailedLeads() != 0 {
		t.Fatalf("job = %v", job)
	}
	list, err := f.client.ListLeadScores(f.ctx, &scoringv1.ListLeadScoresRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetScores()) != leads {
		t.Fatalf("%d scores listed, want %d", len(list.GetScores()), leads)
	}
	for _, s := range list.GetScores() {
		if s.GetModelVersion() != 3 || s.GetTotalScore() < 50 || s.GetQualification() == nil {
			t.Fatalf("not rescored: %v", s)
		}
	}
	if n := f.outboxEvents(t, "", &eventsv1.LeadQualified{}); n != leads {
		t.Fatalf("%d LeadQualified events, want %d", n, leads)
	}
	// The batch recorded the leads' upward crossings and new scores. The
	// highest-scored lead is one that also saw the pricing page.
	lead := strings.TrimSuffix(strings.TrimPrefix(list.GetScores()[0].GetName(), "leads/"), "/score")
	cs := f.score(t, lead).GetThresholdCrossings()
	if len(cs) != 1 || cs[0].GetDirection() != scoringv1.ThresholdCrossing_DIRECTION_UP || cs[0].GetModelVersion() != 3 {
		t.Fatalf("crossings of %s = %v", lead, cs)
	}
	if n := f.outboxEvents(t, lead, &eventsv1.LeadScored{}); n != 3 { // its two activities, then the rescore
		t.Fatalf("%d LeadScored events about %s, want 3", n, lead)
	}
}

func TestModelLifecycle(t *testing.T) {
	f := newFixture(t)
	created, err := f.client.CreateScoringModel(f.ctx, &scoringv1.CreateScoringModelRequest{
		ScoringModel: classicModel(), ScoringModelId: "v2", RequestId: "req-1"})
	if err != nil {
		t.Fatal(err)
	}
	draft := created.GetScoringModel()
	if draft.GetState() != scoringv1.ScoringModel_STATE_DRAFT || len(draft.GetGradeBands()) != 4 || len(draft.GetHandRaiserActivityTypes()) != 2 {
		t.Fatalf("draft = %v", draft)
	}
	again, err := f.client.CreateScoringModel(f.ctx, &scoringv1.CreateScoringModelRequest{
		ScoringModel: classicModel(), ScoringModelId: "v2", RequestId: "req-1"})
	if err != nil || again.GetScoringModel().GetEtag() != draft.GetEtag() {
		t.Fatalf("retry: %v, %v", again, err)
	}

	upd, err := f.client.UpdateScoringModel(f.ctx, &scoringv1.UpdateScoringModelRequest{
		ScoringModel: &scoringv1.ScoringModel{Name: draft.GetName(), Etag: draft.GetEtag(), MqlThreshold: 70},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"mql_threshold"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetScoringModel().GetMqlThreshold() != 70 || len(upd.GetScoringModel().GetEngagementRules()) != 3 {
		t.Fatalf("updated = %v", upd.GetScoringModel())
	}
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"stale etag", func() error {
			_, err := f.client.PublishScoringModel(f.ctx, &scoringv1.PublishScoringModelRequest{Name: draft.GetName(), Etag: draft.GetEtag()})
			return err
		}, codes.Aborted},
		{"other workspace cannot see it", func() error {
			_, err := f.client.GetScoringModel(f.other, &scoringv1.GetScoringModelRequest{Name: draft.GetName()})
			return err
		}, codes.NotFound},
		{"publish", func() error {
			_, err := f.client.PublishScoringModel(f.ctx, &scoringv1.PublishScoringModelRequest{Name: draft.GetName(), Etag: upd.GetScoringModel().GetEtag()})
			return err
		}, codes.OK},
		{"published is immutable", func() error {
			_, err := f.client.UpdateScoringModel(f.ctx, &scoringv1.UpdateScoringModelRequest{ScoringModel: &scoringv1.ScoringModel{Name: draft.GetName()}})
			return err
		}, codes.FailedPrecondition},
		{"superseded default cannot be published again", func() error {
			_, err := f.client.PublishScoringModel(f.ctx, &scoringv1.PublishScoringModelRequest{Name: "scoringModels/default", Etag: "x"})
			return err
		}, codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.want {
				t.Fatalf("code = %v, want %v", got, tc.want)
			}
		})
	}
	def, err := f.client.GetScoringModel(f.ctx, &scoringv1.GetScoringModelRequest{Name: "scoringModels/default"})
	if err != nil {
		t.Fatal(err)
	}
	if def.GetScoringModel().GetState() != scoringv1.ScoringModel_STATE_SUPERSEDED || def.GetScoringModel().GetVersion() != 1 {
		t.Fatalf("default = %v", def.GetScoringModel())
	}
	live, err := f.client.ListScoringModels(f.ctx, &scoringv1.ListScoringModelsRequest{State: scoringv1.ScoringModel_STATE_PUBLISHED})
	if err != nil {
		t.Fatal(err)
	}
	if len(live.GetScoringModels()) != 1 || live.GetScoringModels()[0].GetVersion() != 2 {
		t.Fatalf("live = %v", live.GetScoringModels())
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	f := newFixture(t)
	f.activity(t, "l1", "a1", emailOpen, "")
	f.score(t, "l1")
	_, err := f.client.GetLeadScore(f.other, &scoringv1.GetLeadScoreRequest{Name: "leads/l1/score"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("other workspace: code = %v, want NotFound", status.Code(err))
	}
	_, err = f.sink.DeliverEvent(f.ctx, &eventsv1.DeliverEventRequest{Event: f.event(t, "l1", &eventsv1.LeadErased{})})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("api key delivering events: code = %v, want PermissionDenied", status.Code(err))
	}
}

func TestEraseAndMerge(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "classic", classicModel())
	f.activity(t, "loser", "a1", emailOpen, "")
	f.activity(t, "survivor", "a2", emailOpen, "")
	f.deliver(t, f.event(t, "loser", &eventsv1.LeadMerged{SurvivorLead: "survivor"}))
	if s := f.score(t, "survivor"); s.GetTotalScore() != 10 {
		t.Fatalf("survivor total = %d, want 10", s.GetTotalScore())
	}
	// A late activity of the loser lands on the survivor.
	f.activity(t, "loser", "a3", emailOpen, "")
	if s := f.score(t, "survivor"); s.GetTotalScore() != 15 {
		t.Fatalf("survivor total = %d, want 15", s.GetTotalScore())
	}
	f.deliver(t, f.event(t, "survivor", &eventsv1.LeadErased{}))
	f.activity(t, "survivor", "a4", emailOpen, "")
	for _, lead := range []string{"loser", "survivor"} {
		_, err := f.client.GetLeadScore(f.ctx, &scoringv1.GetLeadScoreRequest{Name: "leads/" + lead + "/score"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("%s: code = %v, want NotFound", lead, status.Code(err))
		}
	}
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM activities`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d activities left (%v)", n, err)
	}
}

func TestBacktestOnHandBuiltHistory(t *testing.T) {
	f := newFixture(t)
	created, err := f.client.CreateScoringModel(f.ctx, &scoringv1.CreateScoringModelRequest{ScoringModel: &scoringv1.ScoringModel{
		FitRules: []*scoringv1.FitRule{{Id: "software", Points: 40, Condition: `lead.industry == "software"`}},
		EngagementRules: []*scoringv1.EngagementRule{{Id: "pricing", Points: 30,
			Condition: `activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW && activity.url.endsWith("/pricing")`}},
		MqlThreshold: 50,
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := f.clock.Now()
	history := []struct {
		lead     string
		industry string
		pricing  bool
		won      bool
	}{
		{"l1", "software", true, true},   // 70
		{"l2", "software", false, true},  // 40
		{"l3", "software", true, false},  // 70
		{"l4", "retail", true, false},    // 30
		{"l5", "retail", false, false},   // 0
		{"l6", "software", false, false}, // 40: its pricing view comes after the outcome
	}
	for _, h := range history {
		f.deliver(t, f.event(t, h.lead, &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Industry: h.industry}}))
		if h.pricing {
			f.activity(t, h.lead, "p-"+h.lead, pageView, "https://acme.com/pricing")
		}
	}
	f.clock.Advance(day)
	for _, h := range history {
		stage := typesv1.Stage_STAGE_LOST
		if h.won {
			stage = typesv1.Stage_STAGE_WON
		}
		f.deliver(t, f.event(t, h.lead, &eventsv1.StageChanged{FromStage: typesv1.Stage_STAGE_OPPORTUNITY, ToStage: stage}))
	}
	f.clock.Advance(time.Hour)
	f.activity(t, "l6", "p-l6", pageView, "https://acme.com/pricing")
	// Outside the range tested.
	f.clock.Advance(2 * day)
	f.deliver(t, f.event(t, "l7", &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Industry: "software"}}))
	f.deliver(t, f.event(t, "l7", &eventsv1.StageChanged{ToStage: typesv1.Stage_STAGE_WON}))

	resp, err := f.client.BacktestScoringModel(f.ctx, &scoringv1.BacktestScoringModelRequest{
		Name:                   created.GetScoringModel().GetName(),
		OutcomeStartTime:       timestamppb.New(start.Add(12 * time.Hour)),
		OutcomeEndTime:         timestamppb.New(start.Add(2 * day)),
		MinLeadsAboveThreshold: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &scoringv1.Backtest{
		ScoringModel: created.GetScoringModel().GetName(),
		LeadCount:    6, WonCount: 2, LostCount: 4, WinRate: 2.0 / 6,
		Bands: []*scoringv1.BacktestBand{
			{MinScore: 0, MaxScore: 10, LeadCount: 1},
			{MinScore: 30, MaxScore: 40, LeadCount: 1},
			{MinScore: 40, MaxScore: 50, LeadCount: 2, WonCount: 1, WinRate: 0.5},
			{MinScore: 70, MaxScore: 80, LeadCount: 2, WonCount: 1, WinRate: 0.5},
		},
		Grades: []*scoringv1.BacktestGrade{
			{Grade: "C", LeadCount: 4, WonCount: 2, WinRate: 0.5},
			{Grade: "D", LeadCount: 2},
		},
		// 40 and 70 both lift the win rate to 0.5 (x1.5); the lower one
		// qualifies more leads.
		SuggestedThreshold: &scoringv1.ThresholdSuggestion{MqlThreshold: 40, LeadsAbove: 4, WinRateAbove: 0.5, Lift: 1.5},
	}
	got := resp.GetBacktest()
	got.CreateTime = nil
	if diff := cmp.Diff(want, got, protocmp.Transform(), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Fatalf("backtest (-want +got):\n%s", diff)
	}
}

// TestBatchOfEventsAboutTheSameLeads delivers in one call, as the relay
// does, events that build on each other: each handler must see what the
// ones before it did in the same transaction.
func TestBatchOfEventsAboutTheSameLeads(t *testing.T) {
	f := newFixture(t)
	demo := typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST
	captured := &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Industry: "software", Title: "VP Marketing"}}
	activity := func(id string, typ typesv1.ActivityType) *eventsv1.ActivityRecorded {
		return &eventsv1.ActivityRecorded{Activity: id, ActivityType: typ, OccurTime: timestamppb.New(f.clock.Now())}
	}
	evs := []*eventsv1.Event{
		f.event(t, "l1", captured),
		f.event(t, "l1", activity("a1", demo)),
		f.event(t, "l1", activity("a1", demo)), // the same activity again, in another event
		f.event(t, "l2", activity("a2", emailOpen)),
		f.event(t, "l2", &eventsv1.LeadMerged{SurvivorLead: "l1"}),
		f.event(t, "l2", activity("a3", emailOpen)), // lands on l1
		f.event(t, "l3", captured),
		f.event(t, "l3", &eventsv1.LeadErased{}),
		f.event(t, "l3", activity("a4", demo)), // dropped
	}
	resp, err := f.sink.DeliverEvents(grpctest.WithKey(context.Background(), grpctest.InternalToken),
		&eventsv1.DeliverEventsRequest{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(resp.GetDuplicate(), true) {
		t.Fatalf("duplicates = %v, want none", resp.GetDuplicate())
	}
	// Industry 15 + VP 15 + demo request 30 + two email opens 2 each.
	if s := f.score(t, "l1"); s.GetFitScore() != 30 || s.GetTotalScore() != 64 {
		t.Fatalf("l1 fit %d total %d, want 30 and 64", s.GetFitScore(), s.GetTotalScore())
	}
	if n := f.outboxEvents(t, "l1", &eventsv1.LeadQualified{}); n != 1 {
		t.Fatalf("l1 qualified %d times, want once", n)
	}
	for _, lead := range []string{"l2", "l3"} {
		_, err := f.client.GetLeadScore(f.ctx, &scoringv1.GetLeadScoreRequest{Name: "leads/" + lead + "/score"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("%s: code = %v, want NotFound", lead, status.Code(err))
		}
	}
	var acts []string
	rows, err := f.pool.Query(context.Background(), `SELECT lead_id || '/' || id FROM activities ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if acts, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if want := []string{"l1/a1", "l1/a2", "l1/a3"}; !slices.Equal(acts, want) {
		t.Fatalf("activities = %v, want %v", acts, want)
	}
}
