// Package store is the PostgreSQL implementation of handoff.Store.
package store

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
	"github.com/leadflow/leadflow/services/handoff/internal/routing"
)

// Schema is the PostgreSQL schema the handoff service owns.
const Schema = "handoff"

// Migrations are the service's numbered SQL migrations;
// pkg/migrate finds the files under migrations/.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// NewPublisher returns the outbox publisher of handoff's events:
// HandoffAssigned, HandoffAccepted and HandoffRejected go to lifecycle.
func NewPublisher() *outbox.Publisher {
	return outbox.NewPublisher(service.Handoff, Schema, outbox.Routes{
		"leadflow.events.v1.HandoffAssigned": {service.Lifecycle},
		"leadflow.events.v1.HandoffAccepted": {service.Lifecycle},
		"leadflow.events.v1.HandoffRejected": {service.Lifecycle},
	})
}

type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store implements handoff.Store.
type Store struct {
	pool *pgxpool.Pool
	pub  *outbox.Publisher
	tx   pgx.Tx // set inside a transaction
}

// New returns a Store over pool, whose search_path must be Schema,
// publishing events through pub.
func New(pool *pgxpool.Pool, pub *outbox.Publisher) *Store { return &Store{pool: pool, pub: pub} }

// WithTx returns the store's operations inside tx, such as the transaction
// an incoming event is received in.
func (s *Store) WithTx(tx pgx.Tx) handoff.Tx { return &Store{pool: s.pool, pub: s.pub, tx: tx} }

// InTx implements handoff.Store; nested calls join the outer transaction.
func (s *Store) InTx(ctx context.Context, fn func(handoff.Tx) error) error {
	if s.tx != nil {
		return fn(s)
	}
	return postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error { return fn(s.WithTx(tx)) })
}

func (s *Store) q() querier {
	if s.tx != nil {
		return s.tx
	}
	return s.pool
}

// Publish implements handoff.Tx.
func (s *Store) Publish(ctx context.Context, workspace, lead string, payload proto.Message) error {
	if s.tx == nil {
		return errors.New("publish outside a transaction")
	}
	_, err := s.pub.Publish(ctx, s.tx, workspace, lead, payload)
	return err
}

func jsonb(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: marshal %T: %v", v, err)) // plain structs and maps only
	}
	return b
}

// ---- Owners ----

// ownerSelect reads owners with their teams and load; $1, $2, $3 are the
// day, week and month period starts.
const ownerSelect = `
SELECT o.workspace_id, o.id, o.display_name, o.email, o.external_id, o.manager_id, o.attributes,
       o.max_leads, o.capacity_period, o.out_of_office, o.ooo_end_time, o.disabled,
       o.create_time, o.update_time, o.version,
       coalesce((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_members m
                  WHERE m.workspace_id = o.workspace_id AND m.owner_id = o.id), '{}') AS teams,
       (SELECT count(*) FROM handoffs h
         WHERE h.workspace_id = o.workspace_id AND h.owner_id = o.id AND h.state IN (2, 3)) AS open_count,
       (SELECT count(*) FROM assignments a
         WHERE a.workspace_id = o.workspace_id AND a.owner_id = o.id
           AND a.assign_time >= CASE o.capacity_period WHEN 1 THEN $1::timestamptz
                                                       WHEN 3 THEN $3::timestamptz
                                                       ELSE $2::timestamptz END) AS period_count
  FROM owners o`

type ownerRow struct {
	WorkspaceID    string            `db:"workspace_id"`
	ID             string            `db:"id"`
	DisplayName    string            `db:"display_name"`
	Email          string            `db:"email"`
	ExternalID     string            `db:"external_id"`
	ManagerID      string            `db:"manager_id"`
	Attributes     map[string]string `db:"attributes"`
	MaxLeads       int               `db:"max_leads"`
	CapacityPeriod int               `db:"capacity_period"`
	OutOfOffice    bool              `db:"out_of_office"`
	OOOEndTime     *time.Time        `db:"ooo_end_time"`
	Disabled       bool              `db:"disabled"`
	CreateTime     time.Time         `db:"create_time"`
	UpdateTime     time.Time         `db:"update_time"`
	Version        int64             `db:"version"`
	Teams          []string          `db:"teams"`
	OpenCount      int               `db:"open_count"`
	PeriodCount    int               `db:"period_count"`
}

