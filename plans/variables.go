package plans

import (
	"fmt"
	"github.com/rotplan/rotplan/internal/suggest"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Input is a value given for a variable from outside the plan.
type Input struct {
	// Expr is the value's expression in a variable file; nil for a -var flag.
	Expr hcl.Expression
	// Raw is the text of a -var flag's value.
	Raw string
	// Range is where the value was given: a range in a variable file, or a
	// synthetic "<-var flag>" range.
	Range hcl.Range
}

// Inputs are the variable values from -var-file files and -var flags, by
// name; later ones replace earlier ones.
type Inputs map[string]*Input

// AddFlag records `-var NAME=VALUE`.
func (in Inputs) AddFlag(flag string) hcl.Diagnostics {
	name, raw, ok := strings.Cut(flag, "=")
	rng := hcl.Range{Filename: fmt.Sprintf("<-var %s>", name)}
	if !ok || !hclsyntax.ValidIdentifier(name) {
		// The value is not quoted, nor what has no "=": either may be a
		// secret.
		given := "A -var option"
		if ok {
			given = fmt.Sprintf("-var %q", name+"=...")
		}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid -var option",
			Detail:   given + ": the form is -var NAME=VALUE, with NAME a variable declared in the plan.",
		}}
	}
	in[name] = &Input{Raw: raw, Range: rng}
	return nil
}

// EnvPrefix begins the environment variables that give a plan's variables
// values: ROTPLAN_VAR_renew_before=720h, as Terraform's TF_VAR_.
const EnvPrefix = "ROTPLAN_VAR_"

// AddEnv records ROTPLAN_VAR_NAME=VALUE; its value is read as a -var
// flag's is.
func (in Inputs) AddEnv(name, value string) {
	in[name] = &Input{Raw: value, Range: hcl.Range{Filename: "<" + EnvPrefix + name + ">"}}
}

// LoadVarFile reads a variable file (`name = value` lines in HCL) into in.
func (p *Parser) LoadVarFile(path string, in Inputs) hcl.Diagnostics {
	file, diags := p.parseSource(path)
	if file == nil || diags.HasErrors() {
		return diags
	}
	attrs, more := file.Body.JustAttributes()
	diags = append(diags, more...)
	for name, attr := range attrs {
		in[name] = &Input{Expr: attr.Expr, Range: attr.Expr.Range()}
	}
	return diags
}

// ResolveVariables gives every declared variable its value: the input for
// it, else its default. A required variable with no input, an input that does
// not fit the declared type, and an input for an undeclared variable are
// errors.
func ResolveVariables(plan *Plan, in Inputs) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	values := map[string]cty.Value{}

	for _, name := range sortedKeys(in) {
		if _, ok := plan.Variables[name]; !ok {
			detail := fmt.Sprintf("A value was given for %q, but the plan %s declares no such variable.", name, plan.Path)
			if best := suggest.Closest(name, sortedKeys(plan.Variables)); best != "" {
				detail += fmt.Sprintf(" Did you mean %q?", best)
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Value for undeclared variable",
				Detail:   detail,
				Subject:  in[name].Range.Ptr(),
			})
		}
	}

	for _, name := range sortedKeys(plan.Variables) {
		v := plan.Variables[name]
		input, given := in[name]
		subject := v.DeclRange
		if given {
			subject = input.Range
		}
		var val cty.Value
		switch {
		case given:
			var more hcl.Diagnostics
			val, more = input.value(v.Type)
			if v.Sensitive {
				more = withoutDetails(more, name)
			}
			diags = append(diags, more...)
			if more.HasErrors() {
				continue
			}
		case v.Default != cty.NilVal:
			val = v.Default
		default:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "No value for required variable",
				Detail:   fmt.Sprintf("The variable %q has no default: give it with -var %s=VALUE or in a -var-file.", name, name),
				Subject:  v.DeclRange.Ptr(),
			})
			continue
		}
		conv, err := convert.Convert(val, v.Type)
		if err != nil {
			detail := fmt.Sprintf("The value for %q does not fit its type %s: %s.", name, v.Type.FriendlyName(), err)
			if v.Sensitive { // cty's reasons name keys and attributes of the value
				detail = fmt.Sprintf("The value for the sensitive variable %q does not fit its type %s: the value given is of type %s. "+
					"Where it differs is not shown, since that could quote the value.", name, v.Type.FriendlyName(), val.Type().FriendlyName())
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid value for variable",
				Detail:   detail,
				Subject:  subject.Ptr(),
			})
			continue
		}
		if v.Sensitive {
			conv = conv.Mark(SensitiveMark)
		}
		values[name] = conv
	}
	return values, diags
}

// withoutDetails returns the diagnostics of evaluating the value given for
// the sensitive variable name without their details, which hcl writes from
// the source ("no attribute named ..."), and without their expressions.
func withoutDetails(diags hcl.Diagnostics, name string) hcl.Diagnostics {
	out := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		safe := *d
		safe.Detail = fmt.Sprintf("The value given for the sensitive variable %q is not valid. "+
			"The detail is not shown, since it could quote the value.", name)
		safe.Expression, safe.EvalContext = nil, nil
		out[i] = &safe
	}
	return out
}

// SecretRanges returns where, in variable files, values are given that a
// diagnostic must never show: those of sensitive variables, and those of
// variables the plan does not declare, which may be misspelt secrets.
func (in Inputs) SecretRanges(plan *Plan) []hcl.Range {
	var out []hcl.Range
	for name, input := range in {
		if input.Expr == nil {
			continue // a -var flag or the environment: no source to show
		}
		if v, ok := plan.Variables[name]; !ok || v.Sensitive {
			out = append(out, input.Range)
		}
	}
	return out
}

// value evaluates an input. A -var value is taken literally for string
// variables and parsed as an HCL expression for others, as Terraform does.
func (in *Input) value(ty cty.Type) (cty.Value, hcl.Diagnostics) {
	expr := in.Expr
	if expr == nil {
		if ty == cty.String || ty == cty.DynamicPseudoType {
			return cty.StringVal(in.Raw), nil
		}
		if diags := CheckNesting([]byte(in.Raw), in.Range.Filename); diags.HasErrors() {
			return cty.NilVal, diags
		}
		syn, diags := hclsyntax.ParseExpression([]byte(in.Raw), in.Range.Filename, hcl.InitialPos)
		if diags.HasErrors() {
			return cty.NilVal, diags
		}
		meterExpressions(syn)
		expr = syn
	}
	// An empty context, not nil, so that what the value's for
	// expressions make is metered: it allows no variable and no function
	// all the same.
	return expr.Value(&hcl.EvalContext{})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
