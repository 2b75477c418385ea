// Package service runs a Leadflow gRPC service: it is the start-up and
// shutdown sequence every service shares, so that each main.go only wires
// its own domain.
//
// The sequence: config from the environment (prefixed with the service
// name), a JSON logger, OpenTelemetry, a pgx pool on the service's own
// schema, the gRPC server with its interceptors (recovery, logging, error
// mapping, API-key auth, validation), health and reflection; then the
// service's Setup registers its APIs and background workers, and everything
// runs under one errgroup until SIGINT or SIGTERM. Resources close in reverse
// order of creation.
//
// Subcommands: `<binary>` or `<binary> serve` serves; `<binary> migrate`
// applies the schema migrations and exits (a Kubernetes Job, or `make run`);
// services may add their own (identity's `seed`).
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/logging"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// Config holds the settings every service reads, each prefixed with the
// service name (INGESTION_GRPC_ADDR, ...). Beyond config.Base:
//
//	INTERNAL_TOKEN     shared secret other Leadflow services authenticate with (masked in logs)
//	IDENTITY_ADDR      identity service, which checks API keys  (default localhost:9090)
//	INGESTION_ADDR     ingestion service                       (default localhost:9091)
//	SCORING_ADDR       scoring service                         (default localhost:9092)
//	LIFECYCLE_ADDR     lifecycle service                       (default localhost:9093)
//	HANDOFF_ADDR       handoff service                         (default localhost:9094)
//	AUTH_CACHE_TTL     how long an API key's check is cached   (default 30s)
//	METRICS_ADDR       Prometheus /metrics endpoint; empty turns it off (default :9464)
type Config struct {
	config.Base
	Peers
	InternalToken config.Secret `env:"INTERNAL_TOKEN"`
	AuthCacheTTL  time.Duration `env:"AUTH_CACHE_TTL" envDefault:"30s"`
	MetricsAddr   string        `env:"METRICS_ADDR" envDefault:":9464"`
}

// Peers are the addresses of the Leadflow services, for whoever calls them
// (services, the gateway).
type Peers struct {
	IdentityAddr  string `env:"IDENTITY_ADDR" envDefault:"localhost:9090"`
	IngestionAddr string `env:"INGESTION_ADDR" envDefault:"localhost:9091"`
	ScoringAddr   string `env:"SCORING_ADDR" envDefault:"localhost:9092"`
	LifecycleAddr string `env:"LIFECYCLE_ADDR" envDefault:"localhost:9093"`
	HandoffAddr   string `env:"HANDOFF_ADDR" envDefault:"localhost:9094"`
}

// All lists every backend service, identity first.
var All = []string{Identity, Ingestion, Scoring, Lifecycle, Handoff}

// Peer names, as used by Runtime.Dial and outbox routes.
const (
	Identity  = "identity"
	Ingestion = "ingestion"
	Scoring   = "scoring"
	Lifecycle = "lifecycle"
	Handoff   = "handoff"
)

// Addr returns the address of the named peer.
func (c Peers) Addr(name string) (string, bool) {
	switch name {
	case Identity:
		return c.IdentityAddr, true
	case Ingestion:
		return c.IngestionAddr, true
	case Scoring:
		return c.ScoringAddr, true
	case Lifecycle:
		return c.LifecycleAddr, true
	case Handoff:
		return c.HandoffAddr, true
	}
	return "", false
}

// Spec describes one service.
type Spec struct {
	// Name is the service's name, its env prefix and its default schema.
	Name string
	// Migrations are the schema's migration sets: the service's own first.
	Migrations []migrate.Set
	// Policy says who may call each of the service's RPCs.
	Policy auth.Policy
	// SkipValidation lists methods that validate their own requests.
	SkipValidation []string
	// Setup builds the domain and registers it on rt.Server.
	Setup func(ctx context.Context, rt *Runtime) error
	// Commands are extra subcommands, run with a Runtime that has a pool but
	// no server.
	Commands map[string]func(ctx context.Context, rt *Runtime, args []string) error
}

// Runtime is what Setup and Commands get to wire a service.
type Runtime struct {
	Config Config
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	// Server is nil for Commands.
	Server *grpcserver.Server

	authn   auth.Authenticator
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	workers []func(ctx context.Context) error
}

// Go runs fn alongside the server until shutdown; its error stops the
// service.
func (rt *Runtime) Go(fn func(ctx context.Context) error) { rt.workers = append(rt.workers, fn) }

// SetAuthenticator replaces the default authenticator (a cached call to the
// identity service). Identity uses it to check keys against its own store.
func (rt *Runtime) SetAuthenticator(a auth.Authenticator) { rt.authn = a }

