// Package server exposes the identity domain over gRPC.
package server

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/identity/internal/identity"
)

// Policy says who may call each identity RPC.
var Policy = auth.Policy{
	identityv1.IdentityService_GetWorkspace_FullMethodName:       {Scope: ""},
	identityv1.IdentityService_CreateApiKey_FullMethodName:       {Scope: auth.ScopeAdmin},
	identityv1.IdentityService_ListApiKeys_FullMethodName:        {Scope: auth.ScopeAdmin},
	identityv1.IdentityService_DeleteApiKey_FullMethodName:       {Scope: auth.ScopeAdmin},
	identityv1.IdentityService_AuthenticateApiKey_FullMethodName: {Internal: true},
}

// Server implements identityv1.IdentityServiceServer.
type Server struct {
	identityv1.UnimplementedIdentityServiceServer
	svc *identity.Service
}

// New returns a Server over svc.
func New(svc *identity.Service) *Server { return &Server{svc: svc} }

// ownWorkspace resolves "workspaces/{id}" and insists it is the caller's, so
// that another tenant's workspace is indistinguishable from a missing one.
func ownWorkspace(ctx context.Context, name string) (string, error) {
	ids, ok := resname.Parse(name, "workspaces")
	if !ok || ids[0] != auth.Workspace(ctx) {
		return "", identity.ErrWorkspaceNotFound
	}
	return ids[0], nil
}

// GetWorkspace implements identityv1.IdentityServiceServer.
func (s *Server) GetWorkspace(ctx context.Context, req *identityv1.GetWorkspaceRequest) (*identityv1.GetWorkspaceResponse, error) {
	id, err := ownWorkspace(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	w, err := s.svc.GetWorkspace(ctx, id)
	if err != nil {
		return nil, err
	}
	return &identityv1.GetWorkspaceResponse{Workspace: toProtoWorkspace(w)}, nil
}

// CreateApiKey implements identityv1.IdentityServiceServer.
func (s *Server) CreateApiKey(ctx context.Context, req *identityv1.CreateApiKeyRequest) (*identityv1.CreateApiKeyResponse, error) {
	ws, err := ownWorkspace(ctx, req.GetParent())
	if err != nil {
		return nil, err
	}
	k, secret, err := s.svc.CreateAPIKey(ctx, ws, req.GetApiKey().GetDisplayName(), req.GetApiKey().GetScopes())
	if err != nil {
		return nil, err
	}
	return &identityv1.CreateApiKeyResponse{ApiKey: toProtoAPIKey(k), Secret: secret}, nil
}

// ListApiKeys implements identityv1.IdentityServiceServer.
func (s *Server) ListApiKeys(ctx context.Context, req *identityv1.ListApiKeysRequest) (*identityv1.ListApiKeysResponse, error) {
	ws, err := ownWorkspace(ctx, req.GetParent())
	if err != nil {
		return nil, err
	}
	keys, next, err := page.List(req.GetPageToken(), ws, req.GetPageSize(),
		func(after *identity.KeyCursor, limit int) ([]identity.APIKey, error) {
			return s.svc.ListAPIKeys(ctx, ws, after, limit)
		},
		func(k identity.APIKey) identity.KeyCursor {
			return identity.KeyCursor{CreateTime: k.CreateTime, ID: k.ID}
		})
	switch {
	case errors.Is(err, page.ErrInvalidToken):
		return nil, apperr.InvalidArgument("invalid page token", apperr.Field("page_token", err.Error()))
	case err != nil:
		return nil, err
	}
	resp := &identityv1.ListApiKeysResponse{NextPageToken: next}
	for _, k := range keys {
		resp.ApiKeys = append(resp.ApiKeys, toProtoAPIKey(k))
	}
	return resp, nil
}

// DeleteApiKey implements identityv1.IdentityServiceServer.
func (s *Server) DeleteApiKey(ctx context.Context, req *identityv1.DeleteApiKeyRequest) (*identityv1.DeleteApiKeyResponse, error) {
	ids, ok := resname.Parse(req.GetName(), "workspaces", "apiKeys")
	if !ok || ids[0] != auth.Workspace(ctx) {
		return nil, identity.ErrAPIKeyNotFound
	}
	if err := s.svc.RevokeAPIKey(ctx, ids[0], ids[1]); err != nil {
		return nil, err
	}
	return &identityv1.DeleteApiKeyResponse{}, nil
}

// AuthenticateApiKey implements identityv1.IdentityServiceServer.
func (s *Server) AuthenticateApiKey(ctx context.Context, req *identityv1.AuthenticateApiKeyRequest) (*identityv1.AuthenticateApiKeyResponse, error) {
	p, err := s.svc.Authenticate(ctx, req.GetSecret())
	if errors.Is(err, auth.ErrUnauthenticated) {
		return nil, apperr.Unauthenticated("invalid or revoked api key")
	}
	if err != nil {
		return nil, err
	}
	return &identityv1.AuthenticateApiKeyResponse{Principal: &identityv1.Principal{
		Workspace: p.Workspace, ApiKey: p.KeyID, Scopes: p.Scopes,
	}}, nil
}

func toProtoWorkspace(w identity.Workspace) *identityv1.Workspace {
	return &identityv1.Workspace{
		Name:        resname.Format("workspaces", w.ID),
		DisplayName: w.DisplayName,
		CreateTime:  timestamppb.New(w.CreateTime),
	}
}

func toProtoAPIKey(k identity.APIKey) *identityv1.ApiKey {
	out := &identityv1.ApiKey{
		Name:        resname.Format("workspaces", k.Workspace, "apiKeys", k.ID),
		DisplayName: k.DisplayName,
		Scopes:      k.Scopes,
		Prefix:      "lf_" + k.ID,
		CreateTime:  timestamppb.New(k.CreateTime),
	}
	if k.RevokeTime != nil {
		out.RevokeTime = timestamppb.New(*k.RevokeTime)
	}
	return out
}
