package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

// The funnel queries share their parameters:
//
//	$1 workspace, $2 start, $3 end, $4 source ('' for any), $5 campaign ('' for any)
//
// They run in QueryExecModeExec, so each is planned with the actual values
// and the unused filter folds away.
const funnelFilter = `
   AND t.workspace_id = $1 AND t.transition_time >= $2 AND t.transition_time < $3
   AND ($4 = '' AND $5 = ''
        OR EXISTS (SELECT 1 FROM leads l
                    WHERE l.workspace_id = t.workspace_id AND l.lead_id = t.lead_id
                      AND ($4 = '' OR l.source = $4) AND ($5 = '' OR l.campaign = $5)))`

// funnelExact computes the funnel from the transitions table: exact, and
// the reference the rollups are tested against, but linear in the
// transitions of the range.
func (s *Store) funnelExact(ctx context.Context, workspace string, q lifecycle.FunnelQuery) (lifecycle.FunnelCounts, error) {
	out := lifecycle.FunnelCounts{Stages: map[lifecycle.Stage]lifecycle.StageCounts{}}
	args := []any{pgx.QueryExecModeExec, workspace, q.Start, q.End, q.Source, q.Campaign}
	stage := func(name string) (lifecycle.Stage, lifecycle.StageCounts) {
		st, _ := lifecycle.ParseStage(name)
		c := out.Stages[st]
		if c.PeriodEntered == nil {
			c.PeriodEntered = make([]int64, len(q.Bounds))
		}
		return st, c
	}

	// Entries: a lead counts once in the range (its first entry in the range
	// is the one whose previous entry is before the range) and once in each
	// period it entered in (likewise against the period's start).
	const entered = `
SELECT t.to_stage::text, width_bucket(t.transition_time, $6::timestamptz[]) AS period,
       count(*) FILTER (WHERE t.prev_enter_time IS NULL OR t.prev_enter_time < $2),
       count(*) FILTER (WHERE t.prev_enter_time IS NULL
                           OR t.prev_enter_time < ($6::timestamptz[])[width_bucket(t.transition_time, $6::timestamptz[])])
  FROM transitions t
 WHERE true` + funnelFilter + `
 GROUP BY 1, 2`
	rows, err := s.q().Query(ctx, entered, append(args, q.Bounds)...)
	if err != nil {
		return out, fmt.Errorf("funnel entries: %w", err)
	}
	var name string
	var period int
	var n, inPeriod int64
	_, err = pgx.ForEachRow(rows, []any{&name, &period, &n, &inPeriod}, func() error {
		st, c := stage(name)
		c.Entered += n
		if period >= 1 && period <= len(c.PeriodEntered) {
			c.PeriodEntered[period-1] += inPeriod
		}
		out.Stages[st] = c
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("funnel entries: %w", err)
	}

	// Exits and time in stage, over the stays that ended in the range.
	const exited = `
SELECT t.from_stage::text,
       count(*) FILTER (WHERE t.prev_exit_time IS NULL OR t.prev_exit_time < $2),
       percentile_cont(ARRAY[0.5, 0.9]::float8[])
           WITHIN GROUP (ORDER BY extract(epoch FROM t.transition_time - t.from_enter_time))
  FROM transitions t
 WHERE t.from_stage IS NOT NULL` + funnelFilter + `
 GROUP BY 1`
	rows, err = s.q().Query(ctx, exited, args...)
	if err != nil {
		return out, fmt.Errorf("funnel exits: %w", err)
	}
	var pcts []float64
	_, err = pgx.ForEachRow(rows, []any{&name, &n, &pcts}, func() error {
		st, c := stage(name)
		c.Exited = n
		if len(pcts) == 2 {
			c.Median, c.P90 = seconds(pcts[0]), seconds(pcts[1])
		}
		out.Stages[st] = c
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("funnel exits: %w", err)
	}

	// Conversions: the cohort of a pair is the leads whose first entry into
	// from_stage in the range is at t0; each converted if it entered
	// to_stage after t0 (at any time up to now), the first such entry
	// giving the time to convert.
	const converted = `
WITH pairs AS (
    SELECT p.n, p.from_stage, p.to_stage
      FROM unnest($6::text[], $7::text[]) WITH ORDINALITY AS p(from_stage, to_stage, n)
), cohort AS (
    SELECT t.id, t.lead_id, t.to_stage, t.transition_time AS t0
      FROM transitions t
     WHERE (t.prev_enter_time IS NULL OR t.prev_enter_time < $2)
       AND t.to_stage = ANY ($6::text[])` + funnelFilter + `
), reached AS (
    SELECT p.n, min(x.transition_time) - c.t0 AS took
      FROM pairs p
      JOIN cohort c ON c.to_stage = p.from_stage
      LEFT JOIN transitions x
        ON x.workspace_id = $1 AND x.lead_id = c.lead_id AND x.to_stage = p.to_stage
       AND x.transition_time >= $2 AND x.transition_time >= c.t0
       AND (x.transition_time > c.t0 OR x.id > c.id)
     GROUP BY p.n, c.id, c.t0
)
SELECT n, count(*), count(took),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM took))
  FROM reached
 GROUP BY n`
	from := make([]string, len(q.Conversions))
	to := make([]string, len(q.Conversions))
	for i, p := range q.Conversions {
		from[i], to[i] = p.From.String(), p.To.String()
	}
	out.Conversions = make([]lifecycle.ConversionCounts, len(q.Conversions))
	rows, err = s.q().Query(ctx, converted, append(args, from, to)...)
	if err != nil {
		return out, fmt.Errorf("funnel conversions: %w", err)
	}
	var idx int
	var cohort, conv int64
	var median *float64
	_, err = pgx.ForEachRow(rows, []any{&idx, &cohort, &conv, &median}, func() error {
		if idx < 1 || idx > len(out.Conversions) {
			return fmt.Errorf("conversion %d out of range", idx)
		}
		cc := lifecycle.ConversionCounts{Cohort: cohort, Converted: conv}
		if median != nil {
			cc.Median = seconds(*median)
		}
		out.Conversions[idx-1] = cc
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("funnel conversions: %w", err)
	}
	return out, nil
}

func seconds(s float64) *time.Duration {
	d := time.Duration(s * float64(time.Second)).Round(time.Microsecond)
	return &d
}
