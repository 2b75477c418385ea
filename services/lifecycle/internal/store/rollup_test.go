package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
	"github.com/leadflow/leadflow/services/lifecycle/internal/store"
)

// rollupRows reads every non-zero row of the funnel rollups and their
// month grains, sorted.
func rollupRows(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	const q = `
SELECT format('moves %s %s %s %s %s %s %s = %s', workspace_id, source, campaign, day, stage, kind, prev_day, n)
  FROM funnel_moves WHERE n <> 0
UNION ALL
SELECT format('stays %s %s %s %s %s %s = %s', workspace_id, source, campaign, day, stage, bucket, n)
  FROM funnel_stays WHERE n <> 0
UNION ALL
SELECT format('conv %s %s %s %s %s %s %s %s = %s', workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket, n)
  FROM funnel_conversions WHERE n <> 0
UNION ALL
SELECT format('stays by month %s %s %s %s %s %s = %s', workspace_id, source, campaign, month, stage, bucket, n)
  FROM funnel_stays_monthly WHERE n <> 0
UNION ALL
SELECT format('conv by month %s %s %s %s %s %s %s %s = %s', workspace_id, source, campaign, from_stage, to_stage, month, prev_day, bucket, n)
  FROM funnel_conversions_monthly WHERE n <> 0
ORDER BY 1`
	rows, err := pool.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// play makes a seeded random sequence of moves, events, merges and
// erasures over a few leads and weeks.
func play(t *testing.T, svc *lifecycle.Service, seed uint64, steps int, clock *time.Time) {
	t.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 7))
	needBudget := &lifecycle.Bant{Need: lifecycle.BantItem{Confirmed: true}, Budget: lifecycle.BantItem{Confirmed: true}}
	settings := lifecycle.DefaultSettings()
	lead := func() string { return "l" + strconv.Itoa(r.IntN(25)) }
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	for i := range steps {
		// Some moves share an instant; most are hours or days apart.
		if r.IntN(5) > 0 {
			*clock = clock.Add(time.Duration(r.Int64N(int64(36 * time.Hour))))
		}
		id := lead()
		ev := lifecycle.Event{Workspace: "acme", Lead: id, OccurTime: *clock,
			Cause: lifecycle.Cause{Actor: lifecycle.Actor{Kind: lifecycle.ActorService, ID: "test"}, Trigger: "test", EventID: fmt.Sprint("e", i)}}
		var err error
		switch k := r.IntN(100); {
		case k < 10:
			ev.Kind, ev.Source, ev.Campaign = lifecycle.EventCaptured, pick([]string{"", "web", "ads"}), pick([]string{"", "c1", "c2"})
			_, err = svc.HandleEvent(ctx, ev)
		case k < 25:
			ev.Kind = lifecycle.EventQualified
			_, err = svc.HandleEvent(ctx, ev)
		case k < 33:
			ev.Kind = lifecycle.EventAccepted
			_, err = svc.HandleEvent(ctx, ev)
		case k < 40:
			ev.Kind, ev.Reason = lifecycle.EventRejected, "no project"
			_, err = svc.HandleEvent(ctx, ev)
		case k < 43:
			// Into a live lead only: merging back into a merged-away lead
			// would make a cycle.
			survivor := lead()
			if _, lerr := svc.Lead(ctx, "acme", survivor); lerr == nil {
				err = svc.Merge(ctx, "acme", id, survivor)
			}
		case k < 45:
			err = svc.Erase(ctx, "acme", id)
		default:
			req := lifecycle.TransitionRequest{To: lifecycle.StageInquiry, Reason: "again",
				Cause: lifecycle.Cause{Actor: lifecycle.Actor{Kind: lifecycle.ActorUser, ID: "u"}, Trigger: "api"}}
			cur, lerr := svc.Lead(ctx, "acme", id)
			if lerr == nil {
				next := settings.Allowed[cur.Stage]
				if len(next) == 0 { // Won is final
					continue
				}
				req.To = next[r.IntN(len(next))]
			} else if r.IntN(3) == 0 {
				req.To = lifecycle.StageSGL
			}
			switch req.To {
			case lifecycle.StageLost:
				req.Reason = "competitor"
			case lifecycle.StageDisqualified:
				req.Reason = "spam"
			case lifecycle.StageSQL:
				req.Bant = needBudget
			}
			_, _, err = svc.Transition(ctx, "acme", id, req)
		}
		if err != nil && !errorsAreExpected(err) {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

// errorsAreExpected tells refusals (a gone lead, a guard) from failures.
func errorsAreExpected(err error) bool {
	return errors.Is(err, lifecycle.ErrLeadNotFound) || errors.Is(err, lifecycle.ErrTransitionRule)
}

// TestFunnelRollupsMatchHistory checks, after random histories, that the
// rollups kept move by move equal a recomputation from the transitions,
// and that reports read from them equal the reports over the transitions
// (times within the histogram's error).
func TestFunnelRollupsMatchHistory(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run("seed "+strconv.FormatUint(seed, 10), func(t *testing.T) {
			ctx := context.Background()
			pool := pgtest.NewPool(t, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
			st := store.New(pool, store.NewPublisher("lifecycle", "handoff"))
			svc := lifecycle.NewService(st)
			start := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
			clock := start
			svc.SetClock(func() time.Time { return clock })
			play(t, svc, seed, 600, &clock)

			kept := rollupRows(t, pool)
			if len(kept) == 0 {
				t.Fatal("no rollup rows")
			}
			if _, err := pool.Exec(ctx, `SELECT funnel_rebuild()`); err != nil {
				t.Fatal(err)
			}
			if rebuilt := rollupRows(t, pool); !slices.Equal(kept, rebuilt) {
				t.Fatalf("rollups kept move by move differ from a rebuild:\nkept    %d rows %v\nrebuilt %d rows %v",
					len(kept), diff(kept, rebuilt), len(rebuilt), diff(rebuilt, kept))
			}

			end := clock
			for _, tc := range []struct {
				name string
				req  lifecycle.FunnelRequest
			}{
				{"all", lifecycle.FunnelRequest{Start: start, End: end.Add(time.Hour)}},
				{"weeks from day 3, ending mid-day", lifecycle.FunnelRequest{Start: start.AddDate(0, 0, 3), End: start.AddDate(0, 0, 40).Add(7 * time.Hour), Period: lifecycle.PeriodWeek}},
				{"days", lifecycle.FunnelRequest{Start: start.AddDate(0, 0, 10), End: start.AddDate(0, 0, 30), Period: lifecycle.PeriodDay}},
				{"source", lifecycle.FunnelRequest{Start: start.AddDate(0, 0, 2), End: end, Source: "web", Period: lifecycle.PeriodMonth}},
				{"campaign", lifecycle.FunnelRequest{Start: start, End: end, Campaign: "c2"}},
				{"source and campaign", lifecycle.FunnelRequest{Start: start, End: end, Source: "ads", Campaign: "c1"}},
				{"whole months", lifecycle.FunnelRequest{Start: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), Period: lifecycle.PeriodWeek}},
				{"mid-month to mid-month", lifecycle.FunnelRequest{Start: time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 8, 20, 5, 0, 0, 0, time.UTC), Source: "ads"}},
				{"within a month", lifecycle.FunnelRequest{Start: time.Date(2026, 4, 3, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 4, 29, 0, 0, 0, 0, time.UTC)}},
				{"under a day", lifecycle.FunnelRequest{Start: start.AddDate(0, 0, 12), End: start.AddDate(0, 0, 12).Add(20 * time.Hour)}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					svc.SetClock(func() time.Time { return end.Add(24 * time.Hour) })
					st.SetExactLimit(math.MaxInt64)
					want, err := svc.Funnel(ctx, "acme", tc.req)
					if err != nil {
						t.Fatal(err)
					}
					st.SetExactLimit(-1)
					got, err := svc.Funnel(ctx, "acme", tc.req)
					if err != nil {
						t.Fatal(err)
					}
					if compareReports(t, got, want) == 0 && tc.name == "all" {
						t.Error("nothing entered: the case tests nothing")
					}
				})
			}
		})
	}
}

