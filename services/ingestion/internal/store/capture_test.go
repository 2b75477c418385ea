package store

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestInsertLeadsReportsEmailsTakenConcurrently stands in for a capture
// that lost the race for an email between looking it up and inserting it:
// the plain INSERT fails on the email key, and the batch goes again so that
// the other leads are still inserted and the taken one is reported.
func TestInsertLeadsReportsEmailsTakenConcurrently(t *testing.T) {
	pool := pgtest.NewPool(t, Schema, Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	now := time.Now().UTC().Truncate(time.Microsecond)
	fresh := func(email string) *entry {
		l := lead.Lead{ID: newID(), Workspace: "acme", Email: email, CreateTime: now, UpdateTime: now, Version: 1}
		return &entry{base: l, lead: l, isNew: true}
	}
	insert := func(leads ...*entry) []bool {
		t.Helper()
		var lost []bool
		err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
			var err error
			lost, err = insertLeads(t.Context(), tx, leads)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return lost
	}

	if lost := insert(fresh("taken@example.com")); lost[0] {
		t.Fatal("the first insert of an email was reported lost")
	}
	lost := insert(fresh("a@example.com"), fresh("taken@example.com"), fresh("b@example.com"))
	if lost[0] || !lost[1] || lost[2] {
		t.Fatalf("lost = %v, want only the taken email", lost)
	}
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM leads`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d leads, want 3 (one per email)", n)
	}
}
