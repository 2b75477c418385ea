package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// maxResolveRounds bounds how often one capture call re-resolves emails
// whose insert lost a race to a concurrent capture.
const maxResolveRounds = 4

var errCaptureContention = apperr.Aborted("the lead changed concurrently too often; retry")

// entry is one lead a capture call touches.
type entry struct {
	base    lead.Lead // the lead before the call; a fresh lead when isNew
	lead    lead.Lead // the lead after the call
	isNew   bool
	caps    []int // indices of the captures applied to it, in input order
	changed bool
	created effect // when isNew, its creation, recorded on the lead row
}

// effect is what one capture did to its lead.
type effect struct {
	kind   string
	fields []string
	source string // the capture's channel, for a creation
}

// build applies the captures idx of caps to base, in order, and returns the
// result with each capture's effect.
func build(base lead.Lead, isNew bool, caps []lead.Capture, idx []int) (lead.Lead, []effect, bool) {
	l := base.Clone()
	effects := make([]effect, len(idx))
	changed := false
	for j, i := range idx {
		c := caps[i]
		fields := lead.Apply(&l, c.Lead)
		// Consent for marketing given or withdrawn with a capture decides
		// whether the lead may be emailed from now on.
		if c.Consent != nil && c.Consent.Purpose == lead.PurposeMarketing && l.Unsubscribed == c.Consent.Granted {
			l.Unsubscribed = !c.Consent.Granted
			fields = append(fields, lead.FieldUnsubscribed)
		}
		kind := lead.KindUpdated
		if isNew && j == 0 {
			kind = lead.KindCreated
			fields = slices.Insert(fields, 0, lead.FieldEmail)
		}
		changed = changed || len(fields) > 0
		effects[j] = effect{kind: kind, fields: fields}
	}
	return l, effects, changed
}

// Capture implements lead.Store.
func (s *Store) Capture(ctx context.Context, ws string, caps []lead.Capture) ([]lead.Outcome, error) {
	var out []lead.Outcome
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = s.capture(ctx, tx, ws, caps)
		return err
	})
	if err == nil {
		s.accounts.learn(ws, out)
	}
	return out, wrap("capture leads", err)
}

