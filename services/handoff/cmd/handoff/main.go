// Command handoff routes qualified leads to sales, holds sales to the
// acceptance SLA and tells lifecycle and CRMs what sales decided.
package main

import (
	"context"
	"time"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/handoff/internal/app"
	"github.com/leadflow/leadflow/services/handoff/internal/server"
	"github.com/leadflow/leadflow/services/handoff/internal/store"
)

// slaInterval is how often the SLA timers are checked: a deadline fires at
// most this late.
const slaInterval = 5 * time.Second

// webhookInterval is how often due webhook deliveries are sent.
const webhookInterval = 2 * time.Second

// exportInterval is how often export schedules are checked.
const exportInterval = time.Minute

// Config holds the handoff service's own settings, read from
// HANDOFF_-prefixed variables next to the shared service.Config:
//
//	WEBHOOK_ALLOW_PRIVATE_NETWORKS  let webhooks reach localhost, loopback,
//	                                private and link-local addresses; for
//	                                development only      (default false)
type Config struct {
	WebhookAllowPrivateNetworks bool `env:"WEBHOOK_ALLOW_PRIVATE_NETWORKS" envDefault:"false"`
}

func main() {
	service.Main(service.Spec{
		Name: service.Handoff,
		Migrations: []migrate.Set{
			{FS: store.Migrations},
			{Name: "outbox", FS: outbox.Migrations},
		},
		Policy: server.Policy,
		Setup: func(_ context.Context, rt *service.Runtime) error {
			cfg, err := config.Load[Config]("HANDOFF")
			if err != nil {
				return err
			}
			if cfg.WebhookAllowPrivateNetworks {
				rt.Logger.Warn("webhooks may reach private networks (HANDOFF_WEBHOOK_ALLOW_PRIVATE_NETWORKS); never in production")
			}
			a := app.New(rt.Pool, app.Options{Logger: rt.Logger,
				WebhookAllowPrivateNetworks: cfg.WebhookAllowPrivateNetworks})
			a.Register(rt.Server)
			if err := store.Instrument(rt.Pool); err != nil {
				return err
			}
			if err := rt.RelayTo(store.Schema, service.Lifecycle); err != nil {
				return err
			}
			rt.Go(func(ctx context.Context) error {
				return app.Every(ctx, rt.Logger, "sla timers", slaInterval, a.Service.FireDueTimers)
			})
			rt.Go(func(ctx context.Context) error {
				return app.Every(ctx, rt.Logger, "webhook deliveries", webhookInterval, a.Webhooks.DeliverDue)
			})
			rt.Go(func(ctx context.Context) error {
				return app.Every(ctx, rt.Logger, "exports", exportInterval, a.Service.RunDueExports)
			})
			return nil
		},
	})
}
