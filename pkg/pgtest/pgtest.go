// Package pgtest gives each test its own freshly migrated PostgreSQL
// database on a real server.
//
// Use it from a package's TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestCreateLead(t *testing.T) {
//		pool := pgtest.NewPool(t, "ingestion", store.Migrations)
//		...
//	}
//
// The server is started lazily, on the first NewURL or NewPool call, so test
// binaries that never touch the database pay nothing. It is a throwaway
// pglocal cluster (fsync off, random port) in a temporary directory, one per
// test binary; Main stops it and removes the directory after the tests. If the
// binary dies without reaching that point (a panic in a test), the kernel stops
// the server and the next test binary to start one removes the leftover
// directory.
//
// If LEADFLOW_TEST_DATABASE_URL is set (a postgres:// URL of a superuser, or
// of a role with CREATEDB and CREATEROLE), that server is used instead.
//
// Each test database is cloned from a template database that is migrated once
// per distinct (schema, migration files) pair, using
// github.com/peterldowns/pgtestdb. A test's database is dropped when the test
// passes and kept for inspection when it fails; its URL is in the test log.
// Tests connect as a role without superuser rights, like a service does.
package pgtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver pgtestdb connects with
	"github.com/peterldowns/pgtestdb"

	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/pglocal"
	"github.com/leadflow/leadflow/pkg/postgres"
)

// EnvDatabaseURL names the variable that points the tests at an existing server.
const EnvDatabaseURL = "LEADFLOW_TEST_DATABASE_URL"

// dirPrefix names the temporary directories of local clusters.
const dirPrefix = "leadflow-pgtest-"

// server is the PostgreSQL server shared by the tests of one binary.
type server struct {
	conf    pgtestdb.Config  // connects as the admin to the "postgres" database
	cluster *pglocal.Cluster // nil when EnvDatabaseURL is used
	dir     string           // the cluster's temporary directory
	lock    *os.File         // flock held on dir while this process lives
}

var (
	mu        sync.Mutex
	shared    *server
	sharedErr error // a failed start is not retried; every test reports it
)

// Main runs the tests and then stops the server, if one was started, before
// exiting with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// NewURL creates a database for this test with migrations applied to schema
// (see pkg/migrate) and returns its URL, with search_path set to schema.
//
// components are further migration sets to apply after the service's own
// (see migrate.Set), such as pkg/outbox's tables.
func NewURL(t testing.TB, schema string, migrations fs.FS, components ...migrate.Set) string {
	t.Helper()
	s := getServer(t)
	sets := append([]migrate.Set{{FS: migrations}}, components...)
	inst := pgtestdb.Custom(t, s.conf, &migrator{schema: schema, sets: sets})
	u, err := url.Parse(inst.URL())
	if err != nil {
		t.Fatalf("pgtest: parse test database url: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// NewEmptyURL creates an empty database for this test and returns its URL,
// for tests of migration tooling itself.
func NewEmptyURL(t testing.TB) string {
	t.Helper()
	return pgtestdb.Custom(t, getServer(t).conf, pgtestdb.NoopMigrator{}).URL()
}

// NewPool is NewURL plus a pool opened with postgres.NewPool and closed when
// the test ends.
func NewPool(t testing.TB, schema string, migrations fs.FS, components ...migrate.Set) *pgxpool.Pool {
	t.Helper()
	dbURL := NewURL(t, schema, migrations, components...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := postgres.NewPool(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close) // runs before pgtestdb drops the database
	return pool
}

// migrator builds template databases with pkg/migrate, which owns the schema
// and version-table conventions the services use in production.
type migrator struct {
	schema string
	sets   []migrate.Set
}

// Hash identifies the template: the schema name and every file's name and content.
func (m *migrator) Hash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "leadflow-pgtest/v2\x00%s\x00", m.schema)
	for _, set := range m.sets {
		fmt.Fprintf(h, "set\x00%s\x00", set.Name)
		err := fs.WalkDir(set.FS, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(set.FS, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash migrations: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// Migrate applies the migrations to a new template database.
func (m *migrator) Migrate(ctx context.Context, _ *sql.DB, conf pgtestdb.Config) error {
	quiet := slog.New(slog.DiscardHandler)
	return migrate.UpSets(ctx, conf.URL(), m.schema, m.sets, migrate.WithLogger(quiet))
}

// getServer returns the shared server, starting it on first use.
func getServer(t testing.TB) *server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = startServer()
	}
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

func startServer() (*server, error) {
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		conf, err := configFromURL(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvDatabaseURL, err)
		}
		return &server{conf: conf}, nil
	}

	sweepLeftovers()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	s := &server{dir: dir}
	fail := func(err error) (*server, error) {
		_ = s.close(context.Background())
		return nil, err
	}
	if s.lock, err = lockDir(dir); err != nil {
		return fail(err)
	}
	// As root the server runs as the postgres user, which must be able to enter
	// the directory holding its data directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		return fail(fmt.Errorf("open cluster dir: %w", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.cluster, err = pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		return fail(fmt.Errorf("start test cluster: %w", err))
	}
	s.conf, err = configFromURL(s.cluster.URL("postgres"))
	if err != nil {
		return fail(err)
	}
	return s, nil
}

// shutdown stops the shared server and removes its files.
func shutdown() error {
	mu.Lock()
	defer mu.Unlock()
	if shared == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := shared.close(ctx)
	shared = nil
	return err
}

func (s *server) close(ctx context.Context) error {
	var errs []error
	if s.cluster != nil {
		errs = append(errs, s.cluster.Stop(ctx))
	}
	if s.dir != "" {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

// lockDir takes an exclusive flock on dir/lock for the life of this process;
// the kernel releases it when the process dies, whatever the cause.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cluster dir: %w", err)
	}
	return f, nil
}

// sweepLeftovers removes the directories of test binaries that died before
// cleaning up: their lock is free. Directories without a lock file are left
// alone for a while, as their owner may be just creating it.
func sweepLeftovers() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			if st, err := os.Stat(dir); err == nil && time.Since(st.ModTime()) > 10*time.Minute {
				_ = os.RemoveAll(dir)
			}
			continue
		}
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(dir)
		}
		f.Close()
	}
}

// configFromURL turns a postgres:// URL into the pgtestdb configuration for
// its server. pgtestdb connects to the URL's database (default "postgres") to
// create roles, templates and test databases.
func configFromURL(raw string) (pgtestdb.Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return pgtestdb.Config{}, errors.New("not a valid URL") // the error would echo the password
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return pgtestdb.Config{}, fmt.Errorf("want a postgres:// URL, got scheme %q", u.Scheme)
	}
	if u.User == nil || u.User.Username() == "" {
		return pgtestdb.Config{}, errors.New("the URL names no user")
	}
	host := u.Hostname()
	if host == "" {
		return pgtestdb.Config{}, errors.New("the URL names no host")
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		db = "postgres"
	}
	// pgtestdb pastes User and Password into a URL unescaped, so give it the
	// escaped forms.
	pw, _ := u.User.Password()
	userinfo := url.UserPassword(u.User.Username(), pw).String()
	user, password, _ := strings.Cut(userinfo, ":")
	return pgtestdb.Config{
		DriverName: "pgx",
		Host:       host,
		Port:       port,
		User:       user,
		Password:   password,
		Database:   db,
		Options:    u.RawQuery,
	}, nil
}
