package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/leadflow/leadflow/pkg/telemetry"
)

// setup runs telemetry.Setup with no OTLP endpoint and shuts it down when
// the test ends. Setup installs globals, so these tests do not run in
// parallel.
func setup(t *testing.T, opts telemetry.Options) {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")
	if opts.ServiceName == "" {
		opts.ServiceName = "scoring"
	}
	shutdown, err := telemetry.Setup(t.Context(), opts)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
}

func TestExportsSpansToCustomExporter(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	setup(t, telemetry.Options{ServiceName: "scoring", Version: "1.2.3", SampleRatio: 1, SpanExporter: exp})

	_, span := otel.Tracer("test").Start(t.Context(), "score lead")
	span.End()
	if err := otel.GetTracerProvider().(*sdktrace.TracerProvider).ForceFlush(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}

	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "score lead" {
		t.Fatalf("exported spans = %v, want one named %q", spans, "score lead")
	}
	attrs := spans[0].Resource.Set()
	if v, _ := attrs.Value(semconv.ServiceNameKey); v.AsString() != "scoring" {
		t.Errorf("service.name = %q, want scoring", v.AsString())
	}
	if v, _ := attrs.Value(semconv.ServiceVersionKey); v.AsString() != "1.2.3" {
		t.Errorf("service.version = %q, want 1.2.3", v.AsString())
	}
}

func TestSampling(t *testing.T) {
	sampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0xaa},
		SpanID:     trace.SpanID{0xbb},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	}))

	tests := []struct {
		name        string
		env         string // OTEL_TRACES_SAMPLER
		ratio       float64
		parent      context.Context
		wantSampled bool
	}{
		{name: "ratio 1 samples new traces", ratio: 1, parent: context.Background(), wantSampled: true},
		{name: "ratio 0 samples no new trace", ratio: 0, parent: context.Background(), wantSampled: false},
		{name: "sampled parent is followed", ratio: 0, parent: sampledParent, wantSampled: true},
		{name: "OTEL_TRACES_SAMPLER wins", env: "always_off", ratio: 1, parent: context.Background(), wantSampled: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", tt.env)
			setup(t, telemetry.Options{SampleRatio: tt.ratio})

			ctx, span := otel.Tracer("test").Start(tt.parent, "op")
			defer span.End()
			sc := span.SpanContext()
			// Trace ids exist whether or not the span is sampled or exported.
			if !sc.TraceID().IsValid() {
				t.Fatal("span has no trace id")
			}
			if sc.IsSampled() != tt.wantSampled {
				t.Errorf("sampled = %v, want %v", sc.IsSampled(), tt.wantSampled)
			}

			carrier := propagation.MapCarrier{}
			otel.GetTextMapPropagator().Inject(ctx, carrier)
			if carrier.Get("traceparent") == "" {
				t.Fatalf("no traceparent injected: %v", carrier)
			}
			got := trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(), carrier))
			if got.TraceID() != sc.TraceID() || got.IsSampled() != tt.wantSampled {
				t.Errorf("extracted %v, want trace %v sampled %v", got, sc.TraceID(), tt.wantSampled)
			}
		})
	}
}

func TestBaggagePropagates(t *testing.T) {
	setup(t, telemetry.Options{SampleRatio: 1})
	carrier := propagation.MapCarrier{"baggage": "workspace=acme"}
	ctx := otel.GetTextMapPropagator().Extract(context.Background(), carrier)
	out := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, out)
	if out.Get("baggage") != "workspace=acme" {
		t.Errorf("baggage = %q, want workspace=acme", out.Get("baggage"))
	}
}

func TestMetricReader(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	setup(t, telemetry.Options{SampleRatio: 1, MetricReader: reader})

	counter, err := otel.Meter("test").Int64Counter("leads.scored")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(t.Context(), 3)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "leads.scored" {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || len(sum.DataPoints) != 1 || sum.DataPoints[0].Value != 3 {
				t.Fatalf("leads.scored = %+v, want a sum of 3", m.Data)
			}
			return
		}
	}
	t.Fatalf("metric leads.scored not collected: %+v", rm)
}

func TestSetupRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts telemetry.Options
	}{
		{"no service name", telemetry.Options{SampleRatio: 1}},
		{"ratio above 1", telemetry.Options{ServiceName: "x", SampleRatio: 1.5}},
		{"negative ratio", telemetry.Options{ServiceName: "x", SampleRatio: -0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := telemetry.Setup(t.Context(), tt.opts); err == nil {
				t.Error("Setup succeeded, want an error")
			}
		})
	}
}

func TestSpansCarryNoPersonalData(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "test", SampleRatio: 1, SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("t").Start(context.Background(), "op", trace.WithAttributes(
		attribute.String("client.address", "203.0.113.7"),
		attribute.String("user_agent.original", "Mozilla/5.0"),
		attribute.String("url.full", "https://x.example/v1/leads?email=ada@example.com"),
		attribute.String("leadflow.lead_id", "123"),
		attribute.String("error.detail", "duplicate key ada@example.com"),
	))
	span.AddEvent("exception", trace.WithAttributes(attribute.String("exception.message", "bad email grace@example.com")))
	span.End()
	defer shutdown(context.Background()) //nolint:errcheck // the in-memory exporter forgets its spans on shutdown
	if err := otel.GetTracerProvider().(*sdktrace.TracerProvider).ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("exported %d spans", len(spans))
	}
	got := map[string]string{}
	for _, a := range spans[0].Attributes {
		got[string(a.Key)] = a.Value.Emit()
	}
	want := map[string]string{
		"url.full":         "https://x.example/v1/leads",
		"leadflow.lead_id": "123",
		"error.detail":     "duplicate key [REDACTED]",
	}
	if len(got) != len(want) {
		t.Fatalf("attributes = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if msg := spans[0].Events[0].Attributes[0].Value.AsString(); strings.Contains(msg, "@") {
		t.Errorf("event kept an email: %q", msg)
	}
}
