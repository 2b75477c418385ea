package pgtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Dump runs queries on pool and returns their rows as text, one line a row
// and a "--" line after each query's: a state to compare, say between two
// ways of doing the same thing.
func Dump(t testing.TB, pool *pgxpool.Pool, queries ...string) string {
	t.Helper()
	var out strings.Builder
	for _, q := range queries {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&out, vals...)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out.WriteString("--\n")
	}
	return out.String()
}
