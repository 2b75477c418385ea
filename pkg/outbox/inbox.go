package outbox

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/postgres"
)

// Receive runs handle in a transaction that also records ev in the inbox. If
// ev was handled before, handle does not run and duplicate is true.
func Receive(ctx context.Context, pool *pgxpool.Pool, ev *eventsv1.Event, handle func(pgx.Tx) error) (duplicate bool, err error) {
	err = postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
		const q = `
INSERT INTO inbox (event_id, workspace_id, event_type) VALUES ($1, $2, $3)
ON CONFLICT (event_id) DO NOTHING`
		tag, err := tx.Exec(ctx, q, ev.GetId(), ev.GetWorkspace(), ev.GetType())
		if err != nil {
			return fmt.Errorf("record inbox: %w", err)
		}
		duplicate = tag.RowsAffected() == 0
		if duplicate {
			return nil
		}
		return handle(tx)
	})
	return duplicate, err
}

// ReceiveAll is Receive for several events: one transaction records them
// all in the inbox and runs handle, in order, for each that was not handled
// before (an event twice in evs counts once). duplicate says, per event,
// whether handle skipped it. Event ids must be UUIDs.
func ReceiveAll(ctx context.Context, pool *pgxpool.Pool, evs []*eventsv1.Event, handle func(tx pgx.Tx, i int) error) (duplicate []bool, err error) {
	return receiveAll(ctx, pool, evs, nil, func(_ context.Context, tx pgx.Tx, i int) error { return handle(tx, i) })
}

// receiveAll is ReceiveAll with a scope that, given the indices of the fresh
// events, prepares their handling and returns the context handle runs in
// and a flush to call after the last one (nil for none).
func receiveAll(ctx context.Context, pool *pgxpool.Pool, evs []*eventsv1.Event,
	scope func(ctx context.Context, tx pgx.Tx, fresh []int) (context.Context, func(context.Context) error, error),
	handle func(ctx context.Context, tx pgx.Tx, i int) error,
) (duplicate []bool, err error) {
	ids := make([][16]byte, len(evs))
	workspaces, types := make([]string, len(evs)), make([]string, len(evs))
	for i, ev := range evs {
		id, err := uuid.Parse(ev.GetId())
		if err != nil {
			return nil, fmt.Errorf("event %d: id is not a UUID", i)
		}
		ids[i], workspaces[i], types[i] = id, ev.GetWorkspace(), ev.GetType()
	}
	err = postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
		const q = `
INSERT INTO inbox (event_id, workspace_id, event_type)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id`
		rows, err := tx.Query(ctx, q, ids, workspaces, types)
		if err != nil {
			return fmt.Errorf("record inbox: %w", err)
		}
		fresh, err := pgx.CollectRows(rows, pgx.RowTo[[16]byte])
		if err != nil {
			return fmt.Errorf("record inbox: %w", err)
		}
		isNew := make(map[[16]byte]bool, len(fresh))
		for _, id := range fresh {
			isNew[id] = true
		}
		duplicate = make([]bool, len(evs))
		var todo []int
		for i, id := range ids {
			duplicate[i] = !isNew[id]
			delete(isNew, id) // a second copy of the event is a duplicate
			if !duplicate[i] {
				todo = append(todo, i)
			}
		}
		hctx, flush := ctx, func(context.Context) error { return nil }
		if scope != nil && len(todo) > 0 {
			var f func(context.Context) error
			if hctx, f, err = scope(ctx, tx, todo); err != nil {
				return err
			}
			if f != nil {
				flush = f
			}
		}
		for _, i := range todo {
			if err := handle(hctx, tx, i); err != nil {
				return err
			}
		}
		return flush(hctx)
	})
	return duplicate, err
}

// BatchScope prepares the handling of the fresh events of one
// DeliverEvents call, in the receiving transaction, before any of their
// handlers runs: a receiver can lock and read all that the events touch in
// one round trip, let its handlers queue their writes, and send them all in
// flush, after the last handler. Handlers run in the returned context (with
// each event's trace added). A nil flush means no batch handling: the
// handlers do their own reads and writes, as for DeliverEvent. An error
// from either fails the call, and the relay then delivers the events one by
// one, outside any scope.
type BatchScope func(ctx context.Context, tx pgx.Tx, evs []*eventsv1.Event) (context.Context, func(context.Context) error, error)

// Handler applies one event inside the receiving transaction. payload is the
// unpacked Event.payload.
type Handler func(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, payload proto.Message) error

// SinkServer implements eventsv1.EventSinkServiceServer over Receive,
// dispatching on the payload type. Event types without a handler are
// acknowledged and ignored, so producers can add events before consumers
// care about them.
type SinkServer struct {
	eventsv1.UnimplementedEventSinkServiceServer
	pool     *pgxpool.Pool
	handlers map[string]Handler
	scope    BatchScope
	tracer   trace.Tracer
}

// NewSinkServer returns a sink dispatching to handlers, keyed by payload full
// message name.
func NewSinkServer(pool *pgxpool.Pool, handlers map[string]Handler) *SinkServer {
	return &SinkServer{pool: pool, handlers: handlers, tracer: otel.Tracer(tracerName)}
}

