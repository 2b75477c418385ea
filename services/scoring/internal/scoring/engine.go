package scoring

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"google.golang.org/protobuf/types/known/timestamppb"

	scoringv1 "github.com/leadflow/leadflow/gen/go/leadflow/scoring/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
)

// MaxEstimatedCost bounds one condition's cost, in CEL's abstract cost
// units (roughly one per operation, string operations by length). It is
// checked when a model is saved, against the worst case over every input
// within the sizes below; the engine cuts larger inputs down to those sizes,
// so the estimate bounds every evaluation. (A runtime cel.CostLimit would
// check the same bound again at +80% CPU per evaluation, measured.)
const MaxEstimatedCost = 100_000

// Worst-case input sizes assumed by the cost estimate and enforced on the
// inputs: strings (URLs, titles, attribute values) and maps (custom
// attributes, properties).
const (
	maxStringSize = 4096
	maxMapSize    = 100
)

var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Types(&scoringv1.LeadFacts{}, &scoringv1.ActivityFacts{}),
		// Enum names such as ActivityType.ACTIVITY_TYPE_PAGE_VIEW resolve here.
		cel.Container("leadflow.types.v1"),
		cel.Variable("lead", cel.ObjectType("leadflow.scoring.v1.LeadFacts")),
		cel.Variable("activity", cel.ObjectType("leadflow.scoring.v1.ActivityFacts")),
		ext.Strings(),
	)
})

// Program is a model's rules compiled for evaluation. It is immutable and
// safe for concurrent use; compile it once per model version.
type Program struct {
	rules      Rules
	fit        []cel.Program
	engagement []cel.Program
	exclusion  []cel.Program
	// groupOf maps each fit and engagement rule to its group index, or -1.
	fitGroup, engagementGroup []int
	// The engagement and exclusion rules that may hold, by activity type.
	engagementIndex, exclusionIndex ruleIndex
	handRaiser                      [numActivityTypes]bool
}

// Rules returns the rules the program was compiled from.
func (p *Program) Rules() Rules { return p.rules }

// Compile type-checks every condition of r and builds its programs. A broken
// model fails with apperr.InvalidArgument carrying one field violation per
// problem, e.g. field "scoring_model.fit_rules[2].condition" with the
// description `rule "saas": 1:7: undeclared reference to 'leed'`.
func Compile(r Rules) (*Program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("build cel environment: %w", err)
	}
	p := &Program{rules: r}
	var violations []apperr.Option
	fail := func(field, desc string) { violations = append(violations, apperr.Field("scoring_model."+field, desc)) }

	groups := map[string]int{}
	for i, g := range r.Groups {
		if _, dup := groups[g.ID]; dup {
			fail(fmt.Sprintf("rule_groups[%d].id", i), fmt.Sprintf("rule group id %q is used twice", g.ID))
		}
		groups[g.ID] = i
	}
	ids := map[string]bool{}
	unique := func(field, id string) {
		if ids[id] {
			fail(field, fmt.Sprintf("rule id %q is used twice", id))
		}
		ids[id] = true
	}
	for i, rule := range r.FitRules {
		unique(fmt.Sprintf("fit_rules[%d].id", i), rule.ID)
	}
	for i, rule := range r.EngagementRules {
		unique(fmt.Sprintf("engagement_rules[%d].id", i), rule.ID)
	}
	for i, rule := range r.ExclusionRules {
		unique(fmt.Sprintf("exclusion_rules[%d].id", i), rule.ID)
	}
	groupIndex := func(field, id string, want Component) int {
		if id == "" {
			return -1
		}
		i, ok := groups[id]
		switch {
		case !ok:
			fail(field, fmt.Sprintf("rule group %q is not defined in rule_groups", id))
		case r.Groups[i].Component != want:
			fail(field, fmt.Sprintf("rule group %q belongs to another score component", id))
		}
		return i
	}
	var engagementTypes, exclusionTypes []typeSet
	var engagementExact, exclusionExact []bool
	compile := func(field, id, src string, ts *[]typeSet, exact *[]bool) cel.Program {
		prg, set, only, msg := compileCondition(env, src)
		if msg != "" {
			fail(field, fmt.Sprintf("rule %q: %s", id, msg))
		}
		if ts != nil {
			*ts, *exact = append(*ts, set), append(*exact, only)
		}
		return prg
	}
	for i, rule := range r.FitRules {
		f := fmt.Sprintf("fit_rules[%d]", i)
		p.fit = append(p.fit, compile(f+".condition", rule.ID, rule.Condition, nil, nil))
		p.fitGroup = append(p.fitGroup, groupIndex(f+".group", rule.Group, ComponentFit))
	}
	for i, rule := range r.EngagementRules {
		f := fmt.Sprintf("engagement_rules[%d]", i)
		p.engagement = append(p.engagement, compile(f+".condition", rule.ID, rule.Condition, &engagementTypes, &engagementExact))
		p.engagementGroup = append(p.engagementGroup, groupIndex(f+".group", rule.Group, ComponentEngagement))
		if rule.Decay.HalfLife < 0 || rule.Decay.Window < 0 || (rule.Decay.HalfLife > 0 && rule.Decay.Window > 0) {
			fail(f+".decay", "set either a positive half_life or a positive window")
		}
	}
	for i, rule := range r.ExclusionRules {
		p.exclusion = append(p.exclusion, compile(fmt.Sprintf("exclusion_rules[%d].condition", i), rule.ID, rule.Condition, &exclusionTypes, &exclusionExact))
	}
	p.engagementIndex = newRuleIndex(engagementTypes, engagementExact)
	p.exclusionIndex = newRuleIndex(exclusionTypes, exclusionExact)
	for i := 1; i < len(r.GradeBands); i++ {
		if r.GradeBands[i].MinScore >= r.GradeBands[i-1].MinScore {
			fail(fmt.Sprintf("grade_bands[%d].min_score", i), "grade bands must be best first, with strictly decreasing min_score")
		}
	}
	for _, t := range r.HandRaiserTypes {
		if t > 0 && int(t) < len(p.handRaiser) {
			p.handRaiser[t] = true
		}
	}
	if len(violations) > 0 {
		return nil, apperr.InvalidArgument("invalid scoring model", violations...)
	}
	return p, nil
}

