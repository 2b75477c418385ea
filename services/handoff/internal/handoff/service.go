package handoff

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/services/handoff/internal/routing"
)

// EventType is a kind of handoff event sent to webhooks; the values match
// leadflow.handoff.v1.WebhookEventType.
type EventType int

// The webhook event types.
const (
	EventAssigned  EventType = 1
	EventAccepted  EventType = 2
	EventRejected  EventType = 3
	EventBreached  EventType = 4
	EventEscalated EventType = 5
	EventReturned  EventType = 6
)

// Notice is one handoff event for the webhooks.
type Notice struct {
	ID        string
	Type      EventType
	Handoff   Handoff
	Breach    *Breach
	OccurTime time.Time
}

// Clock tells the time; tests drive it by hand.
type Clock func() time.Time

// Service implements the handoff use cases.
type Service struct {
	store Store
	now   Clock
	// allowPrivateWebhooks lets webhook URLs name localhost and non-public
	// addresses (development and tests).
	allowPrivateWebhooks bool

	mu       sync.Mutex
	programs map[string]*routing.Program // by workspace, at its revision
}

// NewService returns a Service over store, telling time with now (time.Now
// when nil). Webhook URLs naming localhost or a non-public address are
// refused unless allowPrivateWebhooks.
func NewService(store Store, now Clock, allowPrivateWebhooks bool) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, now: now, allowPrivateWebhooks: allowPrivateWebhooks,
		programs: map[string]*routing.Program{}}
}

// Now returns the service's current time, truncated to what PostgreSQL keeps.
func (s *Service) Now() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// periods returns the capacity period starts at now in the workspace's SLA zone.
func (s *Service) periods(ctx context.Context, tx Tx, workspace string, now time.Time) (Periods, SLASettings, error) {
	sla, err := tx.GetSLA(ctx, workspace, now)
	if err != nil {
		return Periods{}, SLASettings{}, err
	}
	loc := sla.WorkingHours.Location()
	return Periods{
		Day:   PeriodStart(PeriodDay, now, loc),
		Week:  PeriodStart(PeriodWeek, now, loc),
		Month: PeriodStart(PeriodMonth, now, loc),
	}, sla, nil
}

// ---- Owners ----

// CreateOwner adds an owner; a retry with the same requestID returns it.
func (s *Service) CreateOwner(ctx context.Context, o Owner, requestID string) (Owner, error) {
	now := s.Now()
	if o.ID == "" {
		o.ID = shortID()
	}
	if o.Period == 0 {
		o.Period = PeriodWeek
	}
	o.CreateTime, o.UpdateTime, o.Version = now, now, 1
	var out Owner
	err := s.store.InTx(ctx, func(tx Tx) error {
		if err := s.checkTeams(ctx, tx, o.Workspace, o.Teams, "owner.teams"); err != nil {
			return err
		}
		created, err := tx.CreateOwner(ctx, o, requestID)
		if err != nil {
			return err
		}
		ps, _, err := s.periods(ctx, tx, o.Workspace, now)
		if err != nil {
			return err
		}
		out, err = tx.GetOwner(ctx, o.Workspace, created.ID, ps)
		return err
	})
	return out, err
}

func (s *Service) checkTeams(ctx context.Context, tx Tx, workspace string, teams []string, field string) error {
	if len(teams) == 0 {
		return nil
	}
	missing, err := tx.MissingTeams(ctx, workspace, teams)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return ErrTeamNotFound.With(apperr.Field(field, fmt.Sprintf("unknown teams: %v", missing)))
	}
	return nil
}

// GetOwner returns an owner with its current load.
func (s *Service) GetOwner(ctx context.Context, workspace, id string) (Owner, error) {
	ps, _, err := s.periods(ctx, s.store, workspace, s.Now())
	if err != nil {
		return Owner{}, err
	}
	return s.store.GetOwner(ctx, workspace, id, ps)
}

