// Package handoff passes qualified leads to sales: it routes each one to an
// owner exactly once per qualification, holds the owner to the acceptance
// SLA (escalating, reassigning or returning the lead on a breach), records
// accept and reject decisions and tells lifecycle and subscribed CRMs.
//
// The package knows nothing of gRPC or SQL: it works through Store, whose
// transactions carry every change together with its events and webhook
// notices.
package handoff

import (
	"time"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/services/handoff/internal/routing"
)

// Errors the handoff domain reports.
var (
	ErrOwnerNotFound        = apperr.NotFound("owner not found")
	ErrOwnerExists          = apperr.AlreadyExists("owner already exists")
	ErrTeamNotFound         = apperr.NotFound("team not found")
	ErrTeamExists           = apperr.AlreadyExists("team already exists")
	ErrTeamInUse            = apperr.FailedPrecondition("team is named by the routing policy")
	ErrHandoffNotFound      = apperr.NotFound("handoff not found")
	ErrOpenHandoffExists    = apperr.AlreadyExists("the lead already has an open handoff")
	ErrHandoffNotOpen       = apperr.FailedPrecondition("handoff is not awaiting a decision")
	ErrOwnerDisabled        = apperr.FailedPrecondition("owner is disabled")
	ErrUnknownTeam          = apperr.FailedPrecondition("routing policy names an unknown team")
	ErrStaleEtag            = apperr.Aborted("etag does not match; read the resource again", apperr.Reason("ETAG_MISMATCH"))
	ErrSubscriptionNotFound = apperr.NotFound("webhook subscription not found")
	ErrSubscriptionExists   = apperr.AlreadyExists("webhook subscription already exists")
	ErrDeliveryNotFound     = apperr.NotFound("webhook delivery not found")
	ErrDeliveryNotDead      = apperr.FailedPrecondition("only dead-lettered deliveries can be redriven")
	ErrScheduleNotFound     = apperr.NotFound("export schedule not found")
	ErrScheduleExists       = apperr.AlreadyExists("export schedule already exists")
	ErrExportNotFound       = apperr.NotFound("export not found")
	ErrExportNotReady       = apperr.FailedPrecondition("export has not succeeded")
)

// State is a handoff's state; the values match leadflow.handoff.v1.Handoff.State.
type State int

// The handoff states. Queued, Assigned and Escalated are open.
const (
	StateQueued    State = 1
	StateAssigned  State = 2
	StateEscalated State = 3
	StateAccepted  State = 4
	StateRejected  State = 5
	StateReturned  State = 6
	StateCancelled State = 7
)

// Open reports whether the handoff still awaits a decision.
func (s State) Open() bool { return s == StateQueued || s == StateAssigned || s == StateEscalated }

// Origin is what opened a handoff.
type Origin int

// The origins.
const (
	OriginQualified Origin = 1
	OriginManual    Origin = 2
)

// Outcome is how an assignment ended.
type Outcome int

// The outcomes; zero while the assignment is current.
const (
	OutcomeAccepted   Outcome = 1
	OutcomeRejected   Outcome = 2
	OutcomeBreached   Outcome = 3
	OutcomeReassigned Outcome = 4
	OutcomeCancelled  Outcome = 5
)

// CapacityPeriod is the window an owner's capacity counts over.
type CapacityPeriod int

// The capacity periods.
const (
	PeriodDay   CapacityPeriod = 1
	PeriodWeek  CapacityPeriod = 2
	PeriodMonth CapacityPeriod = 3
)

// Owner is a sales rep who can receive leads.
type Owner struct {
	Workspace string
	ID        string
	// DisplayName and Email are personal data: never logged.
	DisplayName string
	Email       string
	ExternalID  string
	Teams       []string
	Manager     string
	Attributes  map[string]string
	MaxLeads    int
	Period      CapacityPeriod
	OutOfOffice bool
	// OutOfOfficeEnd, when set, ends the absence by itself.
	OutOfOfficeEnd *time.Time
	Disabled       bool
	// PeriodAssigned and OpenHandoffs are computed on read.
	PeriodAssigned int
	OpenHandoffs   int
	CreateTime     time.Time
	UpdateTime     time.Time
	Version        int64
}

// Available reports whether the owner may get new leads at now.
func (o Owner) Available(now time.Time) bool {
	if o.Disabled {
		return false
	}
	return !o.OutOfOffice || (o.OutOfOfficeEnd != nil && !now.Before(*o.OutOfOfficeEnd))
}

// Team is a group of owners that routing rules target.
type Team struct {
	Workspace   string
	ID          string
	DisplayName string
	Strategy    routing.Strategy
	Manager     string
	MemberCount int
	CreateTime  time.Time
	UpdateTime  time.Time
	Version     int64
}

// Policy is the workspace's routing policy.
type Policy struct {
	routing.Policy
	UpdateTime time.Time
}

// Routing explains how an owner was chosen.
type Routing struct {
	Method      routing.Method   `json:"method"`
	Rule        string           `json:"rule,omitempty"`
	Revision    int64            `json:"revision,omitempty"`
	Strategy    routing.Strategy `json:"strategy,omitempty"`
	Explanation string           `json:"explanation,omitempty"`
}

// Assignment is one period during which one owner held a handoff.
type Assignment struct {
	Owner      string
	Team       string
	Routing    Routing
	AssignTime time.Time
	DueTime    *time.Time
	Outcome    Outcome
	EndTime    *time.Time
	User       string
}

// Handoff is one attempt to get a lead accepted by sales.
type Handoff struct {
	Workspace    string
	ID           string
	Lead         string
	State        State
	Origin       Origin
	Owner        string
	Team         string
	Routing      Routing
	RoutedLead   *handoffv1.RoutingLead
	Assignments  []Assignment
	DueTime      *time.Time
	EscalatedTo  string
	EscalateTime *time.Time
	// Escalated is set once the handoff was escalated; it is not escalated twice.
	Escalated     bool
	Reassignments int
	AcceptTime    *time.Time
	AcceptNote    string
	RejectTime    *time.Time
	RejectReason  string
	CloseTime     *time.Time
	CloseReason   string
	CreateTime    time.Time
	UpdateTime    time.Time
	Version       int64
}

// current returns the current assignment, or nil.
func (h *Handoff) current() *Assignment {
	if len(h.Assignments) == 0 {
		return nil
	}
	a := &h.Assignments[len(h.Assignments)-1]
	if a.EndTime != nil {
		return nil
	}
	return a
}

// endAssignment closes the current assignment, if any.
func (h *Handoff) endAssignment(outcome Outcome, at time.Time, user string) {
	if a := h.current(); a != nil {
		a.Outcome, a.EndTime = outcome, &at
		if user != "" {
			a.User = user
		}
	}
}

// HandoffFilter narrows ListHandoffs.
type HandoffFilter struct {
	Owner         string
	Team          string
	Lead          string
	States        []State
	MinCreateTime *time.Time
	// ByDueTime orders by due_time (soonest first, none last) instead of
	// create_time descending.
	ByDueTime bool
}

// HandoffCursor positions a page of handoffs.
type HandoffCursor struct {
	Time *time.Time `json:"t,omitempty"`
	ID   string     `json:"i"`
}

// NameCursor positions a page of resources listed by id.
type NameCursor struct {
	ID string `json:"i"`
}

// TimeCursor positions a page of resources listed newest first.
type TimeCursor struct {
	Time time.Time `json:"t"`
	ID   string    `json:"i"`
}
