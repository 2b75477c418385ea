// Command handoff routes qualified leads to sales and holds sales to the acceptance SLA.
//
// Its API is defined (proto/leadflow/handoff/v1) and served, but not yet
// implemented: every RPC answers UNIMPLEMENTED until the handoff issue lands.
package main

import (
	"context"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
)

// unimplemented answers every RPC with UNIMPLEMENTED, never fake data.
type unimplemented struct {
	handoffv1.UnimplementedHandoffServiceServer
}

func main() {
	service.Main(service.Spec{
		Name:       service.Handoff,
		Migrations: []migrate.Set{{Name: "outbox", FS: outbox.Migrations()}},
		Policy:     auth.ByVerb(handoffv1.HandoffService_ServiceDesc, auth.ScopeHandoffRead, auth.ScopeHandoffWrite),
		Setup: func(_ context.Context, rt *service.Runtime) error {
			handoffv1.RegisterHandoffServiceServer(rt.Server, unimplemented{})
			return nil
		},
	})
}
