package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// CopyRows builds rows in PostgreSQL's binary COPY format, value by value,
// for a bulk writer whose hot path is a COPY of many rows. pgx's CopyFrom
// takes each value as an interface and looks its encoding up by type, which
// costs a bulk import more than all of its own decisions; here a writer
// appends typed values straight to one buffer. Only the types bulk writers
// use are here. The format is documented with COPY ("Binary Format").
//
// A row starts with Row and then takes exactly one value per column, in
// the order the COPY names them; CopyFrom refuses rows that do not, as a
// value in the wrong place would land in the wrong column. The zero
// CopyRows is ready to use.
type CopyRows struct {
	buf     []byte
	columns int // values per row, set by the first row
	inRow   int // values appended to the current row
	rows    int64
	err     error // the first misshapen row or element that failed to encode
}

// copySignature starts a binary COPY stream, followed by a flags word and a
// header extension length, both zero.
const copySignature = "PGCOPY\n\377\r\n\x00"

// pgEpochMicros is where PostgreSQL's timestamps count from (2000-01-01
// UTC), in microseconds of Unix time.
const pgEpochMicros = 946_684_800 * 1_000_000

// Grow makes room for n more bytes of rows, for a writer that knows its
// rows' size roughly: appending then does not copy the buffer over.
func (r *CopyRows) Grow(n int) {
	if r.buf == nil {
		r.buf = make([]byte, 0, len(copySignature)+8+n)
		r.buf = append(r.buf, copySignature...)
		r.buf = binary.BigEndian.AppendUint64(r.buf, 0)
		return
	}
	r.buf = slices.Grow(r.buf, n)
}

// Row starts a row of columns values.
func (r *CopyRows) Row(columns int) {
	r.endRow()
	if r.buf == nil {
		r.Grow(0)
	}
	if r.rows == 0 {
		r.columns = columns
	} else if columns != r.columns && r.err == nil {
		r.err = fmt.Errorf("row %d has %d columns, the first had %d", r.rows+1, columns, r.columns)
	}
	r.buf = binary.BigEndian.AppendUint16(r.buf, uint16(columns))
	r.rows++
	r.inRow = 0
}

// Rows is how many rows were started.
func (r *CopyRows) Rows() int64 { return r.rows }

// endRow checks that the current row got a value per column.
func (r *CopyRows) endRow() {
	if r.rows > 0 && r.inRow != r.columns && r.err == nil {
		r.err = fmt.Errorf("row %d got %d values for %d columns", r.rows, r.inRow, r.columns)
	}
}

// value starts a value of n bytes.
func (r *CopyRows) value(n int) {
	r.inRow++
	r.buf = binary.BigEndian.AppendUint32(r.buf, uint32(n))
}

// Null appends SQL NULL.
func (r *CopyRows) Null() {
	r.inRow++
	r.buf = binary.BigEndian.AppendUint32(r.buf, math.MaxUint32) // -1
}

// Text appends a text value. It must be valid UTF-8 without NUL bytes, as
// PostgreSQL checks.
func (r *CopyRows) Text(s string) {
	r.value(len(s))
	r.buf = append(r.buf, s...)
}

// UUID appends a uuid, or NULL when id is all zeros and nullZero is set.
func (r *CopyRows) UUID(id [16]byte, nullZero bool) {
	if nullZero && id == [16]byte{} {
		r.Null()
		return
	}
	r.value(16)
	r.buf = append(r.buf, id[:]...)
}

// Int2 appends a smallint.
func (r *CopyRows) Int2(v int16) {
	r.value(2)
	r.buf = binary.BigEndian.AppendUint16(r.buf, uint16(v))
}

// Int4 appends an integer.
func (r *CopyRows) Int4(v int32) {
	r.value(4)
	r.buf = binary.BigEndian.AppendUint32(r.buf, uint32(v))
}

