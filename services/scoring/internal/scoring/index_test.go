package scoring

import (
	"testing"

	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
)

// TestTypeOnlyConditions checks that a condition the index answers without
// evaluating it gives what evaluating it gives, for every activity type.
func TestTypeOnlyConditions(t *testing.T) {
	env, err := celEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cond     string
		typeOnly bool
	}{
		{`activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW`, true},
		{`ActivityType.ACTIVITY_TYPE_EMAIL_OPEN == activity.type`, true},
		{`activity.type == 3`, true},
		{`activity.type in [ActivityType.ACTIVITY_TYPE_DEMO_REQUEST, ActivityType.ACTIVITY_TYPE_CONTACT_REQUEST]`, true},
		{`activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW || activity.type == ActivityType.ACTIVITY_TYPE_EMAIL_CLICK`, true},
		{`activity.type in [1, 2, 3] && activity.type in [2, 3, 4]`, true},
		{`activity.type == 99`, false}, // beyond the index
		{`activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW && activity.url.contains("/pricing")`, false},
		{`activity.type == ActivityType.ACTIVITY_TYPE_PAGE_VIEW || activity.url.contains("/pricing")`, false},
		{`activity.type != ActivityType.ACTIVITY_TYPE_PAGE_VIEW`, false},
		{`true`, false},
	} {
		t.Run(tc.cond, func(t *testing.T) {
			prg, set, only, msg := compileCondition(env, tc.cond)
			if msg != "" {
				t.Fatal(msg)
			}
			if only != tc.typeOnly {
				t.Fatalf("type only = %v, want %v", only, tc.typeOnly)
			}
			exact := []bool{only}
			ix := newRuleIndex([]typeSet{set}, exact)
			facts := NewFacts(LeadFacts{})
			for typ := range numActivityTypes + 2 {
				a := Activity{Type: typesv1.ActivityType(typ), URL: "https://acme.com/pricing", OccurTime: t0}
				want := holds(prg, &activation{lead: facts.val, activity: activityValue(a)})
				got, decided := ix.decided(0, typ)
				if decided != only {
					t.Fatalf("type %d: decided = %v, want %v", typ, decided, only)
				}
				if decided && got != want {
					t.Fatalf("type %d: index says %v, evaluation %v", typ, got, want)
				}
			}
		})
	}
}
