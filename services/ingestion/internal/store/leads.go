package store

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// MaxConsentsShown bounds the consents a lead carries in reads; an export
// has them all.
const MaxConsentsShown = 100

// resolveSQL is the id a lead id stands for: itself, or the survivor it was
// merged into. Merges repoint older tombstones, so one hop suffices.
const resolveSQL = `coalesce((SELECT merged_into FROM leads WHERE workspace_id = $1 AND id = $2), $2)`

// getLead reads a live lead with its latest consents; lock is "" or a
// locking clause such as "FOR UPDATE".
func getLeadLocked(ctx context.Context, q postgres.Querier, ws, id, lock string) (lead.Lead, error) {
	if !validID(id) {
		return lead.Lead{}, lead.ErrLeadNotFound
	}
	sql := `
SELECT ` + leadColumns + ` FROM leads
 WHERE workspace_id = $1 AND id = ` + resolveSQL + `
   AND erase_time IS NULL AND merged_into IS NULL ` + lock
	rows, err := q.Query(ctx, sql, ws, id)
	if err != nil {
		return lead.Lead{}, wrap("read lead", err)
	}
	l, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[leadRow])
	if err != nil {
		return lead.Lead{}, notFound(wrap("read lead", err), lead.ErrLeadNotFound)
	}
	out := l.toDomain()
	consents, err := readConsents(ctx, q, ws, []string{out.ID}, MaxConsentsShown)
	if err != nil {
		return lead.Lead{}, err
	}
	out.Consents = consents[out.ID]
	return out, nil
}

func getLead(ctx context.Context, q postgres.Querier, ws, id string) (lead.Lead, error) {
	return getLeadLocked(ctx, q, ws, id, "")
}

// readConsents returns the latest limit consents of each lead, oldest first.
func readConsents(ctx context.Context, q postgres.Querier, ws string, leadIDs []string, limit int) (map[string][]lead.Consent, error) {
	const sql = `
SELECT lead_id, purpose, text_version, granted, record_time, source, coalesce(ip_address, '')
  FROM (SELECT *, row_number() OVER (PARTITION BY lead_id ORDER BY record_time DESC, id DESC) AS n
          FROM consents WHERE workspace_id = $1 AND lead_id = ANY($2)) c
 WHERE n <= $3
 ORDER BY lead_id, record_time, id`
	rows, err := q.Query(ctx, sql, ws, leadIDs, limit)
	if err != nil {
		return nil, wrap("read consents", err)
	}
	out := map[string][]lead.Consent{}
	var leadID string
	var c lead.Consent
	_, err = pgx.ForEachRow(rows, []any{&leadID, &c.Purpose, &c.TextVersion, &c.Granted, &c.RecordTime, &c.Source, &c.IPAddress}, func() error {
		c.RecordTime = c.RecordTime.UTC()
		out[leadID] = append(out[leadID], c)
		return nil
	})
	return out, wrap("read consents", err)
}

// GetLead implements lead.Store.
func (s *Store) GetLead(ctx context.Context, ws, id string) (lead.Lead, error) {
	return getLead(ctx, s.pool, ws, id)
}

// ListLeads implements lead.Store.
func (s *Store) ListLeads(ctx context.Context, ws string, f lead.LeadFilter, after *lead.LeadCursor, limit int) ([]lead.Lead, error) {
	const q = `
SELECT ` + leadColumns + ` FROM leads
 WHERE workspace_id = $1 AND erase_time IS NULL AND merged_into IS NULL
   AND ($2 = '' OR source = $2)
   AND ($3 = '' OR country = $3)
   AND ($4 = '' OR company_domain = $4)
   AND ($5::timestamptz IS NULL OR update_time >= $5)
   AND ($6::timestamptz IS NULL OR (create_time, id) < ($6, $7::uuid))
 ORDER BY create_time DESC, id DESC
 LIMIT $8`
	var minUpdate, afterTime *time.Time
	var afterID *string
	if !f.MinUpdateTime.IsZero() {
		minUpdate = &f.MinUpdateTime
	}
	if after != nil {
		if !validID(after.ID) {
			return nil, nil
		}
		afterTime, afterID = &after.CreateTime, &after.ID
	}
	rows, err := s.pool.Query(ctx, q, ws, f.Source, f.Country, f.CompanyDomain, minUpdate, afterTime, afterID, limit)
	if err != nil {
		return nil, wrap("list leads", err)
	}
	leads, err := collectLeads(rows)
	if err != nil || len(leads) == 0 {
		return leads, wrap("list leads", err)
	}
	ids := make([]string, len(leads))
	for i, l := range leads {
		ids[i] = l.ID
	}
	consents, err := readConsents(ctx, s.pool, ws, ids, MaxConsentsShown)
	if err != nil {
		return nil, err
	}
	for i := range leads {
		leads[i].Consents = consents[leads[i].ID]
	}
	return leads, nil
}

