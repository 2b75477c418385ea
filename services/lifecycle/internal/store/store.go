// Package store is the PostgreSQL implementation of lifecycle.Store.
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

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

// Schema is the PostgreSQL schema the lifecycle service owns.
const Schema = "lifecycle"

// Migrations are the service's numbered SQL migrations;
// pkg/migrate finds the files under migrations/.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store implements lifecycle.Store.
type Store struct {
	pool *pgxpool.Pool
	pub  *outbox.Publisher
	tx   pgx.Tx // set by WithTx
	// exactLimit overrides defaultExactLimit when positive (tests).
	exactLimit int64
}

// New returns a Store over pool, whose search_path must be Schema. Each
// transition publishes StageChanged through pub.
func New(pool *pgxpool.Pool, pub *outbox.Publisher) *Store { return &Store{pool: pool, pub: pub} }

// NewPublisher returns the publisher of lifecycle's events: StageChanged
// goes to every subscriber (handoff routes on it; scoring learns outcomes
// and recycling from it).
func NewPublisher(source string, subscribers ...string) *outbox.Publisher {
	return outbox.NewPublisher(source, Schema, outbox.Routes{
		"leadflow.events.v1.StageChanged": subscribers,
	})
}

// WithTx returns a Store whose every method runs in tx, such as the
// transaction an event is received in.
func (s *Store) WithTx(tx pgx.Tx) *Store {
	return &Store{pool: s.pool, pub: s.pub, tx: tx, exactLimit: s.exactLimit}
}

func (s *Store) q() querier {
	if s.tx != nil {
		return s.tx
	}
	return s.pool
}

func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	if s.tx != nil {
		return fn(s.tx)
	}
	return postgres.InTx(ctx, s.pool, fn)
}

// leadColumns are the columns leadRow reads.
const leadColumns = `workspace_id, lead_id, stage, previous_stage, reason, stage_enter_time, recycle_count,
       version, bant, score, score_time, last_activity_time, source, campaign, create_time, update_time`

type leadRow struct {
	WorkspaceID      string     `db:"workspace_id"`
	LeadID           string     `db:"lead_id"`
	Stage            string     `db:"stage"`
	PreviousStage    *string    `db:"previous_stage"`
	Reason           string     `db:"reason"`
	StageEnterTime   time.Time  `db:"stage_enter_time"`
	RecycleCount     int        `db:"recycle_count"`
	Version          int64      `db:"version"`
	Bant             []byte     `db:"bant"`
	Score            *int64     `db:"score"`
	ScoreTime        *time.Time `db:"score_time"`
	LastActivityTime time.Time  `db:"last_activity_time"`
	Source           string     `db:"source"`
	Campaign         string     `db:"campaign"`
	CreateTime       time.Time  `db:"create_time"`
	UpdateTime       time.Time  `db:"update_time"`
}

func (r leadRow) toDomain() (lifecycle.Lead, error) {
	l := lifecycle.Lead{
		Workspace: r.WorkspaceID, ID: r.LeadID, Stage: parseStage(&r.Stage), PreviousStage: parseStage(r.PreviousStage),
		Reason: r.Reason, StageEnterTime: r.StageEnterTime, RecycleCount: r.RecycleCount, Version: r.Version,
		Score: r.Score, LastActivityTime: r.LastActivityTime, Source: r.Source, Campaign: r.Campaign,
		CreateTime: r.CreateTime, UpdateTime: r.UpdateTime,
	}
	if r.ScoreTime != nil {
		l.ScoreTime = *r.ScoreTime
	}
	var err error
	l.Bant, err = decodeBant(r.Bant)
	return l, err
}

func parseStage(name *string) lifecycle.Stage {
	if name == nil {
		return lifecycle.StageUnspecified
	}
	st, _ := lifecycle.ParseStage(*name)
	return st
}

// stageOrNil stores StageUnspecified as NULL.
func stageOrNil(s lifecycle.Stage) *string {
	if s == lifecycle.StageUnspecified {
		return nil
	}
	name := s.String()
	return &name
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nilIfZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func encodeBant(b *lifecycle.Bant) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return json.Marshal(b)
}