// Dial returns a shared client connection to another Leadflow service that
// authenticates with the internal token and propagates trace context.
func (rt *Runtime) Dial(peer string) (*grpc.ClientConn, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if c, ok := rt.conns[peer]; ok {
		return c, nil
	}
	addr, ok := rt.Config.Addr(peer)
	if !ok {
		return nil, fmt.Errorf("unknown peer service %q", peer)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		auth.WithBearer(rt.Config.InternalToken.Reveal()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s at %s: %w", peer, addr, err)
	}
	if rt.conns == nil {
		rt.conns = map[string]*grpc.ClientConn{}
	}
	rt.conns[peer] = conn
	return conn, nil
}

// RelayTo starts the outbox relay of the service's schema, delivering to
// each named peer's EventSinkService until shutdown. Until a peer is up its
// deliveries fail and are retried with backoff; nothing is lost.
func (rt *Runtime) RelayTo(schema string, peers ...string) error {
	sinks := make(map[string]outbox.Sink, len(peers))
	for _, peer := range peers {
		conn, err := rt.Dial(peer)
		if err != nil {
			return err
		}
		sinks[peer] = outbox.GRPCSink(conn)
	}
	rt.Go(outbox.NewRelay(rt.Pool, schema, sinks, outbox.RelayOptions{Logger: rt.Logger}).Run)
	return nil
}

func (rt *Runtime) closeConns() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, c := range rt.conns {
		_ = c.Close()
	}
}

// lazyAuthn defers to whatever authenticator the runtime holds when a
// request arrives, so Setup may still replace it.
type lazyAuthn struct{ rt *Runtime }

func (l lazyAuthn) Authenticate(ctx context.Context, secret string) (auth.Principal, error) {
	return l.rt.authn.Authenticate(ctx, secret)
}

// Main runs the service described by spec and exits; call it from main.
func Main(spec Spec) {
	grpcserver.Main(func(ctx context.Context) error { return Run(ctx, spec, os.Args[1:]) })
}

// Run is Main without the process plumbing, for tests.
func Run(ctx context.Context, spec Spec, args []string) (err error) {
	TuneGC()
	cfg, err := config.Load[Config](strings.ToUpper(spec.Name))
	if err != nil {
		return err
	}
	logger := logging.New(os.Stdout, cfg.LogLevel, spec.Name)
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if cfg.DatabaseURL == "" {
		return fmt.Errorf("%s_DATABASE_URL is required", strings.ToUpper(spec.Name))
	}

	if cmd == "migrate" {
		logger.Info("migrating", "schema", spec.Name)
		return migrate.UpSets(ctx, cfg.DatabaseURL.Reveal(), spec.Name, spec.Migrations, migrate.WithLogger(logger))
	}
	extra, isExtra := spec.Commands[cmd]
	if cmd != "serve" && !isExtra {
		return fmt.Errorf("unknown command %q: want serve, migrate%s", cmd, commandList(spec))
	}
	logger.Info("starting", "command", cmd, "config", config.LogValue(cfg))

	var closers grpcserver.Closers
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		err = errors.Join(err, closers.Close(shutdownCtx))
	}()

	registry := prometheus.NewRegistry()
	shutdownTelemetry, err := telemetry.Setup(ctx, telemetry.Options{
		ServiceName: spec.Name, SampleRatio: cfg.TraceSampleRatio, Logger: logger, Prometheus: registry,
	})
	if err != nil {
		return err
	}
	closers.Add(shutdownTelemetry)

	dbURL, err := withSearchPath(cfg.DatabaseURL.Reveal(), spec.Name)
	if err != nil {
		return err
	}
	pool, err := postgres.NewPool(ctx, dbURL, postgres.WithApplicationName(spec.Name))
	if err != nil {
		return err
	}
	closers.AddFunc(pool.Close)

	rt := &Runtime{Config: cfg, Logger: logger, Pool: pool}
	closers.AddFunc(rt.closeConns)
	if isExtra {
		return extra(ctx, rt, args)
	}

	identityConn, err := rt.Dial(Identity)
	if err != nil {
		return err
	}
	rt.authn = auth.NewCachingAuthenticator(
		auth.IdentityLookup(identityv1.NewIdentityServiceClient(identityConn)), cfg.AuthCacheTTL)
	guard := auth.NewGuard(lazyAuthn{rt}, spec.Policy, cfg.InternalToken.Reveal())

	rt.Server, err = grpcserver.New(grpcserver.Options{
		Logger:             logger,
		TLSCertFile:        cfg.TLSCertFile,
		TLSKeyFile:         cfg.TLSKeyFile,
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{guard.UnaryInterceptor()},
		StreamInterceptors: []grpc.StreamServerInterceptor{guard.StreamInterceptor()},
		SkipValidation:     spec.SkipValidation,
		DrainDelay:         cfg.ShutdownDrain,
		ShutdownTimeout:    cfg.ShutdownTimeout,
	})
	if err != nil {
		return err
	}
	if err := spec.Setup(ctx, rt); err != nil {
		return fmt.Errorf("set up %s: %w", spec.Name, err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.Server.ListenAndServe(gctx, cfg.GRPCAddr) })
	if cfg.MetricsAddr != "" {
		g.Go(func() error { return ServeMetrics(gctx, cfg.MetricsAddr, registry, logger) })
	}
	for _, w := range rt.workers {
		g.Go(func() error { return w(gctx) })
	}
	return g.Wait()
}

// ServeMetrics serves the registry at /metrics on addr until ctx ends.
func ServeMetrics(ctx context.Context, addr string, registry *prometheus.Registry, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("metrics listening", "addr", addr)
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// withSearchPath pins the pool's sessions to the service's schema, so its
// queries can never read another service's tables by accident.
func withSearchPath(raw, schema string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("DATABASE_URL is not a valid URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func commandList(spec Spec) string {
	var b strings.Builder
	for name := range spec.Commands {
		b.WriteString(" or " + name)
	}
	return b.String()
}
