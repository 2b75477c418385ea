package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

// A unit handles the events of one delivery together (outbox.BatchScope):
// it locks and reads every lead they name in one round trip, lets each event
// decide on the state the earlier ones left, queues all their writes, and
// sends them in one more round trip. Event by event, that took two or three
// round trips each.
//
// A unit trusts what it read for the whole transaction: it holds the key of
// every lead it read (postgres.LockKey), so no erasure, merge or creation of
// those leads can commit in between. Should a queued write still find the
// world changed (a lead it inserts exists or is gone), the flush fails, the
// delivery with it, and the relay delivers the events one by one.
type unit struct {
	b     *pgx.Batch
	leads map[postgres.Key]*locked // by the lead an event names; leads merged into one share its state
}

type unitKey struct{}

func unitOf(ctx context.Context) *unit {
	u, _ := ctx.Value(unitKey{}).(*unit)
	return u
}

var errUnitLeadChanged = errors.New("a lead changed under a batch of events")

// BeginUnit locks and reads leads (following merges) in the store's
// transaction and returns a context in which UpdateFollowing and
// RecordStepFollowing, for those leads, queue their writes instead of making
// them; flush sends them. The store must be bound to a transaction.
func (s *Store) BeginUnit(ctx context.Context, leads []postgres.Key) (context.Context, func(context.Context) error, error) {
	if s.tx == nil {
		return nil, nil, errors.New("begin unit: the store is not bound to a transaction")
	}
	refs, err := postgres.LockKeys(ctx, s.tx, leads) // every turn before any row
	if err != nil {
		return nil, nil, fmt.Errorf("lock leads: %w", err)
	}
	b := &pgx.Batch{}
	rows := make([]lockRow, len(refs))
	for i, r := range refs {
		b.Queue(lockLeadSQL, r.Workspace, r.ID, true, maxMergeChain).Query(func(res pgx.Rows) error {
			var err error
			rows[i], err = pgx.CollectExactlyOneRow(res, pgx.RowToStructByName[lockRow])
			return err
		})
	}
	if err := s.tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("lock leads: %w", err)
	}
	u := &unit{b: &pgx.Batch{}, leads: make(map[postgres.Key]*locked, len(refs))}
	byTarget := map[postgres.Key]*locked{}
	for i, key := range refs {
		l, err := rows[i].locked(key.ID, true)
		if err != nil {
			return nil, nil, err
		}
		target := postgres.Key{Workspace: key.Workspace, ID: l.lead}
		if l.gone {
			u.leads[key] = &l
			continue
		}
		if byTarget[target] == nil {
			byTarget[target] = &l
		}
		u.leads[key] = byTarget[target]
	}
	flush := func(ctx context.Context) error {
		if err := postgres.SendBatch(ctx, s.tx, u.b); err != nil {
			return fmt.Errorf("write leads: %w", err)
		}
		return nil
	}
	return context.WithValue(ctx, unitKey{}, u), flush, nil
}

// updateInUnit is update for a lead the unit u holds: it decides on the
// state earlier events left and queues the writes update would make.
func (s *Store) updateInUnit(ctx context.Context, tx pgx.Tx, u *unit, l *locked, journey *lifecycle.JourneyStep,
	fn func(current string) lifecycle.Mutation,
) (lifecycle.Result, error) {
	if l.gone {
		return lifecycle.Result{}, lifecycle.ErrLeadNotFound
	}
	cur := l.cur
	next, steps, err := fn(l.lead)(cur, l.settings)
	if err != nil {
		return lifecycle.Result{}, err
	}
	if next == nil && cur == nil {
		return lifecycle.Result{}, lifecycle.ErrLeadNotFound
	}
	if next == nil {
		if journey != nil {
			queueStep(u.b, cur.Workspace, l.lead, *journey)
		}
		return lifecycle.Result{Lead: *cur}, nil
	}
	if cur == nil {
		args, err := leadArgs(*next)
		if err != nil {
			return lifecycle.Result{}, err
		}
		u.b.Queue(insertLeadSQL+"\nRETURNING lead_id", args...).QueryRow(func(row pgx.Row) error {
			var id string
			if err := row.Scan(&id); errors.Is(err, pgx.ErrNoRows) {
				return errUnitLeadChanged
			} else if err != nil {
				return fmt.Errorf("insert lead: %w", err)
			}
			return nil
		})
	} else if err := queueLeadUpdate(u.b, *cur, *next); err != nil {
		return lifecycle.Result{}, err
	}
	if journey != nil {
		queueStep(u.b, next.Workspace, l.lead, *journey)
	}
	var enter time.Time
	if cur != nil {
		enter = cur.StageEnterTime
	}
	for i := range steps {
		if err := queueTransition(u.b, &steps[i], enter); err != nil {
			return lifecycle.Result{}, err
		}
		enter = steps[i].Time
	}
	if err := s.queueMoves(ctx, tx, u.b, steps); err != nil {
		return lifecycle.Result{}, err
	}
	after := *next
	l.cur = &after
	return lifecycle.Result{Lead: *next, Steps: steps}, nil
}

// RecordStepFollowing records st on the lead that stands for lead now (its
// survivor, after merges); an erased lead gets none. In a unit that holds
// lead, the write is queued.
func (s *Store) RecordStepFollowing(ctx context.Context, workspace, lead string, st lifecycle.JourneyStep) error {
	if u := unitOf(ctx); u != nil {
		if l := u.leads[postgres.Key{Workspace: workspace, ID: lead}]; l != nil {
			if !l.gone {
				queueStep(u.b, workspace, l.lead, st)
			}
			return nil
		}
	}
	target, erased, err := s.Resolve(ctx, workspace, lead)
	if err != nil || erased {
		return err
	}
	return s.RecordStep(ctx, workspace, target, st)
}
