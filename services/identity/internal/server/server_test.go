package server_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/identity/internal/identity"
	"github.com/leadflow/leadflow/services/identity/internal/server"
	"github.com/leadflow/leadflow/services/identity/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type fixture struct {
	client identityv1.IdentityServiceClient
	svc    *identity.Service
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	svc := identity.NewService(store.New(pgtest.NewPool(t, store.Schema, store.Migrations)))
	conn := grpctest.Serve(t, grpctest.Options{
		Policy: server.Policy,
		Authn:  svc,
		Register: func(s *grpcserver.Server) {
			identityv1.RegisterIdentityServiceServer(s, server.New(svc))
		},
	})
	return fixture{client: identityv1.NewIdentityServiceClient(conn), svc: svc}
}

// workspaceWithKey seeds a workspace and an API key holding scopes.
func (f fixture) workspaceWithKey(t *testing.T, ws string, scopes ...string) string {
	t.Helper()
	secret := grpctest.NewKey(t)
	if _, err := f.svc.SeedAPIKey(context.Background(), ws, secret, scopes); err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestWorkspaceIsolation(t *testing.T) {
	f := newFixture(t)
	keyA := f.workspaceWithKey(t, "acme", auth.ScopeAdmin)
	keyB := f.workspaceWithKey(t, "globex", auth.ScopeAdmin)
	ctxA := grpctest.WithKey(context.Background(), keyA)

	created, err := f.client.CreateApiKey(grpctest.WithKey(context.Background(), keyB), &identityv1.CreateApiKeyRequest{
		Parent: "workspaces/globex",
		ApiKey: &identityv1.ApiKey{DisplayName: "crm sync", Scopes: []string{auth.ScopeLeadsRead}},
	})
	if err != nil {
		t.Fatal(err)
	}

	for name, call := range map[string]func() error{
		"get other workspace": func() error {
			_, err := f.client.GetWorkspace(ctxA, &identityv1.GetWorkspaceRequest{Name: "workspaces/globex"})
			return err
		},
		"list other workspace's keys": func() error {
			_, err := f.client.ListApiKeys(ctxA, &identityv1.ListApiKeysRequest{Parent: "workspaces/globex"})
			return err
		},
		"revoke other workspace's key": func() error {
			_, err := f.client.DeleteApiKey(ctxA, &identityv1.DeleteApiKeyRequest{Name: created.GetApiKey().GetName()})
			return err
		},
		"create key in other workspace": func() error {
			_, err := f.client.CreateApiKey(ctxA, &identityv1.CreateApiKeyRequest{
				Parent: "workspaces/globex", ApiKey: &identityv1.ApiKey{Scopes: []string{auth.ScopeAdmin}},
			})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := status.Code(call()); got != codes.NotFound {
				t.Fatalf("code = %v, want NotFound", got)
			}
		})
	}

	// The key B created still works: A's attempt to revoke it changed nothing.
	if _, err := f.client.GetWorkspace(grpctest.WithKey(context.Background(), created.GetSecret()),
		&identityv1.GetWorkspaceRequest{Name: "workspaces/globex"}); err != nil {
		t.Fatalf("B's key after A's revoke attempt: %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	admin := f.workspaceWithKey(t, "acme", auth.ScopeAdmin)
	reader := f.workspaceWithKey(t, "acme", auth.ScopeLeadsRead)
	get := &identityv1.GetWorkspaceRequest{Name: "workspaces/acme"}
	list := &identityv1.ListApiKeysRequest{Parent: "workspaces/acme"}

	for _, tc := range []struct {
		name string
		key  string
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"valid key", admin, func(ctx context.Context) error { _, err := f.client.GetWorkspace(ctx, get); return err }, codes.OK},
		{"no key", "", func(ctx context.Context) error { _, err := f.client.GetWorkspace(ctx, get); return err }, codes.Unauthenticated},
		{"unknown key", grpctest.NewKey(t), func(ctx context.Context) error { _, err := f.client.GetWorkspace(ctx, get); return err }, codes.Unauthenticated},
		{"garbage key", "let-me-in", func(ctx context.Context) error { _, err := f.client.GetWorkspace(ctx, get); return err }, codes.Unauthenticated},
		{"missing scope", reader, func(ctx context.Context) error { _, err := f.client.ListApiKeys(ctx, list); return err }, codes.PermissionDenied},
		{"internal rpc refuses api keys", admin, func(ctx context.Context) error {
			_, err := f.client.AuthenticateApiKey(ctx, &identityv1.AuthenticateApiKeyRequest{Secret: admin})
			return err
		}, codes.PermissionDenied},
		{"bad request", admin, func(ctx context.Context) error {
			_, err := f.client.GetWorkspace(ctx, &identityv1.GetWorkspaceRequest{Name: "not a name"})
			return err
		}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.key != "" {
				ctx = grpctest.WithKey(ctx, tc.key)
			}
			if got := status.Code(tc.call(ctx)); got != tc.want {
				t.Fatalf("code = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInternalAuthenticateAndRevoke(t *testing.T) {
	f := newFixture(t)
	admin := f.workspaceWithKey(t, "acme", auth.ScopeAdmin)
	ctx := grpctest.WithKey(context.Background(), admin)
	internal := grpctest.WithKey(context.Background(), grpctest.InternalToken)

	created, err := f.client.CreateApiKey(ctx, &identityv1.CreateApiKeyRequest{
		Parent: "workspaces/acme",
		ApiKey: &identityv1.ApiKey{DisplayName: "web", Scopes: []string{auth.ScopeLeadsWrite}},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.client.AuthenticateApiKey(internal, &identityv1.AuthenticateApiKeyRequest{Secret: created.GetSecret()})
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.GetPrincipal(); p.GetWorkspace() != "acme" || len(p.GetScopes()) != 1 || p.GetScopes()[0] != auth.ScopeLeadsWrite {
		t.Fatalf("principal = %v", p)
	}

	if _, err := f.client.DeleteApiKey(ctx, &identityv1.DeleteApiKeyRequest{Name: created.GetApiKey().GetName()}); err != nil {
		t.Fatal(err)
	}
	_, err = f.client.AuthenticateApiKey(internal, &identityv1.AuthenticateApiKeyRequest{Secret: created.GetSecret()})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked key: code = %v, want Unauthenticated", status.Code(err))
	}
}

func TestCreateApiKeyRejectsUnknownScope(t *testing.T) {
	f := newFixture(t)
	ctx := grpctest.WithKey(context.Background(), f.workspaceWithKey(t, "acme", auth.ScopeAdmin))
	_, err := f.client.CreateApiKey(ctx, &identityv1.CreateApiKeyRequest{
		Parent: "workspaces/acme", ApiKey: &identityv1.ApiKey{Scopes: []string{"leads.read", "root"}},
	})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v, want InvalidArgument", st.Code())
	}
	if len(st.Details()) == 0 {
		t.Fatal("no field violations in the error details")
	}
}

func TestListApiKeysPages(t *testing.T) {
	f := newFixture(t)
	ctx := grpctest.WithKey(context.Background(), f.workspaceWithKey(t, "acme", auth.ScopeAdmin))
	for range 4 {
		if _, err := f.client.CreateApiKey(ctx, &identityv1.CreateApiKeyRequest{
			Parent: "workspaces/acme", ApiKey: &identityv1.ApiKey{Scopes: []string{auth.ScopeLeadsRead}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	req := &identityv1.ListApiKeysRequest{Parent: "workspaces/acme", PageSize: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		resp, err := f.client.ListApiKeys(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range resp.GetApiKeys() {
			if seen[k.GetName()] {
				t.Fatalf("key %s listed twice", k.GetName())
			}
			seen[k.GetName()] = true
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(seen) != 5 { // 4 created + the seeded admin key
		t.Fatalf("listed %d keys, want 5", len(seen))
	}
	_, err := f.client.ListApiKeys(ctx, &identityv1.ListApiKeysRequest{Parent: "workspaces/acme", PageToken: "bogus"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bogus token: code = %v, want InvalidArgument", status.Code(err))
	}
}
