// Package server exposes the handoff domain over gRPC.
package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/handoff/internal/convert"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
	"github.com/leadflow/leadflow/services/handoff/internal/routing"
)

// Policy says who may call each RPC: reads need handoff.read, changes
// handoff.write, and only other Leadflow services may deliver events.
var Policy = auth.ByVerb(handoffv1.HandoffService_ServiceDesc, auth.ScopeHandoffRead, auth.ScopeHandoffWrite).
	Merge(outbox.SinkPolicy)

// Server implements handoffv1.HandoffServiceServer.
type Server struct {
	handoffv1.UnimplementedHandoffServiceServer
	svc *handoff.Service
}

// New returns a Server over svc.
func New(svc *handoff.Service) *Server { return &Server{svc: svc} }

// id returns the id of "collection/id", or "" for an empty name. The
// request patterns were validated already; a mismatch is a bad request.
func id(name, collection string) (string, error) {
	if name == "" {
		return "", nil
	}
	ids, ok := resname.Parse(name, collection)
	if !ok {
		return "", apperr.InvalidArgument("invalid resource name", apperr.Field(collection, "want "+collection+"/{id}"))
	}
	return ids[0], nil
}

func ids(names []string, collection string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		i, err := id(n, collection)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

// listError maps an error from page.List: a token not issued for this
// query is the caller's mistake; anything else passes through unchanged.
func listError(err error) error {
	if errors.Is(err, page.ErrInvalidToken) {
		return apperr.InvalidArgument("invalid page token", apperr.Field("page_token", err.Error()))
	}
	return err
}

// maskPaths returns the mask's paths, or all when the mask is empty (a full
// replacement, AIP-134), refusing paths outside allowed.
func maskPaths(m *fieldmaskpb.FieldMask, field string, allowed ...string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(m.GetPaths()) == 0 {
		for _, a := range allowed {
			out[a] = true
		}
		return out, nil
	}
	for _, p := range m.GetPaths() {
		top, _, _ := strings.Cut(p, ".")
		if !slices.Contains(allowed, p) && !slices.Contains(allowed, top) {
			return nil, apperr.InvalidArgument("invalid update mask",
				apperr.Field("update_mask", fmt.Sprintf("%q cannot be updated on %s", p, field)))
		}
		out[p], out[top] = true, true
	}
	return out, nil
}

// ---- Owners ----

func fromProtoOwner(o *handoffv1.Owner) (handoff.Owner, error) {
	teams, err := ids(o.GetTeams(), "teams")
	if err != nil {
		return handoff.Owner{}, err
	}
	manager, err := id(o.GetManager(), "owners")
	if err != nil {
		return handoff.Owner{}, err
	}
	out := handoff.Owner{
		DisplayName: o.GetDisplayName(), Email: o.GetEmail(), ExternalID: o.GetExternalId(),
		Teams: teams, Manager: manager, Attributes: o.GetAttributes(),
		MaxLeads: int(o.GetCapacity().GetMaxLeads()), Period: handoff.CapacityPeriod(o.GetCapacity().GetPeriod()),
		OutOfOffice: o.GetOutOfOffice(), Disabled: o.GetDisabled(),
	}
	if o.GetOutOfOfficeEndTime() != nil {
		t := o.GetOutOfOfficeEndTime().AsTime()
		out.OutOfOfficeEnd = &t
	}
	return out, nil
}

// CreateOwner implements handoffv1.HandoffServiceServer.
func (s *Server) CreateOwner(ctx context.Context, req *handoffv1.CreateOwnerRequest) (*handoffv1.CreateOwnerResponse, error) {
	o, err := fromProtoOwner(req.GetOwner())
	if err != nil {
		return nil, err
	}
	o.Workspace, o.ID = auth.Workspace(ctx), req.GetOwnerId()
	created, err := s.svc.CreateOwner(ctx, o, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &handoffv1.CreateOwnerResponse{Owner: convert.Owner(created)}, nil
}

// GetOwner implements handoffv1.HandoffServiceServer.
func (s *Server) GetOwner(ctx context.Context, req *handoffv1.GetOwnerRequest) (*handoffv1.GetOwnerResponse, error) {
	oid, err := id(req.GetName(), "owners")
	if err != nil {
		return nil, err
	}
	o, err := s.svc.GetOwner(ctx, auth.Workspace(ctx), oid)
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetOwnerResponse{Owner: convert.Owner(o)}, nil
}

// ListOwners implements handoffv1.HandoffServiceServer.
func (s *Server) ListOwners(ctx context.Context, req *handoffv1.ListOwnersRequest) (*handoffv1.ListOwnersResponse, error) {
	ws := auth.Workspace(ctx)
	team, err := id(req.GetTeam(), "teams")
	if err != nil {
		return nil, err
	}
	manager, err := id(req.GetManager(), "owners")
	if err != nil {
		return nil, err
	}
	f := handoff.OwnerFilter{Team: team, Manager: manager, ShowDisabled: req.GetShowDisabled()}
	query := fmt.Sprintf("owners|%s|%+v", ws, f)
	owners, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.NameCursor, limit int) ([]handoff.Owner, error) {
			return s.svc.ListOwners(ctx, ws, f, after, limit)
		},
		func(o handoff.Owner) handoff.NameCursor { return handoff.NameCursor{ID: o.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListOwnersResponse{NextPageToken: next}
	for _, o := range owners {
		resp.Owners = append(resp.Owners, convert.Owner(o))
	}
	return resp, nil
}

// UpdateOwner implements handoffv1.HandoffServiceServer.
func (s *Server) UpdateOwner(ctx context.Context, req *handoffv1.UpdateOwnerRequest) (*handoffv1.UpdateOwnerResponse, error) {
	oid, err := id(req.GetOwner().GetName(), "owners")
	if err != nil || oid == "" {
		return nil, apperr.InvalidArgument("invalid owner", apperr.Field("owner.name", "want owners/{owner}"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "owner", "display_name", "email", "external_id", "teams",
		"manager", "attributes", "capacity", "out_of_office", "out_of_office_end_time", "disabled")
	if err != nil {
		return nil, err
	}
	in, err := fromProtoOwner(req.GetOwner())
	if err != nil {
		return nil, err
	}
	updated, err := s.svc.UpdateOwner(ctx, auth.Workspace(ctx), oid, req.GetOwner().GetEtag(), func(o *handoff.Owner) {
		set(paths, "display_name", &o.DisplayName, in.DisplayName)
		set(paths, "email", &o.Email, in.Email)
		set(paths, "external_id", &o.ExternalID, in.ExternalID)
		set(paths, "teams", &o.Teams, in.Teams)
		set(paths, "manager", &o.Manager, in.Manager)
		set(paths, "attributes", &o.Attributes, maps.Clone(in.Attributes))
		if paths["capacity"] && (len(req.GetUpdateMask().GetPaths()) == 0 || slices.Contains(req.GetUpdateMask().GetPaths(), "capacity")) {
			o.MaxLeads, o.Period = in.MaxLeads, in.Period
		}
		set(paths, "capacity.max_leads", &o.MaxLeads, in.MaxLeads)
		set(paths, "capacity.period", &o.Period, in.Period)
		set(paths, "out_of_office", &o.OutOfOffice, in.OutOfOffice)
		set(paths, "out_of_office_end_time", &o.OutOfOfficeEnd, in.OutOfOfficeEnd)
		set(paths, "disabled", &o.Disabled, in.Disabled)
	})
	if err != nil {
		return nil, err
	}
	return &handoffv1.UpdateOwnerResponse{Owner: convert.Owner(updated)}, nil
}

func set[T any](paths map[string]bool, path string, dst *T, v T) {
	if paths[path] {
		*dst = v
	}
}

// DeleteOwner implements handoffv1.HandoffServiceServer.
func (s *Server) DeleteOwner(ctx context.Context, req *handoffv1.DeleteOwnerRequest) (*handoffv1.DeleteOwnerResponse, error) {
	oid, err := id(req.GetName(), "owners")
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteOwner(ctx, auth.Workspace(ctx), oid, req.GetEtag()); err != nil {
		return nil, err
	}
	return &handoffv1.DeleteOwnerResponse{}, nil
}

// ---- Teams ----

// CreateTeam implements handoffv1.HandoffServiceServer.
func (s *Server) CreateTeam(ctx context.Context, req *handoffv1.CreateTeamRequest) (*handoffv1.CreateTeamResponse, error) {
	manager, err := id(req.GetTeam().GetManager(), "owners")
	if err != nil {
		return nil, err
	}
	t, err := s.svc.CreateTeam(ctx, handoff.Team{
		Workspace: auth.Workspace(ctx), ID: req.GetTeamId(), DisplayName: req.GetTeam().GetDisplayName(),
		Strategy: routing.Strategy(req.GetTeam().GetAssignmentStrategy()), Manager: manager,
	}, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &handoffv1.CreateTeamResponse{Team: convert.Team(t)}, nil
}

// GetTeam implements handoffv1.HandoffServiceServer.
func (s *Server) GetTeam(ctx context.Context, req *handoffv1.GetTeamRequest) (*handoffv1.GetTeamResponse, error) {
	tid, err := id(req.GetName(), "teams")
	if err != nil {
		return nil, err
	}
	t, err := s.svc.GetTeam(ctx, auth.Workspace(ctx), tid)
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetTeamResponse{Team: convert.Team(t)}, nil
}

// ListTeams implements handoffv1.HandoffServiceServer.
func (s *Server) ListTeams(ctx context.Context, req *handoffv1.ListTeamsRequest) (*handoffv1.ListTeamsResponse, error) {
	ws := auth.Workspace(ctx)
	query := "teams|" + ws
	teams, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.NameCursor, limit int) ([]handoff.Team, error) {
			return s.svc.ListTeams(ctx, ws, after, limit)
		},
		func(t handoff.Team) handoff.NameCursor { return handoff.NameCursor{ID: t.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListTeamsResponse{NextPageToken: next}
	for _, t := range teams {
		resp.Teams = append(resp.Teams, convert.Team(t))
	}
	return resp, nil
}

// UpdateTeam implements handoffv1.HandoffServiceServer.
func (s *Server) UpdateTeam(ctx context.Context, req *handoffv1.UpdateTeamRequest) (*handoffv1.UpdateTeamResponse, error) {
	tid, err := id(req.GetTeam().GetName(), "teams")
	if err != nil || tid == "" {
		return nil, apperr.InvalidArgument("invalid team", apperr.Field("team.name", "want teams/{team}"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "team", "display_name", "assignment_strategy", "manager")
	if err != nil {
		return nil, err
	}
	manager, err := id(req.GetTeam().GetManager(), "owners")
	if err != nil {
		return nil, err
	}
	in := req.GetTeam()
	t, err := s.svc.UpdateTeam(ctx, auth.Workspace(ctx), tid, in.GetEtag(), func(t *handoff.Team) {
		set(paths, "display_name", &t.DisplayName, in.GetDisplayName())
		set(paths, "assignment_strategy", &t.Strategy, routing.Strategy(in.GetAssignmentStrategy()))
		set(paths, "manager", &t.Manager, manager)
	})
	if err != nil {
		return nil, err
	}
	return &handoffv1.UpdateTeamResponse{Team: convert.Team(t)}, nil
}

// DeleteTeam implements handoffv1.HandoffServiceServer.
func (s *Server) DeleteTeam(ctx context.Context, req *handoffv1.DeleteTeamRequest) (*handoffv1.DeleteTeamResponse, error) {
	tid, err := id(req.GetName(), "teams")
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteTeam(ctx, auth.Workspace(ctx), tid, req.GetEtag()); err != nil {
		return nil, err
	}
	return &handoffv1.DeleteTeamResponse{}, nil
}

// ---- Routing policy ----

// GetRoutingPolicy implements handoffv1.HandoffServiceServer.
func (s *Server) GetRoutingPolicy(ctx context.Context, _ *handoffv1.GetRoutingPolicyRequest) (*handoffv1.GetRoutingPolicyResponse, error) {
	p, err := s.svc.GetPolicy(ctx, auth.Workspace(ctx))
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetRoutingPolicyResponse{RoutingPolicy: convert.Policy(p)}, nil
}

// UpdateRoutingPolicy implements handoffv1.HandoffServiceServer.
func (s *Server) UpdateRoutingPolicy(ctx context.Context, req *handoffv1.UpdateRoutingPolicyRequest) (*handoffv1.UpdateRoutingPolicyResponse, error) {
	paths, err := maskPaths(req.GetUpdateMask(), "routing_policy", "rules", "fallback_team")
	if err != nil {
		return nil, err
	}
	in := req.GetRoutingPolicy()
	fallback, err := id(in.GetFallbackTeam(), "teams")
	if err != nil {
		return nil, err
	}
	var rules []routing.Rule
	for i, r := range in.GetRules() {
		team, err := id(r.GetTeam(), "teams")
		if err != nil || team == "" {
			return nil, apperr.InvalidArgument("invalid routing rule",
				apperr.Field(fmt.Sprintf("routing_policy.rules[%d].team", i), "want teams/{team}"))
		}
		rules = append(rules, routing.Rule{
			ID: r.GetId(), DisplayName: r.GetDisplayName(), Condition: r.GetCondition(), Team: team,
			OwnerCondition: r.GetOwnerCondition(), Disabled: r.GetDisabled(),
		})
	}
	p, err := s.svc.UpdatePolicy(ctx, auth.Workspace(ctx), in.GetEtag(), req.GetValidateOnly(), func(p *handoff.Policy) {
		set(paths, "rules", &p.Rules, rules)
		set(paths, "fallback_team", &p.FallbackTeam, fallback)
	})
	if err != nil {
		return nil, err
	}
	return &handoffv1.UpdateRoutingPolicyResponse{RoutingPolicy: convert.Policy(p)}, nil
}

// ---- SLA ----

// GetSlaSettings implements handoffv1.HandoffServiceServer.
func (s *Server) GetSlaSettings(ctx context.Context, _ *handoffv1.GetSlaSettingsRequest) (*handoffv1.GetSlaSettingsResponse, error) {
	st, err := s.svc.GetSLA(ctx, auth.Workspace(ctx))
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetSlaSettingsResponse{SlaSettings: convert.SLA(st)}, nil
}

// UpdateSlaSettings implements handoffv1.HandoffServiceServer.
func (s *Server) UpdateSlaSettings(ctx context.Context, req *handoffv1.UpdateSlaSettingsRequest) (*handoffv1.UpdateSlaSettingsResponse, error) {
	paths, err := maskPaths(req.GetUpdateMask(), "sla_settings", "acceptance_deadline", "working_hours",
		"breach_action", "max_reassignments", "escalation_enabled", "escalation_deadline")
	if err != nil {
		return nil, err
	}
	in := req.GetSlaSettings()
	wh := handoff.WorkingHours{
		Enabled: in.GetWorkingHours().GetEnabled(), TimeZone: in.GetWorkingHours().GetTimeZone(),
		StartHour: int(in.GetWorkingHours().GetStartHour()), EndHour: int(in.GetWorkingHours().GetEndHour()),
	}
	for _, d := range in.GetWorkingHours().GetWeekdays() {
		wh.Weekdays = append(wh.Weekdays, convert.GoWeekday(d))
	}
	st, err := s.svc.UpdateSLA(ctx, auth.Workspace(ctx), in.GetEtag(), func(st *handoff.SLASettings) {
		if paths["acceptance_deadline"] && in.GetAcceptanceDeadline() != nil {
			st.AcceptanceDeadline = in.GetAcceptanceDeadline().AsDuration()
		}
		if paths["working_hours"] {
			st.WorkingHours = withHourDefaults(wh)
		}
		if paths["breach_action"] && in.GetBreachAction() != 0 {
			st.BreachAction = handoff.BreachAction(in.GetBreachAction())
		}
		set(paths, "max_reassignments", &st.MaxReassignments, int(in.GetMaxReassignments()))
		set(paths, "escalation_enabled", &st.EscalationEnabled, in.GetEscalationEnabled())
		if paths["escalation_deadline"] && in.GetEscalationDeadline() != nil {
			st.EscalationDeadline = in.GetEscalationDeadline().AsDuration()
		}
	})
	if err != nil {
		return nil, err
	}
	return &handoffv1.UpdateSlaSettingsResponse{SlaSettings: convert.SLA(st)}, nil
}

// withHourDefaults fills the documented defaults of enabled working hours:
// Monday to Friday, 9 to 17, UTC.
func withHourDefaults(wh handoff.WorkingHours) handoff.WorkingHours {
	if wh.TimeZone == "" {
		wh.TimeZone = "UTC"
	}
	if len(wh.Weekdays) == 0 {
		wh.Weekdays = []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	}
	if wh.StartHour == 0 && wh.EndHour == 0 {
		wh.StartHour, wh.EndHour = 9, 17
	}
	return wh
}

// ListSlaBreaches implements handoffv1.HandoffServiceServer.
func (s *Server) ListSlaBreaches(ctx context.Context, req *handoffv1.ListSlaBreachesRequest) (*handoffv1.ListSlaBreachesResponse, error) {
	ws := auth.Workspace(ctx)
	var f handoff.BreachFilter
	var err error
	if f.Manager, err = id(req.GetManager(), "owners"); err != nil {
		return nil, err
	}
	if f.Team, err = id(req.GetTeam(), "teams"); err != nil {
		return nil, err
	}
	if f.Owner, err = id(req.GetOwner(), "owners"); err != nil {
		return nil, err
	}
	if req.GetMinBreachTime() != nil {
		t := req.GetMinBreachTime().AsTime()
		f.Min = &t
	}
	if req.GetMaxBreachTime() != nil {
		t := req.GetMaxBreachTime().AsTime()
		f.Max = &t
	}
	query := fmt.Sprintf("breaches|%s|%s|%s|%s|%v|%v", ws, f.Manager, f.Team, f.Owner, f.Min, f.Max)
	bs, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.TimeCursor, limit int) ([]handoff.Breach, error) {
			return s.svc.ListBreaches(ctx, ws, f, after, limit)
		},
		func(b handoff.Breach) handoff.TimeCursor { return handoff.TimeCursor{Time: b.BreachTime, ID: b.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListSlaBreachesResponse{NextPageToken: next}
	for _, b := range bs {
		resp.SlaBreaches = append(resp.SlaBreaches, convert.Breach(b))
	}
	return resp, nil
}
