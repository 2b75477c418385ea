package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// queueCountTransition queues on b, right after the insert of a transition,
// the statement that adds the facts of that transition (the last one this
// session inserted: currval of the ids) to
// the funnel rollups (see migrations/00002_funnel_rollup.sql) and their
// month grains (00004_funnel_month.sql), under the
// keys of the lead's row as it is now:
//   - its entry into to_stage and exit from from_stage;
//   - the stay in from_stage it ends;
//   - every entry of the lead into another stage that this entry is the
//     first to_stage entry after (those since its previous to_stage entry).
//
// Transitions of a lead are inserted in time order, so this adds exactly
// the facts funnel_rebuild would count for the new row.
//
// Rows are upserted in key order, so concurrent moves lock shared rollup
// rows (the same day, stage and key) in one order; moves of one workspace
// on the same day and stage do wait on each other's commit for that row.
// A deadlock left (across the tables) is retried by the transaction
// helper.
func queueCountTransition(b *pgx.Batch) {
	const q = `
WITH t AS (
    SELECT * FROM transitions WHERE id = (SELECT currval(pg_get_serial_sequence('transitions', 'id')))
), k AS (
    SELECT k.source, k.campaign
      FROM t LEFT JOIN leads l ON l.workspace_id = t.workspace_id AND l.lead_id = t.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
), moves AS (
    INSERT INTO funnel_moves AS r (workspace_id, source, campaign, day, stage, kind, prev_day, n)
    SELECT t.workspace_id, k.source, k.campaign, funnel_day(t.transition_time), f.stage, f.kind, f.prev_day, 1
      FROM t CROSS JOIN k
     CROSS JOIN LATERAL (VALUES (t.to_stage, 'e'::"char", funnel_day(t.prev_enter_time)),
                                (t.from_stage, 'x'::"char", funnel_day(t.prev_exit_time))) AS f(stage, kind, prev_day)
     WHERE f.stage IS NOT NULL
     ORDER BY 2, 3, 5, 6
        ON CONFLICT (workspace_id, source, campaign, day, stage, kind, prev_day) DO UPDATE SET n = r.n + 1
), stays AS (
    INSERT INTO funnel_stays AS r (workspace_id, source, campaign, day, stage, bucket, n)
    SELECT t.workspace_id, k.source, k.campaign, funnel_day(t.transition_time), t.from_stage,
           funnel_bucket(greatest(0, extract(epoch FROM t.transition_time - t.from_enter_time))::float8), 1
      FROM t CROSS JOIN k
     WHERE t.from_stage IS NOT NULL
     ORDER BY 2, 3
        ON CONFLICT (workspace_id, source, campaign, day, stage, bucket) DO UPDATE SET n = r.n + 1
), stays_monthly AS (
    INSERT INTO funnel_stays_monthly AS r (workspace_id, source, campaign, month, stage, bucket, n)
    SELECT t.workspace_id, k.source, k.campaign, funnel_month(funnel_day(t.transition_time)), t.from_stage,
           funnel_bucket(greatest(0, extract(epoch FROM t.transition_time - t.from_enter_time))::float8), 1
      FROM t CROSS JOIN k
     WHERE t.from_stage IS NOT NULL
     ORDER BY 2, 3
        ON CONFLICT (workspace_id, source, campaign, month, stage, bucket) DO UPDATE SET n = r.n + 1
), convs AS (
    SELECT t.workspace_id, k.source, k.campaign, e.to_stage AS from_stage, t.to_stage,
           funnel_day(e.transition_time) AS day, funnel_day(e.prev_enter_time) AS prev_day,
           funnel_bucket(extract(epoch FROM t.transition_time - e.transition_time)::float8) AS bucket
      FROM t CROSS JOIN k
      JOIN transitions e
        ON e.workspace_id = t.workspace_id AND e.lead_id = t.lead_id AND e.to_stage <> t.to_stage
       AND (e.transition_time, e.id) < (t.transition_time, t.id)
     WHERE NOT EXISTS (
            SELECT 1 FROM transitions p
             WHERE p.workspace_id = t.workspace_id AND p.lead_id = t.lead_id AND p.to_stage = t.to_stage
               AND (p.transition_time, p.id) > (e.transition_time, e.id)
               AND (p.transition_time, p.id) < (t.transition_time, t.id))
), convs_daily AS (
    INSERT INTO funnel_conversions AS r (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket, n)
    SELECT workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket, count(*)
      FROM convs
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
     ORDER BY 2, 3, 4, 5, 6, 7, 8
        ON CONFLICT (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket)
        DO UPDATE SET n = r.n + excluded.n
)
INSERT INTO funnel_conversions_monthly AS r (workspace_id, source, campaign, from_stage, to_stage, month, prev_day, bucket, n)
SELECT workspace_id, source, campaign, from_stage, to_stage, funnel_month(day), least(prev_day, funnel_month(day)), bucket,
       count(*)
  FROM convs
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
 ORDER BY 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT (workspace_id, source, campaign, from_stage, to_stage, month, prev_day, bucket)
    DO UPDATE SET n = r.n + excluded.n`
	b.Queue(q)
}

// applyFunnelSQL adds (dir $3 = 1) or removes (-1) all of a lead's facts
// from the funnel rollups, under the keys its row gives now.
const applyFunnelSQL = `SELECT funnel_apply($1, $2, $3)`

// applyFunnel runs applyFunnelSQL.
func applyFunnel(ctx context.Context, tx pgx.Tx, workspace, lead string, dir int) error {
	if _, err := tx.Exec(ctx, applyFunnelSQL, workspace, lead, dir); err != nil {
		return fmt.Errorf("update funnel rollups of lead: %w", err)
	}
	return nil
}

// queueApplyFunnel queues applyFunnelSQL on b.
func queueApplyFunnel(b *pgx.Batch, workspace, lead string, dir int) {
	b.Queue(applyFunnelSQL, workspace, lead, dir)
}
