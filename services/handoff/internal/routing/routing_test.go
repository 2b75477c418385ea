package routing_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/services/handoff/internal/routing"
)

// teams is an in-memory TeamLoader that keeps team state between routings
// the way the store does, and counts assignments against capacity.
type teams map[string]*routing.Team

func (ts teams) load(id string) (*routing.Team, bool, error) {
	t, ok := ts[id]
	return t, ok, nil
}

// commit applies a decision as the store would.
func (ts teams) commit(d routing.Decision) {
	if d.Owner == "" {
		return
	}
	for _, t := range ts {
		for i := range t.Owners {
			if t.Owners[i].ID == d.Owner {
				t.Owners[i].PeriodAssigned++
				t.Owners[i].Open++
			}
		}
	}
	t := ts[d.Team]
	t.Cursor, t.Weights = d.Cursor, d.Weights
}

func owners(ids ...string) []routing.Owner {
	var out []routing.Owner
	for _, id := range ids {
		out = append(out, routing.Owner{ID: id, Available: true})
	}
	return out
}

func mustCompile(t *testing.T, p routing.Policy) *routing.Program {
	t.Helper()
	prog, err := routing.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

func TestRuleOrderAndFallback(t *testing.T) {
	policy := routing.Policy{
		Revision: 3,
		Rules: []routing.Rule{
			{ID: "off", Condition: "true", Team: "dach", Disabled: true},
			{ID: "dach-enterprise", Condition: `lead.country in ["DE", "AT", "CH"] && lead.employee_count >= 1000`, Team: "dach"},
			{ID: "hot", Condition: "lead.temperature == Temperature.TEMPERATURE_HOT", Team: "fast"},
			{ID: "dach-all", Condition: `lead.country in ["DE", "AT", "CH"]`, Team: "smb"},
			{ID: "empty-team", Condition: `lead.industry == "retail"`, Team: "nobody"},
		},
		FallbackTeam: "general",
	}
	prog := mustCompile(t, policy)
	for _, tc := range []struct {
		name       string
		lead       *handoffv1.RoutingLead
		ts         teams
		wantMethod routing.Method
		wantRule   string
		wantTeam   string
		wantOwner  string
	}{
		{"first matching rule wins", &handoffv1.RoutingLead{Country: "DE", EmployeeCount: 5000, Temperature: typesv1.Temperature_TEMPERATURE_HOT},
			nil, routing.MethodRule, "dach-enterprise", "dach", "anna"},
		{"a later rule when the first does not match", &handoffv1.RoutingLead{Country: "DE", EmployeeCount: 10, Temperature: typesv1.Temperature_TEMPERATURE_HOT},
			nil, routing.MethodRule, "hot", "fast", "finn"},
		{"enum-free rule further down", &handoffv1.RoutingLead{Country: "CH"},
			nil, routing.MethodRule, "dach-all", "smb", "sara"},
		{"fallback when nothing matches", &handoffv1.RoutingLead{Country: "US"},
			nil, routing.MethodFallback, "", "general", "gus"},
		{"a matching rule whose team has nobody eligible is skipped", &handoffv1.RoutingLead{Country: "US", Industry: "retail"},
			nil, routing.MethodFallback, "", "general", "gus"},
		{"queued with the fallback team when it has nobody", &handoffv1.RoutingLead{Country: "US"},
			teams{"general": {ID: "general", Owners: []routing.Owner{{ID: "gus"}}}}, routing.MethodQueue, "", "general", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := teams{
				"dach":    {ID: "dach", Owners: owners("anna")},
				"fast":    {ID: "fast", Owners: owners("finn")},
				"smb":     {ID: "smb", Owners: owners("sara")},
				"nobody":  {ID: "nobody"},
				"general": {ID: "general", Owners: owners("gus")},
			}
			for id, team := range tc.ts {
				ts[id] = team
			}
			d, err := prog.Route(tc.lead, ts.load)
			if err != nil {
				t.Fatal(err)
			}
			if d.Method != tc.wantMethod || d.Rule != tc.wantRule || d.Team != tc.wantTeam || d.Owner != tc.wantOwner {
				t.Fatalf("decision = %+v, want method %v rule %q team %q owner %q", d, tc.wantMethod, tc.wantRule, tc.wantTeam, tc.wantOwner)
			}
			if d.Revision != 3 || d.Explanation == "" {
				t.Fatalf("decision lacks revision or explanation: %+v", d)
			}
		})
	}

	t.Run("queue without a fallback team", func(t *testing.T) {
		prog := mustCompile(t, routing.Policy{Rules: policy.Rules})
		d, err := prog.Route(&handoffv1.RoutingLead{Country: "US"}, teams{}.load)
		if err != nil {
			t.Fatal(err)
		}
		if d.Method != routing.MethodQueue || d.Team != "" || d.Owner != "" {
			t.Fatalf("decision = %+v, want queued without team", d)
		}
	})
}

