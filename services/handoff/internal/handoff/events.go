package handoff

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
)

// HandledEvents lists the payloads HandleEvent acts on.
var HandledEvents = []proto.Message{
	&eventsv1.LeadCaptured{}, &eventsv1.LeadUpdated{}, &eventsv1.LeadScored{},
	&eventsv1.LeadQualified{}, &eventsv1.StageChanged{}, &eventsv1.LeadMerged{},
	&eventsv1.LeadErased{},
}

// OnlyUpdatesRoutingCopy reports whether HandleEvent, given payload, does
// no more than LockLead and PutLead: true for attribute, score and
// qualification news and for stage changes other than to MQL (which opens
// a handoff) or Disqualified (which cancels one). Such events can share a
// store unit (store.BeginUnit).
func OnlyUpdatesRoutingCopy(payload proto.Message) bool {
	switch p := payload.(type) {
	case *eventsv1.LeadCaptured, *eventsv1.LeadUpdated, *eventsv1.LeadScored, *eventsv1.LeadQualified:
		return true
	case *eventsv1.StageChanged:
		return p.GetToStage() != typesv1.Stage_STAGE_MQL && p.GetToStage() != typesv1.Stage_STAGE_DISQUALIFIED
	}
	return false
}

// HandleEvent applies one incoming event inside tx, the transaction that
// also records it in the inbox (so a redelivery never reaches here).
//
// Lead events keep the routing copy (attributes from ingestion, score from
// scoring, temperature and stage from lifecycle); each facet only moves
// forward in event time, as events arrive in any order. A StageChanged to
// MQL opens a handoff, exactly once per qualification: the lead row lock
// and the one-open-handoff-per-lead index make a second, distinct delivery
// of the same qualification a no-op.
func (s *Service) HandleEvent(ctx context.Context, tx Tx, ev *eventsv1.Event, payload proto.Message) error {
	ws, lead := ev.GetWorkspace(), ev.GetLead()
	if ws == "" || lead == "" {
		return nil
	}
	occur := ev.GetOccurTime().AsTime().UTC().Truncate(time.Microsecond)
	now := s.Now()
	switch p := payload.(type) {
	case *eventsv1.LeadErased:
		return tx.EraseLead(ctx, ws, lead, now)
	case *eventsv1.LeadMerged:
		return s.merge(ctx, tx, ws, lead, p.GetSurvivorLead(), now)
	}

	// Events about a lead erased or merged away change nothing.
	c, gone, err := tx.LockLead(ctx, ws, lead)
	if err != nil || gone {
		return err
	}
	if c.Facts == nil {
		c.Facts = &handoffv1.RoutingLead{}
	}
	// The capture's trace is the lead's origin; until it arrives, the
	// earliest trace heard of stands in.
	if _, captured := payload.(*eventsv1.LeadCaptured); (captured || c.OriginTraceparent == "") && ev.GetTraceparent() != "" {
		c.OriginTraceparent = ev.GetTraceparent()
	}
	newer := func(at *time.Time) bool { return at == nil || !occur.Before(*at) }
	var qualified bool
	switch p := payload.(type) {
	case *eventsv1.LeadCaptured:
		if newer(c.AttributesTime) {
			setAttributes(c.Facts, p.GetAttributes())
			c.AttributesTime = &occur
		}
	case *eventsv1.LeadUpdated:
		if newer(c.AttributesTime) {
			setAttributes(c.Facts, p.GetAttributes())
			c.AttributesTime = &occur
		}
	case *eventsv1.LeadScored:
		if newer(c.ScoreTime) {
			c.Facts.FitScore, c.Facts.EngagementScore = p.GetFitScore(), p.GetEngagementScore()
			c.Facts.TotalScore, c.Facts.Grade = p.GetTotalScore(), p.GetGrade()
			c.ScoreTime = &occur
		}
	case *eventsv1.LeadQualified:
		if p.GetReason() == eventsv1.LeadQualified_REASON_HAND_RAISER {
			c.Facts.HandRaiser = true
		}
	case *eventsv1.StageChanged:
		if newer(c.StageTime) {
			c.Facts.Stage, c.Facts.Temperature = p.GetToStage(), p.GetTemperature()
			c.StageTime = &occur
		}
		switch p.GetToStage() {
		case typesv1.Stage_STAGE_MQL:
			qualified = true
		case typesv1.Stage_STAGE_DISQUALIFIED:
			if err := tx.PutLead(ctx, c); err != nil {
				return err
			}
			return s.cancelOpen(ctx, tx, ws, lead, "disqualified", now)
		}
	default:
		return nil
	}
	if err := tx.PutLead(ctx, c); err != nil {
		return err
	}
	if !qualified {
		return nil
	}
	latest, ok, err := tx.LatestHandoff(ctx, ws, lead, false)
	if err != nil {
		return err
	}
	// A handoff created after this qualification happened already answers it
	// (a late, out-of-order delivery); an open one is this very handoff.
	if ok && (latest.State.Open() || latest.CreateTime.After(occur)) {
		return nil
	}
	_, err = s.open(ctx, tx, ws, lead, OriginQualified, now, "", func(h *Handoff) error {
		return s.route(ctx, tx, h, now)
	})
	return err
}

func setAttributes(f *handoffv1.RoutingLead, a *eventsv1.LeadAttributes) {
	f.Country, f.Industry, f.EmployeeCount = a.GetCountry(), a.GetIndustry(), int64(a.GetEmployeeCount())
	f.CompanyDomain, f.Source, f.Campaign = a.GetCompanyDomain(), a.GetSource(), a.GetCampaign()
	f.CustomAttributes = a.GetCustomAttributes()
}

// cancelOpen closes the lead's open handoff, if any, without a decision.
func (s *Service) cancelOpen(ctx context.Context, tx Tx, ws, lead, reason string, now time.Time) error {
	h, ok, err := tx.LatestHandoff(ctx, ws, lead, true)
	if err != nil || !ok || !h.State.Open() {
		return err
	}
	h.endAssignment(OutcomeCancelled, now, "")
	h.State, h.CloseTime, h.CloseReason = StateCancelled, &now, reason
	h.DueTime, h.EscalatedTo, h.EscalateTime = nil, "", nil
	return s.save(ctx, tx, &h, now, 0)
}

// merge moves the loser's handoffs to the survivor. When both have an open
// handoff, the loser's is cancelled: the survivor's owner keeps the lead.
func (s *Service) merge(ctx context.Context, tx Tx, ws, loser, survivor string, now time.Time) error {
	if survivor == "" || survivor == loser {
		return nil
	}
	// Both leads' turns, in id order as units take them, so no event about
	// either changes its routing copy while the move reads it.
	survivorGone := false
	for _, id := range []string{min(loser, survivor), max(loser, survivor)} {
		_, gone, err := tx.LockLead(ctx, ws, id)
		if err != nil {
			return err
		}
		if id == survivor {
			survivorGone = gone
		}
	}
	if survivorGone {
		return nil
	}
	sh, ok, err := tx.LatestHandoff(ctx, ws, survivor, false)
	if err != nil {
		return err
	}
	if ok && sh.State.Open() {
		if err := s.cancelOpen(ctx, tx, ws, loser, "merged", now); err != nil {
			return err
		}
	}
	return tx.MoveLead(ctx, ws, loser, survivor)
}
