// Package outbox delivers cross-service events at least once: the
// transactional outbox on the producing side and its inbox on the receiving
// side.
//
// A producer calls Publisher.Publish inside the transaction that makes a
// change, so the change and its events commit or vanish together; each event
// is one row naming the subscribers its type is routed to. Many events
// published at once (an import's) share rows instead, in bundles of one
// workspace, type and shard; the outbox_events view lists every waiting
// event either way. A Relay in the
// same service then hands the event to each of them (another service's
// EventSinkService), retrying with backoff those that have not accepted it
// yet; a subscriber that refuses it for good is parked on a row of its own.
// A pass hands each subscriber all its due events in one call when its sink
// takes batches (GRPCSink does: EventSinkService.DeliverEvents), and one by
// one when that call fails (each lead's in order). Passes run side by side
// in lanes, each lane taking the rows of its own shards, and a lead's
// events, bundled or not, are all of one shard: a relay never holds one
// lead's events in two passes at once.
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
	"hash/fnv"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
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

// outboxColumns are the columns of an event's own row, in Queue's order.
var outboxColumns = []string{"event_id", "workspace_id", "subscribers", "event_type", "event", "lead_id", "shard"}

// bundleColumns are the columns of a bundle's row, in Queue's order.
var bundleColumns = []string{"event_id", "workspace_id", "subscribers", "event_type", "events", "event_leads", "event_count", "shard"}

const (
	// bundleFrom is how many events one Queue call needs before they go
	// in bundles: below it, a row per event keeps each erasable by its
	// lead through an index.
	bundleFrom = 32
	// maxBundle bounds the events of one bundle, so one fits one
	// DeliverEvents call.
	maxBundle = maxBatchEvents
	// shards is how many ways rows are spread over lanes by lead: a relay
	// has at most this many useful lanes.
	shards = 8
)

// shardOf is the shard of lead's events: a stable hash, so each lead's
// events land in one shard, bundled or not.
func shardOf(lead string) int16 {
	h := fnv.New32a()
	h.Write([]byte(lead)) //nolint:errcheck // a hash never fails to write
	return int16(h.Sum32() % shards)
}

// PublishAll is Publish for many events: a few are written in one round
// trip with the NOTIFY, many in bundles with one COPY (a bulk load) and the
// NOTIFY, so bulk writers (imports) do not pay a round trip per event.
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

// typeURLPrefix is what anypb.New puts before a payload's full name.
const typeURLPrefix = "type.googleapis.com/"

// Queue is PublishAll for a caller that has statements of its own to send:
// the NOTIFY and a few events' rows are queued on b, to go in the same round
// trip when the caller sends b in tx; more are COPYed at once (see
// postgres.Insert), and from bundleFrom events on, events of one workspace,
// type and shard share a bundle row. Either way they commit or vanish with
// tx.
func (p *Publisher) Queue(ctx context.Context, tx pgx.Tx, b *pgx.Batch, msgs []Message) ([]*eventsv1.Event, error) {
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	now := p.now()
	evs := make([]*eventsv1.Event, len(msgs))
	ids := make([]uuid.UUID, len(msgs))
	var routed []int // indices of the events someone subscribes to
	// Payloads are marshalled back to back into one buffer, each keeping a
	// capped slice of its own (a buffer that grows leaves the earlier
	// slices on the old array, untouched): a bulk call allocates per
	// buffer, not per event.
	var payloads []byte
	var typ, typeURL string
	for i, m := range msgs {
		if t := string(m.Payload.ProtoReflect().Descriptor().FullName()); t != typ {
			typ, typeURL = t, typeURLPrefix+t
		}
		var err error
		start := len(payloads)
		if payloads, err = (proto.MarshalOptions{}).MarshalAppend(payloads, m.Payload); err != nil {
			return nil, fmt.Errorf("pack %s: %w", typ, err)
		}
		if i == 0 && len(msgs) > 1 {
			// Room for the rest, if they are like the first.
			payloads = slices.Grow(payloads, len(payloads)*(len(msgs)-1)+len(payloads)/2*len(msgs))
		}
		anyPayload := &anypb.Any{TypeUrl: typeURL, Value: payloads[start:len(payloads):len(payloads)]}
		ids[i] = uuid.New()
		evs[i] = &eventsv1.Event{
			Id:          ids[i].String(),
			Type:        typ,
			Workspace:   m.Workspace,
			Lead:        m.Lead,
			OccurTime:   now,
			Source:      p.source,
			Traceparent: carrier.Get("traceparent"),
			Tracestate:  carrier.Get("tracestate"),
			Payload:     anyPayload,
		}
		if len(p.routes[typ]) > 0 {
			routed = append(routed, i)
		}
	}
	if len(routed) == 0 {
		return evs, nil
	}
	var err error
	if len(routed) < bundleFrom {
		err = p.insertEvents(ctx, tx, b, ids, evs, routed)
	} else {
		err = p.insertBundles(ctx, tx, evs, routed, len(payloads))
	}
	if err != nil {
		return nil, fmt.Errorf("insert outbox events: %w", err)
	}
	// NOTIFY is transactional: the relay wakes when this commits, not before.
	b.Queue(`SELECT pg_notify($1, '')`, p.channel)
	return evs, nil
}

