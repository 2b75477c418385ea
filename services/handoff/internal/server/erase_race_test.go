package server_test

import (
	"testing"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/pgtest"
)

// TestEventWaitingOnAnErasureDoesNotRecreateTheLead: an event about a lead
// whose erasure is under way waits for it; when the erasure commits, the
// event finds the lead erased instead of putting its routing copy back.
func TestEventWaitingOnAnErasureDoesNotRecreateTheLead(t *testing.T) {
	f := newFixture(t)
	const lead = "lead-erased-meanwhile"
	f.deliver(f.event("acme", lead, &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Country: "DE"}}))

	tx, err := f.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context()) //nolint:errcheck // committed below
	if err := f.app.Store.WithTx(tx).EraseLead(t.Context(), "acme", lead, f.clock.Now()); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := f.sink.DeliverEvent(f.internal, &eventsv1.DeliverEventRequest{
			Event: f.event("acme", lead, &eventsv1.LeadScored{TotalScore: 10}),
		})
		done <- err
	}()
	// Wait until the event's transaction waits for the erasure's.
	pgtest.AwaitLockWait(t, f.pool, done)
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if n := f.count(`SELECT count(*) FROM leads WHERE id = $1`, lead); n != 0 {
		t.Fatalf("%d routing copies of the erased lead, want 0", n)
	}
}

// count runs a count(*) query with args.
func (f *fixture) count(q string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(f.t.Context(), q, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	return n
}
