package grpcserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/testing/protocmp"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/grpcerr"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/logging"
)

// fakeIdentity answers GetWorkspace according to the workspace asked for.
type fakeIdentity struct {
	identityv1.UnimplementedIdentityServiceServer
	calls   atomic.Int32
	entered chan struct{} // receives when "workspaces/slow" starts
	release chan struct{} // closed to let "workspaces/slow" finish
}

func newFakeIdentity() *fakeIdentity {
	return &fakeIdentity{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

var errWorkspaceNotFound = apperr.NotFound("workspace not found")

func (f *fakeIdentity) GetWorkspace(ctx context.Context, req *identityv1.GetWorkspaceRequest) (*identityv1.GetWorkspaceResponse, error) {
	f.calls.Add(1)
	switch req.GetName() {
	case "workspaces/missing":
		return nil, fmt.Errorf("get workspace %s: %w", req.GetName(), errWorkspaceNotFound)
	case "workspaces/broken":
		return nil, fmt.Errorf("query workspace: %w", errors.New(`relation "workspaces" does not exist`))
	case "workspaces/panic":
		panic("nil map in workspace cache")
	case "workspaces/deadlocked":
		return nil, fmt.Errorf("update workspace: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
	case "workspaces/slow":
		f.entered <- struct{}{}
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &identityv1.GetWorkspaceResponse{Workspace: &identityv1.Workspace{Name: req.GetName()}}, nil
}

// fakeIngestion counts the rows of an import.
type fakeIngestion struct {
	ingestionv1.UnimplementedIngestionServiceServer
}

func (fakeIngestion) ImportLeads(stream grpc.ClientStreamingServer[ingestionv1.ImportLeadsRequest, ingestionv1.ImportLeadsResponse]) error {
	var n int64
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&ingestionv1.ImportLeadsResponse{Created: n})
		}
		if err != nil {
			return fmt.Errorf("receive import row: %w", err)
		}
		n++
	}
}

// syncBuffer is a log sink the test can read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	conn     *grpc.ClientConn
	identity *fakeIdentity
	logs     *syncBuffer
	cancel   context.CancelFunc
	served   chan error // receives Serve's result
}

// start serves a Server with the fake services on 127.0.0.1:0.
func start(t *testing.T, opts grpcserver.Options, dialOpts ...grpc.DialOption) *harness {
	t.Helper()
	h := &harness{identity: newFakeIdentity(), logs: &syncBuffer{}, served: make(chan error, 1)}
	opts.Logger = logging.New(h.logs, slog.LevelDebug, "test")
	srv, err := grpcserver.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	identityv1.RegisterIdentityServiceServer(srv, h.identity)
	ingestionv1.RegisterIngestionServiceServer(srv, fakeIngestion{})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	if len(dialOpts) == 0 {
		dialOpts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	h.conn, err = grpc.NewClient(lis.Addr().String(), dialOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.conn.Close() })
	return h
}

// stop cancels the server's context and returns Serve's result.
func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	err := <-h.served
	h.served <- nil // for the cleanup
	return err
}

func TestHealthAndReflection(t *testing.T) {
	h := start(t, grpcserver.Options{})
	health := healthpb.NewHealthClient(h.conn)
	for _, svc := range []string{"", identityv1.IdentityService_ServiceDesc.ServiceName} {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Check(%q): %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", svc, resp.GetStatus())
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, identityv1.IdentityService_ServiceDesc.ServiceName) {
		t.Errorf("reflection lists %v, want the identity service among them", names)
	}
	_ = stream.CloseSend()
}