// ListOwners pages through owners by id.
func (s *Service) ListOwners(ctx context.Context, workspace string, f OwnerFilter, after *NameCursor, limit int) ([]Owner, error) {
	ps, _, err := s.periods(ctx, s.store, workspace, s.Now())
	if err != nil {
		return nil, err
	}
	return s.store.ListOwners(ctx, workspace, f, after, limit, ps)
}

// UpdateOwner applies change to the stored owner, guarded by etag.
func (s *Service) UpdateOwner(ctx context.Context, workspace, id, etag string, change func(*Owner)) (Owner, error) {
	now := s.Now()
	var out Owner
	err := s.store.InTx(ctx, func(tx Tx) error {
		ps, _, err := s.periods(ctx, tx, workspace, now)
		if err != nil {
			return err
		}
		o, err := tx.GetOwner(ctx, workspace, id, ps)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, o.Version); err != nil {
			return err
		}
		change(&o)
		o.Workspace, o.ID = workspace, id
		if o.Period == 0 {
			o.Period = PeriodWeek
		}
		if err := s.checkTeams(ctx, tx, workspace, o.Teams, "owner.teams"); err != nil {
			return err
		}
		if _, err := tx.UpdateOwner(ctx, o, now); err != nil {
			return err
		}
		out, err = tx.GetOwner(ctx, workspace, id, ps)
		return err
	})
	return out, err
}

// DeleteOwner erases an owner's personal fields and takes it out of
// routing; its open handoffs are routed again.
func (s *Service) DeleteOwner(ctx context.Context, workspace, id, etag string) error {
	now := s.Now()
	return s.store.InTx(ctx, func(tx Tx) error {
		ps, _, err := s.periods(ctx, tx, workspace, now)
		if err != nil {
			return err
		}
		o, err := tx.GetOwner(ctx, workspace, id, ps)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, o.Version); err != nil {
			return err
		}
		if err := tx.EraseOwner(ctx, workspace, id, o.Version, now); err != nil {
			return err
		}
		open, err := tx.OpenHandoffsOf(ctx, workspace, id)
		if err != nil {
			return err
		}
		for _, hid := range open {
			h, err := tx.GetHandoff(ctx, workspace, hid, true)
			if err != nil {
				return err
			}
			h.endAssignment(OutcomeReassigned, now, "")
			if err := s.route(ctx, tx, &h, now); err != nil {
				return err
			}
			if err := s.save(ctx, tx, &h, now, EventAssigned); err != nil {
				return err
			}
		}
		return nil
	})
}

// ---- Teams ----

// CreateTeam adds a team; a retry with the same requestID returns it.
func (s *Service) CreateTeam(ctx context.Context, t Team, requestID string) (Team, error) {
	now := s.Now()
	if t.ID == "" {
		t.ID = shortID()
	}
	if t.Strategy == 0 {
		t.Strategy = routing.RoundRobin
	}
	t.CreateTime, t.UpdateTime, t.Version = now, now, 1
	return s.store.CreateTeam(ctx, t, requestID)
}

// GetTeam returns a team.
func (s *Service) GetTeam(ctx context.Context, workspace, id string) (Team, error) {
	return s.store.GetTeam(ctx, workspace, id)
}

// ListTeams pages through teams by id.
func (s *Service) ListTeams(ctx context.Context, workspace string, after *NameCursor, limit int) ([]Team, error) {
	return s.store.ListTeams(ctx, workspace, after, limit)
}

// UpdateTeam applies change to the stored team, guarded by etag.
func (s *Service) UpdateTeam(ctx context.Context, workspace, id, etag string, change func(*Team)) (Team, error) {
	now := s.Now()
	var out Team
	err := s.store.InTx(ctx, func(tx Tx) error {
		t, err := tx.GetTeam(ctx, workspace, id)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, t.Version); err != nil {
			return err
		}
		change(&t)
		t.Workspace, t.ID = workspace, id
		if t.Strategy == 0 {
			t.Strategy = routing.RoundRobin
		}
		out, err = tx.UpdateTeam(ctx, t, now)
		return err
	})
	return out, err
}

