package main

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/plans"
)

// jsonView prints a run's events on stdout as JSON, one object per line
// (run -json, resume -json), for the schedulers and dashboards that drive
// unattended rotation. The events and their fields are a contract,
// documented in docs/cli.md; eventFormatVersion says which.
//
// Events are collected and written at most flushEvery after the first of
// them, as lineView does, and at once by begin and end. A write holds
// whole lines only, so a reader never sees half an event, and it holds
// writeMu but not mu: a reader that is slow to read holds up the writes,
// not the steps, until maxPending bytes wait.
type jsonView struct {
	mu      sync.Mutex // guards what follows, up to writeMu
	pending []byte     // whole lines not yet written
	timer   *time.Timer
	scratch bytes.Buffer // one event being encoded
	enc     *json.Encoder
	now     func() time.Time

	writeMu sync.Mutex // one write at a time, in the order events came
	w       io.Writer
	spare   []byte // the last written lines' buffer, for pending to reuse
}

// eventFormatVersion is the format_version of every event. Later versions
// only add event types and fields; see docs/cli.md.
const eventFormatVersion = 1

// eventTime is how events write their time: RFC 3339 in UTC with
// microseconds, always as many digits, so that lines sort as text.
const eventTime = "2006-01-02T15:04:05.000000Z07:00"

// maxPending is how many bytes of events may wait for a write before the
// step that adds one writes them itself: past it, a reader that stopped
// reading holds the run up, rather than rotplan's memory growing.
const maxPending = 256 << 10

func newJSONView(stdout io.Writer) *jsonView {
	v := &jsonView{w: stdout, now: time.Now}
	v.enc = json.NewEncoder(&v.scratch)
	// Plans and errors hold < > &, which a log reader should see as they
	// are; the JSON is valid either way.
	v.enc.SetEscapeHTML(false)
	return v
}

// The events' fields, as docs/cli.md lists them. Every event begins with
// eventHeader; fields marked omitempty are absent when they do not apply.

type eventHeader struct {
	Type          string `json:"type"`
	Time          string `json:"time"`
	FormatVersion int    `json:"format_version"`
}

// stamp names the event and dates it.
func (h *eventHeader) stamp(typ string, t time.Time) {
	h.Type, h.Time, h.FormatVersion = typ, t.UTC().Format(eventTime), eventFormatVersion
}

// event is any of the events below.
type event interface {
	stamp(typ string, t time.Time)
}

type runStartedEvent struct {
	eventHeader
	Plan           string `json:"plan"`
	Steps          int    `json:"steps"`
	RotplanVersion string `json:"rotplan_version"`
	Resumed        string `json:"resumed,omitempty"`
	Variables      string `json:"variables,omitempty"`
}

type resumeDecisionEvent struct {
	eventHeader
	Step   string `json:"step"`
	Action string `json:"action"`
	Reason string `json:"reason"`
}

// stepEvent is step_started and rollback_started.
type stepEvent struct {
	eventHeader
	Step string `json:"step"`
}

type stepFinishedEvent struct {
	eventHeader
	Step       string  `json:"step"`
	Outcome    string  `json:"outcome"`
	DurationMS float64 `json:"duration_ms"`
	Unchanged  bool    `json:"unchanged"`
	Reason     string  `json:"reason,omitempty"`
	Note       string  `json:"note,omitempty"`
	Error      string  `json:"error,omitempty"`
}

type rollbackFinishedEvent struct {
	eventHeader
	Step       string  `json:"step"`
	Outcome    string  `json:"outcome"`
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
}

type diagnosticEvent struct {
	eventHeader
	Severity string        `json:"severity"`
	Summary  string        `json:"summary"`
	Detail   string        `json:"detail"`
	Location *locationJSON `json:"location,omitempty"`
}

// messageEvent is warning and superseded.
type messageEvent struct {
	eventHeader
	Message string `json:"message"`
}

