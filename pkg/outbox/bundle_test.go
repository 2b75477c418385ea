package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
)

// publishBundled publishes, in one call, rounds events about each of leads
// (round by round), enough to go in bundles, and returns each lead's event
// ids in publishing order.
func publishBundled(t *testing.T, pool *pgxpool.Pool, leads, rounds int) map[string][]string {
	t.Helper()
	var msgs []outbox.Message
	for range rounds {
		for l := range leads {
			msgs = append(msgs, outbox.Message{Workspace: "acme", Lead: fmt.Sprintf("lead-%d", l), Payload: &eventsv1.LeadErased{}})
		}
	}
	if len(msgs) < outbox.BundleFrom {
		t.Fatalf("%d events go in rows of their own", len(msgs))
	}
	var evs []*eventsv1.Event
	if err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		evs, err = newPublisher().PublishAll(t.Context(), tx, msgs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return byLead(evs)
}

// eventsOwed is each waiting event's lead and subscribers, bundled or not,
// with whether it is parked, in outbox order.
func eventsOwed(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `
SELECT format('%s %s %s', lead_id, subscribers, CASE WHEN dead_time IS NULL THEN 'live' ELSE 'parked' END)
  FROM outbox_events ORDER BY id, position`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Many events of one call share a few rows, and still reach their
// subscriber once each, each lead's in order, through lanes.
func TestBundlesCarryManyEventsInFewRows(t *testing.T) {
	pool := newPool(t)
	want := publishBundled(t, pool, 50, 4)
	if rows := outboxRows(t, pool); rows > 8 {
		t.Fatalf("200 events of one type took %d rows, want a bundle per shard at most", rows)
	}
	if n := len(eventsOwed(t, pool)); n != 200 {
		t.Fatalf("outbox_events shows %d events, want 200", n)
	}
	rec := newRecorder()
	rec.accepted = make(chan struct{}, 200)
	sink := &batchRecorder{recorder: rec}
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{BatchSize: 30, Lanes: 2})
	runUntilAccepted(t, relay, rec, 200)
	if got := byLead(rec.events()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered per lead %v, want %v", got, want)
	}
	if rows := outboxRows(t, pool); rows != 0 {
		t.Fatalf("%d outbox rows left, want none", rows)
	}
}

// Lanes share out bundles by the shards of their leads: a lead's events,
// bundled or alone, all go through one lane.
func TestLanesShareOutBundledLeads(t *testing.T) {
	pool := newPool(t)
	want := publishBundled(t, pool, 30, 2)
	for lead, ids := range publishPerLead(t, pool, 30, 1) {
		want[lead] = append(want[lead], ids...)
	}
	_, all := deliverLaneByLane(t, pool, 2)
	if got := byLead(all); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered per lead %v, want %v", got, want)
	}
}

// Forget blanks a lead's events in a bundle; the bundle's other events are
// still delivered, the lead's never.
func TestForgetBlanksALeadsEventsInABundle(t *testing.T) {
	pool := newPool(t)
	publishBundled(t, pool, 20, 2)
	var dropped int64
	if err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		dropped, err = outbox.Forget(t.Context(), tx, "acme", "lead-3", "lead-7")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if dropped != 4 {
		t.Fatalf("dropped %d deliveries, want the 4 of lead-3 and lead-7", dropped)
	}
	for _, e := range eventsOwed(t, pool) {
		if e[:7] == "lead-3 " || e[:7] == "lead-7 " {
			t.Fatalf("an erased lead's event is still owed: %s", e)
		}
	}
	sink := &batchRecorder{recorder: newRecorder()}
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{BatchSize: 1000})
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 40 {
		t.Fatalf("leased %d events (err %v), want the bundles' 40 places", n, err)
	}
	if got := len(sink.events()); got != 36 {
		t.Fatalf("delivered %d events, want the 36 of other leads", got)
	}
	for _, ev := range sink.events() {
		if ev.GetLead() == "lead-3" || ev.GetLead() == "lead-7" {
			t.Fatalf("delivered an event of erased %s", ev.GetLead())
		}
	}
	if rows := outboxRows(t, pool); rows != 0 {
		t.Fatalf("%d outbox rows left, want none", rows)
	}
}

