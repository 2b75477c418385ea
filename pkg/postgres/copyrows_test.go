package postgres_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/pkg/postgres"
)

var copyMigrations = fstest.MapFS{
	"00001_init.sql": {Data: []byte(`
-- +goose Up
CREATE TABLE things (
    id       uuid PRIMARY KEY,
    name     text NOT NULL,
    size     integer NOT NULL,
    version  bigint NOT NULL,
    active   boolean NOT NULL,
    seen     timestamptz NOT NULL,
    attrs    jsonb NOT NULL,
    tags     text[] NOT NULL,
    owner_id uuid,
    small    smallint NOT NULL,
    blobs    bytea[] NOT NULL
);
`)},
}

type thing struct {
	ID      [16]byte
	Name    string
	Size    int32
	Version int64
	Active  bool
	Seen    time.Time
	Attrs   map[string]string
	Tags    []string
	Owner   *[16]byte
	Small   int16
	Blobs   [][]byte

	failBlob bool // the blobs' encoding fails
}

var thingColumns = []string{"id", "name", "size", "version", "active", "seen", "attrs", "tags", "owner_id", "small", "blobs"}

func (th thing) appendTo(t *testing.T, r *postgres.CopyRows) {
	attrs, err := json.Marshal(th.Attrs)
	if err != nil {
		t.Fatal(err)
	}
	r.Row(len(thingColumns))
	r.UUID(th.ID, false)
	r.Text(th.Name)
	r.Int4(th.Size)
	r.Int8(th.Version)
	r.Bool(th.Active)
	r.Timestamptz(th.Seen)
	r.JSONB(attrs)
	r.TextArray(th.Tags)
	var owner [16]byte
	if th.Owner != nil {
		owner = *th.Owner
	}
	r.UUID(owner, true)
	r.Int2(th.Small)
	r.Array(pgtype.ByteaOID, len(th.Blobs), func(i int, b []byte) ([]byte, error) {
		if th.failBlob {
			return b, errors.New("no encoding")
		}
		return append(b, th.Blobs[i]...), nil
	})
}

