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
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid -var option",
			Detail:   fmt.Sprintf("-var %q: the form is -var NAME=VALUE, with NAME a variable declared in the plan.", flag),
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
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid value for variable",
				Detail:   fmt.Sprintf("The value for %q does not fit its type %s: %s.", name, v.Type.FriendlyName(), err),
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
