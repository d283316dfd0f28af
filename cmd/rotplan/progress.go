package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rotplan/rotplan/engine"
)

// progress prints one line per step event. A mutex keeps lines whole when
// steps report from several goroutines. Lines are collected and written
// together at most flushEvery after the first of them: a run of thousands
// of steps would otherwise make two writes per step, and whatever reads
// them (a terminal, a pipe to a log) works as hard. summary writes out
// what is left.
type progress struct {
	mu    sync.Mutex
	w     *bufio.Writer
	timer *time.Timer // pending flush, nil when none
}

// flushEvery is how long a progress line may wait to be written.
const flushEvery = 100 * time.Millisecond

func newProgress(w io.Writer) *progress { return &progress{w: bufio.NewWriterSize(w, 64<<10)} }

func (p *progress) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.timer == nil {
		p.timer = time.AfterFunc(flushEvery, p.flush)
	}
}

// flush writes out the lines collected so far.
func (p *progress) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.w.Flush()
}

// StepStarted implements engine.Observer.
func (p *progress) StepStarted(addr string) { p.line("%-28s started", addr) }

// StepFinished implements engine.Observer.
func (p *progress) StepFinished(r engine.StepResult) {
	if r.Outcome == engine.Skipped {
		p.line("%-28s %-8s %s", r.Addr, r.Outcome, r.Reason)
		return
	}
	if r.Unchanged {
		p.line("%-28s %-8s %s  no change: %s", r.Addr, r.Outcome, roundDuration(r.Duration), r.Reason)
		return
	}
	p.line("%-28s %-8s %s", r.Addr, r.Outcome, roundDuration(r.Duration))
}

// Resuming implements engine.ResumeObserver: what the resume does with each
// step that is not simply run, and why.
func (p *progress) Resuming(decisions []engine.Decision) {
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
		}
	}
}

// RollbackStarted implements engine.RollbackObserver.
func (p *progress) RollbackStarted(addr string) { p.line("%-28s rolling back", addr) }

// RollbackFinished implements engine.RollbackObserver.
func (p *progress) RollbackFinished(r engine.StepResult) {
	p.line("%-28s %-8s %s", r.Addr, r.Outcome, roundDuration(r.Duration))
}

// summary says how the run ended. resume is the command that finishes a
// run that did not.
func (p *progress) summary(r *engine.Report, err error, resume string) {
	defer p.flush()
	if r == nil {
		return
	}
	if r.Rollback != engine.RollbackNone {
		p.rollbackSummary(r, resume)
		return
	}
	total := len(r.Steps)
	ok, failed, notRun, done := r.Count(engine.Succeeded), r.Count(engine.Failed), r.Count(engine.NotRun), r.Count(engine.Done)
	stopped := r.Count(engine.Interrupted)
	if notRun < total { // when none ran, the summary says it of all
		for _, s := range r.Steps {
			if s.Outcome == engine.NotRun {
				p.line("%-28s %s", s.Addr, engine.NotRun)
			}
		}
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
	case err == nil:
		p.line("Rotation complete: %d of %d steps succeeded%s in %s.", ok, total-done-skipped, earlier, roundDuration(r.Duration))
		return
	case r.Interrupted && ok+failed+stopped+done == 0:
		p.line("Rotation INTERRUPTED before any step ran, in %s: nothing was changed.", roundDuration(r.Duration))
		return
	case r.Interrupted:
		p.line("Rotation INTERRUPTED: %d succeeded, %d failed, %d interrupted, %d not run, of %d steps%s, in %s.",
			ok, failed, stopped, notRun, total-done, earlier, roundDuration(r.Duration))
		p.line("Nothing was rolled back: an interrupted run is finished, not undone. Finish it with: %s", resume)
		return
	}
	if ok+failed == 0 && done == 0 {
		p.line("Rotation FAILED before any step ran (%d not run, %s): nothing was changed.", notRun, roundDuration(r.Duration))
		return
	}
	p.line("Rotation FAILED: %d succeeded, %d failed, %d not run, of %d steps%s, in %s.", ok, failed, notRun, total-done, earlier, roundDuration(r.Duration))
	if ok+done > 0 {
		p.line("The %d completed steps were not rolled back: their changes are in place. Fix the cause, then finish with: %s", ok+done, resume)
	}
}

// rollbackSummary says how a failed run was undone, and what is left to the
// operator.
func (p *progress) rollbackSummary(r *engine.Report, resume string) {
	undone := 0
	var failed []engine.StepResult
	for _, s := range r.RollbackSteps {
		if s.Outcome == engine.RolledBack {
			undone++
		} else {
			failed = append(failed, s)
		}
	}
	if len(failed) == 0 {
		p.line("Rotation FAILED and was ROLLED BACK: %d steps undone, in %s. The system is as it was before the run.", undone, roundDuration(r.Duration))
		return
	}
	p.line("Rotation FAILED and the ROLLBACK IS INCOMPLETE: %d steps undone, %d could not be, in %s.", undone, len(failed), roundDuration(r.Duration))
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
