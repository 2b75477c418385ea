// Package identity holds workspaces and API keys, and turns a presented key
// into the principal every other service confines its queries to.
package identity

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
)

// Errors the identity domain reports.
var (
	ErrWorkspaceNotFound = apperr.NotFound("workspace not found")
	ErrWorkspaceExists   = apperr.AlreadyExists("workspace already exists")
	ErrAPIKeyNotFound    = apperr.NotFound("api key not found")
)

// Workspace is a tenant.
type Workspace struct {
	ID          string
	DisplayName string
	CreateTime  time.Time
}

// APIKey is a stored key; the secret itself is never kept.
type APIKey struct {
	ID          string
	Workspace   string
	DisplayName string
	Scopes      []string
	CreateTime  time.Time
	RevokeTime  *time.Time
}

// KeyCursor positions a page of keys (newest first).
type KeyCursor struct {
	CreateTime time.Time `json:"t"`
	ID         string    `json:"i"`
}

// Store persists workspaces and keys.
type Store interface {
	CreateWorkspace(ctx context.Context, w Workspace) error
	GetWorkspace(ctx context.Context, id string) (Workspace, error)
	// PutAPIKey stores a key with its hash, replacing one with the same id in
	// the same workspace (used by seeding, which fixes the key's value).
	PutAPIKey(ctx context.Context, k APIKey, hash []byte) error
	// ListAPIKeys returns up to limit keys of a workspace after cursor.
	ListAPIKeys(ctx context.Context, workspace string, after *KeyCursor, limit int) ([]APIKey, error)
	RevokeAPIKey(ctx context.Context, workspace, id string, at time.Time) error
	// LookupAPIKey finds a key by id in any workspace, with its hash.
	LookupAPIKey(ctx context.Context, id string) (APIKey, []byte, error)
}

// Service implements the identity use cases.
type Service struct {
	store Store
	now   func() time.Time
}

// NewService returns a Service over store.
func NewService(store Store) *Service {
	return &Service{store: store, now: time.Now}
}

var workspaceID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CreateWorkspace creates a tenant. Operators call it through the CLI.
func (s *Service) CreateWorkspace(ctx context.Context, id, displayName string) (Workspace, error) {
	if !workspaceID.MatchString(id) {
		return Workspace{}, apperr.InvalidArgument("invalid workspace",
			apperr.Field("workspace_id", "must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit"))
	}
	w := Workspace{ID: id, DisplayName: displayName, CreateTime: s.now().UTC()}
	if err := s.store.CreateWorkspace(ctx, w); err != nil {
		return Workspace{}, fmt.Errorf("create workspace: %w", err)
	}
	return w, nil
}

// GetWorkspace returns a workspace.
func (s *Service) GetWorkspace(ctx context.Context, id string) (Workspace, error) {
	return s.store.GetWorkspace(ctx, id)
}

// CreateAPIKey issues a key and returns it with its secret.
func (s *Service) CreateAPIKey(ctx context.Context, workspace, displayName string, scopes []string) (APIKey, string, error) {
	if err := validateScopes(scopes); err != nil {
		return APIKey{}, "", err
	}
	if _, err := s.store.GetWorkspace(ctx, workspace); err != nil {
		return APIKey{}, "", err
	}
	id, secret, hash, err := auth.NewKey()
	if err != nil {
		return APIKey{}, "", fmt.Errorf("generate key: %w", err)
	}
	k := APIKey{ID: id, Workspace: workspace, DisplayName: displayName, Scopes: scopes, CreateTime: s.now().UTC()}
	if err := s.store.PutAPIKey(ctx, k, hash); err != nil {
		return APIKey{}, "", fmt.Errorf("store key: %w", err)
	}
	return k, secret, nil
}

// SeedAPIKey stores a key whose secret the caller chose (the dev stack keeps
// one fixed key across restarts). The workspace is created when missing.
func (s *Service) SeedAPIKey(ctx context.Context, workspace, secret string, scopes []string) (APIKey, error) {
	id, err := auth.KeyID(secret)
	if err != nil {
		return APIKey{}, apperr.InvalidArgument("invalid api key", apperr.Field("api_key", err.Error()))
	}
	if err := validateScopes(scopes); err != nil {
		return APIKey{}, err
	}
	if _, err := s.CreateWorkspace(ctx, workspace, workspace); err != nil && !errors.Is(err, ErrWorkspaceExists) {
		return APIKey{}, err
	}
	k := APIKey{ID: id, Workspace: workspace, DisplayName: "seeded", Scopes: scopes, CreateTime: s.now().UTC()}
	if err := s.store.PutAPIKey(ctx, k, auth.HashKey(secret)); err != nil {
		return APIKey{}, fmt.Errorf("seed key: %w", err)
	}
	return k, nil
}

// ListAPIKeys pages through a workspace's keys.
func (s *Service) ListAPIKeys(ctx context.Context, workspace string, after *KeyCursor, limit int) ([]APIKey, error) {
	return s.store.ListAPIKeys(ctx, workspace, after, limit)
}

// RevokeAPIKey revokes a key of the workspace.
func (s *Service) RevokeAPIKey(ctx context.Context, workspace, id string) error {
	return s.store.RevokeAPIKey(ctx, workspace, id, s.now().UTC())
}

// Authenticate implements auth.Authenticator against the store.
func (s *Service) Authenticate(ctx context.Context, secret string) (auth.Principal, error) {
	id, err := auth.KeyID(secret)
	if err != nil {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	k, hash, err := s.store.LookupAPIKey(ctx, id)
	if errors.Is(err, ErrAPIKeyNotFound) {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	if err != nil {
		return auth.Principal{}, fmt.Errorf("look up key: %w", err)
	}
	if k.RevokeTime != nil || !auth.MatchKey(secret, hash) {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	return auth.Principal{Workspace: k.Workspace, KeyID: k.ID, Scopes: k.Scopes}, nil
}

func validateScopes(scopes []string) error {
	if len(scopes) == 0 {
		return apperr.InvalidArgument("invalid api key", apperr.Field("api_key.scopes", "at least one scope is required"))
	}
	for i, sc := range scopes {
		if !auth.ValidScope(sc) {
			return apperr.InvalidArgument("invalid api key",
				apperr.Field(fmt.Sprintf("api_key.scopes[%d]", i), fmt.Sprintf("unknown scope %q; known scopes: %v", sc, auth.AllScopes)))
		}
	}
	return nil
}
