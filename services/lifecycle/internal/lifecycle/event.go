package lifecycle

import "time"

// EventKind is what an incoming event says happened to a lead.
type EventKind int

// The events lifecycle acts on.
const (
	// EventCaptured: ingestion created the lead.
	EventCaptured EventKind = iota + 1
	// EventActivity: the lead did something (temperature recency).
	EventActivity
	// EventScored: scoring computed a new score (temperature).
	EventScored
	// EventQualified: scoring qualified the lead; it becomes an MQL.
	EventQualified
	// EventAccepted: sales accepted the lead; it becomes a SAL.
	EventAccepted
	// EventRejected: sales rejected the lead (or the SLA returned it); it is
	// recycled.
	EventRejected
)

// Event is an incoming event, reduced to what lifecycle needs.
type Event struct {
	Kind      EventKind
	Workspace string
	Lead      string
	OccurTime time.Time
	Cause     Cause
	// Source and Campaign of a captured lead.
	Source   string
	Campaign string
	// Score of a scored or qualified lead; HasScore tells 0 from absent.
	Score    int64
	HasScore bool
	// Reason of a rejection.
	Reason string
	// Journey is the key step the event adds to the lead's journey, if any.
	Journey *JourneyStep
}

// RejectedReason is recorded when a rejection names no reason.
const RejectedReason = "rejected by sales"

// DecideEvent is the pure core of event handling. It returns the lead after
// the event (nil when nothing changes) and the moves the event makes. A lead
// heard of for the first time, by any event, enters at Inquiry: events
// arrive in any order, so a qualification may come before the capture.
//
// Event-driven moves follow the meaning of the event rather than the
// workspace's graph, and never move a lead that is already past the target:
//   - qualified: Inquiry or Recycled → MQL;
//   - accepted: Inquiry, MQL, TQL or Recycled → SAL;
//   - rejected: MQL, TQL, SAL or SGL → Recycled.
//
// Redelivery of the same event is filtered before (by event id); a second,
// distinct qualification of an MQL makes no move either.
func DecideEvent(cur *Lead, ev Event, now time.Time) (*Lead, []Transition) {
	var steps []Transition
	var lead Lead
	changed := false
	if cur == nil {
		lead = newLead(ev.Workspace, ev.Lead, now)
		t := lead.step(StageInquiry, ev.Cause, now)
		lead = lead.apply(t)
		steps = append(steps, t)
		changed = true
	} else {
		lead = *cur
	}

	if !ev.OccurTime.IsZero() && ev.OccurTime.After(lead.LastActivityTime) &&
		(ev.Kind == EventCaptured || ev.Kind == EventActivity) {
		lead.LastActivityTime = ev.OccurTime
		changed = true
	}
	if ev.HasScore && (lead.Score == nil || !ev.OccurTime.Before(lead.ScoreTime)) {
		score := ev.Score
		lead.Score, lead.ScoreTime = &score, ev.OccurTime
		changed = true
	}
	if ev.Kind == EventCaptured {
		// The first capture's attribution sticks: it is where the lead came from.
		if lead.Source == "" && ev.Source != "" {
			lead.Source, changed = ev.Source, true
		}
		if lead.Campaign == "" && ev.Campaign != "" {
			lead.Campaign, changed = ev.Campaign, true
		}
	}

	var to Stage
	var reason string
	switch ev.Kind {
	case EventQualified:
		if lead.Stage == StageInquiry || lead.Stage == StageRecycled {
			to = StageMQL
		}
	case EventAccepted:
		switch lead.Stage {
		case StageInquiry, StageMQL, StageTQL, StageRecycled:
			to = StageSAL
		}
	case EventRejected:
		switch lead.Stage {
		case StageMQL, StageTQL, StageSAL, StageSGL:
			to, reason = StageRecycled, ev.Reason
			if reason == "" {
				reason = RejectedReason
			}
		}
	}
	if to != StageUnspecified {
		t := lead.step(to, ev.Cause, now)
		t.Reason = reason
		lead = lead.apply(t)
		steps = append(steps, t)
		changed = true
	}
	if !changed {
		return nil, nil
	}
	if lead.UpdateTime.Before(now) {
		lead.UpdateTime = now
	}
	return &lead, steps
}
