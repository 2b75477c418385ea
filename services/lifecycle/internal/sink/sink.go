// Package sink applies the events lifecycle receives: captures and
// activities from ingestion, scores and qualifications from scoring,
// acceptances and rejections from handoff, and erasures and merges.
//
// Each handler runs inside the transaction that records the event in the
// inbox (pkg/outbox), so a redelivered event changes nothing.
package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
	"github.com/leadflow/leadflow/services/lifecycle/internal/store"
)

// NewServer returns lifecycle's event sink: Handlers, with the events of
// one delivery handled together (Scope).
func NewServer(pool *pgxpool.Pool, svc *lifecycle.Service, st *store.Store) *outbox.SinkServer {
	return outbox.NewSinkServer(pool, Handlers(svc, st)).WithBatchScope(Scope(st))
}

// Handlers returns the event handlers for outbox.NewSinkServer.
func Handlers(svc *lifecycle.Service, st *store.Store) map[string]outbox.Handler {
	h := handlers{svc: svc, store: st}
	m := map[string]outbox.Handler{}
	for _, kv := range []struct {
		payload proto.Message
		handle  outbox.Handler
	}{
		{&eventsv1.LeadCaptured{}, h.captured},
		{&eventsv1.ActivityRecorded{}, h.activity},
		{&eventsv1.LeadScored{}, h.scored},
		{&eventsv1.LeadQualified{}, h.qualified},
		{&eventsv1.HandoffAssigned{}, h.assigned},
		{&eventsv1.HandoffAccepted{}, h.accepted},
		{&eventsv1.HandoffRejected{}, h.rejected},
		{&eventsv1.LeadErased{}, h.erased},
		{&eventsv1.LeadMerged{}, h.merged},
	} {
		k, fn := outbox.On(kv.payload, kv.handle)
		m[k] = fn
	}
	return m
}

// inUnit are the event types whose handlers only move a lead along its
// lifecycle or add to its journey, through the store's UpdateFollowing and
// RecordStepFollowing, and so can share a store unit. Erasures and merges
// rewrite a lead's history and go one by one.
var inUnit = map[string]bool{}

func init() {
	for _, p := range []proto.Message{
		&eventsv1.LeadCaptured{}, &eventsv1.ActivityRecorded{}, &eventsv1.LeadScored{}, &eventsv1.LeadQualified{},
		&eventsv1.HandoffAssigned{}, &eventsv1.HandoffAccepted{}, &eventsv1.HandoffRejected{},
	} {
		inUnit[string(p.ProtoReflect().Descriptor().FullName())] = true
	}
}

// Scope is the sink's outbox.BatchScope: when every event of a delivery
// can share a store unit, their leads are locked and read in one round trip
// and their writes sent in one more (store.BeginUnit).
func Scope(st *store.Store) outbox.BatchScope {
	return func(ctx context.Context, tx pgx.Tx, evs []*eventsv1.Event) (context.Context, func(context.Context) error, error) {
		leads := make([]postgres.Key, 0, len(evs))
		for _, ev := range evs {
			if !inUnit[ev.GetType()] || ev.GetLead() == "" {
				return ctx, nil, nil
			}
			leads = append(leads, postgres.Key{Workspace: ev.GetWorkspace(), ID: ev.GetLead()})
		}
		return st.WithTx(tx).BeginUnit(ctx, leads)
	}
}

type handlers struct {
	svc   *lifecycle.Service
	store *store.Store
}

var errNoLead = apperr.InvalidArgument("invalid event", apperr.Field("event.lead", "is required"))

// in returns the service bound to the receiving transaction.
func (h handlers) in(tx pgx.Tx) *lifecycle.Service { return h.svc.WithStore(h.store.WithTx(tx)) }

// apply runs a domain event built from ev.
func (h handlers) apply(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, e lifecycle.Event) error {
	if ev.GetLead() == "" {
		return errNoLead
	}
	e.Workspace, e.Lead = ev.GetWorkspace(), ev.GetLead()
	if ev.GetOccurTime() != nil {
		e.OccurTime = ev.GetOccurTime().AsTime()
	}
	e.Cause = lifecycle.Cause{
		Actor:   lifecycle.Actor{Kind: lifecycle.ActorService, ID: ev.GetSource()},
		Trigger: ev.GetType(),
		EventID: ev.GetId(),
		TraceID: traceID(ctx, ev),
	}
	_, err := h.in(tx).HandleEvent(ctx, e)
	return err
}

