// Package server exposes the ingestion domain over gRPC.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// Policy says who may call each ingestion RPC.
var Policy = auth.Policy{
	ingestionv1.IngestionService_CreateLead_FullMethodName:      {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_GetLead_FullMethodName:         {Scope: auth.ScopeLeadsRead},
	ingestionv1.IngestionService_ListLeads_FullMethodName:       {Scope: auth.ScopeLeadsRead},
	ingestionv1.IngestionService_UpdateLead_FullMethodName:      {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_DeleteLead_FullMethodName:      {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_ExportLead_FullMethodName:      {Scope: auth.ScopeLeadsRead},
	ingestionv1.IngestionService_MergeLeads_FullMethodName:      {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_ImportLeads_FullMethodName:     {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_RecordActivity_FullMethodName:  {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_ListActivities_FullMethodName:  {Scope: auth.ScopeLeadsRead},
	ingestionv1.IngestionService_ListLeadChanges_FullMethodName: {Scope: auth.ScopeLeadsRead},
	ingestionv1.IngestionService_CreateForm_FullMethodName:      {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_GetForm_FullMethodName:         {Scope: auth.ScopeLeadsRead},
	ingestionv1.IngestionService_ListForms_FullMethodName:       {Scope: auth.ScopeLeadsRead},
	ingestionv1.IngestionService_UpdateForm_FullMethodName:      {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_DeleteForm_FullMethodName:      {Scope: auth.ScopeLeadsWrite},
	ingestionv1.IngestionService_SubmitForm_FullMethodName:      {Public: true},
	ingestionv1.IngestionService_GetPublicForm_FullMethodName:   {Internal: true},
}

// SkipValidation lists the methods that validate their own requests: an
// import reports bad rows by line instead of failing the stream.
var SkipValidation = []string{ingestionv1.IngestionService_ImportLeads_FullMethodName}

// maxRowsPerMessage bounds the rows of one ImportRows message. The bound is
// the message's own validation rule, read from the proto, which ImportLeads
// must check itself as it skips the validation interceptor.
var maxRowsPerMessage = importRowsLimit()

func importRowsLimit() int {
	fd := (&ingestionv1.ImportRows{}).ProtoReflect().Descriptor().Fields().ByName("rows")
	rules, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	n := rules.GetRepeated().GetMaxItems()
	if n == 0 {
		panic("ingestion: ImportRows.rows has no max_items rule")
	}
	return int(n)
}

// Metadata the gateway sets on the requests it forwards.
const (
	// MetadataIdempotencyKey carries the Idempotency-Key header; it stands
	// in for an empty request_id.
	MetadataIdempotencyKey = "idempotency-key"
	// MetadataForwardedFor carries the client's address chain; the first
	// entry is recorded with consent. It is personal data and never logged.
	MetadataForwardedFor = "x-forwarded-for"
)

// Server implements ingestionv1.IngestionServiceServer.
type Server struct {
	ingestionv1.UnimplementedIngestionServiceServer
	svc *lead.Service
}

// New returns a Server over svc.
func New(svc *lead.Service) *Server { return &Server{svc: svc} }

var errNoWorkspace = apperr.PermissionDenied("the caller acts for no workspace; use a workspace API key")

// workspace is the caller's workspace. Internal callers have none and may
// not touch tenant data through these RPCs.
func workspace(ctx context.Context) (string, error) {
	ws := auth.Workspace(ctx)
	if ws == "" {
		return "", errNoWorkspace
	}
	return ws, nil
}

func firstMetadata(ctx context.Context, key string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(key); len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// clientIP is the first address of x-forwarded-for: the browser, as the
// gateway saw it.
func clientIP(ctx context.Context) string {
	first, _, _ := strings.Cut(firstMetadata(ctx, MetadataForwardedFor), ",")
	return lead.CleanIP(first)
}

func leadID(name string) (string, error) {
	ids, ok := resname.Parse(name, "leads")
	if !ok {
		return "", lead.ErrLeadNotFound
	}
	return ids[0], nil
}

func formID(name string) (string, error) {
	ids, ok := resname.Parse(name, "forms")
	if !ok {
		return "", lead.ErrFormNotFound
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

// CreateLead implements ingestionv1.IngestionServiceServer.
func (s *Server) CreateLead(ctx context.Context, req *ingestionv1.CreateLeadRequest) (*ingestionv1.CreateLeadResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		requestID = firstMetadata(ctx, MetadataIdempotencyKey)
		if len(requestID) > 128 {
			return nil, apperr.InvalidArgument("invalid idempotency key",
				apperr.Field("request_id", "the Idempotency-Key must be at most 128 characters"))
		}
	}
	var consent *lead.Consent
	if c := req.GetConsent(); c != nil {
		consent = &lead.Consent{
			Purpose: c.GetPurpose(), TextVersion: c.GetTextVersion(), Granted: c.GetGranted(),
			IPAddress: clientIP(ctx),
		}
	}
	out, err := s.svc.CreateLead(ctx, ws, fromProtoLead(req.GetLead()), requestID, consent)
	if err != nil {
		return nil, err
	}
	return &ingestionv1.CreateLeadResponse{Lead: toProtoLead(out.Lead), Created: out.Created}, nil
}

// GetLead implements ingestionv1.IngestionServiceServer.
func (s *Server) GetLead(ctx context.Context, req *ingestionv1.GetLeadRequest) (*ingestionv1.GetLeadResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := leadID(req.GetName())
	if err != nil {
		return nil, err
	}
	l, err := s.svc.GetLead(ctx, ws, id)
	if err != nil {
		return nil, err
	}
	return &ingestionv1.GetLeadResponse{Lead: toProtoLead(l)}, nil
}

// ListLeads implements ingestionv1.IngestionServiceServer.
func (s *Server) ListLeads(ctx context.Context, req *ingestionv1.ListLeadsRequest) (*ingestionv1.ListLeadsResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	f := lead.LeadFilter{
		Source:        strings.TrimSpace(req.GetSource()),
		CompanyDomain: strings.ToLower(strings.TrimSpace(req.GetCompanyDomain())),
	}
	if c := strings.TrimSpace(req.GetCountry()); c != "" {
		code, ok := lead.CountryCode(c)
		if !ok {
			return nil, apperr.InvalidArgument("invalid filter", apperr.Field("country", "must be a country name or an ISO 3166 code"))
		}
		f.Country = code
	}
	if req.GetMinUpdateTime() != nil {
		f.MinUpdateTime = req.GetMinUpdateTime().AsTime()
	}
	// The token is bound to the workspace and the filters.
	query := strings.Join([]string{ws, f.Source, f.Country, f.CompanyDomain, f.MinUpdateTime.String()}, "\x00")
	leads, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *lead.LeadCursor, limit int) ([]lead.Lead, error) {
			return s.svc.ListLeads(ctx, ws, f, after, limit)
		},
		func(l lead.Lead) lead.LeadCursor { return lead.LeadCursor{CreateTime: l.CreateTime, ID: l.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &ingestionv1.ListLeadsResponse{NextPageToken: next}
	for _, l := range leads {
		resp.Leads = append(resp.Leads, toProtoLead(l))
	}
	return resp, nil
}

// UpdateLead implements ingestionv1.IngestionServiceServer.
func (s *Server) UpdateLead(ctx context.Context, req *ingestionv1.UpdateLeadRequest) (*ingestionv1.UpdateLeadResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := leadID(req.GetLead().GetName())
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	switch {
	case len(paths) == 0:
		paths = populatedLeadFields(req.GetLead())
	case len(paths) == 1 && paths[0] == "*":
		paths = lead.UpdatableFields
	}
	l, err := s.svc.UpdateLead(ctx, ws, id, parseEtag(req.GetLead().GetEtag()), fromProtoLead(req.GetLead()), paths)
	if err != nil {
		return nil, err
	}
	return &ingestionv1.UpdateLeadResponse{Lead: toProtoLead(l)}, nil
}

// DeleteLead implements ingestionv1.IngestionServiceServer.
func (s *Server) DeleteLead(ctx context.Context, req *ingestionv1.DeleteLeadRequest) (*ingestionv1.DeleteLeadResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := leadID(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteLead(ctx, ws, id); err != nil {
		return nil, err
	}
	return &ingestionv1.DeleteLeadResponse{}, nil
}

// ExportLead implements ingestionv1.IngestionServiceServer.
func (s *Server) ExportLead(ctx context.Context, req *ingestionv1.ExportLeadRequest) (*ingestionv1.ExportLeadResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := leadID(req.GetName())
	if err != nil {
		return nil, err
	}
	ex, err := s.svc.ExportLead(ctx, ws, id)
	if err != nil {
		return nil, err
	}
	out := &ingestionv1.LeadExport{Lead: toProtoLead(ex.Lead)}
	for _, a := range ex.Activities {
		out.Activities = append(out.Activities, toProtoActivity(a))
	}
	for _, c := range ex.Changes {
		out.Changes = append(out.Changes, toProtoChange(c))
	}
	return &ingestionv1.ExportLeadResponse{Export: out}, nil
}

// MergeLeads implements ingestionv1.IngestionServiceServer.
func (s *Server) MergeLeads(ctx context.Context, req *ingestionv1.MergeLeadsRequest) (*ingestionv1.MergeLeadsResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	survivor, err := leadID(req.GetName())
	if err != nil {
		return nil, err
	}
	source, err := leadID(req.GetSourceLead())
	if err != nil {
		return nil, err
	}
	p, _ := auth.FromContext(ctx)
	l, err := s.svc.MergeLeads(ctx, ws, lead.Merge{
		SurvivorID: survivor, SourceID: source, RequestID: req.GetRequestId(), Actor: p.KeyID,
	})
	if err != nil {
		return nil, err
	}
	return &ingestionv1.MergeLeadsResponse{Lead: toProtoLead(l)}, nil
}

// ImportLeads implements ingestionv1.IngestionServiceServer. Requests skip
// the validation interceptor: rows are checked here and bad ones reported by
// line, so one typo does not fail a file.
func (s *Server) ImportLeads(stream grpc.ClientStreamingServer[ingestionv1.ImportLeadsRequest, ingestionv1.ImportLeadsResponse]) error {
	ctx := stream.Context()
	ws, err := workspace(ctx)
	if err != nil {
		return err
	}
	var im *lead.Import
	defer func() {
		// A stream that breaks off leaves no writer behind.
		if im != nil {
			im.Close()
		}
	}()
	var rows int64
	addRow := func(row *ingestionv1.ImportRow) error {
		if im == nil {
			var err error
			if im, err = s.svc.NewImport(ws, "", ""); err != nil {
				return err
			}
		}
		rows++
		line := row.GetLine()
		if line <= 0 {
			line = rows
		}
		if row.GetLead() == nil {
			im.Reject(line, apperr.InvalidArgument("invalid row", apperr.Field("lead", "is required")))
			return nil
		}
		return im.Add(ctx, line, fromProtoLead(row.GetLead()))
	}
	for first := true; ; first = false {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch item := req.GetItem().(type) {
		case *ingestionv1.ImportLeadsRequest_Options:
			if !first {
				return apperr.InvalidArgument("invalid import",
					apperr.Field("options", "options may only be the first message of the stream"))
			}
			if im, err = s.svc.NewImport(ws, item.Options.GetSource(), item.Options.GetCampaign()); err != nil {
				return err
			}
		case *ingestionv1.ImportLeadsRequest_Row:
			if err := addRow(item.Row); err != nil {
				return err
			}
		case *ingestionv1.ImportLeadsRequest_Rows:
			if n := len(item.Rows.GetRows()); n == 0 || n > maxRowsPerMessage {
				return apperr.InvalidArgument("invalid import",
					apperr.Field("rows.rows", fmt.Sprintf("must hold 1 to %d rows, not %d", maxRowsPerMessage, n)))
			}
			for _, row := range item.Rows.GetRows() {
				if err := addRow(row); err != nil {
					return err
				}
			}
		default:
			return apperr.InvalidArgument("invalid import", apperr.Field("item", "each message must hold options or rows"))
		}
	}
	if im == nil {
		return stream.SendAndClose(&ingestionv1.ImportLeadsResponse{})
	}
	sum, err := im.Finish(ctx)
	if err != nil {
		return err
	}
	resp := &ingestionv1.ImportLeadsResponse{Created: sum.Created, Updated: sum.Updated, Failed: sum.Failed}
	for _, e := range sum.Errors {
		resp.Errors = append(resp.Errors, &ingestionv1.ImportError{Line: e.Line, Field: e.Field, Reason: e.Reason})
	}
	return stream.SendAndClose(resp)
}

// RecordActivity implements ingestionv1.IngestionServiceServer.
func (s *Server) RecordActivity(ctx context.Context, req *ingestionv1.RecordActivityRequest) (*ingestionv1.RecordActivityResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := leadID(req.GetParent())
	if err != nil {
		return nil, err
	}
	a, dup, err := s.svc.RecordActivity(ctx, ws, fromProtoActivity(id, req.GetActivity()))
	if err != nil {
		return nil, err
	}
	return &ingestionv1.RecordActivityResponse{Activity: toProtoActivity(a), Duplicate: dup}, nil
}

// ListActivities implements ingestionv1.IngestionServiceServer.
func (s *Server) ListActivities(ctx context.Context, req *ingestionv1.ListActivitiesRequest) (*ingestionv1.ListActivitiesResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := leadID(req.GetParent())
	if err != nil {
		return nil, err
	}
	query := ws + "\x00" + id
	acts, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *lead.ActivityCursor, limit int) ([]lead.Activity, error) {
			return s.svc.ListActivities(ctx, ws, id, after, limit)
		},
		func(a lead.Activity) lead.ActivityCursor {
			return lead.ActivityCursor{OccurTime: a.OccurTime, ID: a.ID}
		})
	if err != nil {
		return nil, listError(err)
	}
	resp := &ingestionv1.ListActivitiesResponse{NextPageToken: next}
	for _, a := range acts {
		resp.Activities = append(resp.Activities, toProtoActivity(a))
	}
	return resp, nil
}

// ListLeadChanges implements ingestionv1.IngestionServiceServer.
func (s *Server) ListLeadChanges(ctx context.Context, req *ingestionv1.ListLeadChangesRequest) (*ingestionv1.ListLeadChangesResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := leadID(req.GetParent())
	if err != nil {
		return nil, err
	}
	query := ws + "\x00" + id
	changes, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *lead.ChangeCursor, limit int) ([]lead.Change, error) {
			return s.svc.ListChanges(ctx, ws, id, after, limit)
		},
		func(c lead.Change) lead.ChangeCursor { return lead.ChangeCursor{ID: c.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &ingestionv1.ListLeadChangesResponse{NextPageToken: next}
	for _, c := range changes {
		resp.Changes = append(resp.Changes, toProtoChange(c))
	}
	return resp, nil
}

// CreateForm implements ingestionv1.IngestionServiceServer.
func (s *Server) CreateForm(ctx context.Context, req *ingestionv1.CreateFormRequest) (*ingestionv1.CreateFormResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	f := fromProtoForm(req.GetForm())
	f.ID, f.Workspace = req.GetFormId(), ws
	out, err := s.svc.CreateForm(ctx, f, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &ingestionv1.CreateFormResponse{Form: toProtoForm(out)}, nil
}

// GetForm implements ingestionv1.IngestionServiceServer.
func (s *Server) GetForm(ctx context.Context, req *ingestionv1.GetFormRequest) (*ingestionv1.GetFormResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := formID(req.GetName())
	if err != nil {
		return nil, err
	}
	f, err := s.svc.GetForm(ctx, ws, id)
	if err != nil {
		return nil, err
	}
	return &ingestionv1.GetFormResponse{Form: toProtoForm(f)}, nil
}

// ListForms implements ingestionv1.IngestionServiceServer.
func (s *Server) ListForms(ctx context.Context, req *ingestionv1.ListFormsRequest) (*ingestionv1.ListFormsResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	forms, next, err := page.List(req.GetPageToken(), ws, req.GetPageSize(),
		func(after *lead.FormCursor, limit int) ([]lead.Form, error) {
			return s.svc.ListForms(ctx, ws, after, limit)
		},
		func(f lead.Form) lead.FormCursor { return lead.FormCursor{CreateTime: f.CreateTime, ID: f.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &ingestionv1.ListFormsResponse{NextPageToken: next}
	for _, f := range forms {
		resp.Forms = append(resp.Forms, toProtoForm(f))
	}
	return resp, nil
}

// UpdateForm implements ingestionv1.IngestionServiceServer.
func (s *Server) UpdateForm(ctx context.Context, req *ingestionv1.UpdateFormRequest) (*ingestionv1.UpdateFormResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := formID(req.GetForm().GetName())
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	switch {
	case len(paths) == 0:
		paths = populatedFormFields(req.GetForm())
	case len(paths) == 1 && paths[0] == "*":
		paths = formFields
	}
	src := fromProtoForm(req.GetForm())
	for _, p := range paths {
		if !applyFormPath(&lead.Form{}, src, p) {
			return nil, apperr.InvalidArgument("invalid update mask",
				apperr.Field("update_mask", "unknown or read-only form field "+p+"; updatable fields: "+strings.Join(formFields, ", ")))
		}
	}
	f, err := s.svc.UpdateForm(ctx, ws, id, parseEtag(req.GetForm().GetEtag()), func(f *lead.Form) {
		for _, p := range paths {
			applyFormPath(f, src, p)
		}
	})
	if err != nil {
		return nil, err
	}
	return &ingestionv1.UpdateFormResponse{Form: toProtoForm(f)}, nil
}

// DeleteForm implements ingestionv1.IngestionServiceServer.
func (s *Server) DeleteForm(ctx context.Context, req *ingestionv1.DeleteFormRequest) (*ingestionv1.DeleteFormResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, err := formID(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteForm(ctx, ws, id, parseEtag(req.GetEtag())); err != nil {
		return nil, err
	}
	return &ingestionv1.DeleteFormResponse{}, nil
}

// SubmitForm implements ingestionv1.IngestionServiceServer. It is public:
// the form decides the workspace.
func (s *Server) SubmitForm(ctx context.Context, req *ingestionv1.SubmitFormRequest) (*ingestionv1.SubmitFormResponse, error) {
	id, err := formID(req.GetName())
	if err != nil {
		return nil, err
	}
	f, err := s.svc.SubmitForm(ctx, id, lead.Submission{Fields: req.GetFields(), IPAddress: clientIP(ctx)})
	if err != nil {
		return nil, err
	}
	return &ingestionv1.SubmitFormResponse{ThankYouUrl: f.ThankYouURL}, nil
}

// GetPublicForm implements ingestionv1.IngestionServiceServer.
func (s *Server) GetPublicForm(ctx context.Context, req *ingestionv1.GetPublicFormRequest) (*ingestionv1.GetPublicFormResponse, error) {
	id, err := formID(req.GetName())
	if err != nil {
		return nil, err
	}
	f, err := s.svc.GetPublicForm(ctx, id)
	if err != nil {
		return nil, err
	}
	return &ingestionv1.GetPublicFormResponse{
		AllowedOrigins: f.AllowedOrigins,
		ThankYouUrl:    f.ThankYouURL,
		HoneypotField:  f.HoneypotField,
		UpdateTime:     toProtoForm(f).GetUpdateTime(),
	}, nil
}