// DeleteTeam removes a team the routing policy does not name.
func (s *Service) DeleteTeam(ctx context.Context, workspace, id, etag string) error {
	return s.store.InTx(ctx, func(tx Tx) error {
		t, err := tx.GetTeam(ctx, workspace, id)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, t.Version); err != nil {
			return err
		}
		p, err := tx.GetPolicy(ctx, workspace)
		if err != nil {
			return err
		}
		if p.FallbackTeam == id {
			return ErrTeamInUse.With(apperr.Precondition("ROUTING_POLICY", "routingPolicy", "the fallback team is "+id))
		}
		for _, r := range p.Rules {
			if r.Team == id {
				return ErrTeamInUse.With(apperr.Precondition("ROUTING_POLICY", "routingPolicy",
					fmt.Sprintf("rule %q targets team %s", r.ID, id)))
			}
		}
		return tx.DeleteTeam(ctx, workspace, id, t.Version)
	})
}

// ---- Routing policy ----

// GetPolicy returns the workspace's routing policy.
func (s *Service) GetPolicy(ctx context.Context, workspace string) (Policy, error) {
	return s.store.GetPolicy(ctx, workspace)
}

// UpdatePolicy applies change to the policy, guarded by etag, after
// type-checking every condition and checking every team exists. With
// validateOnly nothing is stored.
func (s *Service) UpdatePolicy(ctx context.Context, workspace, etag string, validateOnly bool, change func(*Policy)) (Policy, error) {
	now := s.Now()
	var out Policy
	err := s.store.InTx(ctx, func(tx Tx) error {
		p, err := tx.GetPolicy(ctx, workspace)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, p.Revision); err != nil {
			return err
		}
		change(&p)
		if _, err := routing.Compile(p.Policy); err != nil {
			return err
		}
		var teams []string
		for _, r := range p.Rules {
			teams = append(teams, r.Team)
		}
		if p.FallbackTeam != "" {
			teams = append(teams, p.FallbackTeam)
		}
		slices.Sort(teams)
		missing, err := tx.MissingTeams(ctx, workspace, slices.Compact(teams))
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			var opts []apperr.Option
			for _, m := range missing {
				opts = append(opts, apperr.Precondition("TEAM", "teams/"+m, "no such team"))
			}
			return ErrUnknownTeam.With(opts...)
		}
		if validateOnly {
			out = p
			return nil
		}
		p.Revision++
		p.UpdateTime = now
		if err := tx.PutPolicy(ctx, workspace, p); err != nil {
			return err
		}
		out = p
		return nil
	})
	return out, err
}

// program returns the compiled policy, cached per workspace and revision.
func (s *Service) program(p Policy, workspace string) (*routing.Program, error) {
	s.mu.Lock()
	prog, ok := s.programs[workspace]
	s.mu.Unlock()
	if ok && prog.Policy().Revision == p.Revision {
		return prog, nil
	}
	prog, err := routing.Compile(p.Policy)
	if err != nil {
		// A stored policy was checked when saved; this is a CEL upgrade gone wrong.
		return nil, fmt.Errorf("compile stored policy revision %d: %w", p.Revision, err)
	}
	s.mu.Lock()
	s.programs[workspace] = prog
	s.mu.Unlock()
	return prog, nil
}

// ---- SLA settings ----

// GetSLA returns the workspace's SLA settings.
func (s *Service) GetSLA(ctx context.Context, workspace string) (SLASettings, error) {
	return s.store.GetSLA(ctx, workspace, s.Now())
}

