package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
	"github.com/leadflow/leadflow/services/ingestion/internal/server"
	"github.com/leadflow/leadflow/services/ingestion/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type fixture struct {
	client ingestionv1.IngestionServiceClient
	pool   *pgxpool.Pool
	// Contexts carrying API keys: a writer and a reader of workspace
	// acme, a writer of workspace globex, and the internal token.
	acme, acmeReader, globex, internal, public context.Context
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	pool := pgtest.NewPool(t, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	svc := lead.NewService(store.New(pool, store.NewPublisher()))
	writerA, readerA, writerB := grpctest.NewKey(t), grpctest.NewKey(t), grpctest.NewKey(t)
	keys := grpctest.Keys{
		writerA: {Workspace: "acme", KeyID: "a-writer", Scopes: []string{auth.ScopeLeadsRead, auth.ScopeLeadsWrite}},
		readerA: {Workspace: "acme", KeyID: "a-reader", Scopes: []string{auth.ScopeLeadsRead}},
		writerB: {Workspace: "globex", KeyID: "b-writer", Scopes: []string{auth.ScopeAdmin}},
	}
	conn := grpctest.Serve(t, grpctest.Options{
		Policy:         server.Policy,
		Authn:          keys,
		SkipValidation: server.SkipValidation,
		Register: func(s *grpcserver.Server) {
			ingestionv1.RegisterIngestionServiceServer(s, server.New(svc))
		},
	})
	ctx := t.Context()
	return fixture{
		client:     ingestionv1.NewIngestionServiceClient(conn),
		pool:       pool,
		acme:       grpctest.WithKey(ctx, writerA),
		acmeReader: grpctest.WithKey(ctx, readerA),
		globex:     grpctest.WithKey(ctx, writerB),
		internal:   grpctest.WithKey(ctx, grpctest.InternalToken),
		public:     ctx,
	}
}

func (f fixture) create(t *testing.T, ctx context.Context, l *ingestionv1.Lead) *ingestionv1.CreateLeadResponse {
	t.Helper()
	resp, err := f.client.CreateLead(ctx, &ingestionv1.CreateLeadRequest{Lead: l})
	if err != nil {
		t.Fatalf("CreateLead: %v", err)
	}
	return resp
}

