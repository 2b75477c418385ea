package outbox

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
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
}

// NewSinkServer returns a sink dispatching to handlers, keyed by payload full
// message name.
func NewSinkServer(pool *pgxpool.Pool, handlers map[string]Handler) *SinkServer {
	return &SinkServer{pool: pool, handlers: handlers}
}

// On is a convenience to key a handler by its payload prototype.
func On(payload proto.Message, h Handler) (string, Handler) {
	return string(payload.ProtoReflect().Descriptor().FullName()), h
}

// DeliverEvent implements eventsv1.EventSinkServiceServer.
func (s *SinkServer) DeliverEvent(ctx context.Context, req *eventsv1.DeliverEventRequest) (*eventsv1.DeliverEventResponse, error) {
	ev := req.GetEvent()
	if ev.GetId() == "" || ev.GetWorkspace() == "" || ev.GetPayload() == nil {
		return nil, apperr.InvalidArgument("invalid event",
			apperr.Field("event", "id, workspace and payload are required"))
	}
	if _, err := uuid.Parse(ev.GetId()); err != nil {
		return nil, apperr.InvalidArgument("invalid event", apperr.Field("event.id", "must be a UUID"))
	}
	h, ok := s.handlers[ev.GetType()]
	if !ok {
		return &eventsv1.DeliverEventResponse{}, nil
	}
	payload, err := ev.GetPayload().UnmarshalNew()
	if err != nil {
		return nil, apperr.InvalidArgument("invalid event payload", apperr.Field("event.payload", err.Error()))
	}
	dup, err := Receive(ctx, s.pool, ev, func(tx pgx.Tx) error { return h(ctx, tx, ev, payload) })
	if err != nil {
		return nil, err
	}
	return &eventsv1.DeliverEventResponse{Duplicate: dup}, nil
}

// GRPCSink delivers to another service's EventSinkService over conn, which
// must authenticate with the internal token.
func GRPCSink(conn grpc.ClientConnInterface) Sink {
	client := eventsv1.NewEventSinkServiceClient(conn)
	return SinkFunc(func(ctx context.Context, ev *eventsv1.Event) error {
		_, err := client.DeliverEvent(ctx, &eventsv1.DeliverEventRequest{Event: ev})
		return err
	})
}
