package postgres_test

import (
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
)

var insertMigrations = fstest.MapFS{
	"00001_init.sql": {Data: []byte(`
-- +goose Up
CREATE TABLE items (
    id   integer PRIMARY KEY,
    tags text[] NOT NULL,
    note text
);
`)},
}

// TestInsert writes few rows (INSERTs, sent at once or with the caller's
// batch) and many (COPY), and reads every value back.
func TestInsert(t *testing.T) {
	pool := pgtest.NewPool(t, "inserttest", insertMigrations)
	columns := []string{"id", "tags", "note"}
	rows := func(from, n int) [][]any {
		out := make([][]any, n)
		for i := range out {
			var note *string
			if i%2 == 0 {
				s := fmt.Sprint("note ", from+i)
				note = &s
			}
			out[i] = []any{from + i, []string{"a", fmt.Sprint(from + i)}, note}
		}
		return out
	}
	err := postgres.InTx(ctxT(t), pool, func(tx pgx.Tx) error {
		if err := postgres.Insert(ctxT(t), tx, nil, "items", columns, rows(0, 3)); err != nil {
			return fmt.Errorf("few, at once: %w", err)
		}
		b := &pgx.Batch{}
		if err := postgres.Insert(ctxT(t), tx, b, "items", columns, rows(100, 2)); err != nil {
			return fmt.Errorf("few, queued: %w", err)
		}
		if b.Len() != 2 {
			return fmt.Errorf("%d statements queued, want 2", b.Len())
		}
		if err := tx.SendBatch(ctxT(t), b).Close(); err != nil {
			return fmt.Errorf("send the queued rows: %w", err)
		}
		b = &pgx.Batch{}
		if err := postgres.Insert(ctxT(t), tx, b, "items", columns, rows(1000, 500)); err != nil {
			return fmt.Errorf("many: %w", err)
		}
		if b.Len() != 0 {
			return fmt.Errorf("many rows queued %d statements; want a COPY, at once", b.Len())
		}
		return postgres.Insert(ctxT(t), tx, nil, "items", columns, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	var n, tagged, noted int
	err = pool.QueryRow(ctxT(t), `
SELECT count(*), count(*) FILTER (WHERE tags = ARRAY['a', id::text]),
       count(*) FILTER (WHERE note = 'note ' || id)
  FROM items`).Scan(&n, &tagged, &noted)
	if err != nil {
		t.Fatal(err)
	}
	if n != 505 || tagged != 505 || noted != 2+1+250 {
		t.Fatalf("rows %d, with their tags %d, with their notes %d; want 505, 505, 253", n, tagged, noted)
	}
}
