package lead

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Form is a public web form that captures leads without an API key. Its id
// is unique across workspaces, because a submission names only the form.
type Form struct {
	ID          string
	Workspace   string
	DisplayName string
	// FieldMapping maps a submitted field name to a lead field (see
	// LeadFieldTargets) or to "custom_attributes.<key>".
	FieldMapping       map[string]string
	Source             string
	Campaign           string
	ConsentPurpose     string
	ConsentText        string
	ConsentTextVersion string
	AllowedOrigins     []string
	ThankYouURL        string
	HoneypotField      string
	// ActivityType is what each submission records: ActivityFormSubmitted
	// when empty, or a hand-raiser request (demo, contact).
	ActivityType ActivityType
	CreateTime   time.Time
	UpdateTime   time.Time
	Version      int64
}

// FormCursor positions a page of forms (newest first).
type FormCursor struct {
	CreateTime time.Time `json:"t"`
	ID         string    `json:"i"`
}

// ConsentField is the submission field that carries consent: a truthy value
// ("true", "1", "yes", "on", "checked", "agree", "accepted") records a grant
// of the form's consent text, when the form has a consent_text_version.
const ConsentField = "consent"

// DefaultFormSource is the lead source of a form that names none.
const DefaultFormSource = "web-form"

// customPrefix marks a mapping target that names a custom attribute.
const customPrefix = "custom_attributes."

// leadFieldByCanon resolves a submitted or mapped field name, compared
// without case, "_", "-" or spaces, to the lead field it fills.
var leadFieldByCanon = map[string]string{
	"email":         FieldEmail,
	"firstname":     FieldFirstName,
	"lastname":      FieldLastName,
	"company":       FieldCompany,
	"title":         FieldTitle,
	"phone":         FieldPhone,
	"country":       FieldCountry,
	"industry":      FieldIndustry,
	"employeecount": FieldEmployeeCount,
}

func canon(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', ' ':
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(name)))
}

// LeadFieldTargets are the lead fields a form field may be mapped to,
// besides "consent" and "custom_attributes.<key>".
var LeadFieldTargets = []string{
	FieldEmail, FieldFirstName, FieldLastName, FieldCompany, FieldTitle,
	FieldPhone, FieldCountry, FieldIndustry, FieldEmployeeCount,
}

// Form limits beyond the proto's.
const (
	MaxFormFieldName = 100
	MaxOriginLen     = 500
)

// ValidateForm normalises and checks a form definition; violations name
// fields as "form.<field>".
func ValidateForm(f *Form) error {
	var v violations
	v.prefix = "form."
	f.DisplayName = clean(f.DisplayName)
	f.Source = clean(f.Source)
	f.Campaign = clean(f.Campaign)
	f.ConsentPurpose = clean(f.ConsentPurpose)
	f.ConsentTextVersion = clean(f.ConsentTextVersion)
	f.HoneypotField = clean(f.HoneypotField)
	f.ThankYouURL = clean(f.ThankYouURL)

	mapping := make(map[string]string, len(f.FieldMapping))
	for from, to := range f.FieldMapping {
		from, to = clean(from), clean(to)
		switch {
		case from == "" || len(from) > MaxFormFieldName:
			v.add("field_mapping", fmt.Sprintf("field names must be 1-%d characters", MaxFormFieldName))
			continue
		case strings.HasPrefix(to, customPrefix):
			if key := strings.TrimPrefix(to, customPrefix); key == "" || len(key) > MaxCustomKeyLen {
				v.add("field_mapping["+from+"]", fmt.Sprintf("custom attribute keys must be 1-%d characters", MaxCustomKeyLen))
			}
		case canon(to) == ConsentField:
			to = ConsentField
		case leadFieldByCanon[canon(to)] != "":
			to = leadFieldByCanon[canon(to)]
		default:
			v.add("field_mapping["+from+"]", fmt.Sprintf(
				"must be one of %s, %q or %q<key>", strings.Join(LeadFieldTargets, ", "), ConsentField, customPrefix))
		}
		mapping[from] = to
	}
	f.FieldMapping = mapping

	for i, o := range f.AllowedOrigins {
		o = strings.TrimRight(clean(o), "/")
		f.AllowedOrigins[i] = o
		if !validOrigin(o) {
			v.add(fmt.Sprintf("allowed_origins[%d]", i), `must be an origin like "https://example.com"`)
		}
	}
	if f.ThankYouURL != "" && !validHTTPURL(f.ThankYouURL) {
		v.add("thank_you_url", "must be an absolute http or https URL")
	}
	switch f.ActivityType {
	case "", ActivityFormSubmitted, ActivityDemoRequest, ActivityContactRequest:
	default:
		v.add("activity_type", "must be FORM_SUBMITTED, DEMO_REQUEST or CONTACT_REQUEST")
	}
	if f.ConsentTextVersion != "" && f.ConsentPurpose == "" {
		f.ConsentPurpose = PurposeMarketing
	}
	return v.err()
}

