package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// The actions a resume decides on, per step.
const (
	// ActionSkip: done by an earlier attempt; its journaled outputs stand.
	ActionSkip = "skip"
	// ActionChecked: it had started and its effect was found in place.
	ActionChecked = "checked"
	// ActionRedo: carried out again; Reason says why.
	ActionRedo = "redo"
	// ActionRun: not started yet; runs as in any run.
	ActionRun = "run"
	// ActionLeave: a step for a host that failed within its rollout's
	// max_failures: not carried out, and undone if it changed anything.
	ActionLeave = "leave"
)

// Decision is what a resume does with one step, and why.
type Decision struct {
	Addr   string
	Action string
	Reason string
}

// Change is a step whose definition differs between the plan and the journal.
type Change struct {
	Addr string
	// What is "changed", "added" (not in the journal) or "removed" (in the
	// journal, not in the plan).
	What string
}

// ChangedError is a resume refused because the plan or the variables changed
// since the run started (or a saved plan refused because they changed since
// it was saved).
type ChangedError struct {
	// Since says since when: "the run started" when empty.
	Since                    string
	PlanChanged, VarsChanged bool
	// Vars are the variables whose values changed, when the journal says.
	Vars []string
	// DirChanged is set when the working directory differs from the run's
	// (OldDir): relative paths in the plan would name other files.
	DirChanged bool
	OldDir     string
	Changes    []Change
}

func (e *ChangedError) Error() string {
	var what []string
	if e.PlanChanged {
		what = append(what, "the plan")
	}
	switch {
	case e.VarsChanged && len(e.Vars) > 0:
		what = append(what, "the variables ("+strings.Join(e.Vars, ", ")+")")
	case e.VarsChanged:
		what = append(what, "the variables")
	}
	if e.DirChanged {
		what = append(what, "the working directory (it was "+e.OldDir+", so relative paths would name other files)")
	}
	since := e.Since
	if since == "" {
		since = "the run started"
	}
	msg := strings.Join(what, " and ") + " changed since " + since
	if len(e.Changes) == 0 && e.DirChanged {
		return msg
	}
	if len(e.Changes) == 0 {
		return msg + "; no step's definition changed (comments or formatting?)"
	}
	var steps []string
	for _, c := range e.Changes {
		steps = append(steps, c.Addr+" ("+c.What+")")
	}
	return msg + "; steps whose inputs changed: " + strings.Join(steps, ", ")
}

// IsPlanOf reports whether the run was of this program's plan file, by
// path: two plans that share a state directory share its journals, and one
// must not resume the other's run.
func (p *Program) IsPlanOf(run *Run) bool {
	return !filepath.IsAbs(run.Info.Plan) || run.Info.Plan == p.planPath()
}

// Changes compares the program with what the run's journal says it carried
// out. It returns nil when neither the plan nor the variables changed.
func (p *Program) Changes(run *Run) *ChangedError {
	e := &ChangedError{PlanChanged: run.Info.PlanHash != p.planHash, VarsChanged: run.Info.VarsHash != p.varsHash}
	if wd, err := os.Getwd(); err == nil && run.Info.Dir != "" && run.Info.Dir != wd {
		e.DirChanged, e.OldDir = true, run.Info.Dir
	}
	if !e.PlanChanged && !e.VarsChanged && !e.DirChanged {
		return nil
	}
	for name, h := range run.Info.VarHashes {
		if p.varHashes[name] != h {
			e.Vars = append(e.Vars, name)
		}
	}
	for name := range p.varHashes {
		if _, ok := run.Info.VarHashes[name]; !ok && run.Info.VarHashes != nil {
			e.Vars = append(e.Vars, name)
		}
	}
	sort.Strings(e.Vars)
	journaled := map[string]string{}
	for _, d := range run.Info.Steps {
		journaled[d.Step] = d.Definition
	}
	for _, n := range p.order {
		addr := n.addr
		def, ok := journaled[addr]
		switch {
		case !ok:
			e.Changes = append(e.Changes, Change{Addr: addr, What: "added"})
		case def != n.definition:
			e.Changes = append(e.Changes, Change{Addr: addr, What: "changed"})
		}
		delete(journaled, addr)
	}
	for _, d := range run.Info.Steps {
		if _, gone := journaled[d.Step]; gone {
			e.Changes = append(e.Changes, Change{Addr: d.Step, What: "removed"})
		}
	}
	return e
}

