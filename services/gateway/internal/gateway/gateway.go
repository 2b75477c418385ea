// Package gateway is Leadflow's REST/JSON front door. It translates HTTP to
// the services' gRPC APIs with grpc-gateway, serves the merged OpenAPI
// description, and reports whether the whole suite is serving.
package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	scoringv1 "github.com/leadflow/leadflow/gen/go/leadflow/scoring/v1"
	"github.com/leadflow/leadflow/gen/openapi"
	"github.com/leadflow/leadflow/services/gateway/internal/ui"
)

// Backend is one gRPC service the gateway fronts.
type Backend struct {
	// Name is how /healthz reports the backend, e.g. "ingestion".
	Name string
	Conn *grpc.ClientConn
	// Register mounts the backend's REST routes on the mux.
	Register func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error
}

// Registrations maps each backend name to its grpc-gateway handler
// registration.
var Registrations = map[string]func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
	"identity":  identityv1.RegisterIdentityServiceHandler,
	"ingestion": ingestionv1.RegisterIngestionServiceHandler,
	"scoring":   scoringv1.RegisterScoringServiceHandler,
	"lifecycle": lifecyclev1.RegisterLifecycleServiceHandler,
	"handoff":   handoffv1.RegisterHandoffServiceHandler,
}

// Options configure the HTTP handler.
type Options struct {
	Logger   *slog.Logger
	Backends []Backend
	// HealthTimeout bounds each backend's health check.
	HealthTimeout time.Duration
	// MaxBodyBytes bounds REST request bodies (default 1 MiB); more gets 413.
	MaxBodyBytes int64
	// TrustForwardedFor believes X-Forwarded-For, for a gateway behind a
	// proxy that sets it.
	TrustForwardedFor bool
	// Ingestion serves the endpoints grpc-gateway cannot map: public form
	// posts and CSV uploads. Without it they are not served.
	Ingestion ingestionv1.IngestionServiceClient
	// Forms configures the public form endpoint.
	Forms FormOptions
	// ImportMaxBytes bounds a CSV upload to /v1/leads:import (default
	// 50 MiB); more gets 413. The upload is streamed, never buffered.
	ImportMaxBytes int64
}

// NewHandler returns the gateway's HTTP handler.
func NewHandler(ctx context.Context, opts Options) (http.Handler, error) {
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 2 * time.Second
	}
	mux := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: false, UseProtoNames: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
	)
	for _, b := range opts.Backends {
		if b.Register == nil {
			continue
		}
		if err := b.Register(ctx, mux, b.Conn); err != nil {
			return nil, fmt.Errorf("register %s routes: %w", b.Name, err)
		}
	}

	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.ImportMaxBytes <= 0 {
		opts.ImportMaxBytes = 50 << 20
	}
	var forms *formHandler
	var importer *csvImporter
	if opts.Ingestion != nil {
		forms = newFormHandler(opts.Ingestion, opts.Forms, opts.Logger)
		importer = &csvImporter{ingestion: opts.Ingestion, maxBytes: opts.ImportMaxBytes}
	}
	root := http.NewServeMux()
	root.Handle("/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = resolveClientIP(r, opts.TrustForwardedFor)
		if forms != nil {
			if form, ok := forms.match(r); ok {
				forms.serve(w, r, form)
				return
			}
			if r.URL.Path == importPath && r.Method == http.MethodPost {
				importer.serve(w, r)
				return
			}
		}
		if !limitBody(w, r, opts.MaxBodyBytes) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	root.HandleFunc("GET /healthz", healthz(opts))
	pages := ui.Handler()
	root.Handle("GET /ui/", pages)
	root.Handle("GET /docs", pages)
	root.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.JSON)
	})
	return root, nil
}

// incomingHeader forwards the headers services read besides the defaults:
// Idempotency-Key becomes the request_id fallback of Create RPCs.
func incomingHeader(key string) (string, bool) {
	switch strings.ToLower(key) {
	case "idempotency-key":
		return "idempotency-key", true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// healthz answers 200 only when every backend reports SERVING.
func healthz(opts Options) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		states := make([]string, len(opts.Backends))
		g, ctx := errgroup.WithContext(r.Context())
		for i, b := range opts.Backends {
			g.Go(func() error {
				ctx, cancel := context.WithTimeout(ctx, opts.HealthTimeout)
				defer cancel()
				resp, err := healthpb.NewHealthClient(b.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					states[i] = "UNREACHABLE"
					return nil
				}
				states[i] = resp.GetStatus().String()
				return nil
			})
		}
		_ = g.Wait()

		body := struct {
			Status   string            `json:"status"`
			Services map[string]string `json:"services"`
		}{Status: "SERVING", Services: map[string]string{}}
		for i, b := range opts.Backends {
			body.Services[b.Name] = states[i]
			if states[i] != healthpb.HealthCheckResponse_SERVING.String() {
				body.Status = "NOT_SERVING"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if body.Status != "SERVING" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	}
}
