// Package app wires the handoff service together, once for the binary and
// once for tests, so both run the same graph.
package app

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/handoff/internal/dispatch"
	"github.com/leadflow/leadflow/services/handoff/internal/egress"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
	"github.com/leadflow/leadflow/services/handoff/internal/server"
	"github.com/leadflow/leadflow/services/handoff/internal/store"
)

// App is the handoff service's object graph.
type App struct {
	Store   *store.Store
	Service *handoff.Service
	Server  *server.Server
	Sink    *outbox.SinkServer
	// Webhooks posts webhook deliveries.
	Webhooks *dispatch.Worker
}

// Options tune New; zero values take the defaults.
type Options struct {
	// Clock tells time to the timers and workers (time.Now).
	Clock handoff.Clock
	// HTTPClient posts webhooks (egress.NewClient with dispatch.Timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// WebhookAllowPrivateNetworks lets webhooks reach localhost, loopback,
	// private and link-local addresses: subscriptions may name them and the
	// default client connects to them. For development and tests only.
	WebhookAllowPrivateNetworks bool
}

// New builds the service over pool.
func New(pool *pgxpool.Pool, opts Options) *App {
	st := store.New(pool, store.NewPublisher())
	svc := handoff.NewService(st, opts.Clock, opts.WebhookAllowPrivateNetworks)
	client := opts.HTTPClient
	if client == nil {
		client = egress.NewClient(dispatch.Timeout, opts.WebhookAllowPrivateNetworks)
	}
	handlers := map[string]outbox.Handler{}
	for _, payload := range handoff.HandledEvents {
		typ, h := outbox.On(payload, func(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, p proto.Message) error {
			return svc.HandleEvent(ctx, st.WithTx(tx), ev, p)
		})
		handlers[typ] = h
	}
	return &App{
		Store: st, Service: svc, Server: server.New(svc),
		Sink:     outbox.NewSinkServer(pool, handlers).WithBatchScope(routingCopyScope(st)),
		Webhooks: dispatch.New(st, client, opts.Clock, opts.Logger),
	}
}

// routingCopyScope lets a delivery whose events only update routing copies
// share a store unit: two round trips for the lot instead of two per event.
func routingCopyScope(st *store.Store) outbox.BatchScope {
	return func(ctx context.Context, tx pgx.Tx, evs []*eventsv1.Event) (context.Context, func(context.Context) error, error) {
		leads := make([]postgres.Key, 0, len(evs))
		for _, ev := range evs {
			payload, err := ev.GetPayload().UnmarshalNew()
			if err != nil || !handoff.OnlyUpdatesRoutingCopy(payload) {
				return ctx, nil, nil // handled one by one, where a bad payload is reported
			}
			if ev.GetWorkspace() != "" && ev.GetLead() != "" {
				leads = append(leads, postgres.Key{Workspace: ev.GetWorkspace(), ID: ev.GetLead()})
			}
		}
		return st.BeginUnit(ctx, tx, leads)
	}
}

// Register serves the handoff API and the event sink on s.
func (a *App) Register(s *grpcserver.Server) {
	handoffv1.RegisterHandoffServiceServer(s, a.Server)
	eventsv1.RegisterEventSinkServiceServer(s, a.Sink)
}

// Every runs pass now and then every interval until ctx ends; a failed
// pass is logged and retried at the next tick, as its work stays in the
// database.
func Every(ctx context.Context, log *slog.Logger, name string, interval time.Duration, pass func(context.Context) (int, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := pass(ctx); err != nil && ctx.Err() == nil {
			log.Error(name+" pass failed", "error", err)
		} else if n > 0 {
			log.Info(name+" pass", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