// Resume finishes an unfinished run (see Run.Unfinished) as an uninterrupted
// run would have: steps done earlier are skipped with their journaled
// outputs, a step that started without a recorded outcome is checked against
// reality where its kind can (steps.Resumer), and everything else runs.
//
// Sensitive outputs are never journaled, so a done step whose sensitive
// outputs an unfinished step needs is carried out again, and so is
// everything downstream of it, done or not: a key and its certificate always
// come from the same issuance. The earlier results go to steps.Superseder
// once the run has succeeded.
//
// Resume refuses with a *ChangedError when the plan or the variables changed
// since the run started, unless opts.Force.
func (p *Program) Resume(ctx context.Context, run *Run, opts Options) (*Report, error) {
	if p.invalid {
		return nil, errInvalidProgram
	}
	changes := p.Changes(run)
	if changes != nil && !opts.Force {
		return nil, changes
	}
	x := p.newExecution(opts)
	if err := x.connect(); err != nil {
		return x.noneRun(err)
	}
	defer x.disconnect()
	// Steps carried out under -rollback=false cannot be undone: a
	// rollback that needs them could never finish, and would hold every
	// later resume to it. Such a run is only ever finished forward.
	inPlace := p.leftInPlace(run)
	switch {
	case len(inPlace) == 0:
	case run.RollingBack:
		x.leaveInPlace(inPlace, "its rollback cannot finish, so the run is finished forward instead (the steps not done run again), and")
	case x.opts.Rollback:
		x.leaveInPlace(inPlace, "no rollback for this resume:")
	}
	if err := x.record(journal.Record{Type: journal.RunResumed, Run: p.runInfo(x.opts)}); err != nil {
		return x.noneRun(err)
	}
	x.takeUpFailedHosts(run)
	if run.RollingBack && len(inPlace) == 0 {
		return x.resumeRollback(ctx, run)
	}
	if err := x.planResume(ctx, run, changes); err != nil {
		return x.noneRun(err)
	}
	if o, ok := opts.Observer.(ResumeObserver); ok {
		o.Resuming(x.report.Decisions)
	}
	// The hosts that failed stay out, and what of their steps the run
	// had not undone yet (it was killed meanwhile) is undone first.
	for _, f := range x.report.HostsFailed {
		if err := x.undoHost(ctx, f.Host); err != nil {
			return x.finish(ctx, err)
		}
		f.RolledBack = true
	}
	// Steps that can start at once are prepared now, before anything
	// changes; the others just before they run, since what they need (the
	// admin certificate rotplan logs in with) may be put right by the steps
	// before them.
	var now []*node
	for _, n := range p.order {
		addr := n.addr
		if !x.todo[addr] {
			continue
		}
		x.lazy[addr] = false
		for _, dep := range p.graph.DependsOn(addr) {
			if x.todo[dep] {
				x.lazy[addr] = true
			}
		}
		if !x.lazy[addr] {
			now = append(now, n)
		}
	}
	if err := x.prepare(ctx, now); err != nil {
		return x.finish(ctx, err)
	}
	var todo []*node
	for _, n := range p.order {
		if x.todo[n.addr] {
			todo = append(todo, n)
		}
	}
	if err := x.preflight(ctx, todo); err != nil {
		return x.finish(ctx, err)
	}
	return x.finish(ctx, x.walk(ctx))
}

// takeUpFailedHosts carries over the hosts that failed within their
// rollout's max_failures in the run being resumed: they stay out of it,
// and count against max_failures. A host the plan no longer has in a
// rollout that lets hosts fail (resumed with -force) is not carried over.
func (x *execution) takeUpFailedHosts(run *Run) {
	for _, f := range run.HostsFailed {
		r := x.p.rolloutOf[f.Host]
		if r == nil || !r.tolerates() || x.hostsFailed[f.Host] != nil {
			continue
		}
		x.hostsFailed[f.Host] = &f // f is this iteration's own copy
		x.rolloutFailures[r.block.Name]++
		x.report.HostsFailed = append(x.report.HostsFailed, &f)
	}
}

