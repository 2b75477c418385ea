package server

import (
	"context"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

// Routes sends scoring's events to the services that act on them.
var Routes = outbox.Routes{
	"leadflow.events.v1.LeadScored":    {service.Lifecycle, service.Handoff},
	"leadflow.events.v1.LeadQualified": {service.Lifecycle, service.Handoff},
}

// Handlers apply the events scoring consumes, each inside the inbox
// transaction that makes its redelivery a no-op.
func Handlers(svc *scoring.Service, st *store.Store) map[string]outbox.Handler {
	on := func(payload proto.Message, h func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, p proto.Message) error) (string, outbox.Handler) {
		return outbox.On(payload, func(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, p proto.Message) error {
			return h(ctx, st.WithTx(tx), ev, p)
		})
	}
	facts := func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, a *eventsv1.LeadAttributes) error {
		return svc.ApplyFacts(ctx, tx, ev.GetWorkspace(), ev.GetLead(), toDomainFacts(a), ev.GetOccurTime().AsTime())
	}
	hs := map[string]outbox.Handler{}
	add := func(k string, h outbox.Handler) { hs[k] = h }
	add(on(&eventsv1.LeadCaptured{}, func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, p proto.Message) error {
		return facts(ctx, tx, ev, p.(*eventsv1.LeadCaptured).GetAttributes())
	}))
	add(on(&eventsv1.LeadUpdated{}, func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, p proto.Message) error {
		return facts(ctx, tx, ev, p.(*eventsv1.LeadUpdated).GetAttributes())
	}))
	add(on(&eventsv1.ActivityRecorded{}, func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, p proto.Message) error {
		a := p.(*eventsv1.ActivityRecorded)
		at := a.GetOccurTime()
		if at == nil {
			at = ev.GetOccurTime()
		}
		return svc.RecordActivity(ctx, tx, ev.GetWorkspace(), ev.GetLead(), scoring.Activity{
			ID: a.GetActivity(), Type: a.GetActivityType(), URL: a.GetUrl(), ContentID: a.GetContentId(),
			Properties: a.GetProperties(), OccurTime: at.AsTime(),
		})
	}))
	add(on(&eventsv1.LeadErased{}, func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, _ proto.Message) error {
		return svc.EraseLead(ctx, tx, ev.GetWorkspace(), ev.GetLead())
	}))
	add(on(&eventsv1.LeadMerged{}, func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, p proto.Message) error {
		return svc.MergeLead(ctx, tx, ev.GetWorkspace(), ev.GetLead(), p.(*eventsv1.LeadMerged).GetSurvivorLead())
	}))
	add(on(&eventsv1.StageChanged{}, func(ctx context.Context, tx scoring.Store, ev *eventsv1.Event, p proto.Message) error {
		return svc.ApplyStage(ctx, tx, ev.GetWorkspace(), ev.GetLead(), p.(*eventsv1.StageChanged).GetToStage(), ev.GetOccurTime().AsTime())
	}))
	return hs
}

func toDomainFacts(a *eventsv1.LeadAttributes) scoring.LeadFacts {
	return scoring.LeadFacts{
		CompanyDomain: a.GetCompanyDomain(), Title: a.GetTitle(), Country: a.GetCountry(), Industry: a.GetIndustry(),
		EmployeeCount: int64(a.GetEmployeeCount()), Source: a.GetSource(), Campaign: a.GetCampaign(),
		CustomAttributes: a.GetCustomAttributes(), Unsubscribed: a.GetUnsubscribed(),
	}
}
