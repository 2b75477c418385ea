package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/postgres"
)

// maxMergeChain bounds how many merges Resolve follows (a lead merged into
// one that was merged in turn, ...).
const maxMergeChain = 16

// Resolve implements lifecycle.Store.
func (s *Store) Resolve(ctx context.Context, workspace, lead string) (string, bool, error) {
	const q = `SELECT survivor_id FROM gone_leads WHERE workspace_id = $1 AND lead_id = $2`
	for range maxMergeChain {
		var survivor *string
		err := s.q().QueryRow(ctx, q, workspace, lead).Scan(&survivor)
		if errors.Is(err, pgx.ErrNoRows) {
			return lead, false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("resolve lead: %w", err)
		}
		if survivor == nil {
			return lead, true, nil
		}
		lead = *survivor
	}
	return "", false, fmt.Errorf("resolve lead: merge chain longer than %d", maxMergeChain)
}

// Erase implements lifecycle.Store: the lifecycle and its whole history go;
// only the lead id stays, as a tombstone that stops late events from
// recreating the lead.
func (s *Store) Erase(ctx context.Context, workspace, lead string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		// The lead's turn, then its row: an event about a lead merged into
		// this one takes the merged lead's turn, not this one's, and writes
		// under this row's lock. Waiting for that row here, the statements
		// below see (and remove) what such an event wrote.
		b := &pgx.Batch{}
		b.Queue(postgres.LockKey, workspace, lead)
		b.Queue(`SELECT FROM leads WHERE workspace_id = $1 AND lead_id = $2 FOR UPDATE`, workspace, lead)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("hold lead: %w", err)
		}
		if err := applyFunnel(ctx, tx, workspace, lead, -1); err != nil {
			return err
		}
		const q = `
WITH t AS (DELETE FROM transitions WHERE workspace_id = $1 AND lead_id = $2),
     j AS (DELETE FROM journey_steps WHERE workspace_id = $1 AND lead_id = $2),
     l AS (DELETE FROM leads WHERE workspace_id = $1 AND lead_id = $2)
INSERT INTO gone_leads (workspace_id, lead_id, survivor_id) VALUES ($1, $2, NULL)
ON CONFLICT (workspace_id, lead_id) DO UPDATE SET survivor_id = NULL, gone_time = now()`
		if _, err := tx.Exec(ctx, q, workspace, lead); err != nil {
			return fmt.Errorf("erase lead: %w", err)
		}
		return nil
	})
}

// Merge implements lifecycle.Store:
//   - if only the loser has a lifecycle, it and its history become the
//     survivor's;
//   - if both have one, the survivor keeps its stage and history, takes the
//     later activity and the newer score, and the loser's lifecycle goes
//     while its history stays under the loser's id (it did happen, and past
//     funnel reports do not change);
//   - either way the loser is remembered as merged, so late events about it
//     reach the survivor.
func (s *Store) Merge(ctx context.Context, workspace, loser, survivor string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		// The loser's turn first: an event about it that waited for this
		// merge then finds it gone and follows it to the survivor.
		if _, err := tx.Exec(ctx, postgres.LockKey, workspace, loser); err != nil {
			return fmt.Errorf("hold lead: %w", err)
		}
		// Lock both rows in a fixed order, so two merges cannot deadlock.
		const lock = `SELECT lead_id FROM leads WHERE workspace_id = $1 AND lead_id IN ($2, $3) ORDER BY lead_id FOR UPDATE`
		rows, err := tx.Query(ctx, lock, workspace, loser, survivor)
		if err != nil {
			return fmt.Errorf("lock merged leads: %w", err)
		}
		present, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("lock merged leads: %w", err)
		}
		has := map[string]bool{}
		for _, id := range present {
			has[id] = true
		}
		// Both leads' facts are taken out and put back after the merge: the
		// survivor may take the loser's source or campaign, and the loser's
		// history either becomes the survivor's or is left without a lead
		// row (counted unfiltered only, as the report over transitions does).
		for _, id := range []string{loser, survivor} {
			if err := applyFunnel(ctx, tx, workspace, id, -1); err != nil {
				return err
			}
		}
		switch {
		case has[loser] && has[survivor]:
			const q = `
WITH l AS (DELETE FROM leads WHERE workspace_id = $1 AND lead_id = $2 RETURNING *)
UPDATE leads s
   SET last_activity_time = greatest(s.last_activity_time, l.last_activity_time),
       score      = CASE WHEN s.score IS NULL OR l.score_time > s.score_time THEN coalesce(l.score, s.score) ELSE s.score END,
       score_time = CASE WHEN s.score IS NULL OR l.score_time > s.score_time THEN coalesce(l.score_time, s.score_time) ELSE s.score_time END,
       source     = CASE WHEN s.source = '' THEN l.source ELSE s.source END,
       campaign   = CASE WHEN s.campaign = '' THEN l.campaign ELSE s.campaign END
  FROM l
 WHERE s.workspace_id = $1 AND s.lead_id = $3`
			if _, err := tx.Exec(ctx, q, workspace, loser, survivor); err != nil {
				return fmt.Errorf("merge leads: %w", err)
			}
		case has[loser]:
			const q = `
WITH t AS (UPDATE transitions SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2)
UPDATE leads SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2`
			if _, err := tx.Exec(ctx, q, workspace, loser, survivor); err != nil {
				return fmt.Errorf("move lead to survivor: %w", err)
			}
		}
		for _, id := range []string{loser, survivor} {
			if err := applyFunnel(ctx, tx, workspace, id, 1); err != nil {
				return err
			}
		}
		// The loser's key events are the survivor's journey too.
		const moveSteps = `UPDATE journey_steps SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2`
		if _, err := tx.Exec(ctx, moveSteps, workspace, loser, survivor); err != nil {
			return fmt.Errorf("move journey to survivor: %w", err)
		}
		// An erased loser stays erased.
		const q = `
INSERT INTO gone_leads (workspace_id, lead_id, survivor_id) VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, lead_id) DO NOTHING`
		if _, err := tx.Exec(ctx, q, workspace, loser, survivor); err != nil {
			return fmt.Errorf("record merge: %w", err)
		}
		return nil
	})
}
