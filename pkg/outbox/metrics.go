package outbox

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instrument reports the outbox's backlog and lag as gauges while the relay
// runs, read from the table whenever metrics are collected, with a zero for
// each subscriber that has nothing waiting:
//
//	leadflow.outbox.backlog      events waiting for delivery, by subscriber
//	leadflow.outbox.lag          age in seconds of the oldest waiting event, by subscriber
//	leadflow.outbox.dead         events a subscriber refused for good, by subscriber
func instrument(pool *pgxpool.Pool, subscribers []string) (metric.Registration, error) {
	meter := otel.Meter("github.com/leadflow/leadflow/pkg/outbox")
	backlog, err := meter.Int64ObservableGauge("leadflow.outbox.backlog",
		metric.WithDescription("Events waiting for delivery."), metric.WithUnit("{event}"))
	if err != nil {
		return nil, err
	}
	lag, err := meter.Float64ObservableGauge("leadflow.outbox.lag",
		metric.WithDescription("Age of the oldest event waiting for delivery."), metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	dead, err := meter.Int64ObservableGauge("leadflow.outbox.dead",
		metric.WithDescription("Events a subscriber refused for good, parked for an operator."), metric.WithUnit("{event}"))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		const q = `
SELECT s,
       coalesce(sum(event_count) FILTER (WHERE dead_time IS NULL), 0),
       coalesce(sum(event_count) FILTER (WHERE dead_time IS NOT NULL), 0),
       coalesce(extract(epoch FROM now() - min(create_time) FILTER (WHERE dead_time IS NULL)), 0)::float8
  FROM outbox, unnest(subscribers) AS s GROUP BY s`
		rows, err := pool.Query(ctx, q)
		if err != nil {
			return err
		}
		var sub string
		var waiting, parked int64
		var age float64
		seen := map[string]bool{}
		observe := func(sub string, waiting, parked int64, age float64) {
			attrs := metric.WithAttributes(attribute.String("subscriber", sub))
			o.ObserveInt64(backlog, waiting, attrs)
			o.ObserveInt64(dead, parked, attrs)
			o.ObserveFloat64(lag, age, attrs)
			seen[sub] = true
		}
		if _, err := pgx.ForEachRow(rows, []any{&sub, &waiting, &parked, &age}, func() error {
			observe(sub, waiting, parked, age)
			return nil
		}); err != nil {
			return err
		}
		for _, s := range subscribers {
			if !seen[s] {
				observe(s, 0, 0, 0)
			}
		}
		return nil
	}, backlog, lag, dead)
}
