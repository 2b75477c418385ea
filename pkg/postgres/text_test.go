package postgres_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/leadflow/leadflow/pkg/postgres"
)

func TestTextFitsAColumn(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("a", 9) + "é", strings.Repeat("a", 9)}, // é would straddle byte 10
		{"bad \xff byte", "bad  byte"},
	} {
		got := postgres.Text(tc.in, 10)
		if got != tc.want || !utf8.ValidString(got) || len(got) > 10 {
			t.Errorf("Text(%q, 10) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
