package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/cmd/leadflow/internal/suitetest"
	"github.com/leadflow/leadflow/pkg/outbox"
)

// The fault-injection tests below break a running suite the way production
// breaks (PostgreSQL crashes, a service is SIGKILLed or hangs) while leads
// flow through it, and then check the engineering rules: an acknowledged
// lead or event survives, outbox events are delivered at least once, and
// receivers apply each exactly once.

// hangAfter is how long a request may take while something is down before
// it counts as hung: a client must get an answer it can act on.
const hangAfter = 10 * time.Second

// faultClient talks to the gateway as an integration would: with a
// timeout, never failing the test itself, so that goroutines may use it.
type faultClient struct {
	s    *suitetest.Suite
	http *http.Client
}

func newFaultClient(s *suitetest.Suite) *faultClient {
	return &faultClient{s: s, http: &http.Client{Timeout: hangAfter}}
}

// reply is the outcome of one request.
type reply struct {
	status int // 0 when no HTTP answer came; err says why
	body   string
	err    error
	took   time.Duration
}

func (r reply) ok() bool { return r.err == nil && r.status/100 == 2 }

func (r reply) String() string {
	if r.err != nil {
		return fmt.Sprintf("no answer after %v: %v", r.took.Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("HTTP %d after %v: %.200s", r.status, r.took.Round(time.Millisecond), r.body)
}

// send makes one request; idempotencyKey, when set, goes in the
// Idempotency-Key header.
func (c *faultClient) send(method, path, body, idempotencyKey string) reply {
	start := time.Now()
	req, err := http.NewRequest(method, c.s.Gateway+path, strings.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.s.Key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(b), err: err, took: time.Since(start)}
}

// getJSON GETs path into out and reports the failure, if any, as text.
func (c *faultClient) getJSON(path string, out any) error {
	r := c.send(http.MethodGet, path, "", "")
	if !r.ok() {
		return fmt.Errorf("GET %s: %v", path, r)
	}
	if err := json.Unmarshal([]byte(r.body), out); err != nil {
		return fmt.Errorf("GET %s: %v", path, err)
	}
	return nil
}

// faultLead is one lead a test captures. Every lead has the same profile,
// so the default scoring model gives each the same score: fit 40 (Software
// and 200 employees make the firmographics cap of 25, a VP 15).
type faultLead struct {
	email string
	key   string // the Idempotency-Key of its capture, also its activity's client_event_id
	name  string // "leads/…", set once its capture was acknowledged
}

func newFaultLeads(source string, n int) []*faultLead {
	leads := make([]*faultLead, n)
	for i := range leads {
		leads[i] = &faultLead{
			email: fmt.Sprintf("%s.%d@company%d.example", source, i, i%40),
			key:   fmt.Sprintf("%s-%d", source, i),
		}
	}
	return leads
}

func (l *faultLead) captureBody(source string) string {
	return fmt.Sprintf(`{"email":%q,"firstName":"Fault","lastName":"Tolerant","company":"Acme",`+
		`"title":"VP Marketing","country":"DE","industry":"Software","employeeCount":200,"source":%q}`, l.email, source)
}

// failure is one attempt the gateway did not acknowledge.
type failure struct {
	what string // "capture" or "activity"
	at   time.Time
	reply
}

// capturer captures leads from several goroutines, as integrations would:
// each lead is posted with its own Idempotency-Key until the gateway
// acknowledges it, then a demo request (a hand-raiser, worth 30 points) is
// recorded for it with its own client_event_id, again until acknowledged.
// Failed attempts are retried after a short pause and kept for the checks.
type capturer struct {
	c        *faultClient
	source   string
	leads    []*faultLead
	deadline time.Time

	acked    atomic.Int64 // leads whose capture and demo request were acknowledged
	mu       sync.Mutex
	failures []failure
	errs     []error
	wg       sync.WaitGroup
}

func startCapturing(c *faultClient, source string, leads []*faultLead, workers int, within time.Duration) *capturer {
	p := &capturer{c: c, source: source, leads: leads, deadline: time.Now().Add(within)}
	next := make(chan *faultLead, len(leads))
	for _, l := range leads {
		next <- l
	}
	close(next)
	for range workers {
		p.wg.Go(func() {
			for l := range next {
				if err := p.capture(l); err != nil {
					p.mu.Lock()
					p.errs = append(p.errs, err)
					p.mu.Unlock()
					continue
				}
				p.acked.Add(1)
			}
		})
	}
	return p
}

func (p *capturer) capture(l *faultLead) error {
	r, err := p.untilAcknowledged("capture", func() reply {
		return p.c.send(http.MethodPost, "/v1/leads", l.captureBody(p.source), l.key)
	})
	if err != nil {
		return fmt.Errorf("capture %s: %w", l.key, err)
	}
	var created struct {
		Lead    struct{ Name string }
		Created bool
	}
	if err := json.Unmarshal([]byte(r.body), &created); err != nil || created.Lead.Name == "" {
		return fmt.Errorf("capture %s: no lead name in %s", l.key, r.body)
	}
	// Every lead is new, so its capture creates it; an acknowledgement
	// that it updated one means an earlier, failed-looking attempt had
	// stored it and the retry was applied again instead of answered from
	// its Idempotency-Key.
	if !created.Created {
		return fmt.Errorf("capture %s was acknowledged as an update of an existing lead: a retry was applied twice", l.key)
	}
	l.name = created.Lead.Name
	occur := time.Now().UTC().Format(time.RFC3339Nano)
	body := fmt.Sprintf(`{"type":"ACTIVITY_TYPE_DEMO_REQUEST","occurTime":%q,"clientEventId":%q}`, occur, l.key)
	if _, err := p.untilAcknowledged("activity", func() reply {
		return p.c.send(http.MethodPost, "/v1/"+l.name+"/activities", body, "")
	}); err != nil {
		return fmt.Errorf("demo request of %s: %w", l.key, err)
	}
	return nil
}

// untilAcknowledged repeats try until it answers 2xx or the capturer's
// deadline passes.
func (p *capturer) untilAcknowledged(what string, try func() reply) (reply, error) {
	pause := 20 * time.Millisecond
	for {
		r := try()
		if r.ok() {
			return r, nil
		}
		p.mu.Lock()
		p.failures = append(p.failures, failure{what: what, at: time.Now(), reply: r})
		p.mu.Unlock()
		if time.Now().After(p.deadline) {
			return r, fmt.Errorf("not acknowledged by the deadline; last attempt: %v", r)
		}
		// A client backs off between retries rather than hammering a
		// suite that is down; this paces retries, it waits on nothing.
		time.Sleep(pause)
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// waitAcknowledged waits until at least n leads were acknowledged, and
// fails the test with what failed meanwhile if that takes over timeout.
func (p *capturer) waitAcknowledged(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for p.acked.Load() < int64(n) {
		if time.Now().After(deadline) {
			p.mu.Lock()
			errs := errors.Join(p.errs[:min(3, len(p.errs))]...)
			p.mu.Unlock()
			t.Fatalf("%d of %d leads acknowledged after %v, want %d; failed attempts: %s; given up: %v",
				p.acked.Load(), len(p.leads), timeout, n, describeFailures(p.failuresSince(time.Time{})), errs)
		}
		time.Sleep(50 * time.Millisecond) // polling a counter; nothing to wait on
	}
}

// failuresSince returns the failed attempts made at or after t.
func (p *capturer) failuresSince(t time.Time) []failure {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []failure
	for _, f := range p.failures {
		if !f.at.Before(t) {
			out = append(out, f)
		}
	}
	return out
}

// wait waits for every worker and fails the test if a lead could not be
// captured.
func (p *capturer) wait(t *testing.T) {
	t.Helper()
	p.wg.Wait()
	if err := errors.Join(p.errs...); err != nil {
		t.Fatalf("%d of %d leads were never acknowledged:\n%v", len(p.errs), len(p.leads), err)
	}
}

// checkFailuresAnswered fails the test for a failed attempt that was no
// clean server-side error: a hang or a missing answer, or a 4xx that blames
// the client for the server's trouble. It returns how many failures were
// 500 Internal Server Error, the rest being 502-504.
func checkFailuresAnswered(t *testing.T, failures []failure) (internal int) {
	t.Helper()
	for _, f := range failures {
		switch {
		case f.err != nil:
			t.Errorf("a %s hung or got no answer: %v", f.what, f.reply)
		case f.status < 500:
			t.Errorf("a %s failed with a client error: %v", f.what, f.reply)
		case f.took >= hangAfter:
			t.Errorf("a %s took %v to fail", f.what, f.took)
		case f.status == http.StatusInternalServerError:
			internal++
		}
	}
	return internal
}

// describeFailures counts failures by what failed and the answer's status
// and message, e.g. `capture: HTTP 500 "internal error" ×12`.
func describeFailures(failures []failure) string {
	counts := map[string]int{}
	for _, f := range failures {
		var st struct{ Message string }
		_ = json.Unmarshal([]byte(f.body), &st)
		counts[fmt.Sprintf("%s: HTTP %d %q", f.what, f.status, st.Message)]++
	}
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		lines = append(lines, fmt.Sprintf("%s ×%d", k, counts[k]))
	}
	return strings.Join(lines, "; ")
}

// listLeads pages through the leads of source and returns their names by
// email.
func listLeads(t *testing.T, c *faultClient, source string) map[string][]string {
	t.Helper()
	seen := map[string][]string{}
	token := ""
	for {
		var page struct {
			Leads         []struct{ Name, Email string }
			NextPageToken string
		}
		path := "/v1/leads?pageSize=1000&source=" + url.QueryEscape(source) + "&pageToken=" + url.QueryEscape(token)
		if err := c.getJSON(path, &page); err != nil {
			t.Fatal(err)
		}
		for _, l := range page.Leads {
			seen[l.Email] = append(seen[l.Email], l.Name)
		}
		if token = page.NextPageToken; token == "" {
			return seen
		}
	}
}

// checkLeadsExactlyOnce checks that each lead of source is listed exactly
// once, under the name its acknowledged capture returned, and that no other
// lead is.
func checkLeadsExactlyOnce(t *testing.T, c *faultClient, source string, leads []*faultLead) {
	t.Helper()
	seen := listLeads(t, c, source)
	total := 0
	for _, names := range seen {
		total += len(names)
	}
	bad := 0
	for _, l := range leads {
		if names := seen[l.email]; len(names) != 1 || names[0] != l.name {
			if bad++; bad <= 5 {
				t.Errorf("lead %s (acknowledged as %s) is listed as %v, want exactly once", l.key, l.name, names)
			}
		}
	}
	if total != len(leads) {
		t.Errorf("%d leads listed for source %s, want %d", total, source, len(leads))
	}
	if bad > 0 || total != len(leads) {
		t.FailNow()
	}
}

// resendCaptures sends every lead's capture again with its
// Idempotency-Key, as a client unsure of an earlier answer would, and
// checks that each returns the first acknowledgement: the lead it named,
// created (applied again, the capture would update the lead instead).
func resendCaptures(t *testing.T, c *faultClient, source string, leads []*faultLead) {
	t.Helper()
	errs := forEachLead(leads, func(l *faultLead) error {
		r := c.send(http.MethodPost, "/v1/leads", l.captureBody(source), l.key)
		if !r.ok() {
			return fmt.Errorf("retried capture %s: %v", l.key, r)
		}
		var got struct {
			Lead    struct{ Name string }
			Created bool
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || got.Lead.Name != l.name || !got.Created {
			return fmt.Errorf("retried capture %s returned %q (created %v), want the first acknowledgement: %q created",
				l.key, got.Lead.Name, got.Created, l.name)
		}
		return nil
	})
	reportFirst(t, "retries with the same Idempotency-Key", errs)
}

// forEachLead runs check for every lead on a few goroutines and returns
// its results in lead order, nil for a lead that passed.
func forEachLead(leads []*faultLead, check func(*faultLead) error) []error {
	errs := make([]error, len(leads))
	var wg sync.WaitGroup
	next := make(chan int, len(leads))
	for i := range leads {
		next <- i
	}
	close(next)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				errs[i] = check(leads[i])
			}
		})
	}
	wg.Wait()
	return errs
}