// capture is the heart of ingestion. Per email it inserts a new lead or,
// when the email has one already, locks it (or the survivor a merged lead
// points to). Emails are assumed new at first, bar those of merged leads:
// most captures bring new people, and an insert that hits an existing or
// concurrently inserted lead is cheap to redo as a lock and an update. Then
// every capture is applied in input order, its history, consent and activity
// are written, and the events are published.
func (s *Store) capture(ctx context.Context, tx pgx.Tx, ws string, caps []lead.Capture) ([]lead.Outcome, error) {
	now := s.now()
	byEmail := map[string][]int{}
	domainSet := map[string]bool{}
	for i, c := range caps {
		byEmail[c.Lead.Email] = append(byEmail[c.Lead.Email], i)
		if d := c.Lead.CompanyDomain; d != "" {
			domainSet[d] = true
		}
	}
	accounts, err := s.accountIDs(ctx, tx, ws, slices.Sorted(maps.Keys(domainSet)), now)
	if err != nil {
		return nil, err
	}

	entryOf := map[string]*entry{} // by email
	byID := map[string]*entry{}
	effectOf := make([]effect, len(caps))
	// Emails are handled in sorted order, so concurrent calls lock and
	// insert in the same order and do not deadlock each other.
	pending := slices.Sorted(maps.Keys(byEmail))
	for round := 0; len(pending) > 0; round++ {
		if round == maxResolveRounds {
			return nil, errCaptureContention
		}
		// In the first round only merged emails are looked up; later
		// rounds look up the emails of an insert that found a lead.
		lookup := pending
		if round == 0 {
			merged, err := mergedEmails(ctx, tx, ws, pending)
			if err != nil {
				return nil, err
			}
			lookup = slices.DeleteFunc(slices.Clone(pending), func(e string) bool { return !merged[e] })
		}
		found, err := lockByEmail(ctx, tx, ws, lookup)
		if err != nil {
			return nil, err
		}
		var fresh []*entry
		var freshEmails []string
		slab := make([]entry, len(pending)-len(found)) // the new leads' entries, in one allocation
		for _, email := range pending {
			if l, ok := found[email]; ok {
				e := byID[l.ID]
				if e == nil {
					e = &entry{base: l}
					byID[l.ID] = e
				}
				entryOf[email] = e
				continue
			}
			domain := caps[byEmail[email][0]].Lead.CompanyDomain
			base := lead.Lead{
				ID: newID(), Workspace: ws, Email: email, CompanyDomain: domain, AccountID: accounts[domain],
				CreateTime: now, UpdateTime: now, Version: 1,
			}
			e := &slab[len(fresh)]
			*e = entry{base: base, isNew: true, caps: byEmail[email], changed: true}
			var effects []effect
			e.lead, effects, _ = build(base, true, caps, e.caps)
			for j, i := range e.caps {
				effectOf[i] = effects[j]
			}
			e.created = effects[0]
			e.created.source = caps[e.caps[0]].Channel
			fresh = append(fresh, e)
			freshEmails = append(freshEmails, email)
		}
		taken, err := insertLeads(ctx, tx, fresh)
		if err != nil {
			return nil, err
		}
		if taken {
			// Some of these emails have a lead after all: look them all up.
			pending = freshEmails
			continue
		}
		for i, e := range fresh {
			entryOf[freshEmails[i]] = e
		}
		pending = nil
	}

	// Apply the captures to the leads that existed, in input order.
	var touched []*entry
	seen := map[*entry]bool{}
	for i, c := range caps {
		e := entryOf[c.Lead.Email]
		if !seen[e] {
			seen[e] = true
			touched = append(touched, e)
		}
		if !e.isNew {
			e.caps = append(e.caps, i)
		}
	}
	b := &pgx.Batch{}
	for _, e := range touched {
		if e.isNew {
			continue
		}
		var effects []effect
		e.lead, effects, e.changed = build(e.base, false, caps, e.caps)
		for j, i := range e.caps {
			effectOf[i] = effects[j]
		}
		if e.changed {
			e.lead.Version++
			e.lead.UpdateTime = now
			queueLeadUpdate(b, e.lead)
		}
	}

	out := make([]lead.Outcome, len(caps))
	var activities []lead.Activity
	changes := changeSet{ws: ws, at: now}
	for i, c := range caps {
		e := entryOf[c.Lead.Email]
		eff := effectOf[i]
		if eff.kind != lead.KindCreated { // a creation is recorded on the lead row
			changes.add(e.lead.ID, eff.kind, c.Channel, eff.fields)
		}
		if c.Consent != nil {
			queueConsent(b, ws, e.lead.ID, *c.Consent)
		}
		if c.Activity != nil {
			a := *c.Activity
			a.ID, a.LeadID, a.CreateTime = newID(), e.lead.ID, now
			queueActivity(b, ws, a)
			activities = append(activities, a)
		}
		out[i] = lead.Outcome{Lead: e.lead, Created: eff.kind == lead.KindCreated}
	}
	if err := changes.write(ctx, tx, b); err != nil {
		return nil, err
	}
	if err := postgres.SendBatch(ctx, tx, b); err != nil {
		return nil, wrap("write captures", err)
	}

	var msgs []outbox.Message
	for _, e := range touched {
		switch {
		case e.isNew:
			msgs = append(msgs, outbox.Message{Workspace: ws, Lead: e.lead.ID, Payload: &eventsv1.LeadCaptured{Attributes: attributes(e.lead)}})
		case e.changed:
			msgs = append(msgs, outbox.Message{Workspace: ws, Lead: e.lead.ID, Payload: &eventsv1.LeadUpdated{Attributes: attributes(e.lead)}})
		}
	}
	for _, a := range activities {
		msgs = append(msgs, outbox.Message{Workspace: ws, Lead: a.LeadID, Payload: activityRecorded(a)})
	}
	if _, err := s.pub.PublishAll(ctx, tx, msgs); err != nil {
		return nil, err
	}
	return out, nil
}

