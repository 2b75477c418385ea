package handoff

import (
	"slices"
	"time"
)

// BreachAction is what the SLA does with an unaccepted handoff.
type BreachAction int

// The breach actions.
const (
	BreachReassign BreachAction = 1
	BreachReturn   BreachAction = 2
)

// BreachOutcome is what followed one breach.
type BreachOutcome int

// The breach outcomes; the values match leadflow.handoff.v1.SlaBreach.Action.
const (
	BreachEscalated  BreachOutcome = 1
	BreachReassigned BreachOutcome = 2
	BreachQueued     BreachOutcome = 3
	BreachReturned   BreachOutcome = 4
)

// ReturnReason is the HandoffRejected reason when the SLA returns a lead.
const ReturnReason = "sla_breach"

// WorkingHours are the hours SLA deadlines count, when Enabled.
type WorkingHours struct {
	Enabled   bool           `json:"enabled"`
	TimeZone  string         `json:"time_zone,omitempty"`
	Weekdays  []time.Weekday `json:"weekdays,omitempty"`
	StartHour int            `json:"start_hour"`
	EndHour   int            `json:"end_hour"`
}

// SLASettings is the workspace's acceptance SLA.
type SLASettings struct {
	Workspace          string
	AcceptanceDeadline time.Duration
	WorkingHours       WorkingHours
	BreachAction       BreachAction
	MaxReassignments   int
	EscalationEnabled  bool
	EscalationDeadline time.Duration
	UpdateTime         time.Time
	Version            int64
}

// DefaultSLA is the SLA of a workspace that never changed it.
func DefaultSLA(workspace string, now time.Time) SLASettings {
	return SLASettings{
		Workspace:          workspace,
		AcceptanceDeadline: 24 * time.Hour,
		WorkingHours: WorkingHours{
			TimeZone:  "UTC",
			Weekdays:  []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
			StartHour: 9, EndHour: 17,
		},
		BreachAction:       BreachReassign,
		MaxReassignments:   2,
		EscalationDeadline: 4 * time.Hour,
		UpdateTime:         now,
		Version:            0,
	}
}

// Location is the SLA's time zone (UTC when unset or unknown).
func (w WorkingHours) Location() *time.Location {
	if w.TimeZone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Deadline returns start plus d, counting only working time when the
// working hours are enabled. Days are walked in the local time zone, so
// daylight-saving changes shift the window's wall-clock hours correctly.
func (w WorkingHours) Deadline(start time.Time, d time.Duration) time.Time {
	if !w.Enabled || w.EndHour <= w.StartHour || len(w.Weekdays) == 0 {
		return start.Add(d)
	}
	loc := w.Location()
	t := start.In(loc)
	remaining := d
	// Bounded: a deadline is at most 30 days of working time.
	for range 3660 {
		y, m, day := t.Date()
		open := time.Date(y, m, day, w.StartHour, 0, 0, 0, loc)
		shut := time.Date(y, m, day, w.EndHour, 0, 0, 0, loc)
		next := time.Date(y, m, day+1, 0, 0, 0, 0, loc)
		if !slices.Contains(w.Weekdays, t.Weekday()) || !t.Before(shut) {
			t = next
			continue
		}
		if t.Before(open) {
			t = open
		}
		if avail := shut.Sub(t); remaining <= avail {
			return t.Add(remaining).In(start.Location())
		} else {
			remaining -= avail
		}
		t = next
	}
	return start.Add(d)
}

// PeriodStart returns the start of the capacity period containing now, in
// the SLA time zone. Weeks start on Monday.
func PeriodStart(p CapacityPeriod, now time.Time, loc *time.Location) time.Time {
	t := now.In(loc)
	y, m, d := t.Date()
	switch p {
	case PeriodDay:
		return time.Date(y, m, d, 0, 0, 0, 0, loc)
	case PeriodMonth:
		return time.Date(y, m, 1, 0, 0, 0, 0, loc)
	default:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, m, d-back, 0, 0, 0, 0, loc)
	}
}

// Breach records one missed deadline.
type Breach struct {
	Workspace  string
	ID         string
	Handoff    string
	Lead       string
	Owner      string
	Team       string
	Manager    string
	DueTime    time.Time
	BreachTime time.Time
	Action     BreachOutcome
}

// BreachFilter narrows ListSlaBreaches.
type BreachFilter struct {
	Manager string
	Team    string
	Owner   string
	Min     *time.Time
	Max     *time.Time
}
