package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
)

// runView shows a run or a resume: each step as it starts and ends, what
// a resume decided, the rollback, and how the run ended. The engine calls
// its Observer methods from several goroutines.
type runView interface {
	engine.ResumeObserver
	engine.RollbackObserver
	// begin says what runs, before the first step.
	begin(runStart)
	// end says how the run ended, and leaves nothing unwritten.
	end(runEnd)
}

// runStart is what a run or a resume begins with.
type runStart struct {
	plan  string
	steps int
	// resumed describes the run a resume finishes ("" for a new run), and
	// vars the run's variables it gives again (describeInputs).
	resumed, vars string
}

// runEnd is how a run ended. report is nil when a resume could not begin
// (err says why).
type runEnd struct {
	report *engine.Report
	err    error
	// resume is the command that finishes the run, if it did not finish.
	resume string
	// diags are the failed steps' diagnostics (not those interrupted);
	// other is set when err is not about a step.
	diags hcl.Diagnostics
	other bool
	// exit is the exit code rotplan ends with.
	exit int
}

// lineView prints one line per step event: what operators read in a
// terminal or a log. A mutex keeps lines whole when steps report from
// several goroutines. Lines are collected and written together at most
// flushEvery after the first of them: a run of thousands of steps would
// otherwise make two writes per step, and whatever reads them (a terminal,
// a pipe to a log) works as hard. end writes out what is left.
type lineView struct {
	mu     sync.Mutex
	w      *bufio.Writer
	timer  *time.Timer // pending flush, nil when none
	stderr io.Writer
	diags  *diagPrinter
	// pal paints the summary and the failures, on a terminal; steps is
	// how the summary names the steps that did not run.
	pal   palette
	steps stepLines
}

// stepLines is how a summary names the steps that did not run.
type stepLines int

const (
	// everyStep: one line each, as a log that is searched by step wants.
	everyStep stepLines = iota
	// foldedSteps: one line for all, a few named (a terminal).
	foldedSteps
	// noSteps: none; the summary counts them (-quiet).
	noSteps
)

// flushEvery is how long a progress line may wait to be written.
const flushEvery = 100 * time.Millisecond

func newLineView(stdout, stderr io.Writer, diags *diagPrinter) *lineView {
	return &lineView{w: bufio.NewWriterSize(stdout, 64<<10), stderr: stderr, diags: diags}
}

func (p *lineView) begin(b runStart) {
	if b.resumed == "" {
		p.line("rotplan: running %s: %d steps", b.plan, b.steps)
	} else {
		p.line("rotplan: resuming %s: %s", b.plan, b.resumed)
		if b.vars != "" {
			p.line("rotplan: with the run's variables: %s", b.vars)
		}
	}
	p.flush() // the run may take a while to reach its first step
}

func (p *lineView) end(e runEnd) {
	if e.report != nil {
		p.summary(e.report, e.err, e.resume)
		if p.steps != noSteps { // notes, not what -quiet prints
			for _, note := range e.report.Superseded {
				p.line("Superseded: %s", note)
			}
		}
	}
	p.flush()
	if e.report != nil {
		for _, w := range e.report.Warnings {
			fmt.Fprintf(p.stderr, "rotplan: %s: %s\n", p.diags.pal.caution("warning"), w)
		}
	}
	p.diags.print(e.diags)
	if e.other {
		fmt.Fprintf(p.stderr, "%s: %v\n", p.diags.pal.bad("Error"), e.err)
	}
}

func (p *lineView) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.timer == nil {
		p.timer = time.AfterFunc(flushEvery, p.flush)
	}
}

// flush writes out the lines collected so far.
func (p *lineView) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.w.Flush()
}

// StepStarted implements engine.Observer.
func (p *lineView) StepStarted(addr string) { p.line("%-28s started", addr) }