func TestDeterministic(t *testing.T) {
	prog := mustCompile(t, routing.Policy{Rules: []routing.Rule{{ID: "all", Condition: "true", Team: "t"}}})
	lead := &handoffv1.RoutingLead{Country: "FR"}
	var first routing.Decision
	for i := range 10 {
		ts := teams{"t": {ID: "t", Cursor: "b", Owners: owners("c", "a", "b", "d")}}
		d, err := prog.Route(lead, ts.load)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = d
			continue
		}
		if d.Owner != first.Owner || d.Explanation != first.Explanation {
			t.Fatalf("run %d chose %q (%s), first chose %q (%s)", i, d.Owner, d.Explanation, first.Owner, first.Explanation)
		}
	}
	if first.Owner != "c" {
		t.Fatalf("owner = %q, want c (next after cursor b)", first.Owner)
	}
}

func TestStrategies(t *testing.T) {
	prog := mustCompile(t, routing.Policy{Rules: []routing.Rule{{ID: "all", Condition: "true", Team: "t"}}})
	route := func(t *testing.T, ts teams, n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			d, err := prog.Route(&handoffv1.RoutingLead{}, ts.load)
			if err != nil {
				t.Fatal(err)
			}
			got[d.Owner]++
			ts.commit(d)
		}
		return got
	}

	t.Run("round-robin is fair over 100 leads", func(t *testing.T) {
		ts := teams{"t": {ID: "t", Strategy: routing.RoundRobin, Owners: owners("a", "b", "c", "d")}}
		got := route(t, ts, 100)
		for _, id := range []string{"a", "b", "c", "d"} {
			if got[id] != 25 {
				t.Fatalf("round-robin gave %v, want 25 each", got)
			}
		}
	})

	t.Run("round-robin skips unavailable owners", func(t *testing.T) {
		o := owners("a", "b", "c")
		o[1].Available = false // out of office or disabled
		ts := teams{"t": {ID: "t", Owners: o}}
		got := route(t, ts, 100)
		if got["b"] != 0 || got["a"] != 50 || got["c"] != 50 {
			t.Fatalf("got %v, want a and c 50 each, b none", got)
		}
	})

	t.Run("capacity is respected", func(t *testing.T) {
		o := owners("a", "b", "c")
		o[0].MaxLeads, o[1].MaxLeads = 10, 20
		ts := teams{"t": {ID: "t", Owners: o}}
		got := route(t, ts, 100)
		if got["a"] != 10 || got["b"] != 20 || got["c"] != 70 {
			t.Fatalf("got %v, want a 10, b 20, c 70", got)
		}
	})

	t.Run("everyone at capacity queues", func(t *testing.T) {
		o := owners("a")
		o[0].MaxLeads = 3
		ts := teams{"t": {ID: "t", Owners: o}}
		got := route(t, ts, 5)
		if got["a"] != 3 || got[""] != 2 {
			t.Fatalf("got %v, want a 3 and 2 queued", got)
		}
	})

	t.Run("weighted by capacity", func(t *testing.T) {
		o := owners("a", "b", "c")
		o[0].MaxLeads, o[1].MaxLeads, o[2].MaxLeads = 100, 200, 0 // c weighs as the largest
		ts := teams{"t": {ID: "t", Strategy: routing.WeightedByCapacity, Owners: o}}
		got := route(t, ts, 100)
		if got["a"] != 20 || got["b"] != 40 || got["c"] != 40 {
			t.Fatalf("got %v, want a 20, b 40, c 40", got)
		}
	})

	t.Run("least-loaded", func(t *testing.T) {
		o := owners("a", "b", "c")
		o[0].Open, o[1].Open, o[2].Open = 5, 2, 2
		ts := teams{"t": {ID: "t", Strategy: routing.LeastLoaded, Owners: o}}
		got := route(t, ts, 7)
		// b and c alternate up to 5 (6 leads), then the tie of three goes in turn.
		if got["a"] != 1 || got["b"] != 3 || got["c"] != 3 {
			t.Fatalf("got %v, want a 1, b 3, c 3", got)
		}
	})
}