type runFinishedEvent struct {
	eventHeader
	Status     string         `json:"status"`
	ExitCode   int            `json:"exit_code"`
	DurationMS float64        `json:"duration_ms"`
	Steps      int            `json:"steps"`
	Counts     map[string]int `json:"counts"`
	Unchanged  int            `json:"unchanged"`
	// RollbackCounts is there when completed steps were undone.
	RollbackCounts map[string]int `json:"rollback_counts,omitempty"`
	ResumeCommand  string         `json:"resume_command,omitempty"`
	// HostsFailed are the hosts rollouts let fail (max_failures), whose
	// steps were undone; Kept the steps a rollback left in place
	// (rollback = "failed_batch").
	HostsFailed []hostFailedJSON `json:"hosts_failed,omitempty"`
	Kept        []string         `json:"kept,omitempty"`
	KeptHosts   []string         `json:"kept_hosts,omitempty"`
}

// hostFailedJSON is a host a rollout let fail: where, and whether its
// steps were all undone.
type hostFailedJSON struct {
	Host       string `json:"host"`
	Rollout    string `json:"rollout"`
	Step       string `json:"step"`
	RolledBack bool   `json:"rolled_back"`
}

// The statuses of run_finished.
const (
	statusSucceeded          = "succeeded"
	statusFailed             = "failed"
	statusRolledBack         = "rolled_back"
	statusRollbackIncomplete = "rollback_incomplete"
	statusInterrupted        = "interrupted"
	statusHostsFailed        = "hosts_failed"
)

// stepOutcomes are the outcomes run_finished counts, each always present.
var stepOutcomes = []engine.Outcome{engine.Succeeded, engine.Failed, engine.NotRun, engine.Done, engine.Skipped, engine.Interrupted}

// emit adds an event to those waiting to be written.
func (v *jsonView) emit(typ string, e event) {
	v.mu.Lock()
	// Dated under the lock, so that times never go back from line to line.
	e.stamp(typ, v.now())
	v.scratch.Reset()
	if err := v.enc.Encode(e); err != nil {
		panic(err) // strings, numbers and maps of them always encode
	}
	v.pending = append(v.pending, v.scratch.Bytes()...)
	full := len(v.pending) >= maxPending
	if !full && v.timer == nil {
		v.timer = time.AfterFunc(flushEvery, v.flush)
	}
	v.mu.Unlock()
	if full {
		v.flush()
	}
}

// flush writes out the events collected so far, in one write.
func (v *jsonView) flush() {
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	v.mu.Lock()
	out := v.pending
	v.pending = v.spare[:0]
	if v.timer != nil {
		v.timer.Stop()
		v.timer = nil
	}
	v.mu.Unlock()
	if len(out) > 0 {
		_, _ = v.w.Write(out) // stdout gone: nothing to tell, and no one to tell it
	}
	v.spare = out
}

func (v *jsonView) begin(b runStart) {
	v.emit("run_started", &runStartedEvent{Plan: b.plan, Steps: b.steps, RotplanVersion: version, Resumed: b.resumed, Variables: b.vars})
	v.flush() // the run may take a while to reach its first step
}

// StepStarted implements engine.Observer.
func (v *jsonView) StepStarted(addr string) { v.emit("step_started", &stepEvent{Step: addr}) }

// StepFinished implements engine.Observer.
func (v *jsonView) StepFinished(r engine.StepResult) {
	e := &stepFinishedEvent{Step: r.Addr, Outcome: string(r.Outcome), DurationMS: milliseconds(r.Duration), Unchanged: r.Unchanged}
	if r.Outcome == engine.Skipped || r.Unchanged {
		e.Reason = r.Reason
	}
	if r.Err != nil {
		e.Error = r.Err.Error()
	}
	e.Note = r.Note
	v.emit("step_finished", e)
}

// Resuming implements engine.ResumeObserver. A step that simply runs, as
// in any run, gets no decision: its step_started says as much.
func (v *jsonView) Resuming(decisions []engine.Decision) {
	for _, d := range decisions {
		if d.Action == engine.ActionRun {
			continue
		}
		v.emit("resume_decision", &resumeDecisionEvent{Step: d.Addr, Action: d.Action, Reason: d.Reason})
	}
}

