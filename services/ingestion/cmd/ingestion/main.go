// Command ingestion serves the ingestion API: leads, activities, consent and
// forms enter Leadflow here, and its outbox relay tells the other services.
package main

import (
	"context"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
	"github.com/leadflow/leadflow/services/ingestion/internal/server"
	"github.com/leadflow/leadflow/services/ingestion/internal/store"
)

func main() {
	service.Main(service.Spec{
		Name: service.Ingestion,
		Migrations: []migrate.Set{
			{FS: store.Migrations},
			{Name: "outbox", FS: outbox.Migrations},
		},
		Policy:         server.Policy,
		SkipValidation: server.SkipValidation,
		Setup:          setup,
	})
}

func setup(_ context.Context, rt *service.Runtime) error {
	svc := lead.NewService(store.New(rt.Pool, store.NewPublisher()))
	ingestionv1.RegisterIngestionServiceServer(rt.Server, server.New(svc))
	return rt.RelayTo(store.Schema, service.Scoring, service.Lifecycle, service.Handoff)
}
