package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
	"github.com/leadflow/leadflow/services/ingestion/internal/server"
	"github.com/leadflow/leadflow/services/ingestion/internal/store"
)

// findPII returns "table.column" for every column of the service's schema
// that holds one of needles, in any row: text, jsonb and arrays as text,
// bytea (the outbox's encoded events) as raw bytes.
func (f fixture) findPII(t *testing.T, needles ...string) []string {
	t.Helper()
	const cols = `
SELECT table_name, column_name, data_type FROM information_schema.columns
 WHERE table_schema = $1 AND data_type IN ('text', 'character varying', 'jsonb', 'ARRAY', 'bytea')
 ORDER BY table_name, column_name`
	rows, err := f.pool.Query(t.Context(), cols, store.Schema)
	if err != nil {
		t.Fatal(err)
	}
	type column struct{ Table, Name, Type string }
	columns, err := pgx.CollectRows(rows, pgx.RowToStructByPos[column])
	if err != nil {
		t.Fatal(err)
	}
	if len(columns) < 10 {
		t.Fatalf("found only %d columns to scan", len(columns))
	}
	var hits []string
	for _, c := range columns {
		col := pgx.Identifier{c.Name}.Sanitize()
		match := fmt.Sprintf("lower(%s::text) LIKE '%%' || lower($1) || '%%'", col)
		if c.Type == "bytea" {
			match = fmt.Sprintf("position(convert_to($1, 'UTF8') IN %s) > 0", col)
		}
		q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", pgx.Identifier{c.Table}.Sanitize(), match)
		for _, needle := range needles {
			var n int
			if err := f.pool.QueryRow(t.Context(), q, needle).Scan(&n); err != nil {
				t.Fatalf("scan %s.%s: %v", c.Table, c.Name, err)
			}
			if n > 0 {
				hits = append(hits, fmt.Sprintf("%s.%s holds %q", c.Table, c.Name, needle))
			}
		}
	}
	return hits
}

