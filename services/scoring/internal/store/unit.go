package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
)

// opened is what OpenLead reports of what queueOpenLead read: only the
// tombstone of a tombstoned lead.
func opened(o scoring.OpenedLead) scoring.OpenedLead {
	if o.Tombstoned {
		return scoring.OpenedLead{Tombstoned: true, Survivor: o.Survivor}
	}
	return o
}

// A unit handles the events of one delivery (outbox.BatchScope) that only
// rescore leads on news of their facts or activities: it opens every lead
// they name (turn, lock, live model and activities) in one round trip,
// serves OpenLead from what it read, queues the activities it adds and
// SaveScored's writes, and sends them in one more. Event by event, that took
// two round trips each.
//
// It holds every lead's turn (postgres.LockKey) and row lock from the start.
// Only OpenLead and SaveScored know of the unit, so a delivery with other
// events gets none, and so does one naming a lead merged into another
// (whose survivor the unit did not open). Should a queued write find the
// world other than the unit read it (an activity id stored on another
// lead), the flush fails, the delivery with it, and the relay delivers the
// events one by one.
type unit struct {
	b     *pgx.Batch
	leads map[postgres.Key]*scoring.OpenedLead // as the unit's writes so far leave them
}

type unitKey struct{}

func unitOf(ctx context.Context) *unit {
	u, _ := ctx.Value(unitKey{}).(*unit)
	return u
}

var errUnitLeadChanged = errors.New("an activity id is taken by another lead")

// open is OpenLead for a lead the unit holds: r's activity, unless the lead
// has it already, is queued and added to what the unit holds.
func (u *unit) open(o *scoring.OpenedLead, r scoring.OpenLeadRequest) (scoring.OpenedLead, error) {
	out := *o
	a := r.Activity
	if a == nil || o.Tombstoned || slices.ContainsFunc(o.Activities, func(b scoring.Activity) bool { return b.ID == a.ID }) {
		return out, nil
	}
	props, err := activityProperties(*a)
	if err != nil {
		return scoring.OpenedLead{}, err
	}
	u.b.Queue(qAddActivity, r.Workspace, a.ID, r.Lead, int16(a.Type), a.URL, a.ContentID, props, a.OccurTime).
		Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != 1 {
				return errUnitLeadChanged
			}
			return nil
		})
	o.Activities = append(slices.Clip(o.Activities), *a)
	out.Activities, out.ActivityAdded = o.Activities, true
	return out, nil
}

// BeginUnit opens leads in tx as OpenLead does (following tombstones, with
// their live model and activities) and returns a context in which OpenLead
// and SaveScored, for those leads, use what it read and queue their writes;
// flush sends them. A nil flush means no unit: a lead was merged away or
// vanished, and the events are better handled one by one.
func (s *Store) BeginUnit(ctx context.Context, tx pgx.Tx, leads []postgres.Key, now time.Time) (context.Context, func(context.Context) error, error) {
	if tx == nil {
		return nil, nil, errors.New("begin unit outside a transaction")
	}
	// Every lead's turn first, then the rows: a merge holds one lead's turn
	// while it locks the other's row, so taking turn and row lead by lead
	// could close a cycle with it.
	refs, err := postgres.LockKeys(ctx, tx, leads)
	if err != nil {
		return nil, nil, fmt.Errorf("lock leads: %w", err)
	}
	b := &pgx.Batch{}
	read := make([]scoring.OpenedLead, len(refs))
	for i, r := range refs {
		req := scoring.OpenLeadRequest{
			Workspace: r.Workspace, Lead: r.ID, CreateTime: now, FollowTombstones: true, Score: true,
		}
		if err := queueOpenLead(b, req, &read[i]); err != nil {
			return nil, nil, err
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("open leads: %w", err)
	}
	u := &unit{b: &pgx.Batch{}, leads: make(map[postgres.Key]*scoring.OpenedLead, len(refs))}
	for i, key := range refs {
		o := opened(read[i])
		if o.Survivor != "" || (!o.Tombstoned && !o.Found) {
			return ctx, nil, nil
		}
		u.leads[key] = &o
	}
	flush := func(ctx context.Context) error {
		if err := postgres.SendBatch(ctx, tx, u.b); err != nil {
			return fmt.Errorf("write leads: %w", err)
		}
		return nil
	}
	return context.WithValue(ctx, unitKey{}, u), flush, nil
}