// reportFirst fails the test with the first few errors and their count;
// nil errors are ignored.
func reportFirst(t *testing.T, what string, errs []error) {
	t.Helper()
	errs = slices.DeleteFunc(slices.Clone(errs), func(err error) bool { return err == nil })
	if len(errs) == 0 {
		return
	}
	t.Fatalf("%s: %d failed, the first:\n%v", what, len(errs), errors.Join(errs[:min(5, len(errs))]...))
}

// outboxPorts returns the /metrics ports of the services that run an
// outbox relay (they report leadflow_outbox_backlog and _dead).
func outboxPorts(t *testing.T, s *suitetest.Suite) []int {
	t.Helper()
	var ports []int
	for _, port := range s.MetricsPorts {
		_, _, reported, err := outboxGauges(port)
		if err != nil {
			t.Fatal(err)
		}
		if reported {
			ports = append(ports, port)
		}
	}
	if len(ports) == 0 {
		t.Fatal("no service reports leadflow_outbox_backlog and leadflow_outbox_dead")
	}
	return ports
}

// outboxGauges sums one service's events waiting for delivery and parked
// for good. reported is false unless the page has both gauges, as when the
// service's metrics query fails while PostgreSQL is down.
func outboxGauges(port int) (waiting, parked float64, reported bool, err error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0, 0, false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var hasWaiting, hasParked bool
	for sc.Scan() {
		line := sc.Text()
		var sum *float64
		switch {
		case strings.HasPrefix(line, "leadflow_outbox_backlog{"):
			sum, hasWaiting = &waiting, true
		case strings.HasPrefix(line, "leadflow_outbox_dead{"):
			sum, hasParked = &parked, true
		default:
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, 0, false, fmt.Errorf("metrics on %d: %q", port, line)
		}
		*sum += v
	}
	return waiting, parked, hasWaiting && hasParked, sc.Err()
}

