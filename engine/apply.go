package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Outcome is how a step ended.
type Outcome string

// The outcomes of a step.
const (
	Succeeded Outcome = "ok"
	Failed    Outcome = "failed"
	// NotRun is a step that did not start because an earlier step failed.
	NotRun Outcome = "not run"
)

// StepResult is what happened to one step.
type StepResult struct {
	Addr     string
	Outcome  Outcome
	Duration time.Duration
	// Err is set when Outcome is Failed.
	Err *StepError
}

// Report is the result of Apply: every step, in the order the run reached
// them, and the whole run's duration.
type Report struct {
	Steps    []StepResult
	Duration time.Duration
}

// Count returns how many steps ended with the outcome.
func (r *Report) Count(o Outcome) int {
	n := 0
	for _, s := range r.Steps {
		if s.Outcome == o {
			n++
		}
	}
	return n
}

// Observer hears about steps as they start and end, to show progress.
// Calls come from the goroutine that runs the step.
type Observer interface {
	StepStarted(addr string)
	StepFinished(result StepResult)
}

// Options configure Apply.
type Options struct {
	// Log receives the run's log lines; nil discards them.
	Log hclog.Logger
	// Observer, when set, hears about every step.
	Observer Observer
	// Getenv supplies the VAULT_* defaults; nil means os.Getenv.
	Getenv func(string) string
}

// Apply runs the program: it prepares every step (so that, for example, an
// unreachable Vault stops the run before anything has changed), then applies
// the steps in dependency order. The first failure stops the run: the steps
// after it are reported as not run, and the returned error is a *StepError.
func (p *Program) Apply(ctx context.Context, opts Options) (*Report, error) {
	start := time.Now()
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	report := &Report{}
	finish := func(err error) (*Report, error) {
		report.Duration = time.Since(start)
		return report, err
	}

	noneRun := func(err error) (*Report, error) {
		for _, n := range p.order {
			report.Steps = append(report.Steps, StepResult{Addr: n.step.Addr(), Outcome: NotRun})
		}
		return finish(err)
	}

	conn, err := steps.NewVaultConnection(p.vault, opts.Getenv)
	if err != nil {
		return noneRun(&StepError{Addr: "vault", Diagnostics: p.vaultDiagnostics(err)})
	}
	env := steps.NewEnv(opts.Log, conn)
	if err := p.prepare(ctx, env); err != nil {
		return noneRun(err)
	}

	outputs := map[string]cty.Value{}
	var failure error
	for _, n := range p.order {
		addr := n.step.Addr()
		if failure != nil || ctx.Err() != nil {
			report.Steps = append(report.Steps, StepResult{Addr: addr, Outcome: NotRun})
			continue
		}
		if opts.Observer != nil {
			opts.Observer.StepStarted(addr)
		}
		began := time.Now()
		out, stepErr := p.applyStep(ctx, env, n, outputs)
		res := StepResult{Addr: addr, Outcome: Succeeded, Duration: time.Since(began)}
		if stepErr != nil {
			res.Outcome, res.Err = Failed, stepErr
			failure = stepErr
		} else {
			outputs[addr] = out
		}
		report.Steps = append(report.Steps, res)
		if opts.Observer != nil {
			opts.Observer.StepFinished(res)
		}
	}
	if failure == nil && ctx.Err() != nil {
		failure = fmt.Errorf("run interrupted: %w", ctx.Err())
	}
	return finish(failure)
}

// prepare gives every step whose kind can check its prerequisites the chance
// to do so before anything changes.
func (p *Program) prepare(ctx context.Context, env *steps.Env) error {
	for _, n := range p.order {
		preparer, ok := n.kind.(steps.Preparer)
		if !ok {
			continue
		}
		cfg, diags := p.decode(n, p.beforeRun)
		if diags.HasErrors() {
			return &StepError{Addr: n.step.Addr(), Diagnostics: diags}
		}
		if err := preparer.Prepare(ctx, env, cfg); err != nil {
			return &StepError{Addr: n.step.Addr(), Diagnostics: p.stepDiagnostics(n, "Cannot run", err)}
		}
	}
	return nil
}

// applyStep evaluates a step's body with the outputs known so far, checks it
// again now that every value is known, applies it and returns its outputs,
// with the sensitive ones marked.
func (p *Program) applyStep(ctx context.Context, env *steps.Env, n *node, outputs map[string]cty.Value) (cty.Value, *StepError) {
	addr := n.step.Addr()
	cfg, diags := p.decode(n, p.evalContext(outputs))
	if diags.HasErrors() {
		return cty.NilVal, &StepError{Addr: addr, Diagnostics: diags}
	}
	if err := n.kind.Validate(cfg); err != nil {
		return cty.NilVal, &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Invalid step", err)}
	}
	out, err := n.kind.Apply(ctx, env.Named(addr), cfg)
	if err != nil {
		return cty.NilVal, &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err)}
	}
	out, err = conformOutputs(n.kind, out)
	if err != nil {
		return cty.NilVal, &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err)}
	}
	return out, nil
}

// conformOutputs checks that a kind returned what its Outputs promise and
// marks the sensitive attributes.
func conformOutputs(kind steps.Step, out cty.Value) (cty.Value, error) {
	want := steps.OutputType(kind)
	conv, err := convert.Convert(out, want)
	if err != nil || conv.IsNull() || !conv.IsWhollyKnown() {
		return cty.NilVal, fmt.Errorf("internal error: the step's outputs do not match its declared outputs: %v", err)
	}
	attrs := conv.AsValueMap()
	for name, o := range kind.Outputs() {
		if o.Sensitive {
			attrs[name] = attrs[name].Mark(plans.SensitiveMark)
		}
	}
	return cty.ObjectVal(attrs), nil
}

// vaultDiagnostics locates an error in the vault block's settings.
func (p *Program) vaultDiagnostics(err error) hcl.Diagnostics {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid Vault connection", Detail: err.Error()}
	if p.plan.Vault != nil {
		d.Subject = p.plan.Vault.DeclRange.Ptr()
		var attrErr *steps.AttrError
		if errors.As(err, &attrErr) {
			if rng, ok := argumentRange(p.plan.Vault.Body, attrErr.Path); ok {
				d.Subject = rng.Ptr()
			}
		}
	}
	return hcl.Diagnostics{d}
}
