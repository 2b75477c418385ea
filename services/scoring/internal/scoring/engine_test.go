package scoring

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"

	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func mustCompile(t testing.TB, r Rules) *Program {
	t.Helper()
	p, err := Compile(r)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p
}

// classic is the example: pricing page +10, email open +5, careers
// page excluded.
var classic = Rules{
	EngagementRules: []EngagementRule{
		{ID: "pricing", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW && activity.url.matches("^https://[^/]+/pricing")`, Points: 10},
		{ID: "email-open", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPEN`, Points: 5},
		{ID: "any-page", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW && activity.url.contains("/careers")`, Points: 3},
	},
	ExclusionRules: []ExclusionRule{{ID: "careers", Condition: `activity.url.matches("/careers")`}},
	MQLThreshold:   50,
	GradeBasis:     GradeBasisTotal,
	GradeBands:     DefaultGradeBands,
}

func TestClassicExample(t *testing.T) {
	p := mustCompile(t, classic)
	for _, tc := range []struct {
		name string
		a    Activity
		want int64
	}{
		{"pricing page", Activity{ID: "a1", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: "https://acme.com/pricing"}, 10},
		{"email open", Activity{ID: "a2", Type: typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN}, 5},
		{"careers page", Activity{ID: "a3", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: "https://acme.com/careers/eng"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.OccurTime = t0
			s := p.Evaluate(LeadFacts{}, []Activity{tc.a}, t0)
			if s.Total != tc.want || s.TotalMilli != tc.want*1000 {
				t.Fatalf("total = %d (%d milli), want %d", s.Total, s.TotalMilli, tc.want)
			}
		})
	}
	t.Run("all together", func(t *testing.T) {
		s := p.Evaluate(LeadFacts{}, []Activity{
			{ID: "a1", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: "https://acme.com/pricing", OccurTime: t0},
			{ID: "a2", Type: typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN, OccurTime: t0},
			{ID: "a3", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: "https://acme.com/careers", OccurTime: t0},
		}, t0)
		if s.Total != 15 || s.Engagement != 15 || s.Fit != 0 || len(s.Contributions) != 2 {
			t.Fatalf("score = %+v", s)
		}
		checkSums(t, s)
	})
}

func TestDecay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		decay Decay
		age   time.Duration
		want  int64 // milli-points of a 10-point rule
	}{
		{"30-day-old under 30-day half-life counts half", Decay{HalfLife: 30 * day}, 30 * day, 5000},
		{"60 days under 30-day half-life counts a quarter", Decay{HalfLife: 30 * day}, 60 * day, 2500},
		{"fresh counts whole", Decay{HalfLife: 30 * day}, 0, 10000},
		{"10 days under 30-day half-life", Decay{HalfLife: 30 * day}, 10 * day, 7937}, // 10000 * 0.5^(1/3) = 7937.005
		{"inside the window", Decay{Window: 7 * day}, 7*day - time.Second, 10000},
		{"at the window's end", Decay{Window: 7 * day}, 7 * day, 0},
		{"no decay", Decay{}, 1000 * day, 10000},
		{"future activity counts whole", Decay{HalfLife: day}, -day, 10000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, Rules{EngagementRules: []EngagementRule{
				{ID: "open", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPEN`, Points: 10, Decay: tc.decay},
			}})
			at := t0.Add(tc.age)
			if tc.age < 0 {
				// The activity is in the future of the reading only in decay terms.
				at = t0
			}
			a := Activity{ID: "a", Type: typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN, OccurTime: t0}
			if tc.age < 0 {
				a.OccurTime = t0.Add(-tc.age)
				at = a.OccurTime
			}
			s := p.Score(nil, []Match{p.MatchActivity(NewFacts(LeadFacts{}), a)}, at)
			if s.EngagementMilli != tc.want {
				t.Fatalf("engagement = %d milli, want %d", s.EngagementMilli, tc.want)
			}
			checkSums(t, s)
		})
	}
}

