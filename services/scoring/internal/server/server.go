// Package server exposes the scoring domain over gRPC and receives the
// events it scores from.
package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	scoringv1 "github.com/leadflow/leadflow/gen/go/leadflow/scoring/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
)

// Policy says who may call each scoring RPC: reads need scoring.read,
// changes scoring.write, and only other Leadflow services deliver events.
var Policy = auth.ByVerb(scoringv1.ScoringService_ServiceDesc, auth.ScopeScoringRead, auth.ScopeScoringWrite).Merge(outbox.SinkPolicy)

// Server implements scoringv1.ScoringServiceServer.
type Server struct {
	scoringv1.UnimplementedScoringServiceServer
	svc *scoring.Service
}

// New returns a Server over svc.
func New(svc *scoring.Service) *Server { return &Server{svc: svc} }

func modelID(name string) (string, error) {
	ids, ok := resname.Parse(name, "scoringModels")
	if !ok {
		return "", scoring.ErrModelNotFound
	}
	return ids[0], nil
}

// listError maps an error from page.List: a token not issued for this
// query is the caller's mistake; anything else passes through unchanged.
func listError(err error) error {
	if errors.Is(err, page.ErrInvalidToken) {
		return apperr.InvalidArgument("invalid page token", apperr.Field("page_token", err.Error()))
	}
	return err
}

// CreateScoringModel implements scoringv1.ScoringServiceServer.
func (s *Server) CreateScoringModel(ctx context.Context, req *scoringv1.CreateScoringModelRequest) (*scoringv1.CreateScoringModelResponse, error) {
	ws := auth.Workspace(ctx)
	m := scoring.Model{Workspace: ws, ID: req.GetScoringModelId()}
	applyModel(&m, req.GetScoringModel(), nil)
	out, err := s.svc.CreateModel(ctx, m, req.GetRequestId(), req.GetValidateOnly())
	if err != nil {
		return nil, err
	}
	return &scoringv1.CreateScoringModelResponse{ScoringModel: toProtoModel(out)}, nil
}

// GetScoringModel implements scoringv1.ScoringServiceServer.
func (s *Server) GetScoringModel(ctx context.Context, req *scoringv1.GetScoringModelRequest) (*scoringv1.GetScoringModelResponse, error) {
	id, err := modelID(req.GetName())
	if err != nil {
		return nil, err
	}
	m, err := s.svc.GetModel(ctx, auth.Workspace(ctx), id)
	if err != nil {
		return nil, err
	}
	return &scoringv1.GetScoringModelResponse{ScoringModel: toProtoModel(m)}, nil
}

// ListScoringModels implements scoringv1.ScoringServiceServer.
func (s *Server) ListScoringModels(ctx context.Context, req *scoringv1.ListScoringModelsRequest) (*scoringv1.ListScoringModelsResponse, error) {
	ws := auth.Workspace(ctx)
	query := fmt.Sprintf("%s|%d", ws, req.GetState())
	models, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *scoring.ModelCursor, limit int) ([]scoring.Model, error) {
			return s.svc.ListModels(ctx, ws, toDomainState(req.GetState()), after, limit)
		},
		func(m scoring.Model) scoring.ModelCursor {
			return scoring.ModelCursor{CreateTime: m.CreateTime, ID: m.ID}
		})
	if err != nil {
		return nil, listError(err)
	}
	resp := &scoringv1.ListScoringModelsResponse{NextPageToken: next}
	for _, m := range models {
		resp.ScoringModels = append(resp.ScoringModels, toProtoModel(m))
	}
	return resp, nil
}

// UpdateScoringModel implements scoringv1.ScoringServiceServer.
func (s *Server) UpdateScoringModel(ctx context.Context, req *scoringv1.UpdateScoringModelRequest) (*scoringv1.UpdateScoringModelResponse, error) {
	in := req.GetScoringModel()
	id, err := modelID(in.GetName())
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	for _, p := range paths {
		if !slices.Contains(mutablePaths, p) {
			return nil, apperr.InvalidArgument("invalid update mask",
				apperr.Field("update_mask.paths", fmt.Sprintf("%q is not a mutable field of a scoring model", p)))
		}
	}
	m, err := s.svc.UpdateModel(ctx, auth.Workspace(ctx), id, in.GetEtag(),
		func(m *scoring.Model) { applyModel(m, in, paths) }, req.GetValidateOnly())
	if err != nil {
		return nil, err
	}
	return &scoringv1.UpdateScoringModelResponse{ScoringModel: toProtoModel(m)}, nil
}

