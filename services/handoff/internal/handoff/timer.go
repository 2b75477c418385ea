package handoff

import (
	"context"
	"errors"
	"fmt"
	"time"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/services/handoff/internal/routing"
)

// maxFiresPerPass bounds one pass, so a backlog cannot starve shutdown.
const maxFiresPerPass = 1000

// FireDueTimers is one pass of the SLA timers: it fires every deadline at or
// before the clock's now, one handoff per transaction, and
// returns how many fired.
//
// The timers are the due_time and escalate_time columns themselves. A pass
// claims a due handoff with FOR UPDATE SKIP LOCKED and moves it on (new
// state, new or no deadline) in the same transaction, so a deadline fires
// once however many replicas run passes, survives restarts (it is a row),
// and still fires when the service was down at the deadline (the pass takes
// everything at or before now).
func (s *Service) FireDueTimers(ctx context.Context) (int, error) {
	now := s.Now()
	n := 0
	for n < maxFiresPerPass {
		fired := false
		err := s.store.InTx(ctx, func(tx Tx) error {
			h, ok, err := tx.ClaimDueHandoff(ctx, now)
			if err != nil || !ok {
				return err
			}
			fired = true
			return s.breach(ctx, tx, &h, now)
		})
		if err != nil {
			return n, fmt.Errorf("fire sla timer: %w", err)
		}
		if !fired {
			break
		}
		n++
	}
	return n, nil
}

// breach handles a missed deadline of h: the owner's acceptance deadline
// (ASSIGNED) or the manager's escalation deadline (ESCALATED).
func (s *Service) breach(ctx context.Context, tx Tx, h *Handoff, now time.Time) error {
	ps, sla, err := s.periods(ctx, tx, h.Workspace, now)
	if err != nil {
		return err
	}
	b := Breach{
		Workspace: h.Workspace, ID: newID(), Handoff: h.ID, Lead: h.Lead,
		Owner: h.Owner, Team: h.Team, BreachTime: now,
	}
	switch h.State {
	case StateAssigned:
		b.DueTime = *h.DueTime
		manager, err := s.managerOf(ctx, tx, h, ps)
		if err != nil {
			return err
		}
		if sla.EscalationEnabled && !h.Escalated && manager != "" {
			deadline := sla.WorkingHours.Deadline(now, sla.EscalationDeadline)
			h.State, h.EscalatedTo, h.EscalateTime, h.Escalated = StateEscalated, manager, &deadline, true
			b.Manager, b.Action = manager, BreachEscalated
			if err := tx.InsertBreach(ctx, b); err != nil {
				return err
			}
			if err := s.save(ctx, tx, h, now, 0); err != nil {
				return err
			}
			if err := s.notify(ctx, tx, EventBreached, *h, &b, now); err != nil {
				return err
			}
			return s.notify(ctx, tx, EventEscalated, *h, &b, now)
		}
	case StateEscalated:
		b.DueTime, b.Manager = *h.EscalateTime, h.EscalatedTo
	default:
		return nil
	}
	return s.applyBreachAction(ctx, tx, h, b, sla, ps, now)
}

// managerOf is the owner's manager, else the team's.
func (s *Service) managerOf(ctx context.Context, tx Tx, h *Handoff, ps Periods) (string, error) {
	o, err := tx.GetOwner(ctx, h.Workspace, h.Owner, ps)
	if err != nil && !errors.Is(err, ErrOwnerNotFound) {
		return "", err
	}
	if o.Manager != "" {
		return o.Manager, nil
	}
	if h.Team == "" {
		return "", nil
	}
	t, err := tx.GetTeam(ctx, h.Workspace, h.Team)
	if errors.Is(err, ErrTeamNotFound) {
		return "", nil
	}
	return t.Manager, err
}

// applyBreachAction reassigns h within its team, skipping everyone who held
// it (queueing it when nobody is left), or returns it to marketing when so
// configured or when the reassignments are used up.
func (s *Service) applyBreachAction(ctx context.Context, tx Tx, h *Handoff, b Breach, sla SLASettings, ps Periods, now time.Time) error {
	breached := h.Owner
	h.endAssignment(OutcomeBreached, now, "")
	if sla.BreachAction == BreachReturn || h.Reassignments >= sla.MaxReassignments {
		h.State, h.CloseTime, h.CloseReason = StateReturned, &now, ReturnReason
		h.DueTime, h.EscalatedTo, h.EscalateTime = nil, "", nil
		b.Action = BreachReturned
		if err := tx.InsertBreach(ctx, b); err != nil {
			return err
		}
		if err := s.save(ctx, tx, h, now, 0); err != nil {
			return err
		}
		for _, ev := range []EventType{EventBreached, EventReturned} {
			if err := s.notify(ctx, tx, ev, *h, &b, now); err != nil {
				return err
			}
		}
		return tx.Publish(ctx, h.Workspace, h.Lead, &eventsv1.HandoffRejected{
			Handoff: "handoffs/" + h.ID, Owner: "owners/" + breached, Reason: ReturnReason,
		})
	}

	exclude := map[string]bool{}
	for _, a := range h.Assignments {
		exclude[a.Owner] = true
	}
	d := routing.Decision{Method: routing.MethodQueue, Team: h.Team,
		Explanation: fmt.Sprintf("SLA breached by owners/%s; nobody else in the team is eligible; queued", breached)}
	picked := false
	if h.Team != "" {
		team, found, err := tx.LockTeam(ctx, h.Workspace, h.Team, now, ps)
		if err != nil {
			return err
		}
		if found {
			p, err := tx.GetPolicy(ctx, h.Workspace)
			if err != nil {
				return err
			}
			prog, err := s.program(p, h.Workspace)
			if err != nil {
				return err
			}
			next, ok, err := routing.Pick(team, h.RoutedLead, exclude, prog.OwnerCondition(h.Routing.Rule))
			if err != nil {
				return err
			}
			if ok {
				next.Method, next.Rule, next.Revision = routing.MethodSLAReassign, h.Routing.Rule, h.Routing.Revision
				next.Explanation = fmt.Sprintf("SLA breached by owners/%s; %s", breached, next.Explanation)
				d, picked = next, true
			}
		}
	}
	if err := s.place(ctx, tx, h, d, sla, "", now); err != nil {
		return err
	}
	b.Action = BreachQueued
	if picked {
		h.Reassignments++
		b.Action = BreachReassigned
	}
	if err := tx.InsertBreach(ctx, b); err != nil {
		return err
	}
	if err := s.save(ctx, tx, h, now, 0); err != nil {
		return err
	}
	if err := s.notify(ctx, tx, EventBreached, *h, &b, now); err != nil {
		return err
	}
	if picked {
		return s.notify(ctx, tx, EventAssigned, *h, nil, now)
	}
	return nil
}