// lockByEmail locks the live lead of each email. An email with no live lead
// but a merged one resolves to (and locks) the survivor.
func lockByEmail(ctx context.Context, tx pgx.Tx, ws string, emails []string) (map[string]lead.Lead, error) {
	if len(emails) == 0 {
		return nil, nil
	}
	// One unique-index probe per email, in the (sorted) order given, so the
	// plan and the lock order hold whatever the table's statistics say; a
	// plain "email = ANY($2)" may scan the whole workspace while a big first
	// import outruns autovacuum's ANALYZE. LIMIT 1 keeps the subquery from
	// being flattened into a hash join.
	const live = `
SELECT l.* FROM unnest($2::text[]) AS e (email)
 CROSS JOIN LATERAL (
       SELECT ` + leadColumns + ` FROM leads
        WHERE workspace_id = $1 AND email = e.email AND merged_into IS NULL
        LIMIT 1
          FOR UPDATE) AS l`
	rows, err := tx.Query(ctx, live, ws, emails)
	if err != nil {
		return nil, wrap("lock leads", err)
	}
	leads, err := collectLeads(rows)
	if err != nil {
		return nil, wrap("lock leads", err)
	}
	found := make(map[string]lead.Lead, len(leads))
	for _, l := range leads {
		found[l.Email] = l
	}
	if len(found) == len(emails) {
		return found, nil
	}

	var missing []string
	for _, e := range emails {
		if _, ok := found[e]; !ok {
			missing = append(missing, e)
		}
	}
	const mergedInto = `
SELECT DISTINCT ON (email) email, merged_into FROM leads
 WHERE workspace_id = $1 AND email = ANY($2) AND merged_into IS NOT NULL
 ORDER BY email, update_time DESC`
	rows, err = tx.Query(ctx, mergedInto, ws, missing)
	if err != nil {
		return nil, wrap("find merged leads", err)
	}
	type redirect struct {
		Email      string `db:"email"`
		MergedInto string `db:"merged_into"`
	}
	redirects, err := pgx.CollectRows(rows, pgx.RowToStructByName[redirect])
	if err != nil || len(redirects) == 0 {
		return found, wrap("find merged leads", err)
	}
	ids := make([]string, 0, len(redirects))
	for _, r := range redirects {
		ids = append(ids, r.MergedInto)
	}
	slices.Sort(ids)
	const survivors = `
SELECT ` + leadColumns + ` FROM leads
 WHERE workspace_id = $1 AND id = ANY($2) AND erase_time IS NULL AND merged_into IS NULL
 ORDER BY id
   FOR UPDATE`
	rows, err = tx.Query(ctx, survivors, ws, ids)
	if err != nil {
		return nil, wrap("lock survivors", err)
	}
	leads, err = collectLeads(rows)
	if err != nil {
		return nil, wrap("lock survivors", err)
	}
	byID := map[string]lead.Lead{}
	for _, l := range leads {
		byID[l.ID] = l
	}
	for _, r := range redirects {
		if l, ok := byID[r.MergedInto]; ok {
			found[r.Email] = l
		}
	}
	return found, nil
}

// mergedProbeFrom is how many emails make mergedEmails first ask whether
// the workspace has merged leads at all.
const mergedProbeFrom = 64

// mergedEmails reports which of emails belong to merged leads. Most
// workspaces have none: for a bulk capture, one probe of the merged
// tombstones' index saves sending every email of the batch.
func mergedEmails(ctx context.Context, tx pgx.Tx, ws string, emails []string) (map[string]bool, error) {
	if len(emails) >= mergedProbeFrom {
		const probe = `
SELECT EXISTS (SELECT FROM leads WHERE workspace_id = $1 AND email IS NOT NULL AND merged_into IS NOT NULL)`
		var some bool
		if err := tx.QueryRow(ctx, probe, ws).Scan(&some); err != nil {
			return nil, wrap("find merged leads", err)
		}
		if !some {
			return nil, nil
		}
	}
	const q = `
SELECT DISTINCT email FROM leads
 WHERE workspace_id = $1 AND email = ANY($2) AND merged_into IS NOT NULL`
	rows, err := tx.Query(ctx, q, ws, emails)
	if err != nil {
		return nil, wrap("find merged leads", err)
	}
	merged := map[string]bool{}
	var email string
	_, err = pgx.ForEachRow(rows, []any{&email}, func() error {
		merged[email] = true
		return nil
	})
	return merged, wrap("find merged leads", err)
}

// newLeadColumns are the columns insertLeads writes, in its rows' order.
var newLeadColumns = []string{
	"id", "workspace_id", "email", "first_name", "last_name", "company", "title", "phone", "country",
	"industry", "employee_count", "source", "campaign", "custom_attributes", "company_domain",
	"account_id", "unsubscribed", "version", "create_time", "update_time", "create_source", "create_fields",
}

