package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/server"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newStore(t *testing.T) (*pgxpool.Pool, *store.Store) {
	t.Helper()
	pool := pgtest.NewPool(t, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	return pool, store.New(pool, outbox.NewPublisher("scoring", store.Schema, server.Routes))
}

// inTx runs fn with st bound to a transaction and commits it.
func inTx(t *testing.T, pool *pgxpool.Pool, st *store.Store, fn func(tx *store.Store) error) error {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(st.WithTx(tx)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func count(t *testing.T, pool *pgxpool.Pool, q string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOpenLeadTombstones checks that a lead with a tombstone is reported and
// neither created nor given the activity, unless tombstones are not
// followed (the end of a long merge chain).
func TestOpenLeadTombstones(t *testing.T) {
	ctx := context.Background()
	pool, st := newStore(t)
	if err := st.Tombstone(ctx, "acme", "erased", ""); err != nil {
		t.Fatal(err)
	}
	if err := st.Tombstone(ctx, "acme", "loser", "survivor"); err != nil {
		t.Fatal(err)
	}
	act := &scoring.Activity{ID: "a1", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, OccurTime: t0}
	for _, tc := range []struct {
		lead   string
		follow bool
		want   scoring.OpenedLead
	}{
		{lead: "erased", follow: true, want: scoring.OpenedLead{Tombstoned: true}},
		{lead: "loser", follow: true, want: scoring.OpenedLead{Tombstoned: true, Survivor: "survivor"}},
		{lead: "loser", follow: false, want: scoring.OpenedLead{Found: true, ActivityAdded: true}},
	} {
		var got scoring.OpenedLead
		if err := inTx(t, pool, st, func(tx *store.Store) error {
			var err error
			got, err = tx.OpenLead(ctx, scoring.OpenLeadRequest{Workspace: "acme", Lead: tc.lead, CreateTime: t0,
				FollowTombstones: tc.follow, Score: true, Activity: act})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got.Tombstoned != tc.want.Tombstoned || got.Survivor != tc.want.Survivor || got.Found != tc.want.Found ||
			got.ActivityAdded != tc.want.ActivityAdded {
			t.Errorf("%s (follow %v): got %+v, want %+v", tc.lead, tc.follow, got, tc.want)
		}
		leads := count(t, pool, `SELECT count(*) FROM leads WHERE id = $1`, tc.lead)
		acts := count(t, pool, `SELECT count(*) FROM activities WHERE lead_id = $1`, tc.lead)
		if want := map[bool]int{true: 1}[tc.want.Found]; leads != want || acts != want {
			t.Errorf("%s (follow %v): %d lead rows and %d activities, want %d", tc.lead, tc.follow, leads, acts, want)
		}
	}
}

// TestOpenLeadReadsAfterTheLock checks what the event handlers rely on
// since their reads share a round trip with the lock: a handler that waits
// for another transaction's lock on the lead (a rescore job's, say) reads
// the live model and the activities as that transaction left them.
func TestOpenLeadReadsAfterTheLock(t *testing.T) {
	ctx := context.Background()
	pool, st := newStore(t)
	svc := scoring.NewService(st)
	// The workspace with its default model, and the lead.
	if _, err := svc.GetModel(ctx, "acme", scoring.DefaultModelID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LockOrCreateLead(ctx, "acme", "l1", t0); err != nil {
		t.Fatal(err)
	}
	draft, err := svc.CreateModel(ctx, scoring.Model{Workspace: "acme", Rules: scoring.DefaultRules()}, "", false)
	if err != nil {
		t.Fatal(err)
	}

	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(ctx) }()
	var holderPID int
	if err := holder.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.WithTx(holder).GetLead(ctx, "acme", "l1", true); err != nil {
		t.Fatal(err)
	}

	type result struct {
		o   scoring.OpenedLead
		err error
	}
	done := make(chan result, 1)
	go func() {
		var o scoring.OpenedLead
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			o, err = st.WithTx(tx).OpenLead(ctx, scoring.OpenLeadRequest{Workspace: "acme", Lead: "l1",
				CreateTime: t0, FollowTombstones: true, Score: true})
			return err
		})
		done <- result{o, err}
	}()
	// Wait until the handler waits for the holder's lock.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var waiting bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
 WHERE $1 = ANY(pg_blocking_pids(pid)))`, holderPID).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the handler never waited for the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Meanwhile the holder publishes the draft and records an activity.
	if _, err := holder.Exec(ctx, `UPDATE models SET state = 'superseded' WHERE workspace_id = 'acme' AND state = 'published'`); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `UPDATE models SET state = 'published', version = 2 WHERE workspace_id = 'acme' AND id = $1`, draft.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.WithTx(holder).AddActivity(ctx, "acme", "l1", scoring.Activity{ID: "a1",
		Type: typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN, OccurTime: t0}); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.o.Found || !r.o.LiveFound || r.o.LiveID != draft.ID || r.o.LiveVersion != 2 || len(r.o.Activities) != 1 {
		t.Fatalf("opened %+v, want the lead with model %s version 2 live and one activity", r.o, draft.ID)
	}
}

// TestSaveScored checks that the lead, its crossing and its events are all
// written, however the outbox sends its rows (a batch the lead's writes
// join, a COPY they must precede, or nothing when no event is routed), and
// that a lead that is not stored fails the call.
func TestSaveScored(t *testing.T) {
	ctx := context.Background()
	pool, st := newStore(t)
	scored := &eventsv1.LeadScored{TotalScore: 60, ModelVersion: "1"}
	for _, tc := range []struct {
		name   string
		events []proto.Message
		outbox int
	}{
		{name: "no events"},
		{name: "batched", events: []proto.Message{&eventsv1.LeadQualified{TotalScore: 60}, scored}, outbox: 2},
		{name: "copied", events: func() []proto.Message {
			evs := make([]proto.Message, 20)
			for i := range evs {
				evs[i] = scored
			}
			return evs
		}(), outbox: 20},
		{name: "not routed", events: []proto.Message{&eventsv1.LeadCaptured{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lead := "lead-" + tc.name
			err := inTx(t, pool, st, func(tx *store.Store) error {
				l, err := tx.LockOrCreateLead(ctx, "acme", lead, t0)
				if err != nil {
					return err
				}
				l.TotalMilli, l.Grade, l.AboveThreshold = 60_000, "B", true
				l.Qualification = &scoring.Qualification{Reason: scoring.ReasonScoreThreshold, Time: t0, TotalScore: 60}
				return tx.SaveScored(ctx, l, &scoring.Crossing{Up: true, Time: t0, TotalScore: 60, ModelVersion: 1}, tc.events)
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.GetLead(ctx, "acme", lead, false)
			if err != nil {
				t.Fatal(err)
			}
			if got.TotalMilli != 60_000 || got.Grade != "B" || !got.AboveThreshold || got.Qualification == nil {
				t.Errorf("stored lead = %+v", got)
			}
			if n := count(t, pool, `SELECT count(*) FROM threshold_crossings WHERE lead_id = $1`, lead); n != 1 {
				t.Errorf("%d crossings, want 1", n)
			}
			if n := count(t, pool, `SELECT count(*) FROM outbox_events WHERE lead_id = $1`, lead); n != tc.outbox {
				t.Errorf("%d outbox rows, want %d", n, tc.outbox)
			}
		})
	}
	t.Run("missing lead", func(t *testing.T) {
		err := inTx(t, pool, st, func(tx *store.Store) error {
			return tx.SaveScored(ctx, scoring.Lead{Workspace: "acme", ID: "nobody"}, nil, []proto.Message{scored})
		})
		if !errors.Is(err, scoring.ErrLeadNotFound) {
			t.Fatalf("err = %v, want ErrLeadNotFound", err)
		}
	})
}

// TestOpenLeadAddsActivity checks that the new activity is stored once,
// properties and all, and is among the activities read after it.
func TestOpenLeadAddsActivity(t *testing.T) {
	ctx := context.Background()
	pool, st := newStore(t)
	act := &scoring.Activity{ID: "a1", Type: typesv1.ActivityType_ACTIVITY_TYPE_FORM_SUBMITTED, URL: "https://acme.com/form",
		Properties: map[string]string{"utm_source": "ads"}, OccurTime: t0}
	for i, wantAdded := range []bool{true, false} {
		var got scoring.OpenedLead
		if err := inTx(t, pool, st, func(tx *store.Store) error {
			var err error
			got, err = tx.OpenLead(ctx, scoring.OpenLeadRequest{Workspace: "acme", Lead: "l1", CreateTime: t0,
				FollowTombstones: true, Score: true, Activity: act})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got.ActivityAdded != wantAdded || len(got.Activities) != 1 {
			t.Fatalf("open %d: added %v with %d activities, want %v with 1", i, got.ActivityAdded, len(got.Activities), wantAdded)
		}
		if a := got.Activities[0]; a.ID != "a1" || a.URL != act.URL || a.Properties["utm_source"] != "ads" || !a.OccurTime.Equal(t0) {
			t.Fatalf("open %d: activity = %+v", i, a)
		}
	}
}

// A workspace first met by a transaction that rolls back is created again
// by the next one, even when the first met it twice (the second time seeing
// its own uncommitted row): the service must not remember it as existing.
func TestWorkspaceMetInARolledBackTransactionIsCreatedAgain(t *testing.T) {
	ctx := context.Background()
	pool, st, svc, facts := meetFreshWorkspaceThenRollBack(t)
	if err := inTx(t, pool, st, func(tx *store.Store) error {
		return svc.ApplyFacts(ctx, tx, "fresh", "l3", facts, t0)
	}); err != nil {
		t.Fatalf("after the rollback: %v", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM models WHERE workspace_id = 'fresh' AND state = 'published'`); n != 1 {
		t.Fatalf("%d live models, want the default", n)
	}
}

// The API heals a workspace remembered from a rolled-back transaction too:
// publishing a model there records the workspace first.
func TestPublishInAWorkspaceMetInARolledBackTransaction(t *testing.T) {
	ctx := context.Background()
	_, _, svc, _ := meetFreshWorkspaceThenRollBack(t)
	m, err := svc.CreateModel(ctx, scoring.Model{Workspace: "fresh", ID: "mine", Rules: scoring.DefaultRules()}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.PublishModel(ctx, "fresh", m.ID, m.Etag); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// meetFreshWorkspaceThenRollBack has a transaction meet workspace "fresh"
// twice (creating it, then seeing its own row) and roll back.
func meetFreshWorkspaceThenRollBack(t *testing.T) (*pgxpool.Pool, *store.Store, *scoring.Service, scoring.LeadFacts) {
	t.Helper()
	ctx := context.Background()
	pool, st := newStore(t)
	svc := scoring.NewService(st)
	facts := scoring.LeadFacts{Industry: "software", EmployeeCount: 200}
	errRollback := errors.New("roll back")
	err := inTx(t, pool, st, func(tx *store.Store) error {
		for _, lead := range []string{"l1", "l2"} {
			if err := svc.ApplyFacts(ctx, tx, "fresh", lead, facts, t0); err != nil {
				return err
			}
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("first transaction: %v", err)
	}
	return pool, st, svc, facts
}
