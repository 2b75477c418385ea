package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/grpctest"
	"github.com/leadflow/leadflow/pkg/logging"
	"github.com/leadflow/leadflow/services/gateway/internal/gateway"
)

// ingestionStub serves one public form, "demo", and records submissions.
// The gateway owns no data, so its tests run against a stub backend over
// real gRPC with the production interceptors.
type ingestionStub struct {
	ingestionv1.UnimplementedIngestionServiceServer
	mu          sync.Mutex
	submissions []map[string]string
	ips         []string
	rowMessages int // import messages that carried rows
}

func (s *ingestionStub) GetPublicForm(_ context.Context, req *ingestionv1.GetPublicFormRequest) (*ingestionv1.GetPublicFormResponse, error) {
	if req.GetName() != "forms/demo" {
		return nil, apperr.NotFound("form not found")
	}
	return &ingestionv1.GetPublicFormResponse{
		AllowedOrigins: []string{"https://www.example.com"},
		ThankYouUrl:    "https://www.example.com/thanks",
		HoneypotField:  "website",
	}, nil
}

func (s *ingestionStub) SubmitForm(ctx context.Context, req *ingestionv1.SubmitFormRequest) (*ingestionv1.SubmitFormResponse, error) {
	if !strings.Contains(req.GetFields()["email"], "@") {
		return nil, apperr.InvalidArgument("invalid lead", apperr.Field("email", "must be a valid email address"))
	}
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.submissions = append(s.submissions, req.GetFields())
	s.ips = append(s.ips, strings.Join(md.Get("x-forwarded-for"), "|"))
	return &ingestionv1.SubmitFormResponse{ThankYouUrl: "https://www.example.com/thanks"}, nil
}

// ImportLeads stores rows with an "@" in the email and refuses the others,
// like the real service, reporting lines as given.
func (s *ingestionStub) ImportLeads(stream grpc.ClientStreamingServer[ingestionv1.ImportLeadsRequest, ingestionv1.ImportLeadsResponse]) error {
	resp := &ingestionv1.ImportLeadsResponse{}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(resp)
		}
		if err != nil {
			return err
		}
		rows := req.GetRows().GetRows()
		if row := req.GetRow(); row != nil {
			rows = append(rows, row)
		}
		if len(rows) == 0 {
			continue
		}
		s.mu.Lock()
		s.rowMessages++
		s.mu.Unlock()
		for _, row := range rows {
			if !strings.Contains(row.GetLead().GetEmail(), "@") {
				resp.Failed++
				resp.Errors = append(resp.Errors, &ingestionv1.ImportError{Line: row.GetLine(), Field: "email", Reason: "invalid"})
				continue
			}
			s.mu.Lock()
			s.submissions = append(s.submissions, map[string]string{
				"email": row.GetLead().GetEmail(), "employees": fmt.Sprint(row.GetLead().GetEmployeeCount()),
				"first_name": row.GetLead().GetFirstName(), "region": row.GetLead().GetCustomAttributes()["region"],
			})
			s.mu.Unlock()
			resp.Created++
		}
	}
}

func (s *ingestionStub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.submissions)
}