func decodeBant(raw []byte) (*lifecycle.Bant, error) {
	if raw == nil {
		return nil, nil
	}
	b := &lifecycle.Bant{}
	if err := json.Unmarshal(raw, b); err != nil {
		return nil, fmt.Errorf("decode bant: %w", err)
	}
	return b, nil
}

// Lead implements lifecycle.Store.
func (s *Store) Lead(ctx context.Context, workspace, lead string) (lifecycle.Lead, error) {
	const q = `SELECT ` + leadColumns + ` FROM leads WHERE workspace_id = $1 AND lead_id = $2`
	cur, err := readLead(ctx, s.q(), q, workspace, lead)
	if err != nil {
		return lifecycle.Lead{}, err
	}
	if cur == nil {
		return lifecycle.Lead{}, lifecycle.ErrLeadNotFound
	}
	return *cur, nil
}

// readLead runs a query for one lead row; nil when there is none.
func readLead(ctx context.Context, q querier, sql string, args ...any) (*lifecycle.Lead, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	r, err := pgx.CollectOneRow(rows, pgx.RowToStructByName[leadRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l, err := r.toDomain()
	return &l, err
}

// Update implements lifecycle.Store. The lead's row lock serialises every
// change to one lead, so a stale etag is seen as stale and of two moves from
// the same stage only the first is applied; the second is decided again on
// the state the first left.
func (s *Store) Update(ctx context.Context, workspace, lead, requestID string, fn lifecycle.Mutation) (lifecycle.Result, error) {
	return s.update(ctx, workspace, lead, requestID, false, nil, func(string) lifecycle.Mutation { return fn })
}

// UpdateFollowing implements lifecycle.Store: Update, but a merged-away lead
// stands for its survivor.
func (s *Store) UpdateFollowing(ctx context.Context, workspace, lead string, step *lifecycle.JourneyStep,
	fn func(current string) lifecycle.Mutation,
) (lifecycle.Result, error) {
	return s.update(ctx, workspace, lead, "", true, step, fn)
}

func (s *Store) update(ctx context.Context, workspace, lead, requestID string, follow bool, journey *lifecycle.JourneyStep,
	fn func(current string) lifecycle.Mutation,
) (lifecycle.Result, error) {
	var res lifecycle.Result
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if u := unitOf(ctx); u != nil && follow && requestID == "" {
			if l := u.leads[postgres.Key{Workspace: workspace, ID: lead}]; l != nil {
				var err error
				res, err = s.updateInUnit(ctx, tx, u, l, journey, fn)
				return err
			}
		}
		res = lifecycle.Result{}
		// Two tries: if the lead was created concurrently between our read
		// and our insert, decide again on the row the other transaction made.
		for range 2 {
			locked, err := lockLead(ctx, tx, workspace, lead, follow)
			if err != nil {
				return err
			}
			if locked.gone {
				return lifecycle.ErrLeadNotFound
			}
			cur := locked.cur
			if requestID != "" && cur != nil {
				prev, err := transitionByRequest(ctx, tx, workspace, locked.lead, requestID)
				if err != nil {
					return err
				}
				if prev != nil {
					res = lifecycle.Result{Lead: *cur, Steps: []lifecycle.Transition{*prev}, Replayed: true}
					return nil
				}
			}
			next, steps, err := fn(locked.lead)(cur, locked.settings)
			if err != nil {
				return err
			}
			b := &pgx.Batch{}
			if journey != nil {
				queueStep(b, workspace, locked.lead, *journey)
			}
			if next == nil {
				if cur == nil {
					return lifecycle.ErrLeadNotFound
				}
				if b.Len() > 0 {
					if err := tx.SendBatch(ctx, b).Close(); err != nil {
						return fmt.Errorf("record journey step: %w", err)
					}
				}
				res.Lead = *cur
				return nil
			}
			if cur == nil {
				// Alone, as the rest must not be written if it was not.
				inserted, err := insertLead(ctx, tx, *next)
				if err != nil {
					return err
				}
				if !inserted {
					continue
				}
			} else if err := queueLeadUpdate(b, *cur, *next); err != nil {
				return err
			}
			var enter time.Time
			if cur != nil {
				enter = cur.StageEnterTime
			}
			for i := range steps {
				if err := queueTransition(b, &steps[i], enter); err != nil {
					return err
				}
				enter = steps[i].Time
			}
			if err := s.queueMoves(ctx, tx, b, steps); err != nil {
				return err
			}
			// One round trip for the lead's writes and its events.
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return fmt.Errorf("write lead: %w", err)
			}
			res.Lead, res.Steps = *next, steps
			return nil
		}
		return errors.New("lead lifecycle created concurrently while deciding")
	})
	return res, err
}

