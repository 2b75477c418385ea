// Package app wires the handoff service together, once for the binary and
// once for tests, so both run the same graph.
package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/outbox"
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
}

// New builds the service over pool, telling time with clock (time.Now when
// nil).
func New(pool *pgxpool.Pool, clock handoff.Clock) *App {
	st := store.New(pool, store.NewPublisher())
	svc := handoff.NewService(st, clock)
	handlers := map[string]outbox.Handler{}
	for _, payload := range handoff.HandledEvents {
		typ, h := outbox.On(payload, func(ctx context.Context, tx pgx.Tx, ev *eventsv1.Event, p proto.Message) error {
			return svc.HandleEvent(ctx, st.WithTx(tx), ev, p)
		})
		handlers[typ] = h
	}
	return &App{Store: st, Service: svc, Server: server.New(svc), Sink: outbox.NewSinkServer(pool, handlers)}
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