// waitDrained waits until every outbox in ports is empty, and fails the
// test if any event was parked (refused for good): that one is lost to its
// subscriber.
func waitDrained(t *testing.T, ports []int, timeout time.Duration) {
	t.Helper()
	var state string
	deadline := time.Now().Add(timeout)
	for {
		var waiting, parked float64
		complete := true
		for _, port := range ports {
			w, p, reported, err := outboxGauges(port)
			complete = complete && err == nil && reported
			waiting, parked = waiting+w, parked+p
		}
		state = fmt.Sprintf("%v waiting, %v parked, every service reporting: %v", waiting, parked, complete)
		if complete && parked > 0 {
			t.Fatalf("events were parked for good: %s", state)
		}
		if complete && waiting == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outboxes not drained within %v: %s", timeout, state)
		}
		time.Sleep(100 * time.Millisecond) // polling gauges; nothing to wait on
	}
}

// wantLead is what one lead must look like downstream once the pipeline
// has drained: its score, stage, and how often each journey step occurs
// (a stage change is counted as "KIND_STAGE_CHANGED>" and its to-stage).
// A receiver that applied an event twice records its step twice.
type wantLead struct {
	fit, engagement, total int64
	crossings              int
	stage                  string
	steps                  map[string]int
}

// A captured lead with a demo request: fit 40 and 30 points for the
// request, which makes it a hand-raiser, so scoring qualifies it, lifecycle
// makes it an MQL and handoff assigns it.
var handRaiser = wantLead{
	fit: 40, engagement: 30, total: 70, crossings: 1, stage: "STAGE_MQL",
	steps: map[string]int{
		"KIND_CAPTURED": 1, "KIND_STAGE_CHANGED>STAGE_INQUIRY": 1,
		"KIND_QUALIFIED": 1, "KIND_STAGE_CHANGED>STAGE_MQL": 1, "KIND_ASSIGNED": 1,
	},
}

