package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
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

func TestSinkServerDeliverEvents(t *testing.T) {
	pool := newPool(t)
	var handled []string
	fail := ""
	typ, h := outbox.On(&eventsv1.LeadErased{}, func(_ context.Context, tx pgx.Tx, ev *eventsv1.Event, _ proto.Message) error {
		if ev.GetLead() == fail {
			return status.Error(codes.Unavailable, "try later")
		}
		handled = append(handled, ev.GetLead())
		_, err := tx.Exec(t.Context(), `INSERT INTO things (id) VALUES ($1)`, ev.GetLead())
		return err
	})
	sink := outbox.NewSinkServer(pool, map[string]outbox.Handler{typ: h})
	erased := func(lead string) *eventsv1.Event {
		ev := event(t, &eventsv1.LeadErased{})
		ev.Lead = lead
		return ev
	}
	deliver := func(evs ...*eventsv1.Event) ([]bool, error) {
		resp, err := sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: evs})
		return resp.GetDuplicate(), err
	}
	things := func() int {
		var n int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM things`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	first := erased("lead-1")
	if dup, err := deliver(first); err != nil || fmt.Sprint(dup) != "[false]" {
		t.Fatalf("first delivery: duplicate %v, err %v", dup, err)
	}
	// A redelivered event, a new one twice, and one nobody handles.
	second := erased("lead-2")
	dup, err := deliver(first, second, second, event(t, &eventsv1.LeadScored{}))
	if err != nil || fmt.Sprint(dup) != "[true false true false]" {
		t.Fatalf("mixed delivery: duplicate %v, err %v; want [true false true false]", dup, err)
	}
	if fmt.Sprint(handled) != "[lead-1 lead-2]" {
		t.Fatalf("handled %v, want lead-1 and lead-2 once each", handled)
	}

	// One failing handler undoes the whole call: the other event is not
	// recorded either, so a later delivery handles it.
	fail = "lead-4"
	third, fourth := erased("lead-3"), erased("lead-4")
	if _, err := deliver(third, fourth); err == nil {
		t.Fatal("a handler's error was lost")
	}
	if n := things(); n != 2 {
		t.Fatalf("%d things after the failed call, want 2", n)
	}
	fail = ""
	if dup, err := deliver(third, fourth); err != nil || fmt.Sprint(dup) != "[false false]" {
		t.Fatalf("redelivery after the failure: duplicate %v, err %v", dup, err)
	}

	// A malformed event refuses the call and names itself.
	_, err = deliver(erased("lead-5"), &eventsv1.Event{Id: "not-a-uuid", Workspace: "acme", Payload: first.GetPayload()})
	if e, ok := errors.AsType[*apperr.Error](err); !ok || e.Kind() != apperr.KindInvalidArgument ||
		len(e.FieldViolations()) != 1 || e.FieldViolations()[0].Field != "events[1].id" {
		t.Fatalf("malformed event: err = %v, want INVALID_ARGUMENT on events[1].id", err)
	}
	if n := things(); n != 4 {
		t.Fatalf("%d things, want 4 (nothing from the refused call)", n)
	}
}

func TestDeliverEventsContinuesEachEventsTrace(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	prevProvider, prevPropagator := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevProvider); otel.SetTextMapPropagator(prevPropagator) })

	pool := newPool(t)
	typ, h := outbox.On(&eventsv1.LeadErased{}, func(context.Context, pgx.Tx, *eventsv1.Event, proto.Message) error { return nil })
	sink := outbox.NewSinkServer(pool, map[string]outbox.Handler{typ: h})

	// Two events published by two requests, each in a trace of its own.
	var evs []*eventsv1.Event
	var parents []trace.SpanContext
	for range 2 {
		ctx, span := provider.Tracer("test").Start(t.Context(), "request")
		carrier := propagation.MapCarrier{}
		otel.GetTextMapPropagator().Inject(ctx, carrier)
		span.End()
		ev := event(t, &eventsv1.LeadErased{})
		ev.Traceparent = carrier.Get("traceparent")
		evs = append(evs, ev)
		parents = append(parents, span.SpanContext())
	}
	if _, err := sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: evs}); err != nil {
		t.Fatal(err)
	}
	var got []trace.SpanContext
	for _, s := range recorder.Ended() {
		if strings.HasPrefix(s.Name(), "outbox.receive") {
			got = append(got, s.Parent())
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d receive spans, want one per event", len(got))
	}
	for i, p := range got {
		if p.TraceID() != parents[i].TraceID() || p.SpanID() != parents[i].SpanID() {
			t.Fatalf("receive span %d has parent %v, want the publishing request's span %v", i, p, parents[i])
		}
	}
}

// scopeKey carries a BatchScope's queued writes to the handlers.
type scopeKey struct{}

func TestDeliverEventsBatchScope(t *testing.T) {
	pool := newPool(t)
	erasedType, h := outbox.On(&eventsv1.LeadErased{}, func(ctx context.Context, _ pgx.Tx, ev *eventsv1.Event, _ proto.Message) error {
		// Queue the write for the scope's flush instead of making it.
		queued := ctx.Value(scopeKey{}).(*[]string)
		*queued = append(*queued, ev.GetLead())
		return nil
	})
	var scoped [][]string
	flushErr := error(nil)
	sink := outbox.NewSinkServer(pool, map[string]outbox.Handler{erasedType: h}).WithBatchScope(
		func(ctx context.Context, tx pgx.Tx, evs []*eventsv1.Event) (context.Context, func(context.Context) error, error) {
			var leads []string
			for _, ev := range evs {
				leads = append(leads, ev.GetLead())
			}
			scoped = append(scoped, leads)
			queued := &[]string{}
			flush := func(ctx context.Context) error {
				if flushErr != nil {
					return flushErr
				}
				_, err := tx.Exec(ctx, `INSERT INTO things (id) SELECT unnest($1::text[])`, *queued)
				return err
			}
			return context.WithValue(ctx, scopeKey{}, queued), flush, nil
		})
	erased := func(lead string) *eventsv1.Event {
		ev := event(t, &eventsv1.LeadErased{})
		ev.Lead = lead
		return ev
	}
	things := func() []string {
		rows, err := pool.Query(t.Context(), `SELECT id FROM things ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}

	first, second := erased("lead-1"), erased("lead-2")
	if _, err := sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: []*eventsv1.Event{first}}); err != nil {
		t.Fatal(err)
	}
	// The scope sees only fresh events that have a handler: not the
	// redelivered one, nor the one nobody handles.
	evs := []*eventsv1.Event{first, second, event(t, &eventsv1.LeadScored{})}
	if _, err := sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: evs}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(scoped) != "[[lead-1] [lead-2]]" {
		t.Fatalf("scopes saw %v, want [[lead-1] [lead-2]]", scoped)
	}
	if got := things(); fmt.Sprint(got) != "[lead-1 lead-2]" {
		t.Fatalf("flushed %v, want lead-1 and lead-2", got)
	}

	// A failing flush fails the call and records nothing: the relay will
	// deliver again.
	flushErr = status.Error(codes.Unavailable, "try later")
	third := erased("lead-3")
	if _, err := sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: []*eventsv1.Event{third}}); err == nil {
		t.Fatal("the flush's error was lost")
	}
	flushErr = nil
	resp, err := sink.DeliverEvents(t.Context(), &eventsv1.DeliverEventsRequest{Events: []*eventsv1.Event{third}})
	if err != nil || resp.GetDuplicate()[0] {
		t.Fatalf("redelivery after a failed flush: duplicate %v, err %v", resp.GetDuplicate(), err)
	}
	if got := things(); fmt.Sprint(got) != "[lead-1 lead-2 lead-3]" {
		t.Fatalf("flushed %v, want lead-1 to lead-3", got)
	}
}
