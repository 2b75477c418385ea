// Command lifecycle moves leads along the Demand Waterfall, on calls and on
// events from scoring and handoff, records every move, tells handoff through
// its outbox (StageChanged), and reports the funnel.
package main

import (
	"context"
	_ "time/tzdata" // funnel periods follow any IANA zone, even on images without zoneinfo

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
	"github.com/leadflow/leadflow/services/lifecycle/internal/server"
	"github.com/leadflow/leadflow/services/lifecycle/internal/sink"
	"github.com/leadflow/leadflow/services/lifecycle/internal/store"
)

func main() {
	service.Main(service.Spec{
		Name: service.Lifecycle,
		Migrations: []migrate.Set{
			{FS: store.Migrations},
			{Name: "outbox", FS: outbox.Migrations},
		},
		Policy: server.Policy,
		Setup: func(_ context.Context, rt *service.Runtime) error {
			st := store.New(rt.Pool, store.NewPublisher(service.Lifecycle, service.Handoff, service.Scoring))
			svc := lifecycle.NewService(st)
			lifecyclev1.RegisterLifecycleServiceServer(rt.Server, server.New(svc))
			eventsv1.RegisterEventSinkServiceServer(rt.Server, sink.NewServer(rt.Pool, svc, st))
			if err := store.Instrument(rt.Pool); err != nil {
				return err
			}
			return rt.RelayTo(store.Schema, service.Handoff, service.Scoring)
		},
	})
}
