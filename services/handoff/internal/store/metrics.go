package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
)

// Instrument reports SLA breaches as a gauge read from the table whenever
// metrics are collected, so the figure is exact across replicas and
// restarts:
//
//	leadflow.handoff.sla_breaches   recorded breaches, by action (escalated, reassigned, queued, returned)
func Instrument(pool *pgxpool.Pool) error {
	meter := otel.Meter("github.com/leadflow/leadflow/services/handoff")
	breaches, err := meter.Int64ObservableGauge("leadflow.handoff.sla_breaches",
		metric.WithDescription("SLA breaches recorded, by the action that followed."), metric.WithUnit("{breach}"))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		rows, err := pool.Query(ctx, `SELECT action, count(*) FROM sla_breaches GROUP BY action`)
		if err != nil {
			return err
		}
		var action int32
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&action, &n}, func() error {
			o.ObserveInt64(breaches, n, metric.WithAttributes(
				attribute.String("action", handoffv1.SlaBreach_Action(action).String())))
			return nil
		})
		return err
	}, breaches)
	return err
}
