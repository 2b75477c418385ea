package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
)

// The event handlers' reads and writes, batched: a relay delivers a hundred
// events in one transaction and their handlers run one after another, so
// each round trip to the server is paid a hundred times per call.

// HoldLead implements scoring.Store.
func (s *Store) HoldLead(ctx context.Context, workspace, id string) error {
	if s.tx == nil {
		return errors.New("hold lead outside a transaction")
	}
	_, err := s.tx.Exec(ctx, postgres.LockKey, workspace, id)
	return err
}

// OpenLead implements scoring.Store. Its statements go in one batch, which
// PostgreSQL runs in order, each with a snapshot of its own (READ
// COMMITTED): the reads after the lock see what the lock waited for, as
// separate statements would.
func (s *Store) OpenLead(ctx context.Context, r scoring.OpenLeadRequest) (scoring.OpenedLead, error) {
	if s.tx == nil {
		return scoring.OpenedLead{}, errors.New("open lead outside a transaction")
	}
	if u := unitOf(ctx); u != nil {
		if o := u.leads[postgres.Key{Workspace: r.Workspace, ID: r.Lead}]; o != nil {
			return u.open(o, r)
		}
	}
	var out scoring.OpenedLead
	b := &pgx.Batch{}
	b.Queue(postgres.LockKey, r.Workspace, r.Lead)
	if err := queueOpenLead(b, r, &out); err != nil {
		return scoring.OpenedLead{}, err
	}
	if err := s.tx.SendBatch(ctx, b).Close(); err != nil {
		return scoring.OpenedLead{}, fmt.Errorf("open lead: %w", err)
	}
	return opened(out), nil
}

// qAddActivity stores an activity, only onto the lead locked before: none
// if it had a tombstone.
const qAddActivity = `
INSERT INTO activities (workspace_id, id, lead_id, type, url, content_id, properties, occur_time)
SELECT $1::text, $2::text, $3::text, $4::smallint, $5::text, $6::text, $7::jsonb, $8::timestamptz
 WHERE EXISTS (SELECT FROM leads WHERE workspace_id = $1 AND id = $3)
ON CONFLICT (workspace_id, id) DO NOTHING`

// queueOpenLead queues on b, for one round trip, what OpenLead does once
// the lead's turn is taken (postgres.LockKey, queued before); *out is
// filled in when b is sent (then see opened).
func queueOpenLead(b *pgx.Batch, r scoring.OpenLeadRequest, out *scoring.OpenedLead) error {
	if r.FollowTombstones {
		const qTombstone = `SELECT survivor_id FROM lead_tombstones WHERE workspace_id = $1 AND lead_id = $2`
		b.Queue(qTombstone, r.Workspace, r.Lead).QueryRow(func(row pgx.Row) error {
			var survivor *string
			err := row.Scan(&survivor)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			out.Tombstoned, out.Survivor = err == nil, deref(survivor)
			return err
		})
		// A tombstoned lead is not brought back, even by a tombstone
		// written since the lookup above.
		const qCreate = `
INSERT INTO leads (workspace_id, id, create_time)
SELECT $1::text, $2::text, $3::timestamptz
 WHERE NOT EXISTS (SELECT FROM lead_tombstones WHERE workspace_id = $1 AND lead_id = $2)
ON CONFLICT DO NOTHING`
		b.Queue(qCreate, r.Workspace, r.Lead, r.CreateTime)
	} else {
		const qCreate = `INSERT INTO leads (workspace_id, id, create_time) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		b.Queue(qCreate, r.Workspace, r.Lead, r.CreateTime)
	}
	const qLock = `SELECT ` + leadColumns + ` FROM leads WHERE workspace_id = $1 AND id = $2 FOR UPDATE`
	b.Queue(qLock, r.Workspace, r.Lead).Query(func(rows pgx.Rows) error {
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[leadRow])
		if err != nil || len(rs) == 0 {
			return err
		}
		out.Found = true
		out.Lead, err = rs[0].toDomain()
		return err
	})
	if r.Score {
		b.Queue(qLiveModel, r.Workspace).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&out.LiveID, &out.LiveVersion, &out.LiveEtag)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			out.LiveFound = err == nil
			return err
		})
	}
	if a := r.Activity; a != nil {
		props, err := activityProperties(*a)
		if err != nil {
			return err
		}
		b.Queue(qAddActivity, r.Workspace, a.ID, r.Lead, int16(a.Type), a.URL, a.ContentID, props, a.OccurTime).
			Exec(func(tag pgconn.CommandTag) error {
				out.ActivityAdded = tag.RowsAffected() == 1
				return nil
			})
	}
	if r.Score {
		const qActivities = `
SELECT lead_id, id, type, url, content_id, properties, occur_time
  FROM activities
 WHERE workspace_id = $1 AND lead_id = $2`
		b.Queue(qActivities, r.Workspace, r.Lead).Query(func(rows pgx.Rows) error {
			acts, err := scanActivities(rows)
			out.Activities = acts[r.Lead]
			return err
		})
	}
	return nil
}

// SaveScored implements scoring.Store: the lead and its crossing travel with
// the outbox's INSERT and NOTIFY, one round trip in all when the events are
// few (the outbox COPYs many first).
func (s *Store) SaveScored(ctx context.Context, l scoring.Lead, c *scoring.Crossing, events []proto.Message) error {
	if s.tx == nil {
		return errors.New("save scored lead outside a transaction")
	}
	if u := unitOf(ctx); u != nil {
		if o := u.leads[postgres.Key{Workspace: l.Workspace, ID: l.ID}]; o != nil {
			o.Lead = l
			return s.queueSaveScored(ctx, u.b, l, c, events)
		}
	}
	b := &pgx.Batch{}
	if err := s.queueSaveScored(ctx, b, l, c, events); err != nil {
		return err
	}
	return postgres.SendBatch(ctx, s.tx, b)
}

// queueSaveScored queues SaveScored's writes on b.
func (s *Store) queueSaveScored(ctx context.Context, b *pgx.Batch, l scoring.Lead, c *scoring.Crossing, events []proto.Message) error {
	args, err := saveLeadArgs(l)
	if err != nil {
		return err
	}
	b.Queue(qSaveLead, args...).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("save lead: %w", scoring.ErrLeadNotFound)
		}
		return nil
	})
	if c != nil {
		b.Queue(qAddCrossing, l.Workspace, l.ID, c.Up, c.Time, c.TotalScore, c.ModelVersion)
	}
	if len(events) > 0 {
		msgs := make([]outbox.Message, len(events))
		for i, ev := range events {
			msgs[i] = outbox.Message{Workspace: l.Workspace, Lead: l.ID, Payload: ev}
		}
		if _, err := s.pub.Queue(ctx, s.tx, b, msgs); err != nil {
			return err
		}
	}
	return nil
}