// Int8 appends a bigint.
func (r *CopyRows) Int8(v int64) {
	r.value(8)
	r.buf = binary.BigEndian.AppendUint64(r.buf, uint64(v))
}

// Bool appends a boolean.
func (r *CopyRows) Bool(v bool) {
	r.value(1)
	if v {
		r.buf = append(r.buf, 1)
	} else {
		r.buf = append(r.buf, 0)
	}
}

// Timestamptz appends t to the microsecond, as PostgreSQL keeps it.
func (r *CopyRows) Timestamptz(t time.Time) {
	r.Int8(t.Unix()*1_000_000 + int64(t.Nanosecond()/1000) - pgEpochMicros)
}

// JSONB appends a jsonb value from its JSON text.
func (r *CopyRows) JSONB(json []byte) {
	r.value(1 + len(json))
	r.buf = append(r.buf, 1) // jsonb's binary format version
	r.buf = append(r.buf, json...)
}

// TextArray appends a one-dimensional text[] without NULLs; an empty one
// when elems is empty.
func (r *CopyRows) TextArray(elems []string) {
	r.Array(pgtype.TextOID, len(elems), func(i int, b []byte) ([]byte, error) {
		return append(b, elems[i]...), nil
	})
}

// Array appends a one-dimensional array without NULLs of n elements of the
// type elemOID (pgtype's OIDs), appendElem appending each element in its
// binary format: a writer can encode elements straight into the rows, with
// no copy of its own. An error from appendElem ends the array, and CopyFrom
// returns it.
func (r *CopyRows) Array(elemOID uint32, n int, appendElem func(i int, b []byte) ([]byte, error)) {
	start := len(r.buf)
	r.value(0) // its size, set at the end
	if n == 0 {
		r.buf = binary.BigEndian.AppendUint32(r.buf, 0) // dimensions
		r.buf = binary.BigEndian.AppendUint32(r.buf, 0) // has NULLs
		r.buf = binary.BigEndian.AppendUint32(r.buf, elemOID)
	} else {
		r.buf = binary.BigEndian.AppendUint32(r.buf, 1) // dimensions
		r.buf = binary.BigEndian.AppendUint32(r.buf, 0) // has NULLs
		r.buf = binary.BigEndian.AppendUint32(r.buf, elemOID)
		r.buf = binary.BigEndian.AppendUint32(r.buf, uint32(n))
		r.buf = binary.BigEndian.AppendUint32(r.buf, 1) // lower bound
	}
	for i := range n {
		at := len(r.buf)
		b, err := appendElem(i, binary.BigEndian.AppendUint32(r.buf, 0))
		if err != nil {
			if r.err == nil {
				r.err = fmt.Errorf("row %d: %w", r.rows, err)
			}
			return
		}
		r.buf = b
		binary.BigEndian.PutUint32(r.buf[at:], uint32(len(r.buf)-at-4))
	}
	binary.BigEndian.PutUint32(r.buf[start:], uint32(len(r.buf)-start-4))
}

// CopyFrom loads rows into table's columns with one COPY in tx and returns
// how many rows it stored. table is resolved through the search_path.
func CopyFrom(ctx context.Context, tx pgx.Tx, table string, columns []string, rows *CopyRows) (int64, error) {
	if rows.rows == 0 {
		return 0, nil
	}
	rows.endRow()
	if rows.err == nil && rows.columns != len(columns) {
		rows.err = fmt.Errorf("rows of %d values for %d columns", rows.columns, len(columns))
	}
	if rows.err != nil {
		return 0, fmt.Errorf("copy into %s: %w", table, rows.err)
	}
	var q strings.Builder
	q.WriteString("COPY ")
	writeTarget(&q, table, columns)
	q.WriteString(" FROM STDIN (FORMAT binary)")
	stream := binary.BigEndian.AppendUint16(rows.buf, math.MaxUint16) // the trailer, -1
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(stream), q.String())
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