func TestInvalidConditionRejectedWithPosition(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rules     Rules
		field     string
		wantInMsg string
	}{
		{"undeclared variable", Rules{FitRules: []FitRule{
			{ID: "ok", Condition: `lead.employee_count > 10`, Points: 1},
			{ID: "typo", Condition: `lead.industry == "saas" && leed.country == "DE"`, Points: 1},
		}}, "scoring_model.fit_rules[1].condition", `rule "typo": 1:28: undeclared reference to 'leed'`},
		{"syntax error on line 2", Rules{EngagementRules: []EngagementRule{
			{ID: "broken", Condition: "activity.url.contains(\"/x\") &&\n  activity.type ==", Points: 1},
		}}, "scoring_model.engagement_rules[0].condition", `rule "broken": 2:`},
		{"not a bool", Rules{ExclusionRules: []ExclusionRule{{ID: "str", Condition: `activity.url`}}},
			"scoring_model.exclusion_rules[0].condition", `must be of type bool`},
		{"unknown field", Rules{FitRules: []FitRule{{ID: "f", Condition: `lead.email == "x"`}}},
			"scoring_model.fit_rules[0].condition", `rule "f": 1:5: undefined field 'email'`},
		{"too expensive", Rules{FitRules: []FitRule{{ID: "slow", Condition: `lead.custom_attributes.all(k, lead.custom_attributes.all(j, lead.custom_attributes[k].contains(lead.custom_attributes[j])))`}}},
			"scoring_model.fit_rules[0].condition", `too expensive`},
		{"group of the wrong component", Rules{
			FitRules: []FitRule{{ID: "f", Condition: `true`, Group: "eng"}},
			Groups:   []RuleGroup{{ID: "eng", Component: ComponentEngagement}},
		}, "scoring_model.fit_rules[0].group", `another score component`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.rules)
			var ae *apperr.Error
			if !errors.As(err, &ae) || ae.Kind() != apperr.KindInvalidArgument {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
			fv := ae.FieldViolations()
			if len(fv) != 1 || fv[0].Field != tc.field || !strings.Contains(fv[0].Description, tc.wantInMsg) {
				t.Fatalf("violations = %+v, want %s containing %q", fv, tc.field, tc.wantInMsg)
			}
		})
	}
}