// compileCondition returns the program for src, the activity types it may
// hold for and whether the type alone decides it, or a message naming the
// line:column of the first problem.
func compileCondition(env *cel.Env, src string) (cel.Program, typeSet, bool, string) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		e := iss.Errors()[0]
		return nil, nil, false, fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, nil, false, fmt.Sprintf("1:1: condition must be of type bool, not %s", ast.OutputType())
	}
	est, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, nil, false, fmt.Sprintf("1:1: cannot estimate cost: %v", err)
	}
	if est.Max > MaxEstimatedCost {
		return nil, nil, false, fmt.Sprintf("1:1: condition is too expensive: worst-case cost %d exceeds %d", est.Max, MaxEstimatedCost)
	}
	prg, err := env.Program(ast,
		// Precompiles constant regexes and folds constants: conditions are
		// evaluated millions of times.
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, nil, false, fmt.Sprintf("1:1: %v", err)
	}
	return prg, activityTypes(ast.NativeRep()), typeOnly(ast.NativeRep()), ""
}

// sizeEstimator bounds the size of the variables' strings and maps, so the
// cost of string functions and comprehensions can be estimated.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if n.Path() == nil {
		return nil
	}
	switch n.Type().Kind() {
	case types.StringKind, types.BytesKind:
		return &cost.SizeEstimate{Min: 0, Max: maxStringSize}
	case types.MapKind, types.ListKind:
		elem := &cost.SizeEstimate{Min: 0, Max: maxStringSize}
		return &cost.SizeEstimate{Min: 0, Max: maxMapSize, Key: elem, Elem: elem}
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// Facts is a lead's attributes converted once for evaluation.
type Facts struct{ val ref.Val }

// NewFacts converts a lead's attributes for evaluation.
func NewFacts(f LeadFacts) Facts {
	env, _ := celEnv()
	return Facts{val: env.CELTypeAdapter().NativeToValue(&scoringv1.LeadFacts{
		CompanyDomain:    bound(f.CompanyDomain),
		Title:            bound(f.Title),
		Seniority:        bound(f.Seniority),
		Country:          bound(f.Country),
		Industry:         bound(f.Industry),
		EmployeeCount:    f.EmployeeCount,
		Source:           bound(f.Source),
		Campaign:         bound(f.Campaign),
		CustomAttributes: boundMap(f.CustomAttributes),
		Unsubscribed:     f.Unsubscribed,
	})}
}

func activityValue(a Activity) ref.Val {
	env, _ := celEnv()
	return env.CELTypeAdapter().NativeToValue(&scoringv1.ActivityFacts{
		Type:       a.Type,
		Url:        bound(a.URL),
		ContentId:  bound(a.ContentID),
		Properties: boundMap(a.Properties),
		OccurTime:  timestamppb.New(a.OccurTime),
	})
}

// bound cuts s to maxStringSize bytes, on a rune boundary.
func bound(s string) string {
	if len(s) <= maxStringSize {
		return s
	}
	s = s[:maxStringSize]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// boundMap keeps the maxMapSize smallest keys of m, each entry bounded.
func boundMap(m map[string]string) map[string]string {
	fits := len(m) <= maxMapSize
	for k, v := range m {
		if !fits {
			break
		}
		fits = len(k) <= maxStringSize && len(v) <= maxStringSize
	}
	if fits {
		return m
	}
	keys := slices.Sorted(maps.Keys(m))
	out := make(map[string]string, min(len(keys), maxMapSize))
	for _, k := range keys[:min(len(keys), maxMapSize)] {
		out[bound(k)] = bound(m[k])
	}
	return out
}

// activation resolves the two variables without building a map.
type activation struct{ lead, activity ref.Val }

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "lead":
		return a.lead, a.lead != nil
	case "activity":
		return a.activity, a.activity != nil
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// holds reports whether prg evaluates to true. An evaluation error (such as
// a missing map key) counts as no match: one odd
// lead must not break everyone's scores.
func holds(prg cel.Program, act *activation) bool {
	out, _, err := prg.Eval(act)
	return err == nil && out == types.True
}

// FitMatches returns the indexes of the fit rules the lead matches.
func (p *Program) FitMatches(lead Facts) []int {
	act := &activation{lead: lead.val}
	var out []int
	for i, prg := range p.fit {
		if holds(prg, act) {
			out = append(out, i)
		}
	}
	return out
}

// Match is how a model sees one activity: excluded, or scored by some
// engagement rules.
type Match struct {
	Activity Activity
	Excluded bool
	// Rules are indexes into Rules.EngagementRules.
	Rules []int
}

// MatchActivity evaluates the exclusion and engagement rules against one
// activity of the lead.
//
// Conditions that test only the activity's type are answered by the index
// without evaluation, and the activity is converted for CEL only when some
// condition needs it.
func (p *Program) MatchActivity(lead Facts, a Activity) Match {
	m := Match{Activity: a}
	t := int(a.Type)
	var act *activation
	test := func(ix *ruleIndex, prgs []cel.Program, i int) bool {
		if ok, decided := ix.decided(i, t); decided {
			return ok
		}
		if act == nil {
			act = &activation{lead: lead.val, activity: activityValue(a)}
		}
		return holds(prgs[i], act)
	}
	for _, i := range p.exclusionIndex.rules(t) {
		if test(&p.exclusionIndex, p.exclusion, i) {
			m.Excluded = true
			return m
		}
	}
	for _, i := range p.engagementIndex.rules(t) {
		if test(&p.engagementIndex, p.engagement, i) {
			m.Rules = append(m.Rules, i)
		}
	}
	return m
}

// IsHandRaiser reports whether a matched activity qualifies its lead at
// once. Excluded activities never do.
func (p *Program) IsHandRaiser(m Match) bool {
	t := int(m.Activity.Type)
	return !m.Excluded && t > 0 && t < len(p.handRaiser) && p.handRaiser[t]
}

// IsHandRaiserType reports whether activities of type t are hand-raisers.
func (p *Program) IsHandRaiserType(t typesv1.ActivityType) bool {
	return int(t) > 0 && int(t) < len(p.handRaiser) && p.handRaiser[t]
}

// ProgramCache keeps compiled programs by a caller-chosen key (a model
// version's identity), so each version is compiled once per process.
type ProgramCache struct {
	mu    sync.Mutex
	max   int
	progs map[string]*Program
}

// NewProgramCache returns a cache holding at most max programs.
func NewProgramCache(max int) *ProgramCache {
	return &ProgramCache{max: max, progs: map[string]*Program{}}
}

// Get returns the program under key, compiling r on a miss.
func (c *ProgramCache) Get(key string, r func() (Rules, error)) (*Program, error) {
	c.mu.Lock()
	p, ok := c.progs[key]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	rules, err := r()
	if err != nil {
		return nil, err
	}
	p, err = Compile(rules)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.progs) >= c.max {
		// Evict an arbitrary entry; live models are re-compiled on their next use.
		for k := range c.progs {
			delete(c.progs, k)
			break
		}
	}
	c.progs[key] = p
	return p, nil
}

// CacheKey identifies one immutable state of a model.
func CacheKey(workspace, id, etag string) string {
	return strings.Join([]string{workspace, id, etag}, "\x00")
}

func containsType(ts []typesv1.ActivityType, t typesv1.ActivityType) bool {
	return slices.Contains(ts, t)
}
