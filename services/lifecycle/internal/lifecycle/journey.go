package lifecycle

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// StepKind is what a journey step records.
type StepKind string

// The kinds of journey steps. Stage changes come from the transitions.
const (
	StepCaptured     StepKind = "captured"
	StepQualified    StepKind = "qualified"
	StepStageChanged StepKind = "stage_changed"
	StepAssigned     StepKind = "assigned"
	StepAccepted     StepKind = "accepted"
	StepRejected     StepKind = "rejected"
)

// JourneyStep is one key event of a lead's path.
type JourneyStep struct {
	Kind        StepKind
	Time        time.Time
	From, To    Stage // stage changes only
	Description string
	Source      string
	// Traceparent is the W3C trace context of the request behind the step;
	// TraceID its trace id.
	Traceparent string
	TraceID     string
}

// JourneyStore keeps the journey steps that are not stage changes.
type JourneyStore interface {
	// RecordStep appends a step to the lead's journey.
	RecordStep(ctx context.Context, workspace, lead string, step JourneyStep) error
	// Steps returns the lead's recorded steps, oldest first.
	Steps(ctx context.Context, workspace, lead string) ([]JourneyStep, error)
	// Origin returns the trace context of the lead's capture, "" when unknown.
	Origin(ctx context.Context, workspace, lead string) (string, error)
}

// maxJourneyTransitions bounds the stage changes a journey lists; a lead
// that moved more often shows its latest moves.
const maxJourneyTransitions = 1000

// Journey returns the lead's path: recorded steps and stage changes, oldest
// first. A lead lifecycle never heard of is ErrLeadNotFound.
func (s *Service) Journey(ctx context.Context, workspace, lead string) ([]JourneyStep, error) {
	if _, err := s.Lead(ctx, workspace, lead); err != nil {
		return nil, err
	}
	steps, err := s.store.Steps(ctx, workspace, lead)
	if err != nil {
		return nil, err
	}
	ts, err := s.store.Transitions(ctx, workspace, lead, nil, maxJourneyTransitions)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		steps = append(steps, JourneyStep{
			Kind: StepStageChanged, Time: t.Time, From: t.From, To: t.To,
			Description: t.Trigger, Source: "lifecycle", TraceID: t.TraceID,
		})
	}
	// Stable, so steps at the same instant keep capture-before-move order.
	slices.SortStableFunc(steps, func(a, b JourneyStep) int { return cmp.Compare(a.Time.UnixNano(), b.Time.UnixNano()) })
	return steps, nil
}

// Origin returns the trace context of the lead's capture, "" when unknown.
func (s *Service) Origin(ctx context.Context, workspace, lead string) (string, error) {
	return s.store.Origin(ctx, workspace, lead)
}

// RecordStep appends a step to the lead's journey.
func (s *Service) RecordStep(ctx context.Context, workspace, lead string, step JourneyStep) error {
	return s.store.RecordStep(ctx, workspace, lead, step)
}