// writerKey may import leads into workspace "acme".
const writerKey = "lf_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func newFormServer(t *testing.T, forms gateway.FormOptions) (*httptest.Server, *ingestionStub) {
	t.Helper()
	stub := &ingestionStub{}
	conn := grpctest.Serve(t, grpctest.Options{
		Policy: auth.Policy{
			ingestionv1.IngestionService_SubmitForm_FullMethodName:    {Public: true},
			ingestionv1.IngestionService_GetPublicForm_FullMethodName: {Internal: true},
			ingestionv1.IngestionService_ImportLeads_FullMethodName:   {Scope: auth.ScopeLeadsWrite},
		},
		Authn:    grpctest.Keys{writerKey: {Workspace: "acme", Scopes: []string{auth.ScopeLeadsWrite}}},
		Register: func(s *grpcserver.Server) { ingestionv1.RegisterIngestionServiceServer(s, stub) },
	})
	forms.CallOptions = []grpc.CallOption{auth.BearerCredentials(grpctest.InternalToken)}
	h, err := gateway.NewHandler(context.Background(), gateway.Options{
		Logger:         logging.Discard(),
		Backends:       []gateway.Backend{{Name: "ingestion", Conn: conn, Register: gateway.Registrations["ingestion"]}},
		MaxBodyBytes:   1024,
		Ingestion:      ingestionv1.NewIngestionServiceClient(conn),
		Forms:          forms,
		ImportMaxBytes: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, stub
}

// noRedirect keeps 303s visible to the test.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func post(t *testing.T, url, contentType, body string, headers map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestFormSubmissions(t *testing.T) {
	srv, stub := newFormServer(t, gateway.FormOptions{})
	endpoint := srv.URL + "/v1/forms/demo:submit"

	t.Run("json", func(t *testing.T) {
		resp := post(t, endpoint, "application/json", `{"fields":{"email":"ada@example.com","utm_term":"crm"}}`, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "thankYouUrl") {
			t.Fatalf("JSON post = %d %s", resp.StatusCode, body)
		}
	})
	t.Run("html form gets 303", func(t *testing.T) {
		form := url.Values{"email": {"grace@example.com"}, "first_name": {"Grace"}}
		resp := post(t, endpoint, "application/x-www-form-urlencoded", form.Encode(), nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "https://www.example.com/thanks" {
			t.Fatalf("urlencoded post = %d Location=%q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	if n := stub.count(); n != 2 {
		t.Fatalf("ingestion got %d submissions, want 2", n)
	}
	stub.mu.Lock()
	if stub.submissions[0]["utm_term"] != "crm" {
		t.Errorf("unknown field dropped: %v", stub.submissions[0])
	}
	if stub.ips[0] != "127.0.0.1" {
		t.Errorf("client ip forwarded as %q, want 127.0.0.1", stub.ips[0])
	}
	stub.mu.Unlock()

	t.Run("honeypot is accepted and stored nowhere", func(t *testing.T) {
		form := url.Values{"email": {"bot@example.com"}, "website": {"http://spam"}}
		resp := post(t, endpoint, "application/x-www-form-urlencoded", form.Encode(), nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("honeypot post = %d, want the same 303 as a person", resp.StatusCode)
		}
		if n := stub.count(); n != 2 {
			t.Fatalf("honeypot submission reached ingestion (%d submissions)", n)
		}
	})
	t.Run("spoofed X-Forwarded-For is ignored", func(t *testing.T) {
		post(t, endpoint, "application/json", `{"fields":{"email":"x@example.com"}}`, map[string]string{"X-Forwarded-For": "203.0.113.9"})
		stub.mu.Lock()
		defer stub.mu.Unlock()
		if got := stub.ips[len(stub.ips)-1]; got != "127.0.0.1" {
			t.Fatalf("client ip = %q, want 127.0.0.1", got)
		}
	})
	t.Run("invalid email is 400 with field violations", func(t *testing.T) {
		resp := post(t, endpoint, "application/json", `{"fields":{"email":"nope"}}`, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "fieldViolations") {
			t.Fatalf("invalid email = %d %s", resp.StatusCode, body)
		}
	})
	t.Run("unknown form is 404", func(t *testing.T) {
		if resp := post(t, srv.URL+"/v1/forms/nope:submit", "application/json", `{"fields":{}}`, nil); resp.StatusCode != 404 {
			t.Fatalf("unknown form = %d", resp.StatusCode)
		}
	})
}

// Text that is not UTF-8 (a page served as Latin-1, say) is a 400, not a
// server error, and reaches nobody.
func TestFormTextMustBeUTF8(t *testing.T) {
	srv, stub := newFormServer(t, gateway.FormOptions{})
	endpoint := srv.URL + "/v1/forms/demo:submit"
	for name, body := range map[string][2]string{
		"form value": {"application/x-www-form-urlencoded", "email=ada%40example.com&last_name=M%FCller"},
		"form name":  {"application/x-www-form-urlencoded", "email=ada%40example.com&%FF=x"},
		"json":       {"application/json", "{\"fields\":{\"email\":\"ada@example.com\",\"last_name\":\"M\xfcller\"}}"},
	} {
		resp := post(t, endpoint, body[0], body[1], nil)
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(got), "UTF-8") {
			t.Errorf("%s: %d %s, want 400 naming UTF-8", name, resp.StatusCode, got)
		}
	}
	if n := stub.count(); n != 0 {
		t.Fatalf("%d submissions reached ingestion", n)
	}
}

func TestFormCORS(t *testing.T) {
	srv, stub := newFormServer(t, gateway.FormOptions{})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/v1/forms/demo:submit", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := preflight("https://www.example.com"); resp.StatusCode != 204 ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://www.example.com" {
		t.Fatalf("allowed preflight = %d ACAO=%q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if resp := preflight("https://evil.example"); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed preflight = %d ACAO=%q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	resp := post(t, srv.URL+"/v1/forms/demo:submit", "application/json", `{"fields":{"email":"a@example.com"}}`,
		map[string]string{"Origin": "https://evil.example"})
	if resp.StatusCode != 403 || stub.count() != 0 {
		t.Fatalf("post from disallowed origin = %d, stored %d", resp.StatusCode, stub.count())
	}
}

func TestFormRateLimit(t *testing.T) {
	srv, stub := newFormServer(t, gateway.FormOptions{PerIP: rate.Every(time.Hour), PerIPBurst: 3})
	var last *http.Response
	for range 4 {
		last = post(t, srv.URL+"/v1/forms/demo:submit", "application/json", `{"fields":{"email":"a@example.com"}}`, nil)
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
		t.Fatalf("4th post = %d Retry-After=%q, want 429 with Retry-After", last.StatusCode, last.Header.Get("Retry-After"))
	}
	if n := stub.count(); n != 3 {
		t.Fatalf("stored %d submissions, want 3", n)
	}
}

func TestBodyLimits(t *testing.T) {
	srv, stub := newFormServer(t, gateway.FormOptions{MaxBodyBytes: 512})
	big := `{"fields":{"email":"a@example.com","notes":"` + strings.Repeat("x", 600) + `"}}`
	if resp := post(t, srv.URL+"/v1/forms/demo:submit", "application/json", big, nil); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized form post = %d, want 413", resp.StatusCode)
	}
	if stub.count() != 0 {
		t.Fatal("oversized submission was stored")
	}
	// Authenticated REST routes have their own limit (1 KiB here).
	resp := post(t, srv.URL+"/v1/leads", "application/json", `{"email":"`+strings.Repeat("x", 2000)+`"}`,
		map[string]string{"Authorization": "Bearer " + grpctest.NewKey(t)})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized REST body = %d, want 413", resp.StatusCode)
	}
}

func TestCSVImport(t *testing.T) {
	srv, stub := newFormServer(t, gateway.FormOptions{})
	csv := "\ufeffemail,firstName,employee_count,region\n" +
		"ada@example.com,Ada,\"1,200\",emea\n" + // line 2: stored, unknown column kept
		"grace@example.com,Grace,many,us\n" + // line 3: refused by the gateway
		"nope,No,5,us\n" + // line 4: refused by the service
		"short@example.com,Short\n" + // line 5: ragged
		"latin@example.com,M\xfcller,3,eu\n" // line 6: not UTF-8 (Latin-1), refused by the gateway
	resp := post(t, srv.URL+"/v1/leads:import?source=import", "text/csv", csv, map[string]string{"Authorization": "Bearer " + writerKey})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("import = %d %s", resp.StatusCode, body)
	}
	var summary struct {
		Created, Failed string
		Errors          []struct {
			Line  string
			Field string
		}
	}
	if err := json.Unmarshal(body, &summary); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if summary.Created != "1" || summary.Failed != "4" || len(summary.Errors) != 4 {
		t.Fatalf("summary = %s", body)
	}
	for i, want := range []string{"3", "4", "5", "6"} {
		if summary.Errors[i].Line != want {
			t.Errorf("error %d on line %s, want %s (%s)", i, summary.Errors[i].Line, want, body)
		}
	}
	if stub.rowMessages != 1 {
		t.Errorf("rows came in %d messages, want one ImportRows", stub.rowMessages)
	}
	stub.mu.Lock()
	got := stub.submissions[0]
	stub.mu.Unlock()
	if got["employees"] != "1200" || got["first_name"] != "Ada" || got["region"] != "emea" {
		t.Fatalf("stored row = %v", got)
	}

	if resp := post(t, srv.URL+"/v1/leads:import", "text/csv", csv, nil); resp.StatusCode != 401 {
		t.Fatalf("import without key = %d, want 401", resp.StatusCode)
	}
	big := "email\n" + strings.Repeat("someone@example.com\n", 4000)
	if resp := post(t, srv.URL+"/v1/leads:import", "text/csv", big, map[string]string{"Authorization": "Bearer " + writerKey}); resp.StatusCode != 413 {
		t.Fatalf("oversized import = %d, want 413", resp.StatusCode)
	}
	if n := stub.count(); n != 1 {
		t.Fatalf("an oversized import stored rows (%d stored)", n)
	}
	if resp := post(t, srv.URL+"/v1/leads:import", "text/csv", "name,company\nx,y\n", map[string]string{"Authorization": "Bearer " + writerKey}); resp.StatusCode != 400 {
		t.Fatalf("import without email column = %d, want 400", resp.StatusCode)
	}
	if resp := post(t, srv.URL+"/v1/leads:import", "text/csv", "email,r\xe9gion\nx@example.com,eu\n", map[string]string{"Authorization": "Bearer " + writerKey}); resp.StatusCode != 400 {
		t.Fatalf("import with a header that is not UTF-8 = %d, want 400", resp.StatusCode)
	}
}

// A long CSV goes to the service 500 rows to a message, the last one with
// what is left.
func TestCSVImportSendsRowsInMessages(t *testing.T) {
	srv, stub := newFormServer(t, gateway.FormOptions{})
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := range 1201 {
		fmt.Fprintf(&csv, "lead%d@example.com\n", i)
	}
	resp := post(t, srv.URL+"/v1/leads:import", "text/csv", csv.String(), map[string]string{"Authorization": "Bearer " + writerKey})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"created":"1201"`) {
		t.Fatalf("import = %d %s, want all 1201 rows created", resp.StatusCode, body)
	}
	if stub.rowMessages != 3 {
		t.Fatalf("rows came in %d messages, want 3 (500, 500 and 201)", stub.rowMessages)
	}
}