// locked is what lockLead read.
type locked struct {
	lead     string // the lead asked for, or the survivor standing for it
	gone     bool
	cur      *lifecycle.Lead // nil when lifecycle never heard of the lead
	settings lifecycle.Settings
}

// lockRow is a row of lockLead's query; the lead's columns are NULL when
// there is no lead.
type lockRow struct {
	Depth               int        `db:"depth"`
	Target              *string    `db:"target"`
	Allowed             []byte     `db:"allowed"`
	LostReasons         []byte     `db:"lost_reasons"`
	DisqualifiedReasons []byte     `db:"disqualified_reasons"`
	SettingsVersion     *int64     `db:"settings_version"`
	SettingsUpdateTime  *time.Time `db:"settings_update_time"`

	WorkspaceID      *string    `db:"workspace_id"`
	LeadID           *string    `db:"lead_id"`
	Stage            *string    `db:"stage"`
	PreviousStage    *string    `db:"previous_stage"`
	Reason           *string    `db:"reason"`
	StageEnterTime   *time.Time `db:"stage_enter_time"`
	RecycleCount     *int       `db:"recycle_count"`
	Version          *int64     `db:"version"`
	Bant             []byte     `db:"bant"`
	Score            *int64     `db:"score"`
	ScoreTime        *time.Time `db:"score_time"`
	LastActivityTime *time.Time `db:"last_activity_time"`
	Source           *string    `db:"source"`
	Campaign         *string    `db:"campaign"`
	CreateTime       *time.Time `db:"create_time"`
	UpdateTime       *time.Time `db:"update_time"`
}

func (r lockRow) lead() (*lifecycle.Lead, error) {
	if r.LeadID == nil {
		return nil, nil
	}
	l, err := leadRow{
		WorkspaceID: *r.WorkspaceID, LeadID: *r.LeadID, Stage: *r.Stage, PreviousStage: r.PreviousStage,
		Reason: *r.Reason, StageEnterTime: *r.StageEnterTime, RecycleCount: *r.RecycleCount, Version: *r.Version,
		Bant: r.Bant, Score: r.Score, ScoreTime: r.ScoreTime, LastActivityTime: *r.LastActivityTime,
		Source: *r.Source, Campaign: *r.Campaign, CreateTime: *r.CreateTime, UpdateTime: *r.UpdateTime,
	}.toDomain()
	return &l, err
}

// lockLeadSQL reads lockLead's row: $1 workspace, $2 lead, $3 whether to
// follow merges, $4 how many. The lead's row is locked only when it is the
// one to change, so an event never waits on a lead it does not touch.
const lockLeadSQL = `
WITH RECURSIVE chain (depth, survivor_id) AS (
    SELECT 1, survivor_id FROM gone_leads WHERE workspace_id = $1 AND lead_id = $2
    UNION ALL
    SELECT c.depth + 1, g.survivor_id
      FROM chain c JOIN gone_leads g ON g.workspace_id = $1 AND g.lead_id = c.survivor_id
     WHERE $3 AND c.depth < $4
), target (depth, lead_id) AS (
    (SELECT 0, $2::text UNION ALL SELECT depth, survivor_id FROM chain)
    ORDER BY 1 DESC LIMIT 1
)
SELECT t.depth, t.lead_id AS target,
       s.allowed, s.lost_reasons, s.disqualified_reasons, s.version AS settings_version,
       s.update_time AS settings_update_time, l.*
  FROM target t
  LEFT JOIN settings s ON s.workspace_id = $1
  LEFT JOIN LATERAL (
    SELECT ` + leadColumns + ` FROM leads
     WHERE workspace_id = $1 AND lead_id = t.lead_id AND (t.depth = 0 OR $3 AND t.depth < $4)
       FOR UPDATE
  ) l ON true`

