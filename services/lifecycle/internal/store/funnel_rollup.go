package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

// defaultExactLimit is how many entries (of the workspace, whatever the
// filter) a range may hold for the funnel to be computed exactly from the
// transitions table, in well under 100 ms: small reports keep exact times,
// larger ones estimate them from the rollups.
const defaultExactLimit = 5000

// Funnel implements lifecycle.Store. Counts are always exact. The report is
// read from the rollups (migrations/00002_funnel_rollup.sql) when the range
// starts at a UTC midnight, so do its periods (time zone UTC), and it holds
// more entries than the exact limit; the part of a day the range may end
// in is then read from the transitions. Times in stage and to convert are
// then estimated from the rollups' histograms, within histError. Otherwise
// the report is computed from the transitions alone, exactly.
func (s *Store) Funnel(ctx context.Context, workspace string, q lifecycle.FunnelQuery) (lifecycle.FunnelCounts, error) {
	if !rollupServes(q) {
		return s.funnelExact(ctx, workspace, q)
	}
	limit := s.exactLimit
	if limit == 0 {
		limit = defaultExactLimit
	}
	// What the exact queries scan: every transition of the range, filtered
	// or not. Counting stops past the limit, so a large range costs no more
	// than a small one.
	const count = `
SELECT count(*) FROM (
    SELECT FROM transitions WHERE workspace_id = $1 AND transition_time >= $2 AND transition_time < $3 LIMIT $4
) AS t`
	var entries int64
	if err := s.q().QueryRow(ctx, count, workspace, q.Start, q.End, min(max(limit, 0), math.MaxInt64-1)+1).Scan(&entries); err != nil {
		return lifecycle.FunnelCounts{}, fmt.Errorf("funnel size: %w", err)
	}
	if entries <= limit {
		return s.funnelExact(ctx, workspace, q)
	}
	a := newFunnelAcc(q)
	if err := s.funnelRollup(ctx, workspace, q, a); err != nil {
		return lifecycle.FunnelCounts{}, err
	}
	return a.counts(), nil
}

// rollupServes reports whether the rollups, kept by UTC day, can answer q
// exactly: each cut the counts depend on (the start, for "entered in the
// range", and each period start) is a UTC midnight. Conversions from a
// stage to itself are not kept.
func rollupServes(q lifecycle.FunnelQuery) bool {
	for _, b := range q.Bounds {
		if !isUTCMidnight(b) {
			return false
		}
	}
	for _, p := range q.Conversions {
		if p.From == p.To {
			return false
		}
	}
	return isUTCMidnight(q.Start)
}

func isUTCMidnight(t time.Time) bool { return t.UTC().Truncate(24 * time.Hour).Equal(t) }

// funnelAcc accumulates a report read from rollups and transitions.
type funnelAcc struct {
	q     lifecycle.FunnelQuery
	out   lifecycle.FunnelCounts
	stays map[lifecycle.Stage]*histogram
	convs []histogram
}

func newFunnelAcc(q lifecycle.FunnelQuery) *funnelAcc {
	return &funnelAcc{
		q:     q,
		out:   lifecycle.FunnelCounts{Stages: map[lifecycle.Stage]lifecycle.StageCounts{}},
		stays: map[lifecycle.Stage]*histogram{},
		convs: make([]histogram, len(q.Conversions)),
	}
}

// stage applies fn to the counts of the named stage.
func (a *funnelAcc) stage(name string, fn func(*lifecycle.StageCounts)) {
	st, _ := lifecycle.ParseStage(name)
	c := a.out.Stages[st]
	if c.PeriodEntered == nil {
		c.PeriodEntered = make([]int64, len(a.q.Bounds))
	}
	fn(&c)
	a.out.Stages[st] = c
}

func (a *funnelAcc) stay(name string, bucket int, n int64) {
	st, _ := lifecycle.ParseStage(name)
	if a.stays[st] == nil {
		a.stays[st] = &histogram{}
	}
	a.stays[st][clampBucket(bucket)] += n
}

func (a *funnelAcc) conversion(idx, bucket int, n int64) error {
	if idx < 1 || idx > len(a.convs) {
		return fmt.Errorf("conversion %d out of range", idx)
	}
	a.convs[idx-1][clampBucket(bucket)] += n
	return nil
}

func (a *funnelAcc) counts() lifecycle.FunnelCounts {
	for st, h := range a.stays {
		a.stage(st.String(), func(c *lifecycle.StageCounts) { c.Median, c.P90 = h.quantile(0.5), h.quantile(0.9) })
	}
	a.out.Conversions = make([]lifecycle.ConversionCounts, len(a.q.Conversions))
	for i, p := range a.q.Conversions {
		a.out.Conversions[i] = lifecycle.ConversionCounts{
			Cohort: a.out.Stages[p.From].Entered, Converted: a.convs[i].total(), Median: a.convs[i].quantile(0.5),
		}
	}
	return a.out
}