// A captured lead and nothing else: fit 40, no qualification.
var capturedOnly = wantLead{
	fit: 40, total: 40, stage: "STAGE_INQUIRY",
	steps: map[string]int{"KIND_CAPTURED": 1, "KIND_STAGE_CHANGED>STAGE_INQUIRY": 1},
}

// checkDownstream checks every lead through the public API: its score
// (scoring), its stage and its journey (lifecycle) are what handling each
// of its events exactly once gives. The outboxes must have drained first;
// what handoff does after its own events still gets a short while.
func checkDownstream(t *testing.T, c *faultClient, leads []*faultLead, want wantLead) {
	t.Helper()
	pending := leads
	deadline := time.Now().Add(30 * time.Second)
	for {
		errs := forEachLead(pending, func(l *faultLead) error { return checkLead(c, l, want) })
		var failed []*faultLead
		for i, err := range errs {
			if err != nil {
				failed = append(failed, pending[i])
			}
		}
		if len(failed) == 0 {
			return
		}
		if time.Now().After(deadline) {
			reportFirst(t, "leads downstream 30s after the outboxes drained", errs)
		}
		pending = failed
		time.Sleep(200 * time.Millisecond) // re-reading state over REST; nothing to wait on
	}
}

func checkLead(c *faultClient, l *faultLead, want wantLead) error {
	var score struct {
		Score struct {
			FitScore, EngagementScore, TotalScore int64 `json:",string"`
			Qualification                         *struct{ Reason string }
			ThresholdCrossings                    []json.RawMessage
		}
	}
	if err := c.getJSON("/v1/"+l.name+"/score", &score); err != nil {
		return err
	}
	sc := score.Score
	if sc.FitScore != want.fit || sc.EngagementScore != want.engagement || sc.TotalScore != want.total ||
		len(sc.ThresholdCrossings) != want.crossings || (sc.Qualification != nil) != (want.stage == "STAGE_MQL") {
		return fmt.Errorf("%s score: fit %d engagement %d total %d, %d threshold crossings, qualified %v; want %d/%d/%d, %d, %v",
			l.key, sc.FitScore, sc.EngagementScore, sc.TotalScore, len(sc.ThresholdCrossings), sc.Qualification != nil,
			want.fit, want.engagement, want.total, want.crossings, want.stage == "STAGE_MQL")
	}
	var lc struct{ Lifecycle struct{ Stage string } }
	if err := c.getJSON("/v1/"+l.name+"/lifecycle", &lc); err != nil {
		return err
	}
	if lc.Lifecycle.Stage != want.stage {
		return fmt.Errorf("%s stage %s, want %s", l.key, lc.Lifecycle.Stage, want.stage)
	}
	var journey struct {
		Journey struct {
			Steps []struct{ Kind, ToStage string }
		}
	}
	if err := c.getJSON("/v1/"+l.name+"/journey", &journey); err != nil {
		return err
	}
	steps := map[string]int{}
	for _, st := range journey.Journey.Steps {
		k := st.Kind
		if k == "KIND_STAGE_CHANGED" {
			k += ">" + st.ToStage
		}
		steps[k]++
	}
	if !maps.Equal(steps, want.steps) {
		return fmt.Errorf("%s journey steps %v, want %v", l.key, steps, want.steps)
	}
	return nil
}