// compareReports returns how many leads entered any stage.
func compareReports(t *testing.T, got, want lifecycle.FunnelReport) int64 {
	t.Helper()
	var entered int64
	for i, w := range want.Stages {
		g := got.Stages[i]
		entered += w.Counts.Entered
		if g.Counts.Entered != w.Counts.Entered || g.Counts.Exited != w.Counts.Exited ||
			!slices.Equal(g.Counts.PeriodEntered, w.Counts.PeriodEntered) {
			t.Errorf("%v: entered %d exited %d periods %v; want %d, %d, %v", w.Stage,
				g.Counts.Entered, g.Counts.Exited, g.Counts.PeriodEntered, w.Counts.Entered, w.Counts.Exited, w.Counts.PeriodEntered)
		}
		near(t, fmt.Sprint(w.Stage, " median"), g.Counts.Median, w.Counts.Median)
		near(t, fmt.Sprint(w.Stage, " p90"), g.Counts.P90, w.Counts.P90)
	}
	for i, w := range want.Conversions {
		g := got.Conversions[i]
		if g.Counts.Cohort != w.Counts.Cohort || g.Counts.Converted != w.Counts.Converted {
			t.Errorf("%v->%v: %d of %d; want %d of %d", w.Pair.From, w.Pair.To,
				g.Counts.Converted, g.Counts.Cohort, w.Counts.Converted, w.Counts.Cohort)
		}
		near(t, fmt.Sprint(w.Pair.From, "->", w.Pair.To, " median"), g.Counts.Median, w.Counts.Median)
	}
	return entered
}

// near checks an estimated duration against the exact one: within the
// histogram's relative error, or a minute below one minute.
func near(t *testing.T, what string, got, want *time.Duration) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Errorf("%s = %v, want %v", what, got, want)
		return
	}
	if got == nil {
		return
	}
	g, w := got.Seconds(), want.Seconds()
	if math.Abs(g-w) > max(60, w*store.HistError*1.0001) {
		t.Errorf("%s = %v, want %v within %.1f%%", what, *got, *want, store.HistError*100)
	}
}

// diff lists the elements of a not in b.
func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