// UpdateSLA applies change to the SLA settings, guarded by etag.
func (s *Service) UpdateSLA(ctx context.Context, workspace, etag string, change func(*SLASettings)) (SLASettings, error) {
	now := s.Now()
	var out SLASettings
	err := s.store.InTx(ctx, func(tx Tx) error {
		cur, err := tx.GetSLA(ctx, workspace, now)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, cur.Version); err != nil {
			return err
		}
		change(&cur)
		if wh := cur.WorkingHours; wh.TimeZone != "" {
			if _, err := time.LoadLocation(wh.TimeZone); err != nil {
				return apperr.InvalidArgument("invalid working hours",
					apperr.Field("sla_settings.working_hours.time_zone", "unknown IANA time zone"))
			}
		}
		cur.Workspace, cur.UpdateTime = workspace, now
		cur.Version++
		if err := tx.PutSLA(ctx, cur); err != nil {
			return err
		}
		out = cur
		return nil
	})
	return out, err
}

// ListBreaches pages through missed deadlines, newest first.
func (s *Service) ListBreaches(ctx context.Context, workspace string, f BreachFilter, after *TimeCursor, limit int) ([]Breach, error) {
	return s.store.ListBreaches(ctx, workspace, f, after, limit)
}

// ---- Handoffs ----

// GetHandoff returns a handoff.
func (s *Service) GetHandoff(ctx context.Context, workspace, id string) (Handoff, error) {
	return s.store.GetHandoff(ctx, workspace, id, false)
}

// LeadOrigin returns the traceparent of the lead's capture, "" if unknown.
func (s *Service) LeadOrigin(ctx context.Context, workspace, lead string) (string, error) {
	return s.store.LeadOrigin(ctx, workspace, lead)
}

// GetLeadHandoff returns the lead's latest handoff.
func (s *Service) GetLeadHandoff(ctx context.Context, workspace, lead string) (Handoff, error) {
	h, ok, err := s.store.LatestHandoff(ctx, workspace, lead, false)
	if err != nil {
		return Handoff{}, err
	}
	if !ok {
		return Handoff{}, ErrHandoffNotFound
	}
	return h, nil
}

// ListHandoffs pages through handoffs.
func (s *Service) ListHandoffs(ctx context.Context, workspace string, f HandoffFilter, after *HandoffCursor, limit int) ([]Handoff, error) {
	return s.store.ListHandoffs(ctx, workspace, f, after, limit)
}

// CreateHandoff hands a lead to sales by hand: to owner when given, else
// through routing. A retry with the same requestID returns the original.
func (s *Service) CreateHandoff(ctx context.Context, workspace, lead, owner, reason, user, requestID string) (Handoff, error) {
	now := s.Now()
	var out Handoff
	err := s.store.InTx(ctx, func(tx Tx) error {
		if requestID != "" {
			if h, ok, err := tx.HandoffByRequest(ctx, workspace, requestID); err != nil || ok {
				out = h
				return err
			}
		}
		h, err := s.open(ctx, tx, workspace, lead, OriginManual, now, requestID, func(h *Handoff) error {
			if owner == "" {
				return s.route(ctx, tx, h, now)
			}
			return s.assignTo(ctx, tx, h, owner, reason, user, now)
		})
		if err != nil {
			return err
		}
		out = h
		return nil
	})
	return out, err
}

// open creates a handoff for lead with place deciding its owner. It fails
// with ErrOpenHandoffExists when the lead has one open.
func (s *Service) open(ctx context.Context, tx Tx, workspace, lead string, origin Origin, now time.Time, requestID string,
	place func(*Handoff) error) (Handoff, error) {
	c, gone, err := tx.LockLead(ctx, workspace, lead)
	if err != nil {
		return Handoff{}, err
	}
	if gone {
		return Handoff{}, apperr.FailedPrecondition("the lead was erased or merged into another lead")
	}
	if latest, ok, err := tx.LatestHandoff(ctx, workspace, lead, false); err != nil {
		return Handoff{}, err
	} else if ok && latest.State.Open() {
		return Handoff{}, ErrOpenHandoffExists
	}
	h := Handoff{
		Workspace: workspace, ID: newID(), Lead: lead, Origin: origin,
		RoutedLead: c.Facts, CreateTime: now, UpdateTime: now, Version: 1,
	}
	if err := place(&h); err != nil {
		return Handoff{}, err
	}
	if err := tx.InsertHandoff(ctx, h, requestID); err != nil {
		return Handoff{}, err
	}
	if h.State == StateAssigned {
		if err := s.notify(ctx, tx, EventAssigned, h, nil, now); err != nil {
			return Handoff{}, err
		}
	}
	return h, nil
}

