// Package grpctest serves a service's gRPC API on a real loopback listener
// with the production interceptor chain (recovery, logging, error mapping,
// auth, validation), for tests.
package grpctest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/logging"
)

// InternalToken is the internal token test servers accept.
const InternalToken = "test-internal-token"

// Options configure Serve.
type Options struct {
	Policy auth.Policy
	// Authn checks API keys; nil accepts only the internal token.
	Authn          auth.Authenticator
	SkipValidation []string
	Register       func(s *grpcserver.Server)
}

// Serve starts the server and returns a client connection to it. Both stop
// when the test ends.
func Serve(t testing.TB, opts Options) *grpc.ClientConn {
	t.Helper()
	authn := opts.Authn
	if authn == nil {
		authn = Keys{}
	}
	guard := auth.NewGuard(authn, opts.Policy, InternalToken)
	srv, err := grpcserver.New(grpcserver.Options{
		Logger:             logging.Discard(),
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{guard.UnaryInterceptor()},
		StreamInterceptors: []grpc.StreamServerInterceptor{guard.StreamInterceptor()},
		SkipValidation:     opts.SkipValidation,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("grpc server: %v", err)
		}
	})
	return conn
}

// WithKey returns ctx sending secret as the bearer credential.
func WithKey(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

// Keys is a fixed table of API keys, for services whose tests do not run
// the identity service.
type Keys map[string]auth.Principal

// Authenticate implements auth.Authenticator.
func (k Keys) Authenticate(_ context.Context, secret string) (auth.Principal, error) {
	p, ok := k[secret]
	if !ok {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	return p, nil
}

// NewKey returns a fresh, well-formed secret for Keys.
func NewKey(t testing.TB) string {
	t.Helper()
	_, secret, _, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return secret
}
