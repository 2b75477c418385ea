// Package grpcserver is the gRPC server every Leadflow service runs: one
// interceptor chain (tracing, panic recovery, request logging, error
// mapping, caller-supplied interceptors such as auth, request validation),
// standard health and reflection services, optional TLS, and a graceful
// shutdown driven by a context.
//
// A service main wires it up like this:
//
//	srv, err := grpcserver.New(grpcserver.Options{
//		Logger:             logger,
//		TLSCertFile:        cfg.TLSCertFile,
//		TLSKeyFile:         cfg.TLSKeyFile,
//		DrainDelay:         cfg.ShutdownDrain,
//		ShutdownTimeout:    cfg.ShutdownTimeout,
//		UnaryInterceptors:  []grpc.UnaryServerInterceptor{authn.Unary()},
//		StreamInterceptors: []grpc.StreamServerInterceptor{authn.Stream()},
//	})
//	ingestionv1.RegisterIngestionServiceServer(srv, handlers) // also marks it SERVING
//	return srv.ListenAndServe(ctx, cfg.GRPCAddr)
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"buf.build/go/protovalidate"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// DefaultShutdownTimeout bounds GracefulStop when Options.ShutdownTimeout is
// zero.
const DefaultShutdownTimeout = 10 * time.Second

// Options configures a Server.
type Options struct {
	// Logger receives request logs, panics and unexpected handler errors.
	// Required.
	Logger *slog.Logger

	// TLSCertFile and TLSKeyFile, both PEM, make the server serve TLS.
	// Both empty means plaintext (TLS terminated by the mesh or in dev).
	TLSCertFile string
	TLSKeyFile  string

	// UnaryInterceptors and StreamInterceptors run after logging and error
	// mapping and before validation, in the order given. Authentication
	// goes here: it sees unvalidated requests and may return *apperr.Error
	// values, which are mapped like any handler error.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor

	// SkipValidation lists full method names ("/pkg.Service/Method") whose
	// request messages are not validated by the server, for handlers that
	// validate themselves, such as a bulk import that reports bad rows
	// instead of failing the whole stream.
	SkipValidation []string

	// Validator checks requests against their protovalidate rules.
	// Nil uses a new protovalidate.Validator.
	Validator protovalidate.Validator

	// DrainDelay is how long to wait after turning health NOT_SERVING
	// before refusing new RPCs, so that load balancers and kubelet notice.
	// Zero skips the wait (tests).
	DrainDelay time.Duration

	// ShutdownTimeout bounds the wait for in-flight RPCs; when it passes
	// they are cancelled. Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// TracerProvider and MeterProvider feed the otelgrpc stats handler.
	// Nil means the global providers (see pkg/telemetry).
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider

	// ServerOptions are appended to the server's own options, e.g. for
	// keepalive or message size limits.
	ServerOptions []grpc.ServerOption
}

// Server is a gRPC server with Leadflow's interceptors, health and
// reflection. It implements grpc.ServiceRegistrar, so generated
// Register...Server functions take it directly.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	logger *slog.Logger
	drain  time.Duration
	stop   time.Duration
}

// New builds a Server. Register services on it before calling Serve.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		return nil, errors.New("grpcserver: Logger is required")
	}
	v := opts.Validator
	if v == nil {
		var err error
		if v, err = protovalidate.New(); err != nil {
			return nil, fmt.Errorf("grpcserver: create validator: %w", err)
		}
	}

	otelOpts := []otelgrpc.Option{
		// Kubelet probes every few seconds; their spans would drown the rest.
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	}
	if opts.TracerProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithTracerProvider(opts.TracerProvider))
	}
	if opts.MeterProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithMeterProvider(opts.MeterProvider))
	}

	skip := make(map[string]bool, len(opts.SkipValidation))
	for _, m := range opts.SkipValidation {
		skip[m] = true
	}
	log := opts.Logger
	unary := append([]grpc.UnaryServerInterceptor{
		recoverUnary(log),
		logUnary(log),
		mapErrorsUnary(log),
	}, opts.UnaryInterceptors...)
	unary = append(unary, validateUnary(v, skip))
	stream := append([]grpc.StreamServerInterceptor{
		recoverStream(log),
		logStream(log),
		mapErrorsStream(log),
	}, opts.StreamInterceptors...)
	stream = append(stream, validateStream(v, skip))

	serverOpts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	switch {
	case opts.TLSCertFile != "" && opts.TLSKeyFile != "":
		creds, err := credentials.NewServerTLSFromFile(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("grpcserver: load TLS key pair: %w", err)
		}
		serverOpts = append(serverOpts, grpc.Creds(creds))
	case opts.TLSCertFile != "" || opts.TLSKeyFile != "":
		return nil, errors.New("grpcserver: TLSCertFile and TLSKeyFile must be set together")
	}
	serverOpts = append(serverOpts, opts.ServerOptions...)

	s := &Server{
		grpc:   grpc.NewServer(serverOpts...),
		health: health.NewServer(),
		logger: log,
		drain:  opts.DrainDelay,
		stop:   opts.ShutdownTimeout,
	}
	if s.stop <= 0 {
		s.stop = DefaultShutdownTimeout
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// RegisterService registers a service implementation and marks it SERVING
// in the health service. It makes Server a grpc.ServiceRegistrar.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
	s.health.SetServingStatus(desc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// GRPC returns the underlying server, for what RegisterService does not
// cover.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Health returns the health service, to report a service (or the whole
// server, named "") NOT_SERVING while a dependency is down.
func (s *Server) Health() *health.Server { return s.health }

// ListenAndServe listens on addr (host:port; ":9090" for all interfaces)
// and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("grpcserver: listen: %w", err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves on lis until ctx is done, then shuts down gracefully: health
// turns NOT_SERVING, the server waits DrainDelay, stops accepting RPCs and
// waits up to ShutdownTimeout for in-flight ones before cancelling them. It
// returns nil after a shutdown caused by ctx, and the error otherwise. Serve
// closes lis and may be called only once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.logger.Info("grpc server listening", slog.String("addr", lis.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()

	select {
	case err := <-errc:
		s.health.Shutdown()
		return fmt.Errorf("grpcserver: serve: %w", err)
	case <-ctx.Done():
	}

	s.shutdown()
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpcserver: serve: %w", err)
	}
	return nil
}

func (s *Server) shutdown() {
	s.logger.Info("grpc server shutting down", slog.String("drain", s.drain.String()), slog.String("timeout", s.stop.String()))
	s.health.Shutdown()
	if s.drain > 0 {
		time.Sleep(s.drain)
	}

	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(s.stop)
	defer timer.Stop()
	select {
	case <-done:
		s.logger.Info("grpc server stopped")
	case <-timer.C:
		s.logger.Warn("grpc server graceful stop timed out, cancelling in-flight RPCs")
		s.grpc.Stop()
		<-done
	}
}
