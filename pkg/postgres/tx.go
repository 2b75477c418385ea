package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MaxAttempts bounds how often InTx runs a transaction that keeps failing
// with a retryable error.
const MaxAttempts = 5

// Backoff between attempts: full jitter over an exponentially growing window,
// so that the transactions that collided do not collide again.
const (
	baseBackoff = 5 * time.Millisecond
	maxBackoff  = 200 * time.Millisecond
)

// rollbackTimeout bounds the rollback, which must run even when ctx is done.
const rollbackTimeout = 5 * time.Second

// InTx runs fn in a read-write transaction at the server's default isolation
// level (READ COMMITTED); see InTxWith.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return InTxWith(ctx, pool, pgx.TxOptions{}, fn)
}

// InTxWith runs fn in a transaction with opts and commits it if fn returns
// nil. If fn or the commit fails with a serialization failure or a deadlock,
// the transaction is rolled back and run again, at most MaxAttempts times in
// all, after a short jittered wait that ends early if ctx is done. fn must
// therefore have no effects outside the transaction. Any other error from fn
// is returned unchanged after the rollback.
func InTxWith(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = runTx(ctx, pool, opts, fn)
		if err == nil || !IsRetryable(err) {
			return err
		}
		if attempt == MaxAttempts {
			return fmt.Errorf("transaction failed %d times: %w", attempt, err)
		}
		if werr := wait(ctx, attempt); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

func runTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	committed := false
	defer func() {
		// Also runs when fn panics, so the connection returns to the pool clean.
		if committed {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_ = tx.Rollback(rctx) // on failure pgx closes the connection, which aborts the tx too
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true
	return nil
}

// wait sleeps before attempt+1, or returns ctx's error.
func wait(ctx context.Context, attempt int) error {
	window := min(baseBackoff<<attempt, maxBackoff)
	t := time.NewTimer(rand.N(window) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// LockKey is a statement taking a transaction advisory lock on the key
// ($1, $2), a workspace and an id say, held until the transaction ends. Two
// transactions that run it for one key take turns; its own statements after
// it (queued in the same batch or not) see what the other committed. Run it
// with Exec or queue it on a pgx.Batch.
const LockKey = `SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))`

// Key names what LockKey takes turns on: a row (such as a lead) of a
// workspace.
type Key struct{ Workspace, ID string }

// lockKeysTries bounds how often LockKeys tries to take every turn at once
// before it takes them one by one, waiting for each in turn.
const lockKeysTries = 8

// LockKeys takes the turn (LockKey) of each distinct key in tx and returns
// those keys in a fixed order, without holding some of them while it waits
// for others: it tries to take them all at once, and when one is taken
// elsewhere it lets go of the rest, waits for that one to come free, and
// tries again. Taking them one by one in order (as a plain LockKey per key
// would) is deadlock-free but holds, while it waits for one key, every key
// before it, and so holds up every transaction that needs any of them:
// under load, units of many keys queue up behind each other far beyond the
// keys they share. After lockKeysTries tries it takes them in order after
// all. Without contention it costs one round trip.
//
// The turns are taken under a savepoint, which letting go rolls back to;
// it stays open after, and commits with tx. tx must not hold turns of its
// own already, or the waits could form a cycle with another transaction;
// the database would then abort one of them as deadlocked, which InTx
// retries.
func LockKeys(ctx context.Context, tx pgx.Tx, keys []Key) ([]Key, error) {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Workspace, b.Workspace), cmp.Compare(a.ID, b.ID))
	})
	sorted = slices.Compact(sorted)
	if len(sorted) == 0 {
		return sorted, nil
	}
	workspaces, ids := make([]string, len(sorted)), make([]string, len(sorted))
	for i, k := range sorted {
		workspaces[i], ids[i] = k.Workspace, k.ID
	}
	// The first key (1-based) whose turn another transaction holds, or 0.
	// The keys before it are taken; the ones after are not tried. The hash
	// is LockKey's.
	const tryAll = `
SELECT coalesce((SELECT n FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (ws, id, n)
                  WHERE NOT pg_try_advisory_xact_lock(hashtextextended(ws || '/' || id, 0))
                  LIMIT 1), 0)`
	const (
		savepoint = `SAVEPOINT leadflow_lock_keys`
		letGo     = `ROLLBACK TO SAVEPOINT leadflow_lock_keys` // keeps the savepoint
	)
	b := &pgx.Batch{}
	b.Queue(savepoint)
	var busy int
	for range lockKeysTries {
		b.Queue(tryAll, workspaces, ids).QueryRow(func(row pgx.Row) error { return row.Scan(&busy) })
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("take turns: %w", err)
		}
		if busy == 0 {
			return sorted, nil
		}
		// Let go of the turns taken, wait for the busy one holding none,
		// let go of it too, and try again: one round trip.
		k := sorted[busy-1]
		b = &pgx.Batch{}
		b.Queue(letGo)
		b.Queue(LockKey, k.Workspace, k.ID)
		b.Queue(letGo)
	}
	b.Queue(letGo)
	for _, k := range sorted {
		b.Queue(LockKey, k.Workspace, k.ID)
	}
	return sorted, tx.SendBatch(ctx, b).Close()
}
