package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/migrate"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/pgtest"
	"github.com/leadflow/leadflow/services/scoring/internal/scoring"
	"github.com/leadflow/leadflow/services/scoring/internal/server"
	"github.com/leadflow/leadflow/services/scoring/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// BenchmarkRescore measures a rescore job over leads with ten activities
// each under the default model, database included: every lead is locked,
// read, scored, written back, and its LeadScored event recorded.
func BenchmarkRescore(b *testing.B) {
	const leads = 5000
	ctx := context.Background()
	pool := pgtest.NewPool(b, store.Schema, store.Migrations(), migrate.Set{Name: "outbox", FS: outbox.Migrations()})
	st := store.New(pool, outbox.NewPublisher("scoring", store.Schema, server.Routes))
	svc := scoring.NewService(st)
	if _, err := pool.Exec(ctx, `
INSERT INTO leads (workspace_id, id, facts, create_time)
SELECT 'acme', 'lead-' || lpad(i::text, 8, '0'),
       jsonb_build_object('industry', CASE WHEN i % 2 = 0 THEN 'software' ELSE 'retail' END,
                          'employee_count', i % 3000, 'seniority', 'manager'),
       now()
  FROM generate_series(1, $1) AS i`, leads); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
INSERT INTO activities (workspace_id, id, lead_id, type, url, occur_time)
SELECT 'acme', 'act-' || i || '-' || j, 'lead-' || lpad(i::text, 8, '0'), 1 + (j % 4),
       CASE WHEN j % 3 = 0 THEN 'https://acme.com/pricing' ELSE 'https://acme.com/blog/' || j END,
       now() - j * interval '1 day'
  FROM generate_series(1, $1) AS i, generate_series(1, 10) AS j`, leads); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		// Each round publishes a new model so every lead is rescored.
		rules := scoring.DefaultRules()
		rules.MQLThreshold += int64(i + 1)
		m, err := svc.CreateModel(ctx, scoring.Model{Workspace: "acme", Rules: rules}, "", false)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := svc.PublishModel(ctx, "acme", m.ID, m.Etag); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for {
			worked, err := svc.RescoreBatch(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if !worked {
				break
			}
		}
		perLead := time.Since(start) / leads
		b.ReportMetric(float64(perLead.Nanoseconds()), "ns/lead")
		b.ReportMetric((perLead * 1_000_000).Minutes(), "min/1M-leads")
	}
}
