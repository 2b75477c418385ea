package server_test

import (
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
)

const day = 24 * time.Hour

// seedFunnel plays five leads' histories at known days after base:
//
//	L4: Inquiry -2d, MQL d6                       (entered Inquiry before the range)
//	L1: Inquiry d0, MQL d1, SAL d2, SQL d4, Opportunity d8, Won d10
//	L2: Inquiry d0, MQL d3, Recycled d5, MQL d9, SAL d11
//	L3: Inquiry d1, Disqualified d2
//	L5: Inquiry d7, MQL d8                        (source "ads"; the others "web")
func seedFunnel(t *testing.T, f fixture) {
	t.Helper()
	at := func(d float64) { f.clock.set(base.Add(time.Duration(d * float64(day)))) }
	move := func(lead string, to typesv1.Stage, reason string) {
		req := &lifecyclev1.TransitionLeadRequest{ToStage: to, Reason: reason}
		if to == typesv1.Stage_STAGE_SQL {
			req.Bant = needBudget
		}
		f.move(t, lead, req)
	}
	accept := func(lead string) {
		f.deliver(t, newEvent(t, "acme", lead, "handoff", &eventsv1.HandoffAccepted{}))
	}
	at(-2)
	f.capture(t, "L4", "web")
	at(0)
	f.capture(t, "L1", "web")
	f.capture(t, "L2", "web")
	at(1)
	f.qualify(t, "L1")
	f.capture(t, "L3", "web")
	at(2)
	accept("L1")
	move("L3", typesv1.Stage_STAGE_DISQUALIFIED, "spam")
	at(3)
	f.qualify(t, "L2")
	at(4)
	move("L1", typesv1.Stage_STAGE_SQL, "")
	at(5)
	f.deliver(t, newEvent(t, "acme", "L2", "handoff", &eventsv1.HandoffRejected{Reason: "no project"}))
	at(6)
	f.qualify(t, "L4")
	at(7)
	f.capture(t, "L5", "ads")
	at(8)
	move("L1", typesv1.Stage_STAGE_OPPORTUNITY, "")
	f.qualify(t, "L5")
	at(9)
	f.qualify(t, "L2")
	at(10)
	move("L1", typesv1.Stage_STAGE_WON, "")
	at(11)
	accept("L2")
	at(20)
}

type stageWant struct {
	entered, exited int64
	median, p90     time.Duration // 0: unset
	periods         []int64       // entered per week
}

type convWant struct {
	cohort, converted int64
	median            time.Duration // 0: unset
}

