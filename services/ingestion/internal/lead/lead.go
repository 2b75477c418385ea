// Package lead is the ingestion domain: it normalises and deduplicates
// leads, merges repeat captures, records activities and consent, and keeps
// each lead's change history. It knows nothing of gRPC or SQL; Store is its
// persistence, which also publishes the events other services learn from in
// the same transaction as each change.
package lead

import (
	"maps"
	"slices"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Errors the ingestion domain reports.
var (
	ErrLeadNotFound     = apperr.NotFound("lead not found")
	ErrFormNotFound     = apperr.NotFound("form not found")
	ErrFormExists       = apperr.AlreadyExists("form id is taken")
	ErrEmailTaken       = apperr.AlreadyExists("another lead has this email")
	ErrEtagMismatch     = apperr.Aborted("etag mismatch: the resource changed since it was read", apperr.Reason("ETAG_MISMATCH"))
	ErrMergeSelf        = apperr.InvalidArgument("cannot merge a lead into itself", apperr.Field("source_lead", "must differ from name"))
	ErrTooManyRows      = apperr.InvalidArgument("too many rows in one import", apperr.Field("row", "an import holds at most 100000 rows; split the file"))
	ErrRequestInFlight  = apperr.Aborted("a request with this request_id is still being processed; retry")
	ErrRequestWasErased = apperr.NotFound("the lead this request created has since been erased")
)

// Change kinds of a lead's history.
const (
	KindCreated      = "created"
	KindUpdated      = "updated"
	KindMerged       = "merged"
	KindErased       = "erased"
	KindUnsubscribed = "unsubscribed"
)

// PurposeMarketing is the consent purpose an unsubscribe withdraws, and the
// default purpose of a form's consent.
const PurposeMarketing = "marketing"

// Channels that make changes, recorded as LeadChange.source.
const (
	ChannelAPI        = "api"
	ChannelImport     = "import"
	ChannelActivities = "activities"
)

// Lead is one person at one company, unique per workspace by email.
type Lead struct {
	ID            string
	Workspace     string
	Email         string
	FirstName     string
	LastName      string
	Company       string
	Title         string
	Phone         string
	Country       string
	Industry      string
	EmployeeCount int32
	Source        string
	Campaign      string
	Custom        map[string]string
	// CompanyDomain is derived from Email; empty for free-mail addresses.
	CompanyDomain string
	// AccountID links the lead to its company's account; empty without a
	// company domain.
	AccountID    string
	Unsubscribed bool
	Consents     []Consent
	CreateTime   time.Time
	UpdateTime   time.Time
	// Version increases with every change; it is the etag.
	Version int64
}

// Consent is one recorded grant or withdrawal.
type Consent struct {
	Purpose     string
	TextVersion string
	Granted     bool
	RecordTime  time.Time
	// Source is the channel that recorded it ("api", "forms/demo").
	Source string
	// IPAddress is personal data: erased with the lead, never logged.
	IPAddress string
}

// ActivityType is a kind of behaviour.
type ActivityType string

// The activity types (leadflow.types.v1.ActivityType).
const (
	ActivityPageView          ActivityType = "page_view"
	ActivityEmailOpen         ActivityType = "email_open"
	ActivityEmailClick        ActivityType = "email_click"
	ActivityContentDownload   ActivityType = "content_download"
	ActivityWebinarRegistered ActivityType = "webinar_registered"
	ActivityWebinarAttended   ActivityType = "webinar_attended"
	ActivityFormSubmitted     ActivityType = "form_submitted"
	ActivityDemoRequest       ActivityType = "demo_request"
	ActivityContactRequest    ActivityType = "contact_request"
	ActivityUnsubscribe       ActivityType = "unsubscribe"
)

// Activity is one behaviour of a lead.
type Activity struct {
	ID        string
	LeadID    string
	Type      ActivityType
	OccurTime time.Time
	URL       string
	ContentID string
	// ClientEventID is the sender's id; a redelivery with the same id is a
	// no-op. Empty when the sender gave none.
	ClientEventID string
	Properties    map[string]string
	CreateTime    time.Time
}

// Change is one entry of a lead's history. It names fields, never values.
type Change struct {
	ID            int64
	Kind          string
	Source        string
	ChangedFields []string
	ChangeTime    time.Time
}

// Capture is one arrival of a lead through any channel.
type Capture struct {
	// Lead holds the captured fields, normalised.
	Lead Lead
	// Channel made the capture: "api", "forms/{id}" or "import".
	Channel string
	// Consent given with the capture, if any.
	Consent *Consent
	// Activity to record with the capture (a form's FORM_SUBMITTED).
	Activity *Activity
}

// Outcome is what a capture did.
type Outcome struct {
	Lead    Lead
	Created bool
}

// Field names as the API spells them, used in change history and masks.
const (
	FieldEmail         = "email"
	FieldFirstName     = "first_name"
	FieldLastName      = "last_name"
	FieldCompany       = "company"
	FieldTitle         = "title"
	FieldPhone         = "phone"
	FieldCountry       = "country"
	FieldIndustry      = "industry"
	FieldEmployeeCount = "employee_count"
	FieldSource        = "source"
	FieldCampaign      = "campaign"
	FieldCustom        = "custom_attributes"
	FieldUnsubscribed  = "unsubscribed"
)

// textFields lists a lead's plain text attributes with their names.
func (l *Lead) textFields() []struct {
	name string
	val  *string
} {
	return []struct {
		name string
		val  *string
	}{
		{FieldFirstName, &l.FirstName},
		{FieldLastName, &l.LastName},
		{FieldCompany, &l.Company},
		{FieldTitle, &l.Title},
		{FieldPhone, &l.Phone},
		{FieldCountry, &l.Country},
		{FieldIndustry, &l.Industry},
		{FieldSource, &l.Source},
		{FieldCampaign, &l.Campaign},
	}
}

// Apply folds a repeat capture into l: the newest non-empty value of each
// field wins and custom attributes are merged key by key. It returns the
// names of the fields that changed. The email, the dedup key, never changes.
func Apply(l *Lead, in Lead) []string {
	var changed []string
	inFields := in.textFields()
	for i, f := range l.textFields() {
		if v := *inFields[i].val; v != "" && v != *f.val {
			*f.val = v
			if changed == nil {
				// Room for every field a capture can change and one more
				// (a new lead's email): a slice grown one by one allocates
				// several times per lead of a bulk import.
				changed = make([]string, 0, len(inFields)+4)
			}
			changed = append(changed, f.name)
		}
	}
	if in.EmployeeCount > 0 && in.EmployeeCount != l.EmployeeCount {
		l.EmployeeCount = in.EmployeeCount
		changed = append(changed, FieldEmployeeCount)
	}
	customChanged := false
	for k, v := range in.Custom {
		if v == "" || l.Custom[k] == v {
			continue
		}
		if l.Custom == nil {
			l.Custom = map[string]string{}
		}
		l.Custom[k] = v
		customChanged = true
	}
	if customChanged {
		// Only the attribute map is named: its keys come from public forms
		// and must not smuggle personal data into the history.
		changed = append(changed, FieldCustom)
	}
	return changed
}

// FillEmpty copies into l every field l lacks from other, for a merge: the
// survivor's values win. Custom attributes missing from l are added.
func FillEmpty(l *Lead, other Lead) []string {
	var changed []string
	otherFields := other.textFields()
	for i, f := range l.textFields() {
		if *f.val == "" && *otherFields[i].val != "" {
			*f.val = *otherFields[i].val
			changed = append(changed, f.name)
		}
	}
	if l.EmployeeCount == 0 && other.EmployeeCount > 0 {
		l.EmployeeCount = other.EmployeeCount
		changed = append(changed, FieldEmployeeCount)
	}
	customChanged := false
	for k, v := range other.Custom {
		if _, ok := l.Custom[k]; !ok {
			if l.Custom == nil {
				l.Custom = map[string]string{}
			}
			l.Custom[k] = v
			customChanged = true
		}
	}
	if customChanged {
		changed = append(changed, FieldCustom)
	}
	if other.Unsubscribed && !l.Unsubscribed {
		l.Unsubscribed = true
		changed = append(changed, FieldUnsubscribed)
	}
	return changed
}

// Clone returns a deep copy of l.
func (l Lead) Clone() Lead {
	l.Custom = maps.Clone(l.Custom)
	l.Consents = slices.Clone(l.Consents)
	return l
}
