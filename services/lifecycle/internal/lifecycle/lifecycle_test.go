package lifecycle

import (
	"errors"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func ruleOf(err error) string {
	e, ok := errors.AsType[*apperr.Error](err)
	if !ok || len(e.PreconditionViolations()) == 0 {
		return ""
	}
	return e.PreconditionViolations()[0].Type
}

func TestCheckTransition(t *testing.T) {
	s := DefaultSettings()
	needBudget := &Bant{Need: BantItem{Confirmed: true}, Budget: BantItem{Confirmed: true}}
	for _, tc := range []struct {
		name string
		from Stage
		req  TransitionRequest
		rule string // "" means allowed
	}{
		{"waterfall step", StageInquiry, TransitionRequest{To: StageMQL}, ""},
		{"same stage", StageMQL, TransitionRequest{To: StageMQL}, RuleSameStage},
		{"skip not in graph", StageInquiry, TransitionRequest{To: StageWon}, RuleNotAllowed},
		{"backward without reason", StageSQL, TransitionRequest{To: StageSAL}, RuleReasonMissing},
		{"backward with reason", StageSQL, TransitionRequest{To: StageSAL, Reason: "needs another call"}, ""},
		{"lost without reason", StageOpportunity, TransitionRequest{To: StageLost}, RuleReasonNotList},
		{"lost with unlisted reason", StageOpportunity, TransitionRequest{To: StageLost, Reason: "bored"}, RuleReasonNotList},
		{"lost with listed reason", StageOpportunity, TransitionRequest{To: StageLost, Reason: "competitor"}, ""},
		{"disqualified with listed reason", StageInquiry, TransitionRequest{To: StageDisqualified, Reason: "spam"}, ""},
		{"disqualified with lost reason", StageInquiry, TransitionRequest{To: StageDisqualified, Reason: "price"}, RuleReasonNotList},
		{"sql without bant", StageSAL, TransitionRequest{To: StageSQL}, RuleBANT},
		{"sql with need only", StageSAL, TransitionRequest{To: StageSQL, Bant: &Bant{Need: BantItem{Confirmed: true}}}, RuleBANT},
		{"sql with budget only", StageSAL, TransitionRequest{To: StageSQL, Bant: &Bant{Budget: BantItem{Confirmed: true}}}, RuleBANT},
		{"sql with need and budget", StageSAL, TransitionRequest{To: StageSQL, Bant: needBudget}, ""},
		{"sgl to sql with bant", StageSGL, TransitionRequest{To: StageSQL, Bant: needBudget}, ""},
		{"recycled re-qualifies", StageRecycled, TransitionRequest{To: StageMQL}, ""},
		{"lost to recycled", StageLost, TransitionRequest{To: StageRecycled}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTransition(s, "leads/l1/lifecycle", tc.from, tc.req)
			if got := ruleOf(err); got != tc.rule {
				t.Fatalf("rule = %q (err %v), want %q", got, err, tc.rule)
			}
			if tc.rule != "" && apperr.KindOf(err) != apperr.KindFailedPrecondition {
				t.Fatalf("kind = %v, want FAILED_PRECONDITION", apperr.KindOf(err))
			}
		})
	}
}

func TestCustomGraph(t *testing.T) {
	s := DefaultSettings()
	s.Allowed[StageInquiry] = append(s.Allowed[StageInquiry], StageSAL)
	if err := CheckTransition(s, "x", StageInquiry, TransitionRequest{To: StageSAL}); err != nil {
		t.Fatalf("custom move refused: %v", err)
	}
	delete(s.Allowed, StageMQL)
	if got := ruleOf(CheckTransition(s, "x", StageMQL, TransitionRequest{To: StageSAL})); got != RuleNotAllowed {
		t.Fatalf("rule = %q, want %s", got, RuleNotAllowed)
	}
}

