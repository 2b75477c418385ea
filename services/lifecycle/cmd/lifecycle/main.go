// Command lifecycle moves leads along the Demand Waterfall and reports the funnel.
//
// Its API is defined (proto/leadflow/lifecycle/v1) and served, but not yet
// implemented: every RPC answers UNIMPLEMENTED until the lifecycle issue lands.
package main

import (
	"context"

	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
)

// unimplemented answers every RPC with UNIMPLEMENTED, never fake data.
type unimplemented struct {
	lifecyclev1.UnimplementedLifecycleServiceServer
}

func main() {
	service.Main(service.Spec{
		Name:       service.Lifecycle,
		Migrations: []migrate.Set{{Name: "outbox", FS: outbox.Migrations()}},
		Policy:     auth.ByVerb(lifecyclev1.LifecycleService_ServiceDesc, auth.ScopeLifecycleRead, auth.ScopeLifecycleWrite),
		Setup: func(_ context.Context, rt *service.Runtime) error {
			lifecyclev1.RegisterLifecycleServiceServer(rt.Server, unimplemented{})
			return nil
		},
	})
}
