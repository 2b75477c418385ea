package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// RecordActivity implements lead.Store. The lead is share-locked, so an
// erasure cannot slip between the check and the insert; an unsubscribe
// locks it exclusively because it changes the lead.
func (s *Store) RecordActivity(ctx context.Context, ws string, a lead.Activity) (lead.Activity, bool, error) {
	var out lead.Activity
	var duplicate bool
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		lock := "FOR SHARE"
		if a.Type == lead.ActivityUnsubscribe {
			lock = "FOR UPDATE"
		}
		l, err := getLeadLocked(ctx, tx, ws, a.LeadID, lock)
		if err != nil {
			return err
		}
		now := s.now()
		a.ID, a.LeadID, a.CreateTime = newID(), l.ID, now
		const ins = `
INSERT INTO activities (id, workspace_id, lead_id, type, occur_time, url, content_id, client_event_id, properties, create_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (workspace_id, lead_id, client_event_id) WHERE client_event_id IS NOT NULL DO NOTHING`
		tag, err := tx.Exec(ctx, ins, a.ID, ws, a.LeadID, string(a.Type), a.OccurTime, a.URL, a.ContentID,
			nullable(a.ClientEventID), nonNil(a.Properties), a.CreateTime)
		if err != nil {
			return wrap("insert activity", err)
		}
		if tag.RowsAffected() == 0 {
			const orig = `SELECT ` + activityColumns + ` FROM activities
 WHERE workspace_id = $1 AND lead_id = $2 AND client_event_id = $3`
			rows, err := tx.Query(ctx, orig, ws, a.LeadID, a.ClientEventID)
			if err != nil {
				return wrap("read original activity", err)
			}
			r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[activityRow])
			if err != nil {
				return wrap("read original activity", err)
			}
			out, duplicate = r.toDomain(), true
			return nil
		}
		out = a
		if a.Type == lead.ActivityUnsubscribe {
			if err := s.unsubscribe(ctx, tx, l, now); err != nil {
				return err
			}
		}
		return s.publish(ctx, tx, ws, a.LeadID, activityRecorded(a))
	})
	return out, duplicate, wrap("record activity", err)
}

// unsubscribe marks l as unsubscribed and records the withdrawal of its
// marketing consent. Unsubscribing twice records one withdrawal per request
// but changes the lead once.
func (s *Store) unsubscribe(ctx context.Context, tx pgx.Tx, l lead.Lead, now time.Time) error {
	b := &pgx.Batch{}
	queueConsent(b, l.Workspace, l.ID, lead.Consent{
		Purpose: lead.PurposeMarketing, Granted: false, RecordTime: now, Source: lead.ChannelActivities,
	})
	already := l.Unsubscribed
	if !already {
		l.Unsubscribed = true
		l.Version++
		l.UpdateTime = now
		queueLeadUpdate(b, l)
		queueChange(b, l.Workspace, l.ID, lead.KindUnsubscribed, lead.ChannelActivities, []string{lead.FieldUnsubscribed}, now)
	}
	if err := postgres.SendBatch(ctx, tx, b); err != nil {
		return wrap("unsubscribe", err)
	}
	if already {
		return nil
	}
	return s.publish(ctx, tx, l.Workspace, l.ID, &eventsv1.LeadUpdated{Attributes: attributes(l)})
}

// ListActivities implements lead.Store.
func (s *Store) ListActivities(ctx context.Context, ws, leadID string, after *lead.ActivityCursor, limit int) ([]lead.Activity, error) {
	l, err := getLead(ctx, s.pool, ws, leadID)
	if err != nil {
		return nil, err
	}
	return listActivities(ctx, s.pool, ws, l.ID, after, limit)
}

func listActivities(ctx context.Context, q postgres.Querier, ws, leadID string, after *lead.ActivityCursor, limit int) ([]lead.Activity, error) {
	const sql = `
SELECT ` + activityColumns + ` FROM activities
 WHERE workspace_id = $1 AND lead_id = $2
   AND ($3::timestamptz IS NULL OR (occur_time, id) < ($3, $4::uuid))
 ORDER BY occur_time DESC, id DESC
 LIMIT $5`
	var afterTime *time.Time
	var afterID *string
	if after != nil {
		if !validID(after.ID) {
			return nil, nil
		}
		afterTime, afterID = &after.OccurTime, &after.ID
	}
	rows, err := q.Query(ctx, sql, ws, leadID, afterTime, afterID, limit)
	if err != nil {
		return nil, wrap("list activities", err)
	}
	out, err := collectActivities(rows)
	return out, wrap("list activities", err)
}

// ListChanges implements lead.Store.
func (s *Store) ListChanges(ctx context.Context, ws, leadID string, after *lead.ChangeCursor, limit int) ([]lead.Change, error) {
	l, err := getLead(ctx, s.pool, ws, leadID)
	if err != nil {
		return nil, err
	}
	return listChanges(ctx, s.pool, ws, l.ID, after, limit)
}

func listChanges(ctx context.Context, q postgres.Querier, ws, leadID string, after *lead.ChangeCursor, limit int) ([]lead.Change, error) {
	// A lead's creation is on its row (see capture), listed last as entry 0;
	// leads from before that keep it in lead_changes.
	const sql = `
SELECT id, kind, source, changed_fields, change_time FROM (
       SELECT id, kind, source, changed_fields, change_time FROM lead_changes
        WHERE workspace_id = $1 AND lead_id = $2 AND ($3::bigint IS NULL OR id < $3)
        UNION ALL
       SELECT 0, '` + lead.KindCreated + `', create_source, creation_field_names(create_fields), create_time FROM leads
        WHERE workspace_id = $1 AND id = $2 AND create_fields IS NOT NULL AND ($3::bigint IS NULL OR 0 < $3)) h
 ORDER BY id DESC
 LIMIT $4`
	var afterID *int64
	if after != nil {
		afterID = &after.ID
	}
	rows, err := q.Query(ctx, sql, ws, leadID, afterID, limit)
	if err != nil {
		return nil, wrap("list changes", err)
	}
	out, err := collectChanges(rows)
	return out, wrap("list changes", err)
}
