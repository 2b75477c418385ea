package e2e

import (
	"context"
	"encoding/hex"
	"net"
	"sync"
	"testing"

	collmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// collector is an OTLP/gRPC receiver that keeps every span in memory, so
// the test sees exactly what the services export to a real backend.
type collector struct {
	colltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []span
}

// span is what the test checks of an exported span.
type span struct {
	Service, Name           string
	TraceID, SpanID, Parent string
	Attributes              map[string]string
	Links                   []string // linked trace ids
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	colltracepb.RegisterTraceServiceServer(srv, c)
	collmetricspb.RegisterMetricsServiceServer(srv, metricsSink{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return c, lis.Addr().String()
}

func (c *collector) Export(_ context.Context, req *colltracepb.ExportTraceServiceRequest) (*colltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, toSpan(service, s))
			}
		}
	}
	return &colltracepb.ExportTraceServiceResponse{}, nil
}

// metricsSink accepts and drops metrics: this test looks at traces, and
// the services' Prometheus endpoints are scraped by the devstack test.
type metricsSink struct {
	collmetricspb.UnimplementedMetricsServiceServer
}

func (metricsSink) Export(context.Context, *collmetricspb.ExportMetricsServiceRequest) (*collmetricspb.ExportMetricsServiceResponse, error) {
	return &collmetricspb.ExportMetricsServiceResponse{}, nil
}

func toSpan(service string, s *tracepb.Span) span {
	out := span{
		Service: service, Name: s.GetName(),
		TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
		Parent:     hex.EncodeToString(s.GetParentSpanId()),
		Attributes: map[string]string{},
	}
	for _, a := range s.GetAttributes() {
		out.Attributes[a.GetKey()] = anyValue(a.GetValue().String())
	}
	for _, ev := range s.GetEvents() {
		for _, a := range ev.GetAttributes() {
			out.Attributes["event."+ev.GetName()+"."+a.GetKey()] = anyValue(a.GetValue().String())
		}
	}
	for _, l := range s.GetLinks() {
		out.Links = append(out.Links, hex.EncodeToString(l.GetTraceId()))
	}
	return out
}

// anyValue keeps the printed AnyValue; the test only searches it.
func anyValue(s string) string { return s }

func (c *collector) all() []span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]span(nil), c.spans...)
}
