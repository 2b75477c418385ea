// Package store is the PostgreSQL implementation of scoring.Store.
package store

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
)

// Schema is the PostgreSQL schema the scoring service owns.
const Schema = "scoring"

// Migrations are the service's numbered SQL migrations;
// pkg/migrate finds the files under migrations/.
//
//go:embed migrations/*.sql
var Migrations embed.FS

var _ scoring.Store = (*Store)(nil)

// querier is satisfied by the pool and by a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store implements scoring.Store.
type Store struct {
	pool *pgxpool.Pool
	pub  *outbox.Publisher
	q    querier
	tx   pgx.Tx // nil outside a transaction
}

// New returns a Store over pool, whose search_path must be Schema; pub
// writes the events the domain publishes.
func New(pool *pgxpool.Pool, pub *outbox.Publisher) *Store {
	return &Store{pool: pool, pub: pub, q: pool}
}

// WithTx returns the Store bound to tx, for event handlers that run in the
// inbox's transaction.
func (s *Store) WithTx(tx pgx.Tx) *Store { return &Store{pool: s.pool, pub: s.pub, q: tx, tx: tx} }

// InTx implements scoring.Store. Inside a transaction it uses a savepoint.
func (s *Store) InTx(ctx context.Context, fn func(scoring.Store) error) error {
	if s.tx == nil {
		return postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error { return fn(s.WithTx(tx)) })
	}
	sp, err := s.tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if err := fn(s.WithTx(sp)); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

// SaveRescored implements scoring.Store. The leads' score columns are
// written by one UPDATE over arrays and their crossings by one INSERT, sent
// together; the events go in with one more INSERT and a single NOTIFY. No
// indexed column changes unless the whole-point total does, so most of
// these updates are HOT (see the table's fillfactor).
func (s *Store) SaveRescored(ctx context.Context, workspace string, rs []scoring.Rescored) error {
	if s.tx == nil {
		return errors.New("save rescored leads outside a transaction")
	}
	if len(rs) == 0 {
		return nil
	}
	n := len(rs)
	var (
		ids, modelIDs, grades = make([]string, n), make([]string, n), make([]string, n)
		versions, fits, engs  = make([]int64, n), make([]int64, n), make([]int64, n)
		totals, scores        = make([]int64, n), make([]int64, n)
		above                 = make([]bool, n)
		scoreTimes            = make([]*time.Time, n)
		qReasons              = make([]*int16, n)
		qTimes                = make([]*time.Time, n)
		qTotals, qVersions    = make([]*int64, n), make([]*int64, n)
		qActs                 = make([]*string, n)
		cLeads                []string
		cUps                  []bool
		cTimes                []time.Time
		cTotals, cVersions    []int64
		msgs                  []outbox.Message
	)
	for i := range rs {
		l := &rs[i].Lead
		ids[i], modelIDs[i], grades[i] = l.ID, l.ModelID, l.Grade
		versions[i], fits[i], engs[i], totals[i] = l.ModelVersion, l.FitMilli, l.EngagementMilli, l.TotalMilli
		scores[i], above[i], scoreTimes[i] = scoring.WholePoints(l.TotalMilli), l.AboveThreshold, l.ScoreTime
		if q := l.Qualification; q != nil {
			r := int16(q.Reason)
			qReasons[i], qTimes[i], qTotals[i], qVersions[i], qActs[i] = &r, &q.Time, &q.TotalScore, &q.ModelVersion, &q.Activity
		}
		if c := rs[i].Crossing; c != nil {
			cLeads, cUps, cTimes = append(cLeads, l.ID), append(cUps, c.Up), append(cTimes, c.Time)
			cTotals, cVersions = append(cTotals, c.TotalScore), append(cVersions, c.ModelVersion)
		}
		for _, ev := range rs[i].Events {
			msgs = append(msgs, outbox.Message{Workspace: workspace, Lead: l.ID, Payload: ev})
		}
	}
	// The id range keeps the join to the batch's leads whatever plan the
	// server picks; without it, it may hash-join against every lead of the
	// workspace, once per batch.
	const qLeads = `
UPDATE leads AS l
   SET model_id = u.model_id, model_version = u.model_version, fit_milli = u.fit_milli,
       engagement_milli = u.engagement_milli, total_milli = u.total_milli, total_score = u.total_score,
       grade = u.grade, above_threshold = u.above_threshold, score_time = u.score_time,
       qualify_reason = u.qualify_reason, qualify_time = u.qualify_time, qualify_total = u.qualify_total,
       qualify_model_version = u.qualify_model_version, qualify_activity = u.qualify_activity
  FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
              $9::text[], $10::boolean[], $11::timestamptz[], $12::smallint[], $13::timestamptz[],
              $14::bigint[], $15::bigint[], $16::text[])
    AS u (id, model_id, model_version, fit_milli, engagement_milli, total_milli, total_score, grade,
          above_threshold, score_time, qualify_reason, qualify_time, qualify_total, qualify_model_version,
          qualify_activity)
 WHERE l.workspace_id = $1 AND l.id = u.id AND l.id BETWEEN $17 AND $18`
	const qCrossings = `
INSERT INTO threshold_crossings (workspace_id, lead_id, up, cross_time, total_score, model_version)
SELECT $1, lead_id, up, cross_time, total_score, model_version
  FROM unnest($2::text[], $3::boolean[], $4::timestamptz[], $5::bigint[], $6::bigint[])
    AS c (lead_id, up, cross_time, total_score, model_version)`
	b := &pgx.Batch{}
	var updated int64
	b.Queue(qLeads, workspace, ids, modelIDs, versions, fits, engs, totals, scores, grades, above, scoreTimes,
		qReasons, qTimes, qTotals, qVersions, qActs, slices.Min(ids), slices.Max(ids)).Exec(func(tag pgconn.CommandTag) error {
		updated = tag.RowsAffected()
		return nil
	})
	if len(cLeads) > 0 {
		b.Queue(qCrossings, workspace, cLeads, cUps, cTimes, cTotals, cVersions)
	}
	if err := s.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save rescored leads: %w", err)
	}
	if updated != int64(n) {
		// The leads are locked, so this is a caller's mistake, not a race.
		return fmt.Errorf("save rescored leads: %d of %d leads found", updated, n)
	}
	if len(msgs) > 0 {
		if _, err := s.pub.PublishAll(ctx, s.tx, msgs); err != nil {
			return err
		}
	}
	return nil
}

