// Package resname parses and formats AIP-122 resource names such as
// "leads/123" or "workspaces/acme/apiKeys/abc".
package resname

import "strings"

// Parse splits name against the collection ids of its pattern and returns the
// resource ids in order. Parse("workspaces/a/apiKeys/b", "workspaces",
// "apiKeys") returns ["a", "b"], true. Empty ids or extra segments fail.
func Parse(name string, collections ...string) ([]string, bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 2*len(collections) {
		return nil, false
	}
	ids := make([]string, len(collections))
	for i, c := range collections {
		if parts[2*i] != c || parts[2*i+1] == "" {
			return nil, false
		}
		ids[i] = parts[2*i+1]
	}
	return ids, true
}

// Format joins collection ids and resource ids: Format("leads", "123") is
// "leads/123". The arguments alternate collection, id.
func Format(pairs ...string) string {
	return strings.Join(pairs, "/")
}
