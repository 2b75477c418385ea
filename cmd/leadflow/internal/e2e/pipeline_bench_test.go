package e2e_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/cmd/leadflow/internal/suitetest"
)

// BenchmarkImportThroughThePipeline runs the whole suite as `make run` does
// and, per iteration, uploads a CSV of fresh leads through the gateway, then
// waits until no service's outbox holds an event: scoring, lifecycle and
// handoff have handled everything the import caused, and everything that
// caused in turn. It reports the upload's leads/s and the whole pipeline's:
//
//	go test -run '^$' -bench ImportThroughThePipeline -benchtime 2x ./cmd/leadflow/internal/e2e/
//
// LEADFLOW_BENCH_LEADS sets the leads per iteration (default 20,000).
func BenchmarkImportThroughThePipeline(b *testing.B) {
	leads := 20_000
	if v, err := strconv.Atoi(os.Getenv("LEADFLOW_BENCH_LEADS")); err == nil && v > 0 {
		leads = v
	}
	s := suitetest.Start(b, suitetest.DataDir(b))
	services := s.MetricsPorts[:len(s.MetricsPorts)-1] // the last is the gateway's
	var importTime, pipelineTime time.Duration
	total := 0
	for n := 0; b.Loop(); n++ {
		var csv strings.Builder
		csv.WriteString("email,first_name,last_name,company,title,country,industry,employee_count\n")
		// One lead in five has a title and size the demo model likes, so a
		// share of them qualify and go on to lifecycle and handoff.
		titles := []string{"VP Marketing", "Engineer", "Intern", "Analyst", "Student"}
		for i := range leads {
			fmt.Fprintf(&csv, "bench%d.%d@company%d.example,Bench,Mark,Company %d,%s,DE,Software,%d\n",
				n, i, i%2000, i%2000, titles[i%len(titles)], 10+i%5000)
		}
		start := time.Now()
		req, err := http.NewRequest(http.MethodPost, s.Gateway+"/v1/leads:import", strings.NewReader(csv.String()))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.Key)
		req.Header.Set("Content-Type", "text/csv")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("import = %d", resp.StatusCode)
		}
		importTime += time.Since(start)
		deadline := time.Now().Add(15 * time.Minute)
		for backlog(b, services) > 0 {
			if time.Now().After(deadline) {
				b.Fatalf("events still waiting 15 minutes after the import")
			}
			// Polling a gauge: nothing to wait on. Each scrape counts the
			// outboxes, so it is not done more often than it needs to be.
			time.Sleep(time.Second)
		}
		pipelineTime += time.Since(start)
		total += leads
	}
	b.ReportMetric(float64(total)/importTime.Seconds(), "imported-leads/s")
	b.ReportMetric(float64(total)/pipelineTime.Seconds(), "pipeline-leads/s")
}

// backlog sums leadflow_outbox_backlog over the services' /metrics.
func backlog(b *testing.B, ports []int) float64 {
	b.Helper()
	var sum float64
	for _, port := range ports {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "leadflow_outbox_backlog{") {
				continue
			}
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				b.Fatalf("metrics of port %d: %q", port, line)
			}
			sum += v
		}
		resp.Body.Close()
	}
	return sum
}
