package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServeOptions configure Serve.
type ServeOptions struct {
	Logger *slog.Logger
	// TLSCertFile and TLSKeyFile, both PEM, make the listener serve HTTPS.
	TLSCertFile, TLSKeyFile string
	// ShutdownTimeout bounds the drain of in-flight requests (default 10s).
	ShutdownTimeout time.Duration
}

// Serve serves handler on lis until ctx ends, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish within
// ShutdownTimeout, and returns nil.
func Serve(ctx context.Context, lis net.Listener, handler http.Handler, opts ServeOptions) error {
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() {
		opts.Logger.Info("http server listening", "addr", lis.Addr().String(), "tls", opts.TLSCertFile != "")
		if opts.TLSCertFile != "" {
			errc <- srv.ServeTLS(lis, opts.TLSCertFile, opts.TLSKeyFile)
		} else {
			errc <- srv.Serve(lis)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	opts.Logger.Info("http server shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}