// insertLeads stores new leads with one COPY and reports taken when any of
// their emails has a live lead already, inserted before or by a concurrent
// capture (the COPY waits for that capture to finish). Then nothing is
// inserted: the COPY runs under a savepoint, rolled back so the caller can
// look the emails up and try again. Rows go in the order given (sorted by
// email), like every other capture's.
func insertLeads(ctx context.Context, tx pgx.Tx, leads []*entry) (taken bool, err error) {
	if len(leads) == 0 {
		return false, nil
	}
	var rows postgres.CopyRows
	rows.Grow(leadRowSize * len(leads))
	for _, e := range leads {
		if err := appendLeadRow(&rows, e); err != nil {
			return false, wrap("insert leads", err)
		}
	}
	err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		_, err := postgres.CopyFrom(ctx, sp, "leads", newLeadColumns, &rows)
		return err
	})
	if postgres.IsUniqueViolation(err) && postgres.ConstraintName(err) == "leads_email" {
		return true, nil
	}
	return false, wrap("insert leads", err)
}

// leadRowSize is about what a new lead's row takes in a COPY, so that a
// batch's rows are built without growing the buffer over and over.
const leadRowSize = 400

// creationFields are the fields a creation can set, in the order a capture
// lists them; leads.create_fields keeps a creation's as a bit set in this
// order, which migration 00006 (creation_field_names) spells out in SQL too.
// The order is fixed for good: new fields go at the end.
var creationFields = []string{
	lead.FieldEmail, lead.FieldFirstName, lead.FieldLastName, lead.FieldCompany, lead.FieldTitle, lead.FieldPhone,
	lead.FieldCountry, lead.FieldIndustry, lead.FieldSource, lead.FieldCampaign, lead.FieldEmployeeCount,
	lead.FieldCustom, lead.FieldUnsubscribed,
}

// creationFieldBits is fields as a bit set of creationFields.
func creationFieldBits(fields []string) (int32, error) {
	var bits int32
	for _, f := range fields {
		i := slices.Index(creationFields, f)
		if i < 0 {
			return 0, fmt.Errorf("creation field %q has no bit", f)
		}
		bits |= 1 << i
	}
	return bits, nil
}

// emptyJSON is the custom attributes of most leads.
var emptyJSON = []byte("{}")

// appendLeadRow appends e's new lead in newLeadColumns' order.
func appendLeadRow(rows *postgres.CopyRows, e *entry) error {
	l := &e.lead
	id, err := uuid.Parse(l.ID)
	if err != nil {
		return fmt.Errorf("lead id: %w", err)
	}
	fields, err := creationFieldBits(e.created.fields)
	if err != nil {
		return err
	}
	custom := emptyJSON
	if len(l.Custom) > 0 {
		if custom, err = json.Marshal(l.Custom); err != nil {
			return fmt.Errorf("custom attributes: %w", err)
		}
	}
	var account uuid.UUID // none: NULL
	if l.AccountID != "" {
		if account, err = uuid.Parse(l.AccountID); err != nil {
			return fmt.Errorf("account id: %w", err)
		}
	}
	rows.Row(len(newLeadColumns))
	rows.UUID(id, false)
	for _, s := range []string{l.Workspace, l.Email, l.FirstName, l.LastName, l.Company, l.Title, l.Phone, l.Country, l.Industry} {
		rows.Text(s)
	}
	rows.Int4(l.EmployeeCount)
	rows.Text(l.Source)
	rows.Text(l.Campaign)
	rows.JSONB(custom)
	rows.Text(l.CompanyDomain)
	rows.UUID(account, true)
	rows.Bool(l.Unsubscribed)
	rows.Int8(l.Version)
	rows.Timestamptz(l.CreateTime)
	rows.Timestamptz(l.UpdateTime)
	rows.Text(e.created.source)
	rows.Int4(fields)
	return nil
}

// changeSet collects the history entries of one capture call.
type changeSet struct {
	ws   string
	at   time.Time
	rows [][]any
}

func (c *changeSet) add(leadID, kind, source string, fields []string) {
	if fields == nil {
		fields = []string{}
	}
	c.rows = append(c.rows, []any{c.ws, binaryUUID(leadID), kind, source, fields, c.at})
}

// write stores the entries, queued on b when they are few.
func (c *changeSet) write(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	columns := []string{"workspace_id", "lead_id", "kind", "source", "changed_fields", "change_time"}
	return wrap("write history", postgres.Insert(ctx, tx, b, "lead_changes", columns, c.rows))
}