// EnsureWorkspace implements scoring.Store.
func (s *Store) EnsureWorkspace(ctx context.Context, m scoring.Model) (bool, error) {
	// The transaction notes each workspace it creates in a transaction-local
	// setting (undone with it, or with its savepoint), so a later call in
	// the same transaction can tell its own uncommitted row from one that
	// was there before.
	const q = `
WITH ins AS (
    INSERT INTO workspaces (id, last_version) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id
), noted AS (
    SELECT string_to_array(coalesce(current_setting('leadflow.created_workspaces', true), ''), E'\n') AS ids
)
SELECT EXISTS (SELECT FROM ins),
       $1 = ANY (ids),
       CASE WHEN EXISTS (SELECT FROM ins)
            THEN set_config('leadflow.created_workspaces', array_to_string(ids || $1::text, E'\n'), true) END
  FROM noted`
	var created, mine bool
	if err := s.q.QueryRow(ctx, q, m.Workspace, m.Version).Scan(&created, &mine, nil); err != nil {
		return false, err
	}
	if !created {
		return !mine, nil
	}
	_, err := s.CreateModel(ctx, m, "")
	return false, err
}

// NextVersion implements scoring.Store.
func (s *Store) NextVersion(ctx context.Context, workspace string) (int64, error) {
	const q = `UPDATE workspaces SET last_version = last_version + 1 WHERE id = $1 RETURNING last_version`
	var v int64
	err := s.q.QueryRow(ctx, q, workspace).Scan(&v)
	return v, err
}

type modelRow struct {
	WorkspaceID   string     `db:"workspace_id"`
	ID            string     `db:"id"`
	DisplayName   string     `db:"display_name"`
	Description   string     `db:"description"`
	State         string     `db:"state"`
	Version       int64      `db:"version"`
	Rules         []byte     `db:"rules"`
	Etag          string     `db:"etag"`
	CreateTime    time.Time  `db:"create_time"`
	UpdateTime    time.Time  `db:"update_time"`
	PublishTime   *time.Time `db:"publish_time"`
	SupersedeTime *time.Time `db:"supersede_time"`
}

const modelColumns = `workspace_id, id, display_name, description, state, version, rules, etag,
       create_time, update_time, publish_time, supersede_time`

