package lead

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// LeadFilter narrows ListLeads; empty fields do not filter.
type LeadFilter struct {
	Source        string
	Country       string
	CompanyDomain string
	MinUpdateTime time.Time
}

// LeadCursor positions a page of leads (newest first).
type LeadCursor struct {
	CreateTime time.Time `json:"t"`
	ID         string    `json:"i"`
}

// ActivityCursor positions a page of activities (newest occurrence first).
type ActivityCursor struct {
	OccurTime time.Time `json:"t"`
	ID        string    `json:"i"`
}

// ChangeCursor positions a page of history (newest first).
type ChangeCursor struct {
	ID int64 `json:"i"`
}

// Export is everything held on one lead.
type Export struct {
	Lead       Lead
	Activities []Activity
	Changes    []Change
}

// Merge describes a MergeLeads call.
type Merge struct {
	SurvivorID string
	SourceID   string
	RequestID  string
	// Actor is who asked (the API key id), for the audit record.
	Actor string
}

// MaxExportItems bounds the activities and the changes an export returns.
const MaxExportItems = 10_000

// Store persists leads, activities, history and forms. Every method that
// changes a lead publishes the matching events in the same transaction, and
// every method is confined to the workspace it is given.
type Store interface {
	// Capture applies captures in one transaction, creating or updating the
	// lead of each email. Two captures of one email, in one call or in
	// concurrent calls, always end up on one lead. Outcomes are in input
	// order; their leads carry no consents.
	Capture(ctx context.Context, ws string, caps []Capture) ([]Outcome, error)
	// CaptureOnce applies one capture, idempotently on requestID when it is
	// not empty: a retry returns the lead of the first call.
	CaptureOnce(ctx context.Context, ws, requestID string, c Capture) (Outcome, error)
	// GetLead returns a lead with its consents. A lead merged into another
	// resolves to its survivor; an erased lead is not found.
	GetLead(ctx context.Context, ws, id string) (Lead, error)
	ListLeads(ctx context.Context, ws string, f LeadFilter, after *LeadCursor, limit int) ([]Lead, error)
	// UpdateLead runs apply on the locked lead and stores the result, if
	// version is 0 or still current.
	UpdateLead(ctx context.Context, ws, id string, version int64, channel string, apply func(*Lead) ([]string, error)) (Lead, error)
	// EraseLead removes the lead's personal data from every table, leaving a
	// tombstone, and publishes LeadErased.
	EraseLead(ctx context.Context, ws, id string) error
	Export(ctx context.Context, ws, id string) (Export, error)
	MergeLeads(ctx context.Context, ws string, m Merge) (Lead, error)

	// RecordActivity stores a, unless the lead already has an activity with
	// its client event id: then it returns that one and duplicate=true.
	RecordActivity(ctx context.Context, ws string, a Activity) (stored Activity, duplicate bool, err error)
	ListActivities(ctx context.Context, ws, leadID string, after *ActivityCursor, limit int) ([]Activity, error)
	ListChanges(ctx context.Context, ws, leadID string, after *ChangeCursor, limit int) ([]Change, error)

	// CreateForm stores f; ErrFormExists if its id is taken in any
	// workspace. It is idempotent on requestID when that is not empty.
	CreateForm(ctx context.Context, f Form, requestID string) (Form, error)
	GetForm(ctx context.Context, ws, id string) (Form, error)
	// FindForm returns a form of any workspace, for public submissions.
	FindForm(ctx context.Context, id string) (Form, error)
	ListForms(ctx context.Context, ws string, after *FormCursor, limit int) ([]Form, error)
	UpdateForm(ctx context.Context, ws, id string, version int64, apply func(*Form) error) (Form, error)
	DeleteForm(ctx context.Context, ws, id string, version int64) error
}

// Service implements the ingestion use cases.
type Service struct {
	store Store
	now   func() time.Time
}

// NewService returns a Service over store.
func NewService(store Store) *Service {
	return &Service{store: store, now: func() time.Time {
		// PostgreSQL keeps microseconds; returned times match stored ones.
		return time.Now().UTC().Truncate(time.Microsecond)
	}}
}

// Consent limits.
const (
	MaxPurposeLen     = 100
	MaxTextVersionLen = 100
)

// CleanIP returns ip as a canonical address, or "" when it is not one; a
// garbage address is not worth keeping as evidence.
func CleanIP(ip string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return ""
	}
	return a.Unmap().String()
}