// lockLead finds out, in one round trip, whether lead is gone (erased or
// merged away) or, when follow is set, which lead stands for it after its
// merges, then locks that lead's row and reads the workspace's settings.
// An erased lead, or a merged-away one when follow is unset, is gone.
//
// Merges are followed as Resolve does, at most maxMergeChain of them.
// Erasing or merging a lead and changing it take turns on the lead's key
// (postgres.LockKey), so a change that waited for an erasure reads after it
// and finds the lead gone, even when the lead had no row to wait on.
func lockLead(ctx context.Context, tx pgx.Tx, workspace, lead string, follow bool) (locked, error) {
	// The lead's turn first (see postgres.LockKey), in the same round trip.
	var r lockRow
	b := &pgx.Batch{}
	b.Queue(postgres.LockKey, workspace, lead)
	b.Queue(lockLeadSQL, workspace, lead, follow, maxMergeChain).Query(func(rows pgx.Rows) error {
		var err error
		r, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[lockRow])
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return locked{}, fmt.Errorf("lock lead: %w", err)
	}
	return r.locked(lead, follow)
}

// locked turns what lockLeadSQL read about lead into a locked.
func (r lockRow) locked(lead string, follow bool) (locked, error) {
	out := locked{lead: lead}
	switch {
	case r.Depth == 0:
	case !follow || r.Target == nil:
		out.gone = true
		return out, nil
	case r.Depth >= maxMergeChain:
		return locked{}, fmt.Errorf("resolve lead: merge chain longer than %d", maxMergeChain)
	default:
		out.lead = *r.Target
	}
	var err error
	if out.cur, err = r.lead(); err != nil {
		return locked{}, err
	}
	out.settings = lifecycle.DefaultSettings()
	if r.Allowed != nil {
		out.settings, err = decodeSettings(r.Allowed, r.LostReasons, r.DisqualifiedReasons, *r.SettingsVersion, *r.SettingsUpdateTime)
	}
	return out, err
}

func leadArgs(l lifecycle.Lead) ([]any, error) {
	bant, err := encodeBant(l.Bant)
	if err != nil {
		return nil, err
	}
	return []any{
		l.Workspace, l.ID, l.Stage.String(), stageOrNil(l.PreviousStage), l.Reason, l.StageEnterTime, l.RecycleCount,
		l.Version, bant, l.Score, nilIfZero(l.ScoreTime), l.LastActivityTime, l.Source, l.Campaign, l.CreateTime, l.UpdateTime,
	}, nil
}

// insertLeadSQL inserts the lead leadArgs gives, unless it exists already or
// is gone: an erasure or merge that committed while this transaction
// waited for the lead's lock left a tombstone that the lock's statement
// could not see, but this one, started later, does.
const insertLeadSQL = `INSERT INTO leads (` + leadColumns + `)
SELECT $1::text, $2::text, $3::stage, $4::stage, $5::text, $6::timestamptz, $7::integer, $8::bigint,
       $9::jsonb, $10::bigint, $11::timestamptz, $12::timestamptz, $13::text, $14::text,
       $15::timestamptz, $16::timestamptz
 WHERE NOT EXISTS (SELECT FROM gone_leads WHERE workspace_id = $1 AND lead_id = $2)
ON CONFLICT (workspace_id, lead_id) DO NOTHING`