// UpdateLead implements lead.Store.
func (s *Store) UpdateLead(ctx context.Context, ws, id string, version int64, channel string, apply func(*lead.Lead) ([]string, error)) (lead.Lead, error) {
	var out lead.Lead
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		l, err := getLeadLocked(ctx, tx, ws, id, "FOR UPDATE")
		if err != nil {
			return err
		}
		if version != 0 && version != l.Version {
			return lead.ErrEtagMismatch
		}
		changed, err := apply(&l)
		if err != nil {
			return err
		}
		if len(changed) == 0 {
			out = l
			return nil
		}
		now := s.now()
		if slices.Contains(changed, lead.FieldEmail) {
			l.AccountID = ""
			if l.CompanyDomain != "" {
				accounts, err := s.accountIDs(ctx, tx, ws, []string{l.CompanyDomain}, now)
				if err != nil {
					return err
				}
				l.AccountID = accounts[l.CompanyDomain]
			}
		}
		l.Version++
		l.UpdateTime = now
		b := &pgx.Batch{}
		queueLeadUpdate(b, l)
		queueChange(b, ws, l.ID, lead.KindUpdated, channel, changed, now)
		if err := postgres.SendBatch(ctx, tx, b); err != nil {
			if postgres.IsUniqueViolation(err) {
				return lead.ErrEmailTaken
			}
			return wrap("update lead", err)
		}
		out = l
		return s.publish(ctx, tx, ws, l.ID, &eventsv1.LeadUpdated{Attributes: attributes(l)})
	})
	return out, wrap("update lead", err)
}

