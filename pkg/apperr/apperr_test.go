package apperr_test

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/leadflow/leadflow/pkg/apperr"
)

var errLeadNotFound = apperr.NotFound("lead not found")

func TestIsAndAs(t *testing.T) {
	derived := errLeadNotFound.With(apperr.Reason("LEAD_DELETED"))
	other := apperr.NotFound("lead not found")

	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"sentinel itself", errLeadNotFound, errLeadNotFound, true},
		{"wrapped sentinel", fmt.Errorf("get lead: %w", errLeadNotFound), errLeadNotFound, true},
		{"twice wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", errLeadNotFound)), errLeadNotFound, true},
		{"derived matches sentinel", derived, errLeadNotFound, true},
		{"wrapped derived matches sentinel", fmt.Errorf("x: %w", derived), errLeadNotFound, true},
		{"sentinel does not match derived", errLeadNotFound, derived, false},
		{"same text is another error", other, errLeadNotFound, false},
		{"cause is reachable", apperr.Unavailable("store down", apperr.Cause(io.ErrUnexpectedEOF)), io.ErrUnexpectedEOF, true},
		{"nil target", errLeadNotFound, (*apperr.Error)(nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, tt.target); got != tt.want {
				t.Errorf("errors.Is = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("as finds the error through wrapping", func(t *testing.T) {
		e, ok := errors.AsType[*apperr.Error](fmt.Errorf("create lead: %w", derived))
		if !ok {
			t.Fatal("errors.As found no *apperr.Error")
		}
		if e.Kind() != apperr.KindNotFound || e.Message() != "lead not found" || e.Reason() != "LEAD_DELETED" {
			t.Errorf("got kind %v message %q reason %q", e.Kind(), e.Message(), e.Reason())
		}
	})
}

func TestWithDoesNotAlterOriginal(t *testing.T) {
	base := apperr.InvalidArgument("invalid lead", apperr.Field("lead.email", "required"), apperr.Metadata("k", "v"))
	d := base.With(apperr.Field("lead.phone", "invalid"), apperr.Metadata("k2", "v2"))

	if got := len(base.FieldViolations()); got != 1 {
		t.Errorf("base has %d field violations, want 1", got)
	}
	if got := len(base.Metadata()); got != 1 {
		t.Errorf("base has %d metadata entries, want 1", got)
	}
	want := []apperr.FieldViolation{{Field: "lead.email", Description: "required"}, {Field: "lead.phone", Description: "invalid"}}
	if !reflect.DeepEqual(d.FieldViolations(), want) {
		t.Errorf("derived field violations = %v, want %v", d.FieldViolations(), want)
	}
}

func TestConstructors(t *testing.T) {
	tests := []struct {
		err  *apperr.Error
		want apperr.Kind
	}{
		{apperr.InvalidArgument("m"), apperr.KindInvalidArgument},
		{apperr.NotFound("m"), apperr.KindNotFound},
		{apperr.AlreadyExists("m"), apperr.KindAlreadyExists},
		{apperr.FailedPrecondition("m"), apperr.KindFailedPrecondition},
		{apperr.Aborted("m"), apperr.KindAborted},
		{apperr.Unauthenticated("m"), apperr.KindUnauthenticated},
		{apperr.PermissionDenied("m"), apperr.KindPermissionDenied},
		{apperr.ResourceExhausted("m"), apperr.KindResourceExhausted},
		{apperr.Unavailable("m"), apperr.KindUnavailable},
		{apperr.Internal("m"), apperr.KindInternal},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			if tt.err.Kind() != tt.want {
				t.Errorf("Kind() = %v, want %v", tt.err.Kind(), tt.want)
			}
			if got := apperr.KindOf(fmt.Errorf("wrap: %w", tt.err)); got != tt.want {
				t.Errorf("KindOf = %v, want %v", got, tt.want)
			}
		})
	}
	if got := apperr.KindOf(io.EOF); got != apperr.KindUnknown {
		t.Errorf("KindOf(io.EOF) = %v, want UNKNOWN", got)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name        string
		err         *apperr.Error
		wantError   string
		wantMessage string
	}{
		{"message only", apperr.NotFound("lead not found"), "lead not found", "lead not found"},
		{"cause is logged, not public", apperr.Unavailable("store unavailable", apperr.Cause(io.EOF)), "store unavailable: EOF", "store unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.wantError {
				t.Errorf("Error() = %q, want %q", got, tt.wantError)
			}
			if got := tt.err.Message(); got != tt.wantMessage {
				t.Errorf("Message() = %q, want %q", got, tt.wantMessage)
			}
		})
	}
}