// connect opens a connection to the suite's database for the test.
func connect(t *testing.T, s *suitetest.Suite) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return db
}

// outboxSchemas are the schemas of the services whose relays deliver events.
var outboxSchemas = []string{"ingestion", "scoring", "lifecycle", "handoff"}

// outboxRow is what a relay last recorded about one waiting event.
type outboxRow struct {
	schema   string
	id       int64     // the outbox row, which a bundle's events share
	position int64     // the event's place in its row
	lead     string    // the lead id, "" for none
	next     time.Time // when it is due: the end of its lease, while leased
	attempts int
	leased   bool // no attempt recorded yet and due later: held by a pass
}

// outboxRows returns the waiting events of every service, bundled or not,
// keyed by schema, row id and position.
func outboxRows(t *testing.T, db *pgx.Conn) map[string]outboxRow {
	t.Helper()
	var parts []string
	for _, schema := range outboxSchemas {
		// The schemas are this file's constants, safe to splice in.
		parts = append(parts, fmt.Sprintf(`SELECT '%[1]s', id, position, coalesce(lead_id::text, ''), next_attempt_time, attempts,
       attempts = 0 AND next_attempt_time > now() FROM %[1]s.outbox_events WHERE dead_time IS NULL`, schema))
	}
	rows, err := db.Query(context.Background(), strings.Join(parts, "\nUNION ALL\n"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]outboxRow{}
	var r outboxRow
	if _, err := pgx.ForEachRow(rows, []any{&r.schema, &r.id, &r.position, &r.lead, &r.next, &r.attempts, &r.leased}, func() error {
		out[fmt.Sprintf("%s/%d/%d", r.schema, r.id, r.position)] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// rowsOf returns the rows of schema.
func rowsOf(rows map[string]outboxRow, schema string) map[string]outboxRow {
	out := map[string]outboxRow{}
	for k, r := range rows {
		if r.schema == schema {
			out[k] = r
		}
	}
	return out
}

// leasedIn returns the rows of schema a pass holds and has recorded no
// attempt of, by id.
func leasedIn(rows map[string]outboxRow, schema string) []outboxRow {
	var out []outboxRow
	for _, r := range rows {
		if r.schema == schema && r.leased && r.attempts == 0 {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b outboxRow) int { return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.position, b.position)) })
	return out
}

// waitStranded waits until every outbox holds nothing but events that a
// relay had leased (as held shows them, taken when the pass could no longer
// record its outcome) and that nobody touched since, and returns those. A
// pass that is alive records its outcome within seconds; these rows belong
// to passes that died and wait for their lease to run out.
func waitStranded(t *testing.T, db *pgx.Conn, held map[string]outboxRow, timeout time.Duration) []outboxRow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var stranded []outboxRow
		moving := 0
		for k, r := range outboxRows(t, db) {
			if before, ok := held[k]; ok && r.leased && before == r {
				stranded = append(stranded, r)
			} else {
				moving++
			}
		}
		if moving == 0 {
			return stranded
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still waiting after %v, besides %d stranded under a dead pass's lease", moving, timeout, len(stranded))
		}
		time.Sleep(100 * time.Millisecond) // polling the outboxes; nothing to wait on
	}
}

