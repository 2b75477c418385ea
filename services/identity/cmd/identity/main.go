// Command identity serves workspaces and API keys, and answers the other
// services' "whose key is this?" questions.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/identity/internal/identity"
	"github.com/leadflow/leadflow/services/identity/internal/server"
	"github.com/leadflow/leadflow/services/identity/internal/store"
)

func main() {
	service.Main(service.Spec{
		Name:       service.Identity,
		Migrations: []migrate.Set{{FS: store.Migrations}},
		Policy:     server.Policy,
		Setup: func(_ context.Context, rt *service.Runtime) error {
			svc := identity.NewService(store.New(rt.Pool))
			// Identity checks keys against its own store, not over the wire.
			rt.SetAuthenticator(svc)
			identityv1.RegisterIdentityServiceServer(rt.Server, server.New(svc))
			return nil
		},
		Commands: map[string]func(context.Context, *service.Runtime, []string) error{
			"seed": seed,
		},
	})
}

// seed creates a workspace (if missing) and stores an API key whose secret
// is read from a file, so a dev stack keeps one key across restarts:
//
//	identity seed --workspace demo --api-key-file .data/dev-api-key [--scopes admin]
func seed(ctx context.Context, rt *service.Runtime, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	workspace := fs.String("workspace", "", "workspace id to create or reuse")
	keyFile := fs.String("api-key-file", "", "file holding the API key secret to store")
	scopes := fs.String("scopes", auth.ScopeAdmin, "comma-separated scopes of the key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *workspace == "" || *keyFile == "" {
		return errors.New("seed: --workspace and --api-key-file are required")
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	svc := identity.NewService(store.New(rt.Pool))
	k, err := svc.SeedAPIKey(ctx, *workspace, strings.TrimSpace(string(raw)), strings.Split(*scopes, ","))
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	rt.Logger.Info("seeded api key", "workspace", k.Workspace, "api_key", k.ID)
	return nil
}