func (f fixture) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// historyEntries counts the entries of every lead's history: its creation,
// on the lead row, and the rest in lead_changes.
func (f fixture) historyEntries(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(t.Context(), `
SELECT (SELECT count(*) FROM lead_changes) + (SELECT count(*) FROM leads WHERE create_fields IS NOT NULL)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// events returns the outbox's events for one subscriber, oldest first.
func (f fixture) events(t *testing.T, subscriber string) []*eventsv1.Event {
	t.Helper()
	rows, err := f.pool.Query(t.Context(), `SELECT event FROM outbox_events WHERE $1 = ANY(subscribers) ORDER BY id, position`, subscriber)
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	var out []*eventsv1.Event
	for _, raw := range raws {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(raw, ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func eventTypes(evs []*eventsv1.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.GetType())
	}
	return out
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

// fieldViolations lists the fields a BadRequest detail of err names.
func fieldViolations(err error) []string {
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

func TestCaptureDeduplicatesEmailVariants(t *testing.T) {
	f := newFixture(t)
	var name string
	for i, tc := range []struct {
		email       string
		lead        *ingestionv1.Lead
		wantCreated bool
	}{
		{"Ada.Lovelace@Analytical.example", &ingestionv1.Lead{FirstName: "Ada", Company: "Analytical", CustomAttributes: map[string]string{"a": "1"}}, true},
		{"  ada.lovelace@analytical.EXAMPLE ", &ingestionv1.Lead{Title: "Countess", CustomAttributes: map[string]string{"b": "2"}}, false},
		{"ADA.LOVELACE@ANALYTICAL.EXAMPLE\t", &ingestionv1.Lead{FirstName: "Augusta", Company: ""}, false},
	} {
		tc.lead.Email = tc.email
		resp := f.create(t, f.acme, tc.lead)
		if resp.GetCreated() != tc.wantCreated {
			t.Fatalf("capture %d: created = %v, want %v", i, resp.GetCreated(), tc.wantCreated)
		}
		if name == "" {
			name = resp.GetLead().GetName()
		} else if resp.GetLead().GetName() != name {
			t.Fatalf("capture %d made lead %s, want %s", i, resp.GetLead().GetName(), name)
		}
	}
	if n := f.count(t, "leads"); n != 1 {
		t.Fatalf("%d leads stored, want 1", n)
	}
	got, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	l := got.GetLead()
	// The newest non-empty value wins; custom attributes are merged.
	if l.GetEmail() != "ada.lovelace@analytical.example" || l.GetFirstName() != "Augusta" ||
		l.GetCompany() != "Analytical" || l.GetTitle() != "Countess" ||
		l.GetCustomAttributes()["a"] != "1" || l.GetCustomAttributes()["b"] != "2" {
		t.Fatalf("merged lead = %v", l)
	}
	if l.GetCompanyDomain() != "analytical.example" || l.GetAccount() == "" {
		t.Fatalf("company domain %q, account %q: want the domain and an account", l.GetCompanyDomain(), l.GetAccount())
	}

	changes, err := f.client.ListLeadChanges(f.acme, &ingestionv1.ListLeadChangesRequest{Parent: name})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range changes.GetChanges() {
		kinds = append(kinds, c.GetKind())
		if c.GetSource() != lead.ChannelAPI {
			t.Fatalf("change source = %q", c.GetSource())
		}
	}
	if want := []string{"updated", "updated", "created"}; !slices.Equal(kinds, want) {
		t.Fatalf("history kinds = %v, want %v (newest first)", kinds, want)
	}
	if want := []string{"first_name"}; !slices.Equal(changes.GetChanges()[0].GetChangedFields(), want) {
		t.Fatalf("latest change fields = %v, want %v", changes.GetChanges()[0].GetChangedFields(), want)
	}
	// The creation, kept on the lead row, names the fields it set and
	// comes last when paging one entry at a time too.
	created := changes.GetChanges()[2].GetChangedFields()
	if !slices.Contains(created, "email") || !slices.Contains(created, "first_name") || !slices.Contains(created, "company") {
		t.Fatalf("creation fields = %v, want email, first_name and company among them", created)
	}
	var paged []string
	for token := ""; ; {
		page, err := f.client.ListLeadChanges(f.acme, &ingestionv1.ListLeadChangesRequest{Parent: name, PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.GetChanges() {
			paged = append(paged, c.GetKind())
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.Equal(paged, kinds) {
		t.Fatalf("history paged one by one = %v, want %v", paged, kinds)
	}

	// One LeadCaptured and two LeadUpdated per subscriber, with no personal data.
	for _, sub := range []string{"scoring", "lifecycle", "handoff"} {
		evs := f.events(t, sub)
		want := []string{"leadflow.events.v1.LeadCaptured", "leadflow.events.v1.LeadUpdated", "leadflow.events.v1.LeadUpdated"}
		if got := eventTypes(evs); !slices.Equal(got, want) {
			t.Fatalf("%s events = %v, want %v", sub, got, want)
		}
		for _, ev := range evs {
			if ev.GetWorkspace() != "acme" || "leads/"+ev.GetLead() != name {
				t.Fatalf("event envelope %v", ev)
			}
		}
	}
}

func TestCreateLeadRejectsInvalidInput(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		lead  *ingestionv1.Lead
		field string
	}{
		{"invalid email", &ingestionv1.Lead{Email: "not-an-email", FirstName: "Bob"}, "lead.email"},
		{"missing email", &ingestionv1.Lead{FirstName: "Bob"}, "lead.email"},
		{"email with display name", &ingestionv1.Lead{Email: "Bob <bob@example.com>"}, "lead.email"},
		{"invalid phone", &ingestionv1.Lead{Email: "bob@example.com", Phone: "call me maybe"}, "lead.phone"},
		{"unknown country", &ingestionv1.Lead{Email: "bob@example.com", Country: "Atlantis"}, "lead.country"},
		// PostgreSQL cannot store a NUL character: it must not become a 500.
		{"NUL character", &ingestionv1.Lead{Email: "bob@example.com", FirstName: "Bo\x00b"}, "lead.first_name"},
		{"NUL character in a custom attribute", &ingestionv1.Lead{Email: "bob@example.com",
			CustomAttributes: map[string]string{"plan": "pro\x00"}}, `lead.custom_attributes["plan"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.CreateLead(f.acme, &ingestionv1.CreateLeadRequest{Lead: tc.lead})
			wantCode(t, err, codes.InvalidArgument)
			if fields := fieldViolations(err); !slices.Contains(fields, tc.field) {
				t.Fatalf("field violations %v do not name %s", fields, tc.field)
			}
		})
	}
	for _, table := range []string{"leads", "lead_changes", "accounts", "outbox", "requests"} {
		if n := f.count(t, table); n != 0 {
			t.Fatalf("%d rows in %s after rejected captures, want 0", n, table)
		}
	}
}

func TestCreateLeadNormalises(t *testing.T) {
	f := newFixture(t)
	l := f.create(t, f.acme, &ingestionv1.Lead{
		Email: " Grace@Gmail.com ", FirstName: "  Grace ", Phone: "030 901820", Country: "Germany",
	}).GetLead()
	if l.GetEmail() != "grace@gmail.com" || l.GetFirstName() != "Grace" || l.GetPhone() != "+4930901820" || l.GetCountry() != "DE" {
		t.Fatalf("normalised lead = %v", l)
	}
	// Free mail: no company domain, no account.
	if l.GetCompanyDomain() != "" || l.GetAccount() != "" {
		t.Fatalf("free-mail lead has domain %q and account %q", l.GetCompanyDomain(), l.GetAccount())
	}
	if n := f.count(t, "accounts"); n != 0 {
		t.Fatalf("%d accounts for a free-mail lead", n)
	}
}

