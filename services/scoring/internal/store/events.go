package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
)

// The event handlers' reads and writes, batched: a relay delivers a hundred
// events in one transaction and their handlers run one after another, so
// each round trip to the server is paid a hundred times per call.

// OpenLead implements scoring.Store. Its statements go in one batch, which
// PostgreSQL runs in order, each with a snapshot of its own (READ
// COMMITTED): the reads after the lock see what the lock waited for, as
// separate statements would.
func (s *Store) OpenLead(ctx context.Context, r scoring.OpenLeadRequest) (scoring.OpenedLead, error) {
	if s.tx == nil {
		return scoring.OpenedLead{}, errors.New("open lead outside a transaction")
	}
	var out scoring.OpenedLead
	b := &pgx.Batch{}
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
			return scoring.OpenedLead{}, err
		}
		// Only onto the lead locked above: none if it had a tombstone.
		const qAdd = `
INSERT INTO activities (workspace_id, id, lead_id, type, url, content_id, properties, occur_time)
SELECT $1::text, $2::text, $3::text, $4::smallint, $5::text, $6::text, $7::jsonb, $8::timestamptz
 WHERE EXISTS (SELECT FROM leads WHERE workspace_id = $1 AND id = $3)
ON CONFLICT (workspace_id, id) DO NOTHING`
		b.Queue(qAdd, r.Workspace, a.ID, r.Lead, int16(a.Type), a.URL, a.ContentID, props, a.OccurTime).
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
	if err := s.tx.SendBatch(ctx, b).Close(); err != nil {
		return scoring.OpenedLead{}, fmt.Errorf("open lead: %w", err)
	}
	if out.Tombstoned {
		return scoring.OpenedLead{Tombstoned: true, Survivor: out.Survivor}, nil
	}
	return out, nil
}

// SaveScored implements scoring.Store: the lead and its crossing travel with
// the outbox's INSERT and NOTIFY, one round trip in all when the events are
// few (PublishAll COPYs many, after which the rest goes alone).
func (s *Store) SaveScored(ctx context.Context, l scoring.Lead, c *scoring.Crossing, events []proto.Message) error {
	if s.tx == nil {
		return errors.New("save scored lead outside a transaction")
	}
	args, err := saveLeadArgs(l)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(qSaveLead, args...).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("save lead: %w", scoring.ErrLeadNotFound)
		}
		return nil
	})
	if c != nil {
		b.Queue(qAddCrossing, l.Workspace, l.ID, c.Up, c.Time, c.TotalScore, c.ModelVersion)
	}
	tx := &pendingTx{Tx: s.tx, pending: b}
	if len(events) > 0 {
		msgs := make([]outbox.Message, len(events))
		for i, ev := range events {
			msgs[i] = outbox.Message{Workspace: l.Workspace, Lead: l.ID, Payload: ev}
		}
		if _, err := s.pub.PublishAll(ctx, tx, msgs); err != nil {
			return err
		}
	}
	// Still pending if the publisher sent nothing (no event was routed).
	return tx.flush(ctx)
}

// pendingTx is a transaction with a batch of statements that go ahead of
// the next ones sent on it: in the same round trip when that is a batch,
// just before otherwise. It lets a caller's writes share the round trip of
// a library's batch (outbox.Publisher's) without that library knowing.
// Every method that sends a statement sends the pending ones first, so the
// order of the statements is the order they were asked for.
type pendingTx struct {
	pgx.Tx
	pending *pgx.Batch
}

func (t *pendingTx) flush(ctx context.Context) error {
	if t.pending == nil {
		return nil
	}
	b := t.pending
	t.pending = nil
	return t.Tx.SendBatch(ctx, b).Close()
}

func (t *pendingTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.pending == nil {
		return t.Tx.SendBatch(ctx, b)
	}
	merged := &pgx.Batch{QueuedQueries: append(t.pending.QueuedQueries, b.QueuedQueries...)}
	t.pending = nil
	return t.Tx.SendBatch(ctx, merged)
}

func (t *pendingTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.Tx.Exec(ctx, sql, args...)
}

func (t *pendingTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

func (t *pendingTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.flush(ctx); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

func (t *pendingTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, columns, src)
}

func (t *pendingTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

func (t *pendingTx) Commit(ctx context.Context) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	return t.Tx.Commit(ctx)
}

func (t *pendingTx) Rollback(ctx context.Context) error {
	t.pending = nil
	return t.Tx.Rollback(ctx)
}

// errRow is a pgx.Row that failed before it was sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
