package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/leadflow/leadflow/pkg/logging"
)

// redactingExporter strips personal data from spans before any exporter
// sees them. Instrumentation libraries record the client's address and
// browser (client.address, network.peer.address, user_agent.original) and
// full URLs whose query strings may carry an email; error messages may
// quote input. The same key list and e-mail scrubbing as the logs apply.
type redactingExporter struct {
	next sdktrace.SpanExporter
}

func (e redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redactedSpan{ReadOnlySpan: s}
	}
	return e.next.ExportSpans(ctx, out)
}

func (e redactingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

// redactedSpan presents a span with its personal attributes removed.
// Embedding ReadOnlySpan keeps every other accessor as it was.
type redactedSpan struct {
	sdktrace.ReadOnlySpan
}

func (s redactedSpan) Attributes() []attribute.KeyValue {
	return redactAttributes(s.ReadOnlySpan.Attributes())
}

func (s redactedSpan) Events() []sdktrace.Event {
	events := s.ReadOnlySpan.Events()
	out := make([]sdktrace.Event, len(events))
	for i, ev := range events {
		ev.Attributes = redactAttributes(ev.Attributes)
		out[i] = ev
	}
	return out
}

func (s redactedSpan) Status() sdktrace.Status {
	st := s.ReadOnlySpan.Status()
	st.Description = logging.ScrubText(st.Description)
	return st
}

// urlKeys hold URLs or paths whose query string is dropped.
var urlKeys = map[attribute.Key]bool{"url.full": true, "http.url": true, "http.target": true, "url.query": true}

// redactAttributes drops attributes that name personal data, cuts query
// strings off URLs and scrubs e-mail addresses from string values.
func redactAttributes(attrs []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(attrs))
	for _, a := range attrs {
		if logging.IsPersonalKey(string(a.Key)) {
			continue
		}
		if a.Value.Type() == attribute.STRING {
			v := a.Value.AsString()
			if urlKeys[a.Key] {
				if a.Key == "url.query" {
					continue
				}
				v, _, _ = strings.Cut(v, "?")
			}
			a = attribute.String(string(a.Key), logging.ScrubText(v))
		}
		out = append(out, a)
	}
	return out
}
