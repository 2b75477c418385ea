package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/handoff/internal/convert"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

// ---- Routing copies of leads ----

func marshalFacts(f *handoffv1.RoutingLead) []byte {
	if f == nil {
		f = &handoffv1.RoutingLead{}
	}
	b, err := protojson.Marshal(f)
	if err != nil {
		panic(fmt.Sprintf("store: marshal routing lead: %v", err))
	}
	return b
}

func unmarshalFacts(b []byte) (*handoffv1.RoutingLead, error) {
	f := &handoffv1.RoutingLead{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("decode routing lead: %w", err)
	}
	return f, nil
}

// LockLead implements handoff.Tx. It and EraseLead take turns on the lead's
// key (postgres.LockKey), both first thing. Without that, an event that
// waited for an erasure in progress could not see it (its first statement
// began before the erasure committed) and would put the lead back.
func (s *Store) LockLead(ctx context.Context, workspace, id string) (handoff.LeadCopy, bool, error) {
	if s.tx == nil {
		return handoff.LeadCopy{}, false, errors.New("lock lead outside a transaction")
	}
	if u := unitOf(ctx); u != nil {
		if l := u.leads[postgres.Key{Workspace: workspace, ID: id}]; l != nil {
			return l.copy(), l.gone, nil
		}
	}
	var l *unitLead
	b := &pgx.Batch{}
	b.Queue(postgres.LockKey, workspace, id)
	queueReadLead(b, workspace, id, &l)
	if err := s.tx.SendBatch(ctx, b).Close(); err != nil {
		return handoff.LeadCopy{}, false, err
	}
	return l.copy(), l.gone, nil
}

// errCopyVanished: the routing copy was deleted under the lock's wait
// without the lead's turn. Erasures and merges both take it, so this guards
// against a deleter that does not; the event is retried.
var errCopyVanished = errors.New("the lead's routing copy went away meanwhile; retry")

// queueReadLead queues on b what LockLead does once the lead's turn is
// taken (postgres.LockKey, queued before): create the routing copy unless
// the lead is gone, erased or merged into another (the check runs after the
// turn is granted, so it sees an erasure the turn waited for), then lock and
// read it. *out is set when b is sent.
func queueReadLead(b *pgx.Batch, workspace, id string, out **unitLead) {
	const ensure = `
INSERT INTO leads (workspace_id, id)
SELECT $1, $2
 WHERE NOT EXISTS (SELECT 1 FROM erased_leads WHERE workspace_id = $1 AND id = $2)
   AND NOT EXISTS (SELECT 1 FROM merged_leads WHERE workspace_id = $1 AND id = $2)
ON CONFLICT DO NOTHING`
	const read = `
SELECT facts, attributes_time, score_time, stage_time, origin_traceparent FROM leads
 WHERE workspace_id = $1 AND id = $2 FOR UPDATE`
	const gone = `
SELECT EXISTS (SELECT 1 FROM erased_leads WHERE workspace_id = $1 AND id = $2)
    OR EXISTS (SELECT 1 FROM merged_leads WHERE workspace_id = $1 AND id = $2)`
	l := &unitLead{c: handoff.LeadCopy{Workspace: workspace, ID: id}}
	found := false
	b.Queue(ensure, workspace, id)
	b.Queue(read, workspace, id).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var facts []byte
			if err := rows.Scan(&facts, &l.c.AttributesTime, &l.c.ScoreTime, &l.c.StageTime, &l.c.OriginTraceparent); err != nil {
				return err
			}
			f, err := unmarshalFacts(facts)
			if err != nil {
				return err
			}
			l.c.Facts, found = f, true
		}
		return rows.Err()
	})
	b.Queue(gone, workspace, id).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&l.gone); err != nil {
			return err
		}
		if !found && !l.gone {
			return errCopyVanished
		}
		*out = l
		return nil
	})
}

