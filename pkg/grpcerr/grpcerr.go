// Package grpcerr turns errors into gRPC statuses. ToStatus is the single
// place where Leadflow decides what a client learns about a failure: the
// server interceptors call it on every handler error, so handlers and domain
// code just return errors.
package grpcerr

import (
	"context"
	"errors"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/postgres"
)

// Domain is the google.rpc.ErrorInfo domain of errors raised by Leadflow.
const Domain = "leadflow.dev"

// InternalMessage is the only message a client sees for an error the server
// did not expect.
const InternalMessage = "internal error"

// DatabaseUnavailableMessage is what a client learns when the database could
// not be reached or the connection to it was lost. The cause, which names
// hosts and ports, stays in the logs.
const DatabaseUnavailableMessage = "the database is unavailable; retry"

// ConflictMessage is what a client learns when its transaction kept
// colliding with concurrent ones (a deadlock or serialization failure that
// outlasted the retries of postgres.InTx).
const ConflictMessage = "the request conflicted with concurrent ones; retry"

// ToStatus returns the status to send for err. In order of precedence:
//
//   - an *apperr.Error anywhere in the chain maps to its kind's code, with
//     its public message and google.rpc details (BadRequest,
//     PreconditionFailure, ErrorInfo); wrapping text is dropped;
//   - a *protovalidate.ValidationError becomes INVALID_ARGUMENT with a
//     BadRequest field violation per rule violation;
//   - an error carrying a gRPC status (from a handler or a downstream call)
//     passes through unchanged;
//   - context.Canceled and context.DeadlineExceeded become CANCELLED and
//     DEADLINE_EXCEEDED;
//   - a database that could not be reached or a lost connection to it
//     (postgres.IsUnavailable) becomes UNAVAILABLE, and a deadlock or
//     serialization failure (postgres.IsRetryable) becomes ABORTED: the
//     client may retry both, with backoff;
//   - anything else, and apperr.KindInternal, becomes INTERNAL with the
//     message "internal error". The caller must log the original error.
//
// A nil error gives an OK status.
func ToStatus(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if e, ok := errors.AsType[*apperr.Error](err); ok {
		return fromAppErr(e)
	}
	if v, ok := errors.AsType[*protovalidate.ValidationError](err); ok {
		return fromValidation(v)
	}
	// status.FromError would prefix the wrapping text to the message;
	// pass the status through as it was created instead.
	if s, ok := errors.AsType[grpcStatuser](err); ok {
		if st := s.GRPCStatus(); st != nil {
			return st
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, context.Canceled.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	case postgres.IsUnavailable(err):
		return status.New(codes.Unavailable, DatabaseUnavailableMessage)
	case postgres.IsRetryable(err):
		return status.New(codes.Aborted, ConflictMessage)
	}
	return status.New(codes.Internal, InternalMessage)
}

// grpcStatuser is implemented by the errors of google.golang.org/grpc/status.
type grpcStatuser interface {
	error
	GRPCStatus() *status.Status
}

var kindCodes = map[apperr.Kind]codes.Code{
	apperr.KindInvalidArgument:    codes.InvalidArgument,
	apperr.KindNotFound:           codes.NotFound,
	apperr.KindAlreadyExists:      codes.AlreadyExists,
	apperr.KindFailedPrecondition: codes.FailedPrecondition,
	apperr.KindAborted:            codes.Aborted,
	apperr.KindUnauthenticated:    codes.Unauthenticated,
	apperr.KindPermissionDenied:   codes.PermissionDenied,
	apperr.KindResourceExhausted:  codes.ResourceExhausted,
	apperr.KindUnavailable:        codes.Unavailable,
}

func fromAppErr(e *apperr.Error) *status.Status {
	code, ok := kindCodes[e.Kind()]
	if !ok {
		// KindInternal, KindUnknown or a kind this table has not learnt:
		// the message was written for logs, not for clients.
		return status.New(codes.Internal, InternalMessage)
	}
	st := status.New(code, e.Message())

	var details []protoadapt.MessageV1
	if fv := e.FieldViolations(); len(fv) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range fv {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field:       v.Field,
				Description: v.Description,
			})
		}
		details = append(details, br)
	}
	if pv := e.PreconditionViolations(); len(pv) > 0 {
		pf := &errdetails.PreconditionFailure{}
		for _, v := range pv {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
				Type:        v.Type,
				Subject:     v.Subject,
				Description: v.Description,
			})
		}
		details = append(details, pf)
	}
	if r := e.Reason(); r != "" {
		details = append(details, &errdetails.ErrorInfo{
			Reason:   r,
			Domain:   Domain,
			Metadata: e.Metadata(),
		})
	}
	return withDetails(st, details...)
}

func fromValidation(v *protovalidate.ValidationError) *status.Status {
	br := &errdetails.BadRequest{}
	for _, viol := range v.Violations {
		desc := viol.Proto.GetMessage()
		if desc == "" {
			desc = viol.Proto.GetRuleId()
		}
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       protovalidate.FieldPathString(viol.Proto.GetField()),
			Description: desc,
		})
	}
	// The message names fields and rules, never field values, so it is safe
	// to send and saves clients from decoding details to see what is wrong.
	msg := v.Error()
	if msg == "" {
		msg = "invalid request"
	}
	return withDetails(status.New(codes.InvalidArgument, msg), br)
}

func withDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	if len(details) == 0 {
		return st
	}
	withD, err := st.WithDetails(details...)
	if err != nil {
		// Only fails for an OK status or unmarshalable details; the
		// code and message are still right without them.
		return st
	}
	return withD
}
