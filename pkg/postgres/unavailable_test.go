package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
)

func TestIsUnavailableClassifiesWrappedErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil},
		{name: "plain", err: errors.New("conn closed")}, // the text alone proves nothing
		{name: "no rows", err: fmt.Errorf("get lead: %w", pgx.ErrNoRows)},
		{name: "tx closed is a bug, not an outage", err: pgx.ErrTxClosed},
		{name: "unique violation", err: &pgconn.PgError{Code: postgres.UniqueViolation}},
		{name: "serialization failure", err: &pgconn.PgError{Code: postgres.SerializationFailure}},
		{name: "query canceled", err: &pgconn.PgError{Code: postgres.QueryCanceled}},
		{name: "protocol violation is a client bug", err: &pgconn.PgError{Code: postgres.ProtocolViolation}},
		{name: "canceled", err: fmt.Errorf("create lead: %w", context.Canceled)},
		{name: "deadline", err: fmt.Errorf("create lead: %w", context.DeadlineExceeded)},
		{name: "deadline beats a lost connection", err: errors.Join(io.ErrUnexpectedEOF, context.DeadlineExceeded)},

		{name: "connection exception", err: &pgconn.PgError{Code: "08006"}, want: true},
		{name: "connection does not exist", err: &pgconn.PgError{Code: "08003"}, want: true},
		{name: "admin shutdown", err: fmt.Errorf("create lead: %w", &pgconn.PgError{Code: postgres.AdminShutdown}), want: true},
		{name: "crash shutdown", err: &pgconn.PgError{Code: postgres.CrashShutdown}, want: true},
		{name: "cannot connect now", err: &pgconn.PgError{Code: postgres.CannotConnectNow}, want: true},
		{name: "too many connections", err: &pgconn.PgError{Code: postgres.TooManyConnections}, want: true},
		{name: "idle session timeout", err: &pgconn.PgError{Code: postgres.IdleSessionTimeout}, want: true},
		{name: "conn closed deep", err: fmt.Errorf("create lead: %w", fmt.Errorf("begin transaction: %w", pgconn.ErrConnClosed)), want: true},
		{name: "unexpected EOF", err: fmt.Errorf("record activity: %w", io.ErrUnexpectedEOF), want: true},
		{name: "EOF", err: fmt.Errorf("query: %w", io.EOF), want: true},
		{name: "refused", err: fmt.Errorf("record activity: %w", refused), want: true},
		{name: "reset", err: &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}, want: true},
		{name: "broken pipe joined", err: errors.Join(errors.New("x"), syscall.EPIPE), want: true},
		{name: "closed socket", err: fmt.Errorf("write: %w", net.ErrClosed), want: true},
		{name: "dns", err: &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := postgres.IsUnavailable(tt.err); got != tt.want {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestIsUnavailableWhenNothingListens(t *testing.T) {
	dbURL := pgtest.NewURL(t, "txtest", migrations)
	addr := closedPort(t)
	ctx := ctxT(t)

	// At startup: NewPool's ping fails.
	_, err := postgres.NewPool(ctx, withHost(t, dbURL, addr))
	if err == nil {
		t.Fatal("NewPool succeeded with nothing listening")
	}
	if !postgres.IsUnavailable(err) {
		t.Errorf("IsUnavailable(%v) = false", err)
	}

	// Later: the pool cannot open a connection for a transaction.
	cfg, err := pgxpool.ParseConfig(withHost(t, dbURL, addr))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg) // connects lazily
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	err = postgres.InTx(ctx, pool, func(pgx.Tx) error { return nil })
	if _, ok := errors.AsType[*pgconn.ConnectError](err); !ok {
		t.Fatalf("InTx error = %v, want a *pgconn.ConnectError", err)
	}
	if !postgres.IsUnavailable(fmt.Errorf("create lead: %w", err)) {
		t.Errorf("IsUnavailable(%v) = false", err)
	}
}

func TestIsUnavailableWhenTheServerTerminatesTheSession(t *testing.T) {
	pool := pgtest.NewPool(t, "txtest", migrations)
	ctx := ctxT(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO ledger (seen) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// What a fast or immediate shutdown does to every session, done to one.
	var terminated bool
	if err := pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", conn.Conn().PgConn().PID()).Scan(&terminated); err != nil {
		t.Fatal(err)
	}
	if !terminated {
		t.Fatal("pg_terminate_backend returned false")
	}

	// The next statement reads the server's farewell, or finds the socket gone.
	_, err = tx.Exec(ctx, "INSERT INTO ledger (seen) VALUES (2)")
	if err == nil {
		t.Fatal("statement on a terminated session succeeded")
	}
	if !postgres.IsUnavailable(fmt.Errorf("record activity: %w", err)) {
		t.Errorf("IsUnavailable(%v) = false", err)
	}
	// Any later use finds the connection closed by pgx.
	_, err = tx.Exec(ctx, "INSERT INTO ledger (seen) VALUES (3)")
	if !errors.Is(err, pgconn.ErrConnClosed) {
		t.Fatalf("second statement error = %v, want pgconn.ErrConnClosed", err)
	}
	if !postgres.IsUnavailable(fmt.Errorf("create lead: %w", err)) {
		t.Errorf("IsUnavailable(%v) = false", err)
	}
	if postgres.IsRetryable(err) {
		t.Error("a lost connection must not be retried by InTx: the commit may have happened")
	}
}

func TestIsUnavailableWhenTheConnectionIsCut(t *testing.T) {
	tests := []struct {
		name     string
		reset    bool // RST rather than FIN
		inFlight bool // cut while a statement waits for its answer
	}{
		{name: "closed between statements"},
		{name: "reset between statements", reset: true},
		{name: "closed under a statement", inFlight: true},
		{name: "reset under a statement", reset: true, inFlight: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbURL := pgtest.NewURL(t, "txtest", migrations)
			ctx := ctxT(t)
			direct, err := postgres.NewPool(ctx, dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close()
			proxy := newCutProxy(t, dbURL)
			pool, err := postgres.NewPool(ctx, withHost(t, dbURL, proxy.addr()), postgres.WithMaxConns(1))
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()

			// A lock held elsewhere keeps the statement in flight until the cut.
			holder, err := direct.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Rollback(context.WithoutCancel(ctx))
			if _, err := holder.Exec(ctx, postgres.LockKey, "cut", "1"); err != nil {
				t.Fatal(err)
			}

			err = postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO ledger (seen) VALUES (1)"); err != nil {
					return fmt.Errorf("first insert: %w", err)
				}
				if !tt.inFlight {
					proxy.cut(t, tt.reset)
					_, err := tx.Exec(ctx, "INSERT INTO ledger (seen) VALUES (2)")
					return err
				}
				waiting := make(chan error, 1)
				go func() {
					_, err := tx.Exec(ctx, postgres.LockKey, "cut", "1")
					waiting <- err
				}()
				pgtest.AwaitLockWait(t, direct, waiting)
				proxy.cut(t, tt.reset)
				return <-waiting
			})
			if err == nil {
				t.Fatal("transaction over a cut connection succeeded")
			}
			if !postgres.IsUnavailable(err) {
				t.Errorf("IsUnavailable(%v) = false", err)
			}
			if postgres.IsRetryable(err) {
				t.Errorf("IsRetryable(%v) = true: InTx must not rerun a transaction whose commit may have happened", err)
			}

			// With the proxy gone, new connections are refused.
			proxy.close()
			err = postgres.InTx(ctx, pool, func(tx pgx.Tx) error { return nil })
			if err == nil {
				t.Fatal("transaction with nothing listening succeeded")
			}
			if !postgres.IsUnavailable(err) {
				t.Errorf("IsUnavailable(%v) = false", err)
			}
		})
	}
}

// cutProxy forwards TCP connections to a PostgreSQL server and can cut them,
// as a network failure or a dying server would.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*net.TCPConn // client-side ends
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, dbURL string) *cutProxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: u.Host}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		p.close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c.(*net.TCPConn))
		p.mu.Unlock()
		p.wg.Go(func() { pipe(c, server) })
		p.wg.Go(func() { pipe(server, c) })
	}
}

// pipe copies until either side fails, then closes both.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes every client connection, with a reset if reset is set.
func (p *cutProxy) cut(t *testing.T, reset bool) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) == 0 {
		t.Fatal("no connection to cut")
	}
	for _, c := range p.conns {
		if reset {
			_ = c.SetLinger(0)
		}
		c.Close()
	}
	p.conns = nil
}

// close stops accepting connections, so that dialling the proxy is refused.
func (p *cutProxy) close() { _ = p.ln.Close() }

// closedPort returns a loopback address that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// withHost returns dbURL pointed at addr instead of its server.
func withHost(t *testing.T, dbURL, addr string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	q := u.Query()
	q.Set("connect_timeout", "5")
	u.RawQuery = q.Encode()
	return u.String()
}