// accountIDs returns the account of each domain, creating missing ones.
// Accounts the store knows are not looked up.
func (s *Store) accountIDs(ctx context.Context, tx pgx.Tx, ws string, domains []string, now time.Time) (map[string]string, error) {
	ids, domains := s.accounts.lookup(ws, domains)
	if len(domains) == 0 {
		return ids, nil
	}
	// A probe per domain, for the reason lockByEmail gives.
	const sel = `
SELECT a.domain, a.id FROM unnest($2::text[]) AS d (domain)
 CROSS JOIN LATERAL (
       SELECT domain, id FROM accounts WHERE workspace_id = $1 AND domain = d.domain LIMIT 1) AS a`
	read := func(domains []string) error {
		rows, err := tx.Query(ctx, sel, ws, domains)
		if err != nil {
			return err
		}
		var domain, id string
		_, err = pgx.ForEachRow(rows, []any{&domain, &id}, func() error {
			ids[domain] = id
			return nil
		})
		return err
	}
	if err := read(domains); err != nil {
		return nil, wrap("read accounts", err)
	}
	var missing, newIDs []string
	for _, d := range domains {
		if _, ok := ids[d]; !ok {
			missing = append(missing, d)
			newIDs = append(newIDs, newID())
		}
	}
	if len(missing) == 0 {
		return ids, nil
	}
	// A concurrent capture may create the same account: its insert wins and
	// the second read sees it.
	const ins = `
INSERT INTO accounts (id, workspace_id, domain, create_time)
SELECT id, $1, domain, $4 FROM unnest($2::uuid[], $3::text[]) AS t (id, domain)
ON CONFLICT (workspace_id, domain) DO NOTHING`
	if _, err := tx.Exec(ctx, ins, ws, newIDs, missing, now); err != nil {
		return nil, wrap("create accounts", err)
	}
	if err := read(missing); err != nil {
		return nil, wrap("read accounts", err)
	}
	return ids, nil
}

// CaptureOnce implements lead.Store. The request record is claimed first, so
// a concurrent retry waits for this call and then returns its lead.
func (s *Store) CaptureOnce(ctx context.Context, ws, requestID string, c lead.Capture) (lead.Outcome, error) {
	var out lead.Outcome
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if requestID != "" {
			prior, done, err := s.claimRequest(ctx, tx, ws, opCreateLead, requestID)
			if err != nil {
				return err
			}
			if done {
				l, err := getLead(ctx, tx, ws, prior.resourceID)
				if errors.Is(err, lead.ErrLeadNotFound) {
					return lead.ErrRequestWasErased
				}
				out = lead.Outcome{Lead: l, Created: prior.created}
				return err
			}
		}
		outs, err := s.capture(ctx, tx, ws, []lead.Capture{c})
		if err != nil {
			return err
		}
		l, err := getLead(ctx, tx, ws, outs[0].Lead.ID)
		if err != nil {
			return err
		}
		out = lead.Outcome{Lead: l, Created: outs[0].Created}
		if requestID != "" {
			return finishRequest(ctx, tx, ws, opCreateLead, requestID, l.ID, out.Created)
		}
		return nil
	})
	return out, wrap("create lead", err)
}

// Operations whose requests are idempotent.
const (
	opCreateLead = "CreateLead"
	opCreateForm = "CreateForm"
)

type priorRequest struct {
	resourceID string
	created    bool
}

// claimRequest records requestID as in progress, or, if an earlier call
// already completed it, returns that call's outcome with done=true. A
// concurrent call with the same id blocks on the insert until the first
// commits or rolls back.
func (s *Store) claimRequest(ctx context.Context, tx pgx.Tx, ws, op, requestID string) (priorRequest, bool, error) {
	const claim = `
INSERT INTO requests (workspace_id, operation, request_id, create_time) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING`
	tag, err := tx.Exec(ctx, claim, ws, op, requestID, s.now())
	if err != nil {
		return priorRequest{}, false, wrap("claim request", err)
	}
	if tag.RowsAffected() == 1 {
		return priorRequest{}, false, nil
	}
	const read = `
SELECT resource_id, created FROM requests WHERE workspace_id = $1 AND operation = $2 AND request_id = $3`
	var p priorRequest
	var id *string
	if err := tx.QueryRow(ctx, read, ws, op, requestID).Scan(&id, &p.created); err != nil {
		return priorRequest{}, false, wrap("read request", err)
	}
	if id == nil {
		return priorRequest{}, false, lead.ErrRequestInFlight
	}
	p.resourceID = *id
	return p, true, nil
}

func finishRequest(ctx context.Context, tx pgx.Tx, ws, op, requestID, resourceID string, created bool) error {
	const q = `
UPDATE requests SET resource_id = $4, created = $5
 WHERE workspace_id = $1 AND operation = $2 AND request_id = $3`
	_, err := tx.Exec(ctx, q, ws, op, requestID, resourceID, created)
	return wrap("finish request", err)
}
