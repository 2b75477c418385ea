package telemetry_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/leadflow/leadflow/pkg/telemetry"
)

func TestLinkToLead(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background()) //nolint:errcheck // test cleanup
	tracer := tp.Tracer("t")

	const origin = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx, accept := tracer.Start(context.Background(), "accept")
	telemetry.LinkToLead(ctx, "acme", "lead-1", origin)
	accept.End()
	ctx, unknown := tracer.Start(context.Background(), "no-origin")
	telemetry.LinkToLead(ctx, "acme", "lead-2", "")
	unknown.End()

	spans := exp.GetSpans()
	if len(spans[0].Links) != 1 || spans[0].Links[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("links = %+v", spans[0].Links)
	}
	attrs := map[string]string{}
	for _, a := range spans[0].Attributes {
		attrs[string(a.Key)] = a.Value.AsString()
	}
	if attrs["leadflow.lead_id"] != "lead-1" || attrs["leadflow.workspace"] != "acme" {
		t.Fatalf("attributes = %v", attrs)
	}
	if len(spans[1].Links) != 0 {
		t.Fatalf("a span without a known origin got links: %+v", spans[1].Links)
	}
}
