// Command scoring scores leads for fit and engagement and says when they become marketing-qualified.
//
// Its API is defined (proto/leadflow/scoring/v1) and served, but not yet
// implemented: every RPC answers UNIMPLEMENTED until the scoring issue lands.
package main

import (
	"context"

	scoringv1 "github.com/leadflow/leadflow/gen/go/leadflow/scoring/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
)

// unimplemented answers every RPC with UNIMPLEMENTED, never fake data.
type unimplemented struct {
	scoringv1.UnimplementedScoringServiceServer
}

func main() {
	service.Main(service.Spec{
		Name:       service.Scoring,
		Migrations: []migrate.Set{{Name: "outbox", FS: outbox.Migrations()}},
		Policy:     auth.ByVerb(scoringv1.ScoringService_ServiceDesc, auth.ScopeScoringRead, auth.ScopeScoringWrite),
		Setup: func(_ context.Context, rt *service.Runtime) error {
			scoringv1.RegisterScoringServiceServer(rt.Server, unimplemented{})
			return nil
		},
	})
}
