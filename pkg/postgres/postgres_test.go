package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var migrations = fstest.MapFS{
	"00001_init.sql": {Data: []byte(`
-- +goose Up
CREATE TABLE ledger (seen integer NOT NULL);
CREATE TABLE people (
    id    integer PRIMARY KEY,
    email text NOT NULL CONSTRAINT people_email_key UNIQUE
);
`)},
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestInTxRetriesSerializationFailure(t *testing.T) {
	pool := pgtest.NewPool(t, "txtest", migrations)
	ctx := ctxT(t)

	// Write skew: both transactions read the row count, then insert it. Under
	// SERIALIZABLE one of them must fail with 40001 and, retried, see the
	// other's row. A barrier makes both read before either writes.
	var attempts atomic.Int32
	var bothRead sync.WaitGroup
	bothRead.Add(2)
	fn := func(tx pgx.Tx) error {
		first := attempts.Add(1) <= 2
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM ledger").Scan(&n); err != nil {
			return err
		}
		if first {
			bothRead.Done()
			bothRead.Wait()
		}
		_, err := tx.Exec(ctx, "INSERT INTO ledger (seen) VALUES ($1)", n)
		return err
	}
	serializable := pgx.TxOptions{IsoLevel: pgx.Serializable}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.InTxWith(ctx, pool, serializable, fn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("tx %d: %v", i, err)
		}
	}
	if got := attempts.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3 (one retry)", got)
	}
	rows, _ := pool.Query(ctx, "SELECT seen FROM ledger ORDER BY seen")
	seen, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int32{0, 1}) {
		t.Fatalf("ledger = %v, want [0 1]: the retry must see the first commit", seen)
	}
}

func TestInTxAttempts(t *testing.T) {
	errDomain := errors.New("lead not found")
	retryable := &pgconn.PgError{Code: postgres.SerializationFailure}

	tests := []struct {
		name         string
		err          error
		cancel       bool // cancel the context during the first attempt
		wantAttempts int32
		check        func(error) bool
	}{
		{name: "success", wantAttempts: 1, check: func(err error) bool { return err == nil }},
		{name: "domain error is not retried", err: errDomain, wantAttempts: 1,
			check: func(err error) bool { return errors.Is(err, errDomain) }},
		{name: "retryable error is bounded", err: fmt.Errorf("update: %w", retryable), wantAttempts: postgres.MaxAttempts,
			check: postgres.IsRetryable},
		{name: "done context stops retrying", err: retryable, cancel: true, wantAttempts: 1,
			check: func(err error) bool { return errors.Is(err, context.Canceled) && postgres.IsRetryable(err) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := pgtest.NewPool(t, "txtest", migrations)
			ctx := ctxT(t)
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			var attempts atomic.Int32
			err := postgres.InTx(runCtx, pool, func(tx pgx.Tx) error {
				attempts.Add(1)
				if _, err := tx.Exec(runCtx, "INSERT INTO ledger (seen) VALUES (42)"); err != nil {
					return err
				}
				if tt.cancel {
					cancel()
				}
				return tt.err
			})
			if !tt.check(err) {
				t.Errorf("InTx error = %v", err)
			}
			if got := attempts.Load(); got != tt.wantAttempts {
				t.Errorf("attempts = %d, want %d", got, tt.wantAttempts)
			}
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM ledger").Scan(&n); err != nil {
				t.Fatal(err)
			}
			want := 0
			if tt.err == nil {
				want = 1
			}
			if n != want {
				t.Errorf("committed rows = %d, want %d", n, want)
			}
		})
	}
}

func TestInTxRollsBackOnPanic(t *testing.T) {
	pool := pgtest.NewPool(t, "txtest", migrations)
	ctx := ctxT(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic was swallowed")
			}
		}()
		_ = postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO ledger (seen) VALUES (7)"); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM ledger").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("rows after panic = %d, want 0", n)
	}
}