// WithBatchScope has DeliverEvents prepare each call's events with scope;
// it returns s.
func (s *SinkServer) WithBatchScope(scope BatchScope) *SinkServer {
	s.scope = scope
	return s
}

// On is a convenience to key a handler by its payload prototype.
func On(payload proto.Message, h Handler) (string, Handler) {
	return string(payload.ProtoReflect().Descriptor().FullName()), h
}

// unpack checks ev and returns its handler and payload; a nil handler means
// nobody here handles its type. field names ev in violations.
func (s *SinkServer) unpack(ev *eventsv1.Event, field string) (Handler, proto.Message, error) {
	if ev.GetId() == "" || ev.GetWorkspace() == "" || ev.GetPayload() == nil {
		return nil, nil, apperr.InvalidArgument("invalid event",
			apperr.Field(field, "id, workspace and payload are required"))
	}
	if _, err := uuid.Parse(ev.GetId()); err != nil {
		return nil, nil, apperr.InvalidArgument("invalid event", apperr.Field(field+".id", "must be a UUID"))
	}
	h, ok := s.handlers[ev.GetType()]
	if !ok {
		return nil, nil, nil
	}
	payload, err := ev.GetPayload().UnmarshalNew()
	if err != nil {
		return nil, nil, apperr.InvalidArgument("invalid event payload", apperr.Field(field+".payload", err.Error()))
	}
	return h, payload, nil
}

// DeliverEvent implements eventsv1.EventSinkServiceServer.
func (s *SinkServer) DeliverEvent(ctx context.Context, req *eventsv1.DeliverEventRequest) (*eventsv1.DeliverEventResponse, error) {
	ev := req.GetEvent()
	h, payload, err := s.unpack(ev, "event")
	if err != nil {
		return nil, err
	}
	if h == nil {
		return &eventsv1.DeliverEventResponse{}, nil
	}
	dup, err := Receive(ctx, s.pool, ev, func(tx pgx.Tx) error { return h(ctx, tx, ev, payload) })
	if err != nil {
		return nil, err
	}
	return &eventsv1.DeliverEventResponse{Duplicate: dup}, nil
}

// DeliverEvents implements eventsv1.EventSinkServiceServer: the events are
// handled in one transaction, each under a span that continues the trace of
// the request that caused it (the call itself belongs to the relay's pass,
// not to any one lead). With a BatchScope, the fresh events that have a
// handler are prepared together first. A malformed event refuses the whole
// call; the relay then delivers the events one by one.
func (s *SinkServer) DeliverEvents(ctx context.Context, req *eventsv1.DeliverEventsRequest) (*eventsv1.DeliverEventsResponse, error) {
	evs := req.GetEvents()
	handlers := make([]Handler, len(evs))
	payloads := make([]proto.Message, len(evs))
	for i, ev := range evs {
		var err error
		if handlers[i], payloads[i], err = s.unpack(ev, fmt.Sprintf("events[%d]", i)); err != nil {
			return nil, err
		}
	}
	var scope func(context.Context, pgx.Tx, []int) (context.Context, func(context.Context) error, error)
	if s.scope != nil {
		scope = func(ctx context.Context, tx pgx.Tx, fresh []int) (context.Context, func(context.Context) error, error) {
			var handled []*eventsv1.Event
			for _, i := range fresh {
				if handlers[i] != nil {
					handled = append(handled, evs[i])
				}
			}
			if len(handled) == 0 {
				return ctx, nil, nil
			}
			return s.scope(ctx, tx, handled)
		}
	}
	dup, err := receiveAll(ctx, s.pool, evs, scope, func(ctx context.Context, tx pgx.Tx, i int) error {
		if handlers[i] == nil {
			return nil
		}
		ctx, span := s.tracer.Start(eventContext(ctx, evs[i]), "outbox.receive "+evs[i].GetType(),
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(eventAttributes(evs[i])...))
		defer span.End()
		err := handlers[i](ctx, tx, evs[i], payloads[i])
		if err != nil {
			span.RecordError(err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &eventsv1.DeliverEventsResponse{Duplicate: dup}, nil
}

// GRPCSink delivers to another service's EventSinkService over conn, which
// must authenticate with the internal token. It delivers batches too.
func GRPCSink(conn grpc.ClientConnInterface) BatchSink {
	return grpcSink{eventsv1.NewEventSinkServiceClient(conn)}
}

type grpcSink struct {
	client eventsv1.EventSinkServiceClient
}

func (g grpcSink) Deliver(ctx context.Context, ev *eventsv1.Event) error {
	_, err := g.client.DeliverEvent(ctx, &eventsv1.DeliverEventRequest{Event: ev})
	return err
}

func (g grpcSink) DeliverBatch(ctx context.Context, evs []*eventsv1.Event) error {
	_, err := g.client.DeliverEvents(ctx, &eventsv1.DeliverEventsRequest{Events: evs})
	return err
}

// SinkPolicy lets only other Leadflow services (the internal token) deliver
// events; merge it into the policy of a service that registers a SinkServer.
var SinkPolicy = auth.Policy{
	eventsv1.EventSinkService_DeliverEvent_FullMethodName:  {Internal: true},
	eventsv1.EventSinkService_DeliverEvents_FullMethodName: {Internal: true},
}