func (r modelRow) toDomain() (scoring.Model, error) {
	m := scoring.Model{
		Workspace: r.WorkspaceID, ID: r.ID, DisplayName: r.DisplayName, Description: r.Description,
		State: scoring.ModelState(r.State), Version: r.Version, Etag: r.Etag,
		CreateTime: r.CreateTime, UpdateTime: r.UpdateTime, PublishTime: r.PublishTime, SupersedeTime: r.SupersedeTime,
	}
	if err := json.Unmarshal(r.Rules, &m.Rules); err != nil {
		return scoring.Model{}, fmt.Errorf("decode rules of model %s: %w", r.ID, err)
	}
	return m, nil
}

// CreateModel implements scoring.Store.
func (s *Store) CreateModel(ctx context.Context, m scoring.Model, requestID string) (scoring.Model, error) {
	rules, err := json.Marshal(m.Rules)
	if err != nil {
		return scoring.Model{}, fmt.Errorf("encode rules: %w", err)
	}
	var reqID *string
	if requestID != "" {
		reqID = &requestID
		if prior, err := s.modelByRequest(ctx, m.Workspace, requestID); err == nil {
			return prior, nil
		} else if !errors.Is(err, scoring.ErrModelNotFound) {
			return scoring.Model{}, err
		}
	}
	const q = `
INSERT INTO models (workspace_id, id, display_name, description, state, version, rules, request_id, etag,
                    create_time, update_time, publish_time, supersede_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	_, err = s.q.Exec(ctx, q, m.Workspace, m.ID, m.DisplayName, m.Description, string(m.State), m.Version, rules, reqID,
		m.Etag, m.CreateTime, m.UpdateTime, m.PublishTime, m.SupersedeTime)
	if postgres.IsUniqueViolation(err) {
		if postgres.ConstraintName(err) == "models_request" {
			return s.modelByRequest(ctx, m.Workspace, requestID)
		}
		return scoring.Model{}, scoring.ErrModelExists
	}
	if err != nil {
		return scoring.Model{}, err
	}
	return m, nil
}

func (s *Store) modelByRequest(ctx context.Context, workspace, requestID string) (scoring.Model, error) {
	q := `SELECT ` + modelColumns + ` FROM models WHERE workspace_id = $1 AND request_id = $2`
	return s.oneModel(ctx, q, workspace, requestID)
}

func (s *Store) oneModel(ctx context.Context, q string, args ...any) (scoring.Model, error) {
	rows, err := s.q.Query(ctx, q, args...)
	if err != nil {
		return scoring.Model{}, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[modelRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return scoring.Model{}, scoring.ErrModelNotFound
	}
	if err != nil {
		return scoring.Model{}, err
	}
	return r.toDomain()
}

// GetModel implements scoring.Store.
func (s *Store) GetModel(ctx context.Context, workspace, id string, forUpdate bool) (scoring.Model, error) {
	q := `SELECT ` + modelColumns + ` FROM models WHERE workspace_id = $1 AND id = $2`
	if forUpdate {
		q += ` FOR UPDATE`
	}
	return s.oneModel(ctx, q, workspace, id)
}

const qLiveModel = `SELECT id, version, etag FROM models WHERE workspace_id = $1 AND state = 'published'`

// LiveModel implements scoring.Store.
func (s *Store) LiveModel(ctx context.Context, workspace string) (string, int64, string, error) {
	var id, etag string
	var version int64
	err := s.q.QueryRow(ctx, qLiveModel, workspace).Scan(&id, &version, &etag)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, "", scoring.ErrModelNotFound
	}
	return id, version, etag, err
}

// ListModels implements scoring.Store.
func (s *Store) ListModels(ctx context.Context, workspace string, state scoring.ModelState, after *scoring.ModelCursor, limit int) ([]scoring.Model, error) {
	const q = `
SELECT ` + modelColumns + `
  FROM models
 WHERE workspace_id = $1
   AND ($2 = '' OR state = $2)
   AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4))
 ORDER BY create_time DESC, id DESC
 LIMIT $5`
	var afterTime *time.Time
	var afterID string
	if after != nil {
		afterTime, afterID = &after.CreateTime, after.ID
	}
	rows, err := s.q.Query(ctx, q, workspace, string(state), afterTime, afterID, limit)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[modelRow])
	if err != nil {
		return nil, err
	}
	out := make([]scoring.Model, len(rs))
	for i, r := range rs {
		if out[i], err = r.toDomain(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SaveModel implements scoring.Store.
func (s *Store) SaveModel(ctx context.Context, m scoring.Model) error {
	rules, err := json.Marshal(m.Rules)
	if err != nil {
		return fmt.Errorf("encode rules: %w", err)
	}
	const q = `
