package scoring

import (
	"math"
	"slices"
	"strings"
	"time"

	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
)

// ContributionKind tells a rule's points from a cap's cut.
type ContributionKind int

// Contribution kinds, numbered as scoringv1.ScoreContribution_Kind.
const (
	KindRule     ContributionKind = 1
	KindGroupCap ContributionKind = 2
	KindTotalCap ContributionKind = 3
)

// Contribution is one line of a score's explanation.
type Contribution struct {
	Kind      ContributionKind
	Component Component
	// Rule is the rule id for rule lines, the group id for group caps.
	Rule        string
	DisplayName string
	// Activity is set for engagement lines.
	Activity     string
	ActivityType typesv1.ActivityType
	ActivityTime time.Time
	BasePoints   int64
	DecayFactor  float64
	MilliPoints  int64
}

// Score is a lead's score as of Time, with the reasons. Milli amounts are
// exact sums of Contributions; whole points are rounded from them.
type Score struct {
	FitMilli, EngagementMilli, TotalMilli int64
	Fit, Engagement, Total                int64
	Grade                                 string
	Contributions                         []Contribution
	Time                                  time.Time
}

// WholePoints rounds milli-points half up to whole points:
// floor((milli + 500) / 1000), which commutes with adding whole points.
func WholePoints(milli int64) int64 {
	n := milli + 500
	q := n / 1000
	if n%1000 != 0 && n < 0 {
		q--
	}
	return q
}

// DecayFactor is the multiplier in [0, 1] that d applies to an activity of
// the given age.
func DecayFactor(d Decay, age time.Duration) float64 {
	age = max(age, 0)
	switch {
	case d.HalfLife > 0:
		return math.Pow(0.5, float64(age)/float64(d.HalfLife))
	case d.Window > 0:
		if age < d.Window {
			return 1
		}
		return 0
	}
	return 1
}

// Score computes the score as of at from the lead's fit matches and the
// matches of its activities, with its explanation. Activities that occur
// after at are left out, so a score can be taken as of a past moment
// (backtests).
func (p *Program) Score(fit []int, matches []Match, at time.Time) Score {
	return p.score(fit, matches, at, true)
}

// Totals is Score without the explanation, for the paths that only compare
// scores (event handling, rescoring, backtests).
func (p *Program) Totals(fit []int, matches []Match, at time.Time) Score {
	return p.score(fit, matches, at, false)
}

func (p *Program) score(fit []int, matches []Match, at time.Time, explain bool) Score {
	r := &p.rules
	s := Score{Time: at}
	if explain {
		s.Contributions = make([]Contribution, 0, len(fit)+2*len(matches)+len(r.Groups)+1)
	}
	add := func(c Contribution) {
		if explain {
			s.Contributions = append(s.Contributions, c)
		}
	}
	groupSum := make([]int64, len(r.Groups))
	for _, i := range fit {
		rule := r.FitRules[i]
		milli := rule.Points * 1000
		if milli == 0 {
			continue
		}
		add(Contribution{
			Kind: KindRule, Component: ComponentFit, Rule: rule.ID, DisplayName: rule.DisplayName,
			BasePoints: rule.Points, DecayFactor: 1, MilliPoints: milli,
		})
		s.FitMilli += milli
		if g := p.fitGroup[i]; g >= 0 {
			groupSum[g] += milli
		}
	}

	// Engagement lines come newest activity first.
	order := make([]int, 0, len(matches))
	for i, m := range matches {
		if !m.Excluded && len(m.Rules) > 0 && !m.Activity.OccurTime.After(at) {
			order = append(order, i)
		}
	}
	if explain {
		p.sortNewestFirst(order, matches)
	}
	for _, mi := range order {
		m := matches[mi]
		for _, i := range m.Rules {
			rule := r.EngagementRules[i]
			f := DecayFactor(rule.Decay, at.Sub(m.Activity.OccurTime))
			// Round half away from zero, once per line, so lines sum exactly.
			milli := int64(math.Round(float64(rule.Points*1000) * f))
			if milli == 0 {
				continue
			}
			add(Contribution{
				Kind: KindRule, Component: ComponentEngagement, Rule: rule.ID, DisplayName: rule.DisplayName,
				Activity: m.Activity.ID, ActivityType: m.Activity.Type, ActivityTime: m.Activity.OccurTime,
				BasePoints: rule.Points, DecayFactor: f, MilliPoints: milli,
			})
			s.EngagementMilli += milli
			if g := p.engagementGroup[i]; g >= 0 {
				groupSum[g] += milli
			}
		}
	}

	for g, group := range r.Groups {
		limit := group.MaxPoints * 1000
		if group.MaxPoints <= 0 || groupSum[g] <= limit {
			continue
		}
		cut := limit - groupSum[g]
		add(Contribution{
			Kind: KindGroupCap, Component: group.Component, Rule: group.ID, DisplayName: group.DisplayName,
			DecayFactor: 1, MilliPoints: cut,
		})
		if group.Component == ComponentFit {
			s.FitMilli += cut
		} else {
			s.EngagementMilli += cut
		}
	}

	s.TotalMilli = s.FitMilli + s.EngagementMilli
	if limit := r.MaxTotalPoints * 1000; r.MaxTotalPoints > 0 && s.TotalMilli > limit {
		cut := limit - s.TotalMilli
		add(Contribution{
			Kind: KindTotalCap, Component: ComponentTotalCap, DecayFactor: 1, MilliPoints: cut,
		})
		s.TotalMilli += cut
	}
	s.Fit, s.Engagement, s.Total = WholePoints(s.FitMilli), WholePoints(s.EngagementMilli), WholePoints(s.TotalMilli)
	s.Grade = p.Grade(s)
	return s
}

func (p *Program) sortNewestFirst(order []int, matches []Match) {
	slices.SortStableFunc(order, func(a, b int) int {
		if c := matches[b].Activity.OccurTime.Compare(matches[a].Activity.OccurTime); c != 0 {
			return c
		}
		return strings.Compare(matches[a].Activity.ID, matches[b].Activity.ID)
	})
}

// Grade is the grade the model's bands give s.
func (p *Program) Grade(s Score) string {
	bands := p.rules.GradeBands
	if len(bands) == 0 {
		return ""
	}
	score := s.Fit
	if p.rules.GradeBasis == GradeBasisTotal {
		score = s.Total
	}
	for _, b := range bands {
		if score >= b.MinScore {
			return b.Grade
		}
	}
	return bands[len(bands)-1].Grade
}

// Evaluate scores a lead from scratch as of at.
func (p *Program) Evaluate(lead LeadFacts, activities []Activity, at time.Time) Score {
	facts := NewFacts(lead)
	matches := make([]Match, len(activities))
	for i, a := range activities {
		matches[i] = p.MatchActivity(facts, a)
	}
	return p.Score(p.FitMatches(facts), matches, at)
}
