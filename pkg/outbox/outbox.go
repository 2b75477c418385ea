// Package outbox delivers cross-service events at least once: the
// transactional outbox on the producing side and its inbox on the receiving
// side.
//
// A producer calls Publisher.Publish inside the transaction that makes a
// change, so the change and its events commit or vanish together; each event
// is one row naming the subscribers its type is routed to. A Relay in the
// same service then hands the event to each of them (another service's
// EventSinkService), retrying with backoff those that have not accepted it
// yet; a subscriber that refuses it for good is parked on a row of its own.
// A pass hands each subscriber all its due events in one call when its sink
// takes batches (GRPCSink does: EventSinkService.DeliverEvents), and one by
// one when that call fails (each lead's in order). Passes run side by side
// in lanes, each lane taking the events of its own share of leads, so a
// relay never holds one lead's events in two passes at once.
// The relay wakes up on LISTEN/NOTIFY the moment a transaction commits, and
// several replicas share the work through FOR UPDATE SKIP LOCKED.
//
// Receivers wrap their handling in Receive (ReceiveAll for a batch), which
// records the event id in the inbox in the same transaction, so a redelivery
// is a harmless no-op. SinkServer does that for a map of handlers.
//
// Delivery is at least once and not ordered: a retried event can arrive after
// a later one. Receivers must accept events in any order.
//
// The outbox and inbox tables live in the service's own schema; apply
// Migrations alongside the service's migrations.
package outbox

import (
	"context"
	"embed"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/postgres"
)

// Migrations are the outbox and inbox tables, a migration set of its own;
// pkg/migrate finds the files under migrations/.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Routes says which subscribers receive each event type, keyed by the
// payload's full message name ("leadflow.events.v1.LeadCaptured").
type Routes map[string][]string

// Route is a convenience to build Routes from payload prototypes.
func Route(payload proto.Message, subscribers ...string) (string, []string) {
	return string(payload.ProtoReflect().Descriptor().FullName()), subscribers
}

// Publisher writes events into the outbox of one service.
type Publisher struct {
	source  string
	channel string
	routes  Routes
	now     func() *timestamppb.Timestamp
}

// NewPublisher returns a publisher for the service named source whose tables
// live in schema.
func NewPublisher(source, schema string, routes Routes) *Publisher {
	return &Publisher{source: source, channel: Channel(schema), routes: routes, now: timestamppb.Now}
}

// Channel is the NOTIFY channel the relay of schema listens on.
func Channel(schema string) string { return "outbox_" + schema }

// Publish records an event about lead in tx, for every subscriber routed to
// the payload's type, and returns it. The trace context of ctx travels with
// the event. A payload nobody subscribes to is recorded nowhere.
func (p *Publisher) Publish(ctx context.Context, tx pgx.Tx, workspace, lead string, payload proto.Message) (*eventsv1.Event, error) {
	evs, err := p.PublishAll(ctx, tx, []Message{{Workspace: workspace, Lead: lead, Payload: payload}})
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// Message is one event for PublishAll.
type Message struct {
	Workspace string
	Lead      string
	Payload   proto.Message
}

// outboxColumns are the columns PublishAll COPYs, in its rows' order.
var outboxColumns = []string{"event_id", "workspace_id", "subscribers", "event_type", "event", "lead_id"}

// PublishAll is Publish for many events, written with postgres.Insert: a
// few in one round trip with the NOTIFY, many as one COPY (a bulk load) and
// the NOTIFY, so bulk writers (imports) do not pay a round trip per event.
// It returns the events in the order of msgs.
func (p *Publisher) PublishAll(ctx context.Context, tx pgx.Tx, msgs []Message) ([]*eventsv1.Event, error) {
	b := &pgx.Batch{}
	evs, err := p.Queue(ctx, tx, b, msgs)
	if err != nil {
		return nil, err
	}
	if err := postgres.SendBatch(ctx, tx, b); err != nil {
		return nil, fmt.Errorf("insert outbox events: %w", err)
	}
	return evs, nil
}

// Queue is PublishAll for a caller that has statements of its own to send:
// the events' rows and NOTIFY are queued on b, to go in the same round trip
// when the caller sends b in tx, unless they are many, when their COPY runs
// at once. Either way they commit or vanish with tx.
func (p *Publisher) Queue(ctx context.Context, tx pgx.Tx, b *pgx.Batch, msgs []Message) ([]*eventsv1.Event, error) {
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	now := p.now()
	evs := make([]*eventsv1.Event, len(msgs))
	// One row per event, naming its subscribers; the relay fans it out.
	// Event ids go as 16-byte values, which pgx encodes in binary.
	rows := make([][]any, 0, len(msgs))
	for i, m := range msgs {
		typ := string(m.Payload.ProtoReflect().Descriptor().FullName())
		anyPayload, err := anypb.New(m.Payload)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", typ, err)
		}
		id := uuid.New()
		ev := &eventsv1.Event{
			Id:          id.String(),
			Type:        typ,
			Workspace:   m.Workspace,
			Lead:        m.Lead,
			OccurTime:   now,
			Source:      p.source,
			Traceparent: carrier.Get("traceparent"),
			Tracestate:  carrier.Get("tracestate"),
			Payload:     anyPayload,
		}
		evs[i] = ev
		subs := p.routes[typ]
		if len(subs) == 0 {
			continue
		}
		raw, err := proto.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", typ, err)
		}
		var lead *string
		if m.Lead != "" {
			lead = &m.Lead
		}
		rows = append(rows, []any{[16]byte(id), m.Workspace, subs, typ, raw, lead})
	}
	if len(rows) == 0 {
		return evs, nil
	}
	if err := postgres.Insert(ctx, tx, b, "outbox", outboxColumns, rows); err != nil {
		return nil, fmt.Errorf("insert outbox events: %w", err)
	}
	// NOTIFY is transactional: the relay wakes when this commits, not before.
	b.Queue(`SELECT pg_notify($1, '')`, p.channel)
	return evs, nil
}

// Forget deletes the undelivered events about leads in tx, including parked
// ones, and returns how many deliveries (event and subscriber) it dropped.
// Erasure calls it before publishing LeadErased in the same transaction:
// the erasure supersedes those events, and they may carry personal data
// (page URLs, custom attributes) that must not outlive it. Receivers must therefore accept a
// LeadErased about a lead they never heard of.
func Forget(ctx context.Context, tx pgx.Tx, workspace string, leads ...string) (int64, error) {
	const q = `
WITH dropped AS (DELETE FROM outbox WHERE workspace_id = $1 AND lead_id = ANY($2) RETURNING subscribers)
SELECT coalesce(sum(cardinality(subscribers)), 0) FROM dropped`
	var n int64
	if err := tx.QueryRow(ctx, q, workspace, leads).Scan(&n); err != nil {
		return 0, fmt.Errorf("forget outbox events: %w", err)
	}
	return n, nil
}
