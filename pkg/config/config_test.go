package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/config"
)

type testConfig struct {
	config.Base
	WebhookToken config.Secret `env:"WEBHOOK_TOKEN"`
	Pepper       string        `env:"PEPPER" secret:"true"`
	RateLimit    int           `env:"RATE_LIMIT" envDefault:"10"`
	Upstream     struct {
		Addr string `env:"ADDR" envDefault:"identity:9090"`
	} `envPrefix:"UPSTREAM_"`
}

func TestLoad(t *testing.T) {
	t.Setenv("INGESTION_GRPC_ADDR", ":7000")
	t.Setenv("INGESTION_LOG_LEVEL", "debug")
	t.Setenv("INGESTION_DATABASE_URL", "postgres://app:s3cret@db:5432/leadflow?sslmode=require")
	t.Setenv("INGESTION_SHUTDOWN_TIMEOUT", "3s")
	t.Setenv("INGESTION_WEBHOOK_TOKEN", "tok-123")
	t.Setenv("INGESTION_UPSTREAM_ADDR", "localhost:9091")
	t.Setenv("GRPC_ADDR", ":1") // unprefixed variables are not read

	cfg, err := config.Load[testConfig]("INGESTION")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"GRPCAddr", cfg.GRPCAddr, ":7000"},
		{"LogLevel", cfg.LogLevel, slog.LevelDebug},
		{"DatabaseURL", cfg.DatabaseURL.Reveal(), "postgres://app:s3cret@db:5432/leadflow?sslmode=require"},
		{"ShutdownTimeout", cfg.ShutdownTimeout, 3 * time.Second},
		{"ShutdownDrain default", cfg.ShutdownDrain, time.Second},
		{"TraceSampleRatio default", cfg.TraceSampleRatio, 1.0},
		{"WebhookToken", cfg.WebhookToken.Reveal(), "tok-123"},
		{"RateLimit default", cfg.RateLimit, 10},
		{"Upstream.Addr", cfg.Upstream.Addr, "localhost:9091"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"bad level", map[string]string{"SVC_LOG_LEVEL": "loud"}, "LogLevel"},
		{"bad duration", map[string]string{"SVC_SHUTDOWN_TIMEOUT": "soon"}, "ShutdownTimeout"},
		{"cert without key", map[string]string{"SVC_TLS_CERT_FILE": "/tls/tls.crt"}, "TLS_CERT_FILE and TLS_KEY_FILE"},
		{"ratio out of range", map[string]string{"SVC_TRACE_SAMPLE_RATIO": "2"}, "TRACE_SAMPLE_RATIO"},
		{"zero shutdown timeout", map[string]string{"SVC_SHUTDOWN_TIMEOUT": "0s"}, "SHUTDOWN_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := config.Load[config.Base]("SVC_")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestSecretsAreMasked(t *testing.T) {
	cfg := testConfig{
		Base: config.Base{
			GRPCAddr:        ":9090",
			DatabaseURL:     "postgres://app:s3cret@db:5432/leadflow?password=s3cret&sslmode=require",
			ShutdownTimeout: 10 * time.Second,
		},
		WebhookToken: "tok-123",
		Pepper:       "pepper-456",
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config loaded", "config", config.LogValue(&cfg))
	logged := buf.String()

	outputs := map[string]string{
		"slog LogValue": logged,
		"fmt %v":        fmt.Sprintf("%v", cfg),
		"fmt %+v":       fmt.Sprintf("%+v", cfg),
		"fmt %#v":       fmt.Sprintf("%#v", cfg),
		"slog any":      logAny(cfg),
		"json":          mustJSON(t, cfg),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			for _, secret := range []string{"s3cret", "tok-123"} {
				if strings.Contains(out, secret) {
					t.Errorf("output leaks %q: %s", secret, out)
				}
			}
		})
	}

	var got struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("decode log line: %v", err)
	}
	want := map[string]any{
		"GRPC_ADDR":        ":9090",
		"DATABASE_URL":     "postgres://app:xxxxx@db:5432/leadflow?password=xxxxx&sslmode=xxxxx",
		"SHUTDOWN_TIMEOUT": "10s",
		"LOG_LEVEL":        "INFO",
		"WEBHOOK_TOKEN":    config.Masked,
		"PEPPER":           config.Masked,
		"RATE_LIMIT":       float64(0),
		"UPSTREAM_ADDR":    "",
		"TLS_CERT_FILE":    "",
	}
	for k, v := range want {
		if got.Config[k] != v {
			t.Errorf("logged %s = %#v, want %#v", k, got.Config[k], v)
		}
	}
}

func TestSecretURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"postgres://app:pw@db:5432/leadflow", "postgres://app:xxxxx@db:5432/leadflow"},
		{"postgres://app@db/leadflow", "postgres://app@db/leadflow"},
		{"postgres://db/leadflow?sslpassword=pw", "postgres://db/leadflow?sslpassword=xxxxx"},
		{"host=db user=app password=pw", config.Masked},
		{"not a url at all", config.Masked},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := config.SecretURL(tt.in).String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func logAny(v any) string {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "v", v)
	return buf.String()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