// EraseLead implements lead.Store. The lead and the tombstones merged into
// it keep their ids and non-personal history; their email, names, phone,
// free text, custom attributes, activities and consent IP addresses go.
func (s *Store) EraseLead(ctx context.Context, ws, id string) error {
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		l, err := getLeadLocked(ctx, tx, ws, id, "FOR UPDATE")
		if err != nil {
			return err
		}
		const tombstones = `SELECT id FROM leads WHERE workspace_id = $1 AND merged_into = $2 ORDER BY id FOR UPDATE`
		rows, err := tx.Query(ctx, tombstones, ws, l.ID)
		if err != nil {
			return wrap("lock merged leads", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return wrap("lock merged leads", err)
		}
		ids = append([]string{l.ID}, ids...)
		now := s.now()
		const erase = `
UPDATE leads SET email = NULL, first_name = '', last_name = '', company = '', title = '', phone = '',
       custom_attributes = '{}', company_domain = '', account_id = NULL,
       version = version + 1, update_time = $3, erase_time = $3
 WHERE workspace_id = $1 AND id = ANY($2)`
		b := &pgx.Batch{}
		b.Queue(erase, ws, ids, now)
		b.Queue(`DELETE FROM activities WHERE workspace_id = $1 AND lead_id = ANY($2)`, ws, ids)
		b.Queue(`UPDATE consents SET ip_address = NULL WHERE workspace_id = $1 AND lead_id = ANY($2)`, ws, ids)
		queueChange(b, ws, l.ID, lead.KindErased, lead.ChannelAPI, nil, now)
		if err := postgres.SendBatch(ctx, tx, b); err != nil {
			return wrap("erase lead", err)
		}
		// Undelivered events may carry personal data (activity URLs, custom
		// attributes); LeadErased supersedes them.
		if _, err := outbox.Forget(ctx, tx, ws, ids...); err != nil {
			return err
		}
		for _, id := range ids {
			if err := s.publish(ctx, tx, ws, id, &eventsv1.LeadErased{}); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap("erase lead", err)
}

// Export implements lead.Store.
func (s *Store) Export(ctx context.Context, ws, id string) (lead.Export, error) {
	var out lead.Export
	// Repeatable read: the lead, its activities and its history as of one
	// moment.
	err := postgres.InTxWith(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		l, err := getLead(ctx, tx, ws, id)
		if err != nil {
			return err
		}
		all, err := readConsents(ctx, tx, ws, []string{l.ID}, lead.MaxExportItems)
		if err != nil {
			return err
		}
		l.Consents = all[l.ID]
		out.Lead = l
		if out.Activities, err = listActivities(ctx, tx, ws, l.ID, nil, lead.MaxExportItems); err != nil {
			return err
		}
		out.Changes, err = listChanges(ctx, tx, ws, l.ID, nil, lead.MaxExportItems)
		return err
	})
	return out, wrap("export lead", err)
}

// MergeLeads implements lead.Store.
func (s *Store) MergeLeads(ctx context.Context, ws string, m lead.Merge) (lead.Lead, error) {
	var out lead.Lead
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if !validID(m.SurvivorID) || !validID(m.SourceID) {
			return lead.ErrLeadNotFound
		}
		// A repeated merge finds the source already pointing at the
		// survivor and returns the survivor unchanged.
		var mergedInto *string
		const src = `SELECT merged_into FROM leads WHERE workspace_id = $1 AND id = $2 AND erase_time IS NULL`
		if err := tx.QueryRow(ctx, src, ws, m.SourceID).Scan(&mergedInto); err != nil {
			return notFound(wrap("read source lead", err), lead.ErrLeadNotFound)
		}
		if mergedInto != nil {
			survivor, err := getLead(ctx, tx, ws, m.SurvivorID)
			if err != nil {
				return err
			}
			if *mergedInto != survivor.ID {
				return lead.ErrLeadNotFound
			}
			out = survivor
			return nil
		}

		// Lock both in id order, so crossing merges cannot deadlock.
		ids := []string{m.SurvivorID, m.SourceID}
		slices.Sort(ids)
		const lock = `
SELECT ` + leadColumns + ` FROM leads
 WHERE workspace_id = $1 AND id = ANY($2) AND erase_time IS NULL AND merged_into IS NULL
 ORDER BY id FOR UPDATE`
		rows, err := tx.Query(ctx, lock, ws, ids)
		if err != nil {
			return wrap("lock leads", err)
		}
		locked, err := collectLeads(rows)
		if err != nil {
			return wrap("lock leads", err)
		}
		if len(locked) != 2 {
			return lead.ErrLeadNotFound
		}
		survivor, source := locked[0], locked[1]
		if survivor.ID != m.SurvivorID {
			survivor, source = source, survivor
		}

		now := s.now()
		changed := lead.FillEmpty(&survivor, source)
		b := &pgx.Batch{}
		// Activities move over; one whose client event id the survivor
		// already has loses its id rather than clash.
		b.Queue(`
UPDATE activities a SET lead_id = $3,
       client_event_id = CASE WHEN EXISTS (
           SELECT 1 FROM activities s
            WHERE s.workspace_id = $1 AND s.lead_id = $3 AND s.client_event_id = a.client_event_id)
         THEN NULL ELSE a.client_event_id END
 WHERE a.workspace_id = $1 AND a.lead_id = $2`, ws, source.ID, survivor.ID)
		b.Queue(`UPDATE consents SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2`, ws, source.ID, survivor.ID)
		b.Queue(`UPDATE lead_changes SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2`, ws, source.ID, survivor.ID)
		// The source's creation, kept on its row, moves as an entry of its
		// own: listed where the merge happened, with its own time.
		b.Queue(`
INSERT INTO lead_changes (workspace_id, lead_id, kind, source, changed_fields, change_time)
SELECT workspace_id, $3, '`+lead.KindCreated+`', create_source, creation_field_names(create_fields), create_time
  FROM leads WHERE workspace_id = $1 AND id = $2 AND create_fields IS NOT NULL`, ws, source.ID, survivor.ID)
		b.Queue(`UPDATE leads SET merged_into = $3 WHERE workspace_id = $1 AND merged_into = $2`, ws, source.ID, survivor.ID)
		// The source keeps only its email, so later captures of it reach
		// the survivor; the rest of its data now lives there.
		b.Queue(`
UPDATE leads SET merged_into = $3, first_name = '', last_name = '', company = '', title = '', phone = '',
       custom_attributes = '{}', version = version + 1, update_time = $4
 WHERE workspace_id = $1 AND id = $2`, ws, source.ID, survivor.ID, now)
		if len(changed) > 0 {
			survivor.Version++
			survivor.UpdateTime = now
			queueLeadUpdate(b, survivor)
		}
		queueChange(b, ws, survivor.ID, lead.KindMerged, lead.ChannelAPI, changed, now)
		if changed == nil {
			changed = []string{}
		}
		b.Queue(`
INSERT INTO lead_merges (workspace_id, survivor_id, source_id, request_id, actor, changed_fields, merge_time)
VALUES ($1, $2, $3, $4, $5, $6, $7)`, ws, survivor.ID, source.ID, m.RequestID, m.Actor, changed, now)
		if err := postgres.SendBatch(ctx, tx, b); err != nil {
			return wrap("merge leads", err)
		}
		if err := s.publish(ctx, tx, ws, source.ID, &eventsv1.LeadMerged{SurvivorLead: survivor.ID}); err != nil {
			return err
		}
		if len(changed) > 0 {
			if err := s.publish(ctx, tx, ws, survivor.ID, &eventsv1.LeadUpdated{Attributes: attributes(survivor)}); err != nil {
				return err
			}
		}
		out, err = getLead(ctx, tx, ws, survivor.ID)
		return err
	})
	if errors.Is(err, lead.ErrLeadNotFound) {
		return lead.Lead{}, err
	}
	return out, wrap("merge leads", err)
}
