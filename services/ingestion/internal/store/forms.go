package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

const formColumns = `id, workspace_id, display_name, field_mapping, source, campaign, consent_purpose,
consent_text, consent_text_version, allowed_origins, thank_you_url, honeypot_field, version,
create_time, update_time, activity_type`

type formRow struct {
	ID                 string            `db:"id"`
	WorkspaceID        string            `db:"workspace_id"`
	DisplayName        string            `db:"display_name"`
	FieldMapping       map[string]string `db:"field_mapping"`
	Source             string            `db:"source"`
	Campaign           string            `db:"campaign"`
	ConsentPurpose     string            `db:"consent_purpose"`
	ConsentText        string            `db:"consent_text"`
	ConsentTextVersion string            `db:"consent_text_version"`
	AllowedOrigins     []string          `db:"allowed_origins"`
	ThankYouURL        string            `db:"thank_you_url"`
	HoneypotField      string            `db:"honeypot_field"`
	Version            int64             `db:"version"`
	CreateTime         time.Time         `db:"create_time"`
	UpdateTime         time.Time         `db:"update_time"`
	ActivityType       string            `db:"activity_type"`
}

func (r formRow) toDomain() lead.Form {
	return lead.Form{
		ID: r.ID, Workspace: r.WorkspaceID, DisplayName: r.DisplayName, FieldMapping: r.FieldMapping,
		Source: r.Source, Campaign: r.Campaign, ConsentPurpose: r.ConsentPurpose, ConsentText: r.ConsentText,
		ConsentTextVersion: r.ConsentTextVersion, AllowedOrigins: r.AllowedOrigins, ThankYouURL: r.ThankYouURL,
		HoneypotField: r.HoneypotField, Version: r.Version, CreateTime: r.CreateTime.UTC(), UpdateTime: r.UpdateTime.UTC(),
		ActivityType: lead.ActivityType(r.ActivityType),
	}
}

func formArgs(f lead.Form) []any {
	origins := f.AllowedOrigins
	if origins == nil {
		origins = []string{}
	}
	return []any{f.ID, f.Workspace, f.DisplayName, nonNil(f.FieldMapping), f.Source, f.Campaign,
		f.ConsentPurpose, f.ConsentText, f.ConsentTextVersion, origins, f.ThankYouURL, f.HoneypotField,
		f.Version, f.CreateTime, f.UpdateTime, string(f.ActivityType)}
}

func readForm(ctx context.Context, q postgres.Querier, sql string, args ...any) (lead.Form, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return lead.Form{}, wrap("read form", err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[formRow])
	if err != nil {
		return lead.Form{}, notFound(wrap("read form", err), lead.ErrFormNotFound)
	}
	return r.toDomain(), nil
}

func (s *Store) createForm(ctx context.Context, f lead.Form) (lead.Form, error) {
	const q = `INSERT INTO forms (` + formColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`
	_, err := s.pool.Exec(ctx, q, formArgs(f)...)
	if postgres.IsUniqueViolation(err) {
		return lead.Form{}, lead.ErrFormExists
	}
	return f, wrap("create form", err)
}

// CreateForm implements lead.Store.
func (s *Store) CreateForm(ctx context.Context, f lead.Form, requestID string) (lead.Form, error) {
	if requestID == "" {
		return s.createForm(ctx, f)
	}
	var out lead.Form
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		prior, done, err := s.claimRequest(ctx, tx, f.Workspace, opCreateForm, requestID)
		if err != nil {
			return err
		}
		if done {
			out, err = s.getForm(ctx, tx, f.Workspace, prior.resourceID)
			return err
		}
		const q = `INSERT INTO forms (` + formColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (id) DO NOTHING`
		tag, err := tx.Exec(ctx, q, formArgs(f)...)
		if err != nil {
			return wrap("create form", err)
		}
		if tag.RowsAffected() == 0 {
			return lead.ErrFormExists
		}
		out = f
		return finishRequest(ctx, tx, f.Workspace, opCreateForm, requestID, f.ID, true)
	})
	return out, err
}

