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
}

// Error renders the diagnostics on one line, each with its file:line:col,
// without a detail that could quote a sensitive value (plans.WithoutSecret):
// the journal, the logs and the views take it up.
func (e *StepError) Error() string {
	var parts []string
	for _, d := range plans.WithoutSecrets(e.Diagnostics) {
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
		subject := n.step.DeclRange
		detail := e.Error()
		var attrErr *steps.AttrError
		if errors.As(e, &attrErr) {
			if rng, ok := argumentRange(n.step.Body, attrErr.Path); ok {
				subject = rng
				detail = fmt.Sprintf("%s: %v", attrErr.Path, attrErr.Err)
			}
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("%s %s", summary, n.addr),
			Detail:   detail,
			Subject:  subject.Ptr(),
		})
	}
	return diags
}

// argumentRange finds the expression of an argument by path ("mode",
// "tls.ca_file") in a body written in native HCL syntax. A path naming a
// nested block gives the block's header.
func argumentRange(body hcl.Body, path string) (hcl.Range, bool) {
	syn, ok := body.(*hclsyntax.Body)
	if !ok {
		return hcl.Range{}, false
	}
	head, rest, nested := strings.Cut(path, ".")
	if !nested {
		if attr, ok := syn.Attributes[head]; ok {
			return attr.Expr.Range(), true
		}
	}
	for _, block := range syn.Blocks {
		if block.Type != head {
			continue
		}
		if !nested {
			return block.DefRange(), true
		}
		return argumentRange(block.Body, rest)
	}
	return hcl.Range{}, false
}
