// Package telemetry sets up OpenTelemetry tracing and metrics for a service.
//
// Setup always installs real SDK providers and the W3C tracecontext and
// baggage propagators, so every request gets a trace id that is logged and
// carried into events and downstream calls, even when nothing is exported.
// Export is switched on by the standard OTLP variables, read by the SDK
// itself (not prefixed by the service):
//
//	OTEL_EXPORTER_OTLP_ENDPOINT          e.g. http://otel-collector:4317; enables
//	                                     OTLP/gRPC export of traces and metrics
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   traces only
//	OTEL_EXPORTER_OTLP_METRICS_ENDPOINT  metrics only
//	OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_INSECURE, ... as the SDK documents
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES  override and extend the resource
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG take precedence over
//	                                     Options.SampleRatio when set
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Options configures Setup.
type Options struct {
	// ServiceName is the service.name resource attribute, e.g. "ingestion".
	ServiceName string
	// Version is the service.version resource attribute.
	Version string
	// SampleRatio is the fraction of new root traces that are sampled
	// (0 to 1); a sampled parent is always followed. Zero samples no new
	// root traces, though their trace ids still exist and propagate.
	// config.Base defaults it to 1. Ignored when OTEL_TRACES_SAMPLER is set
	// or Sampler is given.
	SampleRatio float64
	// Sampler, if set, replaces the sampler built from SampleRatio.
	Sampler sdktrace.Sampler
	// SpanExporter, if set, receives the spans instead of OTLP; tests pass
	// an in-memory exporter (go.opentelemetry.io/otel/sdk/trace/tracetest).
	SpanExporter sdktrace.SpanExporter
	// MetricReader, if set, is used instead of OTLP export; tests pass
	// sdkmetric.NewManualReader().
	MetricReader sdkmetric.Reader
	// Prometheus, if set, also exposes every metric in this registry, for a
	// /metrics endpoint (promhttp.HandlerFor). Metric labels never carry
	// personal data: only methods, codes, stages and service names.
	Prometheus *prometheus.Registry
	// Logger receives the errors the SDK reports in the background, such
	// as failed exports. Nil leaves OpenTelemetry's default handler.
	Logger *slog.Logger
}

// Setup installs global tracer and meter providers and propagators. The
// returned shutdown flushes and stops them; call it last, after the servers
// have stopped, with a context that bounds the flush.
func Setup(ctx context.Context, opts Options) (shutdown func(context.Context) error, err error) {
	if opts.ServiceName == "" {
		return nil, errors.New("telemetry: ServiceName is required")
	}
	if opts.SampleRatio < 0 || opts.SampleRatio > 1 {
		return nil, fmt.Errorf("telemetry: SampleRatio must be between 0 and 1, got %v", opts.SampleRatio)
	}

	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(opts.ServiceName), semconv.ServiceVersion(opts.Version)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		// Last, so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: build resource: %w", err)
	}

	var shutdowns []func(context.Context) error
	shutdownAll := func(ctx context.Context) error {
		var errs []error
		for i := len(shutdowns) - 1; i >= 0; i-- {
			errs = append(errs, shutdowns[i](ctx))
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, shutdownAll(ctx))
		}
	}()

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	switch {
	case opts.Sampler != nil:
		tpOpts = append(tpOpts, sdktrace.WithSampler(opts.Sampler))
	case os.Getenv("OTEL_TRACES_SAMPLER") != "":
		// The SDK reads OTEL_TRACES_SAMPLER and its argument when no
		// sampler is given.
	default:
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opts.SampleRatio))))
	}
	spanExp := opts.SpanExporter
	if spanExp == nil && endpointSet("TRACES") {
		if spanExp, err = otlptracegrpc.New(ctx); err != nil {
			return nil, fmt.Errorf("telemetry: create OTLP trace exporter: %w", err)
		}
	}
	if spanExp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(redactingExporter{next: spanExp}))
	}
	// Without an exporter the provider still creates and samples spans:
	// their ids are what ties logs, events and downstream calls together.
	tp := sdktrace.NewTracerProvider(tpOpts...)
	shutdowns = append(shutdowns, tp.Shutdown)

	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	reader := opts.MetricReader
	if reader == nil && endpointSet("METRICS") {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: create OTLP metric exporter: %w", err)
		}
		reader = sdkmetric.NewPeriodicReader(exp)
	}
	if reader != nil {
		mpOpts = append(mpOpts, sdkmetric.WithReader(reader))
	}
	if opts.Prometheus != nil {
		promReader, err := otelprom.New(otelprom.WithRegisterer(opts.Prometheus))
		if err != nil {
			return nil, fmt.Errorf("telemetry: create Prometheus exporter: %w", err)
		}
		mpOpts = append(mpOpts, sdkmetric.WithReader(promReader))
	}
	mp := sdkmetric.NewMeterProvider(mpOpts...)
	shutdowns = append(shutdowns, mp.Shutdown)

	if opts.Logger != nil {
		logger := opts.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Warn("opentelemetry error", slog.Any("error", err))
		}))
	}
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{},
		propagation.Baggage{},
	))
	return shutdownAll, nil
}

// endpointSet reports whether an OTLP endpoint is configured for signal
// ("TRACES" or "METRICS"), generally or for that signal alone.
func endpointSet(signal string) bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}
