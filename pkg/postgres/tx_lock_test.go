package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
)

var lockMigrations = fstest.MapFS{
	"00001_init.sql": {Data: []byte("-- +goose Up\nCREATE TABLE nothing (id integer);\n")},
}

// free reports whether another transaction could take k's turn now.
func free(t *testing.T, pool *pgxpool.Pool, k postgres.Key) bool {
	t.Helper()
	var got bool
	err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT pg_try_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))`,
			k.Workspace, k.ID).Scan(&got)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Keys are taken once each, in one order whatever order they come in, and
// held until the transaction ends.
func TestLockKeysSortsAndDedupes(t *testing.T) {
	pool := pgtest.NewPool(t, "lockkeys", lockMigrations)
	keys := []postgres.Key{{Workspace: "b", ID: "1"}, {Workspace: "a", ID: "2"}, {Workspace: "a", ID: "1"}, {Workspace: "b", ID: "1"}}
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after the commit below, a no-op
	got, err := postgres.LockKeys(t.Context(), tx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[{a 1} {a 2} {b 1}]" {
		t.Fatalf("keys %v, want a/1, a/2, b/1 once each", got)
	}
	for _, k := range got {
		if free(t, pool, k) {
			t.Fatalf("%v is free while the transaction that took it runs", k)
		}
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, k := range got {
		if !free(t, pool, k) {
			t.Fatalf("%v still held after the commit", k)
		}
	}
}

// A transaction waiting for one of its keys holds none of the others
// meanwhile, so transactions that need only those go on; it gets them all
// once the key it waited for comes free.
func TestLockKeysHoldsNoneWhileWaiting(t *testing.T) {
	pool := pgtest.NewPool(t, "lockkeyswait", lockMigrations)
	k1, k2, k3 := postgres.Key{Workspace: "acme", ID: "1"}, postgres.Key{Workspace: "acme", ID: "2"}, postgres.Key{Workspace: "acme", ID: "3"}
	holder, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(context.Background()) //nolint:errcheck // after the commit below, a no-op
	if _, err := postgres.LockKeys(t.Context(), holder, []postgres.Key{k2}); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		done <- postgres.InTx(context.Background(), pool, func(tx pgx.Tx) error {
			_, err := postgres.LockKeys(context.Background(), tx, []postgres.Key{k3, k1, k2})
			return err
		})
	}()
	pgtest.AwaitLockWait(t, pool, done)
	if !free(t, pool, k1) || !free(t, pool, k3) {
		t.Fatal("the waiting transaction holds keys it is not waiting for")
	}
	if err := holder.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