func clampBucket(b int) int { return min(max(b, 0), histBuckets-1) }

// funnelRollup adds to a the whole UTC days of the range, from the rollups,
// and the part of a day it ends in, from the transitions.
func (s *Store) funnelRollup(ctx context.Context, workspace string, q lifecycle.FunnelQuery, a *funnelAcc) error {
	end := q.End.UTC().Truncate(24 * time.Hour) // the rollups serve [Start, end)
	if end.Before(q.Start) {
		end = q.Start
	}
	bounds := make([]time.Time, len(q.Bounds))
	for i, b := range q.Bounds {
		bounds[i] = b.UTC()
	}
	from := make([]string, len(q.Conversions))
	to := make([]string, len(q.Conversions))
	for i, p := range q.Conversions {
		from[i], to[i] = p.From.String(), p.To.String()
	}
	// $1 workspace, $2 source, $3 campaign, $4 first day, $5 end day
	// (exclusive), then for stays and conversions $6 and $7 the whole
	// months [m1, m2) of the range; an entry counts a lead in the range (in a period) when
	// the lead's previous entry is on an earlier day than the range's (the
	// period's) first.
	args := []any{workspace, q.Source, q.Campaign, q.Start.UTC(), end}
	const moves = `
SELECT stage::text, kind = 'e', width_bucket(day, $6::date[]),
       coalesce(sum(n) FILTER (WHERE prev_day < $4), 0)::bigint,
       coalesce(sum(n) FILTER (WHERE prev_day < ($6::date[])[width_bucket(day, $6::date[])]), 0)::bigint
  FROM funnel_moves
 WHERE workspace_id = $1 AND source = $2 AND campaign = $3 AND day >= $4 AND day < $5
 GROUP BY 1, 2, 3`
	rows, err := s.q().Query(ctx, moves, append(args, bounds)...)
	if err != nil {
		return fmt.Errorf("funnel rollup moves: %w", err)
	}
	var (
		name              string
		entry             bool
		period            int
		inRange, inPeriod int64
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &entry, &period, &inRange, &inPeriod}, func() error {
		a.stage(name, func(c *lifecycle.StageCounts) {
			if !entry {
				c.Exited += inRange
				return
			}
			c.Entered += inRange
			if period >= 1 && period <= len(c.PeriodEntered) {
				c.PeriodEntered[period-1] += inPeriod
			}
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("funnel rollup moves: %w", err)
	}

	// Stays and conversions have no periods: the whole months of the range
	// are read from the month grains, [m1, m2), and only its other days
	// from the day tables.
	m1, m2 := wholeMonths(q.Start.UTC(), end)
	args = append(args, m1, m2)
	const stays = `
SELECT stage::text, bucket, sum(n)::bigint
  FROM (SELECT stage, bucket, n
          FROM funnel_stays
         WHERE workspace_id = $1 AND source = $2 AND campaign = $3
           AND (day >= $4 AND day < $6 OR day >= $7 AND day < $5)
         UNION ALL
        SELECT stage, bucket, n
          FROM funnel_stays_monthly
         WHERE workspace_id = $1 AND source = $2 AND campaign = $3 AND month >= $6 AND month < $7) AS s
 GROUP BY 1, 2`
	rows, err = s.q().Query(ctx, stays, args...)
	if err != nil {
		return fmt.Errorf("funnel rollup stays: %w", err)
	}
	var bucket int
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&name, &bucket, &n}, func() error {
		a.stay(name, bucket, n)
		return nil
	})
	if err != nil {
		return fmt.Errorf("funnel rollup stays: %w", err)
	}

	// One pass per pair, so that each reads only its own index range (a
	// join of all pairs at once scans the whole key's index for the days).
	const convs = `
SELECT p.n, c.bucket, c.n
  FROM unnest($8::text[], $9::text[]) WITH ORDINALITY AS p(from_stage, to_stage, n)
 CROSS JOIN LATERAL (
    SELECT bucket, sum(n)::bigint AS n
      FROM (SELECT bucket, n
              FROM funnel_conversions
             WHERE workspace_id = $1 AND source = $2 AND campaign = $3
               AND from_stage = p.from_stage::stage AND to_stage = p.to_stage::stage
               AND (day >= $4 AND day < $6 OR day >= $7 AND day < $5) AND prev_day < $4
             UNION ALL
            SELECT bucket, n
              FROM funnel_conversions_monthly
             WHERE workspace_id = $1 AND source = $2 AND campaign = $3
               AND from_stage = p.from_stage::stage AND to_stage = p.to_stage::stage
               AND month >= $6 AND month < $7 AND prev_day < $4) AS u
     GROUP BY bucket) AS c`
	rows, err = s.q().Query(ctx, convs, append(args, from, to)...)
	if err != nil {
		return fmt.Errorf("funnel rollup conversions: %w", err)
	}
	var idx int
	_, err = pgx.ForEachRow(rows, []any{&idx, &bucket, &n}, func() error { return a.conversion(idx, bucket, n) })
	if err != nil {
		return fmt.Errorf("funnel rollup conversions: %w", err)
	}

	if !end.Before(q.End) {
		return nil
	}
	return s.funnelTail(ctx, workspace, q, end, from, to, a)
}

