package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

const insertStep = `
INSERT INTO journey_steps (workspace_id, lead_id, kind, step_time, description, source, traceparent, trace_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

// RecordStep implements lifecycle.JourneyStore.
func (s *Store) RecordStep(ctx context.Context, workspace, lead string, st lifecycle.JourneyStep) error {
	if _, err := s.q().Exec(ctx, insertStep, stepArgs(workspace, lead, st)...); err != nil {
		return fmt.Errorf("record journey step: %w", err)
	}
	return nil
}

// queueStep queues RecordStep's insert on b.
func queueStep(b *pgx.Batch, workspace, lead string, st lifecycle.JourneyStep) {
	b.Queue(insertStep, stepArgs(workspace, lead, st)...)
}

func stepArgs(workspace, lead string, st lifecycle.JourneyStep) []any {
	return []any{workspace, lead, string(st.Kind), st.Time, st.Description, st.Source, st.Traceparent, st.TraceID}
}

// maxJourneySteps bounds one read; a journey has a handful of key steps per
// qualification cycle.
const maxJourneySteps = 1000

type stepRow struct {
	Kind        string    `db:"kind"`
	StepTime    time.Time `db:"step_time"`
	Description string    `db:"description"`
	Source      string    `db:"source"`
	Traceparent string    `db:"traceparent"`
	TraceID     string    `db:"trace_id"`
}

// Steps implements lifecycle.JourneyStore.
func (s *Store) Steps(ctx context.Context, workspace, lead string) ([]lifecycle.JourneyStep, error) {
	const q = `
SELECT kind, step_time, description, source, traceparent, trace_id FROM journey_steps
 WHERE workspace_id = $1 AND lead_id = $2
 ORDER BY step_time, id
 LIMIT $3`
	rows, err := s.q().Query(ctx, q, workspace, lead, maxJourneySteps)
	if err != nil {
		return nil, fmt.Errorf("read journey: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[stepRow])
	if err != nil {
		return nil, fmt.Errorf("read journey: %w", err)
	}
	steps := make([]lifecycle.JourneyStep, len(got))
	for i, r := range got {
		steps[i] = lifecycle.JourneyStep{
			Kind: lifecycle.StepKind(r.Kind), Time: r.StepTime, Description: r.Description,
			Source: r.Source, Traceparent: r.Traceparent, TraceID: r.TraceID,
		}
	}
	return steps, nil
}

// Origin implements lifecycle.JourneyStore.
func (s *Store) Origin(ctx context.Context, workspace, lead string) (string, error) {
	const q = `
SELECT traceparent FROM journey_steps
 WHERE workspace_id = $1 AND lead_id = $2 AND kind = 'captured' AND traceparent <> ''
 ORDER BY step_time, id LIMIT 1`
	var tp string
	err := s.q().QueryRow(ctx, q, workspace, lead).Scan(&tp)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return tp, err
}