// route places h through the routing policy, as a new assignment or in
// the queue.
func (s *Service) route(ctx context.Context, tx Tx, h *Handoff, now time.Time) error {
	p, err := tx.GetPolicy(ctx, h.Workspace)
	if err != nil {
		return err
	}
	prog, err := s.program(p, h.Workspace)
	if err != nil {
		return err
	}
	ps, sla, err := s.periods(ctx, tx, h.Workspace, now)
	if err != nil {
		return err
	}
	d, err := prog.Route(h.RoutedLead, func(id string) (*routing.Team, bool, error) {
		return tx.LockTeam(ctx, h.Workspace, id, now, ps)
	})
	if err != nil {
		return err
	}
	return s.place(ctx, tx, h, d, sla, "", now)
}

// place records decision d on h: a new current assignment, or the queue.
func (s *Service) place(ctx context.Context, tx Tx, h *Handoff, d routing.Decision, sla SLASettings, user string, now time.Time) error {
	r := Routing{Method: d.Method, Rule: d.Rule, Revision: d.Revision, Strategy: d.Strategy, Explanation: d.Explanation}
	h.Routing, h.Team = r, d.Team
	h.EscalatedTo, h.EscalateTime = "", nil
	if d.Owner == "" {
		h.State, h.Owner, h.DueTime = StateQueued, "", nil
		return nil
	}
	if d.Method != routing.MethodManual {
		if err := tx.SaveTeamState(ctx, h.Workspace, d.Team, d.Cursor, d.Weights); err != nil {
			return err
		}
	}
	due := sla.WorkingHours.Deadline(now, sla.AcceptanceDeadline)
	h.State, h.Owner, h.DueTime = StateAssigned, d.Owner, &due
	h.Assignments = append(h.Assignments, Assignment{
		Owner: d.Owner, Team: d.Team, Routing: r, AssignTime: now, DueTime: &due, User: user,
	})
	return tx.Publish(ctx, h.Workspace, h.Lead, &eventsv1.HandoffAssigned{
		Handoff: "handoffs/" + h.ID, Owner: "owners/" + d.Owner, Team: nameOf("teams", d.Team), Rule: d.Rule,
	})
}

// nameOf returns "collection/id", or "" for an empty id.
func nameOf(collection, id string) string {
	if id == "" {
		return ""
	}
	return collection + "/" + id
}

// assignTo gives h to owner by a person's choice.
func (s *Service) assignTo(ctx context.Context, tx Tx, h *Handoff, owner, reason, user string, now time.Time) error {
	ps, sla, err := s.periods(ctx, tx, h.Workspace, now)
	if err != nil {
		return err
	}
	o, err := tx.GetOwner(ctx, h.Workspace, owner, ps)
	if err != nil {
		return err
	}
	if o.Disabled {
		return ErrOwnerDisabled
	}
	team := h.Team
	if !slices.Contains(o.Teams, team) {
		team = ""
		if len(o.Teams) > 0 {
			team = o.Teams[0]
		}
	}
	explanation := "assigned by hand"
	if reason != "" {
		explanation += ": " + reason
	}
	return s.place(ctx, tx, h, routing.Decision{Method: routing.MethodManual, Team: team, Owner: owner, Explanation: explanation}, sla, user, now)
}

// save writes h and notifies webhooks of ev (when non-zero).
func (s *Service) save(ctx context.Context, tx Tx, h *Handoff, now time.Time, ev EventType) error {
	h.UpdateTime = now
	if err := tx.UpdateHandoff(ctx, h); err != nil {
		return err
	}
	if ev == EventAssigned && h.State != StateAssigned {
		return nil // queued: nobody to tell
	}
	if ev != 0 {
		return s.notify(ctx, tx, ev, *h, nil, now)
	}
	return nil
}

