package scoring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
)

// Errors the scoring domain reports.
var (
	ErrModelNotFound     = apperr.NotFound("scoring model not found")
	ErrModelExists       = apperr.AlreadyExists("scoring model already exists")
	ErrLeadNotFound      = apperr.NotFound("lead score not found")
	ErrJobNotFound       = apperr.NotFound("rescore job not found")
	ErrStaleEtag         = apperr.Aborted("the scoring model changed since it was read; read it again", apperr.Reason("ETAG_MISMATCH"))
	ErrModelImmutable    = apperr.FailedPrecondition("published and superseded models cannot change; copy the model into a new draft")
	ErrModelSuperseded   = apperr.FailedPrecondition("a superseded model cannot be published again; copy it into a new draft")
	ErrMissingPublishTag = apperr.InvalidArgument("etag is required", apperr.Field("etag", "must be the etag of the draft as reviewed"))
)

// ModelCursor positions a page of models (newest first).
type ModelCursor struct {
	CreateTime time.Time `json:"t"`
	ID         string    `json:"i"`
}

// LeadCursor positions a page of lead scores (highest first).
type LeadCursor struct {
	Total int64  `json:"s"`
	ID    string `json:"i"`
}

// LeadFilter narrows a list of lead scores.
type LeadFilter struct {
	MinTotal  *int64
	Grade     string
	Qualified *bool
}

// Store persists models, leads, activities and jobs of every workspace;
// every method is confined to the workspace it is given.
type Store interface {
	// InTx runs fn with a Store bound to one transaction (a savepoint when
	// the Store already is).
	InTx(ctx context.Context, fn func(tx Store) error) error
	// SaveRescored stores a batch of rescored leads of one workspace, all
	// locked by the transaction: their scores and qualifications only (not
	// facts or outcomes), their crossings and their events. The Store must
	// be in a transaction.
	SaveRescored(ctx context.Context, workspace string, rs []Rescored) error

	// EnsureWorkspace records the workspace with m as its live model,
	// unless it is known already. committed says it was recorded by a
	// transaction that committed (not this one, which may yet roll back).
	EnsureWorkspace(ctx context.Context, m Model) (committed bool, err error)
	// NextVersion locks the workspace and returns its next model version.
	NextVersion(ctx context.Context, workspace string) (int64, error)
	// CreateModel stores a new model. With a requestID already used in the
	// workspace it stores nothing and returns the earlier model.
	CreateModel(ctx context.Context, m Model, requestID string) (Model, error)
	GetModel(ctx context.Context, workspace, id string, forUpdate bool) (Model, error)
	// LiveModel returns the published model's id, version and etag.
	LiveModel(ctx context.Context, workspace string) (id string, version int64, etag string, err error)
	ListModels(ctx context.Context, workspace string, state ModelState, after *ModelCursor, limit int) ([]Model, error)
	SaveModel(ctx context.Context, m Model) error
	DeleteModel(ctx context.Context, workspace, id string) error

	// GetLead returns a lead, locked for the transaction when forUpdate.
	GetLead(ctx context.Context, workspace, id string, forUpdate bool) (Lead, error)
	// LockOrCreateLead returns the lead locked, creating it when missing.
	LockOrCreateLead(ctx context.Context, workspace, id string, at time.Time) (Lead, error)
	// OpenLead is what an event handler reads first, in one round trip:
	// the lead's turn (HoldLead), its tombstone, then the lead locked
	// (created when missing), and after the lock whatever else r asks for.
	// The Store must be in a transaction.
	OpenLead(ctx context.Context, r OpenLeadRequest) (OpenedLead, error)
	SaveLead(ctx context.Context, l Lead) error
	// SaveScored stores a locked lead whole, as SaveLead, with its
	// threshold crossing (if any) and its events, in as few round trips as
	// it can. The Store must be in a transaction.
	SaveScored(ctx context.Context, l Lead, c *Crossing, events []proto.Message) error
	DeleteLead(ctx context.Context, workspace, id string) error
	// HoldLead waits for the lead's turn and keeps it until the transaction
	// ends: erasing or merging a lead and handling an event about it take
	// turns, so an event that waited for an erasure sees its tombstone.
	HoldLead(ctx context.Context, workspace, id string) error
	ListLeads(ctx context.Context, workspace string, f LeadFilter, after *LeadCursor, limit int) ([]Lead, error)
	// LeadIDsAfter returns up to limit lead ids greater than after, in order.
	LeadIDsAfter(ctx context.Context, workspace, after string, limit int) ([]string, error)
	// LockLeadsAfter returns up to limit leads with ids greater than after,
	// in id order, locked for the transaction.
	LockLeadsAfter(ctx context.Context, workspace, after string, limit int) ([]Lead, error)
	CountLeads(ctx context.Context, workspace string) (int64, error)
	// OutcomeLeads returns up to limit leads whose outcome time is in
	// [start, end), most recent first, and whether more matched.
	OutcomeLeads(ctx context.Context, workspace string, start, end time.Time, limit int) ([]Lead, bool, error)

	// AddActivity stores an activity unless its id is known; it reports
	// whether it did.
	AddActivity(ctx context.Context, workspace, lead string, a Activity) (bool, error)
	Activities(ctx context.Context, workspace, lead string) ([]Activity, error)
	// ActivitiesOf returns the activities of several leads, by lead, each
	// lead's in occur_time order.
	ActivitiesOf(ctx context.Context, workspace string, leads []string) (map[string][]Activity, error)
	// ActivitiesBetween is ActivitiesOf for the leads whose ids are in
	// (after, last].
	ActivitiesBetween(ctx context.Context, workspace, after, last string) (map[string][]Activity, error)
	MoveActivities(ctx context.Context, workspace, from, to string) error
	Crossings(ctx context.Context, workspace, lead string, limit int) ([]Crossing, error)
	// Tombstone marks a lead erased (survivor "") or merged into survivor,
	// so late events about it are dropped or redirected.
	Tombstone(ctx context.Context, workspace, lead, survivor string) error
	// LeadTombstone reports whether lead was erased or merged, and into
	// which survivor.
	LeadTombstone(ctx context.Context, workspace, lead string) (survivor string, found bool, err error)

	CreateJob(ctx context.Context, j RescoreJob) error
	GetJob(ctx context.Context, workspace, id string) (RescoreJob, error)
	// JobOfModel returns the latest job of a model.
	JobOfModel(ctx context.Context, workspace, model string) (RescoreJob, error)
	ListJobs(ctx context.Context, workspace, model string, after *ModelCursor, limit int) ([]RescoreJob, error)
	// ClaimJob locks the oldest pending or running job no one else holds.
	ClaimJob(ctx context.Context) (RescoreJob, bool, error)
	SaveJob(ctx context.Context, j RescoreJob) error
	// CancelJobs cancels the workspace's pending and running jobs.
	CancelJobs(ctx context.Context, workspace string, at time.Time) error
}