// PutLead implements handoff.Tx.
func (s *Store) PutLead(ctx context.Context, c handoff.LeadCopy) error {
	const q = `
UPDATE leads SET facts = $3, attributes_time = $4, score_time = $5, stage_time = $6, origin_traceparent = $7
 WHERE workspace_id = $1 AND id = $2`
	args := []any{c.Workspace, c.ID, marshalFacts(c.Facts), c.AttributesTime, c.ScoreTime, c.StageTime, c.OriginTraceparent}
	if u := unitOf(ctx); u != nil {
		if l := u.leads[postgres.Key{Workspace: c.Workspace, ID: c.ID}]; l != nil {
			u.b.Queue(q, args...)
			l.c = cloneCopy(c)
			return nil
		}
	}
	_, err := s.q().Exec(ctx, q, args...)
	return err
}

// LeadOrigin implements handoff.Tx.
func (s *Store) LeadOrigin(ctx context.Context, workspace, id string) (string, error) {
	const q = `SELECT origin_traceparent FROM leads WHERE workspace_id = $1 AND id = $2`
	var origin string
	err := s.q().QueryRow(ctx, q, workspace, id).Scan(&origin)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return origin, err
}

// EraseLead implements handoff.Tx. Handoffs go with their assignments,
// breaches and webhook deliveries (ON DELETE CASCADE).
func (s *Store) EraseLead(ctx context.Context, workspace, id string, at time.Time) error {
	b := &pgx.Batch{}
	b.Queue(postgres.LockKey, workspace, id)
	b.Queue(`DELETE FROM handoffs WHERE workspace_id = $1 AND lead_id = $2`, workspace, id)
	b.Queue(`DELETE FROM leads WHERE workspace_id = $1 AND id = $2`, workspace, id)
	b.Queue(`INSERT INTO erased_leads (workspace_id, id, erase_time) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		workspace, id, at)
	return s.batch(ctx, b)
}

func (s *Store) batch(ctx context.Context, b *pgx.Batch) error {
	if s.tx == nil {
		return postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
	}
	return s.tx.SendBatch(ctx, b).Close()
}

// MoveLead implements handoff.Tx. The survivor keeps its own routing copy
// unless it has none yet. The loser is remembered in merged_leads, so a late
// event about it finds it gone instead of making it a new copy.
func (s *Store) MoveLead(ctx context.Context, workspace, loser, survivor string) error {
	b := &pgx.Batch{}
	b.Queue(`UPDATE handoffs SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2`, workspace, loser, survivor)
	b.Queue(`UPDATE sla_breaches SET lead_id = $3 WHERE workspace_id = $1 AND lead_id = $2`, workspace, loser, survivor)
	b.Queue(`
UPDATE leads s SET facts = l.facts, attributes_time = l.attributes_time,
                   score_time = l.score_time, stage_time = l.stage_time
  FROM leads l
 WHERE s.workspace_id = $1 AND s.id = $3 AND l.workspace_id = $1 AND l.id = $2
   AND s.attributes_time IS NULL AND s.score_time IS NULL AND s.stage_time IS NULL`, workspace, loser, survivor)
	b.Queue(`DELETE FROM leads WHERE workspace_id = $1 AND id = $2`, workspace, loser)
	b.Queue(`INSERT INTO merged_leads (workspace_id, id, survivor_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		workspace, loser, survivor)
	return s.batch(ctx, b)
}

// ---- Handoffs ----

const handoffCols = `
workspace_id, id, lead_id, state, origin, owner_id, team_id, routing, routed_lead, due_time,
escalated_to, escalate_time, escalated, reassignments, accept_time, accept_note, reject_time,
reject_reason, close_time, close_reason, create_time, update_time, version`

type handoffRow struct {
	WorkspaceID   string          `db:"workspace_id"`
	ID            string          `db:"id"`
	LeadID        string          `db:"lead_id"`
	State         int             `db:"state"`
	Origin        int             `db:"origin"`
	OwnerID       string          `db:"owner_id"`
	TeamID        string          `db:"team_id"`
	Routing       handoff.Routing `db:"routing"`
	RoutedLead    []byte          `db:"routed_lead"`
	DueTime       *time.Time      `db:"due_time"`
	EscalatedTo   string          `db:"escalated_to"`
	EscalateTime  *time.Time      `db:"escalate_time"`
	Escalated     bool            `db:"escalated"`
	Reassignments int             `db:"reassignments"`
	AcceptTime    *time.Time      `db:"accept_time"`
	AcceptNote    string          `db:"accept_note"`
	RejectTime    *time.Time      `db:"reject_time"`
	RejectReason  string          `db:"reject_reason"`
	CloseTime     *time.Time      `db:"close_time"`
	CloseReason   string          `db:"close_reason"`
	CreateTime    time.Time       `db:"create_time"`
	UpdateTime    time.Time       `db:"update_time"`
	Version       int64           `db:"version"`
}

func (r handoffRow) toDomain() (handoff.Handoff, error) {
	facts, err := unmarshalFacts(r.RoutedLead)
	if err != nil {
		return handoff.Handoff{}, err
	}
	return handoff.Handoff{
		Workspace: r.WorkspaceID, ID: r.ID, Lead: r.LeadID, State: handoff.State(r.State),
		Origin: handoff.Origin(r.Origin), Owner: r.OwnerID, Team: r.TeamID, Routing: r.Routing,
		RoutedLead: facts, DueTime: r.DueTime, EscalatedTo: r.EscalatedTo, EscalateTime: r.EscalateTime,
		Escalated: r.Escalated, Reassignments: r.Reassignments, AcceptTime: r.AcceptTime,
		AcceptNote: r.AcceptNote, RejectTime: r.RejectTime, RejectReason: r.RejectReason,
		CloseTime: r.CloseTime, CloseReason: r.CloseReason, CreateTime: r.CreateTime,
		UpdateTime: r.UpdateTime, Version: r.Version,
	}, nil
}

type assignmentRow struct {
	HandoffID  string          `db:"handoff_id"`
	OwnerID    string          `db:"owner_id"`
	TeamID     string          `db:"team_id"`
	Routing    handoff.Routing `db:"routing"`
	AssignTime time.Time       `db:"assign_time"`
	DueTime    *time.Time      `db:"due_time"`
	Outcome    int             `db:"outcome"`
	EndTime    *time.Time      `db:"end_time"`
	UserID     string          `db:"user_id"`
}

// queryHandoffs runs q (selecting handoffCols) and attaches assignments.
func (s *Store) queryHandoffs(ctx context.Context, q string, args ...any) ([]handoff.Handoff, error) {
	rows, err := s.q().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	hrows, err := pgx.CollectRows(rows, pgx.RowToStructByName[handoffRow])
	if err != nil {
		return nil, err
	}
	if len(hrows) == 0 {
		return nil, nil
	}
	out := make([]handoff.Handoff, len(hrows))
	index := map[string]int{}
	ids := make([]string, len(hrows))
	for i, r := range hrows {
		if out[i], err = r.toDomain(); err != nil {
			return nil, err
		}
		index[r.ID], ids[i] = i, r.ID
	}
	const aq = `
SELECT handoff_id, owner_id, team_id, routing, assign_time, due_time, outcome, end_time, user_id
  FROM assignments WHERE workspace_id = $1 AND handoff_id = ANY($2) ORDER BY handoff_id, seq`
	rows, err = s.q().Query(ctx, aq, hrows[0].WorkspaceID, ids)
	if err != nil {
		return nil, err
	}
	arows, err := pgx.CollectRows(rows, pgx.RowToStructByName[assignmentRow])
	if err != nil {
		return nil, err
	}
	for _, a := range arows {
		h := &out[index[a.HandoffID]]
		h.Assignments = append(h.Assignments, handoff.Assignment{
			Owner: a.OwnerID, Team: a.TeamID, Routing: a.Routing, AssignTime: a.AssignTime,
			DueTime: a.DueTime, Outcome: handoff.Outcome(a.Outcome), EndTime: a.EndTime, User: a.UserID,
		})
	}
	return out, nil
}

// InsertHandoff implements handoff.Tx.
func (s *Store) InsertHandoff(ctx context.Context, h handoff.Handoff, requestID string) error {
	const q = `
INSERT INTO handoffs (workspace_id, id, lead_id, state, origin, owner_id, team_id, routing, routed_lead,
                      due_time, request_id, create_time, update_time, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, 1)`
	_, err := s.q().Exec(ctx, q, h.Workspace, h.ID, h.Lead, int(h.State), int(h.Origin), h.Owner, h.Team,
		jsonb(h.Routing), marshalFacts(h.RoutedLead), h.DueTime, requestID, h.CreateTime)
	if postgres.IsUniqueViolation(err) {
		return handoff.ErrOpenHandoffExists
	}
	if err != nil {
		return err
	}
	return s.putAssignments(ctx, &h)
}

func (s *Store) putAssignments(ctx context.Context, h *handoff.Handoff) error {
	if len(h.Assignments) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for i, a := range h.Assignments {
		b.Queue(`
INSERT INTO assignments (workspace_id, handoff_id, seq, owner_id, team_id, routing, assign_time, due_time,
                         outcome, end_time, user_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (workspace_id, handoff_id, seq) DO UPDATE
   SET outcome = EXCLUDED.outcome, end_time = EXCLUDED.end_time, user_id = EXCLUDED.user_id`,
			h.Workspace, h.ID, i, a.Owner, a.Team, jsonb(a.Routing), a.AssignTime, a.DueTime,
			int(a.Outcome), a.EndTime, a.User)
	}
	return s.batch(ctx, b)
}

// UpdateHandoff implements handoff.Tx.
func (s *Store) UpdateHandoff(ctx context.Context, h *handoff.Handoff) error {
	const q = `
UPDATE handoffs SET state = $3, owner_id = $4, team_id = $5, routing = $6, due_time = $7,
                    escalated_to = $8, escalate_time = $9, escalated = $10, reassignments = $11,
                    accept_time = $12, accept_note = $13, reject_time = $14, reject_reason = $15,
                    close_time = $16, close_reason = $17, update_time = $18, version = version + 1
 WHERE workspace_id = $1 AND id = $2
RETURNING version`
	err := s.q().QueryRow(ctx, q, h.Workspace, h.ID, int(h.State), h.Owner, h.Team, jsonb(h.Routing), h.DueTime,
		h.EscalatedTo, h.EscalateTime, h.Escalated, h.Reassignments, h.AcceptTime, h.AcceptNote,
		h.RejectTime, h.RejectReason, h.CloseTime, h.CloseReason, h.UpdateTime).Scan(&h.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return handoff.ErrHandoffNotFound
	}
	if postgres.IsUniqueViolation(err) {
		return handoff.ErrOpenHandoffExists
	}
	if err != nil {
		return err
	}
	return s.putAssignments(ctx, h)
}

func (s *Store) oneHandoff(ctx context.Context, q string, args ...any) (handoff.Handoff, bool, error) {
	hs, err := s.queryHandoffs(ctx, q, args...)
	if err != nil || len(hs) == 0 {
		return handoff.Handoff{}, false, err
	}
	return hs[0], true, nil
}

func lockClause(forUpdate bool) string {
	if forUpdate {
		return " FOR UPDATE"
	}
	return ""
}

// GetHandoff implements handoff.Tx.
func (s *Store) GetHandoff(ctx context.Context, workspace, id string, forUpdate bool) (handoff.Handoff, error) {
	h, ok, err := s.oneHandoff(ctx, `SELECT `+handoffCols+` FROM handoffs WHERE workspace_id = $1 AND id = $2`+
		lockClause(forUpdate), workspace, id)
	if err == nil && !ok {
		err = handoff.ErrHandoffNotFound
	}
	return h, err
}

// HandoffByRequest implements handoff.Tx.
func (s *Store) HandoffByRequest(ctx context.Context, workspace, requestID string) (handoff.Handoff, bool, error) {
	return s.oneHandoff(ctx, `SELECT `+handoffCols+` FROM handoffs WHERE workspace_id = $1 AND request_id = $2`,
		workspace, requestID)
}

// LatestHandoff implements handoff.Tx.
func (s *Store) LatestHandoff(ctx context.Context, workspace, lead string, forUpdate bool) (handoff.Handoff, bool, error) {
	return s.oneHandoff(ctx, `SELECT `+handoffCols+` FROM handoffs WHERE workspace_id = $1 AND lead_id = $2
 ORDER BY create_time DESC, id DESC LIMIT 1`+lockClause(forUpdate), workspace, lead)
}

// ListHandoffs implements handoff.Tx.
func (s *Store) ListHandoffs(ctx context.Context, workspace string, f handoff.HandoffFilter, after *handoff.HandoffCursor, limit int) ([]handoff.Handoff, error) {
	states := []int{} // NULL would make cardinality() NULL
	for _, st := range f.States {
		states = append(states, int(st))
	}
	args := []any{workspace, f.Owner, f.Team, f.Lead, states, f.MinCreateTime}
	where := []string{
		"workspace_id = $1",
		"($2 = '' OR owner_id = $2)",
		"($3 = '' OR team_id = $3)",
		"($4 = '' OR lead_id = $4)",
		"(cardinality($5::smallint[]) = 0 OR state = ANY($5))",
		"($6::timestamptz IS NULL OR create_time >= $6)",
	}
	order := "create_time DESC, id DESC"
	if f.ByDueTime {
		order = "due_time ASC NULLS LAST, id ASC"
	}
	if after != nil {
		args = append(args, after.Time, after.ID)
		switch {
		case !f.ByDueTime:
			where = append(where, "(create_time, id) < ($7::timestamptz, $8)")
		case after.Time != nil:
			where = append(where, "(due_time > $7::timestamptz OR (due_time = $7 AND id > $8) OR due_time IS NULL)")
		default:
			where = append(where, "(due_time IS NULL AND id > $8 AND $7::timestamptz IS NULL)")
		}
	}
	args = append(args, limit)
	q := fmt.Sprintf(`SELECT %s FROM handoffs WHERE %s ORDER BY %s LIMIT $%d`,
		handoffCols, strings.Join(where, " AND "), order, len(args))
	return s.queryHandoffs(ctx, q, args...)
}

// OpenHandoffsOf implements handoff.Tx.
func (s *Store) OpenHandoffsOf(ctx context.Context, workspace, owner string) ([]string, error) {
	const q = `SELECT id FROM handoffs WHERE workspace_id = $1 AND owner_id = $2 AND state IN (2, 3) ORDER BY id`
	rows, err := s.q().Query(ctx, q, workspace, owner)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ClaimDueHandoff implements handoff.Tx.
func (s *Store) ClaimDueHandoff(ctx context.Context, now time.Time) (handoff.Handoff, bool, error) {
	const q = `
SELECT ` + handoffCols + ` FROM handoffs
 WHERE (state = 2 AND due_time <= $1) OR (state = 3 AND escalate_time <= $1)
 LIMIT 1
   FOR UPDATE SKIP LOCKED`
	return s.oneHandoff(ctx, q, now)
}

// ---- SLA breaches ----

// InsertBreach implements handoff.Tx.
func (s *Store) InsertBreach(ctx context.Context, b handoff.Breach) error {
	const q = `
INSERT INTO sla_breaches (workspace_id, id, handoff_id, lead_id, owner_id, team_id, manager_id,
                          due_time, breach_time, action)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	_, err := s.q().Exec(ctx, q, b.Workspace, b.ID, b.Handoff, b.Lead, b.Owner, b.Team, b.Manager,
		b.DueTime, b.BreachTime, int(b.Action))
	return err
}

type breachRow struct {
	WorkspaceID string    `db:"workspace_id"`
	ID          string    `db:"id"`
	HandoffID   string    `db:"handoff_id"`
	LeadID      string    `db:"lead_id"`
	OwnerID     string    `db:"owner_id"`
	TeamID      string    `db:"team_id"`
	ManagerID   string    `db:"manager_id"`
	DueTime     time.Time `db:"due_time"`
	BreachTime  time.Time `db:"breach_time"`
	Action      int       `db:"action"`
}

// ListBreaches implements handoff.Tx.
func (s *Store) ListBreaches(ctx context.Context, workspace string, f handoff.BreachFilter, after *handoff.TimeCursor, limit int) ([]handoff.Breach, error) {
	const q = `
SELECT workspace_id, id, handoff_id, lead_id, owner_id, team_id, manager_id, due_time, breach_time, action
  FROM sla_breaches b
 WHERE workspace_id = $1
   AND ($2 = '' OR manager_id = $2 OR owner_id IN (SELECT o.id FROM owners o
                                                    WHERE o.workspace_id = $1 AND o.manager_id = $2))
   AND ($3 = '' OR team_id = $3)
   AND ($4 = '' OR owner_id = $4)
   AND ($5::timestamptz IS NULL OR breach_time >= $5)
   AND ($6::timestamptz IS NULL OR breach_time < $6)
   AND ($7::timestamptz IS NULL OR (breach_time, id) < ($7, $8))
 ORDER BY breach_time DESC, id DESC
 LIMIT $9`
	var afterTime *time.Time
	var afterID string
	if after != nil {
		afterTime, afterID = &after.Time, after.ID
	}
	rows, err := s.q().Query(ctx, q, workspace, f.Manager, f.Team, f.Owner, f.Min, f.Max, afterTime, afterID, limit)
	if err != nil {
		return nil, err
	}
	brows, err := pgx.CollectRows(rows, pgx.RowToStructByName[breachRow])
	if err != nil {
		return nil, err
	}
	out := make([]handoff.Breach, len(brows))
	for i, r := range brows {
		out[i] = handoff.Breach{
			Workspace: r.WorkspaceID, ID: r.ID, Handoff: r.HandoffID, Lead: r.LeadID, Owner: r.OwnerID,
			Team: r.TeamID, Manager: r.ManagerID, DueTime: r.DueTime, BreachTime: r.BreachTime,
			Action: handoff.BreachOutcome(r.Action),
		}
	}
	return out, nil
}

// ---- Webhook notices ----

// Notify implements handoff.Tx: one delivery per enabled subscription that
// wants the event, all carrying the same payload (and payload id).
func (s *Store) Notify(ctx context.Context, n handoff.Notice) error {
	const subs = `
SELECT id FROM webhook_subscriptions
 WHERE workspace_id = $1 AND NOT disabled AND $2 = ANY(event_types)
 ORDER BY id`
	rows, err := s.q().Query(ctx, subs, n.Handoff.Workspace, int(n.Type))
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(ids) == 0 {
		return err
	}
	var externalID string
	if n.Handoff.Owner != "" {
		const ext = `SELECT external_id FROM owners WHERE workspace_id = $1 AND id = $2`
		err := s.q().QueryRow(ctx, ext, n.Handoff.Workspace, n.Handoff.Owner).Scan(&externalID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	payload := &handoffv1.WebhookPayload{
		Id:              n.ID,
		EventType:       handoffv1.WebhookEventType(n.Type),
		OccurTime:       timestamppb.New(n.OccurTime),
		Handoff:         convert.Handoff(n.Handoff),
		OwnerExternalId: externalID,
	}
	if n.Breach != nil {
		payload.SlaBreach = convert.Breach(*n.Breach)
	}
	body, err := protojson.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode webhook payload: %w", err)
	}
	const q = `
INSERT INTO webhook_deliveries (workspace_id, subscription_id, id, event_id, event_type, handoff_id, payload,
                                state, next_attempt_time, create_time)
SELECT $1, sub, gen_random_uuid()::text, $2, $3, $4, $5, 1, $6, $6 FROM unnest($7::text[]) AS sub`
	_, err = s.q().Exec(ctx, q, n.Handoff.Workspace, n.ID, int(n.Type), n.Handoff.ID, body,
		n.OccurTime, ids)
	return err
}