func TestCapsAndExplanation(t *testing.T) {
	p := mustCompile(t, Rules{
		FitRules: []FitRule{
			{ID: "saas", Condition: `lead.industry == "software"`, Points: 20, Group: "firmo"},
			{ID: "big", Condition: `lead.employee_count >= 200`, Points: 15, Group: "firmo"},
			{ID: "vp", Condition: `lead.seniority in ["vp", "c_level"]`, Points: 10},
			{ID: "student", Condition: `lead.title.lowerAscii().contains("student")`, Points: -30},
		},
		EngagementRules: []EngagementRule{
			{ID: "open", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_OPEN`, Points: 3, Group: "email", Decay: Decay{HalfLife: 7 * day}},
			{ID: "click", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_CLICK`, Points: 7, Group: "email", Decay: Decay{HalfLife: 7 * day}},
			{ID: "unsub", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_UNSUBSCRIBE`, Points: -10},
		},
		Groups: []RuleGroup{
			{ID: "firmo", Component: ComponentFit, MaxPoints: 25},
			{ID: "email", Component: ComponentEngagement, MaxPoints: 10},
		},
		MaxTotalPoints: 40,
		GradeBands:     DefaultGradeBands,
	})
	lead := LeadFacts{Industry: "software", EmployeeCount: 500, Seniority: "vp", Title: "VP Sales"}
	var acts []Activity
	for i := range 5 {
		acts = append(acts, Activity{ID: fmt.Sprintf("o%d", i), Type: typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN, OccurTime: t0.Add(-time.Duration(i) * day)})
	}
	acts = append(acts, Activity{ID: "c1", Type: typesv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK, OccurTime: t0.Add(-3 * day)})

	s := p.Evaluate(lead, acts, t0)
	checkSums(t, s)
	// Fit: 20 + 15 capped to 25, + 10 = 35. Engagement: opens and a click
	// well above 10, capped to 10. Total 45 capped to 40.
	if s.Fit != 35 || s.FitMilli != 35000 {
		t.Fatalf("fit = %d (%d milli), want 35", s.Fit, s.FitMilli)
	}
	if s.EngagementMilli != 10000 {
		t.Fatalf("engagement = %d milli, want 10000", s.EngagementMilli)
	}
	if s.Total != 40 || s.TotalMilli != 40000 {
		t.Fatalf("total = %d (%d milli), want 40", s.Total, s.TotalMilli)
	}
	if s.Grade != "C" { // fit basis: 35
		t.Fatalf("grade = %q, want C", s.Grade)
	}
	kinds := map[ContributionKind]int{}
	for _, c := range s.Contributions {
		kinds[c.Kind]++
	}
	if kinds[KindGroupCap] != 2 || kinds[KindTotalCap] != 1 {
		t.Fatalf("cap lines = %v", kinds)
	}

	t.Run("negative points", func(t *testing.T) {
		s := p.Evaluate(LeadFacts{Title: "Student"}, []Activity{{ID: "u", Type: typesv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE, OccurTime: t0}}, t0)
		checkSums(t, s)
		if s.Fit != -30 || s.Engagement != -10 || s.Total != -40 || s.Grade != "D" {
			t.Fatalf("score = %+v", s)
		}
	})
}

// TestExplanationSumsExactly scores many decayed activities whose lines
// round separately and checks the lines still add up to the totals.
func TestExplanationSumsExactly(t *testing.T) {
	p := mustCompile(t, Rules{
		EngagementRules: []EngagementRule{
			{ID: "view", Condition: `activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW`, Points: 3, Decay: Decay{HalfLife: 5*day + 7*time.Hour}},
			{ID: "pricing", Condition: `activity.url.endsWith("/pricing")`, Points: 7, Decay: Decay{HalfLife: 11 * day}},
			{ID: "recent", Condition: `activity.properties["campaign"] == "q4"`, Points: 2, Decay: Decay{Window: 14 * day}},
		},
	})
	var acts []Activity
	for i := range 97 {
		a := Activity{ID: fmt.Sprintf("a%03d", i), Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW,
			OccurTime: t0.Add(-time.Duration(i) * 7 * time.Hour)}
		if i%3 == 0 {
			a.URL = "https://x.io/pricing"
		}
		if i%4 == 0 {
			a.Properties = map[string]string{"campaign": "q4"}
		}
		acts = append(acts, a)
	}
	s := p.Evaluate(LeadFacts{}, acts, t0)
	checkSums(t, s)
	if s.TotalMilli%1000 == 0 {
		t.Fatalf("total %d milli is whole: the test should exercise rounding", s.TotalMilli)
	}
	// Newest first.
	for i := 1; i < len(s.Contributions); i++ {
		if s.Contributions[i].ActivityTime.After(s.Contributions[i-1].ActivityTime) {
			t.Fatalf("contribution %d is newer than %d", i, i-1)
		}
	}
}

func checkSums(t *testing.T, s Score) {
	t.Helper()
	var fit, eng, total int64
	for _, c := range s.Contributions {
		if c.MilliPoints == 0 {
			t.Errorf("zero contribution listed: %+v", c)
		}
		switch c.Component {
		case ComponentFit:
			fit += c.MilliPoints
		case ComponentEngagement:
			eng += c.MilliPoints
		}
		total += c.MilliPoints
	}
	if fit != s.FitMilli || eng != s.EngagementMilli || total != s.TotalMilli {
		t.Fatalf("lines sum to fit %d, engagement %d, total %d; score says %d, %d, %d",
			fit, eng, total, s.FitMilli, s.EngagementMilli, s.TotalMilli)
	}
	if s.Total != WholePoints(s.TotalMilli) || s.Fit != WholePoints(s.FitMilli) || s.Engagement != WholePoints(s.EngagementMilli) {
		t.Fatalf("whole points do not match milli-points: %+v", s)
	}
}

func TestWholePoints(t *testing.T) {
	for _, tc := range []struct{ milli, want int64 }{
		{0, 0}, {499, 0}, {500, 1}, {1499, 1}, {1500, 2}, {-499, 0}, {-500, 0}, {-501, -1}, {-1500, -1}, {-1501, -2},
	} {
		if got := WholePoints(tc.milli); got != tc.want {
			t.Errorf("WholePoints(%d) = %d, want %d", tc.milli, got, tc.want)
		}
	}
}

func TestHandRaiser(t *testing.T) {
	p := mustCompile(t, Rules{HandRaiserTypes: DefaultHandRaisers,
		ExclusionRules: []ExclusionRule{{ID: "test", Condition: `activity.properties["test"] == "true"`}}})
	facts := NewFacts(LeadFacts{})
	demo := Activity{ID: "d", Type: typesv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST, OccurTime: t0}
	if !p.IsHandRaiser(p.MatchActivity(facts, demo)) {
		t.Fatal("demo request is not a hand-raiser")
	}
	demo.Properties = map[string]string{"test": "true"}
	if p.IsHandRaiser(p.MatchActivity(facts, demo)) {
		t.Fatal("excluded demo request is a hand-raiser")
	}
}

// benchModel is a 50-rule model: 15 fit, 30 engagement, 5 exclusion rules.
func benchModel() Rules {
	var r Rules
	for i := range 15 {
		r.FitRules = append(r.FitRules, FitRule{ID: fmt.Sprintf("fit-%d", i), Points: 5,
			Condition: fmt.Sprintf(`lead.industry == "industry-%d" && lead.employee_count >= %d`, i, i*50)})
	}
	for i := range 30 {
		var cond string
		switch i % 3 {
		case 0:
			cond = fmt.Sprintf(`activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW && activity.url.matches("^https://[^/]+/page-%d")`, i)
		case 1:
			cond = fmt.Sprintf(`activity.type == ActivityType.ACTIVITY_TYPE_CONTENT_DOWNLOAD && activity.content_id == "asset-%d"`, i)
		default:
			cond = fmt.Sprintf(`activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_CLICK && activity.properties["campaign"] == "c-%d"`, i)
		}
		r.EngagementRules = append(r.EngagementRules, EngagementRule{ID: fmt.Sprintf("eng-%d", i), Points: 4,
			Condition: cond, Decay: Decay{HalfLife: 30 * day}})
	}
	for i := range 5 {
		r.ExclusionRules = append(r.ExclusionRules, ExclusionRule{ID: fmt.Sprintf("excl-%d", i),
			Condition: fmt.Sprintf(`activity.url.contains("/excluded-%d")`, i)})
	}
	r.GradeBands = DefaultGradeBands
	return r
}

// BenchmarkApplyActivity measures applying one new activity to a lead's
// score under a 50-rule model: matching it against the exclusion and
// engagement rules, then re-totalling the lead's ten earlier matches with
// decay as of now.
func BenchmarkApplyActivity(b *testing.B) {
	p := mustCompile(b, benchModel())
	facts := NewFacts(LeadFacts{Industry: "industry-3", EmployeeCount: 400})
	fit := p.FitMatches(facts)
	var earlier []Match
	for i := range 10 {
		earlier = append(earlier, p.MatchActivity(facts, Activity{ID: fmt.Sprint(i),
			Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: fmt.Sprintf("https://acme.com/page-%d", i*3%30),
			OccurTime: t0.Add(-time.Duration(i) * day)}))
	}
	a := Activity{ID: "new", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: "https://acme.com/page-9/pricing",
		Properties: map[string]string{"utm_source": "newsletter"}, OccurTime: t0}
	b.ReportAllocs()
	// Wall time suffers from whatever else the machine runs; process CPU
	// time (which includes the garbage collector's share) is the figure the
	// target is stated in.
	cpu0 := processCPU(b)
	for b.Loop() {
		m := p.MatchActivity(facts, a)
		s := p.Totals(fit, append(earlier[:10:10], m), t0)
		if s.Total == 0 {
			b.Fatal("no score")
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestDefaultRulesCompile(t *testing.T) {
	p := mustCompile(t, DefaultRules())
	s := p.Evaluate(LeadFacts{Industry: "Software", EmployeeCount: 120, Title: "VP Marketing", Seniority: Seniority("VP Marketing")},
		[]Activity{
			{ID: "1", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: "https://acme.com/pricing", OccurTime: t0},
			{ID: "2", Type: typesv1.ActivityType_ACTIVITY_TYPE_PAGE_VIEW, URL: "https://acme.com/careers/", OccurTime: t0},
		}, t0)
	checkSums(t, s)
	// Fit: industry 15 + size 10 + VP 15 = 40; engagement: pricing 10 + view 1.
	if s.Fit != 40 || s.Engagement != 11 || s.Grade != "C" {
		t.Fatalf("score = %d fit, %d engagement, grade %s", s.Fit, s.Engagement, s.Grade)
	}
}

func TestSeniority(t *testing.T) {
	for title, want := range map[string]string{
		"": "", "CEO": "c_level", "Co-Founder & CTO": "c_level", "Vice President, Sales": "vp", "VP Marketing": "vp",
		"Head of Growth": "vp", "Director of IT": "director", "Marketing Manager": "manager", "Software Engineer": "individual",
	} {
		if got := Seniority(title); got != want {
			t.Errorf("Seniority(%q) = %q, want %q", title, got, want)
		}
	}
}
