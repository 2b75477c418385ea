package server_test

import (
	"context"
	"testing"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/server"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

// TestEventWaitingOnAnErasureDoesNotRecreateTheLead: an event about a lead
// whose erasure is under way waits for it; when the erasure commits, the
// event finds the tombstone instead of making the lead anew.
func TestEventWaitingOnAnErasureDoesNotRecreateTheLead(t *testing.T) {
	f := newFixture(t)
	const lead = "lead-erased-meanwhile"
	f.deliver(t, f.event(t, lead, &eventsv1.LeadCaptured{Attributes: &eventsv1.LeadAttributes{Country: "DE"}}))

	// The erasure, held open until released.
	st := store.New(f.pool, outbox.NewPublisher("scoring", store.Schema, server.Routes))
	svc := scoring.NewService(st)
	erasing, release, erased := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		erased <- st.InTx(context.Background(), func(tx scoring.Store) error {
			if err := svc.EraseLead(context.Background(), tx, "acme", lead); err != nil {
				return err
			}
			close(erasing)
			<-release
			return nil
		})
	}()
	<-erasing

	done := make(chan error, 1)
	go func() {
		_, err := f.sink.DeliverEvent(grpctest.WithKey(context.Background(), grpctest.InternalToken),
			&eventsv1.DeliverEventRequest{Event: f.event(t, lead, &eventsv1.ActivityRecorded{
				Activity: "act-1", ActivityType: typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST,
			})})
		done <- err
	}()
	// Wait until the event's transaction waits for the erasure's.
	pgtest.AwaitLockWait(t, f.pool, done)
	close(release)
	if err := <-erased; err != nil {
		t.Fatalf("erase: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("deliver: %v", err)
	}
	for _, table := range []string{"leads", "activities"} {
		if n := count(t, f, `SELECT count(*) FROM `+table+` WHERE workspace_id = 'acme'`); n != 0 {
			t.Fatalf("%d rows in %s after the erasure, want 0", n, table)
		}
	}
}

func count(t *testing.T, f *fixture, q string) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(t.Context(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
