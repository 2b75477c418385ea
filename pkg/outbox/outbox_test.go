package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/logging"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const schema = "outboxtest"

// appMigrations stand in for a service's own tables: the business row a
// change writes next to its events.
var appMigrations = fstest.MapFS{
	"00001_things.sql": {Data: []byte(`-- +goose Up
CREATE TABLE things (id text PRIMARY KEY);
-- +goose Down
DROP TABLE things;
`)},
}

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return pgtest.NewPool(t, schema, appMigrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
}

var routes = outbox.Routes{
	"leadflow.events.v1.LeadCaptured": {"scoring", "lifecycle"},
	"leadflow.events.v1.LeadErased":   {"scoring"},
}

func newPublisher() *outbox.Publisher { return outbox.NewPublisher("ingestion", schema, routes) }

// recorder is a sink that remembers what it accepted, and fails while
// failures is positive.
type recorder struct {
	mu       sync.Mutex
	got      []*eventsv1.Event
	failures int
	failWith error
	accepted chan struct{}
}

func newRecorder() *recorder { return &recorder{accepted: make(chan struct{}, 1000)} }

func (r *recorder) Deliver(_ context.Context, ev *eventsv1.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures > 0 {
		r.failures--
		if r.failWith != nil {
			return r.failWith
		}
		return status.Error(codes.Unavailable, "receiver is down")
	}
	r.got = append(r.got, ev)
	r.accepted <- struct{}{}
	return nil
}

func (r *recorder) events() []*eventsv1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*eventsv1.Event(nil), r.got...)
}

// publish writes a thing and its event in one transaction; fail makes the
// transaction roll back after publishing.
func publish(t *testing.T, pool *pgxpool.Pool, id string, payload proto.Message, fail bool) *eventsv1.Event {
	t.Helper()
	var ev *eventsv1.Event
	errRollback := errors.New("roll back")
	err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), `INSERT INTO things (id) VALUES ($1)`, id); err != nil {
			return err
		}
		var err error
		ev, err = newPublisher().Publish(t.Context(), tx, "acme", id, payload)
		if err != nil {
			return err
		}
		if fail {
			return errRollback
		}
		return nil
	})
	if fail {
		if !errors.Is(err, errRollback) {
			t.Fatalf("publish: err = %v, want the rollback", err)
		}
		return ev
	}
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ev
}

func outboxRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func newRelay(pool *pgxpool.Pool, sinks map[string]outbox.Sink, opts outbox.RelayOptions) *outbox.Relay {
	opts.Logger = logging.Discard()
	return outbox.NewRelay(pool, schema, sinks, opts)
}

func TestPublishedEventIsDeliveredToEverySubscriber(t *testing.T) {
	pool := newPool(t)
	scoring, lifecycle := newRecorder(), newRecorder()
	ev := publish(t, pool, "lead-1", &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Company: "Acme"}}, false)

	if got := outboxRows(t, pool); got != 1 {
		t.Fatalf("outbox rows = %d, want one for the event", got)
	}
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": scoring, "lifecycle": lifecycle}, outbox.RelayOptions{})
	n, err := relay.DeliverDue(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("claimed %d events, want 1", n)
	}
	for name, r := range map[string]*recorder{"scoring": scoring, "lifecycle": lifecycle} {
		got := r.events()
		if len(got) != 1 {
			t.Fatalf("%s got %d events, want 1", name, len(got))
		}
		if !proto.Equal(got[0], ev) {
			t.Fatalf("%s got %v, want %v", name, got[0], ev)
		}
		payload, err := got[0].GetPayload().UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		if c := payload.(*eventsv1.LeadCaptured).GetAttributes().GetCompany(); c != "Acme" {
			t.Fatalf("%s payload company = %q", name, c)
		}
		if got[0].GetType() != "leadflow.events.v1.LeadCaptured" || got[0].GetWorkspace() != "acme" ||
			got[0].GetLead() != "lead-1" || got[0].GetSource() != "ingestion" || got[0].GetId() == "" {
			t.Fatalf("%s envelope = %v", name, got[0])
		}
	}
	if got := outboxRows(t, pool); got != 0 {
		t.Fatalf("outbox rows after delivery = %d, want 0", got)
	}
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 0 {
		t.Fatalf("second pass claimed %d (err %v), want 0", n, err)
	}
}

func TestPublishRecordsNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		payload  proto.Message
		rollback bool
	}{
		{"rolled back transaction", &eventsv1.LeadCaptured{}, true},
		{"event without subscribers", &eventsv1.LeadScored{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newPool(t)
			publish(t, pool, "lead-1", tc.payload, tc.rollback)
			if got := outboxRows(t, pool); got != 0 {
				t.Fatalf("outbox rows = %d, want 0", got)
			}
			sink := newRecorder()
			relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink, "lifecycle": sink}, outbox.RelayOptions{})
			if n, err := relay.DeliverDue(t.Context()); err != nil || n != 0 {
				t.Fatalf("claimed %d (err %v), want 0", n, err)
			}
			if len(sink.events()) != 0 {
				t.Fatal("an event was delivered")
			}
		})
	}
}

func TestFailedDeliveryIsRetriedLater(t *testing.T) {
	pool := newPool(t)
	sink := newRecorder()
	sink.failures = 1
	ev := publish(t, pool, "lead-1", &eventsv1.LeadErased{}, false)
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{})

	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("first pass claimed %d (err %v), want 1", n, err)
	}
	var attempts int
	var lastError string
	var due bool
	err := pool.QueryRow(t.Context(),
		`SELECT attempts, last_error, next_attempt_time > now() FROM outbox`).Scan(&attempts, &lastError, &due)
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || lastError == "" || !due {
		t.Fatalf("after a failure: attempts=%d last_error=%q retry later=%v", attempts, lastError, due)
	}
	// The backoff has not passed: a pass now leaves the row alone.
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 0 {
		t.Fatalf("pass within backoff claimed %d (err %v), want 0", n, err)
	}
	// Time passes.
	if _, err := pool.Exec(t.Context(), `UPDATE outbox SET next_attempt_time = now()`); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("retry claimed %d (err %v), want 1", n, err)
	}
	if got := sink.events(); len(got) != 1 || got[0].GetId() != ev.GetId() {
		t.Fatalf("delivered %v, want the event once", got)
	}
	if got := outboxRows(t, pool); got != 0 {
		t.Fatalf("outbox rows = %d, want 0", got)
	}
}

func TestRunDeliversOnceTheReceiverIsBack(t *testing.T) {
	pool := newPool(t)
	sink := newRecorder()
	sink.failures = 3 // down for the first three attempts
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink, "lifecycle": sink},
		outbox.RelayOptions{MaxBackoff: 20 * time.Millisecond, PollInterval: time.Second})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	ev := publish(t, pool, "lead-1", &eventsv1.LeadErased{}, false)
	select {
	case <-sink.accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the event was never delivered")
	}
	if got := sink.events(); len(got) != 1 || got[0].GetId() != ev.GetId() {
		t.Fatalf("delivered %v, want the event once", got)
	}
	// A later event is picked up by notification, without waiting for a poll.
	publish(t, pool, "lead-2", &eventsv1.LeadErased{}, false)
	select {
	case <-sink.accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the second event was never delivered")
	}
}

func TestRefusedEventIsParked(t *testing.T) {
	pool := newPool(t)
	sink := newRecorder()
	sink.failures = 1
	sink.failWith = status.Error(codes.InvalidArgument, "bad event")
	publish(t, pool, "lead-1", &eventsv1.LeadErased{}, false)
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{})
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	var dead bool
	if err := pool.QueryRow(t.Context(), `SELECT dead_time IS NOT NULL FROM outbox`).Scan(&dead); err != nil {
		t.Fatal(err)
	}
	if !dead {
		t.Fatal("a refused event is not parked")
	}
	if _, err := pool.Exec(t.Context(), `UPDATE outbox SET next_attempt_time = now()`); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 0 {
		t.Fatalf("claimed %d parked rows (err %v), want 0", n, err)
	}
}

