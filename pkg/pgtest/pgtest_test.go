package pgtest

import (
	"context"
	"github.com/leadflow/leadflow/pkg/migrate"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/peterldowns/pgtestdb"
)

func TestMain(m *testing.M) { Main(m) }

// migrations is pkg/migrate's example set.
var migrations = os.DirFS("../migrate/testdata/migrations")

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestNewPoolGivesIsolatedMigratedDatabases(t *testing.T) {
	dbs := make(chan string, 2)
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"first", "second"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				pool := NewPool(t, "crm", migrations)
				ctx := ctxT(t)
				var db, searchPath string
				var applied int
				err := pool.QueryRow(ctx,
					"SELECT current_database(), current_setting('search_path'), (SELECT count(*) FROM applied)",
				).Scan(&db, &searchPath, &applied)
				if err != nil {
					t.Fatal(err)
				}
				if searchPath != "crm" || applied != 3 {
					t.Fatalf("search_path = %q, applied = %d; want crm, 3", searchPath, applied)
				}
				// Each test writes the same unique email: it would clash in a shared database.
				if _, err := pool.Exec(ctx, "INSERT INTO leads (email) VALUES ('same@example.com')"); err != nil {
					t.Fatal(err)
				}
				dbs <- db
			})
		}
	})
	first, second := <-dbs, <-dbs
	if first == second {
		t.Fatalf("both tests got database %q", first)
	}

	// The group's cleanups have run, so both passing tests' databases are gone.
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, getServer(t).conf.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", []string{first, second}).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d test databases were not dropped", left)
	}
}

func TestMigratorHash(t *testing.T) {
	base := fstest.MapFS{"00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (id int);\n")}}
	edited := fstest.MapFS{"00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (id bigint);\n")}}
	added := fstest.MapFS{
		"00001_a.sql": base["00001_a.sql"],
		"00002_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b (id int);\n")},
	}
	hash := func(schema string, fsys fstest.MapFS) string {
		h, err := (&migrator{schema: schema, sets: []migrate.Set{{FS: fsys}}}).Hash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	ref := hash("crm", base)
	tests := []struct {
		name string
		got  string
		same bool
	}{
		{name: "same input", got: hash("crm", base), same: true},
		{name: "other schema", got: hash("sales", base)},
		{name: "edited file", got: hash("crm", edited)},
		{name: "added file", got: hash("crm", added)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.got == ref) != tt.same {
				t.Fatalf("hash %s vs %s: same = %v, want %v", tt.got, ref, tt.got == ref, tt.same)
			}
		})
	}
}

func TestConfigFromURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		want    pgtestdb.Config
		wantErr string
	}{
		{
			name: "full",
			url:  "postgres://admin:pw@db.internal:6543/main?sslmode=require",
			want: pgtestdb.Config{DriverName: "pgx", Host: "db.internal", Port: "6543", User: "admin", Password: "pw", Database: "main", Options: "sslmode=require"},
		},
		{
			name: "defaults",
			url:  "postgresql://postgres@127.0.0.1",
			want: pgtestdb.Config{DriverName: "pgx", Host: "127.0.0.1", Port: "5432", User: "postgres", Database: "postgres"},
		},
		{
			name: "escaped password and ipv6",
			url:  "postgres://admin:p%40ss%3Aw%2Fd@[::1]:5432/postgres",
			want: pgtestdb.Config{DriverName: "pgx", Host: "[::1]", Port: "5432", User: "admin", Password: "p%40ss%3Aw%2Fd", Database: "postgres"},
		},
		{name: "not postgres", url: "mysql://root@localhost/x", wantErr: "postgres://"},
		{name: "no user", url: "postgres://127.0.0.1/x", wantErr: "no user"},
		{name: "key value dsn", url: "host=localhost user=postgres", wantErr: "postgres://"},
		{name: "garbage keeps password out", url: "postgres://u:secret@%zz/x", wantErr: "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := configFromURL(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			// pgtestdb pastes the fields into a URL, which must round-trip.
			if _, err := pgx.ParseConfig(got.URL()); err != nil {
				t.Fatalf("URL() %q does not parse: %v", got.URL(), err)
			}
		})
	}
}

// TestExternalServerFromEnv runs this test binary again with
// LEADFLOW_TEST_DATABASE_URL pointing at this process's server: the child
// must use it rather than start a cluster of its own.
func TestExternalServerFromEnv(t *testing.T) {
	const childEnv = "PGTEST_CHILD"
	if os.Getenv(childEnv) == "1" {
		pool := NewPool(t, "crm", migrations)
		var n int
		if err := pool.QueryRow(ctxT(t), "SELECT count(*) FROM applied").Scan(&n); err != nil || n != 3 {
			t.Fatalf("applied = %d, %v", n, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if shared.cluster != nil {
			t.Fatal("started a local cluster despite " + EnvDatabaseURL)
		}
		return
	}

	adminURL := getServer(t).conf.URL()
	cmd := exec.CommandContext(ctxT(t), os.Args[0], "-test.run=^TestExternalServerFromEnv$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1", EnvDatabaseURL+"="+adminURL)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestExternalServerFromEnv") {
		t.Fatalf("child test: %v\n%s", err, out)
	}
}