func TestEraseLeavesNoPersonalData(t *testing.T) {
	f := newFixture(t)
	const email = "Zelphine.Quorbatt@erase.example"
	needles := []string{"zelphine", "quorbatt", "4930901820", "192.0.2.77", "198.51.100.99"}

	ctx := metadata.AppendToOutgoingContext(f.acme, server.MetadataForwardedFor, "192.0.2.77")
	created, err := f.client.CreateLead(ctx, &ingestionv1.CreateLeadRequest{
		Lead: &ingestionv1.Lead{
			Email: email, FirstName: "Zelphine", LastName: "Quorbatt", Phone: "+49 30 901820",
			Company: "Erase Corp", Title: "Head of Data", Country: "DE",
		},
		RequestId: "erase-req",
		Consent:   &ingestionv1.Consent{Purpose: "marketing", TextVersion: "v1", Granted: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	name := created.GetLead().GetName()
	// A form submission adds an activity and a consent with another address.
	f.createForm(t, f.acme, "erase-form", &ingestionv1.Form{ConsentTextVersion: "f1"})
	if _, err := f.client.SubmitForm(metadata.AppendToOutgoingContext(f.public, server.MetadataForwardedFor, "198.51.100.99"),
		&ingestionv1.SubmitFormRequest{Name: "forms/erase-form", Fields: map[string]string{"email": email, "consent": "yes"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{Parent: name, Activity: &ingestionv1.Activity{
		Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, OccurTime: timestamppb.Now(),
		Url: "https://erase.example/welcome?who=zelphine.quorbatt", ClientEventId: "ev-1",
	}}); err != nil {
		t.Fatal(err)
	}
	// A second record of the same person, merged into the first, must go too.
	dup := f.create(t, f.acme, &ingestionv1.Lead{Email: "z.quorbatt@old.example", LastName: "Quorbatt"}).GetLead()
	if _, err := f.client.MergeLeads(f.acme, &ingestionv1.MergeLeadsRequest{Name: name, SourceLead: dup.GetName()}); err != nil {
		t.Fatal(err)
	}
	if hits := f.findPII(t, needles...); len(hits) == 0 {
		t.Fatal("the scan finds nothing even before erasure: it is broken")
	}

	if _, err := f.client.DeleteLead(f.acme, &ingestionv1.DeleteLeadRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	if hits := f.findPII(t, needles...); len(hits) > 0 {
		t.Fatalf("personal data survived erasure:\n%s", strings.Join(hits, "\n"))
	}
	for _, call := range []func() error{
		func() error { _, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: name}); return err },
		func() error {
			_, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: dup.GetName()})
			return err
		},
		func() error {
			_, err := f.client.ExportLead(f.acme, &ingestionv1.ExportLeadRequest{Name: name})
			return err
		},
		func() error {
			_, err := f.client.DeleteLead(f.acme, &ingestionv1.DeleteLeadRequest{Name: name})
			return err
		},
		// A retry of the request that created it does not bring it back.
		func() error {
			_, err := f.client.CreateLead(f.acme, &ingestionv1.CreateLeadRequest{Lead: &ingestionv1.Lead{Email: email}, RequestId: "erase-req"})
			return err
		},
	} {
		wantCode(t, call(), codes.NotFound)
	}
	// The tombstones stay, so ids in events remain valid.
	if n := f.count(t, "leads"); n != 2 {
		t.Fatalf("%d lead rows, want the 2 tombstones", n)
	}
	var erased []string
	for _, ev := range f.events(t, "lifecycle") {
		if ev.GetType() == "leadflow.events.v1.LeadErased" {
			erased = append(erased, "leads/"+ev.GetLead())
		}
	}
	slices.Sort(erased)
	want := []string{name, dup.GetName()}
	slices.Sort(want)
	if !slices.Equal(erased, want) {
		t.Fatalf("LeadErased for %v, want %v", erased, want)
	}

	// The same person coming back is a fresh lead.
	again := f.create(t, f.acme, &ingestionv1.Lead{Email: email})
	if !again.GetCreated() || again.GetLead().GetName() == name {
		t.Fatalf("capture after erasure = %v, want a fresh lead", again)
	}
}

func TestExportLead(t *testing.T) {
	f := newFixture(t)
	l := f.create(t, f.acme, &ingestionv1.Lead{Email: "export@example.com", FirstName: "Ex"}).GetLead()
	f.create(t, f.acme, &ingestionv1.Lead{Email: "export@example.com", Title: "CEO"})
	if _, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{Parent: l.GetName(), Activity: &ingestionv1.Activity{
		Type: typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST, OccurTime: timestamppb.Now(),
	}}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.client.ExportLead(f.acmeReader, &ingestionv1.ExportLeadRequest{Name: l.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	ex := resp.GetExport()
	if ex.GetLead().GetTitle() != "CEO" || len(ex.GetActivities()) != 1 || len(ex.GetChanges()) != 2 {
		t.Fatalf("export = %v", ex)
	}
}

func TestMergeLeads(t *testing.T) {
	f := newFixture(t)
	survivor := f.create(t, f.acme, &ingestionv1.Lead{Email: "sam@merge.example", FirstName: "Sam"}).GetLead()
	source, err := f.client.CreateLead(f.acme, &ingestionv1.CreateLeadRequest{
		Lead:    &ingestionv1.Lead{Email: "samuel@merge.example", FirstName: "Samuel", Title: "CFO", CustomAttributes: map[string]string{"tier": "gold"}},
		Consent: &ingestionv1.Consent{Purpose: "marketing", TextVersion: "v1", Granted: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	src := source.GetLead()
	now := time.Now()
	for _, a := range []struct {
		parent, client string
		at             time.Time
	}{
		{survivor.GetName(), "shared", now.Add(-3 * time.Hour)},
		{src.GetName(), "shared", now.Add(-2 * time.Hour)},
		{src.GetName(), "own", now.Add(-time.Hour)},
	} {
		if _, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{Parent: a.parent, Activity: &ingestionv1.Activity{
			Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, OccurTime: timestamppb.New(a.at), ClientEventId: a.client,
		}}); err != nil {
			t.Fatal(err)
		}
	}

	merged, err := f.client.MergeLeads(f.acme, &ingestionv1.MergeLeadsRequest{Name: survivor.GetName(), SourceLead: src.GetName(), RequestId: "m-1"})
	if err != nil {
		t.Fatal(err)
	}
	l := merged.GetLead()
	// The survivor's values win; its gaps are filled from the source.
	if l.GetName() != survivor.GetName() || l.GetFirstName() != "Sam" || l.GetTitle() != "CFO" ||
		l.GetCustomAttributes()["tier"] != "gold" || len(l.GetConsents()) != 1 {
		t.Fatalf("merged lead = %v", l)
	}
	acts, err := f.client.ListActivities(f.acme, &ingestionv1.ListActivitiesRequest{Parent: survivor.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts.GetActivities()) != 3 {
		t.Fatalf("survivor has %d activities, want all 3", len(acts.GetActivities()))
	}
	for _, a := range acts.GetActivities() {
		if !strings.HasPrefix(a.GetName(), survivor.GetName()+"/") {
			t.Fatalf("activity %s not under the survivor", a.GetName())
		}
	}
	changes, err := f.client.ListLeadChanges(f.acme, &ingestionv1.ListLeadChangesRequest{Parent: survivor.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range changes.GetChanges() {
		kinds = append(kinds, c.GetKind())
	}
	if want := []string{"merged", "created", "created"}; !slices.Equal(kinds, want) {
		t.Fatalf("survivor history = %v, want %v", kinds, want)
	}
	if n := f.count(t, "lead_merges"); n != 1 {
		t.Fatalf("%d merge audit records, want 1", n)
	}

	// The source is a tombstone that resolves to the survivor.
	got, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: src.GetName()})
	if err != nil || got.GetLead().GetName() != survivor.GetName() {
		t.Fatalf("get source after merge = %v, %v; want the survivor", got, err)
	}
	// A later capture of the source's email reaches the survivor.
	again := f.create(t, f.acme, &ingestionv1.Lead{Email: "samuel@merge.example", Industry: "Finance"})
	if again.GetCreated() || again.GetLead().GetName() != survivor.GetName() || again.GetLead().GetIndustry() != "Finance" {
		t.Fatalf("capture of the merged email = %v, want an update of the survivor", again)
	}
	// So does a bulk import's row, with enough rows that the import first
	// asks whether the workspace has merged leads at all (the rows go to two
	// writers).
	stream, err := f.client.ImportLeads(f.acme)
	if err != nil {
		t.Fatal(err)
	}
	bulk := &ingestionv1.ImportRows{}
	for i := range 300 {
		bulk.Rows = append(bulk.Rows, &ingestionv1.ImportRow{Lead: &ingestionv1.Lead{Email: fmt.Sprintf("bulk%d@merge.example", i)}})
	}
	bulk.Rows = append(bulk.Rows, &ingestionv1.ImportRow{Lead: &ingestionv1.Lead{Email: "samuel@merge.example", Title: "COO"}})
	if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Rows{Rows: bulk}}); err != nil {
		t.Fatal(err)
	}
	summary, err := stream.CloseAndRecv()
	if err != nil || summary.GetCreated() != 300 || summary.GetUpdated() != 1 {
		t.Fatalf("import with a merged email = %v, %v; want 300 created and the survivor updated", summary, err)
	}
	got, err = f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: survivor.GetName()})
	if err != nil || got.GetLead().GetTitle() != "COO" {
		t.Fatalf("survivor after the import = %v, %v; want its title from the merged email's row", got, err)
	}
	// Repeating the merge changes nothing.
	if _, err := f.client.MergeLeads(f.acme, &ingestionv1.MergeLeadsRequest{Name: survivor.GetName(), SourceLead: src.GetName()}); err != nil {
		t.Fatalf("repeated merge: %v", err)
	}
	if n := f.count(t, "lead_merges"); n != 1 {
		t.Fatalf("%d merge audit records after a repeat, want 1", n)
	}
	_, err = f.client.MergeLeads(f.acme, &ingestionv1.MergeLeadsRequest{Name: survivor.GetName(), SourceLead: survivor.GetName()})
	wantCode(t, err, codes.InvalidArgument)

	var mergedEvents []*eventsv1.Event
	for _, ev := range f.events(t, "handoff") {
		if ev.GetType() == "leadflow.events.v1.LeadMerged" {
			mergedEvents = append(mergedEvents, ev)
		}
	}
	if len(mergedEvents) != 1 || "leads/"+mergedEvents[0].GetLead() != src.GetName() {
		t.Fatalf("LeadMerged events = %v", mergedEvents)
	}
	payload, err := mergedEvents[0].GetPayload().UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	if "leads/"+payload.(*eventsv1.LeadMerged).GetSurvivorLead() != survivor.GetName() {
		t.Fatalf("LeadMerged payload = %v", payload)
	}
}

func TestImportLeads(t *testing.T) {
	f := newFixture(t)
	f.create(t, f.acme, &ingestionv1.Lead{Email: "known@import.example", FirstName: "Known"})

	stream, err := f.client.ImportLeads(f.acme)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *ingestionv1.ImportLeadsRequest) {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	row := func(line int64, l *ingestionv1.Lead) *ingestionv1.ImportLeadsRequest {
		return &ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Row{Row: &ingestionv1.ImportRow{Line: line, Lead: l}}}
	}
	send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Options{Options: &ingestionv1.ImportOptions{Source: "csv", Campaign: "q3"}}})
	send(row(2, &ingestionv1.Lead{Email: "one@import.example", FirstName: "One"}))
	send(row(3, &ingestionv1.Lead{Email: "not an email"}))
	send(row(4, &ingestionv1.Lead{Email: "Known@Import.example", Title: "VP"}))
	send(row(5, &ingestionv1.Lead{Email: "two@import.example", Phone: "banana", Country: "Narnia"}))
	send(row(6, &ingestionv1.Lead{Email: "ONE@import.example", LastName: "Later"}))
	send(row(7, nil))
	send(row(8, &ingestionv1.Lead{Email: "three@import.example", Source: "trade-show"}))
	send(row(9, &ingestionv1.Lead{Email: "four@import.example", Title: "C\x00O"})) // PostgreSQL cannot store a NUL
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCreated() != 2 || resp.GetUpdated() != 2 || resp.GetFailed() != 4 {
		t.Fatalf("summary = %v, want created 2, updated 2, failed 4", resp)
	}
	type rowErr struct {
		line  int64
		field string
	}
	var gotErrs []rowErr
	for _, e := range resp.GetErrors() {
		gotErrs = append(gotErrs, rowErr{e.GetLine(), e.GetField()})
		if e.GetReason() == "" {
			t.Fatalf("error for line %d has no reason", e.GetLine())
		}
	}
	if want := []rowErr{{3, "email"}, {5, "country"}, {7, "lead"}, {9, "title"}}; !slices.Equal(gotErrs, want) {
		t.Fatalf("errors = %v, want %v", gotErrs, want)
	}
	if !strings.Contains(resp.GetErrors()[1].GetReason(), "phone") {
		t.Fatalf("line 5's reason %q does not mention its second bad field", resp.GetErrors()[1].GetReason())
	}

	list, err := f.client.ListLeads(f.acme, &ingestionv1.ListLeadsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	byEmail := map[string]*ingestionv1.Lead{}
	for _, l := range list.GetLeads() {
		byEmail[l.GetEmail()] = l
	}
	if len(byEmail) != 3 {
		t.Fatalf("%d leads, want 3", len(byEmail))
	}
	if l := byEmail["one@import.example"]; l.GetFirstName() != "One" || l.GetLastName() != "Later" || l.GetSource() != "csv" || l.GetCampaign() != "q3" {
		t.Fatalf("imported lead = %v", l)
	}
	if l := byEmail["known@import.example"]; l.GetFirstName() != "Known" || l.GetTitle() != "VP" {
		t.Fatalf("updated lead = %v", l)
	}
	if l := byEmail["three@import.example"]; l.GetSource() != "trade-show" {
		t.Fatalf("row source lost: %v", l)
	}

	t.Run("options after rows", func(t *testing.T) {
		stream, err := f.client.ImportLeads(f.acme)
		if err != nil {
			t.Fatal(err)
		}
		send := func(req *ingestionv1.ImportLeadsRequest) { _ = stream.Send(req) }
		send(row(0, &ingestionv1.Lead{Email: "x@import.example"}))
		send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Options{Options: &ingestionv1.ImportOptions{}}})
		_, err = stream.CloseAndRecv()
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("line defaults to the row's position", func(t *testing.T) {
		stream, err := f.client.ImportLeads(f.acme)
		if err != nil {
			t.Fatal(err)
		}
		send := func(req *ingestionv1.ImportLeadsRequest) { _ = stream.Send(req) }
		send(row(0, &ingestionv1.Lead{Email: "y@import.example"}))
		send(row(0, &ingestionv1.Lead{Email: "broken"}))
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetErrors()) != 1 || resp.GetErrors()[0].GetLine() != 2 {
			t.Fatalf("errors = %v, want line 2", resp.GetErrors())
		}
	})
	t.Run("rows many to a message", func(t *testing.T) {
		stream, err := f.client.ImportLeads(f.acme)
		if err != nil {
			t.Fatal(err)
		}
		rows := func(leads ...*ingestionv1.Lead) *ingestionv1.ImportLeadsRequest {
			batch := &ingestionv1.ImportRows{}
			for _, l := range leads {
				batch.Rows = append(batch.Rows, &ingestionv1.ImportRow{Lead: l})
			}
			return &ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Rows{Rows: batch}}
		}
		send := func(req *ingestionv1.ImportLeadsRequest) {
			t.Helper()
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		send(rows(&ingestionv1.Lead{Email: "m1@import.example"}, &ingestionv1.Lead{Email: "broken"}, nil))
		send(row(0, &ingestionv1.Lead{Email: "m2@import.example"}))
		send(rows(&ingestionv1.Lead{Email: "M1@import.example", Title: "CTO"}, &ingestionv1.Lead{Email: "also broken"}))
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		var lines []int64
		for _, e := range resp.GetErrors() {
			lines = append(lines, e.GetLine())
		}
		// Lines count rows, not messages.
		if resp.GetCreated() != 2 || resp.GetUpdated() != 1 || resp.GetFailed() != 3 || !slices.Equal(lines, []int64{2, 3, 6}) {
			t.Fatalf("summary = %v, want created 2, updated 1, failed 3 on lines 2, 3 and 6", resp)
		}
		for name, batch := range map[string]*ingestionv1.ImportLeadsRequest{
			"empty":    rows(),
			"too many": rows(make([]*ingestionv1.Lead, 1001)...),
		} {
			stream, err := f.client.ImportLeads(f.acme)
			if err != nil {
				t.Fatal(err)
			}
			_ = stream.Send(batch)
			if _, err = stream.CloseAndRecv(); err == nil {
				t.Fatalf("%s rows message accepted", name)
			}
			wantCode(t, err, codes.InvalidArgument)
		}
	})
	t.Run("reader may not import", func(t *testing.T) {
		stream, err := f.client.ImportLeads(f.acmeReader)
		if err != nil {
			t.Fatal(err)
		}
		_, err = stream.CloseAndRecv()
		wantCode(t, err, codes.PermissionDenied)
	})
}

