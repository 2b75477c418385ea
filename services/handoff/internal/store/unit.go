package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

// A unit handles the events of one delivery (outbox.BatchScope) that only
// update leads' routing copies: it locks and reads every copy they name in
// one round trip, serves LockLead from what it read, queues PutLead's
// writes, and sends them in one more round trip. Event by event, that took
// two round trips each.
//
// It holds every lead's turn (postgres.LockKey) and row lock from the start,
// so nothing else changes those copies until the transaction ends. Only
// LockLead and PutLead know of the unit: a delivery whose events might do
// anything else (open or cancel a handoff, erase, merge) gets no unit.
type unit struct {
	b     *pgx.Batch
	leads map[postgres.Key]*unitLead
}

// unitLead is a lead's routing copy as the unit's writes so far leave it.
type unitLead struct {
	c    handoff.LeadCopy
	gone bool // erased or merged into another lead
}

// copy is the lead's copy for a handler to change.
func (l *unitLead) copy() handoff.LeadCopy {
	if l.gone {
		return handoff.LeadCopy{}
	}
	return cloneCopy(l.c)
}

func cloneCopy(c handoff.LeadCopy) handoff.LeadCopy {
	if c.Facts != nil {
		c.Facts = proto.CloneOf(c.Facts)
	}
	return c
}

type unitKey struct{}

func unitOf(ctx context.Context) *unit {
	u, _ := ctx.Value(unitKey{}).(*unit)
	return u
}

// BeginUnit locks and reads the routing copies of leads in tx, as LockLead
// does, and returns a context in which LockLead and PutLead, for those
// leads, use what it read and queue their writes; flush sends them.
func (s *Store) BeginUnit(ctx context.Context, tx pgx.Tx, leads []postgres.Key) (context.Context, func(context.Context) error, error) {
	if tx == nil {
		return nil, nil, errors.New("begin unit outside a transaction")
	}
	// Every lead's turn first, then the rows: a merge holds one lead's turn
	// and row while it waits for the other's, so taking turn and row lead
	// by lead could close a cycle with it.
	refs, err := postgres.LockKeys(ctx, tx, leads)
	if err != nil {
		return nil, nil, fmt.Errorf("lock leads: %w", err)
	}
	b := &pgx.Batch{}
	read := make([]*unitLead, len(refs))
	for i, r := range refs {
		queueReadLead(b, r.Workspace, r.ID, &read[i])
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("lock leads: %w", err)
	}
	u := &unit{b: &pgx.Batch{}, leads: make(map[postgres.Key]*unitLead, len(refs))}
	for i, key := range refs {
		u.leads[key] = read[i]
	}
	flush := func(ctx context.Context) error {
		if err := postgres.SendBatch(ctx, tx, u.b); err != nil {
			return fmt.Errorf("write leads: %w", err)
		}
		return nil
	}
	return context.WithValue(ctx, unitKey{}, u), flush, nil
}
