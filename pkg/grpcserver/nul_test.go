package grpcserver

import (
	"errors"
	"slices"
	"testing"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
)

// TestCheckNUL finds NUL characters in strings at any depth, in lists and
// in map keys and values, and names each field as protovalidate would.
func TestCheckNUL(t *testing.T) {
	clean := &ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Rows{Rows: &ingestionv1.ImportRows{
		Rows: []*ingestionv1.ImportRow{{Lead: &ingestionv1.Lead{Email: "a@example.com", CustomAttributes: map[string]string{"k": "v"}}}},
	}}}
	if err := checkNUL(clean); err != nil {
		t.Fatalf("a request without NUL: %v", err)
	}
	dirty := &ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Rows{Rows: &ingestionv1.ImportRows{
		Rows: []*ingestionv1.ImportRow{
			{Lead: &ingestionv1.Lead{Email: "a@example.com"}},
			{Lead: &ingestionv1.Lead{Title: "CEO\x00"}},
			{Lead: &ingestionv1.Lead{CustomAttributes: map[string]string{"k\x00": "v", "plan": "\x00pro"}}},
		},
	}}}
	err := checkNUL(dirty)
	e, ok := errors.AsType[*apperr.Error](err)
	if !ok || e.Kind() != apperr.KindInvalidArgument {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
	var fields []string
	for _, v := range e.FieldViolations() {
		fields = append(fields, v.Field)
	}
	slices.Sort(fields)
	want := []string{
		`rows.rows[1].lead.title`,
		`rows.rows[2].lead.custom_attributes["k\x00"]`,
		`rows.rows[2].lead.custom_attributes["plan"]`,
	}
	if !slices.Equal(fields, want) {
		t.Fatalf("violations name %q, want %q", fields, want)
	}

	// Many are reported up to a bound.
	many := &ingestionv1.ImportRows{}
	for range 3 * maxNULViolations {
		many.Rows = append(many.Rows, &ingestionv1.ImportRow{Lead: &ingestionv1.Lead{FirstName: "\x00"}})
	}
	e, _ = errors.AsType[*apperr.Error](checkNUL(many))
	if e == nil || len(e.FieldViolations()) != maxNULViolations {
		t.Fatalf("err = %v, want %d violations", e, maxNULViolations)
	}
}