func (r ownerRow) toDomain() handoff.Owner {
	return handoff.Owner{
		Workspace: r.WorkspaceID, ID: r.ID, DisplayName: r.DisplayName, Email: r.Email,
		ExternalID: r.ExternalID, Teams: r.Teams, Manager: r.ManagerID, Attributes: r.Attributes,
		MaxLeads: r.MaxLeads, Period: handoff.CapacityPeriod(r.CapacityPeriod),
		OutOfOffice: r.OutOfOffice, OutOfOfficeEnd: r.OOOEndTime, Disabled: r.Disabled,
		PeriodAssigned: r.PeriodCount, OpenHandoffs: r.OpenCount,
		CreateTime: r.CreateTime, UpdateTime: r.UpdateTime, Version: r.Version,
	}
}

func (s *Store) queryOwners(ctx context.Context, q string, args ...any) ([]handoff.Owner, error) {
	rows, err := s.q().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	owners, err := pgx.CollectRows(rows, pgx.RowToStructByName[ownerRow])
	if err != nil {
		return nil, err
	}
	out := make([]handoff.Owner, len(owners))
	for i, r := range owners {
		out[i] = r.toDomain()
	}
	return out, nil
}

// CreateOwner implements handoff.Tx.
func (s *Store) CreateOwner(ctx context.Context, o handoff.Owner, requestID string) (handoff.Owner, error) {
	if requestID != "" {
		const byRequest = `SELECT id FROM owners WHERE workspace_id = $1 AND request_id = $2`
		var id string
		err := s.q().QueryRow(ctx, byRequest, o.Workspace, requestID).Scan(&id)
		if err == nil {
			o.ID = id
			return o, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return handoff.Owner{}, err
		}
	}
	const q = `
INSERT INTO owners (workspace_id, id, display_name, email, external_id, manager_id, attributes,
                    max_leads, capacity_period, out_of_office, ooo_end_time, disabled,
                    request_id, create_time, update_time, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, 1)`
	_, err := s.q().Exec(ctx, q, o.Workspace, o.ID, o.DisplayName, o.Email, o.ExternalID, o.Manager,
		jsonb(nonNil(o.Attributes)), o.MaxLeads, int(o.Period), o.OutOfOffice, o.OutOfOfficeEnd, o.Disabled,
		requestID, o.CreateTime)
	if postgres.IsUniqueViolation(err) {
		return handoff.Owner{}, handoff.ErrOwnerExists
	}
	if err != nil {
		return handoff.Owner{}, err
	}
	return o, s.setTeams(ctx, o.Workspace, o.ID, o.Teams)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (s *Store) setTeams(ctx context.Context, workspace, owner string, teams []string) error {
	const del = `DELETE FROM team_members WHERE workspace_id = $1 AND owner_id = $2`
	if _, err := s.q().Exec(ctx, del, workspace, owner); err != nil {
		return err
	}
	const ins = `
INSERT INTO team_members (workspace_id, team_id, owner_id)
SELECT $1, t, $2 FROM unnest($3::text[]) AS t ON CONFLICT DO NOTHING`
	_, err := s.q().Exec(ctx, ins, workspace, owner, teams)
	return err
}

// GetOwner implements handoff.Tx.
func (s *Store) GetOwner(ctx context.Context, workspace, id string, ps handoff.Periods) (handoff.Owner, error) {
	owners, err := s.queryOwners(ctx, ownerSelect+` WHERE o.workspace_id = $4 AND o.id = $5 AND NOT o.deleted`,
		ps.Day, ps.Week, ps.Month, workspace, id)
	if err != nil {
		return handoff.Owner{}, err
	}
	if len(owners) == 0 {
		return handoff.Owner{}, handoff.ErrOwnerNotFound
	}
	return owners[0], nil
}

// ListOwners implements handoff.Tx.
func (s *Store) ListOwners(ctx context.Context, workspace string, f handoff.OwnerFilter, after *handoff.NameCursor, limit int, ps handoff.Periods) ([]handoff.Owner, error) {
	const where = `
 WHERE o.workspace_id = $4 AND NOT o.deleted
   AND ($5 = '' OR EXISTS (SELECT 1 FROM team_members m
                            WHERE m.workspace_id = o.workspace_id AND m.owner_id = o.id AND m.team_id = $5))
   AND ($6 = '' OR o.manager_id = $6)
   AND ($7 OR NOT o.disabled)
   AND o.id > $8
 ORDER BY o.id
 LIMIT $9`
	var afterID string
	if after != nil {
		afterID = after.ID
	}
	return s.queryOwners(ctx, ownerSelect+where, ps.Day, ps.Week, ps.Month,
		workspace, f.Team, f.Manager, f.ShowDisabled, afterID, limit)
}

// UpdateOwner implements handoff.Tx.
func (s *Store) UpdateOwner(ctx context.Context, o handoff.Owner, at time.Time) (handoff.Owner, error) {
	const q = `
UPDATE owners SET display_name = $4, email = $5, external_id = $6, manager_id = $7, attributes = $8,
                  max_leads = $9, capacity_period = $10, out_of_office = $11, ooo_end_time = $12,
                  disabled = $13, update_time = $14, version = version + 1
 WHERE workspace_id = $1 AND id = $2 AND version = $3 AND NOT deleted`
	tag, err := s.q().Exec(ctx, q, o.Workspace, o.ID, o.Version, o.DisplayName, o.Email, o.ExternalID,
		o.Manager, jsonb(nonNil(o.Attributes)), o.MaxLeads, int(o.Period), o.OutOfOffice, o.OutOfOfficeEnd,
		o.Disabled, at)
	if err != nil {
		return handoff.Owner{}, err
	}
	if tag.RowsAffected() == 0 {
		return handoff.Owner{}, handoff.ErrStaleEtag
	}
	o.Version++
	o.UpdateTime = at
	return o, s.setTeams(ctx, o.Workspace, o.ID, o.Teams)
}

// EraseOwner implements handoff.Tx.
func (s *Store) EraseOwner(ctx context.Context, workspace, id string, version int64, at time.Time) error {
	const q = `
UPDATE owners SET display_name = '', email = '', disabled = true, deleted = true,
                  update_time = $4, version = version + 1
 WHERE workspace_id = $1 AND id = $2 AND version = $3 AND NOT deleted`
	tag, err := s.q().Exec(ctx, q, workspace, id, version, at)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return handoff.ErrStaleEtag
	}
	return s.setTeams(ctx, workspace, id, nil)
}

