package server_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/service"
)

// BenchmarkImportLeads streams fresh leads through ImportLeads over gRPC
// into a real PostgreSQL and, in the same run and database, COPYs the same
// rows twice: into a plain table with the leads columns and no index or
// constraint (the floor nothing could beat), and into a table like leads,
// with its indexes and checks (what merely holding the rows costs). It
// reports the three rates and the import's time over each COPY's:
//
//	go test -run '^$' -bench ImportLeads -benchtime 5x ./services/ingestion/internal/server/
//
// leads/s is the import; copy-rows/s and copy-indexed-rows/s the COPYs;
// import/copy and import/copy-indexed how many times longer the import took.
func BenchmarkImportLeads(b *testing.B) {
	const rows = 20_000
	service.TuneGC() // as the ingestion binary runs
	f := newFixture(b)
	ctx := b.Context()
	if _, err := f.pool.Exec(ctx, `
CREATE TABLE copy_target (LIKE leads INCLUDING DEFAULTS);
CREATE TABLE copy_indexed (LIKE leads INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	copyColumns := []string{"id", "workspace_id", "email", "first_name", "last_name", "company", "title",
		"country", "source", "company_domain", "create_time", "update_time"}
	copyInto := func(table string, copyRows [][]any) time.Duration {
		start := time.Now()
		copied, err := f.pool.CopyFrom(ctx, pgx.Identifier{table}, copyColumns, pgx.CopyFromRows(copyRows))
		if err != nil {
			b.Fatal(err)
		}
		if copied != rows {
			b.Fatalf("copied %d of %d into %s", copied, rows, table)
		}
		return time.Since(start)
	}
	var importTime, copyTime, copyIndexedTime time.Duration
	total := 0
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		leads := make([]*ingestionv1.Lead, rows)
		copyRows := make([][]any, rows)
		now := time.Now()
		for i := range leads {
			domain := fmt.Sprintf("company%d.example", i%500)
			l := &ingestionv1.Lead{
				Email: fmt.Sprintf("lead%d.%d@%s", n, i, domain), FirstName: "Bench", LastName: "Mark",
				Company: fmt.Sprintf("Company %d", i%500), Title: "Engineer", Country: "DE", Source: "bench",
			}
			leads[i] = l
			copyRows[i] = []any{
				leadID(n, i), "acme", l.Email, l.FirstName, l.LastName,
				l.Company, l.Title, l.Country, l.Source, domain, now, now,
			}
		}
		b.StartTimer()

		start := time.Now()
		stream, err := f.client.ImportLeads(f.acme)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range leads {
			if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Row{Row: &ingestionv1.ImportRow{Lead: l}}}); err != nil {
				b.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			b.Fatal(err)
		}
		importTime += time.Since(start)
		if resp.GetCreated() != int64(rows) {
			b.Fatalf("created %d of %d", resp.GetCreated(), rows)
		}

		copyTime += copyInto("copy_target", copyRows)
		copyIndexedTime += copyInto("copy_indexed", copyRows)
		total += rows
	}
	b.ReportMetric(float64(total)/importTime.Seconds(), "leads/s")
	b.ReportMetric(float64(total)/copyTime.Seconds(), "copy-rows/s")
	b.ReportMetric(float64(total)/copyIndexedTime.Seconds(), "copy-indexed-rows/s")
	b.ReportMetric(importTime.Seconds()/copyTime.Seconds(), "import/copy")
	b.ReportMetric(importTime.Seconds()/copyIndexedTime.Seconds(), "import/copy-indexed")
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