func validOrigin(o string) bool {
	if o == "*" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}

func validHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}

func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "y", "on", "checked", "agree", "agreed", "accepted":
		return true
	}
	return false
}

// Submission is one post of a public form.
type Submission struct {
	Fields map[string]string
	// IPAddress is the client's address, for the consent record only.
	IPAddress string
	Time      time.Time
}

// ErrHoneypot reports a submission that filled the honeypot field: a bot. It
// is answered as a success and nothing is stored.
var ErrHoneypot = apperr.InvalidArgument("honeypot field filled")

// CaptureFrom turns a submission of f into a capture: mapped fields fill
// their lead fields, unmapped fields named like a lead field are used as
// such, the consent field records consent, and every other field is kept as
// a custom attribute. Violations name the submitted field ("fields.email").
func (f Form) CaptureFrom(sub Submission) (Capture, error) {
	if f.HoneypotField != "" && strings.TrimSpace(sub.Fields[f.HoneypotField]) != "" {
		return Capture{}, ErrHoneypot
	}
	l := Lead{Custom: map[string]string{}}
	// origin remembers which submitted field filled each lead field, to
	// name it in errors.
	origin := map[string]string{}
	var v violations
	v.prefix = "fields."
	consent := false
	for name, val := range sub.Fields {
		if name == f.HoneypotField {
			continue
		}
		target, mapped := f.FieldMapping[name]
		if !mapped {
			switch {
			case leadFieldByCanon[canon(name)] != "":
				target = leadFieldByCanon[canon(name)]
			case canon(name) == ConsentField && f.ConsentTextVersion != "":
				target = ConsentField
			default:
				target = customPrefix + name
			}
		}
		switch target {
		case ConsentField:
			consent = consent || truthy(val)
			continue
		case FieldEmployeeCount:
			if s := strings.TrimSpace(val); s != "" {
				n, err := strconv.ParseInt(s, 10, 32)
				if err != nil || n < 0 || n > MaxEmployeeCount {
					v.add(name, fmt.Sprintf("must be a whole number from 0 to %d", MaxEmployeeCount))
					continue
				}
				l.EmployeeCount = int32(n)
			}
		case FieldEmail:
			l.Email = val
		case FieldFirstName:
			l.FirstName = val
		case FieldLastName:
			l.LastName = val
		case FieldCompany:
			l.Company = val
		case FieldTitle:
			l.Title = val
		case FieldPhone:
			l.Phone = val
		case FieldCountry:
			l.Country = val
		case FieldIndustry:
			l.Industry = val
		default:
			key := strings.TrimPrefix(target, customPrefix)
			l.Custom[key] = val
			origin["custom_attributes["+clean(key)+"]"] = name
			continue
		}
		origin[target] = name
	}
	if !v.ok() {
		return Capture{}, v.err()
	}
	l.Source = f.Source
	if l.Source == "" {
		l.Source = DefaultFormSource
	}
	l.Campaign = f.Campaign
	if err := Normalize(&l, ""); err != nil {
		return Capture{}, renameFields(err, func(field string) string {
			if name, ok := origin[field]; ok {
				return "fields." + name
			}
			return "fields"
		})
	}
	channel := "forms/" + f.ID
	activity := f.ActivityType
	if activity == "" {
		activity = ActivityFormSubmitted
	}
	c := Capture{
		Lead:    l,
		Channel: channel,
		Activity: &Activity{
			Type:       activity,
			OccurTime:  sub.Time,
			ContentID:  channel,
			Properties: map[string]string{"form": f.ID},
		},
	}
	if consent && f.ConsentTextVersion != "" {
		c.Consent = &Consent{
			Purpose:     f.ConsentPurpose,
			TextVersion: f.ConsentTextVersion,
			Granted:     true,
			RecordTime:  sub.Time,
			Source:      channel,
			IPAddress:   sub.IPAddress,
		}
	}
	return c, nil
}

// renameFields rewrites the field paths of an invalid-argument error.
func renameFields(err error, rename func(string) string) error {
	e, ok := err.(*apperr.Error)
	if !ok {
		return err
	}
	var opts []apperr.Option
	for _, fv := range e.FieldViolations() {
		opts = append(opts, apperr.Field(rename(fv.Field), fv.Description))
	}
	return apperr.InvalidArgument(e.Message(), opts...)
}