func (s *Service) checkConsent(c *Consent, prefix, channel string) error {
	if c == nil {
		return nil
	}
	var v violations
	v.prefix = prefix
	c.Purpose, c.TextVersion = clean(c.Purpose), clean(c.TextVersion)
	if c.Purpose == "" {
		c.Purpose = PurposeMarketing
	}
	if utf8.RuneCountInString(c.Purpose) > MaxPurposeLen {
		v.add("purpose", fmt.Sprintf("must be at most %d characters", MaxPurposeLen))
	}
	if utf8.RuneCountInString(c.TextVersion) > MaxTextVersionLen {
		v.add("text_version", fmt.Sprintf("must be at most %d characters", MaxTextVersionLen))
	}
	c.RecordTime = s.now()
	c.Source = channel
	c.IPAddress = CleanIP(c.IPAddress)
	return v.err()
}

// CreateLead captures a lead through the API, idempotently on requestID.
func (s *Service) CreateLead(ctx context.Context, ws string, l Lead, requestID string, consent *Consent) (Outcome, error) {
	if err := Normalize(&l, "lead."); err != nil {
		return Outcome{}, err
	}
	if err := s.checkConsent(consent, "consent.", ChannelAPI); err != nil {
		return Outcome{}, err
	}
	return s.store.CaptureOnce(ctx, ws, requestID, Capture{Lead: l, Channel: ChannelAPI, Consent: consent})
}

// GetLead returns a lead.
func (s *Service) GetLead(ctx context.Context, ws, id string) (Lead, error) {
	return s.store.GetLead(ctx, ws, id)
}

// ListLeads pages through a workspace's leads, newest first.
func (s *Service) ListLeads(ctx context.Context, ws string, f LeadFilter, after *LeadCursor, limit int) ([]Lead, error) {
	return s.store.ListLeads(ctx, ws, f, after, limit)
}

// UpdateLead sets the fields named in paths to the values in in, if version
// is 0 or current. Clearing a field is allowed; the email must stay valid
// and unique.
func (s *Service) UpdateLead(ctx context.Context, ws, id string, version int64, in Lead, paths []string) (Lead, error) {
	return s.store.UpdateLead(ctx, ws, id, version, ChannelAPI, func(l *Lead) ([]string, error) {
		before := l.Clone()
		for _, p := range paths {
			switch p {
			case FieldEmail:
				l.Email = in.Email
			case FieldFirstName:
				l.FirstName = in.FirstName
			case FieldLastName:
				l.LastName = in.LastName
			case FieldCompany:
				l.Company = in.Company
			case FieldTitle:
				l.Title = in.Title
			case FieldPhone:
				l.Phone = in.Phone
			case FieldCountry:
				l.Country = in.Country
			case FieldIndustry:
				l.Industry = in.Industry
			case FieldEmployeeCount:
				l.EmployeeCount = in.EmployeeCount
			case FieldSource:
				l.Source = in.Source
			case FieldCampaign:
				l.Campaign = in.Campaign
			case FieldCustom:
				l.Custom = in.Custom
			default:
				return nil, apperr.InvalidArgument("invalid update mask",
					apperr.Field("update_mask", fmt.Sprintf("%q cannot be updated; updatable fields: %s", p, strings.Join(UpdatableFields, ", "))))
			}
		}
		if err := Normalize(l, "lead."); err != nil {
			return nil, err
		}
		return diff(before, *l), nil
	})
}

// UpdatableFields are the update_mask paths UpdateLead accepts.
var UpdatableFields = []string{
	FieldEmail, FieldFirstName, FieldLastName, FieldCompany, FieldTitle, FieldPhone,
	FieldCountry, FieldIndustry, FieldEmployeeCount, FieldSource, FieldCampaign, FieldCustom,
}

