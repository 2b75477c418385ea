package scoring

import (
	"context"
	"slices"
	"time"
)

// BacktestLimit is the most leads one backtest scores; the most recent
// outcomes are kept.
const BacktestLimit = 20_000

// BacktestRequest says what to test.
type BacktestRequest struct {
	Workspace, ModelID string
	Start, End         time.Time
	// LeadTime scores each lead this long before its outcome.
	LeadTime      time.Duration
	BandWidth     int64
	MinLeadsAbove int64
}

// Backtest is how a model would have ranked leads with known outcomes.
type Backtest struct {
	ModelID             string
	LeadCount, WonCount int64
	LostCount           int64
	WinRate             float64
	Bands               []BacktestBand
	Grades              []BacktestGrade
	Suggested           *ThresholdSuggestion
	Truncated           bool
	CreateTime          time.Time
}

// BacktestBand is the leads scoring in [MinScore, MaxScore).
type BacktestBand struct {
	MinScore, MaxScore  int64
	LeadCount, WonCount int64
	WinRate             float64
}

// BacktestGrade is the leads that got one grade.
type BacktestGrade struct {
	Grade               string
	LeadCount, WonCount int64
	WinRate             float64
}

// ThresholdSuggestion is the band boundary with the best lift.
type ThresholdSuggestion struct {
	Threshold    int64
	LeadsAbove   int64
	WinRateAbove float64
	Lift         float64
}

// BacktestResult is one scored lead of a backtest.
type BacktestResult struct {
	Total int64
	Grade string
	Won   bool
}

// BacktestModel scores the workspace's leads with an outcome in
// [Start, End) under a model, as of LeadTime before each outcome, from the
// activities they had then. Lead attributes are the current ones: scoring
// keeps no history of them.
func (s *Service) BacktestModel(ctx context.Context, req BacktestRequest) (Backtest, error) {
	m, err := s.GetModel(ctx, req.Workspace, req.ModelID)
	if err != nil {
		return Backtest{}, err
	}
	prog, err := s.program(ctx, s.store, m)
	if err != nil {
		return Backtest{}, err
	}
	if req.End.IsZero() {
		req.End = s.Now()
	}
	leads, truncated, err := s.store.OutcomeLeads(ctx, req.Workspace, req.Start, req.End, BacktestLimit)
	if err != nil {
		return Backtest{}, err
	}
	ids := make([]string, len(leads))
	for i, l := range leads {
		ids[i] = l.ID
	}
	acts, err := s.store.ActivitiesOf(ctx, req.Workspace, ids)
	if err != nil {
		return Backtest{}, err
	}
	results := make([]BacktestResult, 0, len(leads))
	for _, l := range leads {
		// Just before the outcome, so the signals that came with it do not count.
		at := l.OutcomeTime.Add(-req.LeadTime - time.Microsecond)
		facts := NewFacts(l.Facts)
		var matches []Match
		for _, a := range acts[l.ID] {
			if !a.OccurTime.After(at) {
				matches = append(matches, prog.MatchActivity(facts, a))
			}
		}
		sc := prog.Totals(prog.FitMatches(facts), matches, at)
		results = append(results, BacktestResult{Total: sc.Total, Grade: sc.Grade, Won: l.Outcome == OutcomeWon})
	}
	bt := Summarize(results, prog.Rules().GradeBands, req.BandWidth, req.MinLeadsAbove)
	bt.ModelID, bt.Truncated, bt.CreateTime = m.ID, truncated, s.Now()
	return bt, nil
}

// Summarize groups scored leads into bands and grades and finds the
// threshold with the best lift. bandWidth defaults to 10 and minLeadsAbove
// to 30 when 0.
func Summarize(results []BacktestResult, grades []GradeBand, bandWidth, minLeadsAbove int64) Backtest {
	if bandWidth <= 0 {
		bandWidth = 10
	}
	if minLeadsAbove <= 0 {
		minLeadsAbove = 30
	}
	var bt Backtest
	bands := map[int64]*BacktestBand{}
	byGrade := map[string]*BacktestGrade{}
	for _, r := range results {
		bt.LeadCount++
		won := int64(0)
		if r.Won {
			won = 1
		}
		bt.WonCount += won
		lo := floorDiv(r.Total, bandWidth) * bandWidth
		b := bands[lo]
		if b == nil {
			b = &BacktestBand{MinScore: lo, MaxScore: lo + bandWidth}
			bands[lo] = b
		}
		b.LeadCount++
		b.WonCount += won
		g := byGrade[r.Grade]
		if g == nil {
			g = &BacktestGrade{Grade: r.Grade}
			byGrade[r.Grade] = g
		}
		g.LeadCount++
		g.WonCount += won
	}
	bt.LostCount = bt.LeadCount - bt.WonCount
	bt.WinRate = rate(bt.WonCount, bt.LeadCount)

	for _, b := range bands {
		b.WinRate = rate(b.WonCount, b.LeadCount)
		bt.Bands = append(bt.Bands, *b)
	}
	slices.SortFunc(bt.Bands, func(a, b BacktestBand) int { return cmpInt(a.MinScore, b.MinScore) })
	for _, gb := range grades {
		if g := byGrade[gb.Grade]; g != nil {
			g.WinRate = rate(g.WonCount, g.LeadCount)
			bt.Grades = append(bt.Grades, *g)
		}
	}

	// Every band's lower boundary is a candidate threshold; walking the
	// bands from the top accumulates the leads at or above it.
	if bt.WinRate > 0 {
		var above, wonAbove int64
		for i := len(bt.Bands) - 1; i >= 0; i-- {
			above += bt.Bands[i].LeadCount
			wonAbove += bt.Bands[i].WonCount
			if above < minLeadsAbove {
				continue
			}
			wr := rate(wonAbove, above)
			lift := wr / bt.WinRate
			// Ties go to the lower threshold, which qualifies more leads.
			if bt.Suggested == nil || lift >= bt.Suggested.Lift {
				bt.Suggested = &ThresholdSuggestion{Threshold: bt.Bands[i].MinScore, LeadsAbove: above, WinRateAbove: wr, Lift: lift}
			}
		}
	}
	return bt
}

func rate(won, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(won) / float64(n)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
