// Package apperr is the error vocabulary shared by every Leadflow service.
//
// Domain packages return *Error values (usually package-level sentinels such
// as ErrLeadNotFound) to say what went wrong in terms a client may see: a
// Kind, a safe public message and optional structured details. The package
// knows nothing of gRPC or SQL; pkg/grpcerr turns an *Error into a gRPC status
// in one place.
//
// An *Error survives wrapping: fmt.Errorf("create lead: %w", ErrLeadNotFound)
// still maps to NOT_FOUND with the message "lead not found", and errors.Is
// still matches the sentinel. The wrapping text is never sent to clients.
package apperr

import (
	"errors"
	"maps"
	"slices"
)

// Kind classifies an error the way a client should react to it. The kinds
// mirror the canonical gRPC codes that make sense for application errors.
type Kind int

// The kinds of application error. KindUnknown is what KindOf reports for an
// error that is not an *Error; it is never sent to clients as-is.
const (
	KindUnknown Kind = iota
	// KindInvalidArgument: the request is malformed, whatever the state.
	KindInvalidArgument
	// KindNotFound: the named resource does not exist (or is not visible).
	KindNotFound
	// KindAlreadyExists: the resource the client tried to create exists.
	KindAlreadyExists
	// KindFailedPrecondition: the system is not in a state the operation
	// needs, e.g. a transition to SQL before BANT is complete. Retrying
	// will not help until the state changes.
	KindFailedPrecondition
	// KindAborted: a concurrency conflict, e.g. a stale etag. The client
	// should re-read and retry.
	KindAborted
	// KindUnauthenticated: no valid credentials.
	KindUnauthenticated
	// KindPermissionDenied: valid credentials that may not do this.
	KindPermissionDenied
	// KindResourceExhausted: a quota or rate limit was hit.
	KindResourceExhausted
	// KindUnavailable: a transient failure; the client may retry with backoff.
	KindUnavailable
	// KindInternal: an invariant broke. The public message is replaced with
	// a generic one before it reaches a client.
	KindInternal
)

var kindNames = [...]string{
	KindUnknown:            "UNKNOWN",
	KindInvalidArgument:    "INVALID_ARGUMENT",
	KindNotFound:           "NOT_FOUND",
	KindAlreadyExists:      "ALREADY_EXISTS",
	KindFailedPrecondition: "FAILED_PRECONDITION",
	KindAborted:            "ABORTED",
	KindUnauthenticated:    "UNAUTHENTICATED",
	KindPermissionDenied:   "PERMISSION_DENIED",
	KindResourceExhausted:  "RESOURCE_EXHAUSTED",
	KindUnavailable:        "UNAVAILABLE",
	KindInternal:           "INTERNAL",
}

// String returns the kind in the UPPER_SNAKE_CASE spelling of gRPC codes.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "UNKNOWN"
	}
	return kindNames[k]
}

// FieldViolation says which request field is wrong and why. Field is a
// dotted path from the request message, e.g. "lead.email".
type FieldViolation struct {
	Field       string
	Description string
}

// PreconditionViolation says which precondition failed, in the shape of
// google.rpc.PreconditionFailure: Type is a service-specific category such
// as "BANT", Subject what failed relative to Type (e.g. "leads/123"), and
// Description how to fix it.
type PreconditionViolation struct {
	Type        string
	Subject     string
	Description string
}

// Error is an application error with a client-safe message. Build it with
// New or one of the kind constructors; its fields are read-only so that
// package-level sentinels cannot be altered by callers.
type Error struct {
	kind          Kind
	msg           string
	fields        []FieldViolation
	preconditions []PreconditionViolation
	reason        string
	metadata      map[string]string
	cause         error
	// origin is the error this one was derived from with With, so that
	// errors.Is(derived, sentinel) holds. It is the error itself otherwise.
	origin *Error
}

// Option adds detail to an *Error.
type Option func(*Error)

// Field adds a field violation, reported as google.rpc.BadRequest.
func Field(field, description string) Option {
	return func(e *Error) {
		e.fields = append(e.fields, FieldViolation{Field: field, Description: description})
	}
}

// Precondition adds a precondition violation, reported as
// google.rpc.PreconditionFailure.
func Precondition(typ, subject, description string) Option {
	return func(e *Error) {
		e.preconditions = append(e.preconditions, PreconditionViolation{Type: typ, Subject: subject, Description: description})
	}
}

