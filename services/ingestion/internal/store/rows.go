package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// leadColumns are the columns leadRow reads, in its order.
const leadColumns = `id, workspace_id, email, first_name, last_name, company, title, phone,
country, industry, employee_count, source, campaign, custom_attributes, company_domain,
account_id, unsubscribed, version, create_time, update_time`

type leadRow struct {
	ID            string            `db:"id"`
	WorkspaceID   string            `db:"workspace_id"`
	Email         *string           `db:"email"`
	FirstName     string            `db:"first_name"`
	LastName      string            `db:"last_name"`
	Company       string            `db:"company"`
	Title         string            `db:"title"`
	Phone         string            `db:"phone"`
	Country       string            `db:"country"`
	Industry      string            `db:"industry"`
	EmployeeCount int32             `db:"employee_count"`
	Source        string            `db:"source"`
	Campaign      string            `db:"campaign"`
	Custom        map[string]string `db:"custom_attributes"`
	CompanyDomain string            `db:"company_domain"`
	AccountID     *string           `db:"account_id"`
	Unsubscribed  bool              `db:"unsubscribed"`
	Version       int64             `db:"version"`
	CreateTime    time.Time         `db:"create_time"`
	UpdateTime    time.Time         `db:"update_time"`
}

func (r leadRow) toDomain() lead.Lead {
	l := lead.Lead{
		ID: r.ID, Workspace: r.WorkspaceID, FirstName: r.FirstName, LastName: r.LastName,
		Company: r.Company, Title: r.Title, Phone: r.Phone, Country: r.Country, Industry: r.Industry,
		EmployeeCount: r.EmployeeCount, Source: r.Source, Campaign: r.Campaign, Custom: r.Custom,
		CompanyDomain: r.CompanyDomain, Unsubscribed: r.Unsubscribed, Version: r.Version,
		CreateTime: r.CreateTime.UTC(), UpdateTime: r.UpdateTime.UTC(),
	}
	if r.Email != nil {
		l.Email = *r.Email
	}
	if r.AccountID != nil {
		l.AccountID = *r.AccountID
	}
	if l.Custom == nil {
		l.Custom = map[string]string{}
	}
	return l
}

func collectLeads(rows pgx.Rows) ([]lead.Lead, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[leadRow])
	if err != nil {
		return nil, err
	}
	out := make([]lead.Lead, len(rs))
	for i, r := range rs {
		out[i] = r.toDomain()
	}
	return out, nil
}

// nonNil gives jsonb columns "{}" rather than "null".
func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// nullable stores "" as NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type activityRow struct {
	ID            string            `db:"id"`
	LeadID        string            `db:"lead_id"`
	Type          string            `db:"type"`
	OccurTime     time.Time         `db:"occur_time"`
	URL           string            `db:"url"`
	ContentID     string            `db:"content_id"`
	ClientEventID *string           `db:"client_event_id"`
	Properties    map[string]string `db:"properties"`
	CreateTime    time.Time         `db:"create_time"`
}

const activityColumns = `id, lead_id, type, occur_time, url, content_id, client_event_id, properties, create_time`

func (r activityRow) toDomain() lead.Activity {
	a := lead.Activity{
		ID: r.ID, LeadID: r.LeadID, Type: lead.ActivityType(r.Type), OccurTime: r.OccurTime.UTC(),
		URL: r.URL, ContentID: r.ContentID, Properties: r.Properties, CreateTime: r.CreateTime.UTC(),
	}
	if r.ClientEventID != nil {
		a.ClientEventID = *r.ClientEventID
	}
	return a
}

func collectActivities(rows pgx.Rows) ([]lead.Activity, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[activityRow])
	if err != nil {
		return nil, err
	}
	out := make([]lead.Activity, len(rs))
	for i, r := range rs {
		out[i] = r.toDomain()
	}
	return out, nil
}

type changeRow struct {
	ID            int64     `db:"id"`
	Kind          string    `db:"kind"`
	Source        string    `db:"source"`
	ChangedFields []string  `db:"changed_fields"`
	ChangeTime    time.Time `db:"change_time"`
}

func collectChanges(rows pgx.Rows) ([]lead.Change, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[changeRow])
	if err != nil {
		return nil, err
	}
	out := make([]lead.Change, len(rs))
	for i, r := range rs {
		out[i] = lead.Change{ID: r.ID, Kind: r.Kind, Source: r.Source, ChangedFields: r.ChangedFields, ChangeTime: r.ChangeTime.UTC()}
	}
	return out, nil
}

