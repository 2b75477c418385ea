package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestInsertLeadsReportsTakenEmails stands in for a capture that lost the
// race for an email between looking it up and inserting it: the insert
// reports the email taken and stores none of its leads, and the transaction
// goes on, so that the capture can look the emails up and insert the rest.
func TestInsertLeadsReportsTakenEmails(t *testing.T) {
	pool := pgtest.NewPool(t, Schema, Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	now := time.Now().UTC().Truncate(time.Microsecond)
	fresh := func(email string) *entry {
		l := lead.Lead{ID: newID(), Workspace: "acme", Email: email, CreateTime: now, UpdateTime: now, Version: 1}
		return &entry{base: l, lead: l, isNew: true}
	}
	count := func(q postgres.Querier) int {
		t.Helper()
		var n int
		if err := q.QueryRow(t.Context(), `SELECT count(*) FROM leads`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		if taken, err := insertLeads(t.Context(), tx, []*entry{fresh("taken@example.com")}); err != nil || taken {
			return fmt.Errorf("first insert of an email: taken %v, err %v", taken, err)
		}
		batch := []*entry{fresh("a@example.com"), fresh("taken@example.com"), fresh("b@example.com")}
		if taken, err := insertLeads(t.Context(), tx, batch); err != nil || !taken {
			return fmt.Errorf("insert with a taken email: taken %v, err %v; want taken", taken, err)
		}
		if n := count(tx); n != 1 {
			return fmt.Errorf("%d leads after the refused insert, want 1", n)
		}
		if taken, err := insertLeads(t.Context(), tx, []*entry{batch[0], batch[2]}); err != nil || taken {
			return fmt.Errorf("insert of the rest: taken %v, err %v", taken, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(pool); n != 3 {
		t.Fatalf("%d leads, want 3 (one per email)", n)
	}
}

// A store learns the accounts of committed captures and links later leads
// of the same domain without looking them up; what a rolled-back
// transaction created is never learned, and workspaces stay apart.
func TestCapturesLearnCommittedAccounts(t *testing.T) {
	pool := pgtest.NewPool(t, Schema, Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	s := New(pool, outbox.NewPublisher("ingestion", Schema, nil))
	capture := func(ws, email string) lead.Lead {
		t.Helper()
		outs, err := s.Capture(t.Context(), ws, []lead.Capture{{
			Lead: lead.Lead{Email: email, CompanyDomain: "globex.example"}, Channel: lead.ChannelAPI,
		}})
		if err != nil {
			t.Fatal(err)
		}
		return outs[0].Lead
	}
	// An account created in a transaction that rolls back is not learned.
	errRollback := errors.New("roll back")
	err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		if _, err := s.capture(t.Context(), tx, "acme", []lead.Capture{{
			Lead: lead.Lead{Email: "gone@globex.example", CompanyDomain: "globex.example"}, Channel: lead.ChannelAPI,
		}}); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("capture in a rolled-back transaction: %v", err)
	}
	if known, _ := s.accounts.lookup("acme", []string{"globex.example"}); len(known) != 0 {
		t.Fatalf("learned %v from a rolled-back capture", known)
	}

	first := capture("acme", "ada@globex.example")
	if known, _ := s.accounts.lookup("acme", []string{"globex.example"}); known["globex.example"] != first.AccountID {
		t.Fatalf("after a committed capture the store knows %v, want %s", known, first.AccountID)
	}
	if second := capture("acme", "bob@globex.example"); second.AccountID != first.AccountID {
		t.Fatalf("second lead of the domain got account %s, want %s", second.AccountID, first.AccountID)
	}
	if other := capture("initech", "eve@globex.example"); other.AccountID == first.AccountID || other.AccountID == "" {
		t.Fatalf("another workspace's lead got account %q, want one of its own", other.AccountID)
	}
	var accounts int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM accounts`).Scan(&accounts); err != nil {
		t.Fatal(err)
	}
	if accounts != 2 {
		t.Fatalf("%d accounts, want one per workspace", accounts)
	}
}

// TestCreationFieldsAgreeWithTheSchema: a creation's fields are stored as
// bits of creationFields, and read back through the schema's
// creation_field_names. The two lists must agree name for name, and cover
// every field a capture can report.
func TestCreationFieldsAgreeWithTheSchema(t *testing.T) {
	pool := pgtest.NewPool(t, Schema, Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	var all []string
	if err := pool.QueryRow(t.Context(), `SELECT creation_field_names(-1)`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, creationFields) {
		t.Fatalf("the schema's creation fields are %v, the store's %v", all, creationFields)
	}
	// A creation that sets everything a capture can.
	var l lead.Lead
	full := lead.Lead{FirstName: "a", LastName: "b", Company: "c", Title: "d", Phone: "e", Country: "f", Industry: "g",
		Source: "h", Campaign: "i", EmployeeCount: 1, Custom: map[string]string{"k": "v"}}
	fields := append(append([]string{lead.FieldEmail}, lead.Apply(&l, full)...), lead.FieldUnsubscribed)
	bits, err := creationFieldBits(fields)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := pool.QueryRow(t.Context(), `SELECT creation_field_names($1)`, bits).Scan(&names); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, fields) {
		t.Fatalf("fields %v came back as %v", fields, names)
	}
	if _, err := creationFieldBits([]string{"shoe_size"}); err == nil {
		t.Fatal("a field without a bit was given one")
	}
}

// TestCreationFieldsMigrateToBits: creations stored as text[] before
// migration 00006 read back the same after it turned them into bits.
func TestCreationFieldsMigrateToBits(t *testing.T) {
	url := pgtest.NewEmptyURL(t)
	before := fstest.MapFS{}
	entries, err := fs.Glob(Migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range entries {
		if path.Base(name) >= "00006" {
			continue
		}
		data, err := fs.ReadFile(Migrations, name)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = &fstest.MapFile{Data: data}
	}
	if err := migrate.Up(t.Context(), url, Schema, before); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	created := []string{lead.FieldEmail, lead.FieldTitle, lead.FieldEmployeeCount, lead.FieldCustom}
	if _, err := conn.Exec(t.Context(), `
INSERT INTO ingestion.leads (id, workspace_id, email, create_time, update_time, create_source, create_fields)
VALUES (gen_random_uuid(), 'acme', 'old@example.com', now(), now(), 'import', $1),
       (gen_random_uuid(), 'acme', 'older@example.com', now(), now(), NULL, NULL)`, created); err != nil {
		t.Fatal(err)
	}
	if err := migrate.Up(t.Context(), url, Schema, Migrations); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(t.Context(), `
SELECT ingestion.creation_field_names(create_fields) FROM ingestion.leads ORDER BY email`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Equal(got[0], created) || got[1] != nil {
		t.Fatalf("creation fields after the migration = %q, want %q and none", got, created)
	}
}
