package migrate_test

import (
	"cmp"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testdata holds a migrations/ directory, which Up must find on its own.
var (
	good   = os.DirFS("testdata")
	broken = os.DirFS("testdata/broken")
	quiet  = migrate.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// query runs one query on url and scans its single row.
func query(t *testing.T, url, sql string, dest ...any) {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestUpAppliesOnceAndIsIdempotent(t *testing.T) {
	url := pgtest.NewEmptyURL(t)
	ctx := ctxT(t)
	for i := range 2 {
		if err := migrate.Up(ctx, url, "crm", good, quiet); err != nil {
			t.Fatalf("Up #%d: %v", i+1, err)
		}
	}

	var applied []int32
	query(t, url, "SELECT array_agg(version ORDER BY version) FROM crm.applied", &applied)
	if len(applied) != 3 || applied[0] != 1 || applied[2] != 3 {
		t.Fatalf("crm.applied = %v, want [1 2 3]", applied)
	}
	var where string
	query(t, url, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'leads'", &where)
	if where != "crm" {
		t.Fatalf("leads created in schema %q, want crm", where)
	}
	var versions int
	query(t, url, "SELECT count(*) FROM crm."+migrate.VersionTable+" WHERE version_id > 0", &versions)
	if versions != 3 {
		t.Fatalf("version table has %d rows, want 3", versions)
	}

	st, err := migrate.Status(ctx, url, "crm", good, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[2].File != "00003_lead_score.sql" || st[2].Version != 3 {
		t.Fatalf("Status = %+v", st)
	}
	for _, s := range st {
		if !s.Applied || s.AppliedAt.IsZero() {
			t.Errorf("%s not reported applied: %+v", s.File, s)
		}
	}
}

func TestUpSchemasAreIndependent(t *testing.T) {
	url := pgtest.NewEmptyURL(t)
	ctx := ctxT(t)
	for _, schema := range []string{"alpha", "beta"} {
		if err := migrate.Up(ctx, url, schema, good, quiet); err != nil {
			t.Fatalf("Up %s: %v", schema, err)
		}
	}
	var n int
	query(t, url, "SELECT (SELECT count(*) FROM alpha.applied) + (SELECT count(*) FROM beta.applied)", &n)
	if n != 6 {
		t.Fatalf("applied rows across schemas = %d, want 6", n)
	}
}

func TestUpConcurrent(t *testing.T) {
	url := pgtest.NewEmptyURL(t)
	ctx := ctxT(t)
	const replicas = 3
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { errs[i] = migrate.Up(ctx, url, "crm", good, quiet) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	var n int
	query(t, url, "SELECT count(*) FROM crm.applied", &n)
	if n != 3 {
		t.Fatalf("crm.applied has %d rows, want 3", n)
	}
}

func TestUpBrokenMigrationNamesFile(t *testing.T) {
	url := pgtest.NewEmptyURL(t)
	ctx := ctxT(t)
	err := migrate.Up(ctx, url, "crm", broken, quiet)
	if err == nil || !strings.Contains(err.Error(), "00002_broken.sql") {
		t.Fatalf("Up error = %v, want one naming 00002_broken.sql", err)
	}
	t.Log(err)
	st, err := migrate.Status(ctx, url, "crm", broken, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || !st[0].Applied || st[1].Applied {
		t.Fatalf("Status = %+v, want only the first applied", st)
	}
}

func TestUpRejectsBadInput(t *testing.T) {
	tests := []struct {
		name, schema string
		fsys         fs.FS
		want         string
	}{
		{name: "empty schema", schema: "", want: "invalid schema name"},
		{name: "upper case", schema: "Crm", want: "invalid schema name"},
		{name: "injection", schema: "crm; DROP TABLE x", want: "invalid schema name"},
		{name: "too long", schema: strings.Repeat("a", 64), want: "invalid schema name"},
		{name: "no sql files", schema: "crm", fsys: os.DirFS("."), want: "no .sql files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := cmp.Or(tt.fsys, good)
			// The URL is never dialled: input is checked first.
			err := migrate.Up(context.Background(), "postgres://nobody@127.0.0.1:1/x", tt.schema, fsys, quiet)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A component's migrations are versioned apart from the service's, so both
// may start at 00001 and evolve independently.
func TestUpSetsVersionsComponentsApart(t *testing.T) {
	url := pgtest.NewEmptyURL(t)
	component := fstest.MapFS{"00001_component.sql": {Data: []byte(
		"-- +goose Up\nCREATE TABLE component_things (id int);\n-- +goose Down\nDROP TABLE component_things;\n")}}
	sets := []migrate.Set{{FS: good}, {Name: "outbox", FS: component}}
	for range 2 {
		if err := migrate.UpSets(ctxT(t), url, "crm", sets, quiet); err != nil {
			t.Fatal(err)
		}
	}
	var service, comp int
	query(t, url, "SELECT count(*) FROM crm."+migrate.VersionTable+" WHERE version_id > 0", &service)
	query(t, url, "SELECT count(*) FROM crm.outbox_"+migrate.VersionTable+" WHERE version_id > 0", &comp)
	if service != 3 || comp != 1 {
		t.Fatalf("applied service=%d component=%d, want 3 and 1", service, comp)
	}
	query(t, url, "SELECT count(*) FROM crm.component_things", &comp)
}