// describeStranded counts stranded rows by schema and says when their
// leases end.
func describeStranded(rows []outboxRow) string {
	bySchema := map[string]int{}
	var last time.Time
	for _, r := range rows {
		bySchema[r.schema]++
		if r.next.After(last) {
			last = r.next
		}
	}
	var parts []string
	for _, schema := range slices.Sorted(maps.Keys(bySchema)) {
		parts = append(parts, fmt.Sprintf("%d in %s's outbox", bySchema[schema], schema))
	}
	return fmt.Sprintf("%s, leased until up to %v from now", strings.Join(parts, ", "), time.Until(last).Round(time.Second))
}

// expireLeases makes leased rows due now, as the passing of their lease
// would, and wakes their relays.
func expireLeases(t *testing.T, db *pgx.Conn, rows []outboxRow) {
	t.Helper()
	ids := map[string][]int64{}
	for _, r := range rows {
		ids[r.schema] = append(ids[r.schema], r.id)
	}
	for schema, ids := range ids {
		table := pgx.Identifier{schema, "outbox"}.Sanitize()
		if _, err := db.Exec(context.Background(), `UPDATE `+table+` SET next_attempt_time = now() WHERE id = ANY($1)`, ids); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(context.Background(), `SELECT pg_notify($1, '')`, "outbox_"+schema); err != nil {
			t.Fatal(err)
		}
	}
}

// progress logs a test's steps with the time since it started, to show
// where the time of these long tests goes.
type progress struct {
	t     *testing.T
	start time.Time
}

func newProgress(t *testing.T) progress { return progress{t: t, start: time.Now()} }

func (p progress) log(format string, args ...any) {
	p.t.Helper()
	p.t.Logf("%5.1fs: "+format, append([]any{time.Since(p.start).Seconds()}, args...)...)
}

// deliveryFailedTo reports whether a relay logged, in out, a failed
// delivery to subscriber that it will retry: proof that events were on
// their way to it.
func deliveryFailedTo(out, subscriber string) bool {
	for line := range strings.Lines(out) {
		if strings.Contains(line, `"msg":"outbox delivery failed"`) &&
			strings.Contains(line, `"subscriber":"`+subscriber+`"`) {
			return true
		}
	}
	return false
}

// startFaultSuite starts a suite for a fault test (none with -short), with
// its REST client and the metrics ports of the services that relay events.
func startFaultSuite(t *testing.T) (progress, *suitetest.Suite, *faultClient, []int) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the whole suite; skipped with -short")
	}
	pr := newProgress(t)
	s := suitetest.Start(t, suitetest.DataDir(t))
	c := newFaultClient(s)
	relays := outboxPorts(t, s)
	pr.log("suite up")
	return pr, s, c, relays
}

