// Package routing decides who gets a qualified lead: the first matching rule
// of the workspace's ordered policy names a team, and the team's strategy
// picks one of its eligible owners. It is pure: the same policy, lead and
// team state always give the same owner, and every decision explains itself.
package routing

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
)

// Strategy picks one owner among a team's eligible owners. The values match
// leadflow.handoff.v1.AssignmentStrategy.
type Strategy int

// The assignment strategies.
const (
	RoundRobin         Strategy = 1
	WeightedByCapacity Strategy = 2
	LeastLoaded        Strategy = 3
)

// String names the strategy in explanations.
func (s Strategy) String() string {
	switch s {
	case WeightedByCapacity:
		return "weighted by capacity"
	case LeastLoaded:
		return "least-loaded"
	}
	return "round-robin"
}

// Method is the path a decision took. The values match
// leadflow.handoff.v1.RoutingDecision.Method.
type Method int

// The routing methods.
const (
	MethodRule        Method = 1
	MethodFallback    Method = 2
	MethodQueue       Method = 3
	MethodManual      Method = 4
	MethodSLAReassign Method = 5
)

// Rule sends the leads matching Condition to Team.
type Rule struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name,omitempty"`
	// Condition is a CEL bool expression over `lead` (a RoutingLead).
	Condition string `json:"condition"`
	Team      string `json:"team"`
	// OwnerCondition, optional, is a CEL bool expression over `owner` (an
	// OwnerFacts) and `lead` that narrows the team's owners.
	OwnerCondition string `json:"owner_condition,omitempty"`
	Disabled       bool   `json:"disabled,omitempty"`
}

// Policy is a workspace's ordered rules and fallback team.
type Policy struct {
	Rules        []Rule
	FallbackTeam string
	Revision     int64
}

// Owner is what routing knows of one team member.
type Owner struct {
	ID         string
	Teams      []string
	Attributes map[string]string
	// MaxLeads caps the leads per capacity period; 0 means no limit.
	MaxLeads int
	// PeriodAssigned counts the leads assigned in the current period.
	PeriodAssigned int
	// Open counts the owner's open handoffs.
	Open int
	// Available is false for disabled and out-of-office owners.
	Available bool
}

// Team is one team with its members and its assignment state.
type Team struct {
	ID       string
	Strategy Strategy
	Owners   []Owner
	// Cursor is the last owner picked, where round-robin continues.
	Cursor string
	// Weights are the smooth weighted round-robin's current weights.
	Weights map[string]int64
}

// TeamLoader returns a team with its members, or ok=false when it is gone.
type TeamLoader func(id string) (team *Team, ok bool, err error)

// Decision is how a lead was placed.
type Decision struct {
	Method   Method
	Rule     string
	Revision int64
	Strategy Strategy
	// Team is empty when the lead was queued without a team.
	Team string
	// Owner is empty when the lead was queued.
	Owner string
	// Explanation is one sentence for people.
	Explanation string
	// Cursor and Weights are the team's new assignment state, to be stored
	// when Owner is set.
	Cursor  string
	Weights map[string]int64
}

// Program is a compiled policy, safe for concurrent use.
type Program struct {
	policy     Policy
	conds      []cel.Program
	ownerConds []cel.Program // nil entries for rules without one
}

// maxCost bounds one condition's evaluation, in CEL cost units.
const maxCost = 1_000_000

var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Types(&handoffv1.RoutingLead{}, &handoffv1.OwnerFacts{}),
		// Enum names such as Temperature.TEMPERATURE_HOT resolve here.
		cel.Container("leadflow.types.v1"),
		cel.Variable("lead", cel.ObjectType("leadflow.handoff.v1.RoutingLead")),
		cel.Variable("owner", cel.ObjectType("leadflow.handoff.v1.OwnerFacts")),
		ext.Strings(),
	)
})