// owed returns, per live (not parked) outbox row, the subscribers still owed
// its event, and the same for parked rows.
func owed(t *testing.T, pool *pgxpool.Pool) (live, parked [][]string) {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT subscribers, dead_time IS NOT NULL FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var subs []string
	var dead bool
	if _, err := pgx.ForEachRow(rows, []any{&subs, &dead}, func() error {
		if dead {
			parked = append(parked, subs)
		} else {
			live = append(live, subs)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return live, parked
}

func TestOneSubscribersFailureDoesNotRedeliverToTheOthers(t *testing.T) {
	pool := newPool(t)
	scoring, lifecycle := newRecorder(), newRecorder()
	lifecycle.failures = 1
	ev := publish(t, pool, "lead-1", &eventsv1.LeadCaptured{}, false)
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": scoring, "lifecycle": lifecycle}, outbox.RelayOptions{})
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if live, parked := owed(t, pool); len(live) != 1 || fmt.Sprint(live[0]) != "[lifecycle]" || len(parked) != 0 {
		t.Fatalf("after lifecycle failed: live %v, parked %v; want lifecycle alone still owed", live, parked)
	}
	if _, err := pool.Exec(t.Context(), `UPDATE outbox SET next_attempt_time = now()`); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := scoring.events(); len(got) != 1 || got[0].GetId() != ev.GetId() {
		t.Fatalf("scoring got %d events, want the event once", len(got))
	}
	if got := lifecycle.events(); len(got) != 1 || got[0].GetId() != ev.GetId() {
		t.Fatalf("lifecycle got %d events, want the event once", len(got))
	}
	if got := outboxRows(t, pool); got != 0 {
		t.Fatalf("outbox rows = %d, want 0", got)
	}
}

func TestOneSubscribersRefusalParksTheEventForItAlone(t *testing.T) {
	pool := newPool(t)
	scoring, lifecycle := newRecorder(), newRecorder()
	lifecycle.failures, lifecycle.failWith = 1, status.Error(codes.InvalidArgument, "bad event")
	scoring.failures = 1 // down for a moment
	publish(t, pool, "lead-1", &eventsv1.LeadCaptured{}, false)
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": scoring, "lifecycle": lifecycle}, outbox.RelayOptions{})
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	live, parked := owed(t, pool)
	if len(live) != 1 || fmt.Sprint(live[0]) != "[scoring]" || len(parked) != 1 || fmt.Sprint(parked[0]) != "[lifecycle]" {
		t.Fatalf("live %v, parked %v; want scoring to retry and lifecycle parked", live, parked)
	}
	if _, err := pool.Exec(t.Context(), `UPDATE outbox SET next_attempt_time = now()`); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(scoring.events()) != 1 || len(lifecycle.events()) != 0 {
		t.Fatalf("scoring got %d, lifecycle %d; want 1 and 0", len(scoring.events()), len(lifecycle.events()))
	}
	if live, parked := owed(t, pool); len(live) != 0 || len(parked) != 1 {
		t.Fatalf("live %v, parked %v; want only the parked row", live, parked)
	}
}

func TestParallelRelaysNeverDeliverARowTwice(t *testing.T) {
	pool := newPool(t)
	const events = 120
	for i := range events {
		publish(t, pool, fmt.Sprintf("lead-%d", i), &eventsv1.LeadErased{}, false)
	}

	var mu sync.Mutex
	deliveries := map[string]int{}
	// Each relay's first delivery waits until the other relay is delivering
	// too, so both hold claimed rows at the same time.
	started := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var once [2]sync.Once
	sink := func(self int) outbox.Sink {
		return outbox.SinkFunc(func(ctx context.Context, ev *eventsv1.Event) error {
			once[self].Do(func() { close(started[self]) })
			select {
			case <-started[1-self]:
			case <-ctx.Done():
				return ctx.Err()
			}
			mu.Lock()
			deliveries[ev.GetId()]++
			mu.Unlock()
			return nil
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := range 2 {
		relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink(i)}, outbox.RelayOptions{BatchSize: 25})
		wg.Go(func() {
			for {
				n, err := relay.DeliverDue(t.Context())
				if err != nil {
					errs <- err
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(deliveries) != events {
		t.Fatalf("%d distinct events delivered, want %d", len(deliveries), events)
	}
	for id, n := range deliveries {
		if n != 1 {
			t.Fatalf("event %s delivered %d times", id, n)
		}
	}
	if got := outboxRows(t, pool); got != 0 {
		t.Fatalf("outbox rows = %d, want 0", got)
	}
}

func TestForgetDropsALeadsUndeliveredEvents(t *testing.T) {
	pool := newPool(t)
	publish(t, pool, "lead-1", &eventsv1.LeadCaptured{}, false)
	publish(t, pool, "lead-2", &eventsv1.LeadCaptured{}, false)
	// A parked event of lead-1 goes too.
	if _, err := pool.Exec(t.Context(), `UPDATE outbox SET dead_time = now() WHERE lead_id = 'lead-1'`); err != nil {
		t.Fatal(err)
	}
	var dropped int64
	err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		if dropped, err = outbox.Forget(t.Context(), tx, "other-workspace", "lead-1"); err != nil || dropped != 0 {
			return fmt.Errorf("forget in another workspace dropped %d (%v)", dropped, err)
		}
		dropped, err = outbox.Forget(t.Context(), tx, "acme", "lead-1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 2 {
		t.Fatalf("dropped %d deliveries, want lead-1's 2", dropped)
	}
	sink := newRecorder()
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink, "lifecycle": sink}, outbox.RelayOptions{})
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, ev := range sink.events() {
		if ev.GetLead() != "lead-2" {
			t.Fatalf("delivered an event of %s", ev.GetLead())
		}
	}
	if len(sink.events()) != 2 {
		t.Fatalf("delivered %d events, want lead-2's 2", len(sink.events()))
	}
}

func TestPublishAll(t *testing.T) {
	pool := newPool(t)
	msgs := []outbox.Message{
		{Workspace: "acme", Lead: "lead-1", Payload: &eventsv1.LeadCaptured{}},
		{Workspace: "acme", Lead: "lead-2", Payload: &eventsv1.LeadScored{}}, // no subscribers
		{Workspace: "globex", Lead: "lead-3", Payload: &eventsv1.LeadErased{}},
	}
	var evs []*eventsv1.Event
	err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		evs, err = newPublisher().PublishAll(t.Context(), tx, msgs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(msgs) {
		t.Fatalf("%d events returned, want %d", len(evs), len(msgs))
	}
	for i, ev := range evs {
		if ev.GetLead() != msgs[i].Lead || ev.GetWorkspace() != msgs[i].Workspace || ev.GetId() == "" {
			t.Fatalf("event %d = %v", i, ev)
		}
	}
	// LeadCaptured goes to two subscribers, LeadErased to one, LeadScored
	// nowhere: a row for each of the first two.
	if got := outboxRows(t, pool); got != 2 {
		t.Fatalf("outbox rows = %d, want 2", got)
	}
	scoring, lifecycle := newRecorder(), newRecorder()
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": scoring, "lifecycle": lifecycle}, outbox.RelayOptions{})
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(scoring.events()) != 2 || len(lifecycle.events()) != 1 {
		t.Fatalf("scoring got %d, lifecycle %d; want 2 and 1", len(scoring.events()), len(lifecycle.events()))
	}
}

// batchRecorder is a recorder that also takes batches; batches fail while
// failBatches is set, and single deliveries of refuse's lead are refused.
type batchRecorder struct {
	*recorder
	batches     [][]string // leads per batch call
	failBatches bool
	refuse      string
}

func (b *batchRecorder) Deliver(ctx context.Context, ev *eventsv1.Event) error {
	if ev.GetLead() == b.refuse {
		return status.Error(codes.InvalidArgument, "bad event")
	}
	return b.recorder.Deliver(ctx, ev)
}

func (b *batchRecorder) DeliverBatch(_ context.Context, evs []*eventsv1.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var leads []string
	for _, ev := range evs {
		leads = append(leads, ev.GetLead())
	}
	b.batches = append(b.batches, leads)
	if b.failBatches {
		return status.Error(codes.InvalidArgument, "one of these is bad")
	}
	b.got = append(b.got, evs...)
	for range evs {
		b.accepted <- struct{}{}
	}
	return nil
}

func TestRelayDeliversABatchPerSubscriber(t *testing.T) {
	pool := newPool(t)
	scoring, lifecycle := &batchRecorder{recorder: newRecorder()}, newRecorder()
	for i := range 5 {
		publish(t, pool, fmt.Sprintf("lead-%d", i), &eventsv1.LeadCaptured{}, false)
	}
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": scoring, "lifecycle": lifecycle}, outbox.RelayOptions{})
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 5 {
		t.Fatalf("claimed %d events (err %v), want 5", n, err)
	}
	if fmt.Sprint(scoring.batches) != "[[lead-0 lead-1 lead-2 lead-3 lead-4]]" {
		t.Fatalf("scoring's batches = %v, want one with all five events in order", scoring.batches)
	}
	if len(scoring.events()) != 5 || len(lifecycle.events()) != 5 {
		t.Fatalf("scoring got %d, lifecycle %d events; want 5 each", len(scoring.events()), len(lifecycle.events()))
	}
	if got := outboxRows(t, pool); got != 0 {
		t.Fatalf("outbox rows = %d, want 0", got)
	}
}

func TestFailedBatchIsDeliveredOneByOne(t *testing.T) {
	pool := newPool(t)
	scoring := &batchRecorder{recorder: newRecorder(), failBatches: true, refuse: "lead-1"}
	for i := range 3 {
		publish(t, pool, fmt.Sprintf("lead-%d", i), &eventsv1.LeadErased{}, false)
	}
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": scoring}, outbox.RelayOptions{})
	if _, err := relay.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(scoring.batches) != 1 {
		t.Fatalf("%d batch calls, want 1", len(scoring.batches))
	}
	var leads []string
	for _, ev := range scoring.events() {
		leads = append(leads, ev.GetLead())
	}
	slices.Sort(leads)
	if fmt.Sprint(leads) != "[lead-0 lead-2]" {
		t.Fatalf("delivered %v one by one, want lead-0 and lead-2", leads)
	}
	// Only the refused event is left, parked.
	live, parked := owed(t, pool)
	if len(live) != 0 || len(parked) != 1 {
		t.Fatalf("live %v, parked %v; want the refused event parked", live, parked)
	}
}

// TestQueueRidesOnTheCallersBatch: a few events wait on the caller's batch
// and go when it is sent; many are COPYed in bundles at once. Both are
// delivered.
func TestQueueRidesOnTheCallersBatch(t *testing.T) {
	pool := newPool(t)
	msgs := func(n int) []outbox.Message {
		out := make([]outbox.Message, n)
		for i := range out {
			out[i] = outbox.Message{Workspace: "acme", Lead: fmt.Sprintf("lead-%d", i), Payload: &eventsv1.LeadErased{}}
		}
		return out
	}
	err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO things (id) VALUES ('thing-1')`)
		if _, err := newPublisher().Queue(t.Context(), tx, b, msgs(2)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil || n != 0 {
			return fmt.Errorf("%d outbox rows before the batch was sent (err %v), want 0", n, err)
		}
		if err := postgres.SendBatch(t.Context(), tx, b); err != nil {
			return err
		}
		// Many go in bundles, at once.
		b = &pgx.Batch{}
		if _, err := newPublisher().Queue(t.Context(), tx, b, msgs(outbox.BundleFrom)); err != nil {
			return err
		}
		if err := tx.QueryRow(t.Context(), `SELECT count(*) FROM outbox_events`).Scan(&n); err != nil || n != 2+outbox.BundleFrom {
			return fmt.Errorf("%d outbox events before the batch was sent (err %v), want %d", n, err, 2+outbox.BundleFrom)
		}
		if err := postgres.SendBatch(t.Context(), tx, b); err != nil {
			return err
		}
		if err := tx.QueryRow(t.Context(), `SELECT count(*) FROM outbox_events`).Scan(&n); err != nil || n != 2+outbox.BundleFrom {
			return fmt.Errorf("%d outbox events after a large Queue (err %v), want %d", n, err, 2+outbox.BundleFrom)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sink := newRecorder()
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{})
	for {
		n, err := relay.DeliverDue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if len(sink.events()) != 2+outbox.BundleFrom {
		t.Fatalf("delivered %d events, want %d", len(sink.events()), 2+outbox.BundleFrom)
	}
}

func TestRelayBatchesAtMost500EventsPerCall(t *testing.T) {
	pool := newPool(t)
	msgs := make([]outbox.Message, 600)
	for i := range msgs {
		msgs[i] = outbox.Message{Workspace: "acme", Lead: fmt.Sprintf("lead-%d", i), Payload: &eventsv1.LeadErased{}}
	}
	if err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		_, err := newPublisher().PublishAll(t.Context(), tx, msgs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	scoring := &batchRecorder{recorder: newRecorder()}
	scoring.accepted = make(chan struct{}, len(msgs))
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": scoring}, outbox.RelayOptions{BatchSize: 600})
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 600 {
		t.Fatalf("claimed %d events (err %v), want 600", n, err)
	}
	var sizes []int
	for _, b := range scoring.batches {
		sizes = append(sizes, len(b))
	}
	slices.Sort(sizes)
	if fmt.Sprint(sizes) != "[100 500]" || len(scoring.events()) != 600 {
		t.Fatalf("batch sizes %v, %d events; want calls of 500 and 100 carrying all 600", sizes, len(scoring.events()))
	}
}

// publishPerLead publishes rounds events about each of leads, round by
// round, and returns each lead's event ids in publishing order.
func publishPerLead(t *testing.T, pool *pgxpool.Pool, leads, rounds int) map[string][]string {
	t.Helper()
	want := map[string][]string{}
	for range rounds {
		for l := range leads {
			lead := fmt.Sprintf("lead-%d", l)
			err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
				ev, err := newPublisher().Publish(t.Context(), tx, "acme", lead, &eventsv1.LeadErased{})
				if err == nil {
					want[lead] = append(want[lead], ev.GetId())
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return want
}

// byLead is each lead's delivered event ids, in delivery order.
func byLead(evs []*eventsv1.Event) map[string][]string {
	got := map[string][]string{}
	for _, ev := range evs {
		got[ev.GetLead()] = append(got[ev.GetLead()], ev.GetId())
	}
	return got
}

// deliverLaneByLane drains the outbox one lane after another, in passes of
// seven events, and returns the lane each lead's events went through (failing
// if a lead went through two) and everything delivered.
func deliverLaneByLane(t *testing.T, pool *pgxpool.Pool, lanes int) (map[string]int, []*eventsv1.Event) {
	t.Helper()
	laneOf := map[string]int{}
	var all []*eventsv1.Event
	for lane := range lanes {
		sink := &batchRecorder{recorder: newRecorder()}
		relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{BatchSize: 7})
		for {
			n, err := relay.DeliverLane(t.Context(), lane, lanes)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		for lead := range byLead(sink.events()) {
			if prev, ok := laneOf[lead]; ok {
				t.Fatalf("%s went through lanes %d and %d", lead, prev, lane)
			}
			laneOf[lead] = lane
		}
		all = append(all, sink.events()...)
	}
	return laneOf, all
}

// Lanes share out leads: every event of a lead goes through one lane, so a
// lead's events are never in two passes at once.
func TestLanesShareOutLeads(t *testing.T) {
	pool := newPool(t)
	want := publishPerLead(t, pool, 30, 3)
	laneOf, all := deliverLaneByLane(t, pool, 3)
	if got := byLead(all); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered per lead %v, want %v", got, want)
	}
	if len(slices.Compact(slices.Sorted(maps.Values(laneOf)))) < 2 {
		t.Fatalf("30 leads all went through one lane: %v", laneOf)
	}
}

// Run passes in several lanes at once and still delivers every event once,
// each lead's in order, to a subscriber that takes batches and to one that
// takes events one by one.
func TestRunWithLanesDeliversEachLeadInOrder(t *testing.T) {
	for _, batches := range []bool{true, false} {
		t.Run(fmt.Sprintf("batches %v", batches), func(t *testing.T) { testRunWithLanes(t, batches) })
	}
}

// runUntilAccepted runs relay until rec has accepted n events, then stops
// it.
func runUntilAccepted(t *testing.T, relay *outbox.Relay, rec *recorder, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	for range n {
		select {
		case <-rec.accepted:
		case <-time.After(30 * time.Second):
			cancel()
			t.Fatalf("only %d of %d events delivered", len(rec.events()), n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("relay: %v", err)
	}
}

func testRunWithLanes(t *testing.T, batches bool) {
	pool := newPool(t)
	want := publishPerLead(t, pool, 25, 4)
	rec := newRecorder()
	var sink outbox.Sink = rec
	if batches {
		sink = &batchRecorder{recorder: rec}
	}
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": sink}, outbox.RelayOptions{BatchSize: 7, Lanes: 4})
	runUntilAccepted(t, relay, rec, 100)
	if got := byLead(rec.events()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered per lead %v, want %v", got, want)
	}
}

// A pass that outlasts its lease renews it: no other relay takes its events
// meanwhile, so each goes out once.
func TestPassRenewsItsLease(t *testing.T) {
	pool := newPool(t)
	publish(t, pool, "lead-1", &eventsv1.LeadErased{}, false)
	release, called := make(chan struct{}), make(chan struct{})
	var calls sync.Once
	slow := outbox.SinkFunc(func(ctx context.Context, ev *eventsv1.Event) error {
		calls.Do(func() { close(called) })
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	const lease = 300 * time.Millisecond
	holder := newRelay(pool, map[string]outbox.Sink{"scoring": slow}, outbox.RelayOptions{Lease: lease})
	done := make(chan error, 1)
	go func() { _, err := holder.DeliverDue(t.Context()); done <- err }()
	<-called
	var leasedUntil time.Time
	if err := pool.QueryRow(t.Context(), `SELECT next_attempt_time FROM outbox`).Scan(&leasedUntil); err != nil {
		t.Fatal(err)
	}
	// Wait, on the database's clock, until the first lease has run out.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var past bool
		if err := pool.QueryRow(t.Context(), `SELECT now() > $1`, leasedUntil).Scan(&past); err != nil {
			t.Fatal(err)
		}
		if past {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the database clock never passed the first lease")
		}
		runtime.Gosched()
	}
	other := newRecorder()
	if n, err := newRelay(pool, map[string]outbox.Sink{"scoring": other}, outbox.RelayOptions{Lease: lease}).DeliverDue(t.Context()); err != nil || n != 0 {
		t.Fatalf("another relay took %d events (err %v) from a pass still delivering them", n, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := outboxRows(t, pool); got != 0 {
		t.Fatalf("outbox rows = %d after the pass, want 0", got)
	}
}

// A pass whose recording fails (the database dropped every connection
// while it delivered) records once the database answers again, instead of
// leaving its events leased.
func TestPassRecordsAfterLostConnections(t *testing.T) {
	pool := newPool(t)
	publish(t, pool, "lead-1", &eventsv1.LeadErased{}, false)
	admin, err := pgx.ConnectConfig(t.Context(), pool.Config().ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	cutOff := outbox.SinkFunc(func(ctx context.Context, ev *eventsv1.Event) error {
		// Every other connection to this database goes, the pool's too.
		_, err := admin.Exec(ctx, `
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()`)
		return err
	})
	relay := newRelay(pool, map[string]outbox.Sink{"scoring": cutOff}, outbox.RelayOptions{Lease: 10 * time.Second})
	if n, err := relay.DeliverDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("pass: %d events, err %v; want 1 recorded", n, err)
	}
	if got := outboxRows(t, pool); got != 0 {
		t.Fatalf("outbox rows = %d after the pass, want 0", got)
	}
}

// An error is cut to fit last_error on a character boundary: PostgreSQL
// refuses invalid UTF-8, and the pass could then never be recorded.
func TestTruncateKeepsUTF8Valid(t *testing.T) {
	long := strings.Repeat("a", 1999) + "é" + strings.Repeat("b", 10)
	got := outbox.Truncate(long)
	if !utf8.ValidString(got) || len(got) > 2000 || got != strings.Repeat("a", 1999) {
		t.Fatalf("truncate gave %d bytes (valid UTF-8: %v)", len(got), utf8.ValidString(got))
	}
	if got := outbox.Truncate("short"); got != "short" {
		t.Fatalf("truncate(short) = %q", got)
	}
}