// insertLead reports false when the lead exists already or is gone.
func insertLead(ctx context.Context, tx pgx.Tx, l lifecycle.Lead) (bool, error) {
	args, err := leadArgs(l)
	if err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, insertLeadSQL, args...)
	if err != nil {
		return false, fmt.Errorf("insert lead: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// queueLeadUpdate queues the write of next over cur on b.
func queueLeadUpdate(b *pgx.Batch, cur, next lifecycle.Lead) error {
	const q = `
UPDATE leads
   SET stage = $3, previous_stage = $4, reason = $5, stage_enter_time = $6, recycle_count = $7,
       version = $8, bant = $9, score = $10, score_time = $11, last_activity_time = $12,
       source = $13, campaign = $14, create_time = $15, update_time = $16
 WHERE workspace_id = $1 AND lead_id = $2`
	args, err := leadArgs(next)
	if err != nil {
		return err
	}
	// A lead's facts count under its source and campaign, which a late
	// first capture (or a merge) may set: move them.
	moved := next.Source != cur.Source || next.Campaign != cur.Campaign
	if moved {
		queueApplyFunnel(b, next.Workspace, next.ID, -1)
	}
	b.Queue(q, args...)
	if moved {
		queueApplyFunnel(b, next.Workspace, next.ID, 1)
	}
	return nil
}

// queueTransition queues on b the insert of t, which ends a stay in t.From
// that began at fromEnter, and the counting of its facts; t.ID is set when
// b is sent.
//
// The previous entry and exit are read in the order of transitions_by_lead:
// with max() a generic plan made while the table was small scanned
// transitions_by_time backwards through the whole workspace's history.
func queueTransition(b *pgx.Batch, t *lifecycle.Transition, fromEnter time.Time) error {
	const q = `
INSERT INTO transitions (workspace_id, lead_id, from_stage, to_stage, transition_time, from_enter_time,
                         prev_enter_time, prev_exit_time,
                         reason, note, bant, backward, actor_kind, actor_id, trigger, event_id, request_id,
                         trace_id, temperature)
VALUES ($1, $2, $3::stage, $4::stage, $5, $6,
        (SELECT transition_time FROM transitions WHERE workspace_id = $1 AND lead_id = $2 AND to_stage = $4::stage
          ORDER BY transition_time DESC, id DESC LIMIT 1),
        (SELECT transition_time FROM transitions WHERE workspace_id = $1 AND lead_id = $2 AND from_stage = $3::stage
          ORDER BY transition_time DESC, id DESC LIMIT 1),
        $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
RETURNING id`
	bant, err := encodeBant(t.Bant)
	if err != nil {
		return err
	}
	var enter *time.Time
	if t.From != lifecycle.StageUnspecified {
		enter = &fromEnter
	}
	b.Queue(q, t.Workspace, t.Lead, stageOrNil(t.From), t.To.String(), t.Time, enter,
		t.Reason, t.Note, bant, t.Backward, t.Actor.Kind.String(), t.Actor.ID, t.Trigger,
		nilIfEmpty(t.EventID), nilIfEmpty(t.RequestID), t.TraceID, t.Temperature.String(),
	).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&t.ID); err != nil {
			return fmt.Errorf("insert transition: %w", err)
		}
		return nil
	})
	queueCountTransition(b)
	return nil
}

// queueMoves queues on b the outbox rows of a StageChanged for each move.
func (s *Store) queueMoves(ctx context.Context, tx pgx.Tx, b *pgx.Batch, steps []lifecycle.Transition) error {
	if len(steps) == 0 {
		return nil
	}
	msgs := make([]outbox.Message, len(steps))
	for i, t := range steps {
		msgs[i] = outbox.Message{Workspace: t.Workspace, Lead: t.Lead, Payload: &eventsv1.StageChanged{
			FromStage:   typesv1.Stage(t.From),
			ToStage:     typesv1.Stage(t.To),
			Reason:      t.Reason,
			Actor:       t.Actor.String(),
			Temperature: typesv1.Temperature(t.Temperature),
		}}
	}
	_, err := s.pub.Queue(ctx, tx, b, msgs)
	return err
}

// transitionColumns are the columns transitionRow reads.
const transitionColumns = `id, workspace_id, lead_id, from_stage, to_stage, transition_time, reason, note, bant,
       backward, actor_kind, actor_id, trigger, event_id, request_id, trace_id, temperature`

type transitionRow struct {
	ID             int64     `db:"id"`
	WorkspaceID    string    `db:"workspace_id"`
	LeadID         string    `db:"lead_id"`
	FromStage      *string   `db:"from_stage"`
	ToStage        string    `db:"to_stage"`
	TransitionTime time.Time `db:"transition_time"`
	Reason         string    `db:"reason"`
	Note           string    `db:"note"`
	Bant           []byte    `db:"bant"`
	Backward       bool      `db:"backward"`
	ActorKind      string    `db:"actor_kind"`
	ActorID        string    `db:"actor_id"`
	Trigger        string    `db:"trigger"`
	EventID        *string   `db:"event_id"`
	RequestID      *string   `db:"request_id"`
	TraceID        string    `db:"trace_id"`
	Temperature    string    `db:"temperature"`
}