func TestUniqueViolation(t *testing.T) {
	pool := pgtest.NewPool(t, "txtest", migrations)
	ctx := ctxT(t)
	const q = "INSERT INTO people (id, email) VALUES ($1, $2)"
	if _, err := pool.Exec(ctx, q, 1, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec(ctx, q, 2, "ada@example.com")
	err = fmt.Errorf("create person: %w", err)
	if !postgres.IsUniqueViolation(err) {
		t.Fatalf("IsUniqueViolation(%v) = false", err)
	}
	if got := postgres.ConstraintName(err); got != "people_email_key" {
		t.Fatalf("ConstraintName = %q, want people_email_key", got)
	}
	if postgres.IsRetryable(err) {
		t.Fatal("a unique violation must not be retryable")
	}
}

func TestErrorHelpers(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		state      string
		unique     bool
		fk         bool
		check      bool
		retryable  bool
		constraint string
	}{
		{name: "nil", err: nil},
		{name: "plain", err: errors.New("x")},
		{name: "no rows", err: pgx.ErrNoRows},
		{name: "unique", err: &pgconn.PgError{Code: "23505", ConstraintName: "c"}, state: "23505", unique: true, constraint: "c"},
		{name: "foreign key wrapped", err: fmt.Errorf("a: %w", &pgconn.PgError{Code: "23503", ConstraintName: "fk"}),
			state: "23503", fk: true, constraint: "fk"},
		{name: "check", err: &pgconn.PgError{Code: "23514"}, state: "23514", check: true},
		{name: "serialization", err: &pgconn.PgError{Code: "40001"}, state: "40001", retryable: true},
		{name: "deadlock joined", err: errors.Join(errors.New("x"), &pgconn.PgError{Code: "40P01"}), state: "40P01", retryable: true},
		{name: "canceled", err: &pgconn.PgError{Code: "57014"}, state: "57014"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := postgres.SQLState(tt.err); got != tt.state {
				t.Errorf("SQLState = %q, want %q", got, tt.state)
			}
			if got := postgres.IsUniqueViolation(tt.err); got != tt.unique {
				t.Errorf("IsUniqueViolation = %v", got)
			}
			if got := postgres.IsForeignKeyViolation(tt.err); got != tt.fk {
				t.Errorf("IsForeignKeyViolation = %v", got)
			}
			if got := postgres.IsCheckViolation(tt.err); got != tt.check {
				t.Errorf("IsCheckViolation = %v", got)
			}
			if got := postgres.IsRetryable(tt.err); got != tt.retryable {
				t.Errorf("IsRetryable = %v", got)
			}
			if got := postgres.ConstraintName(tt.err); got != tt.constraint {
				t.Errorf("ConstraintName = %q, want %q", got, tt.constraint)
			}
		})
	}
}

func TestNewPoolSpansOmitArguments(t *testing.T) {
	url := pgtest.NewURL(t, "txtest", migrations)
	ctx := ctxT(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	pool, err := postgres.NewPool(ctx, url, postgres.WithTracerProvider(tp), postgres.WithApplicationName("pgtest"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	const secret = "grace.hopper@example.com"
	ctx, span := tp.Tracer("test").Start(ctx, "request")
	if _, err := pool.Exec(ctx, "INSERT INTO people (id, email) VALUES ($1, $2)", 1, secret); err != nil {
		t.Fatal(err)
	}
	var app string
	if err := pool.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil {
		t.Fatal(err)
	}
	span.End()
	if app != "pgtest" {
		t.Errorf("application_name = %q", app)
	}

	var sawQuery bool
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "db.query.text" && strings.Contains(a.Value.AsString(), "INSERT INTO people") {
				sawQuery = true
			}
			if a.Key == "pgx.query.parameters" || strings.Contains(a.Value.Emit(), secret) {
				t.Errorf("span %q records a query argument: %s", s.Name(), a.Value.Emit())
			}
		}
	}
	if !sawQuery {
		t.Fatal("no span recorded the INSERT; the tracer is not installed")
	}
}

func TestNewPoolErrorsHidePassword(t *testing.T) {
	tests := []struct{ name, url string }{
		{name: "unreachable", url: "postgres://alice:s3cr3tpw@127.0.0.1:1/app?connect_timeout=2"},
		{name: "malformed", url: "postgres://alice:s3cr3tpw@127.0.0.1:notaport/app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.NewPool(ctxT(t), tt.url)
			if err == nil {
				t.Fatal("NewPool succeeded")
			}
			if strings.Contains(err.Error(), "s3cr3tpw") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}