func TestAccountsLinkByDomain(t *testing.T) {
	f := newFixture(t)
	a := f.create(t, f.acme, &ingestionv1.Lead{Email: "one@initech.example"}).GetLead()
	b := f.create(t, f.acme, &ingestionv1.Lead{Email: "two@initech.example"}).GetLead()
	c := f.create(t, f.globex, &ingestionv1.Lead{Email: "three@initech.example"}).GetLead()
	if a.GetAccount() == "" || a.GetAccount() != b.GetAccount() {
		t.Fatalf("same-domain leads have accounts %q and %q", a.GetAccount(), b.GetAccount())
	}
	if c.GetAccount() == a.GetAccount() {
		t.Fatal("another workspace shares the account")
	}
}

func TestCreateLeadIsIdempotent(t *testing.T) {
	f := newFixture(t)
	first, err := f.client.CreateLead(f.acme, &ingestionv1.CreateLeadRequest{
		Lead: &ingestionv1.Lead{Email: "retry@example.com", FirstName: "First"}, RequestId: "req-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	// A retry returns the original result, even with another body.
	again, err := f.client.CreateLead(f.acme, &ingestionv1.CreateLeadRequest{
		Lead: &ingestionv1.Lead{Email: "other@example.com", FirstName: "Second"}, RequestId: "req-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(first, again) {
		t.Fatalf("retry returned %v, want %v", again, first)
	}
	if n := f.count(t, "leads"); n != 1 {
		t.Fatalf("%d leads, want 1", n)
	}
	if n := f.historyEntries(t); n != 1 {
		t.Fatalf("%d history entries, want 1: the retry changed nothing", n)
	}

	// Over REST the Idempotency-Key header arrives as metadata.
	keyed := metadata.AppendToOutgoingContext(f.acme, server.MetadataIdempotencyKey, "rest-key-1")
	one, err := f.client.CreateLead(keyed, &ingestionv1.CreateLeadRequest{Lead: &ingestionv1.Lead{Email: "rest@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	two, err := f.client.CreateLead(keyed, &ingestionv1.CreateLeadRequest{Lead: &ingestionv1.Lead{Email: "rest-other@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(one, two) {
		t.Fatalf("retry by idempotency key returned %v, want %v", two, one)
	}

	// Request ids are per workspace.
	other, err := f.client.CreateLead(f.globex, &ingestionv1.CreateLeadRequest{
		Lead: &ingestionv1.Lead{Email: "retry@example.com"}, RequestId: "req-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if other.GetLead().GetName() == first.GetLead().GetName() {
		t.Fatal("another workspace's request id returned this workspace's lead")
	}
}

func TestConcurrentCapturesMakeOneLead(t *testing.T) {
	f := newFixture(t)
	const n = 8
	var wg sync.WaitGroup
	results := make([]*ingestionv1.CreateLeadResponse, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = f.client.CreateLead(f.acme, &ingestionv1.CreateLeadRequest{Lead: &ingestionv1.Lead{
				Email: "Race@Example.com", CustomAttributes: map[string]string{fmt.Sprintf("k%d", i): "v"},
			}})
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("capture %d: %v", i, errs[i])
		}
		if results[i].GetCreated() {
			created++
		}
		if results[i].GetLead().GetName() != results[0].GetLead().GetName() {
			t.Fatalf("captures made leads %s and %s", results[i].GetLead().GetName(), results[0].GetLead().GetName())
		}
	}
	if created != 1 {
		t.Fatalf("%d captures report created, want 1", created)
	}
	if c := f.count(t, "leads"); c != 1 {
		t.Fatalf("%d leads, want 1", c)
	}
	got, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: results[0].GetLead().GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetLead().GetCustomAttributes()) != n {
		t.Fatalf("custom attributes %v: want all %d captures merged", got.GetLead().GetCustomAttributes(), n)
	}
}

func activity(typ typesv1.ActivityType, at time.Time, clientID string) *ingestionv1.Activity {
	return &ingestionv1.Activity{Type: typ, OccurTime: timestamppb.New(at), ClientEventId: clientID, Url: "https://acme.example/pricing"}
}

func TestActivities(t *testing.T) {
	f := newFixture(t)
	name := f.create(t, f.acme, &ingestionv1.Lead{Email: "act@example.com"}).GetLead().GetName()
	now := time.Now().UTC().Truncate(time.Second)
	record := func(a *ingestionv1.Activity) *ingestionv1.RecordActivityResponse {
		t.Helper()
		resp, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{Parent: name, Activity: a})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	first := record(activity(typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, now.Add(-time.Hour), "evt-1"))
	if first.GetDuplicate() {
		t.Fatal("first delivery reported as duplicate")
	}
	redelivered := record(activity(typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, now.Add(-time.Hour), "evt-1"))
	if !redelivered.GetDuplicate() || !proto.Equal(redelivered.GetActivity(), first.GetActivity()) {
		t.Fatalf("redelivery = %v, want the original with duplicate=true", redelivered)
	}
	// Late and out of order: an older activity arrives last.
	record(activity(typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN, now, "evt-2"))
	record(activity(typesv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD, now.Add(-48*time.Hour), ""))
	record(activity(typesv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD, now.Add(-72*time.Hour), ""))

	var types []typesv1.ActivityType
	req := &ingestionv1.ListActivitiesRequest{Parent: name, PageSize: 2}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		resp, err := f.client.ListActivities(f.acme, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetActivities() {
			types = append(types, a.GetType())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	want := []typesv1.ActivityType{
		typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN, typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW,
		typesv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD, typesv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD,
	}
	if !slices.Equal(types, want) {
		t.Fatalf("activities newest first = %v, want %v", types, want)
	}
	if n := f.count(t, "activities"); n != 4 {
		t.Fatalf("%d activities stored, want 4", n)
	}
	recorded := 0
	for _, ev := range f.events(t, "scoring") {
		if ev.GetType() == "leadflow.events.v1.ActivityRecorded" {
			recorded++
		}
	}
	if recorded != 4 {
		t.Fatalf("%d ActivityRecorded events, want 4 (none for the redelivery)", recorded)
	}

	// Validation: a future activity and a missing occur_time are refused.
	for _, a := range []*ingestionv1.Activity{
		activity(typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, now.Add(72*time.Hour), ""),
		{Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW},
		activity(typesv1.ActivityType_ACTIVITY_TYPE_UNSPECIFIED, now, ""),
	} {
		_, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{Parent: name, Activity: a})
		wantCode(t, err, codes.InvalidArgument)
	}
	_, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{
		Parent: "leads/00000000-0000-0000-0000-000000000000", Activity: activity(typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, now, ""),
	})
	wantCode(t, err, codes.NotFound)
}

func TestUnsubscribe(t *testing.T) {
	f := newFixture(t)
	name := f.create(t, f.acme, &ingestionv1.Lead{Email: "bye@example.com"}).GetLead().GetName()
	for range 2 {
		if _, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{
			Parent: name, Activity: activity(typesv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE, time.Now(), ""),
		}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	l := got.GetLead()
	if !l.GetUnsubscribed() {
		t.Fatal("lead not unsubscribed")
	}
	if len(l.GetConsents()) == 0 || l.GetConsents()[0].GetGranted() || l.GetConsents()[0].GetPurpose() != lead.PurposeMarketing {
		t.Fatalf("consents = %v, want a marketing withdrawal", l.GetConsents())
	}
	changes, err := f.client.ListLeadChanges(f.acme, &ingestionv1.ListLeadChangesRequest{Parent: name})
	if err != nil {
		t.Fatal(err)
	}
	if c := changes.GetChanges()[0]; c.GetKind() != lead.KindUnsubscribed {
		t.Fatalf("latest change = %v, want unsubscribed", c)
	}
	if len(changes.GetChanges()) != 2 {
		t.Fatalf("history %v: a second unsubscribe must not change the lead again", changes.GetChanges())
	}
}

func TestConsentOnCreateLead(t *testing.T) {
	f := newFixture(t)
	ctx := metadata.AppendToOutgoingContext(f.acme, server.MetadataForwardedFor, "203.0.113.7, 10.0.0.1")
	resp, err := f.client.CreateLead(ctx, &ingestionv1.CreateLeadRequest{
		Lead:    &ingestionv1.Lead{Email: "consent@example.com"},
		Consent: &ingestionv1.Consent{Purpose: "marketing", TextVersion: "v3", Granted: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	cs := resp.GetLead().GetConsents()
	if len(cs) != 1 {
		t.Fatalf("consents = %v, want 1", cs)
	}
	c := cs[0]
	if c.GetPurpose() != "marketing" || c.GetTextVersion() != "v3" || !c.GetGranted() ||
		c.GetSource() != "api" || c.GetIpAddress() != "203.0.113.7" || c.GetRecordTime() == nil {
		t.Fatalf("consent = %v", c)
	}
}

func (f fixture) createForm(t *testing.T, ctx context.Context, id string, form *ingestionv1.Form) *ingestionv1.Form {
	t.Helper()
	resp, err := f.client.CreateForm(ctx, &ingestionv1.CreateFormRequest{FormId: id, Form: form})
	if err != nil {
		t.Fatalf("CreateForm: %v", err)
	}
	return resp.GetForm()
}

func TestSubmitForm(t *testing.T) {
	f := newFixture(t)
	f.createForm(t, f.acme, "demo", &ingestionv1.Form{
		DisplayName:        "Book a demo",
		FieldMapping:       map[string]string{"Work Email": "email", "org": "company"},
		Source:             "website",
		Campaign:           "spring",
		ConsentText:        "You may email me.",
		ConsentTextVersion: "2026-01",
		ThankYouUrl:        "https://acme.example/thanks",
		HoneypotField:      "website_url",
		AllowedOrigins:     []string{"https://acme.example"},
	})
	ctx := metadata.AppendToOutgoingContext(f.public, server.MetadataForwardedFor, "198.51.100.23")
	resp, err := f.client.SubmitForm(ctx, &ingestionv1.SubmitFormRequest{Name: "forms/demo", Fields: map[string]string{
		"Work Email":      "Lin@Initech.example",
		"firstName":       "Lin",
		"last_name":       "Chen",
		"org":             "Initech",
		"employee_count":  "250",
		"favourite_color": "teal",
		"utm_medium":      "email",
		"consent":         "on",
		"website_url":     "",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetThankYouUrl() != "https://acme.example/thanks" {
		t.Fatalf("thank-you url = %q", resp.GetThankYouUrl())
	}
	list, err := f.client.ListLeads(f.acme, &ingestionv1.ListLeadsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetLeads()) != 1 {
		t.Fatalf("%d leads, want 1", len(list.GetLeads()))
	}
	l := list.GetLeads()[0]
	if l.GetEmail() != "lin@initech.example" || l.GetFirstName() != "Lin" || l.GetLastName() != "Chen" ||
		l.GetCompany() != "Initech" || l.GetEmployeeCount() != 250 || l.GetSource() != "website" || l.GetCampaign() != "spring" {
		t.Fatalf("lead = %v", l)
	}
	// Unknown fields are kept, never dropped; consent and the empty honeypot are not attributes.
	if want := map[string]string{"favourite_color": "teal", "utm_medium": "email"}; !mapsEqual(l.GetCustomAttributes(), want) {
		t.Fatalf("custom attributes = %v, want %v", l.GetCustomAttributes(), want)
	}
	if cs := l.GetConsents(); len(cs) != 1 || cs[0].GetTextVersion() != "2026-01" || !cs[0].GetGranted() ||
		cs[0].GetSource() != "forms/demo" || cs[0].GetIpAddress() != "198.51.100.23" || cs[0].GetPurpose() != "marketing" {
		t.Fatalf("consents = %v", l.GetConsents())
	}
	acts, err := f.client.ListActivities(f.acme, &ingestionv1.ListActivitiesRequest{Parent: l.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts.GetActivities()) != 1 || acts.GetActivities()[0].GetType() != typesv1.ActivityType_ACTIVITY_TYPE_FORM_SUBMITTED {
		t.Fatalf("activities = %v, want one FORM_SUBMITTED", acts.GetActivities())
	}

	// A second submission of a known email answers exactly the same.
	again, err := f.client.SubmitForm(f.public, &ingestionv1.SubmitFormRequest{Name: "forms/demo", Fields: map[string]string{
		"Work Email": "lin@initech.example",
	}})
	if err != nil || !proto.Equal(again, resp) {
		t.Fatalf("repeat submission = %v, %v; want %v", again, err, resp)
	}
	if n := f.count(t, "leads"); n != 1 {
		t.Fatalf("%d leads after a repeat submission, want 1", n)
	}

	t.Run("invalid email names the submitted field", func(t *testing.T) {
		_, err := f.client.SubmitForm(f.public, &ingestionv1.SubmitFormRequest{Name: "forms/demo", Fields: map[string]string{"Work Email": "nope"}})
		wantCode(t, err, codes.InvalidArgument)
		if fields := fieldViolations(err); !slices.Equal(fields, []string{"fields.Work Email"}) {
			t.Fatalf("field violations = %v", fields)
		}
	})
	t.Run("unknown form", func(t *testing.T) {
		_, err := f.client.SubmitForm(f.public, &ingestionv1.SubmitFormRequest{Name: "forms/nope", Fields: map[string]string{"email": "a@b.example"}})
		wantCode(t, err, codes.NotFound)
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestHoneypotStoresNothing(t *testing.T) {
	f := newFixture(t)
	f.createForm(t, f.acme, "trap", &ingestionv1.Form{HoneypotField: "nickname", ThankYouUrl: "https://acme.example/thanks", ConsentTextVersion: "v1"})
	resp, err := f.client.SubmitForm(f.public, &ingestionv1.SubmitFormRequest{Name: "forms/trap", Fields: map[string]string{
		"email": "bot@spam.example", "nickname": "i am a bot", "consent": "yes",
	}})
	if err != nil {
		t.Fatalf("a honeypot submission must look accepted: %v", err)
	}
	if resp.GetThankYouUrl() != "https://acme.example/thanks" {
		t.Fatalf("thank-you url = %q", resp.GetThankYouUrl())
	}
	for _, table := range []string{"leads", "activities", "consents", "lead_changes", "accounts", "outbox"} {
		if n := f.count(t, table); n != 0 {
			t.Fatalf("%d rows in %s after a honeypot submission, want 0", n, table)
		}
	}
}

func TestForms(t *testing.T) {
	f := newFixture(t)
	created := f.createForm(t, f.acme, "contact", &ingestionv1.Form{DisplayName: "Contact"})
	if created.GetName() != "forms/contact" || created.GetEtag() == "" {
		t.Fatalf("created form = %v", created)
	}

	t.Run("ids are global", func(t *testing.T) {
		_, err := f.client.CreateForm(f.globex, &ingestionv1.CreateFormRequest{FormId: "contact", Form: &ingestionv1.Form{}})
		wantCode(t, err, codes.AlreadyExists)
	})
	t.Run("generated id", func(t *testing.T) {
		form := f.createForm(t, f.acme, "", &ingestionv1.Form{DisplayName: "Anonymous"})
		if form.GetName() == "forms/" || form.GetName() == "" {
			t.Fatalf("name = %q", form.GetName())
		}
	})
	t.Run("request id makes create idempotent", func(t *testing.T) {
		req := &ingestionv1.CreateFormRequest{FormId: "webinar", RequestId: "form-req", Form: &ingestionv1.Form{DisplayName: "Webinar"}}
		one, err := f.client.CreateForm(f.acme, req)
		if err != nil {
			t.Fatal(err)
		}
		two, err := f.client.CreateForm(f.acme, req)
		if err != nil || !proto.Equal(one, two) {
			t.Fatalf("retry = %v, %v; want %v", two, err, one)
		}
	})
	t.Run("invalid mapping", func(t *testing.T) {
		_, err := f.client.CreateForm(f.acme, &ingestionv1.CreateFormRequest{FormId: "bad", Form: &ingestionv1.Form{
			FieldMapping: map[string]string{"mail": "emial"},
		}})
		wantCode(t, err, codes.InvalidArgument)
		if fields := fieldViolations(err); !slices.Equal(fields, []string{"form.field_mapping[mail]"}) {
			t.Fatalf("field violations = %v", fields)
		}
	})
	t.Run("other workspace cannot see it", func(t *testing.T) {
		_, err := f.client.GetForm(f.globex, &ingestionv1.GetFormRequest{Name: "forms/contact"})
		wantCode(t, err, codes.NotFound)
	})

	updated, err := f.client.UpdateForm(f.acme, &ingestionv1.UpdateFormRequest{
		Form:       &ingestionv1.Form{Name: "forms/contact", Etag: created.GetEtag(), ThankYouUrl: "https://acme.example/ok"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"thank_you_url"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if updated.GetForm().GetThankYouUrl() != "https://acme.example/ok" || updated.GetForm().GetDisplayName() != "Contact" ||
		updated.GetForm().GetEtag() == created.GetEtag() {
		t.Fatalf("updated form = %v", updated.GetForm())
	}
	_, err = f.client.UpdateForm(f.acme, &ingestionv1.UpdateFormRequest{
		Form:       &ingestionv1.Form{Name: "forms/contact", Etag: created.GetEtag(), DisplayName: "Stale"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	})
	wantCode(t, err, codes.Aborted)

	pub, err := f.client.GetPublicForm(f.internal, &ingestionv1.GetPublicFormRequest{Name: "forms/contact"})
	if err != nil {
		t.Fatal(err)
	}
	if pub.GetThankYouUrl() != "https://acme.example/ok" {
		t.Fatalf("public form = %v", pub)
	}
	_, err = f.client.GetPublicForm(f.acme, &ingestionv1.GetPublicFormRequest{Name: "forms/contact"})
	wantCode(t, err, codes.PermissionDenied)

	list, err := f.client.ListForms(f.acme, &ingestionv1.ListFormsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetForms()) != 3 {
		t.Fatalf("%d forms listed, want 3", len(list.GetForms()))
	}

	_, err = f.client.DeleteForm(f.acme, &ingestionv1.DeleteFormRequest{Name: "forms/contact", Etag: created.GetEtag()})
	wantCode(t, err, codes.Aborted)
	if _, err := f.client.DeleteForm(f.acme, &ingestionv1.DeleteFormRequest{Name: "forms/contact", Etag: updated.GetForm().GetEtag()}); err != nil {
		t.Fatal(err)
	}
	_, err = f.client.SubmitForm(f.public, &ingestionv1.SubmitFormRequest{Name: "forms/contact", Fields: map[string]string{"email": "x@y.example"}})
	wantCode(t, err, codes.NotFound)
}

func TestUpdateLead(t *testing.T) {
	f := newFixture(t)
	created := f.create(t, f.acme, &ingestionv1.Lead{Email: "edit@old.example", FirstName: "Old", Title: "CTO"}).GetLead()
	f.create(t, f.acme, &ingestionv1.Lead{Email: "taken@example.com"})

	resp, err := f.client.UpdateLead(f.acme, &ingestionv1.UpdateLeadRequest{
		Lead:       &ingestionv1.Lead{Name: created.GetName(), Etag: created.GetEtag(), FirstName: "New", Email: "edit@new.example"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"first_name", "email", "title"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := resp.GetLead()
	if l.GetFirstName() != "New" || l.GetTitle() != "" || l.GetEmail() != "edit@new.example" ||
		l.GetCompanyDomain() != "new.example" || l.GetAccount() == created.GetAccount() || l.GetEtag() == created.GetEtag() {
		t.Fatalf("updated lead = %v", l)
	}
	for _, tc := range []struct {
		name string
		req  *ingestionv1.UpdateLeadRequest
		code codes.Code
	}{
		{"stale etag", &ingestionv1.UpdateLeadRequest{
			Lead: &ingestionv1.Lead{Name: created.GetName(), Etag: created.GetEtag(), FirstName: "X"},
		}, codes.Aborted},
		{"email of another lead", &ingestionv1.UpdateLeadRequest{
			Lead: &ingestionv1.Lead{Name: created.GetName(), Email: "taken@example.com"},
		}, codes.AlreadyExists},
		{"output-only field", &ingestionv1.UpdateLeadRequest{
			Lead:       &ingestionv1.Lead{Name: created.GetName()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"unsubscribed"}},
		}, codes.InvalidArgument},
		{"invalid value", &ingestionv1.UpdateLeadRequest{
			Lead: &ingestionv1.Lead{Name: created.GetName(), Phone: "not a phone"},
		}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.UpdateLead(f.acme, tc.req)
			wantCode(t, err, tc.code)
		})
	}
}

func TestListLeads(t *testing.T) {
	f := newFixture(t)
	var names []string
	for i := range 5 {
		src := "webinar"
		if i%2 == 1 {
			src = "ads"
		}
		names = append(names, f.create(t, f.acme, &ingestionv1.Lead{
			Email: fmt.Sprintf("l%d@list.example", i), Source: src, Country: "FR",
		}).GetLead().GetName())
	}
	f.create(t, f.globex, &ingestionv1.Lead{Email: "other@list.example", Source: "webinar"})

	var got []string
	req := &ingestionv1.ListLeadsRequest{PageSize: 2, Source: "webinar", Country: "France"}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		resp, err := f.client.ListLeads(f.acmeReader, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range resp.GetLeads() {
			got = append(got, l.GetName())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if want := []string{names[4], names[2], names[0]}; !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v (newest first)", got, want)
	}
	// A token is bound to its filters.
	first, err := f.client.ListLeads(f.acme, &ingestionv1.ListLeadsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.client.ListLeads(f.acme, &ingestionv1.ListLeadsRequest{PageSize: 1, Source: "ads", PageToken: first.GetNextPageToken()})
	wantCode(t, err, codes.InvalidArgument)

	resp, err := f.client.ListLeads(f.acme, &ingestionv1.ListLeadsRequest{MinUpdateTime: timestamppb.New(time.Now().Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetLeads()) != 0 {
		t.Fatalf("min_update_time in the future listed %d leads", len(resp.GetLeads()))
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	f := newFixture(t)
	theirs := f.create(t, f.globex, &ingestionv1.Lead{Email: "secret@globex.example"}).GetLead()
	f.createForm(t, f.globex, "globex-form", &ingestionv1.Form{})
	at := timestamppb.Now()

	for name, call := range map[string]func() error{
		"get": func() error {
			_, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: theirs.GetName()})
			return err
		},
		"update": func() error {
			_, err := f.client.UpdateLead(f.acme, &ingestionv1.UpdateLeadRequest{Lead: &ingestionv1.Lead{Name: theirs.GetName(), FirstName: "x"}})
			return err
		},
		"delete": func() error {
			_, err := f.client.DeleteLead(f.acme, &ingestionv1.DeleteLeadRequest{Name: theirs.GetName()})
			return err
		},
		"export": func() error {
			_, err := f.client.ExportLead(f.acme, &ingestionv1.ExportLeadRequest{Name: theirs.GetName()})
			return err
		},
		"record activity": func() error {
			_, err := f.client.RecordActivity(f.acme, &ingestionv1.RecordActivityRequest{Parent: theirs.GetName(),
				Activity: &ingestionv1.Activity{Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, OccurTime: at}})
			return err
		},
		"list activities": func() error {
			_, err := f.client.ListActivities(f.acme, &ingestionv1.ListActivitiesRequest{Parent: theirs.GetName()})
			return err
		},
		"list changes": func() error {
			_, err := f.client.ListLeadChanges(f.acme, &ingestionv1.ListLeadChangesRequest{Parent: theirs.GetName()})
			return err
		},
		"merge": func() error {
			mine := f.create(t, f.acme, &ingestionv1.Lead{Email: "mine@acme.example"}).GetLead()
			_, err := f.client.MergeLeads(f.acme, &ingestionv1.MergeLeadsRequest{Name: mine.GetName(), SourceLead: theirs.GetName()})
			return err
		},
		"get form": func() error {
			_, err := f.client.GetForm(f.acme, &ingestionv1.GetFormRequest{Name: "forms/globex-form"})
			return err
		},
		"delete form": func() error {
			_, err := f.client.DeleteForm(f.acme, &ingestionv1.DeleteFormRequest{Name: "forms/globex-form"})
			return err
		},
		"malformed lead id": func() error {
			_, err := f.client.GetLead(f.acme, &ingestionv1.GetLeadRequest{Name: "leads/not-a-uuid"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { wantCode(t, call(), codes.NotFound) })
	}
	list, err := f.client.ListLeads(f.acme, &ingestionv1.ListLeadsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list.GetLeads() {
		if l.GetName() == theirs.GetName() {
			t.Fatal("another workspace's lead is listed")
		}
	}
	// Their lead is untouched.
	got, err := f.client.GetLead(f.globex, &ingestionv1.GetLeadRequest{Name: theirs.GetName()})
	if err != nil || got.GetLead().GetFirstName() != "" {
		t.Fatalf("their lead after our attempts: %v, %v", got, err)
	}
}

func TestPolicy(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"reader cannot write", f.acmeReader, func(ctx context.Context) error {
			_, err := f.client.CreateLead(ctx, &ingestionv1.CreateLeadRequest{Lead: &ingestionv1.Lead{Email: "a@b.example"}})
			return err
		}, codes.PermissionDenied},
		{"reader can read", f.acmeReader, func(ctx context.Context) error {
			_, err := f.client.ListLeads(ctx, &ingestionv1.ListLeadsRequest{})
			return err
		}, codes.OK},
		{"no key", f.public, func(ctx context.Context) error {
			_, err := f.client.ListLeads(ctx, &ingestionv1.ListLeadsRequest{})
			return err
		}, codes.Unauthenticated},
		{"internal caller has no workspace", f.internal, func(ctx context.Context) error {
			_, err := f.client.ListLeads(ctx, &ingestionv1.ListLeadsRequest{})
			return err
		}, codes.PermissionDenied},
		{"public form lookup needs the internal token", f.public, func(ctx context.Context) error {
			_, err := f.client.GetPublicForm(ctx, &ingestionv1.GetPublicFormRequest{Name: "forms/x"})
			return err
		}, codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(tc.ctx), tc.want) })
	}
}

func TestHandRaiserForm(t *testing.T) {
	f := newFixture(t)
	form := f.createForm(t, f.acme, "book-demo", &ingestionv1.Form{ActivityType: typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST})
	if form.GetActivityType() != typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST {
		t.Fatalf("form activity type = %v", form.GetActivityType())
	}
	submit := func(email string) *ingestionv1.Activity {
		t.Helper()
		if _, err := f.client.SubmitForm(f.public, &ingestionv1.SubmitFormRequest{Name: "forms/book-demo", Fields: map[string]string{"email": email}}); err != nil {
			t.Fatal(err)
		}
		list, err := f.client.ListLeads(f.acme, &ingestionv1.ListLeadsRequest{PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		acts, err := f.client.ListActivities(f.acme, &ingestionv1.ListActivitiesRequest{Parent: list.GetLeads()[0].GetName(), PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		return acts.GetActivities()[0]
	}
	if a := submit("hand@raiser.example"); a.GetType() != typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST {
		t.Fatalf("activity = %v, want DEMO_REQUEST", a)
	}

	// Back to a plain form through an update mask.
	if _, err := f.client.UpdateForm(f.acme, &ingestionv1.UpdateFormRequest{
		Form:       &ingestionv1.Form{Name: "forms/book-demo"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"activity_type"}},
	}); err != nil {
		t.Fatal(err)
	}
	if a := submit("plain@raiser.example"); a.GetType() != typesv1.ActivityType_ACTIVITY_TYPE_FORM_SUBMITTED {
		t.Fatalf("activity = %v, want FORM_SUBMITTED", a)
	}
	_, err := f.client.CreateForm(f.acme, &ingestionv1.CreateFormRequest{FormId: "bad-type", Form: &ingestionv1.Form{
		ActivityType: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW,
	}})
	wantCode(t, err, codes.InvalidArgument)
}