func TestUnaryErrors(t *testing.T) {
	h := start(t, grpcserver.Options{})
	client := identityv1.NewIdentityServiceClient(h.conn)

	tests := []struct {
		name        string
		workspace   string
		want        *status.Status
		wantHandled bool   // whether the handler ran
		wantLog     string // must appear in the logs
	}{
		{
			name:        "ok",
			workspace:   "workspaces/acme",
			want:        status.New(codes.OK, ""),
			wantHandled: true,
		},
		{
			name:      "validation error never reaches the handler",
			workspace: "Workspaces/ACME",
			want: withDetails(t, status.New(codes.InvalidArgument,
				"validation error: name: does not match regex pattern `^workspaces/[a-z0-9][a-z0-9-]{0,62}$`"),
				&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
					Field:       "name",
					Description: "does not match regex pattern `^workspaces/[a-z0-9][a-z0-9-]{0,62}$`",
				}}}),
			wantHandled: false,
		},
		{
			name:        "apperr kind is mapped",
			workspace:   "workspaces/missing",
			want:        status.New(codes.NotFound, "workspace not found"),
			wantHandled: true,
			wantLog:     `"grpc.code":"NotFound"`,
		},
		{
			name:        "unknown error is masked and logged whole",
			workspace:   "workspaces/broken",
			want:        status.New(codes.Internal, grpcerr.InternalMessage),
			wantHandled: true,
			wantLog:     `query workspace: relation \"workspaces\" does not exist`,
		},
		{
			name:        "a conflict that outlasted the retries is logged",
			workspace:   "workspaces/deadlocked",
			want:        status.New(codes.Aborted, grpcerr.ConflictMessage),
			wantHandled: true,
			wantLog:     `"msg":"grpc handler conflicted"`,
		},
		{
			name:        "panic becomes internal",
			workspace:   "workspaces/panic",
			want:        status.New(codes.Internal, grpcerr.InternalMessage),
			wantHandled: true,
			wantLog:     "nil map in workspace cache",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.identity.calls.Load()
			_, err := client.GetWorkspace(t.Context(), &identityv1.GetWorkspaceRequest{Name: tt.workspace})
			got := status.New(codes.OK, "")
			if err != nil {
				got = status.Convert(err)
			}
			if diff := cmp.Diff(tt.want.Proto(), got.Proto(), protocmp.Transform()); diff != "" {
				t.Errorf("status mismatch (-want +got):\n%s", diff)
			}
			if handled := h.identity.calls.Load() > before; handled != tt.wantHandled {
				t.Errorf("handler ran = %v, want %v", handled, tt.wantHandled)
			}
			if tt.wantLog != "" && !strings.Contains(h.logs.String(), tt.wantLog) {
				t.Errorf("logs lack %q:\n%s", tt.wantLog, h.logs.String())
			}
		})
	}

	// The server survived the panic.
	if _, err := client.GetWorkspace(t.Context(), &identityv1.GetWorkspaceRequest{Name: "workspaces/acme"}); err != nil {
		t.Errorf("call after panic: %v", err)
	}
	// Request logs carry method and code but never the payload.
	logs := h.logs.String()
	if !strings.Contains(logs, `"grpc.method":"/leadflow.identity.v1.IdentityService/GetWorkspace"`) {
		t.Errorf("no request log line:\n%s", logs)
	}
	if strings.Contains(logs, "workspaces/acme") {
		t.Errorf("request payload was logged:\n%s", logs)
	}
}

func TestStreamValidation(t *testing.T) {
	longSource := strings.Repeat("x", 201)
	tests := []struct {
		name      string
		source    string
		skip      []string
		wantCode  codes.Code
		wantField string // the violation of options.source
	}{
		{name: "invalid message fails the stream", source: longSource, wantCode: codes.InvalidArgument,
			wantField: "must be at most 200 characters"},
		{name: "a NUL character fails the stream", source: "csv\x00", wantCode: codes.InvalidArgument,
			wantField: "must not contain NUL characters"},
		{name: "skipped method is not validated", source: longSource, skip: []string{ingestionv1.IngestionService_ImportLeads_FullMethodName}, wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, grpcserver.Options{SkipValidation: tt.skip})
			stream, err := ingestionv1.NewIngestionServiceClient(h.conn).ImportLeads(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Options{
				Options: &ingestionv1.ImportOptions{Source: tt.source},
			}}); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			_, err = stream.CloseAndRecv()
			st := status.Convert(err)
			if st.Code() != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", st.Code(), err, tt.wantCode)
			}
			if tt.wantCode != codes.InvalidArgument {
				return
			}
			want := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
				Field:       "options.source",
				Description: tt.wantField,
			}}}
			if diff := cmp.Diff([]any{want}, st.Details(), protocmp.Transform()); diff != "" {
				t.Errorf("details mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExtraInterceptorsRunBeforeValidation(t *testing.T) {
	requireKey := func(ctx context.Context) error {
		if len(metadata.ValueFromIncomingContext(ctx, "authorization")) == 0 {
			return apperr.Unauthenticated("missing API key")
		}
		return nil
	}
	var streams atomic.Int32
	h := start(t, grpcserver.Options{
		UnaryInterceptors: []grpc.UnaryServerInterceptor{
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				if err := requireKey(ctx); err != nil {
					return nil, err
				}
				return handler(ctx, req)
			},
		},
		StreamInterceptors: []grpc.StreamServerInterceptor{
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
				streams.Add(1)
				return handler(srv, ss)
			},
		},
	})
	client := identityv1.NewIdentityServiceClient(h.conn)
	invalid := &identityv1.GetWorkspaceRequest{Name: "not a name"}

	tests := []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"auth error is mapped and comes first", t.Context(), codes.Unauthenticated},
		{"authenticated request is validated", metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer k"), codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.GetWorkspace(tt.ctx, invalid)
			if got := status.Code(err); got != tt.want {
				t.Errorf("code = %v (%v), want %v", got, err, tt.want)
			}
		})
	}

	watch, err := healthpb.NewHealthClient(h.conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	if streams.Load() == 0 {
		t.Error("stream interceptor did not run")
	}
}

