package lead

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

func fields(err error) []string {
	var out []string
	if e, ok := errors.AsType[*apperr.Error](err); ok {
		for _, v := range e.FieldViolations() {
			out = append(out, v.Field)
		}
	}
	slices.Sort(out)
	return out
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     Lead
		want   Lead
		fields []string
	}{
		{
			name: "cleans and derives",
			in:   Lead{Email: " Ann@Example.COM ", FirstName: " Ann ", Country: "germany", Phone: "030 901820"},
			want: Lead{Email: "ann@example.com", FirstName: "Ann", Country: "DE", Phone: "+4930901820", CompanyDomain: "example.com", Custom: map[string]string{}},
		},
		{
			name: "free mail has no company domain",
			in:   Lead{Email: "ann@gmail.com"},
			want: Lead{Email: "ann@gmail.com", Custom: map[string]string{}},
		},
		{
			name: "decomposed unicode becomes NFC",
			in:   Lead{Email: "jose@example.com", FirstName: "Jose\u0301"},
			want: Lead{Email: "jose@example.com", FirstName: "Jos\u00e9", CompanyDomain: "example.com", Custom: map[string]string{}},
		},
		{name: "missing email", in: Lead{}, fields: []string{"lead.email"}},
		{name: "no dot in domain", in: Lead{Email: "a@localhost"}, fields: []string{"lead.email"}},
		{name: "display name", in: Lead{Email: "Ann <ann@example.com>"}, fields: []string{"lead.email"}},
		{
			name:   "every violation at once",
			in:     Lead{Email: "x", Phone: "nope", Country: "Atlantis", EmployeeCount: -1},
			fields: []string{"lead.country", "lead.email", "lead.employee_count", "lead.phone"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.in
			err := Normalize(&l, "lead.")
			if got := fields(err); !slices.Equal(got, tc.fields) {
				t.Fatalf("violations = %v (%v), want %v", got, err, tc.fields)
			}
			if tc.fields == nil && fmt.Sprint(l) != fmt.Sprint(tc.want) {
				t.Fatalf("normalised = %+v, want %+v", l, tc.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	l := Lead{FirstName: "Ann", Title: "CTO", Custom: map[string]string{"a": "1", "b": "2"}}
	changed := Apply(&l, Lead{FirstName: "Anne", Title: "", Company: "Acme", EmployeeCount: 50,
		Custom: map[string]string{"a": "1", "b": "3", "c": "", "d": "4"}})
	if want := []string{FieldFirstName, FieldCompany, FieldEmployeeCount, FieldCustom}; !slices.Equal(changed, want) {
		t.Fatalf("changed = %v, want %v", changed, want)
	}
	want := Lead{FirstName: "Anne", Title: "CTO", Company: "Acme", EmployeeCount: 50,
		Custom: map[string]string{"a": "1", "b": "3", "d": "4"}}
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Fatalf("applied = %+v, want %+v", l, want)
	}
	if changed := Apply(&l, Lead{FirstName: "Anne"}); changed != nil {
		t.Fatalf("a capture with nothing new changed %v", changed)
	}
}

func TestFillEmpty(t *testing.T) {
	l := Lead{FirstName: "Sam", Custom: map[string]string{"a": "keep"}}
	changed := FillEmpty(&l, Lead{FirstName: "Samuel", Title: "CFO", Unsubscribed: true, Custom: map[string]string{"a": "lose", "b": "add"}})
	if want := []string{FieldTitle, FieldCustom, FieldUnsubscribed}; !slices.Equal(changed, want) {
		t.Fatalf("changed = %v, want %v", changed, want)
	}
	if l.FirstName != "Sam" || l.Title != "CFO" || !l.Unsubscribed || !maps.Equal(l.Custom, map[string]string{"a": "keep", "b": "add"}) {
		t.Fatalf("filled = %+v", l)
	}
}

func TestValidateForm(t *testing.T) {
	for _, tc := range []struct {
		name   string
		form   Form
		fields []string
	}{
		{"valid", Form{
			FieldMapping:   map[string]string{"Work Email": "email", "Vorname": "firstName", "ok": "consent", "budget": "custom_attributes.budget"},
			AllowedOrigins: []string{"https://acme.example/", "http://localhost:3000"},
			ThankYouURL:    "https://acme.example/thanks",
		}, nil},
		{"unknown target", Form{FieldMapping: map[string]string{"mail": "emial"}}, []string{"form.field_mapping[mail]"}},
		{"empty custom key", Form{FieldMapping: map[string]string{"x": "custom_attributes."}}, []string{"form.field_mapping[x]"}},
		{"origin with a path", Form{AllowedOrigins: []string{"https://acme.example/form"}}, []string{"form.allowed_origins[0]"}},
		{"script url", Form{ThankYouURL: "javascript:alert(1)"}, []string{"form.thank_you_url"}},
		{"activity that is no submission", Form{ActivityType: ActivityPageView}, []string{"form.activity_type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.form
			if got := fields(ValidateForm(&f)); !slices.Equal(got, tc.fields) {
				t.Fatalf("violations = %v, want %v", got, tc.fields)
			}
		})
	}
	f := Form{FieldMapping: map[string]string{"Vorname": "First-Name"}, ConsentTextVersion: "v1", AllowedOrigins: []string{"https://a.example/"}}
	if err := ValidateForm(&f); err != nil {
		t.Fatal(err)
	}
	if f.FieldMapping["Vorname"] != FieldFirstName || f.ConsentPurpose != PurposeMarketing || f.AllowedOrigins[0] != "https://a.example" {
		t.Fatalf("normalised form = %+v", f)
	}
}

func TestCaptureFrom(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	form := Form{
		ID: "demo", FieldMapping: map[string]string{"Work Email": FieldEmail, "agree": ConsentField, "org": customPrefix + "organisation"},
		HoneypotField: "hp", ConsentTextVersion: "v2", ConsentPurpose: "newsletter",
	}
	for _, tc := range []struct {
		name        string
		form        Form
		fields      map[string]string
		wantLead    Lead
		wantConsent bool
		err         error
		violations  []string
	}{
		{
			name: "mapped, named and unknown fields",
			form: form,
			fields: map[string]string{
				"Work Email": "Kim@Initech.example", "First Name": "Kim", "last-name": "Lee", "EMPLOYEE_COUNT": " 40 ",
				"org": "Initech Ltd", "color": "red", "agree": "Yes", "hp": " ",
			},
			wantLead: Lead{Email: "kim@initech.example", FirstName: "Kim", LastName: "Lee", EmployeeCount: 40,
				Source: DefaultFormSource, CompanyDomain: "initech.example",
				Custom: map[string]string{"organisation": "Initech Ltd", "color": "red"}},
			wantConsent: true,
		},
		{
			name:     "unticked consent records nothing",
			form:     form,
			fields:   map[string]string{"Work Email": "kim@initech.example", "agree": "false"},
			wantLead: Lead{Email: "kim@initech.example", Source: DefaultFormSource, CompanyDomain: "initech.example", Custom: map[string]string{}},
		},
		{
			name:     "consent field without consent text is kept as an attribute",
			form:     Form{ID: "plain", Source: "site"},
			fields:   map[string]string{"email": "kim@initech.example", "consent": "yes"},
			wantLead: Lead{Email: "kim@initech.example", Source: "site", CompanyDomain: "initech.example", Custom: map[string]string{"consent": "yes"}},
		},
		{name: "honeypot", form: form, fields: map[string]string{"Work Email": "bot@x.example", "hp": "gotcha"}, err: ErrHoneypot},
		{
			name: "violations name the submitted field", form: form,
			fields:     map[string]string{"Work Email": "nope", "employee_count": "many"},
			violations: []string{"fields.employee_count"},
		},
		{
			name: "normalisation violations name the submitted field", form: form,
			fields:     map[string]string{"Work Email": "nope", "PHONE": "12"},
			violations: []string{"fields.PHONE", "fields.Work Email"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.form.CaptureFrom(Submission{Fields: tc.fields, IPAddress: "192.0.2.1", Time: at})
			if tc.err != nil || tc.violations != nil {
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if got := fields(err); tc.violations != nil && !slices.Equal(got, tc.violations) {
					t.Fatalf("violations = %v (%v), want %v", got, err, tc.violations)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(c.Lead) != fmt.Sprint(tc.wantLead) {
				t.Fatalf("lead = %+v, want %+v", c.Lead, tc.wantLead)
			}
			if c.Channel != "forms/"+tc.form.ID || c.Activity == nil || c.Activity.Type != ActivityFormSubmitted || !c.Activity.OccurTime.Equal(at) {
				t.Fatalf("capture = %+v", c)
			}
			if (c.Consent != nil) != tc.wantConsent {
				t.Fatalf("consent = %+v, want present=%v", c.Consent, tc.wantConsent)
			}
			if c.Consent != nil && (c.Consent.Purpose != "newsletter" || c.Consent.TextVersion != "v2" || !c.Consent.Granted || c.Consent.IPAddress != "192.0.2.1") {
				t.Fatalf("consent = %+v", c.Consent)
			}
		})
	}
}

func TestCleanIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9": "203.0.113.9", " 2001:db8::1 ": "2001:db8::1", "::ffff:192.0.2.1": "192.0.2.1",
		"unknown": "", "": "", "203.0.113.9:443": "",
	} {
		if got := CleanIP(in); got != want {
			t.Errorf("CleanIP(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestImportBounds needs no store: every row is rejected before storage.
func TestImportBounds(t *testing.T) {
	im, err := NewService(nil).NewImport("acme", "", "")
	if err != nil {
		t.Fatal(err)
	}
	im.maxRows = MaxImportErrors + 10
	ctx := context.Background()
	for i := range im.maxRows {
		if err := im.Add(ctx, int64(i+1), Lead{Email: "bad"}); err != nil {
			t.Fatalf("row %d: %v", i+1, err)
		}
	}
	if err := im.Add(ctx, int64(im.maxRows+1), Lead{Email: "bad"}); !errors.Is(err, ErrTooManyRows) {
		t.Fatalf("row over the limit: err = %v, want ErrTooManyRows", err)
	}
	sum, err := im.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != int64(im.maxRows) || len(sum.Errors) != MaxImportErrors || sum.Errors[0].Field != "email" || sum.Errors[0].Line != 1 {
		t.Fatalf("summary: failed %d, %d errors, first %+v", sum.Failed, len(sum.Errors), sum.Errors[0])
	}
	if _, err := NewService(nil).NewImport("acme", string(make([]byte, 300)), ""); err == nil {
		t.Fatal("an over-long import source was accepted")
	}
	if _, err := NewService(nil).NewImport("acme", "", "q3\x00"); !slices.Equal(fields(err), []string{"options.campaign"}) {
		t.Fatalf("a campaign with a NUL character: err = %v, want a violation of options.campaign", err)
	}
}
