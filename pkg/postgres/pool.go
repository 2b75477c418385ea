// Package postgres opens pgx connection pools, runs transactions with
// bounded retries, writes rows in bulk, and names the SQLSTATEs the services
// rely on.
//
// Services use pgx directly, without an ORM. Store methods take a Querier so
// that the same method runs on the pool or inside a transaction started by
// InTx.
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Querier runs statements; *pgxpool.Pool, *pgxpool.Conn and pgx.Tx satisfy it.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

var (
	_ Querier = (*pgxpool.Pool)(nil)
	_ Querier = (*pgxpool.Conn)(nil)
	_ Querier = pgx.Tx(nil)
)

// defaultPingTimeout bounds the startup ping when ctx has no deadline.
const defaultPingTimeout = 10 * time.Second

type options struct {
	maxConns, minConns int32
	appName            string
	tracerProvider     trace.TracerProvider
	meterProvider      metric.MeterProvider
}

// Option configures NewPool.
type Option func(*options)

// WithMaxConns caps the pool size; by default the URL's pool_max_conns or
// pgxpool's default (the larger of 4 and the CPU count) applies.
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

// WithMinConns keeps at least n connections open.
func WithMinConns(n int32) Option { return func(o *options) { o.minConns = n } }

// WithApplicationName sets application_name, shown in pg_stat_activity,
// unless the URL already sets it.
func WithApplicationName(name string) Option { return func(o *options) { o.appName = name } }

// WithTracerProvider sets the provider of query spans; default otel's global one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithMeterProvider sets the provider of query and pool metrics; default otel's global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// NewPool opens a pool on url (a postgres:// URL or key=value DSN; pool_*
// parameters and runtime parameters such as search_path are honoured), traces
// its queries with OpenTelemetry, and pings the server so that a wrong address
// or password fails here rather than on the first request.
//
// Spans carry the SQL text and connection details but never the query
// arguments, which can hold personal data.
func NewPool(ctx context.Context, url string, opts ...Option) (*pgxpool.Pool, error) {
	o := options{tracerProvider: otel.GetTracerProvider(), meterProvider: otel.GetMeterProvider()}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url) // its errors redact the password
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
	}
	if o.minConns > 0 {
		cfg.MinConns = min(o.minConns, cfg.MaxConns)
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set && o.appName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = o.appName
	}
	// Never add otelpgx.WithIncludeQueryParameters: arguments hold emails and names.
	cfg.ConnConfig.Tracer = otelpgx.NewTracer(
		otelpgx.WithTracerProvider(o.tracerProvider),
		otelpgx.WithMeterProvider(o.meterProvider),
	)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	pingCtx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		pingCtx, cancel = context.WithTimeout(ctx, defaultPingTimeout)
		defer cancel()
	}
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		cc := cfg.ConnConfig
		return nil, fmt.Errorf("connect to postgres at %s:%d database %q as %q: %w", cc.Host, cc.Port, cc.Database, cc.User, err)
	}
	if err := otelpgx.RecordStats(pool, otelpgx.WithStatsMeterProvider(o.meterProvider)); err != nil {
		pool.Close()
		return nil, fmt.Errorf("register pool metrics: %w", err)
	}
	return pool, nil
}