func (s *Service) notify(ctx context.Context, tx Tx, typ EventType, h Handoff, b *Breach, now time.Time) error {
	return tx.Notify(ctx, Notice{ID: newID(), Type: typ, Handoff: h, Breach: b, OccurTime: now})
}

// decide loads h for a decision by its owner, checking state and etag.
func (s *Service) decide(ctx context.Context, tx Tx, workspace, id, etag string) (Handoff, error) {
	h, err := tx.GetHandoff(ctx, workspace, id, true)
	if err != nil {
		return Handoff{}, err
	}
	if err := checkEtag(etag, h.Version); err != nil {
		return Handoff{}, err
	}
	if h.State != StateAssigned && h.State != StateEscalated {
		return Handoff{}, ErrHandoffNotOpen
	}
	return h, nil
}

// Accept records that the owner takes the lead and tells lifecycle.
func (s *Service) Accept(ctx context.Context, workspace, id, etag, note, user string) (Handoff, error) {
	now := s.Now()
	var out Handoff
	err := s.store.InTx(ctx, func(tx Tx) error {
		h, err := s.decide(ctx, tx, workspace, id, etag)
		if err != nil {
			return err
		}
		h.endAssignment(OutcomeAccepted, now, user)
		h.State, h.AcceptTime, h.AcceptNote = StateAccepted, &now, note
		h.DueTime, h.EscalatedTo, h.EscalateTime = nil, "", nil
		if err := s.save(ctx, tx, &h, now, EventAccepted); err != nil {
			return err
		}
		out = h
		return tx.Publish(ctx, workspace, h.Lead, &eventsv1.HandoffAccepted{
			Handoff: "handoffs/" + h.ID, Owner: "owners/" + h.Owner,
		})
	})
	return out, err
}

// Reject records that the owner refuses the lead and tells lifecycle.
func (s *Service) Reject(ctx context.Context, workspace, id, etag, reason, user string) (Handoff, error) {
	now := s.Now()
	var out Handoff
	err := s.store.InTx(ctx, func(tx Tx) error {
		h, err := s.decide(ctx, tx, workspace, id, etag)
		if err != nil {
			return err
		}
		h.endAssignment(OutcomeRejected, now, user)
		h.State, h.RejectTime, h.RejectReason = StateRejected, &now, reason
		h.DueTime, h.EscalatedTo, h.EscalateTime = nil, "", nil
		if err := s.save(ctx, tx, &h, now, EventRejected); err != nil {
			return err
		}
		out = h
		return tx.Publish(ctx, workspace, h.Lead, &eventsv1.HandoffRejected{
			Handoff: "handoffs/" + h.ID, Owner: "owners/" + h.Owner, Reason: reason,
		})
	})
	return out, err
}

// Assign gives an open handoff to owner with a fresh deadline.
func (s *Service) Assign(ctx context.Context, workspace, id, etag, owner, reason, user string) (Handoff, error) {
	now := s.Now()
	var out Handoff
	err := s.store.InTx(ctx, func(tx Tx) error {
		h, err := tx.GetHandoff(ctx, workspace, id, true)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, h.Version); err != nil {
			return err
		}
		if !h.State.Open() {
			return ErrHandoffNotOpen
		}
		prev := h.current()
		if err := s.assignTo(ctx, tx, &h, owner, reason, user, now); err != nil {
			return err
		}
		if prev != nil {
			// assignTo appended; the previous current is the one before last.
			a := &h.Assignments[len(h.Assignments)-2]
			a.Outcome, a.EndTime = OutcomeReassigned, &now
		}
		if err := s.save(ctx, tx, &h, now, EventAssigned); err != nil {
			return err
		}
		out = h
		return nil
	})
	return out, err
}

// shortID returns a generated resource id that fits [a-z0-9][a-z0-9-]{0,62}.
func shortID() string { return uuid.NewString() }
