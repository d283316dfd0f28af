package engine

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// runStep carries out one step and journals its outcome.
func (x *execution) runStep(ctx context.Context, n *node, evalCtx *hcl.EvalContext, sk skips) (StepResult, cty.Value) {
	addr := n.addr
	if x.opts.Observer != nil {
		x.opts.Observer.StepStarted(addr)
	}
	began := time.Now()
	out, reason, stepErr := x.applyStep(ctx, n, evalCtx, sk)
	res := StepResult{Addr: addr, Outcome: Succeeded, Duration: time.Since(began)}
	switch {
	case stepErr == nil && out == cty.NilVal:
		res.Outcome, res.Reason = Skipped, reason
		if err := x.record(journal.Record{Type: journal.StepSkipped, Step: addr, Reason: reason}); err != nil {
			stepErr = x.journalError(n, err)
		}
	case stepErr == nil:
		_, readOnly := n.kind.(steps.ReadOnly)
		res.Unchanged, res.Reason = reason != "", reason
		res.Changed = !res.Unchanged && !readOnly
		if noter, ok := n.kind.(steps.Noter); ok {
			res.Note = noter.Note(out)
		}
		stepErr = x.recordSuccess(n, out, res.Duration, false, reason)
	}
	// The step took until its outcome was durable; the journal holds how
	// long it took until then.
	res.Duration = time.Since(began)
	if stepErr != nil {
		res.Outcome, res.Err, res.Changed = Failed, stepErr, false
		if ctx.Err() != nil {
			res.Outcome = Interrupted
		}
		// The failure's own record may fail too; the run fails either way.
		_ = x.record(journal.Record{Type: journal.StepFailed, Step: addr, Error: stepErr.Error(), Duration: journal.Duration(res.Duration), Unsettled: stepErr.Unsettled})
	}
	if x.opts.Observer != nil {
		x.opts.Observer.StepFinished(res)
	}
	return res, out
}

// applyStep evaluates a step's body with the outputs known so far, decides
// whether it is due, checks it again now that every value is known, journals
// that it starts, applies it and returns its outputs, with the sensitive ones
// marked. A skipped step returns cty.NilVal and why it was skipped; a step
// that changed nothing its outputs and why (steps.Env.NoChange).
func (x *execution) applyStep(ctx context.Context, n *node, evalCtx *hcl.EvalContext, sk skips) (cty.Value, string, *StepError) {
	p := x.p
	addr := n.addr
	cfg, val, diags := p.decode(n, evalCtx)
	if diags.HasErrors() {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: diags}
	}
	env := x.stepEnv(addr)
	skip, reason, err := p.skipDecision(ctx, env, n, cfg, sk)
	switch {
	case err != nil:
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Cannot tell whether due:", err)}
	case skip:
		return cty.NilVal, reason, nil
	}
	if x.lazy[addr] {
		if err := x.prepareStep(ctx, n); err != nil {
			return cty.NilVal, "", err.(*StepError)
		}
	}
	if err := n.kind.Validate(cfg); err != nil {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Invalid step", err)}
	}
	if diags := p.checkHost(ctx, env, n, cfg, "Cannot run"); diags.HasErrors() {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: diags}
	}
	started := journal.Record{Type: journal.StepStarted, Step: addr, Inputs: hashValue(val)}
	if r, ok := n.kind.(steps.Resumer); ok {
		intent, err := r.Intent(ctx, env, cfg)
		if err != nil {
			return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Invalid step", err)}
		}
		started.Intent = intent
	}
	snap, err := x.snapshot(ctx, env, n, cfg)
	if err != nil {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err)}
	}
	started.Snapshot = snap
	_, readOnly := n.kind.(steps.ReadOnly)
	// A start with nothing in it that a resume or a rollback relies on
	// need not be durable: the step runs again unless it is recorded done,
	// started or not.
	durable := x.opts.Journal != nil && !readOnly && (len(started.Intent) > 0 || len(started.Snapshot) > 0)
	_, staged := n.kind.(steps.Staged)
	record := x.recordLazily
	if durable && !staged {
		record = x.record
	}
	if err := record(started); err != nil {
		return cty.NilVal, "", x.journalError(n, err)
	}
	var commitErr error
	if durable && staged {
		// Durable by the time the kind commits to its change: the
		// fsync overlaps what it prepares first.
		env = env.WithCommit(func() error {
			commitErr = x.opts.Journal.Flush()
			return commitErr
		})
	}
	out, err := n.kind.Apply(ctx, env, cfg)
	if commitErr != nil {
		return cty.NilVal, "", x.journalError(n, commitErr)
	}
	if err != nil {
		// A change that may have taken effect is undone with the
		// completed ones, if the kind can undo it (it took a snapshot,
		// which may be empty: a reload needs none to reload again).
		var unsettled *steps.UnsettledError
		mayHaveChanged := errors.As(err, &unsettled) && snap != nil
		if mayHaveChanged {
			x.mu.Lock()
			x.unsettled[addr] = true
			x.mu.Unlock()
		}
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err), Unsettled: mayHaveChanged}
	}
	out, err = conformOutputs(n, out)
	if err != nil {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err)}
	}
	return out, env.NoChangeReason(), nil
}

// recordSuccess journals a step's outcome without waiting for an fsync:
// whatever is appended durably after it carries it to disk first (records
// reach the file in order), and that comes before anything that relies on
// it. A dependent that changes something first appends its durable
// step_started; a failure that starts a rollback is durable; so is the end
// of the run. A success lost to a power failure before then only makes a
// resume carry the step out again, and nothing had yet used what it did
// (an issued certificate whose key never left memory). The exception is a
// success that resume checked on the system (checked): it is one of the
// resume's decisions, which are durable before anything runs.
func (x *execution) recordSuccess(n *node, out cty.Value, d time.Duration, checked bool, noChange string) *StepError {
	if x.opts.Journal == nil {
		return nil
	}
	raw, err := journalOutputs(n, out)
	if err != nil {
		return x.journalError(n, err)
	}
	rec := journal.Record{Type: journal.StepSucceeded, Step: n.addr, Outputs: raw, Duration: journal.Duration(d), Checked: checked}
	rec.Reason = noChange
	if s, ok := n.kind.(steps.Summarizer); ok {
		for _, f := range s.Summary(out) {
			rec.Facts = append(rec.Facts, journal.Fact(f))
		}
	}
	record := x.recordLazily
	if checked {
		record = x.record
	}
	if err := record(rec); err != nil {
		return x.journalError(n, err)
	}
	return nil
}

func (x *execution) journalError(n *node, err error) *StepError {
	return &StepError{Addr: n.addr, Diagnostics: hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Cannot write the journal",
		Detail:   err.Error() + ". The run stops: what it does must be recorded to be resumable.",
		Subject:  n.step.DeclRange.Ptr(),
	}}}
}
