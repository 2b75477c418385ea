package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrUnauthenticated is returned by an Authenticator for an unknown, revoked
// or malformed key.
var ErrUnauthenticated = errors.New("invalid or revoked api key")

// Authenticator resolves a presented secret key to its principal.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (Principal, error)
}

// Access is what a method demands of its caller.
type Access struct {
	// Public methods need no credentials at all (health, public form posts).
	Public bool
	// Internal methods accept only other Leadflow services (the internal token).
	Internal bool
	// Scope the caller's key must hold; ignored for Public and Internal.
	Scope string
}

// Policy maps full gRPC method names ("/pkg.Service/Method") to their access
// rule. A method missing from the policy is refused: new RPCs are closed until
// someone decides who may call them.
type Policy map[string]Access

// Merge returns a policy holding the rules of p and others.
func (p Policy) Merge(others ...Policy) Policy {
	out := Policy{}
	for _, src := range append([]Policy{p}, others...) {
		for m, a := range src {
			out[m] = a
		}
	}
	return out
}

// StandardPolicy opens the gRPC health and reflection services, which every
// Leadflow server registers.
var StandardPolicy = Policy{
	"/grpc.health.v1.Health/Check":                                   {Public: true},
	"/grpc.health.v1.Health/Watch":                                   {Public: true},
	"/grpc.health.v1.Health/List":                                    {Public: true},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Public: true},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Public: true},
}

// Guard enforces a Policy on every incoming RPC.
type Guard struct {
	authn         Authenticator
	policy        Policy
	internalToken string
}

// NewGuard returns a guard that authenticates API keys with authn and other
// services with internalToken. An empty internalToken refuses internal calls.
func NewGuard(authn Authenticator, policy Policy, internalToken string) *Guard {
	return &Guard{authn: authn, policy: StandardPolicy.Merge(policy), internalToken: internalToken}
}

// Authorize checks the credentials in ctx against the rule for method and
// returns ctx carrying the principal.
func (g *Guard) Authorize(ctx context.Context, method string) (context.Context, error) {
	access, ok := g.policy[method]
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "method is not open to callers")
	}
	if access.Public {
		return ctx, nil
	}
	token := bearer(ctx)
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, "missing bearer credentials in the authorization header")
	}
	internal := g.internalToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(g.internalToken)) == 1
	switch {
	case internal && access.Internal:
		return WithPrincipal(ctx, Principal{Internal: true}), nil
	case internal:
		// The internal token speaks for no workspace, so it may not call
		// tenant methods: they would act on workspace "".
		return nil, status.Error(codes.PermissionDenied, "the internal token may call internal methods only")
	case access.Internal:
		return nil, status.Error(codes.PermissionDenied, "method is internal to Leadflow")
	}
	p, err := g.authn.Authenticate(ctx, token)
	switch {
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, ErrMalformedKey):
		return nil, status.Error(codes.Unauthenticated, "invalid or revoked api key")
	case err != nil:
		if s, ok := status.FromError(err); ok && s.Code() == codes.Unauthenticated {
			return nil, status.Error(codes.Unauthenticated, "invalid or revoked api key")
		}
		return nil, status.Error(codes.Unavailable, "authentication is unavailable, try again")
	}
	if access.Scope != "" && !p.Has(access.Scope) {
		return nil, status.Errorf(codes.PermissionDenied, "api key lacks scope %q", access.Scope)
	}
	return WithPrincipal(ctx, p), nil
}

// UnaryInterceptor enforces the policy on unary RPCs.
func (g *Guard) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := g.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor enforces the policy on streaming RPCs.
func (g *Guard) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := g.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// bearer extracts the token of an "authorization: Bearer <token>" header.
func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		scheme, token, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(token)
		}
	}
	return ""
}

// BearerCredentials returns per-RPC credentials sending token as a bearer
// header, for service-to-service clients. Insecure transport is allowed
// because Leadflow's internal hops may run on loopback or inside a mesh.
func BearerCredentials(token string) grpc.CallOption {
	return grpc.PerRPCCredsCallOption{Creds: bearerCreds(token)}
}

// bearerCreds implements credentials.PerRPCCredentials.
type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }

// WithBearer is a dial option attaching token to every RPC of a connection.
func WithBearer(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearerCreds(token))
}
