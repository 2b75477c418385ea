// Package migrate applies a service's numbered SQL migrations to its own
// PostgreSQL schema.
//
// Conventions:
//
//   - Migrations are goose-format .sql files (`-- +goose Up` / `-- +goose Down`)
//     named NNNNN_description.sql and embedded in the service binary:
//
//     //go:embed migrations/*.sql
//     var migrations embed.FS
//
//     Up takes the files at the root of the fs.FS, or in its migrations/
//     directory when the root has none, so the embed.FS above can be passed as is.
//
//   - Every service owns one schema. Up creates it if needed and keeps the
//     version table inside it, as <schema>.schema_migrations.
//
//   - Migrations run with search_path set to the schema alone, so they use
//     unqualified names (CREATE TABLE leads ...) and cannot touch another
//     service's tables by accident. Services set the same search_path on their
//     pool through the connection string, e.g. "...?search_path=scoring".
//
//   - Shared components that own tables in every service's schema (the
//     outbox of pkg/outbox) ship their own migrations as a Set, versioned in
//     their own table (<name>_schema_migrations), so their numbering never
//     collides with the service's. UpSets applies the service's files and its
//     components' in one call.
//
//   - Up holds a PostgreSQL advisory lock keyed by the schema while it
//     migrates, so replicas started together migrate one at a time and each
//     migration is applied exactly once. Each migration runs in its own
//     transaction unless it is marked `-- +goose NO TRANSACTION`.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// VersionTable is the name of the version table inside each schema.
const VersionTable = "schema_migrations"

// schemaName restricts schemas to plain lower-case identifiers, which need no
// quoting in search_path or in the version table name goose builds.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Set is one independently versioned series of migrations within a schema.
type Set struct {
	// Name is empty for the service's own migrations and names a component
	// otherwise; it picks the version table.
	Name string
	FS   fs.FS
}

// versionTable is the version table of the set.
func (s Set) versionTable() string {
	if s.Name == "" {
		return VersionTable
	}
	return s.Name + "_" + VersionTable
}

// UpSets applies each set in order, each under the schema's lock.
func UpSets(ctx context.Context, url, schema string, sets []Set, opts ...Option) error {
	for _, set := range sets {
		if !schemaName.MatchString(set.Name) && set.Name != "" {
			return fmt.Errorf("migrate: invalid set name %q", set.Name)
		}
		if err := Up(ctx, url, schema, set.FS, append(opts, withVersionTable(set.versionTable()))...); err != nil {
			return err
		}
	}
	return nil
}

func withVersionTable(name string) Option { return func(o *options) { o.versionTable = name } }

type options struct {
	versionTable string
	logger       *slog.Logger
	lockTimeout  time.Duration
}

// Option configures Up and Status.
type Option func(*options)

// WithLogger sets the logger for per-migration progress; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithLockTimeout bounds the wait for another migrator to finish; default 15m.
// The lock is polled once a second.
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// Up applies the pending migrations in migrations to schema of the database at
// url, creating the schema first if needed.
func Up(ctx context.Context, url, schema string, migrations fs.FS, opts ...Option) error {
	p, db, err := newProvider(ctx, url, schema, migrations, opts)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := p.Up(ctx); err != nil {
		if pe, ok := errors.AsType[*goose.PartialError](err); ok && pe.Failed != nil && pe.Failed.Source != nil {
			return fmt.Errorf("migrate %s: %s: %w", schema, path.Base(pe.Failed.Source.Path), pe.Err)
		}
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	return nil
}

// MigrationStatus describes one migration file.
type MigrationStatus struct {
	Version   int64
	File      string
	Applied   bool
	AppliedAt time.Time // zero unless Applied
}

// Status lists every migration in migrations with whether schema has it.
func Status(ctx context.Context, url, schema string, migrations fs.FS, opts ...Option) ([]MigrationStatus, error) {
	p, db, err := newProvider(ctx, url, schema, migrations, opts)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	sts, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status of %s: %w", schema, err)
	}
	out := make([]MigrationStatus, 0, len(sts))
	for _, s := range sts {
		out = append(out, MigrationStatus{
			Version:   s.Source.Version,
			File:      path.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// newProvider opens a database handle whose sessions use schema, makes sure
// the schema exists, and returns a goose provider over it. The caller closes db.
func newProvider(ctx context.Context, url, schema string, migrations fs.FS, opts []Option) (*goose.Provider, *sql.DB, error) {
	o := options{logger: slog.Default(), lockTimeout: 15 * time.Minute, versionTable: VersionTable}
	for _, opt := range opts {
		opt(&o)
	}
	if !schemaName.MatchString(schema) {
		return nil, nil, fmt.Errorf("migrate: invalid schema name %q: want a lower-case identifier", schema)
	}
	fsys, err := migrationDir(migrations)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, nil, fmt.Errorf("migrate: parse database url: %w", err)
	}
	cfg.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*cfg)

	lockID := lockKey(schema)
	if err := createSchema(ctx, db, schema, lockID); err != nil {
		db.Close()
		return nil, nil, err
	}
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(lockID),
		lock.WithLockTimeout(1, uint64(max(o.lockTimeout/time.Second, 1))),
	)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(schema+"."+o.versionTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(o.logger),
	)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate %s: %w", schema, err)
	}
	return p, db, nil
}

// createSchema creates the schema under the migration lock's key, since two
// concurrent CREATE SCHEMA IF NOT EXISTS can still collide.
func createSchema(ctx context.Context, db *sql.DB, schema string, lockID int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockID); err != nil {
		return fmt.Errorf("migrate: lock schema %s: %w", schema, err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("migrate: create schema %s: %w", schema, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: create schema %s: %w", schema, err)
	}
	return nil
}

// lockKey derives the advisory lock key from the schema, so services sharing
// a database do not wait for each other.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, "leadflow/migrate:"+schema)
	return int64(h.Sum64())
}

// migrationDir returns the directory of fsys holding the .sql files.
func migrationDir(fsys fs.FS) (fs.FS, error) {
	if fsys == nil {
		return nil, errors.New("migrate: no migrations given")
	}
	for _, dir := range []string{".", "migrations"} {
		files, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
		if err != nil {
			return nil, fmt.Errorf("migrate: list migrations: %w", err)
		}
		if len(files) > 0 {
			return fs.Sub(fsys, dir)
		}
	}
	return nil, errors.New("migrate: no .sql files at the root or in migrations/")
}
