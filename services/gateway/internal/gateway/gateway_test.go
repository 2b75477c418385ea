package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcerr"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/logging"
	"github.com/leadflow/leadflow/services/gateway/internal/gateway"
)

// identityStub answers GetWorkspace for the caller's own workspace only,
// like the real service, without a database: the gateway owns none.
type identityStub struct {
	identityv1.UnimplementedIdentityServiceServer
}

func (identityStub) GetWorkspace(ctx context.Context, req *identityv1.GetWorkspaceRequest) (*identityv1.GetWorkspaceResponse, error) {
	if req.GetName() != "workspaces/"+auth.Workspace(ctx) {
		return nil, apperr.NotFound("workspace not found")
	}
	return &identityv1.GetWorkspaceResponse{Workspace: &identityv1.Workspace{Name: req.GetName()}}, nil
}

// DeleteApiKey answers with the error its key id names, to check the HTTP
// mapping of each code.
func (identityStub) DeleteApiKey(_ context.Context, req *identityv1.DeleteApiKeyRequest) (*identityv1.DeleteApiKeyResponse, error) {
	switch req.GetName()[strings.LastIndex(req.GetName(), "/")+1:] {
	case "precondition":
		return nil, apperr.FailedPrecondition("key is in use", apperr.Precondition("KEY_IN_USE", "apiKeys/precondition", "in use"))
	case "stale":
		return nil, apperr.Aborted("stale etag")
	case "exists":
		return nil, apperr.AlreadyExists("already exists")
	case "busy":
		return nil, apperr.ResourceExhausted("slow down")
	case "dbdown":
		// What a store returns when PostgreSQL refuses connections.
		return nil, fmt.Errorf("delete api key: begin transaction: %w", &net.OpError{
			Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 5432},
			Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED},
		})
	}
	return &identityv1.DeleteApiKeyResponse{}, nil
}

func (identityStub) ListApiKeys(context.Context, *identityv1.ListApiKeysRequest) (*identityv1.ListApiKeysResponse, error) {
	panic("the secret key sk_live_123 leaked into a panic") // must never reach the client
}

type fixture struct {
	url           string
	admin, reader string
}

func newFixture(t *testing.T, extra ...gateway.Backend) fixture {
	t.Helper()
	admin, reader := grpctest.NewKey(t), grpctest.NewKey(t)
	conn := grpctest.Serve(t, grpctest.Options{
		Policy: auth.Policy{
			identityv1.IdentityService_GetWorkspace_FullMethodName: {Scope: auth.ScopeLeadsRead},
			identityv1.IdentityService_ListApiKeys_FullMethodName:  {Scope: auth.ScopeAdmin},
			identityv1.IdentityService_DeleteApiKey_FullMethodName: {Scope: auth.ScopeLeadsRead},
		},
		Authn: grpctest.Keys{
			admin:  {Workspace: "acme", Scopes: []string{auth.ScopeAdmin}},
			reader: {Workspace: "acme", Scopes: []string{auth.ScopeLeadsRead}},
		},
		Register: func(s *grpcserver.Server) { identityv1.RegisterIdentityServiceServer(s, identityStub{}) },
	})
	backends := append([]gateway.Backend{{
		Name: "identity", Conn: conn, Register: gateway.Registrations["identity"],
	}}, extra...)
	h, err := gateway.NewHandler(context.Background(), gateway.Options{Logger: logging.Discard(), Backends: backends})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return fixture{url: srv.URL, admin: admin, reader: reader}
}

func (f fixture) get(t *testing.T, path, key string) (int, string) {
	t.Helper()
	return f.do(t, http.MethodGet, path, key)
}

