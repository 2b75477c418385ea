package store_test

import (
	"context"
	"math/rand/v2"
	"os"
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

func TestMain(m *testing.M) { pgtest.Main(m) }

// benchLeads is how many synthetic leads BenchmarkFunnelReport loads; set
// LIFECYCLE_BENCH_LEADS=1000000 for the target (under 1 s).
func benchLeads(b *testing.B) int {
	if s := os.Getenv("LIFECYCLE_BENCH_LEADS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("LIFECYCLE_BENCH_LEADS=%q is not a positive number", s)
		}
		return n
	}
	return 10000
}

var benchStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// history is one synthetic lead's moves, with the derived columns the store
// would have written.
type history struct {
	rows  [][]any
	stage lifecycle.Stage
	enter time.Time
}

// synthesize plays a lead through a plausible waterfall over a year:
// 60% qualify, half of those are accepted (a third of the rest recycled,
// some re-qualifying), 60% of SALs become SQLs, half of those
// opportunities, half of those won.
func synthesize(r *rand.Rand, ws, lead string) history {
	h := history{}
	lastEnter := map[lifecycle.Stage]time.Time{}
	lastExit := map[lifecycle.Stage]time.Time{}
	opt := func(m map[lifecycle.Stage]time.Time, s lifecycle.Stage) any {
		if t, ok := m[s]; ok {
			return t
		}
		return nil
	}
	at := benchStart.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
	move := func(to lifecycle.Stage) {
		var from, fromEnter any
		if h.stage != lifecycle.StageUnspecified {
			from, fromEnter = h.stage.String(), h.enter
		}
		h.rows = append(h.rows, []any{ws, lead, from, to.String(), at, fromEnter,
			opt(lastEnter, to), opt(lastExit, h.stage), "service", "bench", "bench"})
		if h.stage != lifecycle.StageUnspecified {
			lastExit[h.stage] = at
		}
		lastEnter[to] = at
		h.stage, h.enter = to, at
	}
	wait := func(maxDays int) {
		at = at.Add(time.Duration(r.Int64N(int64(maxDays)*int64(24*time.Hour))) + time.Minute)
	}
	move(lifecycle.StageInquiry)
	for cycle := 0; cycle < 2; cycle++ {
		if r.Float64() >= 0.6 {
			return h
		}
		wait(20)
		move(lifecycle.StageMQL)
		wait(10)
		if r.Float64() < 0.5 {
			break
		}
		if r.Float64() < 0.33 {
			move(lifecycle.StageRecycled)
			wait(60)
			continue
		}
		return h
	}
	if h.stage != lifecycle.StageMQL {
		return h
	}
	move(lifecycle.StageSAL)
	for _, step := range []struct {
		to lifecycle.Stage
		p  float64
	}{{lifecycle.StageSQL, 0.6}, {lifecycle.StageOpportunity, 0.5}} {
		if r.Float64() >= step.p {
			return h
		}
		wait(15)
		move(step.to)
	}
	wait(30)
	if r.Float64() < 0.5 {
		move(lifecycle.StageWon)
	} else {
		move(lifecycle.StageLost)
	}
	return h
}

// load copies n synthetic leads of workspace "bench" (and a few of another
// workspace) into the tables.
func load(b *testing.B, pool *pgxpool.Pool, n int) (transitions int) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	sources := []string{"web", "ads", "events", "partner"}
	var leads, trans [][]any
	flush := func() {
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"transitions"},
			[]string{"workspace_id", "lead_id", "from_stage", "to_stage", "transition_time", "from_enter_time",
				"prev_enter_time", "prev_exit_time", "actor_kind", "actor_id", "trigger"},
			pgx.CopyFromRows(trans)); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"leads"},
			[]string{"workspace_id", "lead_id", "stage", "stage_enter_time", "version", "last_activity_time",
				"source", "campaign", "create_time", "update_time"},
			pgx.CopyFromRows(leads)); err != nil {
			b.Fatal(err)
		}
		transitions += len(trans)
		leads, trans = leads[:0], trans[:0]
	}
	for i := range n + n/10 {
		ws := "bench"
		if i >= n {
			ws = "other"
		}
		id := "lead-" + strconv.Itoa(i)
		h := synthesize(r, ws, id)
		trans = append(trans, h.rows...)
		created := h.rows[0][4].(time.Time)
		leads = append(leads, []any{ws, id, h.stage.String(), h.enter, int64(len(h.rows)), h.enter,
			sources[i%len(sources)], "campaign-" + strconv.Itoa(i%20), created, h.enter})
		if len(trans) >= 50000 {
			flush()
		}
	}
	flush()
	// The rollups come from the same backfill the migration runs.
	began := time.Now()
	if _, err := pool.Exec(ctx, `SELECT funnel_rebuild()`); err != nil {
		b.Fatal(err)
	}
	b.Logf("built the funnel rollups in %v", time.Since(began).Round(time.Millisecond))
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return transitions
}

// BenchmarkFunnelReport measures the funnel over a workspace of
// LIFECYCLE_BENCH_LEADS leads (default 10,000) with a year of history.
func BenchmarkFunnelReport(b *testing.B) {
	n := benchLeads(b)
	pool := pgtest.NewPool(b, store.Schema, store.Migrations, migrate.Set{Name: "outbox", FS: outbox.Migrations})
	began := time.Now()
	rows := load(b, pool, n)
	b.Logf("loaded %d leads (+%d in another workspace), %d transitions, in %v", n, n/10, rows, time.Since(began).Round(time.Millisecond))
	svc := lifecycle.NewService(store.New(pool, store.NewPublisher("lifecycle", "handoff")))
	svc.SetClock(func() time.Time { return benchStart.AddDate(1, 3, 0) })

	for _, bc := range []struct {
		name string
		req  lifecycle.FunnelRequest
	}{
		{"year", lifecycle.FunnelRequest{Start: benchStart, End: benchStart.AddDate(1, 0, 0), Period: lifecycle.PeriodWeek}},
		{"quarter", lifecycle.FunnelRequest{Start: benchStart.AddDate(0, 6, 0), End: benchStart.AddDate(0, 9, 0), Period: lifecycle.PeriodWeek}},
		{"year_by_source", lifecycle.FunnelRequest{Start: benchStart, End: benchStart.AddDate(1, 0, 0), Source: "ads", Period: lifecycle.PeriodWeek}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := svc.Funnel(context.Background(), "bench", bc.req)
				if err != nil {
					b.Fatal(err)
				}
				if rep.Stages[0].Counts.Entered == 0 {
					b.Fatal("empty report")
				}
			}
		})
	}
}