// Reason sets a machine-readable UPPER_SNAKE_CASE reason, reported as
// google.rpc.ErrorInfo (e.g. "ETAG_MISMATCH", "BANT_INCOMPLETE").
func Reason(reason string) Option {
	return func(e *Error) { e.reason = reason }
}

// Metadata adds a key/value to the ErrorInfo metadata. It must be safe to
// show to the client; it is only sent when a Reason is set.
func Metadata(key, value string) Option {
	return func(e *Error) {
		if e.metadata == nil {
			e.metadata = make(map[string]string)
		}
		e.metadata[key] = value
	}
}

// Cause records the underlying error. It appears in Error() (and so in
// server logs) and is reachable with errors.Is/As, but it is never sent to a
// client.
func Cause(err error) Option {
	return func(e *Error) { e.cause = err }
}

// New returns an error of the given kind with a client-safe message.
func New(kind Kind, msg string, opts ...Option) *Error {
	e := &Error{kind: kind, msg: msg}
	e.origin = e
	for _, opt := range opts {
		opt(e)
	}
	return e
}

// InvalidArgument returns a KindInvalidArgument error.
func InvalidArgument(msg string, opts ...Option) *Error {
	return New(KindInvalidArgument, msg, opts...)
}

// NotFound returns a KindNotFound error.
func NotFound(msg string, opts ...Option) *Error { return New(KindNotFound, msg, opts...) }

// AlreadyExists returns a KindAlreadyExists error.
func AlreadyExists(msg string, opts ...Option) *Error {
	return New(KindAlreadyExists, msg, opts...)
}

// FailedPrecondition returns a KindFailedPrecondition error.
func FailedPrecondition(msg string, opts ...Option) *Error {
	return New(KindFailedPrecondition, msg, opts...)
}

// Aborted returns a KindAborted error, for stale etags and concurrent changes.
func Aborted(msg string, opts ...Option) *Error { return New(KindAborted, msg, opts...) }

// Unauthenticated returns a KindUnauthenticated error.
func Unauthenticated(msg string, opts ...Option) *Error {
	return New(KindUnauthenticated, msg, opts...)
}

// PermissionDenied returns a KindPermissionDenied error.
func PermissionDenied(msg string, opts ...Option) *Error {
	return New(KindPermissionDenied, msg, opts...)
}

// ResourceExhausted returns a KindResourceExhausted error.
func ResourceExhausted(msg string, opts ...Option) *Error {
	return New(KindResourceExhausted, msg, opts...)
}

// Unavailable returns a KindUnavailable error.
func Unavailable(msg string, opts ...Option) *Error { return New(KindUnavailable, msg, opts...) }

// Internal returns a KindInternal error. Its message is logged but clients
// only ever see "internal error".
func Internal(msg string, opts ...Option) *Error { return New(KindInternal, msg, opts...) }

// With returns a copy of e with more detail. The copy still satisfies
// errors.Is(copy, e), so a sentinel can carry per-call details:
//
//	return ErrInvalidLead.With(apperr.Field("lead.email", "must be a valid email address"))
func (e *Error) With(opts ...Option) *Error {
	c := &Error{
		kind:          e.kind,
		msg:           e.msg,
		fields:        slices.Clone(e.fields),
		preconditions: slices.Clone(e.preconditions),
		reason:        e.reason,
		metadata:      maps.Clone(e.metadata),
		cause:         e.cause,
		origin:        e.origin,
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Error returns the message followed by the cause, if any. It is meant for
// logs; clients get Message.
func (e *Error) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

// Unwrap returns the cause given with Cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is e or the error e was derived from with With.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e.origin == t
}

// Kind returns the error's kind.
func (e *Error) Kind() Kind { return e.kind }

// Message returns the client-safe message.
func (e *Error) Message() string { return e.msg }

// FieldViolations returns the field violations; callers must not modify it.
func (e *Error) FieldViolations() []FieldViolation { return e.fields }

// PreconditionViolations returns the precondition violations; callers must
// not modify it.
func (e *Error) PreconditionViolations() []PreconditionViolation { return e.preconditions }

// Reason returns the machine-readable reason, or "".
func (e *Error) Reason() string { return e.reason }

// Metadata returns the ErrorInfo metadata; callers must not modify it.
func (e *Error) Metadata() map[string]string { return e.metadata }

// KindOf returns the kind of the first *Error in err's chain, or KindUnknown
// if there is none.
func KindOf(err error) Kind {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.kind
	}
	return KindUnknown
}
