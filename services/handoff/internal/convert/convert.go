// Package convert turns handoff domain values into their API messages. The
// gRPC server and the webhook payloads share it, so a CRM receives exactly
// what GetHandoff returns.
package convert

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

func ts(t *time.Time) *timestamppb.Timestamp {
	if t == nil || t.IsZero() {
		return nil
	}
	return timestamppb.New(*t)
}

// Name returns "collection/id", or "" for an empty id.
func Name(collection, id string) string {
	if id == "" {
		return ""
	}
	return resname.Format(collection, id)
}

// Names maps ids to resource names.
func Names(collection string, ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, Name(collection, id))
	}
	return out
}

// Routing converts a routing decision.
func Routing(r handoff.Routing) *handoffv1.RoutingDecision {
	return &handoffv1.RoutingDecision{
		Rule:           r.Rule,
		PolicyRevision: r.Revision,
		Method:         handoffv1.RoutingDecision_Method(r.Method),
		Strategy:       handoffv1.AssignmentStrategy(r.Strategy),
		Explanation:    r.Explanation,
	}
}

// Handoff converts a handoff.
func Handoff(h handoff.Handoff) *handoffv1.Handoff {
	out := &handoffv1.Handoff{
		Name:         Name("handoffs", h.ID),
		Lead:         Name("leads", h.Lead),
		State:        handoffv1.Handoff_State(h.State),
		Origin:       handoffv1.Handoff_Origin(h.Origin),
		Owner:        Name("owners", h.Owner),
		Team:         Name("teams", h.Team),
		Routing:      Routing(h.Routing),
		RoutedLead:   h.RoutedLead,
		DueTime:      ts(h.DueTime),
		EscalatedTo:  Name("owners", h.EscalatedTo),
		EscalateTime: ts(h.EscalateTime),
		AcceptTime:   ts(h.AcceptTime),
		AcceptNote:   h.AcceptNote,
		RejectTime:   ts(h.RejectTime),
		RejectReason: h.RejectReason,
		CloseTime:    ts(h.CloseTime),
		CloseReason:  h.CloseReason,
		CreateTime:   timestamppb.New(h.CreateTime),
		UpdateTime:   timestamppb.New(h.UpdateTime),
		Etag:         handoff.Etag(h.Version),
	}
	for _, a := range h.Assignments {
		out.Assignments = append(out.Assignments, &handoffv1.Assignment{
			Owner:      Name("owners", a.Owner),
			Team:       Name("teams", a.Team),
			Routing:    Routing(a.Routing),
			AssignTime: timestamppb.New(a.AssignTime),
			DueTime:    ts(a.DueTime),
			Outcome:    handoffv1.Assignment_Outcome(a.Outcome),
			EndTime:    ts(a.EndTime),
			User:       a.User,
		})
	}
	return out
}

// Breach converts an SLA breach.
func Breach(b handoff.Breach) *handoffv1.SlaBreach {
	return &handoffv1.SlaBreach{
		Name:       Name("slaBreaches", b.ID),
		Handoff:    Name("handoffs", b.Handoff),
		Lead:       Name("leads", b.Lead),
		Owner:      Name("owners", b.Owner),
		Team:       Name("teams", b.Team),
		Manager:    Name("owners", b.Manager),
		DueTime:    timestamppb.New(b.DueTime),
		BreachTime: timestamppb.New(b.BreachTime),
		Action:     handoffv1.SlaBreach_Action(b.Action),
	}
}

// Owner converts an owner.
func Owner(o handoff.Owner) *handoffv1.Owner {
	return &handoffv1.Owner{
		Name:                Name("owners", o.ID),
		DisplayName:         o.DisplayName,
		Email:               o.Email,
		ExternalId:          o.ExternalID,
		Teams:               Names("teams", o.Teams),
		Manager:             Name("owners", o.Manager),
		Attributes:          o.Attributes,
		Capacity:            &handoffv1.Capacity{MaxLeads: int32(o.MaxLeads), Period: handoffv1.CapacityPeriod(o.Period)},
		OutOfOffice:         o.OutOfOffice,
		OutOfOfficeEndTime:  ts(o.OutOfOfficeEnd),
		Disabled:            o.Disabled,
		PeriodAssignedCount: int32(o.PeriodAssigned),
		OpenHandoffCount:    int32(o.OpenHandoffs),
		CreateTime:          timestamppb.New(o.CreateTime),
		UpdateTime:          timestamppb.New(o.UpdateTime),
		Etag:                handoff.Etag(o.Version),
	}
}

// Team converts a team.
func Team(t handoff.Team) *handoffv1.Team {
	return &handoffv1.Team{
		Name:               Name("teams", t.ID),
		DisplayName:        t.DisplayName,
		AssignmentStrategy: handoffv1.AssignmentStrategy(t.Strategy),
		Manager:            Name("owners", t.Manager),
		MemberCount:        int32(t.MemberCount),
		CreateTime:         timestamppb.New(t.CreateTime),
		UpdateTime:         timestamppb.New(t.UpdateTime),
		Etag:               handoff.Etag(t.Version),
	}
}

// Policy converts the routing policy.
func Policy(p handoff.Policy) *handoffv1.RoutingPolicy {
	out := &handoffv1.RoutingPolicy{
		Name:         "routingPolicy",
		FallbackTeam: Name("teams", p.FallbackTeam),
		Revision:     p.Revision,
		Etag:         handoff.Etag(p.Revision),
	}
	if !p.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(p.UpdateTime)
	}
	for _, r := range p.Rules {
		out.Rules = append(out.Rules, &handoffv1.RoutingRule{
			Id: r.ID, DisplayName: r.DisplayName, Condition: r.Condition,
			Team: Name("teams", r.Team), OwnerCondition: r.OwnerCondition, Disabled: r.Disabled,
		})
	}
	return out
}

// SLA converts the SLA settings.
func SLA(s handoff.SLASettings) *handoffv1.SlaSettings {
	wh := &handoffv1.WorkingHours{
		Enabled:   s.WorkingHours.Enabled,
		TimeZone:  s.WorkingHours.TimeZone,
		StartHour: int32(s.WorkingHours.StartHour),
		EndHour:   int32(s.WorkingHours.EndHour),
	}
	for _, d := range s.WorkingHours.Weekdays {
		wh.Weekdays = append(wh.Weekdays, Weekday(d))
	}
	return &handoffv1.SlaSettings{
		Name:               "slaSettings",
		AcceptanceDeadline: durationpb.New(s.AcceptanceDeadline),
		WorkingHours:       wh,
		BreachAction:       handoffv1.BreachAction(s.BreachAction),
		MaxReassignments:   int32(s.MaxReassignments),
		EscalationEnabled:  s.EscalationEnabled,
		EscalationDeadline: durationpb.New(s.EscalationDeadline),
		UpdateTime:         timestamppb.New(s.UpdateTime),
		Etag:               handoff.Etag(s.Version),
	}
}

// Weekday converts a Go weekday (Sunday 0) to the API's (Monday 1).
func Weekday(d time.Weekday) handoffv1.Weekday {
	if d == time.Sunday {
		return handoffv1.Weekday_WEEKDAY_SUNDAY
	}
	return handoffv1.Weekday(d)
}

// GoWeekday converts the API's weekday to Go's.
func GoWeekday(d handoffv1.Weekday) time.Weekday {
	if d == handoffv1.Weekday_WEEKDAY_SUNDAY {
		return time.Sunday
	}
	return time.Weekday(d)
}
