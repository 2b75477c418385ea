package grpcerr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/testing/protocmp"

	identityv1 "github.com/leadflow/leadflow/gen/go/leadflow/identity/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/grpcerr"
	"github.com/leadflow/leadflow/pkg/postgres"
)

var errLeadNotFound = apperr.NotFound("lead not found")

func TestToStatus(t *testing.T) {
	downstream := status.New(codes.PermissionDenied, "key lacks scope admin")
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 5432},
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	dbUnavailable := status.New(codes.Unavailable, grpcerr.DatabaseUnavailableMessage)
	conflict := status.New(codes.Aborted, grpcerr.ConflictMessage)

	tests := []struct {
		name string
		err  error
		want *status.Status
	}{
		{
			name: "nil is OK",
			err:  nil,
			want: status.New(codes.OK, ""),
		},
		{
			name: "wrapped sentinel keeps its public message only",
			err:  fmt.Errorf("get lead leads/42: %w", errLeadNotFound),
			want: status.New(codes.NotFound, "lead not found"),
		},
		{
			name: "field violations become BadRequest",
			err: apperr.InvalidArgument("invalid lead",
				apperr.Field("lead.email", "must be a valid email address"),
				apperr.Field("lead.phone", "must be E.164")),
			want: withDetails(t, status.New(codes.InvalidArgument, "invalid lead"),
				&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
					{Field: "lead.email", Description: "must be a valid email address"},
					{Field: "lead.phone", Description: "must be E.164"},
				}}),
		},
		{
			name: "preconditions and reason become PreconditionFailure and ErrorInfo",
			err: fmt.Errorf("transition: %w", apperr.FailedPrecondition("SQL requires BANT",
				apperr.Precondition("BANT", "leads/42", "budget, authority, need and timeline must be set"),
				apperr.Reason("BANT_INCOMPLETE"),
				apperr.Metadata("missing", "budget"))),
			want: withDetails(t, status.New(codes.FailedPrecondition, "SQL requires BANT"),
				&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{
					{Type: "BANT", Subject: "leads/42", Description: "budget, authority, need and timeline must be set"},
				}},
				&errdetails.ErrorInfo{Reason: "BANT_INCOMPLETE", Domain: grpcerr.Domain, Metadata: map[string]string{"missing": "budget"}}),
		},
		{
			name: "stale etag is aborted",
			err:  apperr.Aborted("lead was changed concurrently"),
			want: status.New(codes.Aborted, "lead was changed concurrently"),
		},
		{
			name: "already exists",
			err:  apperr.AlreadyExists("lead already exists"),
			want: status.New(codes.AlreadyExists, "lead already exists"),
		},
		{
			name: "unauthenticated",
			err:  apperr.Unauthenticated("missing API key"),
			want: status.New(codes.Unauthenticated, "missing API key"),
		},
		{
			name: "permission denied",
			err:  apperr.PermissionDenied("key lacks scope admin"),
			want: status.New(codes.PermissionDenied, "key lacks scope admin"),
		},
		{
			name: "resource exhausted",
			err:  apperr.ResourceExhausted("rate limit exceeded"),
			want: status.New(codes.ResourceExhausted, "rate limit exceeded"),
		},
		{
			name: "cause is not sent",
			err:  apperr.Unavailable("identity service unavailable", apperr.Cause(errors.New("dial tcp 10.0.0.7:9090: connection refused"))),
			want: status.New(codes.Unavailable, "identity service unavailable"),
		},
		{
			name: "internal kind is masked",
			err:  apperr.Internal("lead 42 has no workspace"),
			want: status.New(codes.Internal, grpcerr.InternalMessage),
		},
		{
			name: "unknown kind is masked",
			err:  apperr.New(apperr.KindUnknown, "odd"),
			want: status.New(codes.Internal, grpcerr.InternalMessage),
		},
		{
			name: "status passes through without wrapping text",
			err:  fmt.Errorf("call identity: %w", downstream.Err()),
			want: downstream,
		},
		{
			name: "status details pass through",
			err: withDetails(t, status.New(codes.InvalidArgument, "bad"),
				&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "x", Description: "y"}}}).Err(),
			want: withDetails(t, status.New(codes.InvalidArgument, "bad"),
				&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "x", Description: "y"}}}),
		},
		{
			name: "context canceled",
			err:  fmt.Errorf("query: %w", context.Canceled),
			want: status.New(codes.Canceled, "context canceled"),
		},
		{
			name: "deadline exceeded",
			err:  fmt.Errorf("query: %w", context.DeadlineExceeded),
			want: status.New(codes.DeadlineExceeded, "context deadline exceeded"),
		},
		{
			name: "lost connection is unavailable",
			err:  fmt.Errorf("create lead: %w", fmt.Errorf("begin transaction: %w", pgconn.ErrConnClosed)),
			want: dbUnavailable,
		},
		{
			name: "refused connection is unavailable and names no address",
			err:  fmt.Errorf("record activity: %w", refused),
			want: dbUnavailable,
		},
		{
			name: "connection cut mid-query is unavailable",
			err:  fmt.Errorf("list leads: %w", io.ErrUnexpectedEOF),
			want: dbUnavailable,
		},
		{
			name: "server shutdown is unavailable",
			err: fmt.Errorf("create lead: %w", &pgconn.PgError{Severity: "FATAL", Code: postgres.AdminShutdown,
				Message: "terminating connection due to administrator command"}),
			want: dbUnavailable,
		},
		{
			name: "server starting up is unavailable",
			err:  &pgconn.PgError{Severity: "FATAL", Code: postgres.CannotConnectNow, Message: "the database system is starting up"},
			want: dbUnavailable,
		},
		{
			name: "connection exception class is unavailable",
			err:  &pgconn.PgError{Code: "08006"},
			want: dbUnavailable,
		},
		{
			name: "deadline keeps its code even when the connection went too",
			err:  errors.Join(fmt.Errorf("read: %w", io.ErrUnexpectedEOF), context.DeadlineExceeded),
			want: status.New(codes.DeadlineExceeded, "context deadline exceeded"),
		},
		{
			name: "an application error outranks the database",
			err:  apperr.Unavailable("identity service unavailable", apperr.Cause(pgconn.ErrConnClosed)),
			want: status.New(codes.Unavailable, "identity service unavailable"),
		},
		{
			name: "deadlock that outlasted retries is aborted",
			err: fmt.Errorf("transition: %w", fmt.Errorf("transaction failed %d times: %w", postgres.MaxAttempts,
				&pgconn.PgError{Code: postgres.DeadlockDetected, Message: "deadlock detected", Detail: "Process 1 waits for ShareLock"})),
			want: conflict,
		},
		{
			name: "serialization failure is aborted",
			err:  &pgconn.PgError{Code: postgres.SerializationFailure},
			want: conflict,
		},
		{
			name: "canceled retry stays canceled",
			err:  errors.Join(&pgconn.PgError{Code: postgres.SerializationFailure}, context.Canceled),
			want: status.New(codes.Canceled, "context canceled"),
		},
		{
			name: "other SQL errors are masked",
			err:  fmt.Errorf("create lead: %w", &pgconn.PgError{Code: "42P01", Message: `relation "leads" does not exist`}),
			want: status.New(codes.Internal, grpcerr.InternalMessage),
		},
		{
			name: "unknown error is masked",
			err:  errors.New(`ERROR: relation "leads" does not exist (SQLSTATE 42P01)`),
			want: status.New(codes.Internal, grpcerr.InternalMessage),
		},
		{
			name: "validation error",
			err:  protovalidate.Validate(&identityv1.GetWorkspaceRequest{Name: "Workspaces/ACME"}),
			want: withDetails(t, status.New(codes.InvalidArgument,
				"validation error: name: does not match regex pattern `^workspaces/[a-z0-9][a-z0-9-]{0,62}$`"),
				&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
					Field:       "name",
					Description: "does not match regex pattern `^workspaces/[a-z0-9][a-z0-9-]{0,62}$`",
				}}}),
		},
		{
			name: "nested validation error has a dotted path",
			err:  protovalidate.Validate(&identityv1.CreateApiKeyRequest{Parent: "workspaces/acme"}),
			want: withDetails(t, status.New(codes.InvalidArgument, "validation error: api_key: value is required"),
				&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
					Field:       "api_key",
					Description: "value is required",
				}}}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := grpcerr.ToStatus(tt.err)
			if diff := cmp.Diff(tt.want.Proto(), got.Proto(), protocmp.Transform()); diff != "" {
				t.Errorf("ToStatus() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestToStatusConnectError checks a real failed connection attempt, whose
// text names the host, port, user and database.
func TestToStatusConnectError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = pgconn.Connect(ctx, "postgres://leadflow:s3cr3t@"+addr+"/ingestion?sslmode=disable&connect_timeout=5")
	if _, ok := errors.AsType[*pgconn.ConnectError](err); !ok {
		t.Fatalf("Connect error = %v, want a *pgconn.ConnectError", err)
	}
	got := grpcerr.ToStatus(fmt.Errorf("create lead: begin transaction: %w", err))
	want := status.New(codes.Unavailable, grpcerr.DatabaseUnavailableMessage)
	if diff := cmp.Diff(want.Proto(), got.Proto(), protocmp.Transform()); diff != "" {
		t.Errorf("ToStatus() mismatch (-want +got):\n%s", diff)
	}
}

func withDetails(t *testing.T, st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	t.Helper()
	st, err := st.WithDetails(details...)
	if err != nil {
		t.Fatalf("add details: %v", err)
	}
	return st
}
