// Package server exposes the lifecycle domain over gRPC.
package server

import (
	"context"
	"errors"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/trace"

	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

// Policy says who may call each lifecycle RPC: reads need lifecycle.read,
// moves and settings changes lifecycle.write, and only other Leadflow
// services may deliver events.
var Policy = auth.ByVerb(lifecyclev1.LifecycleService_ServiceDesc, auth.ScopeLifecycleRead, auth.ScopeLifecycleWrite).
	Merge(outbox.SinkPolicy)

// Server implements lifecyclev1.LifecycleServiceServer.
type Server struct {
	lifecyclev1.UnimplementedLifecycleServiceServer
	svc *lifecycle.Service
}

// New returns a Server over svc.
func New(svc *lifecycle.Service) *Server { return &Server{svc: svc} }

var errNoWorkspace = apperr.PermissionDenied("lifecycle calls need the API key of a workspace")

// workspace is the caller's workspace, which confines every query.
func workspace(ctx context.Context) (string, error) {
	ws := auth.Workspace(ctx)
	if ws == "" {
		return "", errNoWorkspace
	}
	return ws, nil
}

// leadOf parses "leads/{lead}/lifecycle".
func leadOf(name string) (string, error) {
	id, ok := strings.CutSuffix(name, "/lifecycle")
	if ids, ok2 := resname.Parse(id, "leads"); ok && ok2 {
		return ids[0], nil
	}
	return "", apperr.InvalidArgument("invalid name", apperr.Field("name", `must be "leads/{lead}/lifecycle"`))
}

// GetLeadLifecycle implements lifecyclev1.LifecycleServiceServer.
func (s *Server) GetLeadLifecycle(ctx context.Context, req *lifecyclev1.GetLeadLifecycleRequest) (*lifecyclev1.GetLeadLifecycleResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	lead, err := leadOf(req.GetName())
	if err != nil {
		return nil, err
	}
	var l lifecycle.Lead
	if req.GetReadTime() != nil {
		l, err = s.svc.LeadAt(ctx, ws, lead, req.GetReadTime().AsTime())
	} else {
		l, err = s.svc.Lead(ctx, ws, lead)
	}
	if err != nil {
		return nil, err
	}
	return &lifecyclev1.GetLeadLifecycleResponse{Lifecycle: toProtoLead(l, s.svc.Now())}, nil
}

// TransitionLead implements lifecyclev1.LifecycleServiceServer.
func (s *Server) TransitionLead(ctx context.Context, req *lifecyclev1.TransitionLeadRequest) (*lifecyclev1.TransitionLeadResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	lead, err := leadOf(req.GetName())
	if err != nil {
		return nil, err
	}
	l, t, err := s.svc.Transition(ctx, ws, lead, lifecycle.TransitionRequest{
		To:     lifecycle.Stage(req.GetToStage()),
		Reason: req.GetReason(),
		Note:   req.GetNote(),
		Bant:   toDomainBant(req.GetBant()),
		Etag:   req.GetEtag(),
		Cause: lifecycle.Cause{
			Actor:     callerActor(ctx, ws, req.GetUser()),
			RequestID: req.GetRequestId(),
			TraceID:   traceID(ctx),
		},
	})
	if err != nil {
		return nil, err
	}
	s.linkToLead(ctx, ws, lead)
	return &lifecyclev1.TransitionLeadResponse{
		Lifecycle:  toProtoLead(l, s.svc.Now()),
		Transition: toProtoTransition(t),
	}, nil
}

// callerActor is the user the frontend acts for, or else the API key.
func callerActor(ctx context.Context, ws, user string) lifecycle.Actor {
	if user != "" {
		return lifecycle.Actor{Kind: lifecycle.ActorUser, ID: user}
	}
	p, _ := auth.FromContext(ctx)
	return lifecycle.Actor{Kind: lifecycle.ActorAPIKey, ID: resname.Format("workspaces", ws, "apiKeys", p.KeyID)}
}

// traceID is the W3C trace id of the current span, or "".
func traceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// ListTransitions implements lifecyclev1.LifecycleServiceServer.
func (s *Server) ListTransitions(ctx context.Context, req *lifecyclev1.ListTransitionsRequest) (*lifecyclev1.ListTransitionsResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	ids, ok := resname.Parse(req.GetParent(), "leads")
	if !ok {
		return nil, apperr.InvalidArgument("invalid parent", apperr.Field("parent", `must be "leads/{lead}"`))
	}
	query := ws + "/" + req.GetParent()
	ts, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *lifecycle.TransitionCursor, limit int) ([]lifecycle.Transition, error) {
			return s.svc.Transitions(ctx, ws, ids[0], after, limit)
		},
		func(t lifecycle.Transition) lifecycle.TransitionCursor {
			return lifecycle.TransitionCursor{Time: t.Time, ID: t.ID}
		})
	switch {
	case errors.Is(err, page.ErrInvalidToken):
		return nil, apperr.InvalidArgument("invalid page token", apperr.Field("page_token", err.Error()))
	case err != nil:
		return nil, err
	}
	resp := &lifecyclev1.ListTransitionsResponse{NextPageToken: next}
	for _, t := range ts {
		resp.Transitions = append(resp.Transitions, toProtoTransition(t))
	}
	return resp, nil
}

