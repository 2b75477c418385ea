package scoring

import "time"

// DefaultModelID is the id of the model every workspace starts with.
const DefaultModelID = "default"

// DefaultRules is the live model of a new workspace, published as version 1
// on the workspace's first use. It is documented in the service's README;
// keep the two in step.
func DefaultRules() Rules {
	const month = 30 * 24 * time.Hour
	pageView := `activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW`
	return Rules{
		FitRules: []FitRule{
			{ID: "target-industry", DisplayName: "Target industry", Points: 15, Group: "firmographics",
				Condition: `lead.industry.lowerAscii() in ["software", "saas", "technology", "internet", "information technology", "financial services"]`},
			{ID: "mid-market", DisplayName: "50-999 employees", Points: 10, Group: "firmographics",
				Condition: `lead.employee_count >= 50 && lead.employee_count < 1000`},
			{ID: "enterprise", DisplayName: "1000+ employees", Points: 15, Group: "firmographics",
				Condition: `lead.employee_count >= 1000`},
			{ID: "decision-maker", DisplayName: "Director or above", Points: 15,
				Condition: `lead.seniority in ["c_level", "vp", "director"]`},
			{ID: "manager", DisplayName: "Manager", Points: 5,
				Condition: `lead.seniority == "manager"`},
			{ID: "student", DisplayName: "Student or intern", Points: -20,
				Condition: `lead.title.lowerAscii().matches("\\b(student|intern)\\b")`},
			{ID: "unsubscribed", DisplayName: "Unsubscribed", Points: -10,
				Condition: `lead.unsubscribed`},
		},
		EngagementRules: []EngagementRule{
			{ID: "pricing-page", DisplayName: "Pricing page view", Points: 10, Decay: Decay{HalfLife: month},
				Condition: pageView + ` && activity.url.matches("/pricing")`},
			{ID: "page-view", DisplayName: "Page view", Points: 1, Group: "web", Decay: Decay{HalfLife: month},
				Condition: pageView},
			{ID: "email-open", DisplayName: "Email open", Points: 2, Group: "email", Decay: Decay{HalfLife: 14 * 24 * time.Hour},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPEN`},
			{ID: "email-click", DisplayName: "Email click", Points: 5, Group: "email", Decay: Decay{HalfLife: month},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_CLICK`},
			{ID: "content-download", DisplayName: "Content download", Points: 8, Decay: Decay{HalfLife: month},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_CONTENT_DOWNLOAD`},
			{ID: "webinar-registered", DisplayName: "Webinar registration", Points: 5, Decay: Decay{HalfLife: month},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_WEBINAR_REGISTERED`},
			{ID: "webinar-attended", DisplayName: "Webinar attended", Points: 10, Decay: Decay{HalfLife: month},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_WEBINAR_ATTENDED`},
			{ID: "form-submitted", DisplayName: "Form submitted", Points: 8, Decay: Decay{HalfLife: month},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_FORM_SUBMITTED`},
			{ID: "demo-request", DisplayName: "Demo request", Points: 30, Decay: Decay{Window: 90 * 24 * time.Hour},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_DEMO_REQUEST`},
			{ID: "contact-request", DisplayName: "Contact request", Points: 20, Decay: Decay{Window: 90 * 24 * time.Hour},
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_CONTACT_REQUEST`},
			{ID: "unsubscribe", DisplayName: "Unsubscribe", Points: -20,
				Condition: `activity.type == ActivityType.ACTIVITY_TYPE_UNSUBSCRIBE`},
		},
		ExclusionRules: []ExclusionRule{
			{ID: "careers", DisplayName: "Careers and jobs pages",
				Condition: `activity.url.matches("/(careers|jobs)([/?#]|$)")`},
		},
		Groups: []RuleGroup{
			{ID: "firmographics", DisplayName: "Industry and size", Component: ComponentFit, MaxPoints: 25},
			{ID: "web", DisplayName: "Page views", Component: ComponentEngagement, MaxPoints: 15},
			{ID: "email", DisplayName: "Email engagement", Component: ComponentEngagement, MaxPoints: 15},
		},
		MQLThreshold:    50,
		HandRaiserTypes: DefaultHandRaisers,
		GradeBasis:      GradeBasisFit,
		GradeBands:      DefaultGradeBands,
	}
}