// ---- Teams ----

const teamSelect = `
SELECT t.workspace_id, t.id, t.display_name, t.strategy, t.manager_id, t.create_time, t.update_time, t.version,
       (SELECT count(*) FROM team_members m JOIN owners o ON o.workspace_id = m.workspace_id AND o.id = m.owner_id
         WHERE m.workspace_id = t.workspace_id AND m.team_id = t.id AND NOT o.deleted) AS member_count
  FROM teams t`

type teamRow struct {
	WorkspaceID string    `db:"workspace_id"`
	ID          string    `db:"id"`
	DisplayName string    `db:"display_name"`
	Strategy    int       `db:"strategy"`
	ManagerID   string    `db:"manager_id"`
	CreateTime  time.Time `db:"create_time"`
	UpdateTime  time.Time `db:"update_time"`
	Version     int64     `db:"version"`
	MemberCount int       `db:"member_count"`
}

func (r teamRow) toDomain() handoff.Team {
	return handoff.Team{
		Workspace: r.WorkspaceID, ID: r.ID, DisplayName: r.DisplayName, Strategy: routing.Strategy(r.Strategy),
		Manager: r.ManagerID, MemberCount: r.MemberCount, CreateTime: r.CreateTime, UpdateTime: r.UpdateTime,
		Version: r.Version,
	}
}

func (s *Store) queryTeams(ctx context.Context, q string, args ...any) ([]handoff.Team, error) {
	rows, err := s.q().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	teams, err := pgx.CollectRows(rows, pgx.RowToStructByName[teamRow])
	if err != nil {
		return nil, err
	}
	out := make([]handoff.Team, len(teams))
	for i, r := range teams {
		out[i] = r.toDomain()
	}
	return out, nil
}

