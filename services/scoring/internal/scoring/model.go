// Package scoring turns a lead's attributes and activities into fit and
// engagement scores under a versioned, CEL-based scoring model, explains
// every score to the milli-point, and decides when a lead qualifies as an
// MQL.
//
// The engine (Compile, Program) is pure: it never touches the database or
// the network, so one model's programs are compiled once and shared. The
// Service wires the engine to a Store and to the outbox.
package scoring

import (
	"time"

	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
)

// ModelState is where a model is in its life.
type ModelState string

// Model states.
const (
	StateDraft      ModelState = "draft"
	StatePublished  ModelState = "published"
	StateSuperseded ModelState = "superseded"
)

// Component is the part of a score a contribution counts towards.
type Component int

// Components, numbered as scoringv1.ScoreComponent.
const (
	ComponentFit        Component = 1
	ComponentEngagement Component = 2
	ComponentTotalCap   Component = 3
)

// GradeBasis selects the score grades are read from.
type GradeBasis int

// Grade bases, numbered as scoringv1.ScoringModel_GradeBasis.
const (
	GradeBasisFit   GradeBasis = 1
	GradeBasisTotal GradeBasis = 2
)

// Model is one version of a workspace's scoring rules.
type Model struct {
	Workspace   string
	ID          string
	DisplayName string
	Description string
	State       ModelState
	// Version is assigned at publication; 0 for a draft.
	Version int64
	Rules
	CreateTime    time.Time
	UpdateTime    time.Time
	PublishTime   *time.Time
	SupersedeTime *time.Time
	Etag          string
}

// Rules is the part of a model that decides scores: everything a
// publication freezes and a backtest evaluates.
type Rules struct {
	FitRules        []FitRule        `json:"fit_rules,omitempty"`
	EngagementRules []EngagementRule `json:"engagement_rules,omitempty"`
	ExclusionRules  []ExclusionRule  `json:"exclusion_rules,omitempty"`
	Groups          []RuleGroup      `json:"rule_groups,omitempty"`
	// MaxTotalPoints caps the total score; 0 means uncapped.
	MaxTotalPoints int64 `json:"max_total_points,omitempty"`
	MQLThreshold   int64 `json:"mql_threshold"`
	// HandRaiserTypes qualify a lead at once, whatever its score.
	HandRaiserTypes []typesv1.ActivityType `json:"hand_raiser_activity_types,omitempty"`
	GradeBasis      GradeBasis             `json:"grade_basis,omitempty"`
	// GradeBands are best first, with strictly decreasing MinScore.
	GradeBands []GradeBand `json:"grade_bands,omitempty"`
}

// FitRule awards points once when the lead's attributes match.
type FitRule struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name,omitempty"`
	Condition   string `json:"condition"`
	Points      int64  `json:"points"`
	Group       string `json:"group,omitempty"`
}

// EngagementRule awards points for every matching activity, decaying with
// the activity's age.
type EngagementRule struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name,omitempty"`
	Condition   string `json:"condition"`
	Points      int64  `json:"points"`
	Group       string `json:"group,omitempty"`
	Decay       Decay  `json:"decay,omitzero"`
}

// Decay makes engagement points fade. At most one of HalfLife and Window is
// set; neither means the points never fade.
type Decay struct {
	HalfLife time.Duration `json:"half_life,omitempty"`
	Window   time.Duration `json:"window,omitempty"`
}

// ExclusionRule names activities that never score.
type ExclusionRule struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name,omitempty"`
	Condition   string `json:"condition"`
}

// RuleGroup caps the summed points of the rules that name it.
type RuleGroup struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"display_name,omitempty"`
	Component   Component `json:"component"`
	// MaxPoints is in whole points; 0 means uncapped.
	MaxPoints int64 `json:"max_points,omitempty"`
}

// GradeBand is one grade and the lowest score that earns it.
type GradeBand struct {
	Grade    string `json:"grade"`
	MinScore int64  `json:"min_score"`
}

// DefaultGradeBands apply when a model is created without bands.
var DefaultGradeBands = []GradeBand{{"A", 75}, {"B", 50}, {"C", 25}, {"D", -1000000}}

// DefaultHandRaisers apply when a model is created without hand-raisers.
var DefaultHandRaisers = []typesv1.ActivityType{
	typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST,
	typesv1.ActivityType_ACTIVITY_TYPE_CONTACT_REQUEST,
}

// Activity is one recorded behaviour of a lead.
type Activity struct {
	ID         string
	Type       typesv1.ActivityType
	URL        string
	ContentID  string
	Properties map[string]string
	OccurTime  time.Time
}

// LeadFacts are the non-personal attributes rules read about a lead.
type LeadFacts struct {
	CompanyDomain    string            `json:"company_domain,omitempty"`
	Title            string            `json:"title,omitempty"`
	Seniority        string            `json:"seniority,omitempty"`
	Country          string            `json:"country,omitempty"`
	Industry         string            `json:"industry,omitempty"`
	EmployeeCount    int64             `json:"employee_count,omitempty"`
	Source           string            `json:"source,omitempty"`
	Campaign         string            `json:"campaign,omitempty"`
	CustomAttributes map[string]string `json:"custom_attributes,omitempty"`
	Unsubscribed     bool              `json:"unsubscribed,omitempty"`
}