UPDATE models
   SET display_name = $3, description = $4, state = $5, version = $6, rules = $7, etag = $8,
       update_time = $9, publish_time = $10, supersede_time = $11
 WHERE workspace_id = $1 AND id = $2`
	tag, err := s.q.Exec(ctx, q, m.Workspace, m.ID, m.DisplayName, m.Description, string(m.State), m.Version, rules,
		m.Etag, m.UpdateTime, m.PublishTime, m.SupersedeTime)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return scoring.ErrModelNotFound
	}
	return nil
}

// DeleteModel implements scoring.Store.
func (s *Store) DeleteModel(ctx context.Context, workspace, id string) error {
	const q = `DELETE FROM models WHERE workspace_id = $1 AND id = $2 AND state = 'draft'`
	tag, err := s.q.Exec(ctx, q, workspace, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return scoring.ErrModelNotFound
	}
	return nil
}

type leadRow struct {
	WorkspaceID         string     `db:"workspace_id"`
	ID                  string     `db:"id"`
	Facts               []byte     `db:"facts"`
	FactsTime           *time.Time `db:"facts_time"`
	ModelID             string     `db:"model_id"`
	ModelVersion        int64      `db:"model_version"`
	FitMilli            int64      `db:"fit_milli"`
	EngagementMilli     int64      `db:"engagement_milli"`
	TotalMilli          int64      `db:"total_milli"`
	Grade               string     `db:"grade"`
	AboveThreshold      bool       `db:"above_threshold"`
	ScoreTime           *time.Time `db:"score_time"`
	QualifyReason       *int16     `db:"qualify_reason"`
	QualifyTime         *time.Time `db:"qualify_time"`
	QualifyTotal        *int64     `db:"qualify_total"`
	QualifyModelVersion *int64     `db:"qualify_model_version"`
	QualifyActivity     *string    `db:"qualify_activity"`
	Outcome             *string    `db:"outcome"`
	OutcomeTime         *time.Time `db:"outcome_time"`
	CreateTime          time.Time  `db:"create_time"`
}

const leadColumns = `workspace_id, id, facts, facts_time, model_id, model_version, fit_milli, engagement_milli,
       total_milli, grade, above_threshold, score_time, qualify_reason, qualify_time, qualify_total,
       qualify_model_version, qualify_activity, outcome, outcome_time, create_time`

func (r leadRow) toDomain() (scoring.Lead, error) {
	l := scoring.Lead{
		Workspace: r.WorkspaceID, ID: r.ID, FactsTime: r.FactsTime, ModelID: r.ModelID, ModelVersion: r.ModelVersion,
		FitMilli: r.FitMilli, EngagementMilli: r.EngagementMilli, TotalMilli: r.TotalMilli, Grade: r.Grade,
		AboveThreshold: r.AboveThreshold, ScoreTime: r.ScoreTime, OutcomeTime: r.OutcomeTime, CreateTime: r.CreateTime,
	}
	if err := json.Unmarshal(r.Facts, &l.Facts); err != nil {
		return scoring.Lead{}, fmt.Errorf("decode lead facts: %w", err)
	}
	if r.Outcome != nil {
		l.Outcome = *r.Outcome
	}
	if r.QualifyReason != nil && r.QualifyTime != nil {
		l.Qualification = &scoring.Qualification{
			Reason: scoring.QualificationReason(*r.QualifyReason), Time: *r.QualifyTime,
			TotalScore: deref(r.QualifyTotal), ModelVersion: deref(r.QualifyModelVersion), Activity: deref(r.QualifyActivity),
		}
	}
	return l, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (s *Store) leads(ctx context.Context, q string, args ...any) ([]scoring.Lead, error) {
	rows, err := s.q.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[leadRow])
	if err != nil {
		return nil, err
	}
	out := make([]scoring.Lead, len(rs))
	for i, r := range rs {
		if out[i], err = r.toDomain(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GetLead implements scoring.Store.
func (s *Store) GetLead(ctx context.Context, workspace, id string, forUpdate bool) (scoring.Lead, error) {
	q := `SELECT ` + leadColumns + ` FROM leads WHERE workspace_id = $1 AND id = $2`
	if forUpdate {
		q += ` FOR UPDATE`
	}
	ls, err := s.leads(ctx, q, workspace, id)
	if err != nil {
		return scoring.Lead{}, err
	}
	if len(ls) == 0 {
		return scoring.Lead{}, scoring.ErrLeadNotFound
	}
	return ls[0], nil
}

// LockOrCreateLead implements scoring.Store.
func (s *Store) LockOrCreateLead(ctx context.Context, workspace, id string, at time.Time) (scoring.Lead, error) {
	const q = `INSERT INTO leads (workspace_id, id, create_time) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	if _, err := s.q.Exec(ctx, q, workspace, id, at); err != nil {
		return scoring.Lead{}, err
	}
	return s.GetLead(ctx, workspace, id, true)
}