func TestOwnerCondition(t *testing.T) {
	prog := mustCompile(t, routing.Policy{Rules: []routing.Rule{{
		ID: "ent", Condition: "lead.employee_count >= 1000", Team: "t",
		OwnerCondition: `owner.attributes["segment"] == "enterprise"`,
	}}})
	o := owners("a", "b", "c")
	o[1].Attributes = map[string]string{"segment": "enterprise"}
	ts := teams{"t": {ID: "t", Owners: o}}
	for range 3 {
		d, err := prog.Route(&handoffv1.RoutingLead{EmployeeCount: 5000}, ts.load)
		if err != nil {
			t.Fatal(err)
		}
		if d.Owner != "b" {
			t.Fatalf("owner = %q, want b (the only enterprise owner)", d.Owner)
		}
		ts.commit(d)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, condition, ownerCondition, wantField, wantText string
	}{
		{"syntax", "lead.country ==", "", "routing_policy.rules[1].condition", `rule "broken": 1:`},
		{"unknown field", "lead.colour == 'red'", "", "routing_policy.rules[1].condition", "colour"},
		{"not bool", "lead.employee_count + 1", "", "routing_policy.rules[1].condition", "bool"},
		{"lead condition reads owner", `owner.id == "a"`, "", "routing_policy.rules[1].condition", "owner"},
		{"owner condition", "true", "owner.nope", "routing_policy.rules[1].owner_condition", `rule "broken"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := routing.Compile(routing.Policy{Rules: []routing.Rule{
				{ID: "fine", Condition: "true", Team: "t"},
				{ID: "broken", Condition: tc.condition, OwnerCondition: tc.ownerCondition, Team: "t"},
			}})
			var ae *apperr.Error
			if !errors.As(err, &ae) || ae.Kind() != apperr.KindInvalidArgument {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
			fv := ae.FieldViolations()
			if len(fv) != 1 || fv[0].Field != tc.wantField || !strings.Contains(fv[0].Description, tc.wantText) {
				t.Fatalf("violations = %+v, want %s containing %q", fv, tc.wantField, tc.wantText)
			}
		})
	}
}

func ExampleProgram_Route() {
	prog, _ := routing.Compile(routing.Policy{Revision: 1, Rules: []routing.Rule{
		{ID: "dach", Condition: `lead.country in ["DE", "AT", "CH"]`, Team: "dach"},
	}})
	ts := teams{"dach": {ID: "dach", Strategy: routing.LeastLoaded, Owners: []routing.Owner{
		{ID: "jane", Available: true, Open: 2}, {ID: "joe", Available: true, Open: 4},
	}}}
	d, _ := prog.Route(&handoffv1.RoutingLead{Country: "AT"}, ts.load)
	fmt.Println(d.Explanation)
	// Output: rule "dach" matched; team "dach" is least-loaded; owners/jane had 2 open handoffs, the fewest
}