// queueChange adds a history entry to b.
func queueChange(b *pgx.Batch, ws, leadID, kind, source string, fields []string, at time.Time) {
	const q = `
INSERT INTO lead_changes (workspace_id, lead_id, kind, source, changed_fields, change_time)
VALUES ($1, $2, $3, $4, $5, $6)`
	if fields == nil {
		fields = []string{}
	}
	b.Queue(q, ws, leadID, kind, source, fields, at)
}

// queueConsent adds a consent record to b.
func queueConsent(b *pgx.Batch, ws, leadID string, c lead.Consent) {
	const q = `
INSERT INTO consents (workspace_id, lead_id, purpose, text_version, granted, record_time, source, ip_address)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	b.Queue(q, ws, leadID, c.Purpose, c.TextVersion, c.Granted, c.RecordTime, c.Source, nullable(c.IPAddress))
}

// queueActivity adds an activity to b.
func queueActivity(b *pgx.Batch, ws string, a lead.Activity) {
	const q = `
INSERT INTO activities (id, workspace_id, lead_id, type, occur_time, url, content_id, client_event_id, properties, create_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	b.Queue(q, a.ID, ws, a.LeadID, string(a.Type), a.OccurTime, a.URL, a.ContentID,
		nullable(a.ClientEventID), nonNil(a.Properties), a.CreateTime)
}

// queueLeadUpdate writes every mutable column of l and its version to b.
func queueLeadUpdate(b *pgx.Batch, l lead.Lead) {
	const q = `
UPDATE leads SET email = $3, first_name = $4, last_name = $5, company = $6, title = $7, phone = $8,
       country = $9, industry = $10, employee_count = $11, source = $12, campaign = $13,
       custom_attributes = $14, company_domain = $15, account_id = $16, unsubscribed = $17,
       version = $18, update_time = $19
 WHERE workspace_id = $1 AND id = $2`
	b.Queue(q, l.Workspace, l.ID, l.Email, l.FirstName, l.LastName, l.Company, l.Title, l.Phone,
		l.Country, l.Industry, l.EmployeeCount, l.Source, l.Campaign, nonNil(l.Custom), l.CompanyDomain,
		nullable(l.AccountID), l.Unsubscribed, l.Version, l.UpdateTime)
}

// attributes are the non-personal attributes events carry.
func attributes(l lead.Lead) *eventsv1.LeadAttributes {
	return &eventsv1.LeadAttributes{
		Company: l.Company, CompanyDomain: l.CompanyDomain, Title: l.Title, Country: l.Country,
		Industry: l.Industry, EmployeeCount: l.EmployeeCount, Source: l.Source, Campaign: l.Campaign,
		CustomAttributes: l.Custom, Unsubscribed: l.Unsubscribed,
	}
}

// activityTypes maps the domain's activity types to the API's.
var activityTypes = map[lead.ActivityType]typesv1.ActivityType{
	lead.ActivityPageView:          typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW,
	lead.ActivityEmailOpen:         typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN,
	lead.ActivityEmailClick:        typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK,
	lead.ActivityContentDownload:   typesv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD,
	lead.ActivityWebinarRegistered: typesv1.ActivityType_ACTIVITY_TYPE_WEBINAR_REGISTERED,
	lead.ActivityWebinarAttended:   typesv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED,
	lead.ActivityFormSubmitted:     typesv1.ActivityType_ACTIVITY_TYPE_FORM_SUBMITTED,
	lead.ActivityDemoRequest:       typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST,
	lead.ActivityContactRequest:    typesv1.ActivityType_ACTIVITY_TYPE_CONTACT_REQUEST,
	lead.ActivityUnsubscribe:       typesv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE,
}

func activityRecorded(a lead.Activity) *eventsv1.ActivityRecorded {
	return &eventsv1.ActivityRecorded{
		Activity:     a.ID,
		ActivityType: activityTypes[a.Type],
		OccurTime:    timestamppb.New(a.OccurTime),
		Url:          a.URL,
		ContentId:    a.ContentID,
		Properties:   a.Properties,
	}
}

// publish records one event about leadID in tx.
func (s *Store) publish(ctx context.Context, tx pgx.Tx, ws, leadID string, payload proto.Message) error {
	_, err := s.pub.Publish(ctx, tx, ws, leadID, payload)
	return err
}