// StepFinished implements engine.Observer.
func (p *lineView) StepFinished(r engine.StepResult) {
	if r.Outcome == engine.Skipped {
		p.line("%-28s %-8s %s", r.Addr, r.Outcome, r.Reason)
		return
	}
	if r.Unchanged {
		p.line("%-28s %-8s %s  no change: %s", r.Addr, r.Outcome, roundDuration(r.Duration), r.Reason)
		return
	}
	if r.Note != "" {
		p.line("%-28s %s %s  %s", r.Addr, p.outcome(r.Outcome), roundDuration(r.Duration), r.Note)
		return
	}
	p.line("%-28s %s %s", r.Addr, p.outcome(r.Outcome), roundDuration(r.Duration))
}

// outcome is an outcome in a column of 8, painted when it went wrong.
func (p *lineView) outcome(o engine.Outcome) string {
	s := fmt.Sprintf("%-8s", o)
	switch o {
	case engine.Failed, engine.RollbackFailed:
		return p.pal.bad(s)
	case engine.Interrupted, engine.RolledBack:
		return p.pal.caution(s)
	}
	return s
}

// Resuming implements engine.ResumeObserver: what the resume does with each
// step that is not simply run, and why.
func (p *lineView) Resuming(decisions []engine.Decision) {
	for _, d := range decisions {
		switch d.Action {
		case engine.ActionSkip:
			if strings.HasPrefix(d.Reason, "skipped") {
				p.line("%-28s %s", d.Addr, d.Reason)
				continue
			}
			p.line("%-28s done earlier, skipped", d.Addr)
		case engine.ActionChecked:
			p.line("%-28s done: %s", d.Addr, d.Reason)
		case engine.ActionRedo:
			p.line("%-28s runs again: %s", d.Addr, d.Reason)
		case engine.ActionLeave:
			p.line("%-28s not run: %s", d.Addr, d.Reason)
		}
	}
}

// RollbackStarted implements engine.RollbackObserver.
func (p *lineView) RollbackStarted(addr string) { p.line("%-28s rolling back", addr) }

// RollbackFinished implements engine.RollbackObserver.
func (p *lineView) RollbackFinished(r engine.StepResult) {
	p.line("%-28s %s %s", r.Addr, p.outcome(r.Outcome), roundDuration(r.Duration))
}

// summary says how the run ended. resume is the command that finishes a
// run that did not.
func (p *lineView) summary(r *engine.Report, err error, resume string) {
	if r.Rollback != engine.RollbackNone {
		p.rollbackSummary(r, resume)
		return
	}
	total := len(r.Steps)
	ok, failed, notRun, done := r.Count(engine.Succeeded), r.Count(engine.Failed), r.Count(engine.NotRun), r.Count(engine.Done)
	stopped := r.Count(engine.Interrupted)
	if notRun < total { // when none ran, the summary says it of all
		p.notRun(r)
	}
	skipped := r.Count(engine.Skipped)
	earlier := ""
	if done > 0 {
		earlier = fmt.Sprintf(" (%d more were done earlier)", done)
	}
	if skipped > 0 {
		earlier += fmt.Sprintf(", %d skipped as not due", skipped)
	}
	if unchanged := r.Unchanged(); unchanged > 0 {
		earlier += fmt.Sprintf(", %d of them changed nothing", unchanged)
	}
	switch {
	case err == nil && skipped == total:
		p.line("Nothing to do: every step was skipped as not due, in %s. Nothing was changed.", roundDuration(r.Duration))
		return
	case err == nil && len(r.HostsFailed) > 0:
		n := len(r.HostsFailed)
		p.line("Rotation %s: %d of %d steps succeeded%s in %s; %d %s failed, within max_failures, and %s rolled back.",
			p.pal.caution("complete except for "+thousands(n)+" "+plural(n, "host", "hosts")), ok, total-done-skipped, earlier, roundDuration(r.Duration),
			n, plural(n, "host", "hosts"), plural(n, "was", "were"))
		p.hostsFailed(r)
		return
	case err == nil:
		p.line("Rotation %s: %d of %d steps succeeded%s in %s.", p.pal.good("complete"), ok, total-done-skipped, earlier, roundDuration(r.Duration))
		return
	case r.Interrupted && ok+failed+stopped+done == 0:
		p.line("Rotation %s before any step ran, in %s: nothing was changed.", p.pal.caution("INTERRUPTED"), roundDuration(r.Duration))
		return
	case r.Interrupted:
		p.line("Rotation %s: %d succeeded, %d failed, %d interrupted, %d not run, of %d steps%s, in %s.",
			p.pal.caution("INTERRUPTED"), ok, failed, stopped, notRun, total-done, earlier, roundDuration(r.Duration))
		p.line("Nothing was rolled back: an interrupted run is finished, not undone. Finish it with: %s", resume)
		return
	}
	if ok+failed == 0 && done == 0 {
		p.line("Rotation %s before any step ran (%d not run, %s): nothing was changed.", p.pal.bad("FAILED"), notRun, roundDuration(r.Duration))
		return
	}
	p.line("Rotation %s: %d succeeded, %d failed, %d not run, of %d steps%s, in %s.", p.pal.bad("FAILED"), ok, failed, notRun, total-done, earlier, roundDuration(r.Duration))
	if ok+done > 0 {
		p.line("The %d completed steps were not rolled back: their changes are in place. Fix the cause, then finish with: %s", ok+done, resume)
	}
}

