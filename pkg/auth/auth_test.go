package auth

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestKeyRoundTrip(t *testing.T) {
	id, secret, hash, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	got, err := KeyID(secret)
	if err != nil || got != id {
		t.Fatalf("KeyID = %q, %v; want %q", got, err, id)
	}
	if !MatchKey(secret, hash) {
		t.Fatal("MatchKey rejects the key's own hash")
	}
	if MatchKey(secret+"x", hash) {
		t.Fatal("MatchKey accepts another key")
	}
	for _, bad := range []string{"", "lf_", "lf_short_x", "xx_" + secret[3:], "lf_" + id} {
		if _, err := KeyID(bad); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("KeyID(%q) err = %v, want ErrMalformedKey", bad, err)
		}
	}
}

type staticAuthn map[string]Principal

func (s staticAuthn) Authenticate(_ context.Context, secret string) (Principal, error) {
	p, ok := s[secret]
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	return p, nil
}

func TestGuardAuthorize(t *testing.T) {
	_, reader, _, _ := NewKey()
	_, admin, _, _ := NewKey()
	g := NewGuard(staticAuthn{
		reader: {Workspace: "a", Scopes: []string{ScopeLeadsRead}},
		admin:  {Workspace: "a", Scopes: []string{ScopeAdmin}},
	}, Policy{
		"/x.S/Read":     {Scope: ScopeLeadsRead},
		"/x.S/Write":    {Scope: ScopeLeadsWrite},
		"/x.S/Public":   {Public: true},
		"/x.S/Internal": {Internal: true},
	}, "internal-token")

	for _, tc := range []struct {
		name, method, token string
		want                codes.Code
		wantWorkspace       string
	}{
		{"scope held", "/x.S/Read", reader, codes.OK, "a"},
		{"scope lacking", "/x.S/Write", reader, codes.PermissionDenied, ""},
		{"admin has all", "/x.S/Write", admin, codes.OK, "a"},
		{"no key", "/x.S/Read", "", codes.Unauthenticated, ""},
		{"unknown key", "/x.S/Read", "lf_aaaaaaaaaaaaaaaa_" + "b" + reader[len(reader)-40:], codes.Unauthenticated, ""},
		{"garbage key", "/x.S/Read", "hunter2", codes.Unauthenticated, ""},
		{"public needs nothing", "/x.S/Public", "", codes.OK, ""},
		{"unlisted method closed", "/x.S/Other", admin, codes.PermissionDenied, ""},
		{"internal refuses keys", "/x.S/Internal", admin, codes.PermissionDenied, ""},
		{"internal token", "/x.S/Internal", "internal-token", codes.OK, ""},
		{"internal token on a tenant method", "/x.S/Read", "internal-token", codes.PermissionDenied, ""},
		{"health is public", "/grpc.health.v1.Health/Check", "", codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.token != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tc.token))
			}
			ctx, err := g.Authorize(ctx, tc.method)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code = %v, want %v (%v)", got, tc.want, err)
			}
			if err == nil && Workspace(ctx) != tc.wantWorkspace {
				t.Fatalf("workspace = %q, want %q", Workspace(ctx), tc.wantWorkspace)
			}
		})
	}
}

func TestCachingAuthenticator(t *testing.T) {
	_, good, _, _ := NewKey()
	_, bad, _, _ := NewKey()
	var calls atomic.Int32
	now := time.Unix(0, 0)
	c := NewCachingAuthenticator(func(_ context.Context, secret string) (Principal, error) {
		calls.Add(1)
		if secret == good {
			return Principal{Workspace: "a"}, nil
		}
		return Principal{}, status.Error(codes.Unauthenticated, "no")
	}, 30*time.Second)
	c.now = func() time.Time { return now }

	for range 3 {
		if p, err := c.Authenticate(context.Background(), good); err != nil || p.Workspace != "a" {
			t.Fatalf("good key: %v %v", p, err)
		}
		if _, err := c.Authenticate(context.Background(), bad); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("bad key err = %v", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("lookups = %d, want 2 (answers cached)", n)
	}
	now = now.Add(31 * time.Second)
	if _, err := c.Authenticate(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("lookups after expiry = %d, want 3", n)
	}
	if _, err := c.Authenticate(context.Background(), "not-a-key"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("malformed key err = %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatal("malformed key reached the identity service")
	}
}

func TestByVerb(t *testing.T) {
	sd := grpc.ServiceDesc{
		ServiceName: "x.v1.S",
		Methods:     []grpc.MethodDesc{{MethodName: "GetLead"}, {MethodName: "CreateLead"}, {MethodName: "BacktestModel"}},
		Streams:     []grpc.StreamDesc{{StreamName: "ImportLeads"}},
	}
	p := ByVerb(sd, ScopeLeadsRead, ScopeLeadsWrite)
	want := Policy{
		"/x.v1.S/GetLead":       {Scope: ScopeLeadsRead},
		"/x.v1.S/CreateLead":    {Scope: ScopeLeadsWrite},
		"/x.v1.S/BacktestModel": {Scope: ScopeLeadsRead},
		"/x.v1.S/ImportLeads":   {Scope: ScopeLeadsWrite},
	}
	if len(p) != len(want) {
		t.Fatalf("policy = %v", p)
	}
	for m, a := range want {
		if p[m] != a {
			t.Errorf("%s: %+v, want %+v", m, p[m], a)
		}
	}
}