// Service implements the scoring use cases.
type Service struct {
	store Store
	now   func() time.Time
	progs *ProgramCache

	// batch is how many leads one transaction of a rescore job does.
	batch int

	mu    sync.Mutex
	known map[string]bool // workspaces whose default model exists
	wake  chan struct{}   // nudges the rescore worker
}

// Option configures a Service.
type Option func(*Service)

// WithClock replaces the clock, for tests of decay.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithRescoreBatchSize sets how many leads one transaction of a rescore job
// rescores (RescoreBatchSize by default).
func WithRescoreBatchSize(n int) Option {
	return func(s *Service) {
		if n > 0 {
			s.batch = n
		}
	}
}

// NewService returns a Service over store.
func NewService(store Store, opts ...Option) *Service {
	s := &Service{store: store, now: time.Now, progs: NewProgramCache(1024), batch: RescoreBatchSize,
		known: map[string]bool{}, wake: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Now returns the service's current time.
func (s *Service) Now() time.Time { return s.now().UTC() }

// ensureWorkspace gives a workspace its default model on first use.
func (s *Service) ensureWorkspace(ctx context.Context, st Store, ws string) error {
	s.mu.Lock()
	known := s.known[ws]
	s.mu.Unlock()
	if known {
		return nil
	}
	now := s.Now()
	m := Model{
		Workspace: ws, ID: DefaultModelID, DisplayName: "Default model",
		Description: "The model every workspace starts with; see the scoring service README.",
		State:       StatePublished, Version: 1, Rules: DefaultRules(),
		CreateTime: now, UpdateTime: now, PublishTime: &now, Etag: newEtag(),
	}
	committed, err := st.EnsureWorkspace(ctx, m)
	if err != nil {
		return fmt.Errorf("ensure workspace: %w", err)
	}
	// Only remember a workspace seen committed: a transaction that created
	// it may still roll back, and st may be that very transaction.
	if committed {
		s.mu.Lock()
		s.known[ws] = true
		s.mu.Unlock()
	}
	return nil
}

// program returns the compiled rules of a stored model.
func (s *Service) program(ctx context.Context, st Store, m Model) (*Program, error) {
	return s.progs.Get(CacheKey(m.Workspace, m.ID, m.Etag), func() (Rules, error) { return m.Rules, nil })
}

// live is the workspace's published model, compiled.
type live struct {
	ID      string
	Version int64
	Prog    *Program
}

func (s *Service) live(ctx context.Context, st Store, ws string) (live, error) {
	if err := s.ensureWorkspace(ctx, st, ws); err != nil {
		return live{}, err
	}
	id, version, etag, err := st.LiveModel(ctx, ws)
	if err != nil {
		return live{}, fmt.Errorf("live model: %w", err)
	}
	return s.compileLive(ctx, st, ws, id, version, etag)
}

// liveOf is live for an opened lead, whose read already holds the live
// model's id, version and etag unless the workspace had none yet.
func (s *Service) liveOf(ctx context.Context, st Store, ws string, o OpenedLead) (live, error) {
	if !o.LiveFound {
		return s.live(ctx, st, ws)
	}
	if err := s.ensureWorkspace(ctx, st, ws); err != nil {
		return live{}, err
	}
	return s.compileLive(ctx, st, ws, o.LiveID, o.LiveVersion, o.LiveEtag)
}

// compileLive returns the compiled rules of the live model id at etag.
func (s *Service) compileLive(ctx context.Context, st Store, ws, id string, version int64, etag string) (live, error) {
	p, err := s.progs.Get(CacheKey(ws, id, etag), func() (Rules, error) {
		m, err := st.GetModel(ctx, ws, id, false)
		return m.Rules, err
	})
	if err != nil {
		return live{}, fmt.Errorf("compile live model %s: %w", id, err)
	}
	return live{ID: id, Version: version, Prog: p}, nil
}

func newEtag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewID returns a random id for models and jobs.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "m" + hex.EncodeToString(b[:])
}

// fillDefaults applies the creation defaults of the API.
func fillDefaults(r *Rules) {
	if len(r.HandRaiserTypes) == 0 {
		r.HandRaiserTypes = DefaultHandRaisers
	}
	if len(r.GradeBands) == 0 {
		r.GradeBands = DefaultGradeBands
	}
	if r.GradeBasis == 0 {
		r.GradeBasis = GradeBasisFit
	}
}

// CreateModel type-checks and stores a draft. With validateOnly it only
// checks.
func (s *Service) CreateModel(ctx context.Context, m Model, requestID string, validateOnly bool) (Model, error) {
	fillDefaults(&m.Rules)
	if _, err := Compile(m.Rules); err != nil {
		return Model{}, err
	}
	if m.ID == "" {
		m.ID = NewID()
	}
	now := s.Now()
	m.State, m.Version, m.CreateTime, m.UpdateTime, m.Etag = StateDraft, 0, now, now, newEtag()
	m.PublishTime, m.SupersedeTime = nil, nil
	if validateOnly {
		return m, nil
	}
	var out Model
	err := s.store.InTx(ctx, func(tx Store) error {
		if err := s.ensureWorkspace(ctx, tx, m.Workspace); err != nil {
			return err
		}
		var err error
		out, err = tx.CreateModel(ctx, m, requestID)
		return err
	})
	return out, err
}

// GetModel returns a model of the workspace.
func (s *Service) GetModel(ctx context.Context, ws, id string) (Model, error) {
	if err := s.ensureWorkspace(ctx, s.store, ws); err != nil {
		return Model{}, err
	}
	return s.store.GetModel(ctx, ws, id, false)
}

// ListModels pages through the workspace's models, newest first.
func (s *Service) ListModels(ctx context.Context, ws string, state ModelState, after *ModelCursor, limit int) ([]Model, error) {
	if err := s.ensureWorkspace(ctx, s.store, ws); err != nil {
		return nil, err
	}
	return s.store.ListModels(ctx, ws, state, after, limit)
}

// UpdateModel applies edit to a draft whose etag is etag (any when empty).
func (s *Service) UpdateModel(ctx context.Context, ws, id, etag string, edit func(*Model), validateOnly bool) (Model, error) {
	var out Model
	err := s.store.InTx(ctx, func(tx Store) error {
		m, err := tx.GetModel(ctx, ws, id, true)
		if err != nil {
			return err
		}
		if m.State != StateDraft {
			return ErrModelImmutable
		}
		if etag != "" && etag != m.Etag {
			return ErrStaleEtag
		}
		edit(&m)
		if _, err := Compile(m.Rules); err != nil {
			return err
		}
		m.UpdateTime, m.Etag = s.Now(), newEtag()
		out = m
		if validateOnly {
			return nil
		}
		return tx.SaveModel(ctx, m)
	})
	return out, err
}

// DeleteModel discards a draft.
func (s *Service) DeleteModel(ctx context.Context, ws, id, etag string) error {
	return s.store.InTx(ctx, func(tx Store) error {
		m, err := tx.GetModel(ctx, ws, id, true)
		if err != nil {
			return err
		}
		if m.State != StateDraft {
			return apperr.FailedPrecondition("published and superseded models are kept for the record")
		}
		if etag != "" && etag != m.Etag {
			return ErrStaleEtag
		}
		return tx.DeleteModel(ctx, ws, id)
	})
}

// PublishModel makes a draft the live model, supersedes the previous one
// and starts a rescore job. Publishing the live model again returns it and
// its job unchanged.
func (s *Service) PublishModel(ctx context.Context, ws, id, etag string) (Model, RescoreJob, error) {
	if etag == "" {
		return Model{}, RescoreJob{}, ErrMissingPublishTag
	}
	var m Model
	var job RescoreJob
	err := s.store.InTx(ctx, func(tx Store) error {
		if err := s.ensureWorkspace(ctx, tx, ws); err != nil {
			return err
		}
		var err error
		if m, err = tx.GetModel(ctx, ws, id, true); err != nil {
			return err
		}
		switch m.State {
		case StatePublished:
			job, err = tx.JobOfModel(ctx, ws, id)
			if errors.Is(err, ErrJobNotFound) {
				err = nil // the default model, live from the start
			}
			return err
		case StateSuperseded:
			return ErrModelSuperseded
		}
		if etag != m.Etag {
			return ErrStaleEtag
		}
		if _, err := Compile(m.Rules); err != nil {
			return err
		}
		version, err := tx.NextVersion(ctx, ws)
		if err != nil {
			return err
		}
		now := s.Now()
		prevID, _, _, err := tx.LiveModel(ctx, ws)
		if err != nil {
			return err
		}
		prev, err := tx.GetModel(ctx, ws, prevID, true)
		if err != nil {
			return err
		}
		prev.State, prev.SupersedeTime = StateSuperseded, &now
		if err := tx.SaveModel(ctx, prev); err != nil {
			return err
		}
		if err := tx.CancelJobs(ctx, ws, now); err != nil {
			return err
		}
		m.State, m.Version, m.PublishTime, m.UpdateTime, m.Etag = StatePublished, version, &now, now, newEtag()
		if err := tx.SaveModel(ctx, m); err != nil {
			return err
		}
		total, err := tx.CountLeads(ctx, ws)
		if err != nil {
			return err
		}
		job = RescoreJob{Workspace: ws, ID: NewID(), ModelID: id, ModelVersion: version, State: JobPending,
			TotalLeads: total, CreateTime: now}
		return tx.CreateJob(ctx, job)
	})
	if err != nil {
		return Model{}, RescoreJob{}, err
	}
	s.nudge()
	return m, job, nil
}

// LeadScore is a lead's score with its qualification and history.
type LeadScore struct {
	Lead          string
	ModelID       string
	ModelVersion  int64
	MQLThreshold  int64
	Score         Score
	Qualification *Qualification
	Crossings     []Crossing
}

// GetLeadScore computes a lead's score as of now, under the live model or
// under modelID when set (then without qualification and crossings).
func (s *Service) GetLeadScore(ctx context.Context, ws, leadID, modelID string) (LeadScore, error) {
	var prog *Program
	out := LeadScore{Lead: leadID}
	if modelID == "" {
		l, err := s.live(ctx, s.store, ws)
		if err != nil {
			return LeadScore{}, err
		}
		prog, out.ModelID, out.ModelVersion = l.Prog, l.ID, l.Version
	} else {
		m, err := s.GetModel(ctx, ws, modelID)
		if err != nil {
			return LeadScore{}, err
		}
		if prog, err = s.program(ctx, s.store, m); err != nil {
			return LeadScore{}, err
		}
		out.ModelID, out.ModelVersion = m.ID, m.Version
	}
	lead, err := s.store.GetLead(ctx, ws, leadID, false)
	if err != nil {
		return LeadScore{}, err
	}
	acts, err := s.store.Activities(ctx, ws, leadID)
	if err != nil {
		return LeadScore{}, err
	}
	out.MQLThreshold = prog.Rules().MQLThreshold
	out.Score = prog.Evaluate(lead.Facts, acts, s.Now())
	if modelID == "" {
		out.Qualification = lead.Qualification
		if out.Crossings, err = s.store.Crossings(ctx, ws, leadID, 100); err != nil {
			return LeadScore{}, err
		}
	}
	return out, nil
}

// ListLeadScores pages through the stored scores, highest total first.
func (s *Service) ListLeadScores(ctx context.Context, ws string, f LeadFilter, after *LeadCursor, limit int) ([]Lead, error) {
	return s.store.ListLeads(ctx, ws, f, after, limit)
}

// rescoreResult says what rescoring one lead did.
type rescoreResult struct {
	Changed   bool
	Qualified bool
}

// rescore recomputes a locked lead's score under the live model, records
// threshold crossings and qualification, emits LeadScored and
// LeadQualified, and stores the lead. newActivity is the activity that
// triggered it, if any. It is idempotent: rescoring an unchanged lead at
// the same moment changes nothing and emits nothing.
func (s *Service) rescore(ctx context.Context, tx Store, lead *Lead, l live, newActivity *Activity) (rescoreResult, error) {
	acts, err := tx.Activities(ctx, lead.Workspace, lead.ID)
	if err != nil {
		return rescoreResult{}, err
	}
	return s.rescoreWith(ctx, tx, lead, acts, l, newActivity)
}

// rescoreWith is rescore with the lead's activities already loaded.
func (s *Service) rescoreWith(ctx context.Context, tx Store, lead *Lead, acts []Activity, l live, newActivity *Activity) (rescoreResult, error) {
	r := s.decide(lead, acts, l, newActivity, s.Now())
	*lead = r.Lead
	return r.res, tx.SaveScored(ctx, *lead, r.Crossing, r.Events)
}

// Rescored is what rescoring one lead decided: the lead with its new score
// (and qualification, if it just qualified), the threshold crossing and the
// events to record with it.
type Rescored struct {
	Lead     Lead
	Crossing *Crossing
	// Events are LeadQualified and LeadScored payloads, in that order.
	Events []proto.Message
	res    rescoreResult
}

// decide recomputes a lead's score as of now under the live model and
// works out what changes; it touches no store, so a batch's leads can be
// decided in parallel. newActivity is the activity that triggered it, if
// any.
func (s *Service) decide(lead *Lead, acts []Activity, l live, newActivity *Activity, now time.Time) Rescored {
	out := Rescored{Lead: *lead}
	facts := NewFacts(lead.Facts)
	matches := make([]Match, len(acts))
	var raised *Activity
	for i, a := range acts {
		matches[i] = l.Prog.MatchActivity(facts, a)
		if newActivity != nil && a.ID == newActivity.ID && l.Prog.IsHandRaiser(matches[i]) {
			raised = &acts[i]
		}
	}
	score := l.Prog.Totals(l.Prog.FitMatches(facts), matches, now)
	threshold := l.Prog.Rules().MQLThreshold
	above := score.Total >= threshold
	version := strconv.FormatInt(l.Version, 10)

	if above != lead.AboveThreshold {
		out.Crossing = &Crossing{Up: above, Time: now, TotalScore: score.Total, ModelVersion: l.Version}
	}
	if lead.Qualification == nil && (raised != nil || above) {
		q := &Qualification{Reason: ReasonScoreThreshold, Time: now, TotalScore: score.Total, ModelVersion: l.Version}
		if raised != nil {
			q.Reason, q.Activity = ReasonHandRaiser, raised.ID
		}
		out.Lead.Qualification = q
		out.res.Qualified = true
		out.Events = append(out.Events, &eventsv1.LeadQualified{Reason: eventsv1.LeadQualified_Reason(q.Reason),
			TotalScore: q.TotalScore, ModelVersion: version, Activity: q.Activity})
	}
	old := Score{Fit: WholePoints(lead.FitMilli), Engagement: WholePoints(lead.EngagementMilli), Total: WholePoints(lead.TotalMilli)}
	out.res.Changed = lead.ScoreTime == nil || old.Fit != score.Fit || old.Engagement != score.Engagement ||
		old.Total != score.Total || lead.Grade != score.Grade
	if out.res.Changed {
		out.Events = append(out.Events, &eventsv1.LeadScored{FitScore: score.Fit, EngagementScore: score.Engagement,
			TotalScore: score.Total, Grade: score.Grade, ModelVersion: version})
	}
	n := &out.Lead
	n.ModelID, n.ModelVersion = l.ID, l.Version
	n.FitMilli, n.EngagementMilli, n.TotalMilli, n.Grade = score.FitMilli, score.EngagementMilli, score.TotalMilli, score.Grade
	n.AboveThreshold, n.ScoreTime = above, &now
	return out
}

// Event handlers lock the lead before they read the live model: a rescore
// job only starts once its model is live, so a handler that waited for the
// job's lock on the lead then sees the new model too and cannot overwrite
// the job's score with the old one.

// resolveLead follows a merged lead to its survivor; ok is false for an
// erased lead, whose events are dropped.
func resolveLead(ctx context.Context, tx Store, ws, id string) (string, bool, error) {
	for range 10 { // merges chain rarely; bound the walk anyway
		survivor, found, err := tx.LeadTombstone(ctx, ws, id)
		if err != nil || !found {
			return id, err == nil, err
		}
		if survivor == "" {
			return "", false, nil
		}
		id = survivor
	}
	return id, true, nil
}

// OpenLeadRequest says what Store.OpenLead reads.
type OpenLeadRequest struct {
	Workspace string
	Lead      string
	// CreateTime is the create time of the lead if it is not stored yet.
	CreateTime time.Time
	// FollowTombstones reports the lead's tombstone, if it has one, and
	// then neither creates nor changes the lead. Without it a tombstone is
	// not looked at.
	FollowTombstones bool
	// Score also reads, after the lock, the workspace's live model and
	// the lead's activities.
	Score bool
	// Activity, if set, is stored (unless its id is known) after the lock
	// and before the activities are read.
	Activity *Activity
}

// OpenedLead is what Store.OpenLead read.
type OpenedLead struct {
	// Tombstoned says the lead was erased (Survivor "") or merged into
	// Survivor; nothing else is set then.
	Tombstoned bool
	Survivor   string
	// Found is false if the lead had no row to lock: it was erased or
	// merged since its tombstone was looked up.
	Found bool
	Lead  Lead
	// The live model's id, version and etag, if LiveFound (the workspace
	// may have none yet). Read with Score.
	LiveFound   bool
	LiveID      string
	LiveVersion int64
	LiveEtag    string
	// Activities are the lead's, in occur_time order. Read with Score.
	Activities []Activity
	// ActivityAdded says the request's Activity was stored.
	ActivityAdded bool
}

// openLead follows r.Lead's tombstones to the lead an event applies to and
// opens that one as r asks. ok is false for an erased lead, whose events
// are dropped. Merges chain rarely; the walk is bounded
// anyway, and after ten hops the lead is taken as it is.
func (s *Service) openLead(ctx context.Context, tx Store, r OpenLeadRequest) (o OpenedLead, ok bool, err error) {
	r.CreateTime = s.Now()
	for hop := 0; ; hop++ {
		r.FollowTombstones = hop < 10
		if o, err = tx.OpenLead(ctx, r); err != nil {
			return OpenedLead{}, false, err
		}
		switch {
		case o.Tombstoned && o.Survivor == "":
			return OpenedLead{}, false, nil
		case o.Tombstoned:
			r.Lead = o.Survivor
		case !o.Found && hop < 10:
			// Erased or merged between the tombstone lookup and the
			// lock: the next look finds its tombstone.
		case !o.Found:
			return OpenedLead{}, false, ErrLeadNotFound
		default:
			return o, true, nil
		}
	}
}

// ApplyFacts records a lead's attributes as of at (from LeadCaptured or
// LeadUpdated) and rescores it. Older facts than those stored are ignored.
func (s *Service) ApplyFacts(ctx context.Context, tx Store, ws, leadID string, f LeadFacts, at time.Time) error {
	o, ok, err := s.openLead(ctx, tx, OpenLeadRequest{Workspace: ws, Lead: leadID, Score: true})
	if err != nil || !ok {
		return err
	}
	l, err := s.liveOf(ctx, tx, ws, o)
	if err != nil {
		return err
	}
	lead := o.Lead
	if lead.FactsTime != nil && at.Before(*lead.FactsTime) {
		return nil
	}
	f.Seniority = Seniority(f.Title)
	lead.Facts, lead.FactsTime = f, &at
	_, err = s.rescoreWith(ctx, tx, &lead, o.Activities, l, nil)
	return err
}

// RecordActivity stores a lead's activity, once per activity id, and
// rescores the lead; a hand-raiser qualifies it whatever its score.
func (s *Service) RecordActivity(ctx context.Context, tx Store, ws, leadID string, a Activity) error {
	o, ok, err := s.openLead(ctx, tx, OpenLeadRequest{Workspace: ws, Lead: leadID, Score: true, Activity: &a})
	if err != nil || !ok {
		return err
	}
	l, err := s.liveOf(ctx, tx, ws, o)
	if err != nil {
		return err
	}
	if !o.ActivityAdded {
		return nil // a redelivered activity changes nothing
	}
	lead := o.Lead
	_, err = s.rescoreWith(ctx, tx, &lead, o.Activities, l, &a)
	return err
}

// EraseLead removes everything scoring holds about a lead.
func (s *Service) EraseLead(ctx context.Context, tx Store, ws, leadID string) error {
	if err := tx.HoldLead(ctx, ws, leadID); err != nil {
		return err
	}
	if err := tx.DeleteLead(ctx, ws, leadID); err != nil {
		return err
	}
	return tx.Tombstone(ctx, ws, leadID, "")
}

// MergeLead moves the loser's activities to the survivor and rescores it.
// The survivor keeps its own facts, qualification and outcome.
func (s *Service) MergeLead(ctx context.Context, tx Store, ws, loser, survivor string) error {
	if err := tx.HoldLead(ctx, ws, loser); err != nil {
		return err
	}
	survivor, ok, err := resolveLead(ctx, tx, ws, survivor)
	if err != nil || !ok || survivor == loser {
		return err
	}
	lead, err := tx.LockOrCreateLead(ctx, ws, survivor, s.Now())
	if err != nil {
		return err
	}
	l, err := s.live(ctx, tx, ws)
	if err != nil {
		return err
	}
	if _, err := tx.GetLead(ctx, ws, loser, true); err != nil && !errors.Is(err, ErrLeadNotFound) {
		return err
	}
	if err := tx.MoveActivities(ctx, ws, loser, survivor); err != nil {
		return err
	}
	if err := tx.DeleteLead(ctx, ws, loser); err != nil {
		return err
	}
	if err := tx.Tombstone(ctx, ws, loser, survivor); err != nil {
		return err
	}
	_, err = s.rescore(ctx, tx, &lead, l, nil)
	return err
}

// StageMatters reports whether a lead's move to stage changes anything in
// scoring (ApplyStage): an outcome (Won, Lost) or a recycle.
func StageMatters(stage typesv1.Stage) bool {
	return stage == typesv1.Stage_STAGE_WON || stage == typesv1.Stage_STAGE_LOST || stage == typesv1.Stage_STAGE_RECYCLED
}

// ApplyStage records what lifecycle decided: WON and LOST are the outcomes
// backtests learn from; RECYCLED clears the qualification so the lead may
// qualify again.
func (s *Service) ApplyStage(ctx context.Context, tx Store, ws, leadID string, stage typesv1.Stage, at time.Time) error {
	if !StageMatters(stage) {
		return nil
	}
	var outcome string
	switch stage {
	case typesv1.Stage_STAGE_WON:
		outcome = OutcomeWon
	case typesv1.Stage_STAGE_LOST:
		outcome = OutcomeLost
	}
	o, ok, err := s.openLead(ctx, tx, OpenLeadRequest{Workspace: ws, Lead: leadID})
	if err != nil || !ok {
		return err
	}
	lead := o.Lead
	if outcome != "" {
		// Events may arrive out of order: the latest outcome wins.
		if lead.OutcomeTime != nil && at.Before(*lead.OutcomeTime) {
			return nil
		}
		lead.Outcome, lead.OutcomeTime = outcome, &at
	} else {
		if lead.Qualification != nil && at.Before(lead.Qualification.Time) {
			return nil // recycled before it last qualified
		}
		lead.Qualification = nil
	}
	return tx.SaveLead(ctx, lead)
}