// CreateTeam implements handoff.Tx.
func (s *Store) CreateTeam(ctx context.Context, t handoff.Team, requestID string) (handoff.Team, error) {
	if requestID != "" {
		teams, err := s.queryTeams(ctx, teamSelect+` WHERE t.workspace_id = $1 AND t.request_id = $2`, t.Workspace, requestID)
		if err != nil || len(teams) > 0 {
			if len(teams) > 0 {
				return teams[0], nil
			}
			return handoff.Team{}, err
		}
	}
	const q = `
INSERT INTO teams (workspace_id, id, display_name, strategy, manager_id, request_id, create_time, update_time, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1)`
	_, err := s.q().Exec(ctx, q, t.Workspace, t.ID, t.DisplayName, int(t.Strategy), t.Manager, requestID, t.CreateTime)
	if postgres.IsUniqueViolation(err) {
		return handoff.Team{}, handoff.ErrTeamExists
	}
	return t, err
}

// GetTeam implements handoff.Tx.
func (s *Store) GetTeam(ctx context.Context, workspace, id string) (handoff.Team, error) {
	teams, err := s.queryTeams(ctx, teamSelect+` WHERE t.workspace_id = $1 AND t.id = $2`, workspace, id)
	if err != nil {
		return handoff.Team{}, err
	}
	if len(teams) == 0 {
		return handoff.Team{}, handoff.ErrTeamNotFound
	}
	return teams[0], nil
}

// ListTeams implements handoff.Tx.
func (s *Store) ListTeams(ctx context.Context, workspace string, after *handoff.NameCursor, limit int) ([]handoff.Team, error) {
	var afterID string
	if after != nil {
		afterID = after.ID
	}
	return s.queryTeams(ctx, teamSelect+` WHERE t.workspace_id = $1 AND t.id > $2 ORDER BY t.id LIMIT $3`,
		workspace, afterID, limit)
}

// UpdateTeam implements handoff.Tx.
func (s *Store) UpdateTeam(ctx context.Context, t handoff.Team, at time.Time) (handoff.Team, error) {
	const q = `
UPDATE teams SET display_name = $4, strategy = $5, manager_id = $6, update_time = $7, version = version + 1
 WHERE workspace_id = $1 AND id = $2 AND version = $3`
	tag, err := s.q().Exec(ctx, q, t.Workspace, t.ID, t.Version, t.DisplayName, int(t.Strategy), t.Manager, at)
	if err != nil {
		return handoff.Team{}, err
	}
	if tag.RowsAffected() == 0 {
		return handoff.Team{}, handoff.ErrStaleEtag
	}
	t.Version++
	t.UpdateTime = at
	return t, nil
}

// DeleteTeam implements handoff.Tx.
func (s *Store) DeleteTeam(ctx context.Context, workspace, id string, version int64) error {
	const q = `DELETE FROM teams WHERE workspace_id = $1 AND id = $2 AND version = $3`
	tag, err := s.q().Exec(ctx, q, workspace, id, version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return handoff.ErrStaleEtag
	}
	const members = `DELETE FROM team_members WHERE workspace_id = $1 AND team_id = $2`
	_, err = s.q().Exec(ctx, members, workspace, id)
	return err
}