// qSaveLead writes a whole lead; its arguments come from saveLeadArgs.
const qSaveLead = `
UPDATE leads
   SET facts = $3, facts_time = $4, model_id = $5, model_version = $6, fit_milli = $7, engagement_milli = $8,
       total_milli = $9, total_score = $10, grade = $11, above_threshold = $12, score_time = $13,
       qualify_reason = $14, qualify_time = $15, qualify_total = $16, qualify_model_version = $17,
       qualify_activity = $18, outcome = $19, outcome_time = $20
 WHERE workspace_id = $1 AND id = $2`

func saveLeadArgs(l scoring.Lead) ([]any, error) {
	facts, err := json.Marshal(l.Facts)
	if err != nil {
		return nil, fmt.Errorf("encode lead facts: %w", err)
	}
	var qr *int16
	var qt *time.Time
	var qTotal, qVersion *int64
	var qAct, outcome *string
	if q := l.Qualification; q != nil {
		r := int16(q.Reason)
		qr, qt, qTotal, qVersion, qAct = &r, &q.Time, &q.TotalScore, &q.ModelVersion, &q.Activity
	}
	if l.Outcome != "" {
		outcome = &l.Outcome
	}
	return []any{l.Workspace, l.ID, facts, l.FactsTime, l.ModelID, l.ModelVersion, l.FitMilli,
		l.EngagementMilli, l.TotalMilli, scoring.WholePoints(l.TotalMilli), l.Grade, l.AboveThreshold, l.ScoreTime,
		qr, qt, qTotal, qVersion, qAct, outcome, l.OutcomeTime}, nil
}

// SaveLead implements scoring.Store.
func (s *Store) SaveLead(ctx context.Context, l scoring.Lead) error {
	args, err := saveLeadArgs(l)
	if err != nil {
		return err
	}
	tag, err := s.q.Exec(ctx, qSaveLead, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return scoring.ErrLeadNotFound
	}
	return nil
}

// DeleteLead implements scoring.Store: the lead, its activities and its
// crossings.
func (s *Store) DeleteLead(ctx context.Context, workspace, id string) error {
	const q = `
WITH a AS (DELETE FROM activities WHERE workspace_id = $1 AND lead_id = $2),
     c AS (DELETE FROM threshold_crossings WHERE workspace_id = $1 AND lead_id = $2)
DELETE FROM leads WHERE workspace_id = $1 AND id = $2`
	_, err := s.q.Exec(ctx, q, workspace, id)
	return err
}

// ListLeads implements scoring.Store.
func (s *Store) ListLeads(ctx context.Context, workspace string, f scoring.LeadFilter, after *scoring.LeadCursor, limit int) ([]scoring.Lead, error) {
	const q = `
SELECT ` + leadColumns + `
  FROM leads
 WHERE workspace_id = $1
   AND score_time IS NOT NULL
   AND ($2::bigint IS NULL OR total_score >= $2)
   AND ($3 = '' OR grade = $3)
   AND ($4::boolean IS NULL OR (qualify_time IS NOT NULL) = $4)
   AND ($5::bigint IS NULL OR total_score < $5 OR (total_score = $5 AND id > $6))
 ORDER BY total_score DESC, id
 LIMIT $7`
	var afterTotal *int64
	var afterID string
	if after != nil {
		afterTotal, afterID = &after.Total, after.ID
	}
	return s.leads(ctx, q, workspace, f.MinTotal, f.Grade, f.Qualified, afterTotal, afterID, limit)
}

