// Package e2e drives the whole suite, as `make run` starts it, through its
// public REST API and a real browser: a lead's path from a form post to a
// sales accept, the trace that follows it, and the web UI.
package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/cmd/leadflow/internal/suitetest"
)

const (
	email     = "ada.lovelace@analytical-engines.example"
	firstName = "Augusta"
	lastName  = "Lovelace"
)

// getJSON GETs path and decodes the body into out, reporting the status.
func getJSON(t *testing.T, s *suitetest.Suite, path string, out any) int {
	t.Helper()
	code, body := s.Do(t, http.MethodGet, path, "")
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return code
}

// submitDemoForm posts the demo form as a browser would, from an allowed
// origin, and expects the redirect to the thank-you page.
func submitDemoForm(t *testing.T, s *suitetest.Suite) {
	t.Helper()
	form := url.Values{
		"email": {email}, "first_name": {firstName}, "last_name": {lastName},
		"company": {"Analytical Engines"}, "country": {"United Kingdom"}, "title": {"VP Engineering"},
		"consent": {"yes"}, "utm_source": {"newsletter"},
	}
	req, _ := http.NewRequest(http.MethodPost, s.Gateway+"/v1/forms/demo:submit", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", strings.Replace(s.Gateway, "127.0.0.1", "localhost", 1))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "/ui/thanks") {
		t.Fatalf("form post = %d Location=%q, want 303 to /ui/thanks", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// findLead waits for the lead with email to be listed and returns its name.
func findLead(t *testing.T, s *suitetest.Suite) string {
	t.Helper()
	var name string
	suitetest.Eventually(t, 30*time.Second, "the lead to be listed", func() bool {
		var list struct {
			Leads []struct{ Name, Email string } `json:"leads"`
		}
		getJSON(t, s, "/v1/leads", &list)
		for _, l := range list.Leads {
			if l.Email == email {
				name = l.Name
			}
		}
		return name != ""
	})
	return name
}

func stageOf(t *testing.T, s *suitetest.Suite, lead string) string {
	var resp struct {
		Lifecycle struct{ Stage string } `json:"lifecycle"`
	}
	getJSON(t, s, "/v1/"+lead+"/lifecycle", &resp)
	return resp.Lifecycle.Stage
}

type handoff struct {
	Name, State, Owner, Etag string
}

func handoffOf(t *testing.T, s *suitetest.Suite, lead string) handoff {
	var resp struct{ Handoff handoff }
	getJSON(t, s, "/v1/"+lead+"/handoff", &resp)
	return resp.Handoff
}

// TestLeadPathAcrossServices follows one lead through every service: the
// demo form (a hand-raiser form) captures it, scoring qualifies it whatever
// its score, lifecycle makes it an MQL, handoff assigns it to the demo rep,
// and the rep's accept makes it sales-accepted. The spans every service
// exports on the way must form one trace with correct parents, the later
// accept must link back to it, and no span may carry the person's data.
func TestLeadPathAcrossServices(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole suite; skipped with -short")
	}
	coll, addr := startCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
	s := suitetest.Start(t, suitetest.DataDir(t))

	submitDemoForm(t, s)
	lead := findLead(t, s)

	suitetest.Eventually(t, 60*time.Second, "the lead to become an MQL", func() bool {
		return stageOf(t, s, lead) == "STAGE_MQL"
	})
	var h handoff
	suitetest.Eventually(t, 60*time.Second, "the lead to be assigned", func() bool {
		h = handoffOf(t, s, lead)
		return h.State == "STATE_ASSIGNED"
	})
	if h.Owner != "owners/demo-rep" {
		t.Fatalf("assigned to %q, want owners/demo-rep", h.Owner)
	}
	if code, body := s.Do(t, http.MethodPost, "/v1/"+h.Name+":accept", `{"etag":"`+h.Etag+`"}`); code != 200 {
		t.Fatalf("accept = %d %s", code, body)
	}
	suitetest.Eventually(t, 60*time.Second, "the lead to become sales-accepted", func() bool {
		return stageOf(t, s, lead) == "STAGE_SAL"
	})
	var score struct {
		Score struct{ TotalScore string } `json:"score"`
	}
	if code := getJSON(t, s, "/v1/"+lead+"/score", &score); code != 200 {
		t.Fatalf("GET score = %d", code)
	}

	t.Run("one trace from capture to assignment", func(t *testing.T) {
		var capture string
		suitetest.Eventually(t, 30*time.Second, "the capture's spans from every service", func() bool {
			spans := coll.all()
			for _, sp := range spans {
				if sp.Service == "ingestion" && strings.HasSuffix(sp.Name, "/SubmitForm") {
					capture = sp.TraceID
				}
			}
			return capture != "" && servicesIn(spans, capture) == "gateway,handoff,ingestion,lifecycle,scoring"
		})
		// A span is exported when it ends, so a child can arrive before
		// its parent: give the parents time before naming any missing.
		suitetest.Eventually(t, 30*time.Second, "every span's parent to be exported", func() bool {
			return len(orphans(coll.all(), capture)) == 0
		})
		checkParents(t, coll.all(), capture)
	})

	t.Run("a later accept links back", func(t *testing.T) {
		var capture string
		for _, sp := range coll.all() {
			if sp.Service == "ingestion" && strings.HasSuffix(sp.Name, "/SubmitForm") {
				capture = sp.TraceID
			}
		}
		suitetest.Eventually(t, 30*time.Second, "the accept span with a link to the capture", func() bool {
			for _, sp := range coll.all() {
				if sp.Service == "handoff" && strings.HasSuffix(sp.Name, "/AcceptHandoff") && slices.Contains(sp.Links, capture) {
					return strings.Contains(sp.Attributes["leadflow.lead_id"], strings.TrimPrefix(lead, "leads/")) &&
						sp.Attributes["leadflow.workspace"] != ""
				}
			}
			return false
		})
	})

	t.Run("metrics are scraped from every process", func(t *testing.T) {
		want := map[int][]string{ // by port index: identity, ingestion, scoring, lifecycle, handoff, gateway
			1: {"rpc_server_call_duration_seconds", "leadflow_outbox_backlog", "leadflow_outbox_lag"},
			3: {"leadflow_lifecycle_leads{", `stage="`},
			4: {"rpc_server_call_duration_seconds", "leadflow_outbox_backlog"},
			5: {"http_server_request_duration"},
		}
		for i, port := range s.MetricsPorts {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, name := range want[i] {
				if !strings.Contains(string(body), name) {
					t.Errorf("metrics of process %d lack %s", i, name)
				}
			}
			if strings.Contains(string(body), email) || strings.Contains(string(body), lastName) {
				t.Errorf("metrics of process %d carry personal data", i)
			}
		}
	})

	t.Run("no personal data in any span", func(t *testing.T) {
		for _, sp := range coll.all() {
			for k, v := range sp.Attributes {
				for _, pii := range []string{email, firstName, lastName, "ada.lovelace"} {
					if strings.Contains(v, pii) || strings.Contains(sp.Name, pii) {
						t.Errorf("%s span %q attribute %s carries personal data: %s", sp.Service, sp.Name, k, v)
					}
				}
				if k == "client.address" || k == "network.peer.address" || k == "user_agent.original" {
					t.Errorf("%s span %q has %s", sp.Service, sp.Name, k)
				}
			}
		}
	})

	t.Run("journey lists the key steps with their traces", func(t *testing.T) {
		var resp struct {
			Journey struct {
				Steps []struct{ Kind, TraceID string } `json:"steps"`
			} `json:"journey"`
		}
		if code := getJSON(t, s, "/v1/"+lead+"/journey", &resp); code != 200 {
			t.Fatalf("GET journey = %d", code)
		}
		var kinds []string
		for _, st := range resp.Journey.Steps {
			kinds = append(kinds, st.Kind)
			if st.TraceID == "" {
				t.Errorf("journey step %s has no trace id", st.Kind)
			}
		}
		for _, want := range []string{"KIND_CAPTURED", "KIND_QUALIFIED", "KIND_ASSIGNED", "KIND_ACCEPTED"} {
			if !slices.Contains(kinds, want) {
				t.Errorf("journey %v lacks %s", kinds, want)
			}
		}
	})
	t.Run("JSON and HTML posts of one person make one lead, and a reject recycles it", func(t *testing.T) {
		const second = "charles.babbage@difference-engine.example"
		code, body := s.Do(t, http.MethodPost, "/v1/forms/demo:submit", `{"fields":{"email":"  Charles.Babbage@Difference-Engine.example ","first_name":"Charles"}}`)
		if code != 200 {
			t.Fatalf("JSON form post = %d %s", code, body)
		}
		resp, err := http.PostForm(s.Gateway+"/v1/forms/demo:submit", url.Values{"email": {second}, "title": {"Inventor"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var leads []string
		suitetest.Eventually(t, 30*time.Second, "the second person's lead", func() bool {
			var list struct {
				Leads []struct{ Name, Email, Title string } `json:"leads"`
			}
			getJSON(t, s, "/v1/leads?pageSize=100", &list)
			leads = leads[:0]
			for _, l := range list.Leads {
				if l.Email == second && l.Title == "Inventor" {
					leads = append(leads, l.Name)
				}
			}
			return len(leads) > 0
		})
		if len(leads) != 1 {
			t.Fatalf("%d leads for one person, want 1", len(leads))
		}
		var h handoff
		suitetest.Eventually(t, 60*time.Second, "the second lead to be assigned", func() bool {
			h = handoffOf(t, s, leads[0])
			return h.State == "STATE_ASSIGNED"
		})
		if code, body := s.Do(t, http.MethodPost, "/v1/"+h.Name+":reject",
			`{"etag":"`+h.Etag+`","reason":"not a buyer yet"}`); code != 200 {
			t.Fatalf("reject = %d %s", code, body)
		}
		suitetest.Eventually(t, 60*time.Second, "the rejected lead to be recycled", func() bool {
			return stageOf(t, s, leads[0]) == "STAGE_RECYCLED"
		})
	})

}

// servicesIn lists, sorted and comma-joined, the services with spans in trace.
func servicesIn(spans []span, trace string) string {
	var out []string
	for _, sp := range spans {
		if sp.TraceID == trace && !slices.Contains(out, sp.Service) {
			out = append(out, sp.Service)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// checkParents asserts the trace is one tree: exactly one root, the
// gateway's span of the form post, and every other span's parent in it.
func checkParents(t *testing.T, spans []span, trace string) {
	t.Helper()
	for _, sp := range orphans(spans, trace) {
		t.Errorf("%s span %q has parent %s outside the trace", sp.Service, sp.Name, sp.Parent)
	}
	var roots []span
	for _, sp := range spans {
		if sp.TraceID == trace && sp.Parent == "" && !slices.ContainsFunc(roots, func(r span) bool { return r.SpanID == sp.SpanID }) {
			roots = append(roots, sp)
		}
	}
	if len(roots) != 1 || roots[0].Service != "gateway" {
		t.Fatalf("roots = %+v, want the gateway's span only", roots)
	}
}

// orphans are the spans of trace whose parent is not among spans.
func orphans(spans []span, trace string) []span {
	ids := map[string]bool{}
	for _, sp := range spans {
		if sp.TraceID == trace {
			ids[sp.SpanID] = true
		}
	}
	var out []span
	for _, sp := range spans {
		if sp.TraceID == trace && sp.Parent != "" && !ids[sp.Parent] {
			out = append(out, sp)
		}
	}
	return out
}
