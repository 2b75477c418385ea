package server

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

// Routes sends scoring's events to the services that act on them.
var Routes = outbox.Routes{
	"leadflow.events.v1.LeadScored":    {service.Lifecycle, service.Handoff},
	"leadflow.events.v1.LeadQualified": {service.Lifecycle, service.Handoff},
}

// NewSink returns scoring's event sink: Handlers, with a delivery of facts
// and activities handled in one store unit (FactsScope).
func NewSink(pool *pgxpool.Pool, svc *scoring.Service, st *store.Store) *outbox.SinkServer {
	return outbox.NewSinkServer(pool, Handlers(svc, st)).WithBatchScope(FactsScope(svc, st))
}

// FactsScope lets a delivery whose events only bring leads' facts (captures
// and updates), activities, or stage changes that scoring ignores share a
// store unit: two round trips for the lot instead of two per event.
func FactsScope(svc *scoring.Service, st *store.Store) outbox.BatchScope {
	return func(ctx context.Context, tx pgx.Tx, evs []*eventsv1.Event) (context.Context, func(context.Context) error, error) {
		leads := make([]postgres.Key, 0, len(evs))
		for _, ev := range evs {
			payload, err := ev.GetPayload().UnmarshalNew()
			if err != nil {
				return ctx, nil, nil // handled one by one, where it is reported
			}
			switch p := payload.(type) {
			case *eventsv1.LeadCaptured, *eventsv1.LeadUpdated, *eventsv1.ActivityRecorded:
				if ev.GetWorkspace() == "" || ev.GetLead() == "" {
					return ctx, nil, nil
				}
				leads = append(leads, postgres.Key{Workspace: ev.GetWorkspace(), ID: ev.GetLead()})
			case *eventsv1.StageChanged:
				if scoring.StageMatters(p.GetToStage()) {
					return ctx, nil, nil
				}
			default:
				return ctx, nil, nil
			}
		}
		return st.BeginUnit(ctx, tx, leads, svc.Now())
	}
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
