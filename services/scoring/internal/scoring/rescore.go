package scoring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
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

// RescoreBatchSize is how many leads one transaction of a job rescores by
// default: large enough that per-transaction costs vanish, small enough
// that an event waiting for a locked lead waits a fraction of a second.
const RescoreBatchSize = 1000

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
//
// The batch's leads and activities are read in two queries and its writes
// made in one statement per table. Should that fail, the batch runs again
// lead by lead, each in a savepoint, so one failing lead keeps its old
// score (counted in failed_leads) without holding up the others.
func (s *Service) RescoreBatch(ctx context.Context) (bool, error) {
	worked, err := s.rescoreBatch(ctx, false)
	if err != nil && ctx.Err() == nil {
		return s.rescoreBatch(ctx, true)
	}
	return worked, err
}

func (s *Service) rescoreBatch(ctx context.Context, careful bool) (bool, error) {
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
		var n int
		if careful {
			n, err = s.rescoreEach(ctx, tx, &job, l)
		} else {
			n, err = s.rescoreAll(ctx, tx, &job, l)
		}
		if err != nil {
			return err
		}
		if n < s.batch {
			job.State, job.EndTime = JobSucceeded, &now
		}
		return tx.SaveJob(ctx, job)
	})
	return worked, err
}

// rescoreChunk is how many decided leads are written at a time: the
// writes of one chunk run while the next is being decided.
const rescoreChunk = 250

// rescoreAll rescores the job's next batch with batched reads and writes:
// the leads are locked and read in one query, their activities in another,
// their new scores are worked out on every core, and each chunk of them is
// written in one statement per table while the next chunk is worked out.
func (s *Service) rescoreAll(ctx context.Context, tx Store, job *RescoreJob, l live) (int, error) {
	leads, err := tx.LockLeadsAfter(ctx, job.Workspace, job.Cursor, s.batch)
	if err != nil || len(leads) == 0 {
		return 0, err
	}
	acts, err := tx.ActivitiesBetween(ctx, job.Workspace, job.Cursor, leads[len(leads)-1].ID)
	if err != nil {
		return 0, err
	}
	now := s.Now()
	out := make([]Rescored, len(leads))
	chunks := (len(leads) + rescoreChunk - 1) / rescoreChunk
	decided := make(chan int, chunks)
	stop := make(chan struct{})
	var producer sync.WaitGroup
	defer func() {
		close(stop)
		producer.Wait()
	}()
	// decide touches no store and the programs are safe for concurrent
	// use, so every core evaluates while the database writes.
	producer.Go(func() {
		workers := runtime.GOMAXPROCS(0)
		for c := range chunks {
			select {
			case <-stop:
				return
			default:
			}
			lo, hi := c*rescoreChunk, min((c+1)*rescoreChunk, len(leads))
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := lo + w; i < hi; i += workers {
						out[i] = s.decide(&leads[i], acts[leads[i].ID], l, nil, now)
					}
				})
			}
			wg.Wait()
			decided <- c
		}
	})
	for range chunks {
		c := <-decided
		// Every lead is stored, even with the same whole points: its score
		// time, model version and milli-points move on.
		chunk := out[c*rescoreChunk : min((c+1)*rescoreChunk, len(leads))]
		if err := tx.SaveRescored(ctx, job.Workspace, chunk); err != nil {
			return 0, err
		}
	}
	for i := range out {
		job.count(out[i].res, nil)
	}
	job.Cursor = leads[len(leads)-1].ID
	return len(leads), nil
}

// rescoreEach rescores the job's next batch lead by lead.
func (s *Service) rescoreEach(ctx context.Context, tx Store, job *RescoreJob, l live) (int, error) {
	ids, err := tx.LeadIDsAfter(ctx, job.Workspace, job.Cursor, s.batch)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		res, err := s.rescoreOne(ctx, tx, job.Workspace, id, l)
		if err != nil && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		job.count(res, err)
		job.Cursor = id
	}
	return len(ids), nil
}

func (j *RescoreJob) count(res rescoreResult, err error) {
	j.ProcessedLeads++
	switch {
	case err != nil:
		j.FailedLeads++
	default:
		if res.Changed {
			j.ChangedLeads++
		}
		if res.Qualified {
			j.QualifiedLeads++
		}
	}
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