// A bundle whose events all failed alike is retried whole: it stays one row.
func TestFailedBundleIsRetriedWhole(t *testing.T) {
	pool := newPool(t)
	publishBundled(t, pool, 40, 1)
	rowsBefore := outboxRows(t, pool)
	down := outbox.SinkFunc(func(context.Context, *eventsv1.Event) error {
		return status.Error(codes.Unavailable, "receiver is down")
	})
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": down}, outbox.RelayOptions{BatchSize: 1000})
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 40 {
		t.Fatalf("leased %d events (err %v), want 40", n, err)
	}
	var rows, retried int
	if err := pool.QueryRow(t.Context(),
		`SELECT count(*), count(*) FILTER (WHERE attempts = 1 AND next_attempt_time > now()) FROM outbox`).Scan(&rows, &retried); err != nil {
		t.Fatal(err)
	}
	if rows != rowsBefore || retried != rows {
		t.Fatalf("%d rows, %d waiting for a retry; want the %d bundles, each to retry", rows, retried, rowsBefore)
	}
}

// A bundle whose events fared differently splits: each event still owed
// becomes a row of its own, a refused one parked, and an event an erasure
// blanked while the pass ran does not come back.
func TestBundleSplitsWhatIsLeftOwed(t *testing.T) {
	pool := newPool(t)
	publishBundled(t, pool, 40, 1)
	called, inPass := make(chan struct{}), make(chan struct{})
	var first sync.Once
	sink := outbox.SinkFunc(func(_ context.Context, ev *eventsv1.Event) error {
		first.Do(func() {
			close(called)
			<-inPass // the erasure below runs while the pass holds the events
		})
		switch ev.GetLead() {
		case "lead-1":
			return status.Error(codes.InvalidArgument, "bad event")
		case "lead-2", "lead-3":
			return status.Error(codes.Unavailable, "try later")
		}
		return nil
	})
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{BatchSize: 1000, Parallelism: 1})
	done := make(chan error, 1)
	go func() {
		_, err := relay.DeliverDue(t.Context())
		done <- err
	}()
	<-called // the pass has leased the events and is delivering them
	if err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		_, err := outbox.Forget(t.Context(), tx, "acme", "lead-3")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	close(inPass)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := eventsOwed(t, pool)
	slices.Sort(got)
	if want := "[lead-1 {scoring} parked lead-2 {scoring} live]"; fmt.Sprint(got) != want {
		t.Fatalf("owed after the pass %v, want %s", got, want)
	}
	if rows := outboxRows(t, pool); rows != 2 {
		t.Fatalf("%d outbox rows, want the two split-off events alone", rows)
	}
	// A split-off event is the whole event.
	rs, err := pool.Query(t.Context(), `SELECT event FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	split, err := pgx.CollectRows(rs, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range split {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(raw, ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetType() != "leadflow.events.v1.LeadErased" || ev.GetWorkspace() != "acme" || ev.GetSource() == "" ||
			ev.GetId() == "" || ev.GetLead() == "" || ev.GetPayload().GetTypeUrl() == "" {
			t.Fatalf("split-off event %v, want it whole", ev)
		}
	}
}

// Events published together each keep their own payload, as returned to
// the publisher and as delivered, and every other field, trace context
// included.
func TestEventsPublishedTogetherKeepTheirPayloads(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	ctx := trace.ContextWithRemoteSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
	}))
	pool := newPool(t)
	msgs := make([]outbox.Message, 3*outbox.BundleFrom)
	for i := range msgs {
		msgs[i] = outbox.Message{Workspace: "acme", Lead: fmt.Sprintf("lead-%d", i),
			Payload: &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Company: fmt.Sprintf("Company %d", i)}}}
	}
	var evs []*eventsv1.Event
	if err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		evs, err = newPublisher().PublishAll(ctx, tx, msgs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if evs[0].GetTraceparent() == "" || evs[0].GetSource() == "" || evs[0].GetOccurTime() == nil {
		t.Fatalf("published %v, want its trace context, source and time set", evs[0])
	}
	published := map[string]*eventsv1.Event{}
	for i, ev := range evs {
		got := &eventsv1.LeadCaptured{}
		if err := ev.GetPayload().UnmarshalTo(got); err != nil || !proto.Equal(got, msgs[i].Payload) {
			t.Fatalf("event %d carries %v (%v), want %v", i, got, err, msgs[i].Payload)
		}
		published[ev.GetId()] = ev
	}
	sink := &batchRecorder{recorder: newRecorder()}
	sink.accepted = make(chan struct{}, 2*len(msgs))
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink, "lifecycle": sink}, outbox.RelayOptions{BatchSize: 1000})
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(sink.events()); got != 2*len(msgs) {
		t.Fatalf("delivered %d events, want %d", got, 2*len(msgs))
	}
	for _, ev := range sink.events() {
		if !proto.Equal(ev, published[ev.GetId()]) {
			t.Fatalf("delivered %v, published %v", ev, published[ev.GetId()])
		}
	}
}
