// Command scoring scores leads for fit and engagement under each
// workspace's live scoring model, explains every score, and tells lifecycle
// and handoff when a lead becomes marketing-qualified.
package main

import (
	"context"
	"time"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	scoringv1 "github.com/leadflow/leadflow/gen/go/leadflow/scoring/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/server"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

// rescorePoll is how often the rescore worker looks for jobs published by
// other replicas; its own publications wake it at once.
const rescorePoll = 5 * time.Second

func main() {
	service.Main(service.Spec{
		Name: service.Scoring,
		Migrations: []migrate.Set{
			{FS: store.Migrations},
			{Name: "outbox", FS: outbox.Migrations},
		},
		Policy: server.Policy,
		Setup: func(_ context.Context, rt *service.Runtime) error {
			st := store.New(rt.Pool, outbox.NewPublisher(service.Scoring, store.Schema, server.Routes))
			svc := scoring.NewService(st)
			scoringv1.RegisterScoringServiceServer(rt.Server, server.New(svc))
			eventsv1.RegisterEventSinkServiceServer(rt.Server, server.NewSink(rt.Pool, svc, st))
			if err := rt.RelayTo(store.Schema, service.Lifecycle, service.Handoff); err != nil {
				return err
			}
			rt.Go(func(ctx context.Context) error { return svc.RunRescorer(ctx, rt.Logger, rescorePoll) })
			return nil
		},
	})
}
