package resname

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name        string
		collections []string
		want        []string
		ok          bool
	}{
		{"leads/123", []string{"leads"}, []string{"123"}, true},
		{"workspaces/a/apiKeys/b", []string{"workspaces", "apiKeys"}, []string{"a", "b"}, true},
		{"leads/", []string{"leads"}, nil, false},
		{"forms/x", []string{"leads"}, nil, false},
		{"leads/1/extra", []string{"leads"}, nil, false},
		{"", []string{"leads"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.name, tc.collections...)
			if ok != tc.ok || !slices.Equal(got, tc.want) {
				t.Fatalf("Parse = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if got := Format("workspaces", "a", "apiKeys", "b"); got != "workspaces/a/apiKeys/b" {
		t.Fatalf("Format = %q", got)
	}
}
