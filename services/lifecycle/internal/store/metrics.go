package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument reports how many leads stand in each stage, read from the
// table whenever metrics are collected:
//
//	leadflow.lifecycle.leads   leads per stage, across workspaces
func Instrument(pool *pgxpool.Pool) error {
	meter := otel.Meter("github.com/leadflow/leadflow/services/lifecycle")
	leads, err := meter.Int64ObservableGauge("leadflow.lifecycle.leads",
		metric.WithDescription("Leads currently in each stage."), metric.WithUnit("{lead}"))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		rows, err := pool.Query(ctx, `SELECT stage, count(*) FROM leads GROUP BY stage`)
		if err != nil {
			return err
		}
		var stage string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&stage, &n}, func() error {
			o.ObserveInt64(leads, n, metric.WithAttributes(attribute.String("stage", stage)))
			return nil
		})
		return err
	}, leads)
	return err
}
