package auth

import (
	"context"
	"slices"
)

// Scopes a key may carry. ScopeAdmin grants every other scope.
const (
	ScopeAdmin          = "admin"
	ScopeLeadsRead      = "leads.read"
	ScopeLeadsWrite     = "leads.write"
	ScopeScoringRead    = "scoring.read"
	ScopeScoringWrite   = "scoring.write"
	ScopeLifecycleRead  = "lifecycle.read"
	ScopeLifecycleWrite = "lifecycle.write"
	ScopeHandoffRead    = "handoff.read"
	ScopeHandoffWrite   = "handoff.write"
)

// AllScopes lists every scope, for validating requested scopes.
var AllScopes = []string{
	ScopeAdmin,
	ScopeLeadsRead, ScopeLeadsWrite,
	ScopeScoringRead, ScopeScoringWrite,
	ScopeLifecycleRead, ScopeLifecycleWrite,
	ScopeHandoffRead, ScopeHandoffWrite,
}

// ValidScope reports whether s is a known scope.
func ValidScope(s string) bool { return slices.Contains(AllScopes, s) }

// Principal is who a request speaks for.
type Principal struct {
	// Workspace is the workspace id every query of the request is confined to.
	// Empty for internal (service-to-service) callers.
	Workspace string
	// KeyID is the id of the API key used, for audit.
	KeyID string
	// Scopes are the rights the key carries.
	Scopes []string
	// Internal marks another Leadflow service, authenticated by the shared
	// internal token rather than an API key.
	Internal bool
}

// Has reports whether the principal holds scope, directly or through admin.
func (p Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, scope) || slices.Contains(p.Scopes, ScopeAdmin)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of the request, if it was authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Workspace returns the workspace of the request's principal, or "" when the
// request is unauthenticated or internal.
func Workspace(ctx context.Context) string {
	p, _ := FromContext(ctx)
	return p.Workspace
}
