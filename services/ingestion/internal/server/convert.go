package server

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// etag renders a version as an AIP-154 etag.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// parseEtag returns the version an etag names, 0 for no etag. An etag this
// service never issued is stale by definition: it matches no version.
func parseEtag(s string) int64 {
	if s == "" {
		return 0
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(s, "W/"), `"`), 10, 64)
	if err != nil || v <= 0 {
		return -1
	}
	return v
}

func toProtoLead(l lead.Lead) *ingestionv1.Lead {
	out := &ingestionv1.Lead{
		Name:             resname.Format("leads", l.ID),
		Email:            l.Email,
		FirstName:        l.FirstName,
		LastName:         l.LastName,
		Company:          l.Company,
		Title:            l.Title,
		Phone:            l.Phone,
		Country:          l.Country,
		Industry:         l.Industry,
		EmployeeCount:    l.EmployeeCount,
		Source:           l.Source,
		Campaign:         l.Campaign,
		CustomAttributes: l.Custom,
		CompanyDomain:    l.CompanyDomain,
		Unsubscribed:     l.Unsubscribed,
		CreateTime:       timestamppb.New(l.CreateTime),
		UpdateTime:       timestamppb.New(l.UpdateTime),
		Etag:             etag(l.Version),
	}
	if l.AccountID != "" {
		out.Account = resname.Format("accounts", l.AccountID)
	}
	for _, c := range l.Consents {
		out.Consents = append(out.Consents, toProtoConsent(c))
	}
	return out
}

func toProtoConsent(c lead.Consent) *ingestionv1.Consent {
	return &ingestionv1.Consent{
		Purpose:     c.Purpose,
		TextVersion: c.TextVersion,
		Granted:     c.Granted,
		RecordTime:  timestamppb.New(c.RecordTime),
		Source:      c.Source,
		IpAddress:   c.IPAddress,
	}
}

// fromProtoLead reads the client-settable fields of a lead.
func fromProtoLead(p *ingestionv1.Lead) lead.Lead {
	return lead.Lead{
		Email:         p.GetEmail(),
		FirstName:     p.GetFirstName(),
		LastName:      p.GetLastName(),
		Company:       p.GetCompany(),
		Title:         p.GetTitle(),
		Phone:         p.GetPhone(),
		Country:       p.GetCountry(),
		Industry:      p.GetIndustry(),
		EmployeeCount: p.GetEmployeeCount(),
		Source:        p.GetSource(),
		Campaign:      p.GetCampaign(),
		Custom:        p.GetCustomAttributes(),
	}
}

// populatedLeadFields names the settable fields p holds, the implied
// update mask of an update without one (AIP-134).
func populatedLeadFields(p *ingestionv1.Lead) []string {
	var paths []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{lead.FieldEmail, p.GetEmail() != ""},
		{lead.FieldFirstName, p.GetFirstName() != ""},
		{lead.FieldLastName, p.GetLastName() != ""},
		{lead.FieldCompany, p.GetCompany() != ""},
		{lead.FieldTitle, p.GetTitle() != ""},
		{lead.FieldPhone, p.GetPhone() != ""},
		{lead.FieldCountry, p.GetCountry() != ""},
		{lead.FieldIndustry, p.GetIndustry() != ""},
		{lead.FieldEmployeeCount, p.GetEmployeeCount() != 0},
		{lead.FieldSource, p.GetSource() != ""},
		{lead.FieldCampaign, p.GetCampaign() != ""},
		{lead.FieldCustom, len(p.GetCustomAttributes()) > 0},
	} {
		if f.set {
			paths = append(paths, f.name)
		}
	}
	return paths
}

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

var domainActivityTypes = func() map[typesv1.ActivityType]lead.ActivityType {
	m := map[typesv1.ActivityType]lead.ActivityType{}
	for d, p := range activityTypes {
		m[p] = d
	}
	return m
}()

func toProtoActivity(a lead.Activity) *ingestionv1.Activity {
	return &ingestionv1.Activity{
		Name:          resname.Format("leads", a.LeadID, "activities", a.ID),
		Type:          activityTypes[a.Type],
		OccurTime:     timestamppb.New(a.OccurTime),
		Url:           a.URL,
		ContentId:     a.ContentID,
		ClientEventId: a.ClientEventID,
		Properties:    a.Properties,
		CreateTime:    timestamppb.New(a.CreateTime),
	}
}

