package scoring

import (
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// numActivityTypes bounds the activity type numbers the index covers; a
// larger type is matched against every rule.
const numActivityTypes = 32

// typeSet is a set of activity type numbers; nil means any type.
type typeSet *[numActivityTypes]bool

// activityTypes works out which activity types a checked condition can hold
// for, from conjuncts such as `activity.type == ActivityType.X` or
// `activity.type in [...]`. It returns nil when it cannot tell. Most
// engagement rules name a type, so indexing rules by it skips most
// evaluations of a new activity.
func activityTypes(a *celast.AST) typeSet {
	return typesOf(a, a.Expr())
}

func typesOf(a *celast.AST, e celast.Expr) typeSet {
	if e.Kind() != celast.CallKind {
		return nil
	}
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case operators.LogicalAnd:
		// Both sides must hold: the intersection, or whichever side knows.
		var out typeSet
		for _, arg := range args {
			s := typesOf(a, arg)
			switch {
			case s == nil:
			case out == nil:
				out = s
			default:
				var both [numActivityTypes]bool
				for i := range both {
					both[i] = out[i] && s[i]
				}
				out = &both
			}
		}
		return out
	case operators.LogicalOr:
		var union [numActivityTypes]bool
		for _, arg := range args {
			s := typesOf(a, arg)
			if s == nil {
				return nil
			}
			for i := range union {
				union[i] = union[i] || s[i]
			}
		}
		return &union
	case operators.Equals:
		if len(args) != 2 {
			return nil
		}
		for i := range 2 {
			if isActivityType(args[i]) {
				if n, ok := constInt(a, args[1-i]); ok {
					return single(n)
				}
			}
		}
	case operators.In:
		if len(args) != 2 || !isActivityType(args[0]) || args[1].Kind() != celast.ListKind {
			return nil
		}
		var set [numActivityTypes]bool
		for _, el := range args[1].AsList().Elements() {
			n, ok := constInt(a, el)
			if !ok || n < 0 || n >= numActivityTypes {
				return nil
			}
			set[n] = true
		}
		return &set
	}
	return nil
}

// typeOnly reports whether a checked condition tests nothing but the
// activity's type, so that the set activityTypes returns decides it
// exactly and it need not be evaluated: `activity.type == X`, `in`, and
// `&&` or `||` of those.
func typeOnly(a *celast.AST) bool {
	return isTypeTest(a, a.Expr())
}

func isTypeTest(a *celast.AST, e celast.Expr) bool {
	if e.Kind() != celast.CallKind {
		return false
	}
	call := e.AsCall()
	switch call.FunctionName() {
	case operators.LogicalAnd, operators.LogicalOr:
		for _, arg := range call.Args() {
			if !isTypeTest(a, arg) {
				return false
			}
		}
		return true
	case operators.Equals, operators.In:
		return typesOf(a, e) != nil
	}
	return false
}

func single(n int64) typeSet {
	if n < 0 || n >= numActivityTypes {
		return nil
	}
	var set [numActivityTypes]bool
	set[n] = true
	return &set
}

// isActivityType reports whether e is `activity.type`.
func isActivityType(e celast.Expr) bool {
	if e.Kind() != celast.SelectKind {
		return false
	}
	sel := e.AsSelect()
	return !sel.IsTestOnly() && sel.FieldName() == "type" &&
		sel.Operand().Kind() == celast.IdentKind && sel.Operand().AsIdent() == "activity"
}

// constInt returns the value of an integer literal or of an enum constant
// the checker resolved.
func constInt(a *celast.AST, e celast.Expr) (int64, bool) {
	if e.Kind() == celast.LiteralKind {
		if n, ok := e.AsLiteral().(types.Int); ok {
			return int64(n), true
		}
		return 0, false
	}
	if ref, ok := a.ReferenceMap()[e.ID()]; ok && ref.Value != nil {
		if n, ok := ref.Value.(types.Int); ok {
			return int64(n), true
		}
	}
	return 0, false
}

// ruleIndex lists, per activity type, the rules that may hold for it, in
// model order, and knows the rules that test the type alone.
type ruleIndex struct {
	byType [numActivityTypes][]int
	all    []int
	// exact[i] is rule i's type set when its condition tests nothing but
	// the type, else nil.
	exact []typeSet
}

func newRuleIndex(sets []typeSet, exact []bool) ruleIndex {
	ix := ruleIndex{exact: make([]typeSet, len(sets))}
	for i, s := range sets {
		if exact[i] {
			ix.exact[i] = s
		}
		ix.all = append(ix.all, i)
		for t := range numActivityTypes {
			if s == nil || s[t] {
				ix.byType[t] = append(ix.byType[t], i)
			}
		}
	}
	return ix
}

func (ix *ruleIndex) rules(t int) []int {
	if t < 0 || t >= numActivityTypes {
		return ix.all
	}
	return ix.byType[t]
}

// decided reports whether rule i holds for activity type t when its type
// alone decides it (ok), without evaluating the condition.
func (ix *ruleIndex) decided(i, t int) (holds, ok bool) {
	s := ix.exact[i]
	if s == nil {
		return false, false
	}
	return t >= 0 && t < numActivityTypes && s[t], true
}
