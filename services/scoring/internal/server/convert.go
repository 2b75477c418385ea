package server

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	scoringv1 "github.com/leadflow/leadflow/gen/go/leadflow/scoring/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
)

func modelName(id string) string { return resname.Format("scoringModels", id) }
func jobName(id string) string   { return resname.Format("rescoreJobs", id) }
func activityName(lead, id string) string {
	if id == "" {
		return ""
	}
	return resname.Format("leads", lead, "activities", id)
}

func ts(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

var modelStates = map[scoring.ModelState]scoringv1.ScoringModel_State{
	scoring.StateDraft:      scoringv1.ScoringModel_STATE_DRAFT,
	scoring.StatePublished:  scoringv1.ScoringModel_STATE_PUBLISHED,
	scoring.StateSuperseded: scoringv1.ScoringModel_STATE_SUPERSEDED,
}

func toDomainState(s scoringv1.ScoringModel_State) scoring.ModelState {
	for k, v := range modelStates {
		if v == s {
			return k
		}
	}
	return ""
}

func toProtoModel(m scoring.Model) *scoringv1.ScoringModel {
	out := &scoringv1.ScoringModel{
		Name:           modelName(m.ID),
		DisplayName:    m.DisplayName,
		Description:    m.Description,
		State:          modelStates[m.State],
		Version:        m.Version,
		MaxTotalPoints: m.MaxTotalPoints,
		MqlThreshold:   m.MQLThreshold,
		GradeBasis:     scoringv1.ScoringModel_GradeBasis(m.GradeBasis),
		CreateTime:     timestamppb.New(m.CreateTime),
		UpdateTime:     timestamppb.New(m.UpdateTime),
		PublishTime:    ts(m.PublishTime),
		SupersedeTime:  ts(m.SupersedeTime),
		Etag:           m.Etag,
	}
	out.HandRaiserActivityTypes = append(out.HandRaiserActivityTypes, m.HandRaiserTypes...)
	for _, r := range m.FitRules {
		out.FitRules = append(out.FitRules, &scoringv1.FitRule{Id: r.ID, DisplayName: r.DisplayName,
			Condition: r.Condition, Points: r.Points, Group: r.Group})
	}
	for _, r := range m.EngagementRules {
		e := &scoringv1.EngagementRule{Id: r.ID, DisplayName: r.DisplayName, Condition: r.Condition, Points: r.Points, Group: r.Group}
		switch {
		case r.Decay.HalfLife > 0:
			e.Decay = &scoringv1.Decay{Kind: &scoringv1.Decay_HalfLife{HalfLife: durationpb.New(r.Decay.HalfLife)}}
		case r.Decay.Window > 0:
			e.Decay = &scoringv1.Decay{Kind: &scoringv1.Decay_Window{Window: durationpb.New(r.Decay.Window)}}
		}
		out.EngagementRules = append(out.EngagementRules, e)
	}
	for _, r := range m.ExclusionRules {
		out.ExclusionRules = append(out.ExclusionRules, &scoringv1.ExclusionRule{Id: r.ID, DisplayName: r.DisplayName, Condition: r.Condition})
	}
	for _, g := range m.Groups {
		out.RuleGroups = append(out.RuleGroups, &scoringv1.RuleGroup{Id: g.ID, DisplayName: g.DisplayName,
			Component: scoringv1.ScoreComponent(g.Component), MaxPoints: g.MaxPoints})
	}
	for _, b := range m.GradeBands {
		out.GradeBands = append(out.GradeBands, &scoringv1.GradeBand{Grade: b.Grade, MinScore: b.MinScore})
	}
	return out
}

// applyModel copies the fields named by paths (every mutable field when
// empty) from the request's model onto m.
func applyModel(m *scoring.Model, in *scoringv1.ScoringModel, paths []string) {
	if len(paths) == 0 {
		paths = mutablePaths
	}
	for _, p := range paths {
		switch p {
		case "display_name":
			m.DisplayName = in.GetDisplayName()
		case "description":
			m.Description = in.GetDescription()
		case "fit_rules":
			m.FitRules = nil
			for _, r := range in.GetFitRules() {
				m.FitRules = append(m.FitRules, scoring.FitRule{ID: r.GetId(), DisplayName: r.GetDisplayName(),
					Condition: r.GetCondition(), Points: r.GetPoints(), Group: r.GetGroup()})
			}
		case "engagement_rules":
			m.EngagementRules = nil
			for _, r := range in.GetEngagementRules() {
				m.EngagementRules = append(m.EngagementRules, scoring.EngagementRule{ID: r.GetId(), DisplayName: r.GetDisplayName(),
					Condition: r.GetCondition(), Points: r.GetPoints(), Group: r.GetGroup(),
					Decay: scoring.Decay{HalfLife: r.GetDecay().GetHalfLife().AsDuration(), Window: r.GetDecay().GetWindow().AsDuration()}})
			}
		case "exclusion_rules":
			m.ExclusionRules = nil
			for _, r := range in.GetExclusionRules() {
				m.ExclusionRules = append(m.ExclusionRules, scoring.ExclusionRule{ID: r.GetId(), DisplayName: r.GetDisplayName(), Condition: r.GetCondition()})
			}
		case "rule_groups":
			m.Groups = nil
			for _, g := range in.GetRuleGroups() {
				m.Groups = append(m.Groups, scoring.RuleGroup{ID: g.GetId(), DisplayName: g.GetDisplayName(),
					Component: scoring.Component(g.GetComponent()), MaxPoints: g.GetMaxPoints()})
			}
		case "max_total_points":
			m.MaxTotalPoints = in.GetMaxTotalPoints()
		case "mql_threshold":
			m.MQLThreshold = in.GetMqlThreshold()
		case "hand_raiser_activity_types":
			m.HandRaiserTypes = append([]typesv1.ActivityType(nil), in.GetHandRaiserActivityTypes()...)
		case "grade_basis":
			m.GradeBasis = scoring.GradeBasis(in.GetGradeBasis())
		case "grade_bands":
			m.GradeBands = nil
			for _, b := range in.GetGradeBands() {
				m.GradeBands = append(m.GradeBands, scoring.GradeBand{Grade: b.GetGrade(), MinScore: b.GetMinScore()})
			}
		}
	}
}

var mutablePaths = []string{"display_name", "description", "fit_rules", "engagement_rules", "exclusion_rules",
	"rule_groups", "max_total_points", "mql_threshold", "hand_raiser_activity_types", "grade_basis", "grade_bands"}

func toProtoQualification(lead string, q *scoring.Qualification) *scoringv1.Qualification {
	if q == nil {
		return nil
	}
	return &scoringv1.Qualification{Reason: scoringv1.QualificationReason(q.Reason), QualifyTime: timestamppb.New(q.Time),
		TotalScore: q.TotalScore, ModelVersion: q.ModelVersion, Activity: activityName(lead, q.Activity)}
}

func toProtoScore(ls scoring.LeadScore, full bool) *scoringv1.LeadScore {
	s := ls.Score
	out := &scoringv1.LeadScore{
		Name:                  resname.Format("leads", ls.Lead, "score"),
		ScoringModel:          modelName(ls.ModelID),
		ModelVersion:          ls.ModelVersion,
		FitScore:              s.Fit,
		EngagementScore:       s.Engagement,
		TotalScore:            s.Total,
		FitMilliPoints:        s.FitMilli,
		EngagementMilliPoints: s.EngagementMilli,
		TotalMilliPoints:      s.TotalMilli,
		Grade:                 s.Grade,
		MqlThreshold:          ls.MQLThreshold,
		Qualification:         toProtoQualification(ls.Lead, ls.Qualification),
		ScoreTime:             timestamppb.New(s.Time),
	}
	if !full {
		return out
	}
	for _, c := range s.Contributions {
		pc := &scoringv1.ScoreContribution{
			Kind: scoringv1.ScoreContribution_Kind(c.Kind), Component: scoringv1.ScoreComponent(c.Component),
			Rule: c.Rule, DisplayName: c.DisplayName, Activity: activityName(ls.Lead, c.Activity),
			ActivityType: c.ActivityType, BasePoints: c.BasePoints, DecayFactor: c.DecayFactor, MilliPoints: c.MilliPoints,
		}
		if !c.ActivityTime.IsZero() {
			pc.ActivityTime = timestamppb.New(c.ActivityTime)
		}
		out.Contributions = append(out.Contributions, pc)
	}
	for _, c := range ls.Crossings {
		dir := scoringv1.ThresholdCrossing_DIRECTION_DOWN
		if c.Up {
			dir = scoringv1.ThresholdCrossing_DIRECTION_UP
		}
		out.ThresholdCrossings = append(out.ThresholdCrossings, &scoringv1.ThresholdCrossing{Direction: dir,
			CrossTime: timestamppb.New(c.Time), TotalScore: c.TotalScore, ModelVersion: c.ModelVersion})
	}
	return out
}

// toProtoStoredScore renders a lead's stored score (as of its score_time),
// which is what lists show and order by.
func toProtoStoredScore(l scoring.Lead, threshold int64) *scoringv1.LeadScore {
	return &scoringv1.LeadScore{
		Name:                  resname.Format("leads", l.ID, "score"),
		ScoringModel:          modelName(l.ModelID),
		ModelVersion:          l.ModelVersion,
		FitScore:              scoring.WholePoints(l.FitMilli),
		EngagementScore:       scoring.WholePoints(l.EngagementMilli),
		TotalScore:            scoring.WholePoints(l.TotalMilli),
		FitMilliPoints:        l.FitMilli,
		EngagementMilliPoints: l.EngagementMilli,
		TotalMilliPoints:      l.TotalMilli,
		Grade:                 l.Grade,
		MqlThreshold:          threshold,
		Qualification:         toProtoQualification(l.ID, l.Qualification),
		ScoreTime:             ts(l.ScoreTime),
	}
}

var jobStates = map[scoring.JobState]scoringv1.RescoreJob_State{
	scoring.JobPending:   scoringv1.RescoreJob_STATE_PENDING,
	scoring.JobRunning:   scoringv1.RescoreJob_STATE_RUNNING,
	scoring.JobSucceeded: scoringv1.RescoreJob_STATE_SUCCEEDED,
	scoring.JobFailed:    scoringv1.RescoreJob_STATE_FAILED,
	scoring.JobCancelled: scoringv1.RescoreJob_STATE_CANCELLED,
}

func toProtoJob(j scoring.RescoreJob) *scoringv1.RescoreJob {
	if j.ID == "" {
		return nil
	}
	return &scoringv1.RescoreJob{
		Name: jobName(j.ID), ScoringModel: modelName(j.ModelID), ModelVersion: j.ModelVersion, State: jobStates[j.State],
		TotalLeads: j.TotalLeads, ProcessedLeads: j.ProcessedLeads, ChangedLeads: j.ChangedLeads,
		QualifiedLeads: j.QualifiedLeads, FailedLeads: j.FailedLeads, CreateTime: timestamppb.New(j.CreateTime),
		StartTime: ts(j.StartTime), EndTime: ts(j.EndTime), ErrorMessage: j.ErrorMessage,
	}
}

func toProtoBacktest(b scoring.Backtest) *scoringv1.Backtest {
	out := &scoringv1.Backtest{
		ScoringModel: modelName(b.ModelID), LeadCount: b.LeadCount, WonCount: b.WonCount, LostCount: b.LostCount,
		WinRate: b.WinRate, Truncated: b.Truncated, CreateTime: timestamppb.New(b.CreateTime),
	}
	for _, band := range b.Bands {
		out.Bands = append(out.Bands, &scoringv1.BacktestBand{MinScore: band.MinScore, MaxScore: band.MaxScore,
			LeadCount: band.LeadCount, WonCount: band.WonCount, WinRate: band.WinRate})
	}
	for _, g := range b.Grades {
		out.Grades = append(out.Grades, &scoringv1.BacktestGrade{Grade: g.Grade, LeadCount: g.LeadCount, WonCount: g.WonCount, WinRate: g.WinRate})
	}
	if s := b.Suggested; s != nil {
		out.SuggestedThreshold = &scoringv1.ThresholdSuggestion{MqlThreshold: s.Threshold, LeadsAbove: s.LeadsAbove,
			WinRateAbove: s.WinRateAbove, Lift: s.Lift}
	}
	return out
}
