package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Period is the bucket size of the velocity series, numbered like
// leadflow.lifecycle.v1.Period.
type Period int

// The periods.
const (
	PeriodUnspecified Period = iota
	PeriodDay
	PeriodWeek
	PeriodMonth
	PeriodQuarter
)

// MaxPeriods bounds the velocity series of one report.
const MaxPeriods = 400

// StagePair names a conversion.
type StagePair struct{ From, To Stage }

// DefaultConversions are reported when the caller names none: each waterfall
// step, plus MQL→SQL, SQL→Won and MQL→Won.
var DefaultConversions = []StagePair{
	{StageInquiry, StageMQL}, {StageMQL, StageTQL}, {StageMQL, StageSAL}, {StageSAL, StageSQL},
	{StageSQL, StageOpportunity}, {StageOpportunity, StageWon},
	{StageMQL, StageSQL}, {StageSQL, StageWon}, {StageMQL, StageWon},
}

// FunnelRequest is what a caller asks for.
type FunnelRequest struct {
	Start, End  time.Time // End zero means now
	Source      string
	Campaign    string
	Period      Period // zero means week
	TimeZone    string // "" means UTC
	Conversions []StagePair
}

// FunnelQuery is a validated FunnelRequest, as the store computes it.
type FunnelQuery struct {
	Start, End  time.Time
	Source      string
	Campaign    string
	Conversions []StagePair
	// Bounds are the start of each velocity period, the first being Start.
	Bounds []time.Time
}

// FunnelCounts is what the store computes from the history.
type FunnelCounts struct {
	Stages map[Stage]StageCounts
	// Conversions are in the query's order.
	Conversions []ConversionCounts
}

// StageCounts is what happened at one stage. Entered counts leads, not
// entries: a lead entering twice in the range counts once.
type StageCounts struct {
	Entered, Exited int64
	// Median and P90 time in stage, over stays that ended in the range; nil
	// when none did.
	Median, P90 *time.Duration
	// PeriodEntered[i] is the leads that entered in the period starting at
	// Bounds[i].
	PeriodEntered []int64
}

// ConversionCounts is a cohort conversion.
type ConversionCounts struct {
	Cohort, Converted int64
	Median            *time.Duration
}

// FunnelReport is the report as returned.
type FunnelReport struct {
	Request      FunnelRequest
	Stages       []StageReport
	Conversions  []Conversion
	GenerateTime time.Time
}

// StageReport is one stage of the report.
type StageReport struct {
	Stage   Stage
	Counts  StageCounts
	Periods []PeriodCount
}

// PeriodCount is one period of the velocity series.
type PeriodCount struct {
	Start   time.Time
	Entered int64
	// Growth is (this - previous) / previous; nil for the first period and
	// after an empty one.
	Growth *float64
}

// Conversion is one conversion of the report.
type Conversion struct {
	Pair   StagePair
	Counts ConversionCounts
	Rate   float64
}

// Funnel computes the funnel report for a workspace.
func (s *Service) Funnel(ctx context.Context, workspace string, req FunnelRequest) (FunnelReport, error) {
	now := s.Now()
	if req.End.IsZero() {
		req.End = now
	}
	if req.Period == PeriodUnspecified {
		req.Period = PeriodWeek
	}
	if req.TimeZone == "" {
		req.TimeZone = "UTC"
	}
	if len(req.Conversions) == 0 {
		req.Conversions = DefaultConversions
	}
	if !req.End.After(req.Start) {
		return FunnelReport{}, apperr.InvalidArgument("invalid funnel range",
			apperr.Field("end_time", "must be after start_time (and start_time before now when end_time is unset)"))
	}
	loc, err := time.LoadLocation(req.TimeZone)
	if err != nil {
		return FunnelReport{}, apperr.InvalidArgument("invalid time zone",
			apperr.Field("time_zone", "must be an IANA time zone name such as Europe/Paris"))
	}
	bounds, err := PeriodBounds(req.Start, req.End, req.Period, loc)
	if err != nil {
		return FunnelReport{}, err
	}
	counts, err := s.store.Funnel(ctx, workspace, FunnelQuery{
		Start: req.Start, End: req.End, Source: req.Source, Campaign: req.Campaign,
		Conversions: req.Conversions, Bounds: bounds,
	})
	if err != nil {
		return FunnelReport{}, err
	}
	rep := FunnelReport{Request: req, GenerateTime: now}
	for _, st := range Stages {
		c := counts.Stages[st]
		sr := StageReport{Stage: st, Counts: c}
		for i, b := range bounds {
			var n int64
			if i < len(c.PeriodEntered) {
				n = c.PeriodEntered[i]
			}
			pc := PeriodCount{Start: b, Entered: n}
			if i > 0 && sr.Periods[i-1].Entered > 0 {
				prev := float64(sr.Periods[i-1].Entered)
				g := (float64(n) - prev) / prev
				pc.Growth = &g
			}
			sr.Periods = append(sr.Periods, pc)
		}
		rep.Stages = append(rep.Stages, sr)
	}
	for i, p := range req.Conversions {
		cc := counts.Conversions[i]
		conv := Conversion{Pair: p, Counts: cc}
		if cc.Cohort > 0 {
			conv.Rate = float64(cc.Converted) / float64(cc.Cohort)
		}
		rep.Conversions = append(rep.Conversions, conv)
	}
	return rep, nil
}

// PeriodBounds returns the start of each period from start to end in loc,
// the first clipped to start. Weeks start on Monday.
func PeriodBounds(start, end time.Time, p Period, loc *time.Location) ([]time.Time, error) {
	bounds := []time.Time{start}
	for b := nextPeriod(truncPeriod(start.In(loc), p), p); b.Before(end); b = nextPeriod(b, p) {
		if len(bounds) == MaxPeriods {
			return nil, apperr.InvalidArgument("too many periods",
				apperr.Field("period", fmt.Sprintf("the range spans more than %d periods; choose a longer period", MaxPeriods)))
		}
		bounds = append(bounds, b)
	}
	return bounds, nil
}

func truncPeriod(t time.Time, p Period) time.Time {
	y, m, d := t.Date()
	switch p {
	case PeriodDay:
		return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
	case PeriodMonth:
		return time.Date(y, m, 1, 0, 0, 0, 0, t.Location())
	case PeriodQuarter:
		return time.Date(y, (m-1)/3*3+1, 1, 0, 0, 0, 0, t.Location())
	}
	back := (int(t.Weekday()) + 6) % 7 // days since Monday
	return time.Date(y, m, d-back, 0, 0, 0, 0, t.Location())
}

func nextPeriod(t time.Time, p Period) time.Time {
	y, m, d := t.Date()
	switch p {
	case PeriodDay:
		return time.Date(y, m, d+1, 0, 0, 0, 0, t.Location())
	case PeriodMonth:
		return time.Date(y, m+1, 1, 0, 0, 0, 0, t.Location())
	case PeriodQuarter:
		return time.Date(y, m+3, 1, 0, 0, 0, 0, t.Location())
	}
	return time.Date(y, m, d+7, 0, 0, 0, 0, t.Location())
}
