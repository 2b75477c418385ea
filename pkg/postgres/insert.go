package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyFrom is the row count from which Insert uses COPY. Below it, COPY's
// own round trips and goroutine cost more than INSERTs save.
const copyFrom = 16

// Insert writes rows into table, each row's values in columns' order. Many
// rows go as one COPY, run at once, which PostgreSQL loads as a bulk insert;
// a few go as plain INSERTs in one round trip: queued on b, to travel with
// the caller's other statements when it sends b, or, when b is nil, sent at
// once. table is resolved through the search_path.
func Insert(ctx context.Context, tx pgx.Tx, b *pgx.Batch, table string, columns []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if len(rows) >= copyFrom {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
		return err
	}
	own := b == nil
	if own {
		b = &pgx.Batch{}
	}
	q := insertQuery(table, columns)
	for _, r := range rows {
		b.Queue(q, r...)
	}
	if !own {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}

// insertQuery is the INSERT of one row of columns into table.
func insertQuery(table string, columns []string) string {
	var q strings.Builder
	q.WriteString("INSERT INTO ")
	writeTarget(&q, table, columns)
	q.WriteString(" VALUES (")
	for i := range columns {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "$%d", i+1)
	}
	q.WriteString(")")
	return q.String()
}

// writeTarget writes table and its columns as an INSERT or a COPY names
// them, quoted.
func writeTarget(q *strings.Builder, table string, columns []string) {
	q.WriteString(pgx.Identifier{table}.Sanitize())
	q.WriteString(" (")
	for i, c := range columns {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(pgx.Identifier{c}.Sanitize())
	}
	q.WriteString(")")
}

// SendBatch sends b in tx and reports its first error; an empty b sends
// nothing.
func SendBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}
