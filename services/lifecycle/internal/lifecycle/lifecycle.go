// Package lifecycle is the Demand Waterfall: where each lead stands, which
// moves a workspace allows, the guards on them (BANT for SQL, listed reasons
// for Lost and Disqualified, a reason for going backwards), recycling, lead
// temperature, and the funnel computed from the history of moves.
//
// The package is pure policy plus use cases over a Store; it knows nothing
// of SQL or gRPC.
package lifecycle

import (
	"fmt"
	"strconv"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Errors the lifecycle domain reports. Guard refusals are FailedPrecondition
// errors whose precondition violation type names the rule (see the Rule
// constants).
var (
	ErrLeadNotFound   = apperr.NotFound("lead lifecycle not found")
	ErrStaleEtag      = apperr.Aborted("the lifecycle changed since it was read; re-read it and retry", apperr.Reason("ETAG_MISMATCH"))
	ErrStaleSettings  = apperr.Aborted("the lifecycle settings changed since they were read; re-read them and retry", apperr.Reason("ETAG_MISMATCH"))
	ErrTransitionRule = apperr.FailedPrecondition("transition refused")
)

// Rules that refuse a transition, as named in google.rpc.PreconditionFailure.
const (
	RuleNotAllowed    = "TRANSITION_NOT_ALLOWED"
	RuleSameStage     = "SAME_STAGE"
	RuleReasonMissing = "REASON_REQUIRED"
	RuleReasonNotList = "REASON_NOT_IN_LIST"
	RuleBANT          = "BANT_REQUIRED"
)

// BantItem is one BANT criterion.
type BantItem struct {
	Confirmed bool   `json:"confirmed,omitempty"`
	Note      string `json:"note,omitempty"`
}

// Bant is a sales assessment of Budget, Authority, Need and Timeframe.
type Bant struct {
	Budget    BantItem `json:"budget"`
	Authority BantItem `json:"authority"`
	Need      BantItem `json:"need"`
	Timeframe BantItem `json:"timeframe"`
}

// Qualifies reports whether the assessment lets a lead into SQL: need
// confirmed plus at least one of budget, authority or timeframe.
func (b *Bant) Qualifies() bool {
	return b != nil && b.Need.Confirmed && (b.Budget.Confirmed || b.Authority.Confirmed || b.Timeframe.Confirmed)
}

// ActorKind tells people from programs.
type ActorKind int

// The actor kinds, numbered like leadflow.lifecycle.v1.Actor.Kind.
const (
	ActorUnspecified ActorKind = iota
	ActorUser
	ActorAPIKey
	ActorService
)

var actorKindNames = [...]string{"", "user", "api_key", "service"}

// String returns the stored name of the kind.
func (k ActorKind) String() string {
	if k < 0 || int(k) >= len(actorKindNames) {
		return ""
	}
	return actorKindNames[k]
}

// ParseActorKind returns the kind stored as name.
func ParseActorKind(name string) ActorKind {
	for i, n := range actorKindNames {
		if n == name && i > 0 {
			return ActorKind(i)
		}
	}
	return ActorUnspecified
}

// Actor is who made a move: an opaque user id, an API key resource name or a
// service name. Never an email or a name.
type Actor struct {
	Kind ActorKind
	ID   string
}

// String formats the actor as "kind:id", as StageChanged carries it.
func (a Actor) String() string { return a.Kind.String() + ":" + a.ID }

// TriggerAPI is the trigger of moves made through TransitionLead.
const TriggerAPI = "api"

// Lead is a lead's lifecycle: its current stage and what temperature is
// derived from.
type Lead struct {
	Workspace      string
	ID             string
	Stage          Stage
	PreviousStage  Stage
	Reason         string
	StageEnterTime time.Time
	RecycleCount   int
	// Version counts transitions; it is the etag.
	Version int64
	// Bant is the latest assessment given with a transition.
	Bant *Bant
	// Score is the latest total score, nil until scored.
	Score     *int64
	ScoreTime time.Time
	// LastActivityTime is the latest activity heard of (capture included).
	LastActivityTime time.Time
	// Source and Campaign come from capture; the funnel filters on them.
	Source     string
	Campaign   string
	CreateTime time.Time
	UpdateTime time.Time
	// Temperature is set on leads read at a past instant (the one recorded
	// with the transition); otherwise use TemperatureAt.
	Temperature Temperature
	// ReadTime is set when the lead was read as of a past instant.
	ReadTime time.Time
}

// Etag identifies the lead's current state (AIP-154).
func (l *Lead) Etag() string { return strconv.FormatInt(l.Version, 10) }

// TemperatureAt derives the lead's temperature at now.
func (l *Lead) TemperatureAt(now time.Time) Temperature {
	if !l.ReadTime.IsZero() {
		return l.Temperature
	}
	return TemperatureOf(l.Score, l.LastActivityTime, now)
}

// Transition is one recorded move. The first transition of a lead has From
// StageUnspecified.
type Transition struct {
	ID        int64
	Workspace string
	Lead      string
	From      Stage
	To        Stage
	Reason    string
	Note      string
	Bant      *Bant
	Backward  bool
	Actor     Actor
	// Trigger is TriggerAPI or the event's full type name.
	Trigger   string
	EventID   string
	RequestID string
	TraceID   string
	Time      time.Time
	// Temperature is the lead's temperature when it moved.
	Temperature Temperature
}

// apply returns the lead after t. The caller has checked that t is allowed.
func (l Lead) apply(t Transition) Lead {
	l.PreviousStage, l.Stage = l.Stage, t.To
	l.Reason = t.Reason
	l.StageEnterTime = t.Time
	l.UpdateTime = t.Time
	l.Version++
	if t.To == StageRecycled {
		l.RecycleCount++
	}
	if t.Bant != nil {
		l.Bant = t.Bant
	}
	return l
}

// newLead returns the lifecycle of a lead first heard of at now, before its
// first transition is applied.
func newLead(workspace, id string, now time.Time) Lead {
	return Lead{Workspace: workspace, ID: id, CreateTime: now, UpdateTime: now, LastActivityTime: now}
}

// Cause is what makes a move: who, through what, in which trace.
type Cause struct {
	Actor     Actor
	Trigger   string
	EventID   string
	RequestID string
	TraceID   string
}

// TransitionRequest asks for a move through the API.
type TransitionRequest struct {
	To     Stage
	Reason string
	Note   string
	Bant   *Bant
	// Etag, when set, must be the lead's current etag.
	Etag  string
	Cause Cause
}

// refuse builds the FailedPrecondition error of a guard.
func refuse(rule, subject, description string) error {
	return ErrTransitionRule.With(apperr.Precondition(rule, subject, description))
}

// CheckTransition applies the workspace's graph and the guards to a move of
// the lead named subject from one stage, in order: same stage, graph,
// backward reason, listed reason, BANT.
func CheckTransition(s Settings, subject string, from Stage, req TransitionRequest) error {
	to := req.To
	switch {
	case from == to:
		return refuse(RuleSameStage, subject, fmt.Sprintf("the lead is already at %s", to))
	case !s.Allows(from, to):
		return refuse(RuleNotAllowed, subject, fmt.Sprintf("the workspace does not allow moving from %s to %s", from, to))
	case IsBackward(from, to) && req.Reason == "":
		return refuse(RuleReasonMissing, subject, fmt.Sprintf("moving back from %s to %s needs a reason", from, to))
	case to == StageLost && !hasReason(s.LostReasons, req.Reason):
		return refuse(RuleReasonNotList, subject, "a lead can only be Lost for a reason code from the workspace's lost_reasons")
	case to == StageDisqualified && !hasReason(s.DisqualifiedReasons, req.Reason):
		return refuse(RuleReasonNotList, subject, "a lead can only be Disqualified for a reason code from the workspace's disqualified_reasons")
	case to == StageSQL && !req.Bant.Qualifies():
		return refuse(RuleBANT, subject, "entering SQL needs Need confirmed plus at least one of Budget, Authority or Timeframe")
	}
	return nil
}

// entryStages are where a lead may enter the waterfall through the API.
func isEntryStage(s Stage) bool { return s == StageInquiry || s == StageSGL }

// DecideTransition is the pure core of TransitionLead: given the lead's
// current lifecycle (nil when lifecycle never heard of it), it returns the
// lead after the move and the move, or why the move is refused. A lead it
// never heard of may only enter at Inquiry or SGL.
func DecideTransition(cur *Lead, workspace, id string, req TransitionRequest, s Settings, now time.Time) (*Lead, []Transition, error) {
	subject := "leads/" + id + "/lifecycle"
	var lead Lead
	if cur == nil {
		if !isEntryStage(req.To) || req.Etag != "" {
			return nil, nil, ErrLeadNotFound
		}
		lead = newLead(workspace, id, now)
	} else {
		if req.Etag != "" && req.Etag != cur.Etag() {
			return nil, nil, ErrStaleEtag
		}
		if err := CheckTransition(s, subject, cur.Stage, req); err != nil {
			return nil, nil, err
		}
		lead = *cur
	}
	t := lead.step(req.To, req.Cause, now)
	t.Reason, t.Note, t.Bant = req.Reason, req.Note, req.Bant
	t.Backward = IsBackward(lead.Stage, req.To)
	next := lead.apply(t)
	return &next, []Transition{t}, nil
}

// step starts a transition of l to stage at now. History stays ordered per
// lead even if clocks of replicas disagree: a move is never dated before the
// one it follows.
func (l *Lead) step(to Stage, c Cause, now time.Time) Transition {
	at := now
	if at.Before(l.StageEnterTime) {
		at = l.StageEnterTime
	}
	return Transition{
		Workspace: l.Workspace, Lead: l.ID, From: l.Stage, To: to, Time: at,
		Actor: c.Actor, Trigger: c.Trigger, EventID: c.EventID, RequestID: c.RequestID, TraceID: c.TraceID,
		Temperature: TemperatureOf(l.Score, l.LastActivityTime, at),
	}
}
