package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/leadflow/leadflow/pkg/logging"
)

const email = "ada.lovelace@example.com"

type contact struct{ addr string }

func (c contact) LogValue() slog.Value {
	return slog.GroupValue(slog.String("email", c.addr), slog.String("workspace", "workspaces/acme"))
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name   string
		log    func(*slog.Logger)
		secret string            // must not appear in the output
		want   map[string]string // dotted key -> value that must appear
	}{
		{
			name:   "email attribute",
			log:    func(l *slog.Logger) { l.Info("lead created", "email", email) },
			secret: email,
			want:   map[string]string{"email": logging.Redacted},
		},
		{
			name:   "camel case and qualified keys",
			log:    func(l *slog.Logger) { l.Info("x", "firstName", "Ada", "contact_email", email, "Last-Name", "Lovelace") },
			secret: "Lovelace",
			want:   map[string]string{"firstName": logging.Redacted, "contact_email": logging.Redacted},
		},
		{
			name:   "phone and ip",
			log:    func(l *slog.Logger) { l.Info("x", "phone", "+4915112345678", "ip_address", "203.0.113.7") },
			secret: "203.0.113.7",
			want:   map[string]string{"phone": logging.Redacted, "ip_address": logging.Redacted},
		},
		{
			name:   "inside a group",
			log:    func(l *slog.Logger) { l.Info("x", slog.Group("lead", "name", "leads/1", "email", email)) },
			secret: email,
			want:   map[string]string{"lead.email": logging.Redacted, "lead.name": "leads/1"},
		},
		{
			name:   "from With",
			log:    func(l *slog.Logger) { l.With("email", email).Info("x") },
			secret: email,
			want:   map[string]string{"email": logging.Redacted},
		},
		{
			name:   "from WithGroup and With",
			log:    func(l *slog.Logger) { l.WithGroup("req").With("remote_addr", "203.0.113.7:5555").Info("x") },
			secret: "203.0.113.7",
			want:   map[string]string{"req.remote_addr": logging.Redacted},
		},
		{
			name:   "LogValuer expanding to a group",
			log:    func(l *slog.Logger) { l.Info("x", "contact", contact{email}) },
			secret: email,
			want:   map[string]string{"contact.email": logging.Redacted, "contact.workspace": "workspaces/acme"},
		},
		{
			name: "email inside an error",
			log: func(l *slog.Logger) {
				l.Error("x", "error", fmt.Errorf("insert lead %s: %w", email, errors.New("conflict")))
			},
			secret: email,
			want:   map[string]string{"error": "insert lead [REDACTED]: conflict"},
		},
		{
			name:   "email inside a message and a string",
			log:    func(l *slog.Logger) { l.Info("mail to "+email+" bounced", "detail", "<"+email+">") },
			secret: email,
			want:   map[string]string{"msg": "mail to [REDACTED] bounced", "detail": "<[REDACTED]>"},
		},
		{
			name: "proto message logs its type only",
			log: func(l *slog.Logger) {
				l.Info("x", "lead", &structpb.Struct{Fields: map[string]*structpb.Value{"email": structpb.NewStringValue(email)}})
			},
			secret: email,
			want:   map[string]string{"lead": "<google.protobuf.Struct>"},
		},
		{
			name:   "resource name is kept",
			log:    func(l *slog.Logger) { l.Info("x", "name", "leads/42", "lead", "leads/42") },
			secret: "",
			want:   map[string]string{"name": "leads/42", "lead": "leads/42", "service": "ingestion"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(logging.New(&buf, slog.LevelInfo, "ingestion"))
			out := buf.String()
			if tt.secret != "" && strings.Contains(out, tt.secret) {
				t.Fatalf("output leaks %q: %s", tt.secret, out)
			}
			line := decode(t, out)
			for k, want := range tt.want {
				if got := lookup(line, k); got != want {
					t.Errorf("%s = %#v, want %q (line %s)", k, got, want, out)
				}
			}
		})
	}
}

func TestTraceIDs(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	var buf bytes.Buffer
	logging.New(&buf, slog.LevelInfo, "scoring").InfoContext(ctx, "scored")
	line := decode(t, buf.String())
	if got := lookup(line, "trace_id"); got != sc.TraceID().String() {
		t.Errorf("trace_id = %v, want %s", got, sc.TraceID())
	}
	if got := lookup(line, "span_id"); got != sc.SpanID().String() {
		t.Errorf("span_id = %v, want %s", got, sc.SpanID())
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	l := logging.New(&buf, slog.LevelWarn, "x")
	l.Info("hidden")
	l.Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
		t.Errorf("level not applied: %s", out)
	}
}

func decode(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("output is not one JSON object: %v: %s", err, out)
	}
	return m
}

func lookup(m map[string]any, dotted string) any {
	var cur any = m
	for _, k := range strings.Split(dotted, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

type nilErr struct{ msg string }

func (e *nilErr) Error() string { return e.msg }

func TestRedactSurvivesPanickingError(t *testing.T) {
	var buf bytes.Buffer
	var err *nilErr
	logging.New(&buf, slog.LevelInfo, "x").Info("x", "error", error(err))
	if !strings.Contains(buf.String(), `"error"`) {
		t.Errorf("record lost: %s", buf.String())
	}
}
