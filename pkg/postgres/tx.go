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

// QueueLockKeys queues on b a LockKey for each distinct key, in one order
// (so transactions taking several keys take turns rather than deadlock),
// and returns those keys in that order.
func QueueLockKeys(b *pgx.Batch, keys []Key) []Key {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Workspace, b.Workspace), cmp.Compare(a.ID, b.ID))
	})
	sorted = slices.Compact(sorted)
	for _, k := range sorted {
		b.Queue(LockKey, k.Workspace, k.ID)
	}
	return sorted
}
