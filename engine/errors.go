package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
)

// StepError is a step that failed while the plan ran (or while it was
// prepared). It carries the step's address and the diagnostics that locate
// the failure in the plan.
type StepError struct {
	Addr        string
	Diagnostics hcl.Diagnostics
	// Unsettled is set when the step failed after its change may have
	// taken effect (a *steps.UnsettledError): a rollback undoes it.
	Unsettled bool
}

// Error renders the diagnostics on one line, each with its file:line:col,
// without a detail that could quote a sensitive value (plans.WithoutSecret):
// the journal, the logs and the views take it up.
func (e *StepError) Error() string { return oneLine(e.Diagnostics) }

// SettingsError is a plan-level settings block (see steps.Setting) that a
// run or a preview could not set up when it started: nothing ran. Its
// diagnostics point into the block.
type SettingsError struct {
	// Block is the block's type.
	Block       string
	Diagnostics hcl.Diagnostics
}

// Error renders the diagnostics on one line, as StepError's Error does.
func (e *SettingsError) Error() string { return oneLine(e.Diagnostics) }

// oneLine renders diagnostics on one line, each with its file:line:col,
// without a detail that could quote a sensitive value.
func oneLine(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range plans.WithoutSecrets(diags) {
		where := ""
		if d.Subject != nil {
			where = location(*d.Subject) + ": "
		}
		parts = append(parts, where+d.Summary+": "+d.Detail)
	}
	return strings.Join(parts, "; ")
}

// stepDiagnostics turns what a step kind returned into diagnostics: one per
// joined error, pointing at the blamed argument when the error is an
// *steps.AttrError, else at the step's declaration.
func (p *Program) stepDiagnostics(n *node, summary string, err error) hcl.Diagnostics {
	if err == nil {
		return nil
	}
	var errs []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	} else {
		errs = []error{err}
	}
	var diags hcl.Diagnostics
	for _, e := range errs {
		d := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("%s %s", summary, n.addr),
			Detail:   e.Error(),
			Subject:  n.step.DeclRange.Ptr(),
		}
		var attrErr *steps.AttrError
		if errors.As(e, &attrErr) {
			if rng, expr, ok := argumentOf(n.step.Body, attrErr.Path); ok {
				d.Subject = rng.Ptr()
				d.Detail = fmt.Sprintf("%s: %v", attrErr.Path, attrErr.Err)
				// A kind may quote the argument's value. The expression,
				// in a context where sensitive outputs are unknown and
				// marked, tells plans.WithoutSecret whether it is a
				// secret, whenever the step fails.
				if expr != nil {
					d.Expression, d.EvalContext = expr, p.contextFor(n, nil)
				}
			}
		}
		diags = append(diags, d)
	}
	return diags
}

// argumentRange finds the expression of an argument by path ("mode",
// "tls.ca_file") in a body written in native HCL syntax. A path naming a
// nested block gives the block's header.
func argumentRange(body hcl.Body, path string) (hcl.Range, bool) {
	rng, _, ok := argumentOf(body, path)
	return rng, ok
}

// argumentOf is argumentRange with the argument's expression, nil for a
// nested block.
func argumentOf(body hcl.Body, path string) (hcl.Range, hcl.Expression, bool) {
	syn, ok := body.(*hclsyntax.Body)
	if !ok {
		return hcl.Range{}, nil, false
	}
	head, rest, nested := strings.Cut(path, ".")
	if !nested {
		if attr, ok := syn.Attributes[head]; ok {
			return attr.Expr.Range(), attr.Expr, true
		}
	}
	for _, block := range syn.Blocks {
		if block.Type != head {
			continue
		}
		if !nested {
			return block.DefRange(), nil, true
		}
		return argumentOf(block.Body, rest)
	}
	return hcl.Range{}, nil, false
}

// StepErrors returns every *StepError in err (Apply and Resume join them).
func StepErrors(err error) []*StepError {
	var out []*StepError
	var walk func(error)
	walk = func(err error) {
		var se *StepError
		switch e := err.(type) {
		case nil:
		case *StepError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		default:
			if errors.As(err, &se) {
				out = append(out, se)
			}
		}
	}
	walk(err)
	return out
}