func TestDecideTransition(t *testing.T) {
	s := DefaultSettings()
	t.Run("unknown lead enters at SGL only", func(t *testing.T) {
		next, steps, err := DecideTransition(nil, "acme", "l1", TransitionRequest{To: StageSGL}, s, t0)
		if err != nil {
			t.Fatal(err)
		}
		if next.Stage != StageSGL || next.Version != 1 || len(steps) != 1 || steps[0].From != StageUnspecified {
			t.Fatalf("next = %+v, steps = %+v", next, steps)
		}
		if _, _, err := DecideTransition(nil, "acme", "l1", TransitionRequest{To: StageMQL}, s, t0); !errors.Is(err, ErrLeadNotFound) {
			t.Fatalf("err = %v, want ErrLeadNotFound", err)
		}
	})
	t.Run("stale etag", func(t *testing.T) {
		cur := &Lead{Workspace: "acme", ID: "l1", Stage: StageInquiry, Version: 3}
		if _, _, err := DecideTransition(cur, "acme", "l1", TransitionRequest{To: StageMQL, Etag: "2"}, s, t0); !errors.Is(err, ErrStaleEtag) {
			t.Fatalf("err = %v, want ErrStaleEtag", err)
		}
		next, _, err := DecideTransition(cur, "acme", "l1", TransitionRequest{To: StageMQL, Etag: "3"}, s, t0)
		if err != nil || next.Version != 4 || next.PreviousStage != StageInquiry {
			t.Fatalf("next = %+v, err = %v", next, err)
		}
	})
	t.Run("recycling counts and backward flag", func(t *testing.T) {
		cur := &Lead{Stage: StageLost, StageEnterTime: t0}
		next, steps, err := DecideTransition(cur, "acme", "l1", TransitionRequest{To: StageRecycled}, s, t0.Add(time.Hour))
		if err != nil || next.RecycleCount != 1 || steps[0].Backward {
			t.Fatalf("next = %+v, steps = %+v, err = %v", next, steps, err)
		}
		_, steps, err = DecideTransition(&Lead{Stage: StageSQL}, "acme", "l1", TransitionRequest{To: StageSAL, Reason: "r"}, s, t0)
		if err != nil || !steps[0].Backward {
			t.Fatalf("backward not flagged: %+v %v", steps, err)
		}
	})
	t.Run("never dated before the previous move", func(t *testing.T) {
		cur := &Lead{Stage: StageInquiry, StageEnterTime: t0}
		_, steps, _ := DecideTransition(cur, "acme", "l1", TransitionRequest{To: StageMQL}, s, t0.Add(-time.Minute))
		if !steps[0].Time.Equal(t0) {
			t.Fatalf("time = %v, want %v", steps[0].Time, t0)
		}
	})
}

func TestDecideEvent(t *testing.T) {
	cause := Cause{Actor: Actor{Kind: ActorService, ID: "scoring"}}
	at := func(st Stage) *Lead {
		return &Lead{Workspace: "acme", ID: "l1", Stage: st, StageEnterTime: t0, LastActivityTime: t0}
	}
	for _, tc := range []struct {
		name  string
		cur   *Lead
		ev    Event
		moves []Stage // stages entered, in order
		stage Stage   // resulting stage; unspecified when nothing changes
	}{
		{"capture creates at inquiry", nil, Event{Kind: EventCaptured, Source: "web"}, []Stage{StageInquiry}, StageInquiry},
		{"qualified before captured", nil, Event{Kind: EventQualified}, []Stage{StageInquiry, StageMQL}, StageMQL},
		{"qualified inquiry", at(StageInquiry), Event{Kind: EventQualified}, []Stage{StageMQL}, StageMQL},
		{"qualified recycled", at(StageRecycled), Event{Kind: EventQualified}, []Stage{StageMQL}, StageMQL},
		{"qualified again stays", at(StageMQL), Event{Kind: EventQualified}, nil, StageUnspecified},
		{"qualified past mql stays", at(StageSQL), Event{Kind: EventQualified}, nil, StageUnspecified},
		{"qualified disqualified stays", at(StageDisqualified), Event{Kind: EventQualified}, nil, StageUnspecified},
		{"accepted mql", at(StageMQL), Event{Kind: EventAccepted}, []Stage{StageSAL}, StageSAL},
		{"accepted sql stays", at(StageSQL), Event{Kind: EventAccepted}, nil, StageUnspecified},
		{"rejected sal", at(StageSAL), Event{Kind: EventRejected}, []Stage{StageRecycled}, StageRecycled},
		{"rejected won stays", at(StageWon), Event{Kind: EventRejected}, nil, StageUnspecified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ev.Workspace, tc.ev.Lead, tc.ev.Cause = "acme", "l1", cause
			next, steps := DecideEvent(tc.cur, tc.ev, t0.Add(time.Minute))
			if len(steps) != len(tc.moves) {
				t.Fatalf("steps = %+v, want moves to %v", steps, tc.moves)
			}
			for i, st := range steps {
				if st.To != tc.moves[i] || st.Actor != cause.Actor {
					t.Fatalf("step %d = %+v, want to %v", i, st, tc.moves[i])
				}
			}
			if tc.stage == StageUnspecified {
				if next != nil {
					t.Fatalf("next = %+v, want no change", next)
				}
				return
			}
			if next.Stage != tc.stage {
				t.Fatalf("stage = %v, want %v", next.Stage, tc.stage)
			}
		})
	}
	t.Run("rejection recycles once with a reason", func(t *testing.T) {
		next, steps := DecideEvent(at(StageMQL), Event{Kind: EventRejected}, t0.Add(time.Minute))
		if next.RecycleCount != 1 || steps[0].Reason != RejectedReason {
			t.Fatalf("next = %+v, steps = %+v", next, steps)
		}
	})
	t.Run("score updates without a move", func(t *testing.T) {
		next, steps := DecideEvent(at(StageMQL), Event{Kind: EventScored, Score: 90, HasScore: true, OccurTime: t0}, t0)
		if len(steps) != 0 || next == nil || *next.Score != 90 {
			t.Fatalf("next = %+v, steps = %+v", next, steps)
		}
		if got := next.TemperatureAt(t0.Add(time.Hour)); got != TemperatureHot {
			t.Fatalf("temperature = %v, want hot", got)
		}
	})
	t.Run("first capture's attribution sticks", func(t *testing.T) {
		cur := at(StageMQL)
		cur.Source = "web"
		next, _ := DecideEvent(cur, Event{Kind: EventCaptured, Source: "ads", Campaign: "q3"}, t0)
		if next.Source != "web" || next.Campaign != "q3" {
			t.Fatalf("source, campaign = %q, %q", next.Source, next.Campaign)
		}
	})
}