func fromProtoActivity(leadID string, p *ingestionv1.Activity) lead.Activity {
	return lead.Activity{
		LeadID:        leadID,
		Type:          domainActivityTypes[p.GetType()],
		OccurTime:     p.GetOccurTime().AsTime().UTC(),
		URL:           p.GetUrl(),
		ContentID:     p.GetContentId(),
		ClientEventID: p.GetClientEventId(),
		Properties:    p.GetProperties(),
	}
}

func toProtoChange(c lead.Change) *ingestionv1.LeadChange {
	return &ingestionv1.LeadChange{
		Kind:          c.Kind,
		Source:        c.Source,
		ChangedFields: c.ChangedFields,
		ChangeTime:    timestamppb.New(c.ChangeTime),
	}
}

func toProtoForm(f lead.Form) *ingestionv1.Form {
	return &ingestionv1.Form{
		Name:               resname.Format("forms", f.ID),
		DisplayName:        f.DisplayName,
		FieldMapping:       f.FieldMapping,
		Source:             f.Source,
		Campaign:           f.Campaign,
		ConsentPurpose:     f.ConsentPurpose,
		ConsentText:        f.ConsentText,
		ConsentTextVersion: f.ConsentTextVersion,
		AllowedOrigins:     f.AllowedOrigins,
		ThankYouUrl:        f.ThankYouURL,
		HoneypotField:      f.HoneypotField,
		ActivityType:       activityTypes[f.ActivityType],
		CreateTime:         timestamppb.New(f.CreateTime),
		UpdateTime:         timestamppb.New(f.UpdateTime),
		Etag:               etag(f.Version),
	}
}

func fromProtoForm(p *ingestionv1.Form) lead.Form {
	return lead.Form{
		DisplayName:        p.GetDisplayName(),
		FieldMapping:       p.GetFieldMapping(),
		Source:             p.GetSource(),
		Campaign:           p.GetCampaign(),
		ConsentPurpose:     p.GetConsentPurpose(),
		ConsentText:        p.GetConsentText(),
		ConsentTextVersion: p.GetConsentTextVersion(),
		AllowedOrigins:     p.GetAllowedOrigins(),
		ThankYouURL:        p.GetThankYouUrl(),
		HoneypotField:      p.GetHoneypotField(),
		ActivityType:       domainActivityTypes[p.GetActivityType()],
	}
}

// Form fields an update mask may name.
var formFields = []string{
	"display_name", "field_mapping", "source", "campaign", "consent_purpose", "consent_text",
	"consent_text_version", "allowed_origins", "thank_you_url", "honeypot_field", "activity_type",
}

// applyFormPath copies one field named by an update mask from src to dst.
func applyFormPath(dst *lead.Form, src lead.Form, path string) bool {
	switch path {
	case "display_name":
		dst.DisplayName = src.DisplayName
	case "field_mapping":
		dst.FieldMapping = src.FieldMapping
	case "source":
		dst.Source = src.Source
	case "campaign":
		dst.Campaign = src.Campaign
	case "consent_purpose":
		dst.ConsentPurpose = src.ConsentPurpose
	case "consent_text":
		dst.ConsentText = src.ConsentText
	case "consent_text_version":
		dst.ConsentTextVersion = src.ConsentTextVersion
	case "allowed_origins":
		dst.AllowedOrigins = src.AllowedOrigins
	case "thank_you_url":
		dst.ThankYouURL = src.ThankYouURL
	case "honeypot_field":
		dst.HoneypotField = src.HoneypotField
	case "activity_type":
		dst.ActivityType = src.ActivityType
	default:
		return false
	}
	return true
}

// populatedFormFields is the implied update mask of a form update.
func populatedFormFields(p *ingestionv1.Form) []string {
	var paths []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"display_name", p.GetDisplayName() != ""},
		{"field_mapping", len(p.GetFieldMapping()) > 0},
		{"source", p.GetSource() != ""},
		{"campaign", p.GetCampaign() != ""},
		{"consent_purpose", p.GetConsentPurpose() != ""},
		{"consent_text", p.GetConsentText() != ""},
		{"consent_text_version", p.GetConsentTextVersion() != ""},
		{"allowed_origins", len(p.GetAllowedOrigins()) > 0},
		{"thank_you_url", p.GetThankYouUrl() != ""},
		{"honeypot_field", p.GetHoneypotField() != ""},
		{"activity_type", p.GetActivityType() != 0},
	} {
		if f.set {
			paths = append(paths, f.name)
		}
	}
	return paths
}
