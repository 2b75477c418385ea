package scoring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// JobState is where a rescore job is.
type JobState string

// Job states.
const (
	JobPending   JobState = "pending"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// RescoreJob rescores every lead of a workspace under a newly published
// model. Cursor is the last lead id done: leads are walked in id order, and
// each batch commits its rescored leads, counts and cursor together, so a
// crash resumes where the last batch ended and no lead is done twice.
type RescoreJob struct {
	Workspace      string
	ID             string
	ModelID        string
	ModelVersion   int64
	State          JobState
	TotalLeads     int64
	ProcessedLeads int64
	ChangedLeads   int64
	QualifiedLeads int64
	FailedLeads    int64
	Cursor         string
	CreateTime     time.Time
	StartTime      *time.Time
	EndTime        *time.Time
	ErrorMessage   string
}

// RescoreBatchSize is how many leads one transaction of a job rescores.
const RescoreBatchSize = 200

// GetJob returns a rescore job.
func (s *Service) GetJob(ctx context.Context, ws, id string) (RescoreJob, error) {
	return s.store.GetJob(ctx, ws, id)
}

// ListJobs pages through jobs, newest first, optionally of one model.
func (s *Service) ListJobs(ctx context.Context, ws, model string, after *ModelCursor, limit int) ([]RescoreJob, error) {
	return s.store.ListJobs(ctx, ws, model, after, limit)
}

func (s *Service) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// RunRescorer works through rescore jobs until ctx ends, waking when a
// model is published and every poll interval (for jobs other replicas
// published). Several replicas share jobs safely.
func (s *Service) RunRescorer(ctx context.Context, logger *slog.Logger, poll time.Duration) error {
	for {
		worked, err := s.RescoreBatch(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			logger.Error("rescore batch failed", "error", err)
		case worked:
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-time.After(poll):
		}
	}
}

// RescoreBatch claims a job and rescores its next batch of leads in one
// transaction. It reports whether there was a job to work on.
func (s *Service) RescoreBatch(ctx context.Context) (bool, error) {
	worked := false
	err := s.store.InTx(ctx, func(tx Store) error {
		job, ok, err := tx.ClaimJob(ctx)
		if err != nil || !ok {
			return err
		}
		worked = true
		now := s.Now()
		if job.State == JobPending {
			job.State, job.StartTime = JobRunning, &now
		}
		l, err := s.live(ctx, tx, job.Workspace)
		if err != nil {
			return err
		}
		if l.ID != job.ModelID {
			// A later publication superseded the model and runs its own job.
			job.State, job.EndTime = JobCancelled, &now
			return tx.SaveJob(ctx, job)
		}
		ids, err := tx.LeadIDsAfter(ctx, job.Workspace, job.Cursor, RescoreBatchSize)
		if err != nil {
			return err
		}
		for _, id := range ids {
			res, err := s.rescoreOne(ctx, tx, job.Workspace, id, l)
			job.ProcessedLeads++
			switch {
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				job.FailedLeads++
			default:
				if res.Changed {
					job.ChangedLeads++
				}
				if res.Qualified {
					job.QualifiedLeads++
				}
			}
			job.Cursor = id
		}
		if len(ids) < RescoreBatchSize {
			job.State, job.EndTime = JobSucceeded, &now
		}
		return tx.SaveJob(ctx, job)
	})
	return worked, err
}

// rescoreOne rescores one lead in a savepoint, so that a lead that fails
// keeps its old score without failing the batch.
func (s *Service) rescoreOne(ctx context.Context, tx Store, ws, id string, l live) (rescoreResult, error) {
	var res rescoreResult
	err := tx.InTx(ctx, func(tx Store) error {
		lead, err := tx.GetLead(ctx, ws, id, true)
		if errors.Is(err, ErrLeadNotFound) {
			return nil // erased or merged since the batch was listed
		}
		if err != nil {
			return err
		}
		res, err = s.rescore(ctx, tx, &lead, l, nil)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("rescore lead: %w", err)
	}
	return res, nil
}
