// Command gateway is Leadflow's REST/JSON front door: it translates HTTP to
// the services' gRPC APIs, serves /openapi.json and /healthz.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/logging"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/gateway/internal/gateway"
)

// Config is read from GATEWAY_-prefixed variables:
//
//	HTTP_ADDR          where REST is served                  (default :8080)
//	LOG_LEVEL          DEBUG, INFO, WARN or ERROR             (default INFO)
//	TLS_CERT_FILE      PEM certificate; with TLS_KEY_FILE serves HTTPS
//	TLS_KEY_FILE       PEM private key
//	SHUTDOWN_TIMEOUT   bound on draining in-flight requests  (default 10s)
//	TRACE_SAMPLE_RATIO fraction of new traces sampled        (default 1)
//	IDENTITY_ADDR, INGESTION_ADDR, SCORING_ADDR, LIFECYCLE_ADDR, HANDOFF_ADDR
//	                   the backends (defaults localhost:9090..9094)
//	METRICS_ADDR       Prometheus /metrics; empty turns it off (default :9464)
//	INTERNAL_TOKEN     lets the gateway read public form policies (masked)
//	MAX_BODY_BYTES     REST request body limit, 413 beyond    (default 1048576)
//	TRUST_FORWARDED_FOR believe X-Forwarded-For (behind a proxy) (default false)
//	FORM_IP_PER_MINUTE, FORM_IP_BURST  form posts per client IP  (default 10, 5)
//	FORM_PER_SECOND, FORM_BURST        form posts per form       (default 20, 100)
//	FORM_MAX_BODY_BYTES                form submission limit     (default 65536)
type Config struct {
	service.Peers
	InternalToken     config.Secret `env:"INTERNAL_TOKEN"`
	MetricsAddr       string        `env:"METRICS_ADDR" envDefault:":9464"`
	MaxBodyBytes      int64         `env:"MAX_BODY_BYTES" envDefault:"1048576"`
	TrustForwardedFor bool          `env:"TRUST_FORWARDED_FOR" envDefault:"false"`
	FormIPPerMinute   float64       `env:"FORM_IP_PER_MINUTE" envDefault:"10"`
	FormIPBurst       int           `env:"FORM_IP_BURST" envDefault:"5"`
	FormPerSecond     float64       `env:"FORM_PER_SECOND" envDefault:"20"`
	FormBurst         int           `env:"FORM_BURST" envDefault:"100"`
	FormMaxBodyBytes  int64         `env:"FORM_MAX_BODY_BYTES" envDefault:"65536"`
	HTTPAddr          string        `env:"HTTP_ADDR" envDefault:":8080"`
	LogLevel          slog.Level    `env:"LOG_LEVEL" envDefault:"INFO"`
	TLSCertFile       string        `env:"TLS_CERT_FILE"`
	TLSKeyFile        string        `env:"TLS_KEY_FILE"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`
	TraceSampleRatio  float64       `env:"TRACE_SAMPLE_RATIO" envDefault:"1"`
}

// Validate implements config validation.
func (c *Config) Validate() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
	}
	return nil
}

func main() { grpcserver.Main(run) }

func run(ctx context.Context) (err error) {
	cfg, err := config.Load[Config]("GATEWAY")
	if err != nil {
		return err
	}
	logger := logging.New(os.Stdout, cfg.LogLevel, "gateway")
	logger.Info("starting", "config", config.LogValue(cfg))

	var closers grpcserver.Closers
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		err = errors.Join(err, closers.Close(shutdownCtx))
	}()
	registry := prometheus.NewRegistry()
	shutdownTelemetry, err := telemetry.Setup(ctx, telemetry.Options{
		ServiceName: "gateway", SampleRatio: cfg.TraceSampleRatio, Logger: logger, Prometheus: registry,
	})
	if err != nil {
		return err
	}
	closers.Add(shutdownTelemetry)

	var backends []gateway.Backend
	for _, name := range service.All {
		addr, _ := cfg.Addr(name)
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		)
		if err != nil {
			return fmt.Errorf("dial %s: %w", name, err)
		}
		closers.AddFunc(func() { _ = conn.Close() })
		backends = append(backends, gateway.Backend{Name: name, Conn: conn, Register: gateway.Registrations[name]})
	}
	ingestion := backends[slices.IndexFunc(backends, func(b gateway.Backend) bool { return b.Name == service.Ingestion })]
	handler, err := gateway.NewHandler(ctx, gateway.Options{
		Logger:            logger,
		Backends:          backends,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		TrustForwardedFor: cfg.TrustForwardedFor,
		Ingestion:         ingestionv1.NewIngestionServiceClient(ingestion.Conn),
		Forms: gateway.FormOptions{
			CallOptions:  []grpc.CallOption{auth.BearerCredentials(cfg.InternalToken.Reveal())},
			MaxBodyBytes: cfg.FormMaxBodyBytes,
			PerIP:        rate.Limit(cfg.FormIPPerMinute / 60),
			PerIPBurst:   cfg.FormIPBurst,
			PerForm:      rate.Limit(cfg.FormPerSecond),
			PerFormBurst: cfg.FormBurst,
		},
	})
	if err != nil {
		return err
	}

	// The listener opens here, not in a goroutine, so a taken port fails
	// start-up instead of racing it.
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	if cfg.MetricsAddr != "" {
		g.Go(func() error { return service.ServeMetrics(gctx, cfg.MetricsAddr, registry, logger) })
	}
	g.Go(func() error {
		return gateway.Serve(gctx, lis, otelhttp.NewHandler(handler, "gateway"), gateway.ServeOptions{
			Logger: logger, TLSCertFile: cfg.TLSCertFile, TLSKeyFile: cfg.TLSKeyFile, ShutdownTimeout: cfg.ShutdownTimeout,
		})
	})
	return g.Wait()
}
