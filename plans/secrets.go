package plans

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// WithoutSecrets returns diags, each through WithoutSecret; diags is not
// changed.
func WithoutSecrets(diags hcl.Diagnostics) hcl.Diagnostics {
	out := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		out[i] = WithoutSecret(d)
	}
	return out
}

// WithoutSecret returns d, or a copy without its detail when its expression
// reads a sensitive value: hcl and the functions write details from the
// values they were given ("cannot convert "hvs.…" to number"), and nothing
// rotplan prints, logs or journals may show a secret.
func WithoutSecret(d *hcl.Diagnostic) *hcl.Diagnostic {
	if !readsSensitive(d) {
		return d
	}
	safe := *d
	safe.Detail = WithheldDetail
	return &safe
}

// WithheldDetail replaces the detail of a diagnostic that could quote a
// secret. It says nothing of the cause: two diagnostics that have it need
// not have the same.
const WithheldDetail = "The detail is not shown: the expression reads a sensitive value, which it could quote."

// readsSensitive reports whether the expression a diagnostic is about reads
// a value marked sensitive, or a part of one, in the diagnostic's evaluation
// context.
func readsSensitive(d *hcl.Diagnostic) bool {
	if d.Expression == nil || d.EvalContext == nil {
		return false
	}
	for _, tr := range d.Expression.Variables() {
		v, diags := tr.TraverseAbs(d.EvalContext)
		if diags.HasErrors() {
			// What it reads is not there as such (an index into an
			// unknown): judge by the whole variable, var or local.
			v = rootValue(d.EvalContext, tr.RootName())
		}
		if sensitive(v) {
			return true
		}
	}
	return false
}

// rootValue is the value of the variable name in ctx or its parents.
func rootValue(ctx *hcl.EvalContext, name string) cty.Value {
	for ; ctx != nil; ctx = ctx.Parent() {
		if v, ok := ctx.Variables[name]; ok {
			return v
		}
	}
	return cty.NilVal
}

// sensitive reports whether v or anything in it is marked sensitive.
func sensitive(v cty.Value) bool {
	if v == cty.NilVal {
		return false
	}
	_, marks := v.UnmarkDeepWithPaths()
	for _, m := range marks {
		if _, ok := m.Marks[SensitiveMark]; ok {
			return true
		}
	}
	return false
}