// TestCopyRows stores every kind of value CopyRows encodes, edge cases
// included, and reads each back through pgx as it was given.
func TestCopyRows(t *testing.T) {
	pool := pgtest.NewPool(t, "copyrowstest", copyMigrations)
	owner := [16]byte{0xff, 1, 2, 3}
	// Times before PostgreSQL's epoch (2000) count back from it, and a time
	// centuries away is beyond what a time.Duration spans.
	before := time.Date(1969, 7, 20, 20, 17, 40, 123456000, time.UTC)
	far := time.Date(2400, 2, 29, 12, 0, 0, 1000, time.FixedZone("UTC+5", 5*3600))
	want := []thing{
		{ID: [16]byte{1}, Name: "Zoë Ünïcode 名前", Size: -7, Version: 1 << 40, Active: true,
			Seen: time.Date(2026, 12, 4, 21, 0, 0, 999999000, time.UTC), Attrs: map[string]string{"plan": "pro", "q": `"x"`},
			Tags: []string{"email", "first_name", ""}, Owner: &owner, Small: -32768,
			Blobs: [][]byte{{0, 1, 2}, {}, []byte("PGCOPY\n\377")}},
		{ID: [16]byte{2}, Name: "", Size: 0, Version: -1, Active: false, Seen: before,
			Attrs: map[string]string{}, Tags: nil},
		{ID: [16]byte{2, 1}, Name: "far", Seen: far, Attrs: map[string]string{}, Tags: []string{}},
	}
	for i := range 100 { // enough rows for PostgreSQL to buffer and flush them in parts
		want = append(want, thing{ID: [16]byte{3, byte(i)}, Name: fmt.Sprint("thing ", i), Size: int32(i),
			Seen: before.Add(time.Duration(i) * time.Hour), Attrs: map[string]string{}, Tags: []string{fmt.Sprint(i)}})
	}
	var rows postgres.CopyRows
	rows.Grow(64 * len(want))
	for _, th := range want {
		th.appendTo(t, &rows)
	}
	var stored int64
	err := postgres.InTx(ctxT(t), pool, func(tx pgx.Tx) error {
		var err error
		stored, err = postgres.CopyFrom(ctxT(t), tx, "things", thingColumns, &rows)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if stored != int64(len(want)) || rows.Rows() != stored {
		t.Fatalf("stored %d rows of %d (%d built)", stored, len(want), rows.Rows())
	}

	got, err := pool.Query(ctxT(t), `SELECT id, name, size, version, active, seen, attrs, tags, owner_id, small, blobs FROM things ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	read, err := pgx.CollectRows(got, func(row pgx.CollectableRow) (thing, error) {
		var th thing
		err := row.Scan(&th.ID, &th.Name, &th.Size, &th.Version, &th.Active, &th.Seen, &th.Attrs, &th.Tags, &th.Owner, &th.Small, &th.Blobs)
		return th, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != len(want) {
		t.Fatalf("read %d rows, want %d", len(read), len(want))
	}
	for i, w := range want {
		g := read[i]
		if w.Tags == nil {
			w.Tags = []string{}
		}
		if w.Blobs == nil {
			w.Blobs = [][]byte{}
		}
		same := g.ID == w.ID && g.Name == w.Name && g.Size == w.Size && g.Version == w.Version &&
			g.Active == w.Active && g.Seen.Equal(w.Seen) && fmt.Sprint(g.Attrs) == fmt.Sprint(w.Attrs) &&
			slices.Equal(g.Tags, w.Tags) && (g.Owner == nil) == (w.Owner == nil) && (g.Owner == nil || *g.Owner == *w.Owner) &&
			g.Small == w.Small && slices.EqualFunc(g.Blobs, w.Blobs, bytes.Equal)
		if !same {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

// TestCopyRowsRefusesMisshapenRows: a row with a value too few or too many
// would shift later values into the wrong columns, so nothing is stored.
func TestCopyRowsRefusesMisshapenRows(t *testing.T) {
	pool := pgtest.NewPool(t, "copyrowsshape", copyMigrations)
	good := thing{ID: [16]byte{9}, Name: "ok", Seen: time.Now(), Attrs: map[string]string{}}
	tests := map[string]func(r *postgres.CopyRows){
		"a value short": func(r *postgres.CopyRows) {
			good.appendTo(t, r)
			r.Row(len(thingColumns))
			r.UUID([16]byte{10}, false)
		},
		"a value over": func(r *postgres.CopyRows) {
			good.appendTo(t, r)
			r.Text("extra")
		},
		"rows of other widths": func(r *postgres.CopyRows) {
			good.appendTo(t, r)
			r.Row(1)
			r.UUID([16]byte{11}, false)
		},
		"an element that failed": func(r *postgres.CopyRows) {
			good.appendTo(t, r)
			bad := good
			bad.ID, bad.Blobs, bad.failBlob = [16]byte{13}, [][]byte{{1}}, true
			bad.appendTo(t, r)
		},
		"fewer columns than the COPY names": func(r *postgres.CopyRows) {
			r.Row(1)
			r.UUID([16]byte{12}, false)
		},
	}
	for name, build := range tests {
		t.Run(name, func(t *testing.T) {
			var rows postgres.CopyRows
			build(&rows)
			err := postgres.InTx(ctxT(t), pool, func(tx pgx.Tx) error {
				_, err := postgres.CopyFrom(ctxT(t), tx, "things", thingColumns, &rows)
				return err
			})
			if err == nil {
				t.Fatal("the COPY took misshapen rows")
			}
			var n int
			if err := pool.QueryRow(ctxT(t), `SELECT count(*) FROM things`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("%d rows stored", n)
			}
		})
	}
}