// wholeMonths returns the whole UTC months [m1, m2) within [start, end),
// two UTC midnights; m1 = m2 = end when there are none.
func wholeMonths(start, end time.Time) (m1, m2 time.Time) {
	m1 = time.Date(start.Year(), start.Month(), 1, 0, 0, 0, 0, time.UTC)
	if m1.Before(start) {
		m1 = m1.AddDate(0, 1, 0)
	}
	m2 = time.Date(end.Year(), end.Month(), 1, 0, 0, 0, 0, time.UTC)
	if !m1.Before(m2) {
		return end, end
	}
	return m1, m2
}

// funnelTail adds to a what happened in [from, q.End), within one UTC day,
// read from the transitions.
func (s *Store) funnelTail(ctx context.Context, workspace string, q lifecycle.FunnelQuery, from time.Time,
	fromStages, toStages []string, a *funnelAcc,
) error {
	// As funnelFilter: $1 workspace, $2 from, $3 end, $4 source, $5
	// campaign; $6 the range's start.
	args := []any{pgx.QueryExecModeExec, workspace, from, q.End, q.Source, q.Campaign, q.Start}
	const moves = `
SELECT t.to_stage::text, t.from_stage::text,
       t.prev_enter_time IS NULL OR t.prev_enter_time < $6,
       t.prev_enter_time IS NULL OR t.prev_enter_time < $7,
       t.prev_exit_time IS NULL OR t.prev_exit_time < $6,
       funnel_bucket(greatest(0, extract(epoch FROM t.transition_time - t.from_enter_time))::float8)
  FROM transitions t
 WHERE true` + funnelFilter
	// The tail lies in the last period, which starts at a midnight.
	last := len(q.Bounds) - 1
	rows, err := s.q().Query(ctx, moves, append(args, q.Bounds[last])...)
	if err != nil {
		return fmt.Errorf("funnel tail: %w", err)
	}
	var (
		toName                     string
		fromName                   *string
		inRange, inPeriod, exitsIn bool
		bucket                     *int
	)
	_, err = pgx.ForEachRow(rows, []any{&toName, &fromName, &inRange, &inPeriod, &exitsIn, &bucket}, func() error {
		a.stage(toName, func(c *lifecycle.StageCounts) {
			if inRange {
				c.Entered++
			}
			if inPeriod {
				c.PeriodEntered[last]++
			}
		})
		if fromName != nil && bucket != nil {
			a.stage(*fromName, func(c *lifecycle.StageCounts) {
				if exitsIn {
					c.Exited++
				}
			})
			a.stay(*fromName, *bucket, 1)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("funnel tail: %w", err)
	}

	// Entries of the tail that count in a cohort, each converted by the
	// lead's first later entry into to_stage.
	const convs = `
SELECT p.n, funnel_bucket(extract(epoch FROM min(x.transition_time) - t.transition_time)::float8)
  FROM transitions t
  JOIN unnest($7::text[], $8::text[]) WITH ORDINALITY AS p(from_stage, to_stage, n)
    ON p.from_stage = t.to_stage::text
  JOIN transitions x
    ON x.workspace_id = t.workspace_id AND x.lead_id = t.lead_id AND x.to_stage = p.to_stage::stage
   AND (x.transition_time, x.id) > (t.transition_time, t.id)
 WHERE (t.prev_enter_time IS NULL OR t.prev_enter_time < $6)` + funnelFilter + `
 GROUP BY p.n, t.id, t.transition_time`
	rows, err = s.q().Query(ctx, convs, append(args, fromStages, toStages)...)
	if err != nil {
		return fmt.Errorf("funnel tail conversions: %w", err)
	}
	var idx, b int
	_, err = pgx.ForEachRow(rows, []any{&idx, &b}, func() error { return a.conversion(idx, b, 1) })
	if err != nil {
		return fmt.Errorf("funnel tail conversions: %w", err)
	}
	return nil
}