func TestTemperatureOf(t *testing.T) {
	score := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		name  string
		score *int64
		idle  time.Duration
		want  Temperature
	}{
		{"never scored", nil, 0, TemperatureUnspecified},
		{"high and recent", score(HotScore), HotWithin, TemperatureHot},
		{"high but idle a while", score(HotScore), HotWithin + time.Hour, TemperatureWarm},
		{"mid and recent", score(WarmScore), time.Hour, TemperatureWarm},
		{"mid and idle", score(WarmScore), WarmWithin + time.Hour, TemperatureCold},
		{"low", score(WarmScore - 1), 0, TemperatureCold},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TemperatureOf(tc.score, t0, t0.Add(tc.idle)); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPeriodBounds(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	wed := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC) // a Wednesday
	for _, tc := range []struct {
		name       string
		start, end time.Time
		p          Period
		loc        *time.Location
		want       []time.Time
	}{
		{"weeks start monday", wed, wed.AddDate(0, 0, 14), PeriodWeek, time.UTC, []time.Time{
			wed, time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 16, 0, 0, 0, 0, time.UTC),
		}},
		{"days in paris", wed, wed.AddDate(0, 0, 2), PeriodDay, paris, []time.Time{
			wed, time.Date(2026, 3, 5, 0, 0, 0, 0, paris), time.Date(2026, 3, 6, 0, 0, 0, 0, paris),
		}},
		{"quarters", wed, time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC), PeriodQuarter, time.UTC, []time.Time{
			wed, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC),
		}},
		{"exact boundary start", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), PeriodMonth, time.UTC, []time.Time{
			time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PeriodBounds(tc.start, tc.end, tc.p, tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].Equal(tc.want[i]) {
					t.Fatalf("bound %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
	if _, err := PeriodBounds(wed, wed.AddDate(2, 0, 0), PeriodDay, time.UTC); apperr.KindOf(err) != apperr.KindInvalidArgument {
		t.Fatalf("730 days: err = %v, want INVALID_ARGUMENT", err)
	}
}

func TestSettingsValidate(t *testing.T) {
	s := DefaultSettings()
	if err := s.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	s.LostReasons = nil
	if apperr.KindOf(s.Validate()) != apperr.KindInvalidArgument {
		t.Fatal("empty lost reasons accepted")
	}
	s = DefaultSettings()
	s.Allowed[StageMQL] = []Stage{StageMQL}
	if apperr.KindOf(s.Validate()) != apperr.KindInvalidArgument {
		t.Fatal("self move accepted")
	}
}