func (f fixture) do(t *testing.T, method, path, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.url+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRESTStatusCodes(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, path, key string
		want            int
		bodyHas         string
	}{
		{"ok", "/v1/workspaces/acme", f.reader, 200, `"name":"workspaces/acme"`},
		{"no key", "/v1/workspaces/acme", "", 401, `"code":16`},
		{"bad key", "/v1/workspaces/acme", grpctest.NewKey(t), 401, `"code":16`},
		{"scope lacking", "/v1/workspaces/acme/apiKeys", f.reader, 403, `"code":7`},
		{"other tenant", "/v1/workspaces/globex", f.reader, 404, `"code":5`},
		{"invalid argument", "/v1/workspaces/Not_Valid", f.reader, 400, `"fieldViolations"`},
		{"internal masked", "/v1/workspaces/acme/apiKeys", f.admin, 500, `"message":"internal error"`},
		{"unknown route", "/v1/nothing", f.admin, 404, `"code":5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.get(t, tc.path, tc.key)
			if code != tc.want || !strings.Contains(body, tc.bodyHas) {
				t.Fatalf("GET %s = %d %s; want %d containing %s", tc.path, code, body, tc.want, tc.bodyHas)
			}
			if strings.Contains(body, "sk_live_123") {
				t.Fatal("internal error detail leaked to the client")
			}
			var js map[string]any
			if err := json.Unmarshal([]byte(body), &js); err != nil {
				t.Fatalf("body is not JSON: %s", body)
			}
		})
	}
}

func TestRESTErrorCodes(t *testing.T) {
	f := newFixture(t)
	for id, want := range map[string]int{"precondition": 412, "stale": 409, "exists": 409, "busy": 429, "dbdown": 503, "fine": 200} {
		code, body := f.do(t, http.MethodDelete, "/v1/workspaces/acme/apiKeys/"+id, f.reader)
		if code != want {
			t.Errorf("DELETE %s = %d %s, want %d", id, code, body, want)
		}
	}
}

// TestRESTDatabaseUnavailable checks that a backend whose database is down
// answers 503 with Retry-After, naming no host of the database.
func TestRESTDatabaseUnavailable(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest(http.MethodDelete, f.url+"/v1/workspaces/acme/apiKeys/dbdown", nil)
	req.Header.Set("Authorization", "Bearer "+f.reader)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status = %d %s, want 503", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Retry-After"); got == "" {
		t.Error("503 without Retry-After")
	}
	var st struct {
		Code    int
		Message string
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("body is not JSON: %s", body)
	}
	if st.Code != int(codes.Unavailable) || st.Message != grpcerr.DatabaseUnavailableMessage {
		t.Errorf("body = %s, want code %d and message %q", body, codes.Unavailable, grpcerr.DatabaseUnavailableMessage)
	}
	if strings.Contains(string(body), "10.0.0.9") || strings.Contains(string(body), "5432") {
		t.Errorf("the database address leaked to the client: %s", body)
	}
}

func TestHealthz(t *testing.T) {
	// A backend nobody listens on: its listener is closed before dialling.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	conn, err := grpc.NewClient(dead, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	healthy := newFixture(t)
	if code, body := healthy.get(t, "/healthz", ""); code != 200 || !strings.Contains(body, `"identity":"SERVING"`) {
		t.Fatalf("healthy suite: %d %s", code, body)
	}
	degraded := newFixture(t, gateway.Backend{Name: "scoring", Conn: conn})
	if code, body := degraded.get(t, "/healthz", ""); code != 503 || !strings.Contains(body, `"scoring":"UNREACHABLE"`) {
		t.Fatalf("degraded suite: %d %s", code, body)
	}
}

func TestOpenAPIListsEveryService(t *testing.T) {
	f := newFixture(t)
	code, body := f.get(t, "/openapi.json", "")
	if code != 200 {
		t.Fatalf("GET /openapi.json = %d", code)
	}
	var doc struct {
		Swagger string                    `json:"swagger"`
		Tags    []struct{ Name string }   `json:"tags"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("invalid JSON: %v", err)
	}
	tags := map[string]bool{}
	for _, tg := range doc.Tags {
		tags[tg.Name] = true
	}
	for _, svc := range []string{"IdentityService", "IngestionService", "ScoringService", "LifecycleService", "HandoffService"} {
		if !tags[svc] {
			t.Errorf("openapi.json lacks %s (tags %v)", svc, tags)
		}
	}
	for _, p := range []string{"/v1/leads", "/v1/{name}:submit"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("openapi.json lacks path %s", p)
		}
	}
}

func TestUIPagesServed(t *testing.T) {
	f := newFixture(t)
	for path, want := range map[string]string{
		"/ui/":            "Leadflow",
		"/ui/form.html":   `action="/v1/forms/demo:submit"`,
		"/ui/leads.html":  "/ui/leads.js",
		"/ui/funnel.html": "/ui/funnel.js",
		"/ui/app.js":      "export async function api",
		"/ui/thanks":      "Thank you",
		"/docs":           "/ui/docs.js",
	} {
		code, body := f.get(t, path, "")
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s = %d, body lacks %q", path, code, want)
		}
	}
}