func (r transitionRow) toDomain() (lifecycle.Transition, error) {
	t := lifecycle.Transition{
		ID: r.ID, Workspace: r.WorkspaceID, Lead: r.LeadID, From: parseStage(r.FromStage), To: parseStage(&r.ToStage),
		Reason: r.Reason, Note: r.Note, Backward: r.Backward,
		Actor:   lifecycle.Actor{Kind: lifecycle.ParseActorKind(r.ActorKind), ID: r.ActorID},
		Trigger: r.Trigger, TraceID: r.TraceID, Time: r.TransitionTime,
		Temperature: lifecycle.ParseTemperature(r.Temperature),
	}
	if r.EventID != nil {
		t.EventID = *r.EventID
	}
	if r.RequestID != nil {
		t.RequestID = *r.RequestID
	}
	var err error
	t.Bant, err = decodeBant(r.Bant)
	return t, err
}

func collectTransitions(rows pgx.Rows) ([]lifecycle.Transition, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[transitionRow])
	if err != nil {
		return nil, err
	}
	out := make([]lifecycle.Transition, len(rs))
	for i, r := range rs {
		if out[i], err = r.toDomain(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func transitionByRequest(ctx context.Context, tx pgx.Tx, workspace, lead, requestID string) (*lifecycle.Transition, error) {
	const q = `SELECT ` + transitionColumns + ` FROM transitions
 WHERE workspace_id = $1 AND lead_id = $2 AND request_id = $3`
	rows, err := tx.Query(ctx, q, workspace, lead, requestID)
	if err != nil {
		return nil, fmt.Errorf("find transition by request id: %w", err)
	}
	ts, err := collectTransitions(rows)
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	return &ts[0], nil
}

// Transitions implements lifecycle.Store.
func (s *Store) Transitions(ctx context.Context, workspace, lead string, after *lifecycle.TransitionCursor, limit int) ([]lifecycle.Transition, error) {
	const q = `SELECT ` + transitionColumns + ` FROM transitions
 WHERE workspace_id = $1 AND lead_id = $2
   AND ($3::timestamptz IS NULL OR (transition_time, id) < ($3, $4))
 ORDER BY transition_time DESC, id DESC
 LIMIT $5`
	var afterTime *time.Time
	var afterID int64
	if after != nil {
		afterTime, afterID = &after.Time, after.ID
	}
	rows, err := s.q().Query(ctx, q, workspace, lead, afterTime, afterID, limit)
	if err != nil {
		return nil, err
	}
	return collectTransitions(rows)
}

// LeadAt implements lifecycle.Store: the stage as of at is the one entered by
// the last move at or before at.
func (s *Store) LeadAt(ctx context.Context, workspace, lead string, at time.Time) (lifecycle.Lead, error) {
	const q = `
WITH h AS (
    SELECT id, from_stage, to_stage, transition_time, reason, bant, temperature
      FROM transitions
     WHERE workspace_id = $1 AND lead_id = $2 AND transition_time <= $3
)
SELECT last.to_stage, last.from_stage, last.reason, last.transition_time, last.temperature,
       (SELECT count(*) FROM h WHERE to_stage = 'recycled'),
       (SELECT bant FROM h WHERE bant IS NOT NULL ORDER BY transition_time DESC, id DESC LIMIT 1),
       (SELECT min(transition_time) FROM h)
  FROM (SELECT * FROM h ORDER BY transition_time DESC, id DESC LIMIT 1) AS last`
	var (
		to, temperature string
		from            *string
		recycles        int
		bant            []byte
		l               = lifecycle.Lead{Workspace: workspace, ID: lead, ReadTime: at}
	)
	err := s.q().QueryRow(ctx, q, workspace, lead, at).Scan(
		&to, &from, &l.Reason, &l.StageEnterTime, &temperature, &recycles, &bant, &l.CreateTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return lifecycle.Lead{}, lifecycle.ErrLeadNotFound
	}
	if err != nil {
		return lifecycle.Lead{}, fmt.Errorf("read lead at %v: %w", at, err)
	}
	l.Stage, l.PreviousStage = parseStage(&to), parseStage(from)
	l.Temperature = lifecycle.ParseTemperature(temperature)
	l.RecycleCount = recycles
	l.UpdateTime = l.StageEnterTime
	l.Bant, err = decodeBant(bant)
	return l, err
}
