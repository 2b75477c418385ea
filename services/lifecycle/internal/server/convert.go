package server

import (
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

// The domain numbers stages, temperatures, actor kinds and periods like the
// protos, so those convert with a cast.

func toProtoLead(l lifecycle.Lead, now time.Time) *lifecyclev1.LeadLifecycle {
	out := &lifecyclev1.LeadLifecycle{
		Name:           resname.Format("leads", l.ID, "lifecycle"),
		Stage:          typesv1.Stage(l.Stage),
		StageEnterTime: timestamppb.New(l.StageEnterTime),
		PreviousStage:  typesv1.Stage(l.PreviousStage),
		Reason:         l.Reason,
		RecycleCount:   int32(l.RecycleCount),
		Temperature:    typesv1.Temperature(l.TemperatureAt(now)),
		Bant:           toProtoBant(l.Bant),
		CreateTime:     timestamppb.New(l.CreateTime),
		UpdateTime:     timestamppb.New(l.UpdateTime),
	}
	if l.ReadTime.IsZero() {
		out.Etag = l.Etag()
	} else {
		out.ReadTime = timestamppb.New(l.ReadTime)
	}
	return out
}

func toProtoTransition(t lifecycle.Transition) *lifecyclev1.Transition {
	return &lifecyclev1.Transition{
		Name:           resname.Format("leads", t.Lead, "transitions", strconv.FormatInt(t.ID, 10)),
		FromStage:      typesv1.Stage(t.From),
		ToStage:        typesv1.Stage(t.To),
		Reason:         t.Reason,
		Note:           t.Note,
		Bant:           toProtoBant(t.Bant),
		Backward:       t.Backward,
		Actor:          &lifecyclev1.Actor{Kind: lifecyclev1.Actor_Kind(t.Actor.Kind), Id: t.Actor.ID},
		Trigger:        t.Trigger,
		Event:          t.EventID,
		TransitionTime: timestamppb.New(t.Time),
		TraceId:        t.TraceID,
	}
}

func toProtoBant(b *lifecycle.Bant) *lifecyclev1.Bant {
	if b == nil {
		return nil
	}
	item := func(i lifecycle.BantItem) *lifecyclev1.BantItem {
		return &lifecyclev1.BantItem{Confirmed: i.Confirmed, Note: i.Note}
	}
	return &lifecyclev1.Bant{Budget: item(b.Budget), Authority: item(b.Authority), Need: item(b.Need), Timeframe: item(b.Timeframe)}
}

func toDomainBant(b *lifecyclev1.Bant) *lifecycle.Bant {
	if b == nil {
		return nil
	}
	item := func(i *lifecyclev1.BantItem) lifecycle.BantItem {
		return lifecycle.BantItem{Confirmed: i.GetConfirmed(), Note: i.GetNote()}
	}
	return &lifecycle.Bant{Budget: item(b.GetBudget()), Authority: item(b.GetAuthority()), Need: item(b.GetNeed()), Timeframe: item(b.GetTimeframe())}
}

func toProtoSettings(s lifecycle.Settings) *lifecyclev1.LifecycleSettings {
	out := &lifecyclev1.LifecycleSettings{
		Name:                settingsName,
		LostReasons:         toProtoReasons(s.LostReasons),
		DisqualifiedReasons: toProtoReasons(s.DisqualifiedReasons),
		Etag:                s.Etag(),
	}
	if !s.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(s.UpdateTime)
	}
	// In report order, so the answer is stable.
	for _, from := range lifecycle.Stages {
		tos, ok := s.Allowed[from]
		if !ok {
			continue
		}
		at := &lifecyclev1.AllowedTransitions{FromStage: typesv1.Stage(from)}
		for _, to := range tos {
			at.ToStages = append(at.ToStages, typesv1.Stage(to))
		}
		out.AllowedTransitions = append(out.AllowedTransitions, at)
	}
	return out
}

func toProtoReasons(rs []lifecycle.ReasonCode) []*lifecyclev1.ReasonCode {
	out := make([]*lifecyclev1.ReasonCode, len(rs))
	for i, r := range rs {
		out[i] = &lifecyclev1.ReasonCode{Code: r.Code, DisplayName: r.DisplayName}
	}
	return out
}

func toDomainSettings(in *lifecyclev1.LifecycleSettings) lifecycle.Settings {
	s := lifecycle.Settings{Allowed: map[lifecycle.Stage][]lifecycle.Stage{}}
	for _, at := range in.GetAllowedTransitions() {
		from := lifecycle.Stage(at.GetFromStage())
		s.Allowed[from] = []lifecycle.Stage{}
		for _, to := range at.GetToStages() {
			s.Allowed[from] = append(s.Allowed[from], lifecycle.Stage(to))
		}
	}
	for _, r := range in.GetLostReasons() {
		s.LostReasons = append(s.LostReasons, lifecycle.ReasonCode{Code: r.GetCode(), DisplayName: r.GetDisplayName()})
	}
	for _, r := range in.GetDisqualifiedReasons() {
		s.DisqualifiedReasons = append(s.DisqualifiedReasons, lifecycle.ReasonCode{Code: r.GetCode(), DisplayName: r.GetDisplayName()})
	}
	return s
}

func toProtoDuration(d *time.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(*d)
}

func toProtoFunnel(r lifecycle.FunnelReport) *lifecyclev1.FunnelReport {
	out := &lifecyclev1.FunnelReport{
		StartTime:    timestamppb.New(r.Request.Start),
		EndTime:      timestamppb.New(r.Request.End),
		Source:       r.Request.Source,
		Campaign:     r.Request.Campaign,
		Period:       lifecyclev1.Period(r.Request.Period),
		TimeZone:     r.Request.TimeZone,
		GenerateTime: timestamppb.New(r.GenerateTime),
	}
	for _, st := range r.Stages {
		ss := &lifecyclev1.StageStats{
			Stage:             typesv1.Stage(st.Stage),
			EnteredCount:      st.Counts.Entered,
			ExitedCount:       st.Counts.Exited,
			MedianTimeInStage: toProtoDuration(st.Counts.Median),
			P90TimeInStage:    toProtoDuration(st.Counts.P90),
		}
		for _, p := range st.Periods {
			ss.Periods = append(ss.Periods, &lifecyclev1.PeriodCount{
				PeriodStartTime: timestamppb.New(p.Start), EnteredCount: p.Entered, GrowthRate: p.Growth,
			})
		}
		out.Stages = append(out.Stages, ss)
	}
	for _, c := range r.Conversions {
		out.Conversions = append(out.Conversions, &lifecyclev1.StageConversion{
			FromStage:           typesv1.Stage(c.Pair.From),
			ToStage:             typesv1.Stage(c.Pair.To),
			CohortCount:         c.Counts.Cohort,
			ConvertedCount:      c.Counts.Converted,
			Rate:                c.Rate,
			MedianTimeToConvert: toProtoDuration(c.Counts.Median),
		})
	}
	return out
}
