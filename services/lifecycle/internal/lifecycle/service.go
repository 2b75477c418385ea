package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Mutation computes a lead's next state from its current one (nil when
// lifecycle never heard of the lead) under the workspace's settings. It
// returns nil to change nothing, and the moves to record.
type Mutation func(cur *Lead, s Settings) (next *Lead, steps []Transition, err error)

// Result is what Store.Update did.
type Result struct {
	Lead  Lead
	Steps []Transition
	// Replayed is true when an earlier call with the same request id had
	// already made the move; Steps then holds that move.
	Replayed bool
}

// TransitionCursor positions a page of transitions (newest first).
type TransitionCursor struct {
	Time time.Time `json:"t"`
	ID   int64     `json:"i"`
}

// Store persists lifecycles, their history and the workspace settings.
// Every method is confined to one workspace.
type Store interface {
	JourneyStore
	// Update locks the lead's lifecycle, runs fn on it, and writes the new
	// state and each step, with a StageChanged event per step, atomically.
	// With a requestID that an earlier step carried, it returns that step
	// and does not run fn. Erased and merged-away leads are ErrLeadNotFound.
	Update(ctx context.Context, workspace, lead, requestID string, fn Mutation) (Result, error)
	// UpdateFollowing is Update without a request id, for an incoming
	// event: a merged-away lead stands for the lead it was merged into (as
	// Resolve says), and the mutation is fn(that lead). An erased lead is
	// ErrLeadNotFound. A journey step, if given, is recorded on the lead
	// that stands for lead, with the change.
	UpdateFollowing(ctx context.Context, workspace, lead string, step *JourneyStep, fn func(current string) Mutation) (Result, error)
	// Lead returns the current lifecycle.
	Lead(ctx context.Context, workspace, lead string) (Lead, error)
	// LeadAt rebuilds the lifecycle as of an instant from the history.
	LeadAt(ctx context.Context, workspace, lead string, at time.Time) (Lead, error)
	// Transitions returns up to limit moves of a lead, newest first, after cursor.
	Transitions(ctx context.Context, workspace, lead string, after *TransitionCursor, limit int) ([]Transition, error)
	// Settings returns the workspace's settings, or DefaultSettings.
	Settings(ctx context.Context, workspace string) (Settings, error)
	// UpdateSettings locks the settings, runs fn on them and stores the result.
	UpdateSettings(ctx context.Context, workspace string, fn func(Settings) (Settings, error)) (Settings, error)
	// Resolve follows merges: it returns the lead that now stands for lead,
	// and whether lead was erased.
	Resolve(ctx context.Context, workspace, lead string) (current string, erased bool, err error)
	// Erase removes everything held about a lead and remembers that it is gone.
	Erase(ctx context.Context, workspace, lead string) error
	// Merge folds loser into survivor (see the README for what is kept).
	Merge(ctx context.Context, workspace, loser, survivor string) error
	// Funnel computes the funnel report from the history.
	Funnel(ctx context.Context, workspace string, q FunnelQuery) (FunnelCounts, error)
}

// Service implements the lifecycle use cases.
type Service struct {
	store Store
	now   func() time.Time
}

// NewService returns a Service over store.
func NewService(store Store) *Service { return &Service{store: store, now: time.Now} }

// WithStore returns a copy of s over another store, such as one bound to the
// transaction an event is received in.
func (s *Service) WithStore(store Store) *Service {
	c := *s
	c.store = store
	return &c
}

// SetClock replaces the clock, for tests.
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Now returns the service's current time.
func (s *Service) Now() time.Time { return s.now().UTC() }

// Lead returns a lead's current lifecycle.
func (s *Service) Lead(ctx context.Context, workspace, lead string) (Lead, error) {
	return s.store.Lead(ctx, workspace, lead)
}

// LeadAt returns a lead's lifecycle as it was at an instant.
func (s *Service) LeadAt(ctx context.Context, workspace, lead string, at time.Time) (Lead, error) {
	return s.store.LeadAt(ctx, workspace, lead, at)
}

// Transition moves a lead through the API.
func (s *Service) Transition(ctx context.Context, workspace, lead string, req TransitionRequest) (Lead, Transition, error) {
	if !req.To.Valid() {
		return Lead{}, Transition{}, fmt.Errorf("transition to invalid stage %d", req.To)
	}
	req.Cause.Trigger = TriggerAPI
	res, err := s.store.Update(ctx, workspace, lead, req.Cause.RequestID, func(cur *Lead, st Settings) (*Lead, []Transition, error) {
		return DecideTransition(cur, workspace, lead, req, st, s.Now())
	})
	if err != nil {
		return Lead{}, Transition{}, err
	}
	return res.Lead, res.Steps[len(res.Steps)-1], nil
}

// Transitions pages through a lead's history, newest first. A lead without
// any history is ErrLeadNotFound.
func (s *Service) Transitions(ctx context.Context, workspace, lead string, after *TransitionCursor, limit int) ([]Transition, error) {
	ts, err := s.store.Transitions(ctx, workspace, lead, after, limit)
	if err == nil && len(ts) == 0 && after == nil {
		return nil, ErrLeadNotFound
	}
	return ts, err
}

// Settings returns the workspace's settings.
func (s *Service) Settings(ctx context.Context, workspace string) (Settings, error) {
	return s.store.Settings(ctx, workspace)
}

// UpdateSettings changes the workspace's settings. etag, when set, must be
// the current one; change returns the settings to store.
func (s *Service) UpdateSettings(ctx context.Context, workspace, etag string, change func(Settings) Settings) (Settings, error) {
	return s.store.UpdateSettings(ctx, workspace, func(cur Settings) (Settings, error) {
		if etag != "" && etag != cur.Etag() {
			return Settings{}, ErrStaleSettings
		}
		next := change(cur)
		if err := next.Validate(); err != nil {
			return Settings{}, err
		}
		next.Version = cur.Version + 1
		next.UpdateTime = s.Now()
		return next, nil
	})
}

// HandleEvent applies an incoming event and records its journey step.
// Events about an erased lead are ignored (the result is empty); events
// about a merged-away lead apply to its survivor, which Result.Lead is then.
func (s *Service) HandleEvent(ctx context.Context, ev Event) (Result, error) {
	res, err := s.store.UpdateFollowing(ctx, ev.Workspace, ev.Lead, ev.Journey, func(current string) Mutation {
		ev.Lead = current
		return func(cur *Lead, _ Settings) (*Lead, []Transition, error) {
			next, steps := DecideEvent(cur, ev, s.Now())
			return next, steps, nil
		}
	})
	if errors.Is(err, ErrLeadNotFound) {
		return Result{}, nil // erased, or erased or merged while we looked: nothing to do
	}
	return res, err
}

// Erase removes a lead's lifecycle and history.
func (s *Service) Erase(ctx context.Context, workspace, lead string) error {
	return s.store.Erase(ctx, workspace, lead)
}

// Merge folds a merged-away lead into its survivor.
func (s *Service) Merge(ctx context.Context, workspace, loser, survivor string) error {
	if loser == survivor || survivor == "" {
		return nil
	}
	return s.store.Merge(ctx, workspace, loser, survivor)
}
