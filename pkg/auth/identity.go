package auth

import (
	"context"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
)

// IdentityLookup returns a LookupFunc that asks the identity service. The
// client's connection must carry the internal token (WithBearer).
func IdentityLookup(client identityv1.IdentityServiceClient) LookupFunc {
	return func(ctx context.Context, secret string) (Principal, error) {
		resp, err := client.AuthenticateApiKey(ctx, &identityv1.AuthenticateApiKeyRequest{Secret: secret})
		if err != nil {
			return Principal{}, err
		}
		p := resp.GetPrincipal()
		return Principal{Workspace: p.GetWorkspace(), KeyID: p.GetApiKey(), Scopes: p.GetScopes()}, nil
	}
}