// traceID is the trace of the delivery (which continues the producer's), or
// else the one the event carries.
func traceID(ctx context.Context, ev *eventsv1.Event) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		carrier := propagation.MapCarrier{"traceparent": ev.GetTraceparent()}
		sc = trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	}
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

func (h handlers) captured(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	attrs := payload.(*eventsv1.LeadCaptured).GetAttributes()
	desc := "captured"
	if attrs.GetSource() != "" {
		desc += " from " + attrs.GetSource()
	}
	return h.apply(ctx, tx, ev, lifecycle.Event{
		Kind: lifecycle.EventCaptured, Source: attrs.GetSource(), Campaign: attrs.GetCampaign(),
		Journey: step(ctx, ev, lifecycle.StepCaptured, desc),
	})
}

// step is a key event of the lead's journey, with the trace behind it.
// HandleEvent records it on the lead the event applies to: events about a
// merged-away lead land on its survivor; an erased lead gets none.
func step(ctx context.Context, ev *eventsv1.Event, kind lifecycle.StepKind, desc string) *lifecycle.JourneyStep {
	at := time.Now()
	if ev.GetOccurTime() != nil {
		at = ev.GetOccurTime().AsTime()
	}
	return &lifecycle.JourneyStep{
		Kind: kind, Time: at, Description: desc, Source: ev.GetSource(),
		Traceparent: ev.GetTraceparent(), TraceID: traceID(ctx, ev),
	}
}

func (h handlers) assigned(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	if ev.GetLead() == "" {
		return errNoLead
	}
	p := payload.(*eventsv1.HandoffAssigned)
	desc := "assigned to " + p.GetOwner()
	if p.GetRule() != "" {
		desc += " by rule " + p.GetRule()
	}
	// An assignment changes no lifecycle: only its step is recorded, on the
	// lead that stands for ev's now.
	return h.store.WithTx(tx).RecordStepFollowing(ctx, ev.GetWorkspace(), ev.GetLead(), *step(ctx, ev, lifecycle.StepAssigned, desc))
}

func (h handlers) activity(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	e := lifecycle.Event{Kind: lifecycle.EventActivity}
	if at := payload.(*eventsv1.ActivityRecorded).GetOccurTime(); at != nil {
		// The activity's own time, not when ingestion recorded it.
		ev = proto.CloneOf(ev)
		ev.OccurTime = at
	}
	return h.apply(ctx, tx, ev, e)
}

func (h handlers) scored(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	p := payload.(*eventsv1.LeadScored)
	return h.apply(ctx, tx, ev, lifecycle.Event{Kind: lifecycle.EventScored, Score: p.GetTotalScore(), HasScore: true})
}

func (h handlers) qualified(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	p := payload.(*eventsv1.LeadQualified)
	desc := fmt.Sprintf("qualified: score %d", p.GetTotalScore())
	if p.GetReason() == eventsv1.LeadQualified_REASON_HAND_RAISER {
		desc = "qualified: hand-raiser"
	}
	return h.apply(ctx, tx, ev, lifecycle.Event{
		Kind: lifecycle.EventQualified, Score: p.GetTotalScore(), HasScore: true,
		Journey: step(ctx, ev, lifecycle.StepQualified, desc),
	})
}

func (h handlers) accepted(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	owner := payload.(*eventsv1.HandoffAccepted).GetOwner()
	return h.apply(ctx, tx, ev, lifecycle.Event{
		Kind: lifecycle.EventAccepted, Journey: step(ctx, ev, lifecycle.StepAccepted, "accepted by "+owner),
	})
}

func (h handlers) rejected(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	reason := payload.(*eventsv1.HandoffRejected).GetReason()
	return h.apply(ctx, tx, ev, lifecycle.Event{
		Kind: lifecycle.EventRejected, Reason: reason, Journey: step(ctx, ev, lifecycle.StepRejected, "rejected: "+reason),
	})
}

func (h handlers) erased(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, _ proto.Message) error {
	if ev.GetLead() == "" {
		return errNoLead
	}
	return h.in(tx).Erase(ctx, ev.GetWorkspace(), ev.GetLead())
}

func (h handlers) merged(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
	survivor := payload.(*eventsv1.LeadMerged).GetSurvivorLead()
	if ev.GetLead() == "" || survivor == "" {
		return apperr.InvalidArgument("invalid event", apperr.Field("event", "lead and payload.survivor_lead are required"))
	}
	return h.in(tx).Merge(ctx, ev.GetWorkspace(), ev.GetLead(), survivor)
}