// MissingTeams implements handoff.Tx.
func (s *Store) MissingTeams(ctx context.Context, workspace string, ids []string) ([]string, error) {
	const q = `
SELECT id FROM unnest($2::text[]) AS id
EXCEPT SELECT id FROM teams WHERE workspace_id = $1
ORDER BY 1`
	rows, err := s.q().Query(ctx, q, workspace, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// LockTeam implements handoff.Tx.
func (s *Store) LockTeam(ctx context.Context, workspace, id string, now time.Time, ps handoff.Periods) (*routing.Team, bool, error) {
	const q = `SELECT strategy, rr_cursor, wrr_weights FROM teams WHERE workspace_id = $1 AND id = $2 FOR UPDATE`
	t := &routing.Team{ID: id}
	var strategy int
	err := s.q().QueryRow(ctx, q, workspace, id).Scan(&strategy, &t.Cursor, &t.Weights)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	t.Strategy = routing.Strategy(strategy)
	members, err := s.queryOwners(ctx, ownerSelect+`
  JOIN team_members tm ON tm.workspace_id = o.workspace_id AND tm.owner_id = o.id
 WHERE o.workspace_id = $4 AND tm.team_id = $5 AND NOT o.deleted
 ORDER BY o.id`, ps.Day, ps.Week, ps.Month, workspace, id)
	if err != nil {
		return nil, false, err
	}
	for _, o := range members {
		t.Owners = append(t.Owners, routing.Owner{
			ID: o.ID, Teams: o.Teams, Attributes: o.Attributes, MaxLeads: o.MaxLeads,
			PeriodAssigned: o.PeriodAssigned, Open: o.OpenHandoffs, Available: o.Available(now),
		})
	}
	return t, true, nil
}

// SaveTeamState implements handoff.Tx.
func (s *Store) SaveTeamState(ctx context.Context, workspace, id, cursor string, weights map[string]int64) error {
	if weights == nil {
		weights = map[string]int64{}
	}
	const q = `UPDATE teams SET rr_cursor = $3, wrr_weights = $4 WHERE workspace_id = $1 AND id = $2`
	_, err := s.q().Exec(ctx, q, workspace, id, cursor, jsonb(weights))
	return err
}

// ---- Routing policy and SLA ----

// GetPolicy implements handoff.Tx.
func (s *Store) GetPolicy(ctx context.Context, workspace string) (handoff.Policy, error) {
	const q = `SELECT rules, fallback_team, revision, update_time FROM routing_policies WHERE workspace_id = $1`
	var p handoff.Policy
	err := s.q().QueryRow(ctx, q, workspace).Scan(&p.Rules, &p.FallbackTeam, &p.Revision, &p.UpdateTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return handoff.Policy{}, nil
	}
	return p, err
}

// PutPolicy implements handoff.Tx.
func (s *Store) PutPolicy(ctx context.Context, workspace string, p handoff.Policy) error {
	const q = `
INSERT INTO routing_policies (workspace_id, rules, fallback_team, revision, update_time)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workspace_id) DO UPDATE
   SET rules = EXCLUDED.rules, fallback_team = EXCLUDED.fallback_team,
       revision = EXCLUDED.revision, update_time = EXCLUDED.update_time
 WHERE routing_policies.revision = EXCLUDED.revision - 1`
	rules := p.Rules
	if rules == nil {
		rules = []routing.Rule{}
	}
	tag, err := s.q().Exec(ctx, q, workspace, jsonb(rules), p.FallbackTeam, p.Revision, p.UpdateTime)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return handoff.ErrStaleEtag
	}
	return nil
}

// GetSLA implements handoff.Tx.
func (s *Store) GetSLA(ctx context.Context, workspace string, now time.Time) (handoff.SLASettings, error) {
	const q = `
SELECT acceptance_deadline_us, working_hours, breach_action, max_reassignments, escalation_enabled,
       escalation_deadline_us, update_time, version
  FROM sla_settings WHERE workspace_id = $1`
	st := handoff.SLASettings{Workspace: workspace}
	var action int
	var acceptUS, escalateUS int64
	err := s.q().QueryRow(ctx, q, workspace).Scan(&acceptUS, &st.WorkingHours, &action,
		&st.MaxReassignments, &st.EscalationEnabled, &escalateUS, &st.UpdateTime, &st.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return handoff.DefaultSLA(workspace, now), nil
	}
	st.BreachAction = handoff.BreachAction(action)
	st.AcceptanceDeadline = time.Duration(acceptUS) * time.Microsecond
	st.EscalationDeadline = time.Duration(escalateUS) * time.Microsecond
	return st, err
}

// PutSLA implements handoff.Tx.
func (s *Store) PutSLA(ctx context.Context, st handoff.SLASettings) error {
	const q = `
INSERT INTO sla_settings (workspace_id, acceptance_deadline_us, working_hours, breach_action, max_reassignments,
                          escalation_enabled, escalation_deadline_us, update_time, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (workspace_id) DO UPDATE
   SET acceptance_deadline_us = EXCLUDED.acceptance_deadline_us, working_hours = EXCLUDED.working_hours,
       breach_action = EXCLUDED.breach_action, max_reassignments = EXCLUDED.max_reassignments,
       escalation_enabled = EXCLUDED.escalation_enabled, escalation_deadline_us = EXCLUDED.escalation_deadline_us,
       update_time = EXCLUDED.update_time, version = EXCLUDED.version
 WHERE sla_settings.version = EXCLUDED.version - 1`
	tag, err := s.q().Exec(ctx, q, st.Workspace, st.AcceptanceDeadline.Microseconds(), jsonb(st.WorkingHours),
		int(st.BreachAction), st.MaxReassignments, st.EscalationEnabled, st.EscalationDeadline.Microseconds(),
		st.UpdateTime, st.Version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return handoff.ErrStaleEtag
	}
	return nil
}