// insertEvents writes a row for each routed event with postgres.Insert
// (queued on b when they are few). Event ids go as 16-byte values, which
// pgx encodes in binary.
func (p *Publisher) insertEvents(ctx context.Context, tx pgx.Tx, b *pgx.Batch, ids []uuid.UUID, evs []*eventsv1.Event, routed []int) error {
	rows := make([][]any, 0, len(routed))
	for _, i := range routed {
		ev := evs[i]
		raw, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode %s: %w", ev.Type, err)
		}
		var lead *string
		if ev.Lead != "" {
			lead = &ev.Lead
		}
		rows = append(rows, []any{[16]byte(ids[i]), ev.Workspace, p.routes[ev.Type], ev.Type, raw, lead, shardOf(ev.Lead)})
	}
	return postgres.Insert(ctx, tx, b, "outbox", outboxColumns, rows)
}

// bundle is the events of one bundle row being built.
type bundle struct {
	workspace, typ string
	shard          int16
	events         []int // indices into the events
}

// eventOverhead is about what an event takes beside its payload, for
// sizing the bundles' COPY.
const eventOverhead = 320

// insertBundles COPYs the routed events in bundles of one workspace, type
// and shard each, in the order of their first event, each keeping its
// events in order. Events are encoded straight into the COPY's rows.
func (p *Publisher) insertBundles(ctx context.Context, tx pgx.Tx, evs []*eventsv1.Event, routed []int, payloadBytes int) error {
	type key struct {
		workspace, typ string
		shard          int16
	}
	open := map[key]*bundle{}
	var all []*bundle
	for _, i := range routed {
		ev := evs[i]
		k := key{ev.Workspace, ev.Type, shardOf(ev.Lead)}
		bd := open[k]
		if bd == nil || len(bd.events) == maxBundle {
			bd = &bundle{workspace: k.workspace, typ: k.typ, shard: k.shard}
			open[k] = bd
			all = append(all, bd)
		}
		bd.events = append(bd.events, i)
	}
	var rows postgres.CopyRows
	rows.Grow(payloadBytes + eventOverhead*len(routed))
	leads := make([]string, 0, maxBundle)
	for _, bd := range all {
		rows.Row(len(bundleColumns))
		rows.UUID(uuid.New(), false)
		rows.Text(bd.workspace)
		rows.TextArray(p.routes[bd.typ])
		rows.Text(bd.typ)
		rows.Array(pgtype.ByteaOID, len(bd.events), func(j int, b []byte) ([]byte, error) {
			ev := evs[bd.events[j]]
			b, err := (proto.MarshalOptions{}).MarshalAppend(b, ev)
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", ev.Type, err)
			}
			return b, nil
		})
		leads = leads[:0]
		for _, i := range bd.events {
			leads = append(leads, evs[i].Lead)
		}
		rows.TextArray(leads)
		rows.Int4(int32(len(bd.events)))
		rows.Int2(bd.shard)
	}
	_, err := postgres.CopyFrom(ctx, tx, "outbox", bundleColumns, &rows)
	return err
}

// Forget deletes the undelivered events about leads in tx, including parked
// ones, and returns how many deliveries (event and subscriber) it dropped.
// Erasure calls it before publishing LeadErased in the same transaction:
// the erasure supersedes those events, and they may carry personal data
// (page URLs, custom attributes) that must not outlive it. Receivers must
// therefore accept a LeadErased about a lead they never heard of.
//
// In a bundle, the leads' events are blanked (set to NULL), so the other
// events keep their places. Bundles go first: a relay recording a pass
// locks its rows before it splits a bundle into rows of its own, so once
// Forget has its bundles, the rows a relay split off before are committed,
// and the DELETE after sees them.
func Forget(ctx context.Context, tx pgx.Tx, workspace string, leads ...string) (int64, error) {
	const blank = `
WITH blanked AS (
UPDATE outbox o SET events = b.events, event_leads = b.leads
  FROM (SELECT id,
               array_agg(CASE WHEN l = ANY($2) THEN NULL ELSE e END ORDER BY n) AS events,
               array_agg(CASE WHEN l = ANY($2) THEN NULL ELSE l END ORDER BY n) AS leads,
               count(*) FILTER (WHERE l = ANY($2)) AS gone
          FROM outbox, unnest(events, event_leads) WITH ORDINALITY AS t (e, l, n)
         WHERE workspace_id = $1 AND events IS NOT NULL AND event_leads && $2
         GROUP BY id) b
 WHERE o.id = b.id
RETURNING cardinality(o.subscribers) * b.gone AS n)
SELECT coalesce(sum(n), 0) FROM blanked`
	const drop = `
WITH dropped AS (DELETE FROM outbox WHERE workspace_id = $1 AND lead_id = ANY($2) RETURNING subscribers)
SELECT coalesce(sum(cardinality(subscribers)), 0) FROM dropped`
	var inBundles, alone int64
	if err := tx.QueryRow(ctx, blank, workspace, leads).Scan(&inBundles); err != nil {
		return 0, fmt.Errorf("forget bundled outbox events: %w", err)
	}
	if err := tx.QueryRow(ctx, drop, workspace, leads).Scan(&alone); err != nil {
		return 0, fmt.Errorf("forget outbox events: %w", err)
	}
	return inBundles + alone, nil
}
