// Package store is the PostgreSQL implementation of identity.Store.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/identity/internal/identity"
)

// Schema is the PostgreSQL schema the identity service owns.
const Schema = "identity"

// Migrations are the service's numbered SQL migrations;
// pkg/migrate finds the files under migrations/.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Store implements identity.Store.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store over pool, whose search_path must be Schema.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// CreateWorkspace implements identity.Store.
func (s *Store) CreateWorkspace(ctx context.Context, w identity.Workspace) error {
	const q = `INSERT INTO workspaces (id, display_name, create_time) VALUES ($1, $2, $3)`
	_, err := s.pool.Exec(ctx, q, w.ID, w.DisplayName, w.CreateTime)
	if postgres.IsUniqueViolation(err) {
		return identity.ErrWorkspaceExists
	}
	return err
}

// GetWorkspace implements identity.Store.
func (s *Store) GetWorkspace(ctx context.Context, id string) (identity.Workspace, error) {
	const q = `SELECT id, display_name, create_time FROM workspaces WHERE id = $1`
	var w identity.Workspace
	err := s.pool.QueryRow(ctx, q, id).Scan(&w.ID, &w.DisplayName, &w.CreateTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.Workspace{}, identity.ErrWorkspaceNotFound
	}
	return w, err
}

// PutAPIKey implements identity.Store. A seeded key keeps its id, so a re-seed
// replaces the hash and scopes and clears any revocation.
func (s *Store) PutAPIKey(ctx context.Context, k identity.APIKey, hash []byte) error {
	const q = `
INSERT INTO api_keys (workspace_id, id, display_name, scopes, secret_hash, create_time)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE
   SET display_name = EXCLUDED.display_name, scopes = EXCLUDED.scopes,
       secret_hash = EXCLUDED.secret_hash, revoke_time = NULL
 WHERE api_keys.workspace_id = EXCLUDED.workspace_id`
	tag, err := s.pool.Exec(ctx, q, k.Workspace, k.ID, k.DisplayName, k.Scopes, hash, k.CreateTime)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("api key id %s belongs to another workspace", k.ID)
	}
	return nil
}

type keyRow struct {
	WorkspaceID string     `db:"workspace_id"`
	ID          string     `db:"id"`
	DisplayName string     `db:"display_name"`
	Scopes      []string   `db:"scopes"`
	CreateTime  time.Time  `db:"create_time"`
	RevokeTime  *time.Time `db:"revoke_time"`
}

func (r keyRow) toDomain() identity.APIKey {
	return identity.APIKey{
		ID: r.ID, Workspace: r.WorkspaceID, DisplayName: r.DisplayName,
		Scopes: r.Scopes, CreateTime: r.CreateTime, RevokeTime: r.RevokeTime,
	}
}

// ListAPIKeys implements identity.Store.
func (s *Store) ListAPIKeys(ctx context.Context, workspace string, after *identity.KeyCursor, limit int) ([]identity.APIKey, error) {
	const q = `
SELECT workspace_id, id, display_name, scopes, create_time, revoke_time
  FROM api_keys
 WHERE workspace_id = $1
   AND ($2::timestamptz IS NULL OR (create_time, id) < ($2, $3))
 ORDER BY create_time DESC, id DESC
 LIMIT $4`
	var afterTime *time.Time
	var afterID string
	if after != nil {
		afterTime, afterID = &after.CreateTime, after.ID
	}
	rows, err := s.pool.Query(ctx, q, workspace, afterTime, afterID, limit)
	if err != nil {
		return nil, err
	}
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByName[keyRow])
	if err != nil {
		return nil, err
	}
	out := make([]identity.APIKey, len(keys))
	for i, r := range keys {
		out[i] = r.toDomain()
	}
	return out, nil
}

// RevokeAPIKey implements identity.Store. Revoking twice keeps the first time.
func (s *Store) RevokeAPIKey(ctx context.Context, workspace, id string, at time.Time) error {
	const q = `
UPDATE api_keys SET revoke_time = coalesce(revoke_time, $3)
 WHERE workspace_id = $1 AND id = $2`
	tag, err := s.pool.Exec(ctx, q, workspace, id, at)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return identity.ErrAPIKeyNotFound
	}
	return nil
}

// LookupAPIKey implements identity.Store.
func (s *Store) LookupAPIKey(ctx context.Context, id string) (identity.APIKey, []byte, error) {
	const q = `
SELECT workspace_id, id, display_name, scopes, create_time, revoke_time, secret_hash
  FROM api_keys WHERE id = $1`
	var r keyRow
	var hash []byte
	err := s.pool.QueryRow(ctx, q, id).Scan(&r.WorkspaceID, &r.ID, &r.DisplayName, &r.Scopes, &r.CreateTime, &r.RevokeTime, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.APIKey{}, nil, identity.ErrAPIKeyNotFound
	}
	if err != nil {
		return identity.APIKey{}, nil, err
	}
	return r.toDomain(), hash, nil
}
