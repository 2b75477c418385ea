package postgres

import (
	"strings"
	"unicode/utf8"
)

// Text makes s fit a text column of at most limit bytes: cut on a
// character boundary and made valid UTF-8, which PostgreSQL requires (an
// error message from elsewhere may hold any bytes).
func Text(s string, limit int) string {
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.ToValidUTF8(s, "")
}
