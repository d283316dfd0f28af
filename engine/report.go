package engine

import "time"

// Outcome is how a step ended.
type Outcome string

// The outcomes of a step.
const (
	Succeeded Outcome = "ok"
	Failed    Outcome = "failed"
	// NotRun is a step that did not start because another step failed or
	// the run was interrupted.
	NotRun Outcome = "not run"
	// Done is a step a resumed run did not carry out again: an earlier
	// attempt did it.
	Done Outcome = "done"
	// Skipped is a step that was not due (see steps.Conditional), or all of
	// whose dependencies were skipped. It changed nothing.
	Skipped Outcome = "skipped"
	// Interrupted is a step that was under way when the run was
	// interrupted, and did not finish. Resume carries it out again.
	Interrupted Outcome = "interrupted"
)

// StepResult is what happened to one step.
type StepResult struct {
	Addr     string
	Outcome  Outcome
	Duration time.Duration
	// Err is set when Outcome is Failed.
	Err *StepError
	// Reason says why a step was skipped, or why a step that succeeded
	// changed nothing (Unchanged).
	Reason string
	// Unchanged: the step succeeded and found the system already as it
	// would leave it (steps.Env.NoChange), so it changed nothing.
	Unchanged bool
	// Changed: the step succeeded and changed something; false for a step
	// that only reads (steps.ReadOnly) or found nothing to change.
	Changed bool
	// Note is the one detail of a success its kind gives for the progress
	// line (steps.Noter), or "".
	Note string
}

// Report is the result of Apply or Resume: every step, in the order the run
// reached them (steps done earlier first, steps not run last), and the whole
// run's duration.
type Report struct {
	Steps    []StepResult
	Duration time.Duration
	// Decisions say, for a resumed run, what became of each step and why.
	Decisions []Decision
	// Superseded are notes on results a resumed run replaced (certificates
	// issued by the interrupted run), and Warnings what the operator must
	// look at although the run succeeded.
	Superseded []string
	Warnings   []string
	// Rollback says whether the completed steps were undone after a
	// failure (RollbackComplete, RollbackIncomplete) or not (RollbackNone);
	// RollbackSteps what became of each.
	Rollback      string
	RollbackSteps []StepResult
	// HostsFailed are the hosts that failed within their rollout's
	// max_failures, in the order they did: the run went on without them,
	// and undid their steps.
	HostsFailed []*HostFailure
	// Kept are the steps a rollback left in place: those of the batches
	// that completed in rollouts with rollback = "failed_batch", and what
	// they depend on, in run order.
	Kept []string
	// KeptHosts are the hosts of those batches.
	KeptHosts []string
	// Interrupted: the run was cancelled (Ctrl-C, SIGTERM) before it
	// finished. Nothing was rolled back; resume finishes it.
	Interrupted bool
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

// Changed reports whether any step changed something.
func (r *Report) Changed() bool {
	if r == nil {
		return false
	}
	for _, s := range r.Steps {
		if s.Changed {
			return true
		}
	}
	return false
}

// Unchanged returns how many steps succeeded without changing anything.
func (r *Report) Unchanged() int {
	n := 0
	for _, s := range r.Steps {
		if s.Outcome == Succeeded && s.Unchanged {
			n++
		}
	}
	return n
}

// Observer hears about steps as they start and end, to show progress.
// Calls come from the goroutines that run the steps, concurrently.
type Observer interface {
	StepStarted(addr string)
	StepFinished(result StepResult)
}

// ResumeObserver is an Observer that also hears, before a resumed run
// starts any step, what the resume decided for each step.
type ResumeObserver interface {
	Observer
	Resuming(decisions []Decision)
}