// DeleteScoringModel implements scoringv1.ScoringServiceServer.
func (s *Server) DeleteScoringModel(ctx context.Context, req *scoringv1.DeleteScoringModelRequest) (*scoringv1.DeleteScoringModelResponse, error) {
	id, err := modelID(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteModel(ctx, auth.Workspace(ctx), id, req.GetEtag()); err != nil {
		return nil, err
	}
	return &scoringv1.DeleteScoringModelResponse{}, nil
}

// PublishScoringModel implements scoringv1.ScoringServiceServer.
func (s *Server) PublishScoringModel(ctx context.Context, req *scoringv1.PublishScoringModelRequest) (*scoringv1.PublishScoringModelResponse, error) {
	id, err := modelID(req.GetName())
	if err != nil {
		return nil, err
	}
	m, job, err := s.svc.PublishModel(ctx, auth.Workspace(ctx), id, req.GetEtag())
	if err != nil {
		return nil, err
	}
	return &scoringv1.PublishScoringModelResponse{ScoringModel: toProtoModel(m), RescoreJob: toProtoJob(job)}, nil
}

// BacktestScoringModel implements scoringv1.ScoringServiceServer.
func (s *Server) BacktestScoringModel(ctx context.Context, req *scoringv1.BacktestScoringModelRequest) (*scoringv1.BacktestScoringModelResponse, error) {
	id, err := modelID(req.GetName())
	if err != nil {
		return nil, err
	}
	br := scoring.BacktestRequest{
		Workspace: auth.Workspace(ctx), ModelID: id, Start: req.GetOutcomeStartTime().AsTime(),
		LeadTime: req.GetLeadTime().AsDuration(), BandWidth: req.GetBandWidth(), MinLeadsAbove: req.GetMinLeadsAboveThreshold(),
	}
	if req.GetOutcomeEndTime() != nil {
		br.End = req.GetOutcomeEndTime().AsTime()
	}
	bt, err := s.svc.BacktestModel(ctx, br)
	if err != nil {
		return nil, err
	}
	return &scoringv1.BacktestScoringModelResponse{Backtest: toProtoBacktest(bt)}, nil
}

// GetLeadScore implements scoringv1.ScoringServiceServer.
func (s *Server) GetLeadScore(ctx context.Context, req *scoringv1.GetLeadScoreRequest) (*scoringv1.GetLeadScoreResponse, error) {
	lead, ok := leadOfScore(req.GetName())
	if !ok {
		return nil, scoring.ErrLeadNotFound
	}
	var model string
	if req.GetScoringModel() != "" {
		var err error
		if model, err = modelID(req.GetScoringModel()); err != nil {
			return nil, err
		}
	}
	ls, err := s.svc.GetLeadScore(ctx, auth.Workspace(ctx), lead, model)
	if err != nil {
		return nil, err
	}
	full := req.GetView() != scoringv1.LeadScoreView_LEAD_SCORE_VIEW_BASIC
	return &scoringv1.GetLeadScoreResponse{Score: toProtoScore(ls, full)}, nil
}

// leadOfScore returns the lead id of "leads/{lead}/score".
func leadOfScore(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "leads/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/score")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// ListLeadScores implements scoringv1.ScoringServiceServer. It lists the
// stored scores, each as of its score_time: ordering by a score that decays
// on every read could not page consistently.
func (s *Server) ListLeadScores(ctx context.Context, req *scoringv1.ListLeadScoresRequest) (*scoringv1.ListLeadScoresResponse, error) {
	ws := auth.Workspace(ctx)
	f := scoring.LeadFilter{Grade: req.GetGrade()}
	if req.MinTotalScore != nil {
		v := req.GetMinTotalScore()
		f.MinTotal = &v
	}
	if req.Qualified != nil {
		v := req.GetQualified()
		f.Qualified = &v
	}
	query := ws + "|" + req.GetGrade()
	if f.MinTotal != nil {
		query += fmt.Sprintf("|min=%d", *f.MinTotal)
	}
	if f.Qualified != nil {
		query += fmt.Sprintf("|q=%t", *f.Qualified)
	}
	leads, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *scoring.LeadCursor, limit int) ([]scoring.Lead, error) {
			return s.svc.ListLeadScores(ctx, ws, f, after, limit)
		},
		func(l scoring.Lead) scoring.LeadCursor {
			return scoring.LeadCursor{Total: scoring.WholePoints(l.TotalMilli), ID: l.ID}
		})
	if err != nil {
		return nil, listError(err)
	}
	resp := &scoringv1.ListLeadScoresResponse{NextPageToken: next}
	thresholds := map[string]int64{}
	for _, l := range leads {
		th, ok := thresholds[l.ModelID]
		if !ok {
			if m, err := s.svc.GetModel(ctx, ws, l.ModelID); err == nil {
				th = m.MQLThreshold
			}
			thresholds[l.ModelID] = th
		}
		resp.Scores = append(resp.Scores, toProtoStoredScore(l, th))
	}
	return resp, nil
}

// GetRescoreJob implements scoringv1.ScoringServiceServer.
func (s *Server) GetRescoreJob(ctx context.Context, req *scoringv1.GetRescoreJobRequest) (*scoringv1.GetRescoreJobResponse, error) {
	ids, ok := resname.Parse(req.GetName(), "rescoreJobs")
	if !ok {
		return nil, scoring.ErrJobNotFound
	}
	j, err := s.svc.GetJob(ctx, auth.Workspace(ctx), ids[0])
	if err != nil {
		return nil, err
	}
	return &scoringv1.GetRescoreJobResponse{RescoreJob: toProtoJob(j)}, nil
}

// ListRescoreJobs implements scoringv1.ScoringServiceServer.
func (s *Server) ListRescoreJobs(ctx context.Context, req *scoringv1.ListRescoreJobsRequest) (*scoringv1.ListRescoreJobsResponse, error) {
	ws := auth.Workspace(ctx)
	var model string
	if req.GetScoringModel() != "" {
		var err error
		if model, err = modelID(req.GetScoringModel()); err != nil {
			return nil, err
		}
	}
	query := ws + "|" + model
	jobs, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *scoring.ModelCursor, limit int) ([]scoring.RescoreJob, error) {
			return s.svc.ListJobs(ctx, ws, model, after, limit)
		},
		func(j scoring.RescoreJob) scoring.ModelCursor {
			return scoring.ModelCursor{CreateTime: j.CreateTime, ID: j.ID}
		})
	if err != nil {
		return nil, listError(err)
	}
	resp := &scoringv1.ListRescoreJobsResponse{NextPageToken: next}
	for _, j := range jobs {
		resp.RescoreJobs = append(resp.RescoreJobs, toProtoJob(j))
	}
	return resp, nil
}
