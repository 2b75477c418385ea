package server_test

import (
	"fmt"
	"testing"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
)

// BenchmarkImportLeads streams fresh leads through ImportLeads over gRPC
// into a real PostgreSQL and reports leads per second:
//
//	go test -run '^$' -bench ImportLeads -benchtime 5x ./services/ingestion/internal/server/
func BenchmarkImportLeads(b *testing.B) {
	const rows = 10_000
	f := newFixture(b)
	total := 0
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		stream, err := f.client.ImportLeads(f.acme)
		if err != nil {
			b.Fatal(err)
		}
		for i := range rows {
			if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Row{Row: &ingestionv1.ImportRow{
				Lead: &ingestionv1.Lead{
					Email: fmt.Sprintf("lead%d.%d@company%d.example", n, i, i%500), FirstName: "Bench", LastName: "Mark",
					Company: fmt.Sprintf("Company %d", i%500), Title: "Engineer", Country: "DE", Source: "bench",
				},
			}}}); err != nil {
				b.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			b.Fatal(err)
		}
		if resp.GetCreated() != int64(rows) {
			b.Fatalf("created %d of %d", resp.GetCreated(), rows)
		}
		total += rows
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "leads/s")
}
