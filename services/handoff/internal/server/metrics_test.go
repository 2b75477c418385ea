package server_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/types/known/durationpb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/services/handoff/internal/store"
)

// The SLA breach gauge reads the breaches table, so it counts what was
// recorded, by action.
func TestSLABreachMetric(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	f := newFixture(t)
	if err := store.Instrument(f.pool); err != nil {
		t.Fatal(err)
	}
	setUpRouting(f)
	f.sla(&handoffv1.SlaSettings{
		AcceptanceDeadline: durationpb.New(time.Hour),
		BreachAction:       handoffv1.BreachAction_BREACH_ACTION_REASSIGN,
		MaxReassignments:   5,
	}, "acceptance_deadline", "breach_action", "max_reassignments", "escalation_enabled")
	f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	f.clock.Advance(time.Hour)
	if n := f.fire(f.app); n != 1 {
		t.Fatalf("fired %d, want 1", n)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "leadflow.handoff.sla_breaches" {
				continue
			}
			for _, p := range m.Data.(metricdata.Gauge[int64]).DataPoints {
				if v, _ := p.Attributes.Value(attribute.Key("action")); v.AsString() == "ACTION_REASSIGNED" && p.Value == 1 {
					return
				}
			}
			t.Fatalf("sla_breaches = %+v, want one REASSIGNED", m.Data)
		}
	}
	t.Fatal("no leadflow.handoff.sla_breaches metric collected")
}