// RollbackStarted implements engine.RollbackObserver.
func (v *jsonView) RollbackStarted(addr string) { v.emit("rollback_started", &stepEvent{Step: addr}) }

// RollbackFinished implements engine.RollbackObserver.
func (v *jsonView) RollbackFinished(r engine.StepResult) {
	e := &rollbackFinishedEvent{Step: r.Addr, Outcome: string(r.Outcome), DurationMS: milliseconds(r.Duration)}
	if r.Err != nil {
		e.Error = r.Err.Error()
	}
	v.emit("rollback_finished", e)
}

func (v *jsonView) end(e runEnd) {
	for _, d := range e.diags {
		v.emit("diagnostic", diagnosticOf(d))
	}
	if e.err != nil && (e.other || e.report == nil) {
		v.emit("diagnostic", &diagnosticEvent{Severity: "error", Summary: e.err.Error()})
	}
	if e.report != nil {
		for _, note := range e.report.Superseded {
			v.emit("superseded", &messageEvent{Message: note})
		}
		for _, w := range e.report.Warnings {
			v.emit("warning", &messageEvent{Message: w})
		}
	}
	v.emit("run_finished", runFinished(e))
	v.flush()
}

// diagnosticOf is a diagnostic as an event, unfolded: a program groups
// them as it likes.
func diagnosticOf(d *hcl.Diagnostic) *diagnosticEvent {
	d = plans.WithoutSecret(d)
	e := &diagnosticEvent{Severity: "error", Summary: d.Summary, Detail: d.Detail}
	if d.Severity == hcl.DiagWarning {
		e.Severity = "warning"
	}
	if d.Subject != nil {
		e.Location = &locationJSON{File: d.Subject.Filename, Line: d.Subject.Start.Line, Column: d.Subject.Start.Column}
	}
	return e
}

// runFinished is the last event: how the run ended, with what the line
// view's summary says in words.
func runFinished(e runEnd) *runFinishedEvent {
	f := &runFinishedEvent{Status: statusFailed, ExitCode: e.exit, Counts: map[string]int{}}
	for _, o := range stepOutcomes {
		f.Counts[string(o)] = 0
	}
	r := e.report
	if r == nil {
		return f
	}
	f.DurationMS, f.Steps, f.Unchanged = milliseconds(r.Duration), len(r.Steps), r.Unchanged()
	for _, s := range r.Steps {
		f.Counts[string(s.Outcome)]++
	}
	if r.Rollback != engine.RollbackNone {
		f.RollbackCounts = map[string]int{string(engine.RolledBack): 0, string(engine.RollbackFailed): 0}
		for _, s := range r.RollbackSteps {
			f.RollbackCounts[string(s.Outcome)]++
		}
	}
	for _, h := range r.HostsFailed {
		f.HostsFailed = append(f.HostsFailed, hostFailedJSON{Host: h.Host, Rollout: h.Rollout, Step: h.Step, RolledBack: h.RolledBack})
	}
	f.Kept, f.KeptHosts = r.Kept, r.KeptHosts
	switch {
	case e.err == nil && len(r.HostsFailed) > 0:
		f.Status = statusHostsFailed
	case e.err == nil:
		f.Status = statusSucceeded
	case r.Rollback == engine.RollbackComplete:
		f.Status = statusRolledBack
	case r.Rollback == engine.RollbackIncomplete:
		f.Status = statusRollbackIncomplete
	case r.Interrupted:
		f.Status = statusInterrupted
	}
	// Resume finishes a run that left something behind it: a rollback to
	// complete, or steps that ran and others that did not. A run that
	// stopped before any step ran changed nothing, and is run again.
	ran := r.Count(engine.Succeeded) + r.Count(engine.Failed) + r.Count(engine.Interrupted) + r.Count(engine.Done)
	if f.Status == statusRollbackIncomplete || (f.Status == statusFailed || f.Status == statusInterrupted) && ran > 0 {
		f.ResumeCommand = e.resume
	}
	return f
}

// milliseconds is d in milliseconds, to the microsecond.
func milliseconds(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
