package outbox_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/outbox"
)

func event(t *testing.T, payload proto.Message) *eventsv1.Event {
	t.Helper()
	p, err := anypb.New(payload)
	if err != nil {
		t.Fatal(err)
	}
	return &eventsv1.Event{
		Id: uuid.NewString(), Type: string(payload.ProtoReflect().Descriptor().FullName()),
		Workspace: "acme", Lead: "lead-1", Payload: p,
	}
}

func TestReceiveDedupesRedelivery(t *testing.T) {
	pool := newPool(t)
	ev := event(t, &eventsv1.LeadErased{})
	handled := 0
	handle := func(tx pgx.Tx) error {
		handled++
		_, err := tx.Exec(t.Context(), `INSERT INTO things (id) VALUES ($1)`, ev.GetLead())
		return err
	}
	for i, wantDup := range []bool{false, true, true} {
		dup, err := outbox.Receive(t.Context(), pool, ev, handle)
		if err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
		if dup != wantDup {
			t.Fatalf("delivery %d: duplicate = %v, want %v", i+1, dup, wantDup)
		}
	}
	if handled != 1 {
		t.Fatalf("handler ran %d times, want 1", handled)
	}
}

func TestReceiveFailedHandlingIsNotRecorded(t *testing.T) {
	pool := newPool(t)
	ev := event(t, &eventsv1.LeadErased{})
	boom := status.Error(codes.Unavailable, "try later")
	if _, err := outbox.Receive(t.Context(), pool, ev, func(pgx.Tx) error { return boom }); err == nil {
		t.Fatal("the handler's error was lost")
	}
	// The failed attempt left no inbox row, so the redelivery is handled.
	ran := false
	dup, err := outbox.Receive(t.Context(), pool, ev, func(pgx.Tx) error { ran = true; return nil })
	if err != nil || dup || !ran {
		t.Fatalf("redelivery after a failure: dup=%v ran=%v err=%v", dup, ran, err)
	}
}

func TestSinkServer(t *testing.T) {
	pool := newPool(t)
	var erased []string
	typ, h := outbox.On(&eventsv1.LeadErased{}, func(_ context.Context, _ pgx.Tx, ev *eventsv1.Event, payload proto.Message) error {
		if _, ok := payload.(*eventsv1.LeadErased); !ok {
			t.Errorf("payload is %T", payload)
		}
		erased = append(erased, ev.GetLead())
		return nil
	})
	sink := outbox.NewSinkServer(pool, map[string]outbox.Handler{typ: h})

	ev := event(t, &eventsv1.LeadErased{})
	for _, tc := range []struct {
		name    string
		ev      *eventsv1.Event
		wantDup bool
		kind    apperr.Kind
	}{
		{"first delivery", ev, false, apperr.KindUnknown},
		{"redelivery", ev, true, apperr.KindUnknown},
		{"event nobody handles is acknowledged", event(t, &eventsv1.LeadScored{}), false, apperr.KindUnknown},
		{"event without id", &eventsv1.Event{Workspace: "acme", Payload: ev.GetPayload()}, false, apperr.KindInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := sink.DeliverEvent(t.Context(), &eventsv1.DeliverEventRequest{Event: tc.ev})
			if tc.kind != apperr.KindUnknown {
				if got := apperr.KindOf(err); got != tc.kind {
					t.Fatalf("err = %v, want kind %v", err, tc.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetDuplicate() != tc.wantDup {
				t.Fatalf("duplicate = %v, want %v", resp.GetDuplicate(), tc.wantDup)
			}
		})
	}
	if len(erased) != 1 || erased[0] != "lead-1" {
		t.Fatalf("handled %v, want lead-1 once", erased)
	}
}