// Compile type-checks every rule's conditions. A broken one fails with
// INVALID_ARGUMENT whose field names the rule's position and whose
// description names the rule id and the line:column.
func Compile(p Policy) (*Program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	prog := &Program{policy: p}
	var violations []apperr.Option
	for i, r := range p.Rules {
		cond, msg := compile(env, r.Condition, false)
		if msg != "" {
			violations = append(violations, apperr.Field(
				fmt.Sprintf("routing_policy.rules[%d].condition", i), fmt.Sprintf("rule %q: %s", r.ID, msg)))
		}
		prog.conds = append(prog.conds, cond)
		var ownerCond cel.Program
		if strings.TrimSpace(r.OwnerCondition) != "" {
			ownerCond, msg = compile(env, r.OwnerCondition, true)
			if msg != "" {
				violations = append(violations, apperr.Field(
					fmt.Sprintf("routing_policy.rules[%d].owner_condition", i), fmt.Sprintf("rule %q: %s", r.ID, msg)))
			}
		}
		prog.ownerConds = append(prog.ownerConds, ownerCond)
	}
	if len(violations) > 0 {
		return nil, apperr.InvalidArgument("invalid routing condition", violations...)
	}
	return prog, nil
}

// compile returns the program for src, or a message naming the line:column
// of the first problem. Lead conditions may not read `owner`.
func compile(env *cel.Env, src string, ownerAllowed bool) (cel.Program, string) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		e := iss.Errors()[0]
		return nil, fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Sprintf("1:1: condition must be of type bool, not %s", ast.OutputType())
	}
	if !ownerAllowed && readsOwner(ast) {
		return nil, "1:1: a lead condition cannot read `owner`; use owner_condition"
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(maxCost))
	if err != nil {
		return nil, fmt.Sprintf("1:1: %v", err)
	}
	return prg, ""
}

func readsOwner(ast *cel.Ast) bool {
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if ref.Name == "owner" {
			return true
		}
	}
	return false
}

// Policy returns the policy the program was compiled from.
func (p *Program) Policy() Policy { return p.policy }

// Route places lead. Rules are tried in order; the first enabled rule whose
// condition holds and whose team has an eligible owner wins. Then the
// fallback team; then the queue (with the fallback team, if any).
func (p *Program) Route(lead *handoffv1.RoutingLead, load TeamLoader) (Decision, error) {
	var notes []string
	for i, r := range p.policy.Rules {
		if r.Disabled {
			continue
		}
		ok, err := holds(p.conds[i], map[string]any{"lead": lead})
		if err != nil {
			notes = append(notes, fmt.Sprintf("rule %q failed to evaluate (%v)", r.ID, err))
			continue
		}
		if !ok {
			continue
		}
		team, found, err := load(r.Team)
		if err != nil {
			return Decision{}, err
		}
		if !found {
			notes = append(notes, fmt.Sprintf("rule %q matched but team %q is gone", r.ID, r.Team))
			continue
		}
		d, picked, err := Pick(team, lead, nil, p.ownerConds[i])
		if err != nil {
			return Decision{}, err
		}
		if !picked {
			notes = append(notes, fmt.Sprintf("rule %q matched but team %q has no eligible owner", r.ID, r.Team))
			continue
		}
		d.Method, d.Rule, d.Revision = MethodRule, r.ID, p.policy.Revision
		d.Explanation = join(notes, fmt.Sprintf("rule %q matched; %s", r.ID, d.Explanation))
		return d, nil
	}
	if len(notes) == 0 {
		notes = append(notes, "no rule matched")
	}
	if fb := p.policy.FallbackTeam; fb != "" {
		team, found, err := load(fb)
		if err != nil {
			return Decision{}, err
		}
		if found {
			d, picked, err := Pick(team, lead, nil, nil)
			if err != nil {
				return Decision{}, err
			}
			if picked {
				d.Method, d.Revision = MethodFallback, p.policy.Revision
				d.Explanation = join(notes, "fallback "+d.Explanation)
				return d, nil
			}
			notes = append(notes, fmt.Sprintf("fallback team %q has no eligible owner", fb))
			return Decision{Method: MethodQueue, Revision: p.policy.Revision, Team: fb,
				Explanation: join(notes, "queued")}, nil
		}
		notes = append(notes, fmt.Sprintf("fallback team %q is gone", fb))
	}
	return Decision{Method: MethodQueue, Revision: p.policy.Revision,
		Explanation: join(notes, "queued")}, nil
}