// TestImportManyRows crosses several batches of each writer, with an email's
// rows both within one batch and across batches: each email ends on one lead
// holding its last row's values, with one history entry per row.
func TestImportManyRows(t *testing.T) {
	f := newFixture(t)
	const emails, rows = 1500, 3000
	email := func(i int) string { return fmt.Sprintf("bulk%d@bulk%d.example", i%emails, i%emails%7) }
	// Some emails exist before the import, so batches mix new and known leads.
	for i := range 50 {
		f.create(t, f.acme, &ingestionv1.Lead{Email: email(i * 30), Title: "before"})
	}
	stream, err := f.client.ImportLeads(f.acme)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Row{Row: &ingestionv1.ImportRow{
			Lead: &ingestionv1.Lead{Email: email(i), Title: fmt.Sprint(i)},
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCreated() != emails-50 || resp.GetUpdated() != rows-emails+50 || resp.GetFailed() != 0 {
		t.Fatalf("summary = %v, want %d created and %d updated", resp, emails-50, rows-emails+50)
	}
	if n := f.count(t, "leads"); n != emails {
		t.Fatalf("%d leads, want %d", n, emails)
	}
	if n := f.count(t, "accounts"); n != 7 {
		t.Fatalf("%d accounts, want 7", n)
	}
	// Every email's second row is its last: its title must win.
	var wrong int
	if err := f.pool.QueryRow(t.Context(), `
SELECT count(*) FROM leads
 WHERE title <> (substring(email from 'bulk([0-9]+)@')::int + $1)::text`, emails).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Fatalf("%d leads do not hold their last row's title", wrong)
	}
	if n := f.historyEntries(t); n != rows+50 {
		t.Fatalf("%d history entries, want %d", n, rows+50)
	}
	captured, updated := 0, 0
	for _, ev := range f.events(t, "scoring") {
		switch ev.GetType() {
		case "leadflow.events.v1.LeadCaptured":
			captured++
		case "leadflow.events.v1.LeadUpdated":
			updated++
		}
	}
	// One LeadUpdated per imported batch that changed a known lead.
	if captured != emails || updated < 50 {
		t.Fatalf("%d LeadCaptured and %d LeadUpdated events, want %d and at least 50", captured, updated, emails)
	}
}

// TestImportBatchesGrow: a writer's first batch is small, so the database
// starts early, and each next one doubles up to lead.ImportBatchSize. A
// batch is one capture call, and its new leads share a creation time.
func TestImportBatchesGrow(t *testing.T) {
	f := newFixture(t)
	const rows = 16_600 // about 8,300 per writer: 500, 1,000, 2,000, 4,000 and the rest
	stream, err := f.client.ImportLeads(f.acme)
	if err != nil {
		t.Fatal(err)
	}
	for start := 0; start < rows; start += 1000 {
		end := min(start+1000, rows)
		msg := &ingestionv1.ImportRows{}
		for i := start; i < end; i++ {
			msg.Rows = append(msg.Rows, &ingestionv1.ImportRow{Lead: &ingestionv1.Lead{Email: fmt.Sprintf("grow%d@grow.example", i)}})
		}
		if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Rows{Rows: msg}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCreated() != rows {
		t.Fatalf("summary = %v, want %d created", resp, rows)
	}
	rs, err := f.pool.Query(t.Context(), `SELECT count(*) FROM leads GROUP BY create_time ORDER BY min(create_time)`)
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := pgx.CollectRows(rs, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	// The writers' batches interleave in time; each size comes once per writer.
	count := map[int]int{}
	for _, n := range sizes {
		if n > lead.ImportBatchSize {
			t.Fatalf("a batch of %d rows, over %d: %v", n, lead.ImportBatchSize, sizes)
		}
		count[n]++
	}
	if count[500] != 2 || count[1000] != 2 || count[2000] != 2 || count[lead.ImportBatchSize] != 2 || len(sizes) != 10 {
		t.Fatalf("batches of %v rows, want each writer's to go 500, 1000, 2000, %d and the rest", sizes, lead.ImportBatchSize)
	}
}

// TestImportBrokenOff cancels an import while its batches are stored: the
// stream fails, no writer is left behind, and running the import again
// stores every row once.
func TestImportBrokenOff(t *testing.T) {
	f := newFixture(t)
	const rows = 2500
	send := func(stream grpc.ClientStreamingClient[ingestionv1.ImportLeadsRequest, ingestionv1.ImportLeadsResponse], i int) error {
		return stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Row{Row: &ingestionv1.ImportRow{
			Lead: &ingestionv1.Lead{Email: fmt.Sprintf("cut%d@cut.example", i)},
		}}})
	}
	ctx, cancel := context.WithCancel(f.acme)
	stream, err := f.client.ImportLeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if err := send(stream, i); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.Canceled)

	stream, err = f.client.ImportLeads(f.acme)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if err := send(stream, i); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCreated()+resp.GetUpdated() != rows {
		t.Fatalf("summary = %v, want %d rows stored", resp, rows)
	}
	if n := f.count(t, "leads"); n != rows {
		t.Fatalf("%d leads, want %d", n, rows)
	}
}

