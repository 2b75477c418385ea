package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys every span about a lead carries. Ids only: never personal
// data.
const (
	AttrLeadID    = attribute.Key("leadflow.lead_id")
	AttrWorkspace = attribute.Key("leadflow.workspace")
)

// LinkToLead marks the current span as acting on a lead and, when the
// lead's origin trace is known (the W3C traceparent of the request that
// captured it), links the span to it. Actions that come days later in
// their own requests (an accept, a move to SQL, a win) are thus one click
// away from the lead's capture trace.
func LinkToLead(ctx context.Context, workspace, lead, originTraceparent string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrLeadID.String(lead), AttrWorkspace.String(workspace))
	if originTraceparent == "" {
		return
	}
	origin := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": originTraceparent}))
	if !origin.IsValid() || origin.TraceID() == span.SpanContext().TraceID() {
		return
	}
	span.AddLink(trace.Link{SpanContext: origin, Attributes: []attribute.KeyValue{
		attribute.String("leadflow.link", "lead_origin"),
	}})
}