// Pick chooses an owner within team by its strategy among the owners that
// are available, under capacity, not in exclude and (when ownerCond is set)
// match it. picked is false when nobody is eligible.
func Pick(team *Team, lead *handoffv1.RoutingLead, exclude map[string]bool, ownerCond cel.Program) (Decision, bool, error) {
	var eligible []Owner
	for _, o := range team.Owners {
		if !o.Available || exclude[o.ID] || (o.MaxLeads > 0 && o.PeriodAssigned >= o.MaxLeads) {
			continue
		}
		if ownerCond != nil {
			ok, err := holds(ownerCond, map[string]any{"lead": lead, "owner": &handoffv1.OwnerFacts{
				Id: o.ID, Attributes: o.Attributes, Teams: o.Teams,
			}})
			if err != nil || !ok {
				continue
			}
		}
		eligible = append(eligible, o)
	}
	if len(eligible) == 0 {
		return Decision{}, false, nil
	}
	slices.SortFunc(eligible, func(a, b Owner) int { return strings.Compare(a.ID, b.ID) })
	strategy := team.Strategy
	if strategy != WeightedByCapacity && strategy != LeastLoaded {
		strategy = RoundRobin
	}
	d := Decision{Strategy: strategy, Team: team.ID, Weights: team.Weights}
	var why string
	switch strategy {
	case RoundRobin:
		o := nextAfter(eligible, team.Cursor)
		d.Owner = o.ID
		why = fmt.Sprintf("owners/%s is next in turn", o.ID)
	case LeastLoaded:
		fewest := eligible[0].Open
		for _, o := range eligible {
			fewest = min(fewest, o.Open)
		}
		var tied []Owner
		for _, o := range eligible {
			if o.Open == fewest {
				tied = append(tied, o)
			}
		}
		o := nextAfter(tied, team.Cursor)
		d.Owner = o.ID
		why = fmt.Sprintf("owners/%s had %d open handoffs, the fewest", o.ID, o.Open)
	case WeightedByCapacity:
		o, weights := smoothWeighted(eligible, team.Weights)
		d.Owner, d.Weights = o.ID, weights
		why = fmt.Sprintf("owners/%s is next by capacity weight %d", o.ID, weightOf(o, eligible))
	}
	d.Cursor = d.Owner
	d.Explanation = fmt.Sprintf("team %q is %s; %s", team.ID, strategy, why)
	return d, true, nil
}

// nextAfter returns the first owner (sorted by id) after cursor, wrapping.
func nextAfter(sorted []Owner, cursor string) Owner {
	for _, o := range sorted {
		if o.ID > cursor {
			return o
		}
	}
	return sorted[0]
}

// smoothWeighted is nginx's smooth weighted round-robin: every owner gains
// its weight, the highest current weight wins and gives back the total. The
// sequence interleaves owners in proportion to their weights.
func smoothWeighted(eligible []Owner, cur map[string]int64) (Owner, map[string]int64) {
	next := make(map[string]int64, len(eligible))
	var total int64
	best := -1
	for i, o := range eligible {
		w := int64(weightOf(o, eligible))
		next[o.ID] = cur[o.ID] + w
		total += w
		if best < 0 || next[o.ID] > next[eligible[best].ID] {
			best = i
		}
	}
	next[eligible[best].ID] -= total
	return eligible[best], next
}

// weightOf is the owner's capacity; owners without a limit weigh as much as
// the largest limit among the eligible (1 when nobody has one).
func weightOf(o Owner, eligible []Owner) int {
	if o.MaxLeads > 0 {
		return o.MaxLeads
	}
	largest := 1
	for _, e := range eligible {
		largest = max(largest, e.MaxLeads)
	}
	return largest
}

func holds(prg cel.Program, vars map[string]any) (bool, error) {
	out, _, err := prg.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}

func join(notes []string, last string) string {
	return strings.Join(append(slices.Clone(notes), last), "; ")
}

// OwnerCondition returns the compiled owner condition of the rule with id,
// or nil, so that a reassignment narrows the team as the rule did.
func (p *Program) OwnerCondition(ruleID string) cel.Program {
	for i, r := range p.policy.Rules {
		if r.ID == ruleID {
			return p.ownerConds[i]
		}
	}
	return nil
}