// leftInPlace returns the steps of the run that may have changed something
// with nothing saved to undo it: a kind that can be undone, started while
// the run had -rollback=false, and not undone since.
func (p *Program) leftInPlace(run *Run) []string {
	var out []string
	for _, n := range p.order {
		s, ok := run.Steps[n.addr]
		if _, undoable := n.kind.(steps.Rollbacker); !ok || !undoable || s.Attempts == 0 || s.Snapshotted || s.State == StateRolledBack {
			continue
		}
		out = append(out, n.addr)
	}
	return out
}

// leaveInPlace turns rollback off for a resume of a run whose steps addrs
// cannot be undone, and says why (what, first): a failure then leaves the
// run in place, for a later resume to finish.
func (x *execution) leaveInPlace(addrs []string, what string) {
	x.opts.Rollback = false
	msg := fmt.Sprintf("%s a failure leaves the run in place, for resume to finish once its cause is fixed: %s ran under -rollback=false, and nothing was saved to undo %s",
		what, strings.Join(addrs, ", "), plural(len(addrs), "it", "them"))
	x.report.Warnings = append(x.report.Warnings, msg)
	x.opts.Log.Warn(msg)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// resumeRollback finishes the rollback of a run that failed: every step that
// had completed and is not undone yet is undone, as the run would have.
func (x *execution) resumeRollback(ctx context.Context, run *Run) (*Report, error) {
	x.opts.Rollback = true
	for _, n := range x.p.order {
		addr := n.addr
		s, ok := run.Steps[addr]
		if !ok {
			continue
		}
		x.restoreSnapshot(n, s)
		switch s.State {
		case StateSucceeded, StateRollingBack, StateRollbackFailed, StateRolledBack:
		case StateSkipped: // for keptByRollouts
			x.skipped[addr] = s.Skipped
			continue
		default:
			continue
		}
		if len(s.Outputs) == 0 {
			continue // undone, if at all, as unsettled
		}
		out, err := restoreOutputs(n.kind, s.Outputs)
		if err != nil {
			return x.noneRun(&StepError{Addr: addr, Diagnostics: x.p.stepDiagnostics(n, "Cannot resume the rollback", err)})
		}
		x.outputs[addr] = out
		x.rolledBack[addr] = s.State == StateRolledBack
	}
	x.rollback(ctx)
	status := journal.StatusRolledBack
	if x.report.Rollback == RollbackIncomplete {
		status = journal.StatusRollbackIncomplete
	} else {
		x.removeBackups()
	}
	err := x.record(journal.Record{Type: journal.RunFinished, Status: status})
	x.report.Duration = time.Since(x.start)
	if err != nil {
		return x.report, fmt.Errorf("the rollback ended but its end could not be journaled: %w", err)
	}
	return x.report, errors.New("the run had failed; its rollback is resumed")
}

// restoreSnapshot takes up what the journal saved to undo a step, and
// whether the step may have changed something although its outputs are
// not known (see StepState.unsettled).
func (x *execution) restoreSnapshot(n *node, s *StepState) {
	if !s.Snapshotted {
		return
	}
	x.snapshots[n.addr] = s.Snapshot
	if _, ok := n.kind.(steps.Rollbacker); ok && s.unsettled {
		x.unsettled[n.addr] = true
	}
}

// planResume decides what becomes of each step, journals the decisions and
// sets up todo, the outputs of the steps that stand, and what is superseded.
// It classifies each step by what the journal says of it, spreads the redo
// rules until nothing changes, then decides.
func (x *execution) planResume(ctx context.Context, run *Run, changes *ChangedError) error {
	f, err := x.classify(ctx, run, changes)
	if err != nil {
		return err
	}
	x.spreadRedo(f)
	return x.decide(run, f)
}

// resumeFindings is what planResume learns of the steps before it decides.
type resumeFindings struct {
	// done are the steps an earlier attempt carried out, or whose effect
	// was found in place; checked says, for the latter, how.
	done    map[string]bool
	checked map[string]string
	// redo are done steps carried out again, and why.
	redo map[string]string
}

// stepState is what the run's journal says of a step: pending when it says
// nothing.
func stepState(run *Run, addr string) *StepState {
	if s, ok := run.Steps[addr]; ok {
		return s
	}
	return &StepState{Addr: addr, State: StatePending}
}

// classify takes up what the journal says of each step: what was saved to
// undo it, the skips (the run decided; a resume keeps to them), the outputs
// of the steps that succeeded, and, for a step that started without a
// recorded outcome, whether its effect is in place. A done step whose
// definition changed (resumed with -force) is to be redone.
func (x *execution) classify(ctx context.Context, run *Run, changes *ChangedError) (*resumeFindings, error) {
	changed := map[string]bool{}
	if changes != nil {
		for _, c := range changes.Changes {
			changed[c.Addr] = c.What == "changed"
		}
	}
	f := &resumeFindings{done: map[string]bool{}, checked: map[string]string{}, redo: map[string]string{}}
	for _, n := range x.p.order {
		addr := n.addr
		s := stepState(run, addr)
		x.restoreSnapshot(n, s)
		if x.failedHost(n.hostAt) != nil {
			x.takeUpLeft(n, s)
			continue
		}
		switch s.State {
		case StateSkipped:
			x.skipped[addr] = s.Skipped
			continue
		case StateSucceeded:
			out, err := restoreOutputs(n.kind, s.Outputs)
			if err != nil {
				f.redo[addr] = fmt.Sprintf("its journaled outputs cannot be read (%v)", err)
				continue
			}
			x.outputs[addr], f.done[addr] = out, true
		case StateStarted:
			if changed[addr] {
				continue
			}
			out, err := x.findInPlace(ctx, n, s)
			if err != nil {
				return nil, err
			}
			if out == cty.NilVal {
				continue
			}
			x.outputs[addr], f.done[addr] = out, true
			f.checked[addr] = "it started at " + s.Started.Local().Format(time.TimeOnly) + " and its effect was found in place"
		}
		if f.done[addr] && changed[addr] {
			f.redo[addr] = "its definition changed since the run started (resumed with -force)"
		}
	}
	return f, nil
}

// takeUpLeft takes up what the journal says of n, a step for a host that
// failed, for undoHost: the outputs of what it did, or that it was
// undone.
func (x *execution) takeUpLeft(n *node, s *StepState) {
	switch s.State {
	case StateRolledBack:
		x.rolledBack[n.addr] = true
	case StateSucceeded, StateRollingBack, StateRollbackFailed:
		if out, err := restoreOutputs(n.kind, s.Outputs); err == nil && len(s.Outputs) > 0 {
			x.outputs[n.addr] = out
		}
	}
}

// findInPlace asks the kind of a step that started without a recorded
// outcome whether its effect is in place (steps.Resumer). When it is, the
// success is journaled durably and its outputs returned; otherwise, or when
// the kind cannot tell, cty.NilVal: the step runs again.
func (x *execution) findInPlace(ctx context.Context, n *node, s *StepState) (cty.Value, error) {
	r, ok := n.kind.(steps.Resumer)
	if !ok || len(s.Intent) == 0 {
		return cty.NilVal, nil
	}
	out, inPlace, err := r.Done(ctx, x.named(n), s.Intent)
	if err != nil {
		x.opts.Log.Warn("cannot tell whether an interrupted step completed; it runs again", "step", n.addr, "error", err)
		return cty.NilVal, nil
	}
	if !inPlace {
		return cty.NilVal, nil
	}
	if out, err = conformOutputs(n, out); err != nil {
		return cty.NilVal, &StepError{Addr: n.addr, Diagnostics: x.p.stepDiagnostics(n, "Cannot resume", err)}
	}
	if serr := x.recordSuccess(n, out, 0, true, ""); serr != nil {
		return cty.NilVal, serr
	}
	return out, nil
}

// spreadRedo applies the redo rules (see whyRedo) to the done steps. Each
// rule can feed the other, so it repeats until nothing changes.
func (x *execution) spreadRedo(f *resumeFindings) {
	for more := true; more; {
		more = false
		for _, n := range x.p.order {
			if !f.done[n.addr] || f.redo[n.addr] != "" {
				continue
			}
			if why := x.whyRedo(n, f); why != "" {
				f.redo[n.addr], more = why, true
			}
		}
	}
}

// whyRedo says why the done step n is carried out again, given what is
// redone so far, or "" when it is not: a step it depends on is, or a step
// that has yet to run needs its sensitive outputs.
func (x *execution) whyRedo(n *node, f *resumeFindings) string {
	p := x.p
	for _, dep := range p.graph.DependsOn(n.addr) {
		if x.failedHost(p.nodes[dep].hostAt) != nil {
			continue // a batch's wait for a host that failed, which stays out
		}
		// A done step whose dependency is not done can only follow a
		// resume killed while it journaled its decisions: the dependency
		// was redone, so its outputs are not the ones this step used.
		if _, skipped := x.skipped[dep]; f.redo[dep] != "" || (!f.done[dep] && !skipped) {
			return fmt.Sprintf("it depends on %s, which runs again", dep)
		}
	}
	for _, user := range p.graph.Dependents(n.addr) {
		if (!f.done[user] || f.redo[user] != "") && p.nodes[user].readsSensitive(n) {
			return fmt.Sprintf("%s has yet to run and needs its sensitive outputs, which are never journaled", user)
		}
	}
	return ""
}

// decide turns the findings into a Decision per step, journals the redos,
// and sets up todo, the outputs that stand and what is superseded.
func (x *execution) decide(run *Run, f *resumeFindings) error {
	for _, n := range x.p.order {
		addr := n.addr
		if why, skipped := x.skipped[addr]; skipped {
			x.report.Steps = append(x.report.Steps, StepResult{Addr: addr, Outcome: Skipped, Reason: why})
			x.report.Decisions = append(x.report.Decisions, Decision{Addr: addr, Action: ActionSkip, Reason: "skipped: " + why})
			continue
		}
		s := stepState(run, addr)
		if hf := x.failedHost(n.hostAt); hf != nil {
			why := fmt.Sprintf("%s failed at %s", hf.Host, hf.Step)
			x.report.Steps = append(x.report.Steps, StepResult{Addr: addr, Outcome: NotRun, Reason: why})
			x.report.Decisions = append(x.report.Decisions, Decision{Addr: addr, Action: ActionLeave, Reason: why + ": its steps are undone, not carried out"})
			continue
		}
		d := decision(addr, s, f)
		if d.Action == ActionRedo {
			if err := x.record(journal.Record{Type: journal.StepRedo, Step: addr, Reason: d.Reason}); err != nil {
				return x.journalError(n, err)
			}
		}
		x.supersedes(n, s, f)
		if d.Action == ActionSkip || d.Action == ActionChecked {
			x.report.Steps = append(x.report.Steps, StepResult{Addr: addr, Outcome: Done})
		} else {
			x.todo[addr] = true
			delete(x.outputs, addr)
		}
		x.report.Decisions = append(x.report.Decisions, d)
	}
	return nil
}

// decision is what becomes of a step that was not skipped, and why.
func decision(addr string, s *StepState, f *resumeFindings) Decision {
	d := Decision{Addr: addr}
	switch {
	case f.done[addr] && f.redo[addr] == "":
		d.Action, d.Reason = ActionSkip, "done"
		if f.checked[addr] != "" {
			d.Action, d.Reason = ActionChecked, f.checked[addr]
		}
	case f.redo[addr] != "":
		d.Action, d.Reason = ActionRedo, f.redo[addr]
	case s.State == StateStarted:
		d.Action, d.Reason = ActionRedo, "it started at "+s.Started.Local().Format(time.TimeOnly)+" but its outcome was never recorded"
	case s.State == StateFailed:
		d.Action, d.Reason = ActionRedo, "it failed: "+s.Error
	case s.State == StateRollingBack || s.State == StateRollbackFailed || s.State == StateRolledBack:
		// A rollback given up for steps it could not undo.
		d.Action, d.Reason = ActionRedo, "its rollback did not finish"
	default:
		d.Action = ActionRun
	}
	return d
}

// supersedes notes the earlier results of a step that its kind hears of
// once the run has succeeded (steps.Superseder): those the journal already
// holds, the one it is redone over, and one a start whose result was lost
// may have left.
func (x *execution) supersedes(n *node, s *StepState, f *resumeFindings) {
	addr := n.addr
	for _, raw := range s.Superseded {
		if prev, err := restoreOutputs(n.kind, raw); err == nil {
			x.superseded[addr] = append(x.superseded[addr], prev)
		}
	}
	if f.done[addr] && f.redo[addr] != "" {
		// What it is redone over: the journaled result, or the one just
		// found in place.
		x.superseded[addr] = append(x.superseded[addr], x.outputs[addr])
	}
	if x.unsettled[addr] && !f.done[addr] {
		// A start whose result was lost may have left one (something the
		// step created elsewhere): its kind hears of it, with its outputs
		// unknown.
		x.superseded[addr] = append(x.superseded[addr], unknownOutputs(n.kind))
	}
}
