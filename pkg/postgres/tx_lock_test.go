package postgres_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/postgres"
)

// Keys are taken once each, in one order whatever order they come in.
func TestQueueLockKeysSortsAndDedupes(t *testing.T) {
	b := &pgx.Batch{}
	got := postgres.QueueLockKeys(b, []postgres.Key{
		{Workspace: "b", ID: "1"}, {Workspace: "a", ID: "2"}, {Workspace: "a", ID: "1"}, {Workspace: "b", ID: "1"},
	})
	if fmt.Sprint(got) != "[{a 1} {a 2} {b 1}]" || b.Len() != 3 {
		t.Fatalf("keys %v with %d statements, want a/1, a/2, b/1 once each", got, b.Len())
	}
}