func TestGracefulShutdownFinishesInFlightRPC(t *testing.T) {
	h := start(t, grpcserver.Options{ShutdownTimeout: time.Minute})
	client := identityv1.NewIdentityServiceClient(h.conn)

	result := make(chan error, 1)
	go func() {
		_, err := client.GetWorkspace(context.Background(), &identityv1.GetWorkspaceRequest{Name: "workspaces/slow"})
		result <- err
	}()
	<-h.identity.entered

	stopped := make(chan error, 1)
	go func() { stopped <- h.stop(t) }()

	// Wait until shutdown has begun: health stops reporting SERVING.
	health := healthpb.NewHealthClient(h.conn)
	for {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			break
		}
		time.Sleep(time.Millisecond) // poll interval, not a wait for an outcome
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while an RPC was in flight", err)
	default:
	}

	close(h.identity.release)
	if err := <-result; err != nil {
		t.Errorf("in-flight RPC failed: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestShutdownTimeoutCancelsRPCs(t *testing.T) {
	h := start(t, grpcserver.Options{ShutdownTimeout: 50 * time.Millisecond})
	client := identityv1.NewIdentityServiceClient(h.conn)

	result := make(chan error, 1)
	go func() {
		_, err := client.GetWorkspace(context.Background(), &identityv1.GetWorkspaceRequest{Name: "workspaces/slow"})
		result <- err
	}()
	<-h.identity.entered

	if err := h.stop(t); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := <-result; status.Code(err) == codes.OK {
		t.Error("RPC succeeded after a forced stop")
	}
	if !strings.Contains(h.logs.String(), "graceful stop timed out") {
		t.Errorf("no timeout logged:\n%s", h.logs.String())
	}
}

func TestServeReportsListenerFailure(t *testing.T) {
	srv, err := grpcserver.New(grpcserver.Options{Logger: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis.Close()
	if err := srv.Serve(t.Context(), lis); err == nil {
		t.Error("Serve on a closed listener returned nil")
	}
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	h := start(t, grpcserver.Options{TLSCertFile: certFile, TLSKeyFile: keyFile},
		grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "localhost")))
	resp, err := healthpb.NewHealthClient(h.conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check over TLS = %v, %v", resp, err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	certFile, _, _ := selfSigned(t)
	tests := []struct {
		name string
		opts grpcserver.Options
	}{
		{"no logger", grpcserver.Options{}},
		{"cert without key", grpcserver.Options{Logger: logging.Discard(), TLSCertFile: certFile}},
		{"unreadable key pair", grpcserver.Options{Logger: logging.Discard(), TLSCertFile: certFile, TLSKeyFile: filepath.Join(t.TempDir(), "missing.key")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := grpcserver.New(tt.opts); err == nil {
				t.Error("New succeeded, want an error")
			}
		})
	}
}

func withDetails(t *testing.T, st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	t.Helper()
	st, err := st.WithDetails(details...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// selfSigned writes a certificate for "localhost" and its key to files.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