func TestFunnelMatchesHandComputedNumbers(t *testing.T) {
	f := newFixture(t)
	seedFunnel(t, f)
	resp, err := f.client.GetFunnelReport(f.acme, &lifecyclev1.GetFunnelReportRequest{
		StartTime: timestamppb.New(base), EndTime: timestamppb.New(base.Add(14 * day)),
		Period: lifecyclev1.Period_PERIOD_WEEK,
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := resp.GetReport()

	// Time in stage is over stays that ended in the range. Inquiry: L1 1d,
	// L2 3d, L3 1d, L4 8d, L5 1d -> median 1d, p90 3d + 0.6*(8d-3d) = 6d.
	// MQL: L1 1d, L2 2d and 2d again -> 2d. A lead entering twice counts once
	// (L2 in MQL), but once in each week it entered.
	stages := map[typesv1.Stage]stageWant{
		typesv1.Stage_STAGE_INQUIRY:      {4, 5, day, 6 * day, []int64{3, 1}},
		typesv1.Stage_STAGE_MQL:          {4, 2, 2 * day, 2 * day, []int64{3, 2}},
		typesv1.Stage_STAGE_TQL:          {0, 0, 0, 0, []int64{0, 0}},
		typesv1.Stage_STAGE_SAL:          {2, 1, 2 * day, 2 * day, []int64{1, 1}},
		typesv1.Stage_STAGE_SGL:          {0, 0, 0, 0, []int64{0, 0}},
		typesv1.Stage_STAGE_SQL:          {1, 1, 4 * day, 4 * day, []int64{1, 0}},
		typesv1.Stage_STAGE_OPPORTUNITY:  {1, 1, 2 * day, 2 * day, []int64{0, 1}},
		typesv1.Stage_STAGE_WON:          {1, 0, 0, 0, []int64{0, 1}},
		typesv1.Stage_STAGE_LOST:         {0, 0, 0, 0, []int64{0, 0}},
		typesv1.Stage_STAGE_DISQUALIFIED: {1, 0, 0, 0, []int64{1, 0}},
		typesv1.Stage_STAGE_RECYCLED:     {1, 1, 4 * day, 4 * day, []int64{1, 0}},
	}
	if len(rep.GetStages()) != len(stages) || rep.GetStages()[0].GetStage() != typesv1.Stage_STAGE_INQUIRY {
		t.Fatalf("stages = %v", rep.GetStages())
	}
	for _, got := range rep.GetStages() {
		t.Run(got.GetStage().String(), func(t *testing.T) {
			w := stages[got.GetStage()]
			if got.GetEnteredCount() != w.entered || got.GetExitedCount() != w.exited {
				t.Errorf("entered, exited = %d, %d; want %d, %d", got.GetEnteredCount(), got.GetExitedCount(), w.entered, w.exited)
			}
			checkDuration(t, "median", got.GetMedianTimeInStage().AsDuration(), got.GetMedianTimeInStage() != nil, w.median)
			checkDuration(t, "p90", got.GetP90TimeInStage().AsDuration(), got.GetP90TimeInStage() != nil, w.p90)
			if len(got.GetPeriods()) != len(w.periods) {
				t.Fatalf("periods = %v", got.GetPeriods())
			}
			for i, p := range got.GetPeriods() {
				if p.GetEnteredCount() != w.periods[i] || !p.GetPeriodStartTime().AsTime().Equal(base.Add(time.Duration(i)*7*day)) {
					t.Errorf("period %d = %v, want %d from %v", i, p, w.periods[i], base.Add(time.Duration(i)*7*day))
				}
			}
		})
	}
	inquiry := rep.GetStages()[0].GetPeriods()
	if inquiry[0].GrowthRate != nil || math.Abs(inquiry[1].GetGrowthRate()-(-2.0/3)) > 1e-9 {
		t.Errorf("inquiry growth = %v, %v; want none, -2/3", inquiry[0].GrowthRate, inquiry[1].GetGrowthRate())
	}

	// Cohorts: leads entering from_stage in the range; converted if they
	// reached to_stage at any time after.
	convs := []convWant{
		{4, 3, day},             // Inquiry->MQL: L1 1d, L2 3d, L5 1d; L3 never
		{4, 0, 0},               // MQL->TQL
		{4, 2, 108 * time.Hour}, // MQL->SAL: L1 1d, L2 8d (d3 -> d11) -> 4.5d
		{2, 1, 2 * day},         // SAL->SQL: L1
		{1, 1, 4 * day},         // SQL->Opportunity
		{1, 1, 2 * day},         // Opportunity->Won
		{4, 1, 3 * day},         // MQL->SQL
		{1, 1, 6 * day},         // SQL->Won
		{4, 1, 9 * day},         // MQL->Won
	}
	if len(rep.GetConversions()) != len(convs) {
		t.Fatalf("conversions = %v", rep.GetConversions())
	}
	for i, got := range rep.GetConversions() {
		w := convs[i]
		name := got.GetFromStage().String() + "->" + got.GetToStage().String()
		t.Run(name, func(t *testing.T) {
			if got.GetCohortCount() != w.cohort || got.GetConvertedCount() != w.converted {
				t.Errorf("cohort, converted = %d, %d; want %d, %d", got.GetCohortCount(), got.GetConvertedCount(), w.cohort, w.converted)
			}
			if want := float64(w.converted) / float64(w.cohort); math.Abs(got.GetRate()-want) > 1e-9 {
				t.Errorf("rate = %v, want %v", got.GetRate(), want)
			}
			checkDuration(t, "median to convert", got.GetMedianTimeToConvert().AsDuration(), got.GetMedianTimeToConvert() != nil, w.median)
		})
	}
}

func checkDuration(t *testing.T, what string, got time.Duration, set bool, want time.Duration) {
	t.Helper()
	switch {
	case want == 0 && set:
		t.Errorf("%s = %v, want unset", what, got)
	case want != 0 && (!set || got != want):
		t.Errorf("%s = %v (set %v), want %v", what, got, set, want)
	}
}

func TestFunnelFiltersAndRefusals(t *testing.T) {
	f := newFixture(t)
	seedFunnel(t, f)
	resp, err := f.client.GetFunnelReport(f.acme, &lifecyclev1.GetFunnelReportRequest{
		StartTime: timestamppb.New(base), EndTime: timestamppb.New(base.Add(14 * day)), Source: "ads",
		Period:      lifecyclev1.Period_PERIOD_DAY,
		TimeZone:    "Europe/Paris",
		Conversions: []*lifecyclev1.StagePair{{FromStage: typesv1.Stage_STAGE_INQUIRY, ToStage: typesv1.Stage_STAGE_MQL}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := resp.GetReport()
	if n := rep.GetStages()[0].GetEnteredCount(); n != 1 {
		t.Errorf("inquiries from ads = %d, want 1", n)
	}
	if c := rep.GetConversions(); len(c) != 1 || c[0].GetCohortCount() != 1 || c[0].GetConvertedCount() != 1 {
		t.Errorf("conversions = %v", c)
	}
	// Days in Paris: the range starts at 01:00 local, so 15 periods.
	if n := len(rep.GetStages()[0].GetPeriods()); n != 15 {
		t.Errorf("%d daily periods, want 15", n)
	}
	for name, req := range map[string]*lifecyclev1.GetFunnelReportRequest{
		"bad zone":      {StartTime: timestamppb.New(base), TimeZone: "Mars/Olympus"},
		"too many days": {StartTime: timestamppb.New(base.AddDate(-2, 0, 0)), EndTime: timestamppb.New(base), Period: lifecyclev1.Period_PERIOD_DAY},
		"end before":    {StartTime: timestamppb.New(base), EndTime: timestamppb.New(base.Add(-day))},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.client.GetFunnelReport(f.acme, req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code = %v, want InvalidArgument", status.Code(err))
			}
		})
	}
}