// TestConcurrentImportsOfTheSameLeads runs two imports of one set of emails
// at once, in opposite orders: every email ends on one lead, and neither
// import fails.
func TestConcurrentImportsOfTheSameLeads(t *testing.T) {
	f := newFixture(t)
	const n = 700
	results := make([]*ingestionv1.ImportLeadsResponse, 2)
	errs := make([]error, 2)
	done := make(chan int, 2)
	for w := range 2 {
		go func() {
			defer func() { done <- w }()
			stream, err := f.client.ImportLeads(f.acme)
			if err != nil {
				errs[w] = err
				return
			}
			for i := range n {
				k := i
				if w == 1 {
					k = n - 1 - i
				}
				if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Row{Row: &ingestionv1.ImportRow{
					Lead: &ingestionv1.Lead{Email: fmt.Sprintf("same%d@race%d.example", k, k%5), Title: fmt.Sprint("writer ", w)},
				}}}); err != nil {
					errs[w] = err
					return
				}
			}
			results[w], errs[w] = stream.CloseAndRecv()
		}()
	}
	<-done
	<-done
	for w, err := range errs {
		if err != nil {
			t.Fatalf("import %d: %v", w, err)
		}
	}
	created := results[0].GetCreated() + results[1].GetCreated()
	updated := results[0].GetUpdated() + results[1].GetUpdated()
	if created != n || updated != n {
		t.Fatalf("created %d and updated %d in all, want %d each", created, updated, n)
	}
	if got := f.count(t, "leads"); got != n {
		t.Fatalf("%d leads, want %d", got, n)
	}
	if got := f.count(t, "accounts"); got != 5 {
		t.Fatalf("%d accounts, want 5", got)
	}
}