// LeadIDsAfter implements scoring.Store.
func (s *Store) LeadIDsAfter(ctx context.Context, workspace, after string, limit int) ([]string, error) {
	const q = `SELECT id FROM leads WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3`
	rows, err := s.q.Query(ctx, q, workspace, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// LockLeadsAfter implements scoring.Store.
func (s *Store) LockLeadsAfter(ctx context.Context, workspace, after string, limit int) ([]scoring.Lead, error) {
	const q = `SELECT ` + leadColumns + ` FROM leads WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3 FOR UPDATE`
	return s.leads(ctx, q, workspace, after, limit)
}

// CountLeads implements scoring.Store.
func (s *Store) CountLeads(ctx context.Context, workspace string) (int64, error) {
	var n int64
	err := s.q.QueryRow(ctx, `SELECT count(*) FROM leads WHERE workspace_id = $1`, workspace).Scan(&n)
	return n, err
}

// OutcomeLeads implements scoring.Store.
func (s *Store) OutcomeLeads(ctx context.Context, workspace string, start, end time.Time, limit int) ([]scoring.Lead, bool, error) {
	const q = `
SELECT ` + leadColumns + `
  FROM leads
 WHERE workspace_id = $1 AND outcome IS NOT NULL AND outcome_time >= $2 AND outcome_time < $3
 ORDER BY outcome_time DESC, id
 LIMIT $4`
	ls, err := s.leads(ctx, q, workspace, start, end, limit+1)
	if err != nil {
		return nil, false, err
	}
	if len(ls) > limit {
		return ls[:limit], true, nil
	}
	return ls, false, nil
}

func activityProperties(a scoring.Activity) ([]byte, error) {
	if len(a.Properties) == 0 {
		return nil, nil
	}
	props, err := json.Marshal(a.Properties)
	if err != nil {
		return nil, fmt.Errorf("encode activity properties: %w", err)
	}
	return props, nil
}

// AddActivity implements scoring.Store.
func (s *Store) AddActivity(ctx context.Context, workspace, lead string, a scoring.Activity) (bool, error) {
	props, err := activityProperties(a)
	if err != nil {
		return false, err
	}
	const q = `
INSERT INTO activities (workspace_id, id, lead_id, type, url, content_id, properties, occur_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (workspace_id, id) DO NOTHING`
	tag, err := s.q.Exec(ctx, q, workspace, a.ID, lead, int16(a.Type), a.URL, a.ContentID, props, a.OccurTime)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Activities implements scoring.Store.
func (s *Store) Activities(ctx context.Context, workspace, lead string) ([]scoring.Activity, error) {
	m, err := s.ActivitiesOf(ctx, workspace, []string{lead})
	return m[lead], err
}

// ActivitiesOf implements scoring.Store.
func (s *Store) ActivitiesOf(ctx context.Context, workspace string, leads []string) (map[string][]scoring.Activity, error) {
	const q = `
SELECT lead_id, id, type, url, content_id, properties, occur_time
  FROM activities
 WHERE workspace_id = $1 AND lead_id = ANY($2)`
	return s.activities(ctx, q, workspace, leads)
}

// ActivitiesBetween implements scoring.Store. A range of the index beats
// probing it once per lead.
func (s *Store) ActivitiesBetween(ctx context.Context, workspace, after, last string) (map[string][]scoring.Activity, error) {
	const q = `
SELECT lead_id, id, type, url, content_id, properties, occur_time
  FROM activities
 WHERE workspace_id = $1 AND lead_id > $2 AND lead_id <= $3`
	return s.activities(ctx, q, workspace, after, last)
}

// activities reads the rows of q, grouped by lead in occur_time order. They
// are scanned by hand and sorted here rather than by the server: rescoring
// reads ten million of them, and reflection and a server-side sort on text
// keys were most of that read's cost.
func (s *Store) activities(ctx context.Context, q string, args ...any) (map[string][]scoring.Activity, error) {
	rows, err := s.q.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanActivities(rows)
}

// scanActivities reads rows of (lead_id, id, type, url, content_id,
// properties, occur_time) and closes them.
func scanActivities(rows pgx.Rows) (map[string][]scoring.Activity, error) {
	defer rows.Close()
	// One backing array for all rows, cut into a slice per lead, rather
	// than a slice grown per lead.
	var (
		all    []scoring.Activity
		owners []string
		lead   string
		typ    int16
		props  []byte
	)
	for rows.Next() {
		var a scoring.Activity
		if err := rows.Scan(nil, &a.ID, &typ, &a.URL, &a.ContentID, &props, &a.OccurTime); err != nil {
			return nil, err
		}
		a.Type = typesv1.ActivityType(typ)
		if len(props) > 0 {
			if err := json.Unmarshal(props, &a.Properties); err != nil {
				return nil, fmt.Errorf("decode activity properties: %w", err)
			}
		}
		// Rows come grouped by lead in practice (an index scan), so the
		// lead id is only copied out of the row when it changes.
		if raw := rows.RawValues()[0]; len(owners) == 0 || string(raw) != lead {
			lead = string(raw)
		}
		all, owners = append(all, a), append(owners, lead)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := map[string][]scoring.Activity{}
	for start := 0; start < len(all); {
		end := start + 1
		for end < len(all) && owners[end] == owners[start] {
			end++
		}
		// The full slice expression caps each run, so appending another
		// run of the same lead (rows not grouped) copies instead of
		// overwriting the next lead's.
		if prev, ok := out[owners[start]]; ok {
			out[owners[start]] = append(prev, all[start:end]...)
		} else {
			out[owners[start]] = all[start:end:end]
		}
		start = end
	}
	for _, acts := range out {
		slices.SortFunc(acts, func(a, b scoring.Activity) int {
			if c := a.OccurTime.Compare(b.OccurTime); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	return out, nil
}

// MoveActivities implements scoring.Store.
func (s *Store) MoveActivities(ctx context.Context, workspace, from, to string) error {
	const q = `UPDATE activities SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2`
	_, err := s.q.Exec(ctx, q, workspace, from, to)
	return err
}

// qAddCrossing records a threshold crossing of a lead.
const qAddCrossing = `
INSERT INTO threshold_crossings (workspace_id, lead_id, up, cross_time, total_score, model_version)
VALUES ($1, $2, $3, $4, $5, $6)`

// Crossings implements scoring.Store.
func (s *Store) Crossings(ctx context.Context, workspace, lead string, limit int) ([]scoring.Crossing, error) {
	const q = `
SELECT up, cross_time, total_score, model_version
  FROM threshold_crossings
 WHERE workspace_id = $1 AND lead_id = $2
 ORDER BY id DESC
 LIMIT $3`
	rows, err := s.q.Query(ctx, q, workspace, lead, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (scoring.Crossing, error) {
		var c scoring.Crossing
		err := row.Scan(&c.Up, &c.Time, &c.TotalScore, &c.ModelVersion)
		return c, err
	})
}

// Tombstone implements scoring.Store.
func (s *Store) Tombstone(ctx context.Context, workspace, lead, survivor string) error {
	var sv *string
	if survivor != "" {
		sv = &survivor
	}
	const q = `
INSERT INTO lead_tombstones (workspace_id, lead_id, survivor_id) VALUES ($1, $2, $3)
ON CONFLICT (workspace_id, lead_id) DO UPDATE SET survivor_id = EXCLUDED.survivor_id`
	_, err := s.q.Exec(ctx, q, workspace, lead, sv)
	return err
}

// LeadTombstone implements scoring.Store.
func (s *Store) LeadTombstone(ctx context.Context, workspace, lead string) (string, bool, error) {
	const q = `SELECT survivor_id FROM lead_tombstones WHERE workspace_id = $1 AND lead_id = $2`
	var sv *string
	err := s.q.QueryRow(ctx, q, workspace, lead).Scan(&sv)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return deref(sv), true, nil
}

type jobRow struct {
	WorkspaceID    string     `db:"workspace_id"`
	ID             string     `db:"id"`
	ModelID        string     `db:"model_id"`
	ModelVersion   int64      `db:"model_version"`
	State          string     `db:"state"`
	TotalLeads     int64      `db:"total_leads"`
	ProcessedLeads int64      `db:"processed_leads"`
	ChangedLeads   int64      `db:"changed_leads"`
	QualifiedLeads int64      `db:"qualified_leads"`
	FailedLeads    int64      `db:"failed_leads"`
	Cursor         string     `db:"cursor"`
	CreateTime     time.Time  `db:"create_time"`
	StartTime      *time.Time `db:"start_time"`
	EndTime        *time.Time `db:"end_time"`
	ErrorMessage   string     `db:"error_message"`
}

const jobColumns = `workspace_id, id, model_id, model_version, state, total_leads, processed_leads, changed_leads,
       qualified_leads, failed_leads, cursor, create_time, start_time, end_time, error_message`

func (r jobRow) toDomain() scoring.RescoreJob {
	return scoring.RescoreJob{
		Workspace: r.WorkspaceID, ID: r.ID, ModelID: r.ModelID, ModelVersion: r.ModelVersion, State: scoring.JobState(r.State),
		TotalLeads: r.TotalLeads, ProcessedLeads: r.ProcessedLeads, ChangedLeads: r.ChangedLeads,
		QualifiedLeads: r.QualifiedLeads, FailedLeads: r.FailedLeads, Cursor: r.Cursor, CreateTime: r.CreateTime,
		StartTime: r.StartTime, EndTime: r.EndTime, ErrorMessage: r.ErrorMessage,
	}
}

func (s *Store) jobs(ctx context.Context, q string, args ...any) ([]scoring.RescoreJob, error) {
	rows, err := s.q.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[jobRow])
	if err != nil {
		return nil, err
	}
	out := make([]scoring.RescoreJob, len(rs))
	for i, r := range rs {
		out[i] = r.toDomain()
	}
	return out, nil
}

func (s *Store) oneJob(ctx context.Context, q string, args ...any) (scoring.RescoreJob, error) {
	js, err := s.jobs(ctx, q, args...)
	if err != nil {
		return scoring.RescoreJob{}, err
	}
	if len(js) == 0 {
		return scoring.RescoreJob{}, scoring.ErrJobNotFound
	}
	return js[0], nil
}

// CreateJob implements scoring.Store.
func (s *Store) CreateJob(ctx context.Context, j scoring.RescoreJob) error {
	const q = `
INSERT INTO rescore_jobs (workspace_id, id, model_id, model_version, state, total_leads, create_time)
VALUES ($1, $2, $3, $4, $5, $6, $7)`
	_, err := s.q.Exec(ctx, q, j.Workspace, j.ID, j.ModelID, j.ModelVersion, string(j.State), j.TotalLeads, j.CreateTime)
	return err
}

// GetJob implements scoring.Store.
func (s *Store) GetJob(ctx context.Context, workspace, id string) (scoring.RescoreJob, error) {
	return s.oneJob(ctx, `SELECT `+jobColumns+` FROM rescore_jobs WHERE workspace_id = $1 AND id = $2`, workspace, id)
}

// JobOfModel implements scoring.Store.
func (s *Store) JobOfModel(ctx context.Context, workspace, model string) (scoring.RescoreJob, error) {
	return s.oneJob(ctx, `SELECT `+jobColumns+` FROM rescore_jobs WHERE workspace_id = $1 AND model_id = $2
 ORDER BY create_time DESC LIMIT 1`, workspace, model)
}

// ListJobs implements scoring.Store.
func (s *Store) ListJobs(ctx context.Context, workspace, model string, after *scoring.ModelCursor, limit int) ([]scoring.RescoreJob, error) {
	const q = `
SELECT ` + jobColumns + `
  FROM rescore_jobs
 WHERE workspace_id = $1
   AND ($2 = '' OR model_id = $2)
   AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4))
 ORDER BY create_time DESC, id DESC
 LIMIT $5`
	var afterTime *time.Time
	var afterID string
	if after != nil {
		afterTime, afterID = &after.CreateTime, after.ID
	}
	return s.jobs(ctx, q, workspace, model, afterTime, afterID, limit)
}

// ClaimJob implements scoring.Store.
func (s *Store) ClaimJob(ctx context.Context) (scoring.RescoreJob, bool, error) {
	j, err := s.oneJob(ctx, `SELECT `+jobColumns+` FROM rescore_jobs WHERE state IN ('pending', 'running')
 ORDER BY create_time LIMIT 1 FOR UPDATE SKIP LOCKED`)
	if errors.Is(err, scoring.ErrJobNotFound) {
		return j, false, nil
	}
	return j, err == nil, err
}

// SaveJob implements scoring.Store.
func (s *Store) SaveJob(ctx context.Context, j scoring.RescoreJob) error {
	const q = `
UPDATE rescore_jobs
   SET state = $3, processed_leads = $4, changed_leads = $5, qualified_leads = $6, failed_leads = $7,
       cursor = $8, start_time = $9, end_time = $10, error_message = $11
 WHERE workspace_id = $1 AND id = $2`
	_, err := s.q.Exec(ctx, q, j.Workspace, j.ID, string(j.State), j.ProcessedLeads, j.ChangedLeads, j.QualifiedLeads,
		j.FailedLeads, j.Cursor, j.StartTime, j.EndTime, j.ErrorMessage)
	return err
}

// CancelJobs implements scoring.Store.
func (s *Store) CancelJobs(ctx context.Context, workspace string, at time.Time) error {
	const q = `
UPDATE rescore_jobs SET state = 'cancelled', end_time = $2
 WHERE workspace_id = $1 AND state IN ('pending', 'running')`
	_, err := s.q.Exec(ctx, q, workspace, at)
	return err
}