// diff names the fields that differ between a and b.
func diff(a, b Lead) []string {
	var changed []string
	if a.Email != b.Email {
		changed = append(changed, FieldEmail)
	}
	bf := b.textFields()
	for i, f := range a.textFields() {
		if *f.val != *bf[i].val {
			changed = append(changed, f.name)
		}
	}
	if a.EmployeeCount != b.EmployeeCount {
		changed = append(changed, FieldEmployeeCount)
	}
	if !mapsEqual(a.Custom, b.Custom) {
		changed = append(changed, FieldCustom)
	}
	return changed
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// DeleteLead erases a lead's personal data.
func (s *Service) DeleteLead(ctx context.Context, ws, id string) error {
	return s.store.EraseLead(ctx, ws, id)
}

// ExportLead returns everything held on a lead.
func (s *Service) ExportLead(ctx context.Context, ws, id string) (Export, error) {
	return s.store.Export(ctx, ws, id)
}

// MergeLeads folds m.SourceID into m.SurvivorID.
func (s *Service) MergeLeads(ctx context.Context, ws string, m Merge) (Lead, error) {
	if m.SourceID == m.SurvivorID {
		return Lead{}, ErrMergeSelf
	}
	return s.store.MergeLeads(ctx, ws, m)
}

// MaxFutureSkew is how far in the future an activity may claim to occur:
// clocks drift, but an activity from next week is a bug.
const MaxFutureSkew = 24 * time.Hour

// RecordActivity records a behaviour of a lead.
func (s *Service) RecordActivity(ctx context.Context, ws string, a Activity) (Activity, bool, error) {
	if a.OccurTime.After(s.now().Add(MaxFutureSkew)) {
		return Activity{}, false, apperr.InvalidArgument("invalid activity",
			apperr.Field("activity.occur_time", "must not be more than 24 hours in the future"))
	}
	a.ClientEventID = strings.TrimSpace(a.ClientEventID)
	a.URL = strings.TrimSpace(a.URL)
	a.ContentID = strings.TrimSpace(a.ContentID)
	return s.store.RecordActivity(ctx, ws, a)
}

// ListActivities pages through a lead's activities, newest first.
func (s *Service) ListActivities(ctx context.Context, ws, leadID string, after *ActivityCursor, limit int) ([]Activity, error) {
	return s.store.ListActivities(ctx, ws, leadID, after, limit)
}

// ListChanges pages through a lead's history, newest first.
func (s *Service) ListChanges(ctx context.Context, ws, leadID string, after *ChangeCursor, limit int) ([]Change, error) {
	return s.store.ListChanges(ctx, ws, leadID, after, limit)
}

// CreateForm defines a form, idempotently on requestID.
func (s *Service) CreateForm(ctx context.Context, f Form, requestID string) (Form, error) {
	if err := ValidateForm(&f); err != nil {
		return Form{}, err
	}
	if f.ID == "" {
		f.ID = uuid.NewString()
	}
	now := s.now()
	f.CreateTime, f.UpdateTime, f.Version = now, now, 1
	return s.store.CreateForm(ctx, f, requestID)
}

// GetForm returns a form of the workspace.
func (s *Service) GetForm(ctx context.Context, ws, id string) (Form, error) {
	return s.store.GetForm(ctx, ws, id)
}

// GetPublicForm returns a form of any workspace, for the gateway.
func (s *Service) GetPublicForm(ctx context.Context, id string) (Form, error) {
	return s.store.FindForm(ctx, id)
}

// ListForms pages through a workspace's forms, newest first.
func (s *Service) ListForms(ctx context.Context, ws string, after *FormCursor, limit int) ([]Form, error) {
	return s.store.ListForms(ctx, ws, after, limit)
}

// UpdateForm runs apply on the form and stores it, if version is 0 or current.
func (s *Service) UpdateForm(ctx context.Context, ws, id string, version int64, apply func(*Form)) (Form, error) {
	return s.store.UpdateForm(ctx, ws, id, version, func(f *Form) error {
		apply(f)
		return ValidateForm(f)
	})
}

// DeleteForm removes a form, if version is 0 or current.
func (s *Service) DeleteForm(ctx context.Context, ws, id string, version int64) error {
	return s.store.DeleteForm(ctx, ws, id, version)
}

// SubmitForm captures a lead from a public form submission. It returns the
// form, whose thank-you page the caller shows. A honeypot submission returns
// the form too and stores nothing, so a bot cannot tell it was caught.
func (s *Service) SubmitForm(ctx context.Context, formID string, sub Submission) (Form, error) {
	f, err := s.store.FindForm(ctx, formID)
	if err != nil {
		return Form{}, err
	}
	sub.Time = s.now()
	sub.IPAddress = CleanIP(sub.IPAddress)
	c, err := f.CaptureFrom(sub)
	if err == ErrHoneypot {
		return f, nil
	}
	if err != nil {
		return Form{}, err
	}
	if _, err := s.store.Capture(ctx, f.Workspace, []Capture{c}); err != nil {
		return Form{}, err
	}
	return f, nil
}
