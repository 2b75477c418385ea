package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/handoff/internal/app"
	"github.com/leadflow/leadflow/services/handoff/internal/server"
	"github.com/leadflow/leadflow/services/handoff/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is a hand-driven clock: tests advance it and never sleep.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	t      *testing.T
	pool   *pgxpool.Pool
	trips  *pgtest.RoundTrips // of pool
	clock  *clock
	app    *app.App
	client handoffv1.HandoffServiceClient
	sink   eventsv1.EventSinkServiceClient
	// ctx speaks for workspace "acme", other for "globex", internal for a
	// Leadflow service.
	ctx, other, internal context.Context
}

// newFixture lets webhooks reach private networks, as the test receivers
// listen on loopback.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, app.Options{WebhookAllowPrivateNetworks: true})
}

// newFixtureWith builds the app with opts and the fixture's clock.
func newFixtureWith(t *testing.T, opts app.Options) *fixture {
	t.Helper()
	trips := &pgtest.RoundTrips{}
	pool := pgtest.NewCountingPool(t, trips, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	// A Monday morning, so working-hours tests start inside the window.
	clk := &clock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	opts.Clock = clk.Now
	a := app.New(pool, opts)
	keyA, keyB := grpctest.NewKey(t), grpctest.NewKey(t)
	conn := grpctest.Serve(t, grpctest.Options{
		Policy: server.Policy,
		Authn: grpctest.Keys{
			keyA: {Workspace: "acme", KeyID: "a", Scopes: []string{auth.ScopeHandoffRead, auth.ScopeHandoffWrite}},
			keyB: {Workspace: "globex", KeyID: "b", Scopes: []string{auth.ScopeAdmin}},
		},
		Register: func(s *grpcserver.Server) { a.Register(s) },
	})
	return &fixture{
		t: t, pool: pool, trips: trips, clock: clk, app: a,
		client:   handoffv1.NewHandoffServiceClient(conn),
		sink:     eventsv1.NewEventSinkServiceClient(conn),
		ctx:      grpctest.WithKey(context.Background(), keyA),
		other:    grpctest.WithKey(context.Background(), keyB),
		internal: grpctest.WithKey(context.Background(), grpctest.InternalToken),
	}
}

func (f *fixture) team(id string, strategy handoffv1.AssignmentStrategy, manager string) *handoffv1.Team {
	f.t.Helper()
	resp, err := f.client.CreateTeam(f.ctx, &handoffv1.CreateTeamRequest{
		TeamId: id, Team: &handoffv1.Team{DisplayName: id, AssignmentStrategy: strategy, Manager: manager},
	})
	if err != nil {
		f.t.Fatalf("create team %s: %v", id, err)
	}
	return resp.GetTeam()
}

func (f *fixture) owner(id string, o *handoffv1.Owner) *handoffv1.Owner {
	f.t.Helper()
	resp, err := f.client.CreateOwner(f.ctx, &handoffv1.CreateOwnerRequest{OwnerId: id, Owner: o})
	if err != nil {
		f.t.Fatalf("create owner %s: %v", id, err)
	}
	return resp.GetOwner()
}

func (f *fixture) policy(fallback string, rules ...*handoffv1.RoutingRule) *handoffv1.RoutingPolicy {
	f.t.Helper()
	cur, err := f.client.GetRoutingPolicy(f.ctx, &handoffv1.GetRoutingPolicyRequest{Name: "routingPolicy"})
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := f.client.UpdateRoutingPolicy(f.ctx, &handoffv1.UpdateRoutingPolicyRequest{
		RoutingPolicy: &handoffv1.RoutingPolicy{Name: "routingPolicy", Rules: rules, FallbackTeam: fallback,
			Etag: cur.GetRoutingPolicy().GetEtag()},
	})
	if err != nil {
		f.t.Fatalf("update policy: %v", err)
	}
	return resp.GetRoutingPolicy()
}

func (f *fixture) sla(s *handoffv1.SlaSettings, paths ...string) {
	f.t.Helper()
	s.Name = "slaSettings"
	if _, err := f.client.UpdateSlaSettings(f.ctx, &handoffv1.UpdateSlaSettingsRequest{
		SlaSettings: s, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	}); err != nil {
		f.t.Fatalf("update sla: %v", err)
	}
}

// event builds an event of workspace about lead, occurring now.
func (f *fixture) event(workspace, lead string, payload proto.Message) *eventsv1.Event {
	f.t.Helper()
	a, err := anypb.New(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	return &eventsv1.Event{
		Id: uuid.NewString(), Type: string(payload.ProtoReflect().Descriptor().FullName()),
		Workspace: workspace, Lead: lead, OccurTime: timestamppb.New(f.clock.Now()), Source: "test", Payload: a,
	}
}

// deliver sends ev through the event sink, as another service's relay does.
func (f *fixture) deliver(ev *eventsv1.Event) *eventsv1.DeliverEventResponse {
	f.t.Helper()
	resp, err := f.sink.DeliverEvent(f.internal, &eventsv1.DeliverEventRequest{Event: ev})
	if err != nil {
		f.t.Fatalf("deliver %s: %v", ev.GetType(), err)
	}
	return resp
}

// deliverAll hands evs to the sink in one DeliverEvents call, as a relay
// does with a batch.
func (f *fixture) deliverAll(evs ...*eventsv1.Event) {
	f.t.Helper()
	if _, err := f.sink.DeliverEvents(f.internal, &eventsv1.DeliverEventsRequest{Events: evs}); err != nil {
		f.t.Fatalf("deliver %d events: %v", len(evs), err)
	}
}

// qualify feeds a lead's attributes, score and MQL transition, and returns
// its handoff.
func (f *fixture) qualify(lead string, attrs *eventsv1.LeadAttributes) *handoffv1.Handoff {
	f.t.Helper()
	f.deliver(f.event("acme", lead, &eventsv1.LeadCaptured{Attributes: attrs}))
	f.deliver(f.event("acme", lead, &eventsv1.LeadScored{FitScore: 40, EngagementScore: 30, TotalScore: 70, Grade: "B"}))
	f.deliver(f.event("acme", lead, mql()))
	resp, err := f.client.GetLeadHandoff(f.ctx, &handoffv1.GetLeadHandoffRequest{Lead: "leads/" + lead})
	if err != nil {
		f.t.Fatalf("lead %s handoff: %v", lead, err)
	}
	return resp.GetHandoff()
}

func mql() *eventsv1.StageChanged {
	return &eventsv1.StageChanged{
		FromStage: typesv1.Stage_STAGE_INQUIRY, ToStage: typesv1.Stage_STAGE_MQL,
		Reason: "score threshold", Temperature: typesv1.Temperature_TEMPERATURE_HOT,
	}
}

// outboxEvents returns the events of type typ (all when nil) waiting in
// the outbox for subscriber, oldest first.
func (f *fixture) outboxEvents(subscriber string, typ proto.Message) []*eventsv1.Event {
	f.t.Helper()
	var name string
	if typ != nil {
		name = string(typ.ProtoReflect().Descriptor().FullName())
	}
	rows, err := f.pool.Query(context.Background(), `
SELECT event FROM outbox_events WHERE $1 = ANY(subscribers) AND ($2 = '' OR event_type = $2) ORDER BY id, position`, subscriber, name)
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*eventsv1.Event
	for _, b := range raw {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(b, ev); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// fire runs one pass of the SLA timers of a.
func (f *fixture) fire(a *app.App) int {
	f.t.Helper()
	n, err := a.Service.FireDueTimers(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) handoff(name string) *handoffv1.Handoff {
	f.t.Helper()
	resp, err := f.client.GetHandoff(f.ctx, &handoffv1.GetHandoffRequest{Name: name})
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.GetHandoff()
}
