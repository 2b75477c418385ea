package pgtest

import (
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// AwaitLockWait returns once a session of pool's database waits for a lock,
// for tests that hold one transaction open while another must wait on it.
// It fails t when none waits within 30 seconds, or when finished yields
// first: the work that should have waited ended without waiting.
func AwaitLockWait(t testing.TB, pool *pgxpool.Pool, finished <-chan error) {
	t.Helper()
	const q = `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(t.Context(), q).Scan(&n); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("pgtest: no session waited for a lock")
		}
		select {
		case err := <-finished:
			t.Fatalf("pgtest: the work ended without waiting for a lock (err %v)", err)
		default:
		}
		runtime.Gosched()
	}
}