// TestPostgresCrashLosesNoAcknowledgedLead crashes PostgreSQL (an immediate
// shutdown: no checkpoint, every connection cut) while leads and their demo
// requests are being captured over REST, and starts it again; the services
// are left running and must reconnect by themselves. Every acknowledged
// capture must then exist exactly once, a retry with its Idempotency-Key
// must return the same lead, attempts during the outage must have failed
// promptly with a server error, and every lead must reach scoring,
// lifecycle and handoff exactly once.
func TestPostgresCrashLosesNoAcknowledgedLead(t *testing.T) {
	pr, s, c, relays := startFaultSuite(t)
	const source = "pg-crash"
	leads := newFaultLeads(source, 240)

	p := startCapturing(c, source, leads, 6, 2*time.Minute)
	p.waitAcknowledged(t, len(leads)/3, time.Minute)
	crashed := time.Now()
	s.CrashPostgres(t)
	pr.log("PostgreSQL crashed with %d leads acknowledged", p.acked.Load())
	suitetest.Eventually(t, 30*time.Second, "captures to fail while PostgreSQL is down", func() bool {
		return len(p.failuresSince(crashed)) >= 10
	})
	s.RestartPostgres(t)
	pr.log("PostgreSQL restarted after %v down", time.Since(crashed).Round(time.Millisecond))
	db := connect(t, s)
	// What relay passes had leased when PostgreSQL went down.
	atRestart := outboxRows(t, db)
	p.wait(t)
	pr.log("all %d leads acknowledged; failed attempts: %s", len(leads), describeFailures(p.failuresSince(time.Time{})))

	checkLeadsExactlyOnce(t, c, source, leads)
	resendCaptures(t, c, source, leads)
	checkLeadsExactlyOnce(t, c, source, leads)
	pr.log("every lead stored exactly once, retries returned it")
	stranded := waitStranded(t, db, atRestart, time.Minute)
	if len(stranded) > 0 {
		// Passes the crash caught mid-way record once the database is
		// back; what is left is a claim whose commit was lost with its
		// connection. Those events wait out one short lease and are then
		// taken again by the relay itself: nothing here speeds that up.
		pr.log("stranded under a lease: %s; waiting for it to run out", describeStranded(stranded))
	}
	waitDrained(t, relays, 2*time.Minute)
	pr.log("outboxes drained")
	checkDownstream(t, c, leads, handRaiser)
	pr.log("every lead scored, qualified, assigned and in lifecycle exactly once")

	t.Run("no event waits longer than one lease after the restart", func(t *testing.T) {
		for _, r := range stranded {
			if wait := time.Until(r.next); wait > outbox.DefaultLease+time.Second {
				t.Errorf("event %d of %s's outbox was leased for %v more at the restart, longer than one lease (%v)",
					r.id, r.schema, wait.Round(time.Second), outbox.DefaultLease)
			}
		}
	})
	t.Run("outage answered promptly with 503", func(t *testing.T) {
		failures := p.failuresSince(time.Time{})
		if internal := checkFailuresAnswered(t, failures); internal > 0 {
			t.Errorf("%d of %d attempts during the outage got 500, want 503 Unavailable so that clients retry; got %s",
				internal, len(failures), describeFailures(failures))
		}
		// Only a gateway-level error a client retries is clean: not 501 or 505+.
		for _, f := range failures {
			if f.err == nil && f.status > http.StatusInternalServerError && (f.status < http.StatusBadGateway || f.status > http.StatusGatewayTimeout) {
				t.Errorf("a %s during the outage failed with a status clients do not retry: %v", f.what, f.reply)
			}
		}
	})
}

// TestKilledReceiversLoseNoEvent SIGKILLs lifecycle, then scoring, while
// captured leads and demo requests keep their events flowing to them, and
// starts each again after their relays have failed to deliver to it. Every
// event must be handled once it is back: each lead ends with the score,
// stage and journey that one application of each of its events gives, so
// an event lost or applied twice (a second journey step) fails the test.
func TestKilledReceiversLoseNoEvent(t *testing.T) {
	pr, s, c, relays := startFaultSuite(t)
	const source = "receiver-kill"
	leads := newFaultLeads(source, 240)

	db := connect(t, s)
	// The killed services relay events too; what their passes had leased
	// when they died waits for the lease to run out.
	atKill := map[string]outboxRow{}
	// Each receiver dies while its own share of the leads is being
	// captured, so events are on their way to it whatever the machine's pace.
	receivers := []string{"lifecycle", "scoring"}
	for i, receiver := range receivers {
		share := leads[i*len(leads)/len(receivers) : (i+1)*len(leads)/len(receivers)]
		p := startCapturing(c, source, share, 6, 2*time.Minute)
		p.waitAcknowledged(t, len(share)/4, time.Minute)
		before := len(s.Output())
		s.KillService(t, receiver)
		pr.log("%s killed with %d of its share of %d leads acknowledged", receiver, p.acked.Load(), len(share))
		maps.Copy(atKill, rowsOf(outboxRows(t, db), receiver))
		acked := p.acked.Load()
		suitetest.Eventually(t, 30*time.Second, "relays to schedule a retry to the killed "+receiver, func() bool {
			return deliveryFailedTo(s.Output()[before:], receiver)
		})
		p.waitAcknowledged(t, min(int(acked)+20, len(share)), 30*time.Second)
		s.RestartService(t, receiver)
		pr.log("%s restarted and serving", receiver)
		p.wait(t)
		if failures := p.failuresSince(time.Time{}); len(failures) > 0 {
			t.Errorf("captures failed though ingestion stayed up: %s", describeFailures(failures))
		}
	}

	checkLeadsExactlyOnce(t, c, source, leads)
	pr.log("all %d leads acknowledged and stored exactly once", len(leads))
	if stranded := waitStranded(t, db, atKill, time.Minute); len(stranded) > 0 {
		pr.log("the killed relays had leased %s; running those leases out", describeStranded(stranded))
		expireLeases(t, db, stranded)
	}
	waitDrained(t, relays, time.Minute)
	pr.log("outboxes drained")
	checkDownstream(t, c, leads, handRaiser)
	pr.log("every lead scored, qualified, assigned and in lifecycle exactly once")
}