func (s *Store) getForm(ctx context.Context, q postgres.Querier, ws, id string) (lead.Form, error) {
	const sql = `SELECT ` + formColumns + ` FROM forms WHERE workspace_id = $1 AND id = $2`
	return readForm(ctx, q, sql, ws, id)
}

// GetForm implements lead.Store.
func (s *Store) GetForm(ctx context.Context, ws, id string) (lead.Form, error) {
	return s.getForm(ctx, s.pool, ws, id)
}

// FindForm implements lead.Store.
func (s *Store) FindForm(ctx context.Context, id string) (lead.Form, error) {
	const q = `SELECT ` + formColumns + ` FROM forms WHERE id = $1`
	return readForm(ctx, s.pool, q, id)
}

// ListForms implements lead.Store.
func (s *Store) ListForms(ctx context.Context, ws string, after *lead.FormCursor, limit int) ([]lead.Form, error) {
	const q = `
SELECT ` + formColumns + ` FROM forms
 WHERE workspace_id = $1 AND ($2::timestamptz IS NULL OR (create_time, id) < ($2, $3))
 ORDER BY create_time DESC, id DESC
 LIMIT $4`
	var afterTime *time.Time
	var afterID string
	if after != nil {
		afterTime, afterID = &after.CreateTime, after.ID
	}
	rows, err := s.pool.Query(ctx, q, ws, afterTime, afterID, limit)
	if err != nil {
		return nil, wrap("list forms", err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[formRow])
	if err != nil {
		return nil, wrap("list forms", err)
	}
	out := make([]lead.Form, len(rs))
	for i, r := range rs {
		out[i] = r.toDomain()
	}
	return out, nil
}

// UpdateForm implements lead.Store.
func (s *Store) UpdateForm(ctx context.Context, ws, id string, version int64, apply func(*lead.Form) error) (lead.Form, error) {
	var out lead.Form
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		const sel = `SELECT ` + formColumns + ` FROM forms WHERE workspace_id = $1 AND id = $2 FOR UPDATE`
		f, err := readForm(ctx, tx, sel, ws, id)
		if err != nil {
			return err
		}
		if version != 0 && version != f.Version {
			return lead.ErrEtagMismatch
		}
		if err := apply(&f); err != nil {
			return err
		}
		f.ID, f.Workspace = id, ws
		f.Version++
		f.UpdateTime = s.now()
		const upd = `
UPDATE forms SET display_name = $3, field_mapping = $4, source = $5, campaign = $6,
       consent_purpose = $7, consent_text = $8, consent_text_version = $9, allowed_origins = $10,
       thank_you_url = $11, honeypot_field = $12, version = $13, update_time = $14,
       activity_type = $15
 WHERE id = $1 AND workspace_id = $2`
		args := formArgs(f)
		args = append(args[:13], args[14:]...) // every column but create_time
		tag, err := tx.Exec(ctx, upd, args...)
		if err != nil {
			return wrap("update form", err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("update form: %d rows updated, want 1", tag.RowsAffected())
		}
		out = f
		return nil
	})
	return out, err
}

// DeleteForm implements lead.Store.
func (s *Store) DeleteForm(ctx context.Context, ws, id string, version int64) error {
	return postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var current int64
		const sel = `SELECT version FROM forms WHERE workspace_id = $1 AND id = $2 FOR UPDATE`
		if err := tx.QueryRow(ctx, sel, ws, id).Scan(&current); err != nil {
			return notFound(wrap("read form", err), lead.ErrFormNotFound)
		}
		if version != 0 && version != current {
			return lead.ErrEtagMismatch
		}
		_, err := tx.Exec(ctx, `DELETE FROM forms WHERE workspace_id = $1 AND id = $2`, ws, id)
		return wrap("delete form", err)
	})
}