// GetFunnelReport implements lifecyclev1.LifecycleServiceServer.
func (s *Server) GetFunnelReport(ctx context.Context, req *lifecyclev1.GetFunnelReportRequest) (*lifecyclev1.GetFunnelReportResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	fr := lifecycle.FunnelRequest{
		Start:    req.GetStartTime().AsTime(),
		Source:   req.GetSource(),
		Campaign: req.GetCampaign(),
		Period:   lifecycle.Period(req.GetPeriod()),
		TimeZone: req.GetTimeZone(),
	}
	if req.GetEndTime() != nil {
		fr.End = req.GetEndTime().AsTime()
	}
	for _, p := range req.GetConversions() {
		fr.Conversions = append(fr.Conversions, lifecycle.StagePair{From: lifecycle.Stage(p.GetFromStage()), To: lifecycle.Stage(p.GetToStage())})
	}
	rep, err := s.svc.Funnel(ctx, ws, fr)
	if err != nil {
		return nil, err
	}
	return &lifecyclev1.GetFunnelReportResponse{Report: toProtoFunnel(rep)}, nil
}

// settingsName is the singleton's resource name.
const settingsName = "lifecycleSettings"

// GetLifecycleSettings implements lifecyclev1.LifecycleServiceServer.
func (s *Server) GetLifecycleSettings(ctx context.Context, _ *lifecyclev1.GetLifecycleSettingsRequest) (*lifecyclev1.GetLifecycleSettingsResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.svc.Settings(ctx, ws)
	if err != nil {
		return nil, err
	}
	return &lifecyclev1.GetLifecycleSettingsResponse{LifecycleSettings: toProtoSettings(st)}, nil
}

// Settings fields an update mask may name.
const (
	pathAllowed      = "allowed_transitions"
	pathLost         = "lost_reasons"
	pathDisqualified = "disqualified_reasons"
)

// UpdateLifecycleSettings implements lifecyclev1.LifecycleServiceServer.
func (s *Server) UpdateLifecycleSettings(ctx context.Context, req *lifecyclev1.UpdateLifecycleSettingsRequest) (*lifecyclev1.UpdateLifecycleSettingsResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetLifecycleSettings()
	if in.GetName() != settingsName {
		return nil, apperr.InvalidArgument("invalid name", apperr.Field("lifecycle_settings.name", `must be "lifecycleSettings"`))
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 || slices.Contains(paths, "*") {
		paths = []string{pathAllowed, pathLost, pathDisqualified}
	}
	for _, p := range paths {
		if p != pathAllowed && p != pathLost && p != pathDisqualified {
			return nil, apperr.InvalidArgument("invalid update mask",
				apperr.Field("update_mask", "unknown or read-only field "+p))
		}
	}
	want := toDomainSettings(in)
	st, err := s.svc.UpdateSettings(ctx, ws, in.GetEtag(), func(cur lifecycle.Settings) lifecycle.Settings {
		next := cur
		for _, p := range paths {
			switch p {
			case pathAllowed:
				next.Allowed = want.Allowed
			case pathLost:
				next.LostReasons = want.LostReasons
			case pathDisqualified:
				next.DisqualifiedReasons = want.DisqualifiedReasons
			}
		}
		return next
	})
	if err != nil {
		return nil, err
	}
	return &lifecyclev1.UpdateLifecycleSettingsResponse{LifecycleSettings: toProtoSettings(st)}, nil
}
