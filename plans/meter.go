package plans

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// A single expression can build far more than any value it is checked
// against afterwards: [for a in range(1000): [for b in range(1000): ...]]
// makes a million values, "${local.big}${local.big}..." a string as long
// as all its parts together. So what for expressions make and what
// templates join is metered as it is made, against a budget of
// MaxValueSize for each evaluation context (a local, a step's body, a
// variable's default): HCL evaluates an expression's parts within the
// context it was given, and its children.

// meter counts what the expressions evaluated in one context made. Once
// that passes MaxValueSize, over is set: the first expression to find it
// so reports it, and metered expressions evaluate nothing more, so that
// the for expressions around them finish at once (they go on through
// their elements after an error).
type meter struct {
	used atomic.Int64
	over atomic.Bool
}

// meters holds the meter of each root evaluation context, for as long as
// the context lives.
var meters sync.Map // weak.Pointer[hcl.EvalContext] -> *meter

// meterOf returns the meter of ctx's root context, made at first use.
func meterOf(ctx *hcl.EvalContext) *meter {
	if ctx == nil {
		return nil
	}
	for ctx.Parent() != nil {
		ctx = ctx.Parent()
	}
	key := weak.Make(ctx)
	if m, ok := meters.Load(key); ok {
		return m.(*meter)
	}
	m, loaded := meters.LoadOrStore(key, &meter{})
	if !loaded {
		runtime.AddCleanup(ctx, func(k weak.Pointer[hcl.EvalContext]) { meters.Delete(k) }, key)
	}
	return m.(*meter)
}

// metered is an expression whose values are counted against its context's
// meter: the value of a for expression's element or key, or a part of a
// template. It is a TemplateWrapExpr, which evaluates to what it wraps, so
// that walking the syntax tree (Variables, hclsyntax.VisitAll) still
// reaches what it wraps.
type metered struct {
	*hclsyntax.TemplateWrapExpr
}

// Value evaluates the wrapped expression and counts its size.
func (m metered) Value(ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	mt := meterOf(ctx)
	if mt != nil && mt.over.Load() {
		return cty.DynamicVal, nil // the error is reported already
	}
	v, diags := m.Wrapped.Value(ctx)
	if mt == nil || diags.HasErrors() {
		return v, diags
	}
	left := MaxValueSize - mt.used.Load()
	size := int64(ValueSize(v, int(max(left, 0))))
	if mt.used.Add(size) <= MaxValueSize || mt.over.Swap(true) {
		return v, diags
	}
	return cty.DynamicVal, append(diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Value too large",
		Detail: fmt.Sprintf("This expression builds values larger than %d MiB together, the most rotplan builds for one local, step or variable: "+
			"a for expression or a template repeats a value too many times. Check the expression.", MaxValueSize>>20),
		Subject: m.Wrapped.Range().Ptr(),
	})
}

// meterExpressions makes the values of every for expression and template
// part under node metered. It changes the syntax tree in place, once: a
// part already metered is left as it is.
func meterExpressions(node hclsyntax.Node) {
	wrap := func(e hclsyntax.Expression) hclsyntax.Expression {
		switch e.(type) {
		case nil, metered, *hclsyntax.LiteralValueExpr:
			return e // literal parts are bounded by the file's size
		}
		return metered{&hclsyntax.TemplateWrapExpr{Wrapped: e, SrcRange: e.Range()}}
	}
	_ = hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
		switch e := n.(type) {
		case *hclsyntax.ForExpr:
			e.KeyExpr = wrap(e.KeyExpr)
			e.ValExpr = wrap(e.ValExpr)
		case *hclsyntax.TemplateExpr:
			for i, part := range e.Parts {
				e.Parts[i] = wrap(part)
			}
		}
		return nil
	})
}
