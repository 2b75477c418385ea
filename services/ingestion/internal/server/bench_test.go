package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/service"
)

// BenchmarkImportLeads streams fresh leads through ImportLeads over gRPC
// into a real PostgreSQL and measures, in the same run and database, three
// raw COPYs to compare it with:
//
//   - copy: the same rows into a plain table with the leads columns and no
//     index or constraint, the floor nothing could beat;
//   - copy-indexed: the same rows into a table like leads, with its indexes
//     and checks, what merely holding the leads costs;
//   - copy-stored: every row the import stored (the leads, any history
//     entries and the outbox bundles of their events), exported after the
//     import and COPYed into tables like the real ones: what storing the
//     import's result costs without any of the work of deciding it.
//
// It reports leads/s and, for each baseline, its rows/s and how many times
// longer the import took (import/copy, import/copy-indexed,
// import/copy-stored), and the CPU time per lead the import took in this
// process (server and client) and in PostgreSQL, and per row copy-indexed
// took in each:
//
//	go test -run '^$' -bench ImportLeads -benchtime 5x ./services/ingestion/internal/server/
func BenchmarkImportLeads(b *testing.B) {
	const rows = 20_000
	service.TuneGC() // as the ingestion binary runs
	f := newFixture(b)
	ctx := b.Context()
	if _, err := f.pool.Exec(ctx, `
CREATE TABLE copy_target (LIKE leads INCLUDING DEFAULTS);
CREATE TABLE copy_indexed (LIKE leads INCLUDING ALL);
CREATE TABLE stored_leads (LIKE leads INCLUDING ALL);
CREATE TABLE stored_changes (LIKE lead_changes INCLUDING ALL);
CREATE TABLE stored_outbox (LIKE outbox INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	pg := conn.Conn().PgConn()

	copyColumns := []string{"id", "workspace_id", "email", "first_name", "last_name", "company", "title",
		"country", "source", "company_domain", "create_time", "update_time"}
	copyInto := func(table string, copyRows [][]any) time.Duration {
		start := time.Now()
		copied, err := conn.CopyFrom(ctx, pgx.Identifier{table}, copyColumns, pgx.CopyFromRows(copyRows))
		if err != nil {
			b.Fatal(err)
		}
		if copied != rows {
			b.Fatalf("copied %d of %d into %s", copied, rows, table)
		}
		return time.Since(start)
	}
	// The stored rows of one iteration, by the email prefix of its leads.
	// Identity columns are left to the target tables, as the import leaves
	// them to the real ones.
	const (
		changeColumns = `workspace_id, lead_id, kind, source, changed_fields, change_time`
		outboxColumns = `event_id, workspace_id, event_type, event, attempts, next_attempt_time, last_error,
		                 create_time, dead_time, lead_id, subscribers, events, event_leads, event_count, shard`
		ofIteration = `SELECT id FROM leads WHERE email LIKE $$%[1]s%%$$`
	)
	stored := []struct{ export, load string }{
		{`SELECT * FROM leads WHERE email LIKE $$%[1]s%%$$`, `COPY stored_leads FROM STDIN (FORMAT binary)`},
		{`SELECT ` + changeColumns + ` FROM lead_changes WHERE lead_id IN (` + ofIteration + `)`,
			`COPY stored_changes (` + changeColumns + `) FROM STDIN (FORMAT binary)`},
		{`SELECT ` + outboxColumns + ` FROM outbox
		   WHERE lead_id IN (SELECT id::text FROM (` + ofIteration + `) l)
		      OR id > %[2]d`,
			`COPY stored_outbox (` + outboxColumns + `) FROM STDIN (FORMAT binary)`},
	}
	var outboxBefore int64 // the last outbox row before an iteration's import
	copyStored := func(prefix string) (time.Duration, int64) {
		dumps := make([]bytes.Buffer, len(stored))
		for i, s := range stored {
			q := fmt.Sprintf("COPY ("+s.export+") TO STDOUT (FORMAT binary)", prefix, outboxBefore)
			if _, err := pg.CopyTo(ctx, &dumps[i], q); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		var n int64
		for i, s := range stored {
			tag, err := pg.CopyFrom(ctx, &dumps[i], s.load)
			if err != nil {
				b.Fatal(err)
			}
			n += tag.RowsAffected()
		}
		return time.Since(start), n
	}

	var importTime, copyTime, copyIndexedTime, copyStoredTime, goCPU, pgCPU, copyGoCPU, copyPGCPU time.Duration
	var total, storedRows int64
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		leads := make([]*ingestionv1.Lead, rows)
		copyRows := make([][]any, rows)
		now := time.Now()
		prefix := fmt.Sprintf("lead%d.", n)
		for i := range leads {
			domain := fmt.Sprintf("company%d.example", i%500)
			l := &ingestionv1.Lead{
				Email: fmt.Sprintf("%s%d@%s", prefix, i, domain), FirstName: "Bench", LastName: "Mark",
				Company: fmt.Sprintf("Company %d", i%500), Title: "Engineer", Country: "DE", Source: "bench",
			}
			leads[i] = l
			copyRows[i] = []any{
				leadID(n, i), "acme", l.Email, l.FirstName, l.LastName,
				l.Company, l.Title, l.Country, l.Source, domain, now, now,
			}
		}
		b.StartTimer()

		outboxBefore = f.countWhere(b, `SELECT coalesce(max(id), 0) FROM outbox`)
		goBefore, pgBefore := cpuTimes()
		start := time.Now()
		resp := f.importAll(b, leads)
		importTime += time.Since(start)
		goAfter, pgAfter := cpuTimes()
		goCPU, pgCPU = goCPU+goAfter-goBefore, pgCPU+pgAfter-pgBefore
		if resp.GetCreated() != int64(rows) {
			b.Fatalf("created %d of %d", resp.GetCreated(), rows)
		}

		copyTime += copyInto("copy_target", copyRows)
		goBefore, pgBefore = cpuTimes()
		copyIndexedTime += copyInto("copy_indexed", copyRows)
		goAfter, pgAfter = cpuTimes()
		copyGoCPU, copyPGCPU = copyGoCPU+goAfter-goBefore, copyPGCPU+pgAfter-pgBefore
		d, stored := copyStored(prefix)
		if events := f.countWhere(b, `SELECT sum(event_count) FROM outbox WHERE id > $1`, outboxBefore); events != rows {
			b.Fatalf("the import's bundles hold %d events, want one per lead", events)
		}
		if stored <= rows {
			b.Fatalf("the import stored %d rows, want a lead each and its events' bundles", stored)
		}
		copyStoredTime += d
		storedRows += stored
		total += rows
	}
	b.ReportMetric(float64(total)/importTime.Seconds(), "leads/s")
	b.ReportMetric(float64(total)/copyTime.Seconds(), "copy-rows/s")
	b.ReportMetric(float64(total)/copyIndexedTime.Seconds(), "copy-indexed-rows/s")
	b.ReportMetric(float64(storedRows)/copyStoredTime.Seconds(), "copy-stored-rows/s")
	b.ReportMetric(float64(goCPU.Microseconds())/float64(total), "go-cpu-µs/lead")
	b.ReportMetric(float64(pgCPU.Microseconds())/float64(total), "pg-cpu-µs/lead")
	b.ReportMetric(float64(copyGoCPU.Microseconds())/float64(total), "copy-indexed-go-cpu-µs/row")
	b.ReportMetric(float64(copyPGCPU.Microseconds())/float64(total), "copy-indexed-pg-cpu-µs/row")
	b.ReportMetric(importTime.Seconds()/copyTime.Seconds(), "import/copy")
	b.ReportMetric(importTime.Seconds()/copyIndexedTime.Seconds(), "import/copy-indexed")
	b.ReportMetric(importTime.Seconds()/copyStoredTime.Seconds(), "import/copy-stored")
}

// BenchmarkReimportLeads streams the same 20,000 leads through ImportLeads
// again and again, each time with a new title: every row updates its lead
// and writes its history entry and event.
//
//	go test -run '^$' -bench ReimportLeads -benchtime 5x ./services/ingestion/internal/server/
func BenchmarkReimportLeads(b *testing.B) {
	const rows = 20_000
	service.TuneGC() // as the ingestion binary runs
	f := newFixture(b)
	leads := make([]*ingestionv1.Lead, rows)
	for i := range leads {
		leads[i] = &ingestionv1.Lead{
			Email: fmt.Sprintf("lead%d@company%d.example", i, i%500), FirstName: "Bench", LastName: "Mark",
			Company: fmt.Sprintf("Company %d", i%500), Country: "DE", Source: "bench",
		}
	}
	f.importAll(b, leads)
	var importTime time.Duration
	total := 0
	for n := 0; b.Loop(); n++ {
		for _, l := range leads {
			l.Title = fmt.Sprintf("Engineer %d", n)
		}
		start := time.Now()
		resp := f.importAll(b, leads)
		importTime += time.Since(start)
		if resp.GetUpdated() != int64(rows) {
			b.Fatalf("updated %d of %d", resp.GetUpdated(), rows)
		}
		total += rows
	}
	b.ReportMetric(float64(total)/importTime.Seconds(), "leads/s")
}

// countWhere runs a query counting something.
func (f fixture) countWhere(b *testing.B, q string, args ...any) int64 {
	b.Helper()
	var n int64
	if err := f.pool.QueryRow(b.Context(), q, args...).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// importAll streams leads through one ImportLeads call, 500 rows to a
// message as the gateway sends a CSV.
func (f fixture) importAll(b *testing.B, leads []*ingestionv1.Lead) *ingestionv1.ImportLeadsResponse {
	b.Helper()
	stream, err := f.client.ImportLeads(f.acme)
	if err != nil {
		b.Fatal(err)
	}
	for chunk := range slices.Chunk(leads, 500) {
		rows := &ingestionv1.ImportRows{Rows: make([]*ingestionv1.ImportRow, len(chunk))}
		for i, l := range chunk {
			rows.Rows[i] = &ingestionv1.ImportRow{Lead: l}
		}
		if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Rows{Rows: rows}}); err != nil {
			b.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

// leadID is a distinct UUID per iteration and row, as bytes: pgx encodes
// those in binary, while a string would first fail to encode (formatting an
// error) and slow the baseline down.
func leadID(n, i int) [16]byte {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], uint64(n))
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	return id
}

// cpuTimes is the CPU time used so far by this process (the server and the
// client of the import) and by every PostgreSQL process, from /proc: where
// that is missing, both are zero.
func cpuTimes() (goCPU, pgCPU time.Duration) {
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// "pid (comm) state ..." with utime and stime the 14th and 15th fields.
		stat := string(raw)
		open, closing := strings.Index(stat, "("), strings.LastIndex(stat, ")")
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(stat[closing+1:])
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.Atoi(fields[11])
		stime, _ := strconv.Atoi(fields[12])
		used := time.Duration(utime+stime) * tick
		switch {
		case pid == os.Getpid():
			goCPU += used
		case stat[open+1:closing] == "postgres":
			pgCPU += used
		}
	}
	return goCPU, pgCPU
}
