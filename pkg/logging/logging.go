// Package logging builds the structured logger every Leadflow service uses:
// JSON lines on one writer, a "service" attribute, the trace and span ids of
// the active span, and a guard that keeps personal data out of the output.
//
// The guard (Redact) is a safety net, not a licence: log resource names
// ("leads/123"), never lead fields or whole request messages.
package logging

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// New returns a JSON logger writing to w at level. Every record carries
// service, and trace_id and span_id when its context holds a valid span
// (use the ...Context logging methods). Attributes that look like personal
// data are redacted; see Redact.
func New(w io.Writer, level slog.Leveler, service string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(Redact(traceHandler{h})).With(slog.String("service", service))
}

// Discard returns a logger that writes nothing, for tests and optional
// dependencies.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// traceHandler adds the ids of the span in the record's context, so a log
// line can be found from a trace and the other way round.
type traceHandler struct{ next slog.Handler }

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(
			slog.String("trace_id", sc.TraceID().String()),
			slog.String("span_id", sc.SpanID().String()),
		)
	}
	return h.next.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.next.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.next.WithGroup(name)}
}
