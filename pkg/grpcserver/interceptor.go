package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/grpcerr"
	"github.com/leadflow/leadflow/pkg/postgres"
)

// Log attribute keys shared by the interceptors.
const (
	keyMethod   = "grpc.method"
	keyCode     = "grpc.code"
	keyDuration = "duration_ms"
)

// recoverUnary turns a handler panic into INTERNAL so one bad request
// cannot take the process down. It is the outermost interceptor, so it
// also covers the other interceptors.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recovered(ctx, log, info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recovered(ss.Context(), log, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}

func recovered(ctx context.Context, log *slog.Logger, method string, r any) error {
	log.LogAttrs(ctx, slog.LevelError, "grpc handler panicked",
		slog.String(keyMethod, method),
		slog.String("panic", fmt.Sprint(r)),
		slog.String("stack", string(debug.Stack())),
	)
	return status.Error(codes.Internal, grpcerr.InternalMessage)
}

// logUnary logs one line per RPC: method, code and duration. Payloads and
// peer addresses are never logged; they may hold personal data.
func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logRequest(ctx, log, info.FullMethod, err, time.Since(start))
		return resp, err
	}
}

func logStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logRequest(ss.Context(), log, info.FullMethod, err, time.Since(start))
		return err
	}
}

func logRequest(ctx context.Context, log *slog.Logger, method string, err error, d time.Duration) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch {
	case isServerFault(code):
		level = slog.LevelWarn
	case strings.HasPrefix(method, "/grpc.health.v1.Health/"):
		// Probes arrive every few seconds.
		level = slog.LevelDebug
	}
	if !log.Enabled(ctx, level) {
		return
	}
	log.LogAttrs(ctx, level, "grpc request",
		slog.String(keyMethod, method),
		slog.String(keyCode, code.String()),
		slog.Float64(keyDuration, float64(d.Microseconds())/1000),
	)
}

// mapErrorsUnary turns every error from the layers below (auth, validation,
// the handler) into the status the client gets, via grpcerr.ToStatus, and
// logs the whole error when the client only learns "internal error".
func mapErrorsUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, mapError(ctx, log, info.FullMethod, err)
		}
		return resp, nil
	}
}

func mapErrorsStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := handler(srv, ss); err != nil {
			return mapError(ss.Context(), log, info.FullMethod, err)
		}
		return nil
	}
}

func mapError(ctx context.Context, log *slog.Logger, method string, err error) error {
	st := grpcerr.ToStatus(err)
	switch code := st.Code(); {
	case isServerFault(code):
		log.LogAttrs(ctx, slog.LevelError, "grpc handler failed",
			slog.String(keyMethod, method), slog.Any("error", err))
	case code == codes.Unavailable:
		// Usually a dependency; the cause is in err, not in the status.
		log.LogAttrs(ctx, slog.LevelWarn, "grpc handler unavailable",
			slog.String(keyMethod, method), slog.Any("error", err))
	case code == codes.Aborted && postgres.IsRetryable(err):
		// A deadlock or serialization failure that outlasted the retries:
		// the client is told to retry, but someone should know.
		log.LogAttrs(ctx, slog.LevelWarn, "grpc handler conflicted",
			slog.String(keyMethod, method), slog.Any("error", err))
	}
	return st.Err()
}

// isServerFault reports whether code means the server, not the client, is
// at fault and someone should look at the logs.
func isServerFault(code codes.Code) bool {
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// validateUnary checks the request against its protovalidate rules and
// for NUL characters (checkNUL). It returns the validation error as is;
// mapErrors turns it into INVALID_ARGUMENT with field violations.
func validateUnary(v protovalidate.Validator, skip map[string]bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if m, ok := req.(proto.Message); ok && !skip[info.FullMethod] {
			if err := validate(v, m); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

func validate(v protovalidate.Validator, m proto.Message) error {
	if err := v.Validate(m); err != nil {
		return err
	}
	return checkNUL(m)
}

func validateStream(v protovalidate.Validator, skip map[string]bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if skip[info.FullMethod] {
			return handler(srv, ss)
		}
		return handler(srv, &validatingStream{ServerStream: ss, v: v})
	}
}

// validatingStream validates every message the client sends. A handler
// gets the validation error from Recv and, returning it, ends the RPC with
// INVALID_ARGUMENT.
type validatingStream struct {
	grpc.ServerStream
	v protovalidate.Validator
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if msg, ok := m.(proto.Message); ok {
		return validate(s.v, msg)
	}
	return nil
}