// TestKilledRelayDeliversLeasedEvents SIGKILLs ingestion while its relay
// is in the middle of a pass: scoring is frozen (SIGSTOP), so the relay has
// leased the events of an import and handed them to lifecycle and handoff
// but waits on scoring. After ingestion restarts, the events it had not
// leased are delivered at once; the leased ones stay in the outbox until
// their lease runs out and are then delivered to every subscriber again.
// Lifecycle and handoff get them twice and must apply them once.
func TestKilledRelayDeliversLeasedEvents(t *testing.T) {
	pr, s, c, relays := startFaultSuite(t)
	db := connect(t, s)
	const source = "relay-kill"
	leads := newFaultLeads(source, 150)

	s.FreezeService(t, "scoring")
	var csv strings.Builder
	csv.WriteString("email,first_name,last_name,company,title,country,industry,employee_count\n")
	for _, l := range leads {
		fmt.Fprintf(&csv, "%s,Fault,Tolerant,Acme,VP Marketing,DE,Software,200\n", l.email)
	}
	req, err := http.NewRequest(http.MethodPost, s.Gateway+"/v1/leads:import?source="+source, strings.NewReader(csv.String()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var imported struct {
		Created int64 `json:",string"`
	}
	if err := json.Unmarshal(body, &imported); resp.StatusCode != http.StatusOK || err != nil || imported.Created != int64(len(leads)) {
		t.Fatalf("import = %d %s, want %d leads created", resp.StatusCode, body, len(leads))
	}
	for email, names := range listLeads(t, c, source) {
		for _, l := range leads {
			if l.email == email && len(names) == 1 {
				l.name = names[0]
			}
		}
	}
	checkLeadsExactlyOnce(t, c, source, leads)
	pr.log("imported %d leads with scoring frozen", len(leads))

	// The relay's pass leases due events, hands them to every subscriber at
	// once, and waits on frozen scoring: for DeliverTimeout (10s), then
	// again event by event. Lifecycle and handoff take theirs meanwhile.
	var leased []outboxRow
	suitetest.Eventually(t, 30*time.Second, "ingestion's relay to lease the import's events", func() bool {
		leased = leasedIn(outboxRows(t, db), "ingestion")
		return len(leased) > 0
	})
	suitetest.Eventually(t, 30*time.Second, "lifecycle to handle the leased events", func() bool {
		for _, r := range leased {
			if resp := c.send(http.MethodGet, "/v1/leads/"+r.lead+"/lifecycle", "", ""); !resp.ok() {
				return false
			}
		}
		return true
	})
	s.KillService(t, "ingestion")
	atKill := outboxRows(t, db)
	ids := func(rows []outboxRow) []int64 {
		out := make([]int64, len(rows))
		for i, r := range rows {
			out[i] = r.id
		}
		return out
	}
	// By id: a live pass renews its lease, so the rows' due times move.
	if still := leasedIn(atKill, "ingestion"); !slices.Equal(ids(still), ids(leased)) {
		t.Fatalf("ingestion's relay recorded its pass before it was killed (%d events leased, %d after the kill): "+
			"it was not killed mid-delivery", len(leased), len(still))
	}
	queued := 0
	for _, r := range atKill {
		if r.schema == "ingestion" {
			queued++
		}
	}
	if queued != len(leads) {
		t.Fatalf("%d events in ingestion's outbox after the kill, want all %d of the import", queued, len(leads))
	}
	pr.log("ingestion killed with %d of its %d events leased mid-delivery", len(leased), queued)

	s.ThawService(t, "scoring")
	s.RestartService(t, "ingestion")
	pr.log("scoring thawed, ingestion restarted and serving")
	// The restarted relay delivers what was not leased; the leased events
	// wait, untouched, for their lease to run out (or it has already).
	stranded := waitStranded(t, db, rowsOf(atKill, "ingestion"), time.Minute)
	isLeased := map[int64]bool{}
	for _, r := range leased {
		isLeased[r.id] = true
	}
	for _, r := range stranded {
		if !isLeased[r.id] {
			t.Fatalf("event %d waits under a lease it did not have when ingestion died", r.id)
		}
	}
	// The dead pass's lease (30s by default, no longer renewed) may have
	// run out already; what is left of it need not be waited out.
	if len(stranded) > 0 {
		pr.log("every event not leased delivered; running out the lease of %s", describeStranded(stranded))
		expireLeases(t, db, stranded)
	}
	waitDrained(t, relays, time.Minute)
	pr.log("outboxes drained")
	checkDownstream(t, c, leads, capturedOnly)
	pr.log("every lead scored and in lifecycle exactly once")
}