// hostsFailed names the hosts rollouts let fail, and says what became of
// them.
func (p *lineView) hostsFailed(r *engine.Report) {
	for _, h := range r.HostsFailed {
		state := "its steps were undone: it is as it was before the run"
		if !h.RolledBack {
			state = "its steps could not all be undone"
		}
		p.line("  %s (rollout %s) failed at %s; %s.", h.Host, h.Rollout, h.Step, state)
	}
}

// notRun names the steps that did not run, as p.steps says.
func (p *lineView) notRun(r *engine.Report) {
	var addrs []string
	for _, s := range r.Steps {
		if s.Outcome == engine.NotRun {
			addrs = append(addrs, s.Addr)
		}
	}
	switch {
	case len(addrs) == 0 || p.steps == noSteps:
	case p.steps == foldedSteps:
		p.line("%s %s not run: %s.", thousands(len(addrs)), plural(len(addrs), "step", "steps"), nameSome(addrs))
	default:
		for _, addr := range addrs {
			p.line("%-28s %s", addr, engine.NotRun)
		}
	}
}

// rollbackSummary says how a failed run was undone, and what is left to the
// operator.
func (p *lineView) rollbackSummary(r *engine.Report, resume string) {
	undone := 0
	var failed []engine.StepResult
	for _, s := range r.RollbackSteps {
		if s.Outcome == engine.RolledBack {
			undone++
		} else {
			failed = append(failed, s)
		}
	}
	p.hostsFailed(r)
	switch {
	case len(failed) == 0 && len(r.Kept) > 0:
		p.line("Rotation %s and was %s but for the batches that completed (rollback = \"failed_batch\"): %d steps undone, %d kept, in %s.",
			p.pal.bad("FAILED"), p.pal.caution("ROLLED BACK"), undone, len(r.Kept), roundDuration(r.Duration))
		p.line("Kept, with their new version: %s.", nameSome(r.KeptHosts))
		return
	case len(failed) == 0:
		p.line("Rotation %s and was %s: %d steps undone, in %s. The system is as it was before the run.",
			p.pal.bad("FAILED"), p.pal.caution("ROLLED BACK"), undone, roundDuration(r.Duration))
		return
	}
	p.line("Rotation %s and the %s: %d steps undone, %d could not be, in %s.",
		p.pal.bad("FAILED"), p.pal.bad("ROLLBACK IS INCOMPLETE"), undone, len(failed), roundDuration(r.Duration))
	p.line("Still to undo by hand (then %s retries what is left):", resume)
	for _, s := range failed {
		p.line("  %s: %s", s.Addr, s.Err.Error())
	}
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d
}
