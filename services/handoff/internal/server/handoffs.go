package server

import (
	"context"
	"fmt"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/handoff/internal/convert"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

// handoffID resolves "handoffs/{id}"; a malformed name is simply not found.
func handoffID(name string) (string, error) {
	hid, err := id(name, "handoffs")
	if err != nil || hid == "" {
		return "", handoff.ErrHandoffNotFound
	}
	return hid, nil
}

// CreateHandoff implements handoffv1.HandoffServiceServer.
func (s *Server) CreateHandoff(ctx context.Context, req *handoffv1.CreateHandoffRequest) (*handoffv1.CreateHandoffResponse, error) {
	lead, err := id(req.GetLead(), "leads")
	if err != nil {
		return nil, err
	}
	owner, err := id(req.GetOwner(), "owners")
	if err != nil {
		return nil, err
	}
	h, err := s.svc.CreateHandoff(ctx, auth.Workspace(ctx), lead, owner, req.GetReason(), req.GetUser(), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &handoffv1.CreateHandoffResponse{Handoff: convert.Handoff(h)}, nil
}

// GetHandoff implements handoffv1.HandoffServiceServer.
func (s *Server) GetHandoff(ctx context.Context, req *handoffv1.GetHandoffRequest) (*handoffv1.GetHandoffResponse, error) {
	hid, err := handoffID(req.GetName())
	if err != nil {
		return nil, err
	}
	h, err := s.svc.GetHandoff(ctx, auth.Workspace(ctx), hid)
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetHandoffResponse{Handoff: convert.Handoff(h)}, nil
}

// GetLeadHandoff implements handoffv1.HandoffServiceServer.
func (s *Server) GetLeadHandoff(ctx context.Context, req *handoffv1.GetLeadHandoffRequest) (*handoffv1.GetLeadHandoffResponse, error) {
	lead, err := id(req.GetLead(), "leads")
	if err != nil {
		return nil, err
	}
	h, err := s.svc.GetLeadHandoff(ctx, auth.Workspace(ctx), lead)
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetLeadHandoffResponse{Handoff: convert.Handoff(h)}, nil
}

// ListHandoffs implements handoffv1.HandoffServiceServer.
func (s *Server) ListHandoffs(ctx context.Context, req *handoffv1.ListHandoffsRequest) (*handoffv1.ListHandoffsResponse, error) {
	ws := auth.Workspace(ctx)
	var f handoff.HandoffFilter
	var err error
	if f.Owner, err = id(req.GetOwner(), "owners"); err != nil {
		return nil, err
	}
	if f.Team, err = id(req.GetTeam(), "teams"); err != nil {
		return nil, err
	}
	if f.Lead, err = id(req.GetLead(), "leads"); err != nil {
		return nil, err
	}
	for _, st := range req.GetStates() {
		f.States = append(f.States, handoff.State(st))
	}
	if req.GetMinCreateTime() != nil {
		t := req.GetMinCreateTime().AsTime()
		f.MinCreateTime = &t
	}
	f.ByDueTime = req.GetOrderBy() == "due_time"
	query := fmt.Sprintf("handoffs|%s|%s|%s|%s|%v|%v|%v", ws, f.Owner, f.Team, f.Lead, f.States, f.MinCreateTime, f.ByDueTime)
	hs, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.HandoffCursor, limit int) ([]handoff.Handoff, error) {
			return s.svc.ListHandoffs(ctx, ws, f, after, limit)
		},
		func(h handoff.Handoff) handoff.HandoffCursor {
			// Ordered by due time, the keyset continues from the due time.
			c := handoff.HandoffCursor{ID: h.ID, Time: &h.CreateTime}
			if f.ByDueTime {
				c.Time = h.DueTime
			}
			return c
		})
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListHandoffsResponse{NextPageToken: next}
	for _, h := range hs {
		resp.Handoffs = append(resp.Handoffs, convert.Handoff(h))
	}
	return resp, nil
}

// AcceptHandoff implements handoffv1.HandoffServiceServer.
func (s *Server) AcceptHandoff(ctx context.Context, req *handoffv1.AcceptHandoffRequest) (*handoffv1.AcceptHandoffResponse, error) {
	hid, err := handoffID(req.GetName())
	if err != nil {
		return nil, err
	}
	h, err := s.svc.Accept(ctx, auth.Workspace(ctx), hid, req.GetEtag(), req.GetNote(), req.GetUser())
	if err != nil {
		return nil, err
	}
	s.linkToLead(ctx, h)
	return &handoffv1.AcceptHandoffResponse{Handoff: convert.Handoff(h)}, nil
}

// RejectHandoff implements handoffv1.HandoffServiceServer.
func (s *Server) RejectHandoff(ctx context.Context, req *handoffv1.RejectHandoffRequest) (*handoffv1.RejectHandoffResponse, error) {
	hid, err := handoffID(req.GetName())
	if err != nil {
		return nil, err
	}
	h, err := s.svc.Reject(ctx, auth.Workspace(ctx), hid, req.GetEtag(), req.GetReason(), req.GetUser())
	if err != nil {
		return nil, err
	}
	s.linkToLead(ctx, h)
	return &handoffv1.RejectHandoffResponse{Handoff: convert.Handoff(h)}, nil
}

// AssignHandoff implements handoffv1.HandoffServiceServer.
func (s *Server) AssignHandoff(ctx context.Context, req *handoffv1.AssignHandoffRequest) (*handoffv1.AssignHandoffResponse, error) {
	hid, err := handoffID(req.GetName())
	if err != nil {
		return nil, err
	}
	owner, err := id(req.GetOwner(), "owners")
	if err != nil || owner == "" {
		return nil, apperr.InvalidArgument("invalid owner", apperr.Field("owner", "want owners/{owner}"))
	}
	h, err := s.svc.Assign(ctx, auth.Workspace(ctx), hid, req.GetEtag(), owner, req.GetReason(), req.GetUser())
	if err != nil {
		return nil, err
	}
	s.linkToLead(ctx, h)
	return &handoffv1.AssignHandoffResponse{Handoff: convert.Handoff(h)}, nil
}

// linkToLead links the span of a sales action, which comes days after the
// capture in a request of its own, to the lead's capture trace.
func (s *Server) linkToLead(ctx context.Context, h handoff.Handoff) {
	origin, err := s.svc.LeadOrigin(ctx, h.Workspace, h.Lead)
	if err != nil {
		return // tracing is best effort; the action itself succeeded
	}
	telemetry.LinkToLead(ctx, h.Workspace, h.Lead, origin)
}
