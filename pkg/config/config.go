// Package config loads service configuration from environment variables.
//
// Each service declares a struct with `env` tags (github.com/caarlos0/env),
// embeds Base for the settings every service shares, and loads it with a
// service prefix:
//
//	type Config struct {
//		config.Base
//		FormRateLimit int `env:"FORM_RATE_LIMIT" envDefault:"10"`
//	}
//
//	cfg, err := config.Load[Config]("INGESTION") // reads INGESTION_GRPC_ADDR, ...
//	logger.Info("config loaded", "config", config.LogValue(cfg))
//
// Secrets never reach logs: declare them as Secret or SecretURL, or tag a
// field `secret:"true"`. LogValue masks all three, and Secret and SecretURL
// also mask themselves when formatted with fmt or encoding/json.
//
// The OpenTelemetry SDK reads its own standard, unprefixed variables
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES,
// ...); see pkg/telemetry.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Load parses the environment into a new T, a struct with `env` tags. Every
// variable name gets prefix and an underscore, so Load[Config]("INGESTION")
// reads INGESTION_GRPC_ADDR for `env:"GRPC_ADDR"`. If *T has a
// Validate() error method (Base has one, so every struct embedding it does)
// Load calls it and fails on its error.
func Load[T any](prefix string) (T, error) {
	var cfg T
	if prefix != "" && !strings.HasSuffix(prefix, "_") {
		prefix += "_"
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: prefix}); err != nil {
		return cfg, fmt.Errorf("load config: %w", err)
	}
	if v, ok := any(&cfg).(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return cfg, fmt.Errorf("invalid config: %w", err)
		}
	}
	return cfg, nil
}

// Base holds the settings shared by every service. Embed it (without an
// envPrefix) in a service's Config. Variable names, before the service
// prefix:
//
//	GRPC_ADDR           listen address of the gRPC server       (default ":9090")
//	LOG_LEVEL           DEBUG, INFO, WARN or ERROR              (default INFO)
//	DATABASE_URL        postgres://user:password@host:port/db   (no default; masked in logs)
//	SHUTDOWN_DRAIN      wait after turning health NOT_SERVING,
//	                    so load balancers stop routing here     (default 1s)
//	SHUTDOWN_TIMEOUT    bound on graceful stop before in-flight
//	                    RPCs are cut                            (default 10s)
//	TLS_CERT_FILE       PEM certificate; with TLS_KEY_FILE the
//	                    gRPC server serves TLS                  (default plaintext)
//	TLS_KEY_FILE        PEM private key
//	TRACE_SAMPLE_RATIO  fraction of new traces sampled, 0..1;
//	                    ignored if OTEL_TRACES_SAMPLER is set   (default 1)
type Base struct {
	GRPCAddr         string        `env:"GRPC_ADDR" envDefault:":9090"`
	LogLevel         slog.Level    `env:"LOG_LEVEL" envDefault:"INFO"`
	DatabaseURL      SecretURL     `env:"DATABASE_URL"`
	ShutdownDrain    time.Duration `env:"SHUTDOWN_DRAIN" envDefault:"1s"`
	ShutdownTimeout  time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`
	TLSCertFile      string        `env:"TLS_CERT_FILE"`
	TLSKeyFile       string        `env:"TLS_KEY_FILE"`
	TraceSampleRatio float64       `env:"TRACE_SAMPLE_RATIO" envDefault:"1"`
}

// Validate reports settings that parse but make no sense. A service that
// defines its own Validate must call this one too.
func (b *Base) Validate() error {
	var errs []error
	if (b.TLSCertFile == "") != (b.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together"))
	}
	if b.TraceSampleRatio < 0 || b.TraceSampleRatio > 1 {
		errs = append(errs, fmt.Errorf("TRACE_SAMPLE_RATIO must be between 0 and 1, got %v", b.TraceSampleRatio))
	}
	if b.ShutdownDrain < 0 {
		errs = append(errs, errors.New("SHUTDOWN_DRAIN must not be negative"))
	}
	if b.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("SHUTDOWN_TIMEOUT must be positive"))
	}
	return errors.Join(errs...)
}
