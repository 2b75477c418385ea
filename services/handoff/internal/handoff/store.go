package handoff

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/services/handoff/internal/routing"
)

// Store persists the handoff domain. Its methods run outside a transaction;
// InTx runs fn with the same methods inside one.
type Store interface {
	Tx
	WebhookStore
	InTx(ctx context.Context, fn func(tx Tx) error) error
}

// Periods are the starts of the current capacity periods.
type Periods struct {
	Day, Week, Month time.Time
}

// Since returns the start of period p.
func (ps Periods) Since(p CapacityPeriod) time.Time {
	switch p {
	case PeriodDay:
		return ps.Day
	case PeriodMonth:
		return ps.Month
	}
	return ps.Week
}

// OwnerFilter narrows ListOwners.
type OwnerFilter struct {
	Team         string
	Manager      string
	ShowDisabled bool
}

// LeadCopy is the routing copy of a lead, with the time of the event that
// last set each facet.
type LeadCopy struct {
	Workspace      string
	ID             string
	Facts          *handoffv1.RoutingLead
	AttributesTime *time.Time
	ScoreTime      *time.Time
	StageTime      *time.Time
	// OriginTraceparent is the trace context of the lead's capture.
	OriginTraceparent string
}

// Tx is what the domain does with the database.
type Tx interface {
	ExportStore

	CreateOwner(ctx context.Context, o Owner, requestID string) (Owner, error)
	GetOwner(ctx context.Context, workspace, id string, ps Periods) (Owner, error)
	ListOwners(ctx context.Context, workspace string, f OwnerFilter, after *NameCursor, limit int, ps Periods) ([]Owner, error)
	// UpdateOwner writes o if its stored version is still o.Version.
	UpdateOwner(ctx context.Context, o Owner, at time.Time) (Owner, error)
	// EraseOwner blanks the owner's personal fields, disables and hides it
	// and removes it from its teams.
	EraseOwner(ctx context.Context, workspace, id string, version int64, at time.Time) error

	CreateTeam(ctx context.Context, t Team, requestID string) (Team, error)
	GetTeam(ctx context.Context, workspace, id string) (Team, error)
	ListTeams(ctx context.Context, workspace string, after *NameCursor, limit int) ([]Team, error)
	UpdateTeam(ctx context.Context, t Team, at time.Time) (Team, error)
	DeleteTeam(ctx context.Context, workspace, id string, version int64) error
	// MissingTeams returns the ids among ids that name no team.
	MissingTeams(ctx context.Context, workspace string, ids []string) ([]string, error)
	// LockTeam locks a team for routing and returns it with its members'
	// capacity and load at now.
	LockTeam(ctx context.Context, workspace, id string, now time.Time, ps Periods) (*routing.Team, bool, error)
	SaveTeamState(ctx context.Context, workspace, id, cursor string, weights map[string]int64) error

	GetPolicy(ctx context.Context, workspace string) (Policy, error)
	// PutPolicy stores p if the stored revision is still p.Revision-1.
	PutPolicy(ctx context.Context, workspace string, p Policy) error

	GetSLA(ctx context.Context, workspace string, now time.Time) (SLASettings, error)
	// PutSLA stores s if the stored version is still s.Version-1.
	PutSLA(ctx context.Context, s SLASettings) error

	// LockLead returns the lead's routing copy, created empty when missing,
	// locked until the transaction ends; gone is true for a lead that was
	// erased or merged into another, which has no copy any more.
	LockLead(ctx context.Context, workspace, id string) (c LeadCopy, gone bool, err error)
	PutLead(ctx context.Context, c LeadCopy) error
	// LeadOrigin returns the traceparent of the lead's capture, "" if unknown.
	LeadOrigin(ctx context.Context, workspace, id string) (string, error)
	// EraseLead deletes everything about a lead and remembers it was erased.
	EraseLead(ctx context.Context, workspace, id string, at time.Time) error
	// MoveLead moves the loser's handoffs to the survivor, drops the
	// loser's routing copy and remembers it was merged.
	MoveLead(ctx context.Context, workspace, loser, survivor string) error

	// InsertHandoff stores a new handoff with its assignments.
	InsertHandoff(ctx context.Context, h Handoff, requestID string) error
	// UpdateHandoff writes h and its assignments and bumps its version.
	UpdateHandoff(ctx context.Context, h *Handoff) error
	GetHandoff(ctx context.Context, workspace, id string, forUpdate bool) (Handoff, error)
	HandoffByRequest(ctx context.Context, workspace, requestID string) (Handoff, bool, error)
	// LatestHandoff returns the lead's newest handoff.
	LatestHandoff(ctx context.Context, workspace, lead string, forUpdate bool) (Handoff, bool, error)
	ListHandoffs(ctx context.Context, workspace string, f HandoffFilter, after *HandoffCursor, limit int) ([]Handoff, error)
	// OpenHandoffsOf returns the ids of the owner's open handoffs.
	OpenHandoffsOf(ctx context.Context, workspace, owner string) ([]string, error)
	// ClaimDueHandoff locks one handoff, in any workspace, whose SLA or
	// escalation deadline is at or before now, skipping rows other workers
	// hold.
	ClaimDueHandoff(ctx context.Context, now time.Time) (Handoff, bool, error)

	InsertBreach(ctx context.Context, b Breach) error
	ListBreaches(ctx context.Context, workspace string, f BreachFilter, after *TimeCursor, limit int) ([]Breach, error)

	// Publish records an event for the other services in the outbox.
	Publish(ctx context.Context, workspace, lead string, payload proto.Message) error
	// Notify queues webhook deliveries of n to the subscriptions that want it.
	Notify(ctx context.Context, n Notice) error
}

// Etag is the etag of a resource at version v.
func Etag(v int64) string { return strconv.FormatInt(v, 10) }

// checkEtag fails with ErrStaleEtag when etag is set and not version's.
func checkEtag(etag string, version int64) error {
	if etag != "" && etag != Etag(version) {
		return ErrStaleEtag
	}
	return nil
}
