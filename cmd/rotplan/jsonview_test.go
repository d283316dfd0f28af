package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
)

// decodeEvents parses a JSON event stream: every line one JSON object with
// a type, an RFC 3339 UTC time with fractional seconds and format_version
// 1, and nothing else in the stream. It returns the events without their
// time and format_version, which the tests need not repeat.
func decodeEvents(t *testing.T, out string) []map[string]any {
	t.Helper()
	if out == "" {
		return nil
	}
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("the stream does not end with a whole line:\n%s", out)
	}
	var events []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %d is not a JSON object: %v\n%s", i+1, err, line)
		}
		if typ, _ := e["type"].(string); typ == "" {
			t.Errorf("line %d has no type: %s", i+1, line)
		}
		stamp, _ := e["time"].(string)
		if at, err := time.Parse(time.RFC3339Nano, stamp); err != nil || !strings.HasSuffix(stamp, "Z") || !strings.Contains(stamp, ".") || at.IsZero() {
			t.Errorf("line %d: time %q is not RFC 3339 in UTC with fractional seconds", i+1, stamp)
		}
		if v, ok := e["format_version"].(float64); !ok || v != 1 {
			t.Errorf("line %d: format_version %v, want 1", i+1, e["format_version"])
		}
		delete(e, "time")
		delete(e, "format_version")
		events = append(events, e)
	}
	return events
}

// failure is a step error as the engine makes it, located in p.hcl.
func failure(addr, summary, detail string) *engine.StepError {
	return &engine.StepError{Addr: addr, Diagnostics: hcl.Diagnostics{{
		Severity: hcl.DiagError, Summary: summary + " " + addr, Detail: detail,
		Subject: &hcl.Range{Filename: "p.hcl", Start: hcl.Pos{Line: 5, Column: 3, Byte: 40}, End: hcl.Pos{Line: 5, Column: 9, Byte: 46}},
	}}}
}

// micros is n microseconds.
func micros(n int) time.Duration { return time.Duration(n) * time.Microsecond }

// counts is run_finished's counts with the given ones set.
func counts(set map[string]any) map[string]any {
	c := map[string]any{"ok": 0.0, "failed": 0.0, "not run": 0.0, "done": 0.0, "skipped": 0.0, "interrupted": 0.0}
	for k, v := range set {
		c[k] = v
	}
	return c
}

func TestJSONViewEvents(t *testing.T) {
	reloadFailed := failure("reload.r", "Step failed:", "exit status 1")
	tests := []struct {
		name string
		act  func(v *jsonView)
		want []map[string]any
	}{
		{
			name: "run_started of a new run",
			act:  func(v *jsonView) { v.begin(runStart{plan: "p.hcl", steps: 3}) },
			want: []map[string]any{{"type": "run_started", "plan": "p.hcl", "steps": 3.0, "rotplan_version": version}},
		},
		{
			name: "run_started of a resume",
			act: func(v *jsonView) {
				v.begin(runStart{plan: "p.hcl", steps: 3, resumed: "started 2025-01-02 03:04:05 by pid 7, failed, 1 of 3 steps succeeded", vars: "-var greeting=hi"})
			},
			want: []map[string]any{{"type": "run_started", "plan": "p.hcl", "steps": 3.0, "rotplan_version": version,
				"resumed": "started 2025-01-02 03:04:05 by pid 7, failed, 1 of 3 steps succeeded", "variables": "-var greeting=hi"}},
		},
		{
			name: "resume_decision, except for steps that simply run",
			act: func(v *jsonView) {
				v.Resuming([]engine.Decision{
					{Addr: "write.a", Action: engine.ActionSkip, Reason: "done"},
					{Addr: "issue.b", Action: engine.ActionChecked, Reason: "the certificate in place is the one issued"},
					{Addr: "reload.r", Action: engine.ActionRedo, Reason: "it failed: boom"},
					{Addr: "verify.v", Action: engine.ActionRun},
				})
			},
			want: []map[string]any{
				{"type": "resume_decision", "step": "write.a", "action": "skip", "reason": "done"},
				{"type": "resume_decision", "step": "issue.b", "action": "checked", "reason": "the certificate in place is the one issued"},
				{"type": "resume_decision", "step": "reload.r", "action": "redo", "reason": "it failed: boom"},
			},
		},
		{
			name: "step_started",
			act:  func(v *jsonView) { v.StepStarted(`write.crt["a"]`) },
			want: []map[string]any{{"type": "step_started", "step": `write.crt["a"]`}},
		},
		{
			name: "step_finished ok",
			act: func(v *jsonView) {
				v.StepFinished(engine.StepResult{Addr: "write.a", Outcome: engine.Succeeded, Duration: micros(1500)})
			},
			want: []map[string]any{{"type": "step_finished", "step": "write.a", "outcome": "ok", "duration_ms": 1.5, "unchanged": false}},
		},
		{
			name: "step_finished unchanged",
			act: func(v *jsonView) {
				v.StepFinished(engine.StepResult{Addr: "write.a", Outcome: engine.Succeeded, Duration: micros(20), Unchanged: true, Reason: "the file already holds the content"})
			},
			want: []map[string]any{{"type": "step_finished", "step": "write.a", "outcome": "ok", "duration_ms": 0.02, "unchanged": true,
				"reason": "the file already holds the content"}},
		},
		{
			name: "step_finished with a note",
			act: func(v *jsonView) {
				v.StepFinished(engine.StepResult{Addr: "verify.agent", Outcome: engine.Succeeded, Duration: micros(3000), Note: "passed 2.9s after the reload"})
			},
			want: []map[string]any{{"type": "step_finished", "step": "verify.agent", "outcome": "ok", "duration_ms": 3.0, "unchanged": false,
				"note": "passed 2.9s after the reload"}},
		},
		{
			name: "step_finished skipped",
			act: func(v *jsonView) {
				v.StepFinished(engine.StepResult{Addr: "issue.a", Outcome: engine.Skipped, Duration: micros(3000), Reason: "612h left"})
			},
			want: []map[string]any{{"type": "step_finished", "step": "issue.a", "outcome": "skipped", "duration_ms": 3.0, "unchanged": false, "reason": "612h left"}},
		},
		{
			name: "step_finished failed",
			act: func(v *jsonView) {
				v.StepFinished(engine.StepResult{Addr: "reload.r", Outcome: engine.Failed, Duration: micros(2), Err: reloadFailed})
			},
			want: []map[string]any{{"type": "step_finished", "step": "reload.r", "outcome": "failed", "duration_ms": 0.002, "unchanged": false,
				"error": "p.hcl:5:3: Step failed: reload.r: exit status 1"}},
		},
		{
			name: "step_finished interrupted",
			act: func(v *jsonView) {
				v.StepFinished(engine.StepResult{Addr: "reload.r", Outcome: engine.Interrupted, Duration: micros(7), Err: failure("reload.r", "Step failed:", "context canceled")})
			},
			want: []map[string]any{{"type": "step_finished", "step": "reload.r", "outcome": "interrupted", "duration_ms": 0.007, "unchanged": false,
				"error": "p.hcl:5:3: Step failed: reload.r: context canceled"}},
		},
		{
			name: "rollback_started and rollback_finished",
			act: func(v *jsonView) {
				v.RollbackStarted("write.a")
				v.RollbackFinished(engine.StepResult{Addr: "write.a", Outcome: engine.RolledBack, Duration: micros(4000)})
				v.RollbackStarted("write.b")
				v.RollbackFinished(engine.StepResult{Addr: "write.b", Outcome: engine.RollbackFailed, Duration: micros(5000), Err: failure("write.b", "Rollback failed:", "read-only file system")})
			},
			want: []map[string]any{
				{"type": "rollback_started", "step": "write.a"},
				{"type": "rollback_finished", "step": "write.a", "outcome": "rolled back", "duration_ms": 4.0},
				{"type": "rollback_started", "step": "write.b"},
				{"type": "rollback_finished", "step": "write.b", "outcome": "rollback failed", "duration_ms": 5.0,
					"error": "p.hcl:5:3: Rollback failed: write.b: read-only file system"},
			},
		},
		{
			name: "run_finished succeeded",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitOK, resume: "rotplan resume p.hcl", report: &engine.Report{Duration: micros(12500), Steps: []engine.StepResult{
					{Addr: "write.a", Outcome: engine.Succeeded},
					{Addr: "write.b", Outcome: engine.Succeeded, Unchanged: true},
					{Addr: "issue.c", Outcome: engine.Skipped},
				}}})
			},
			want: []map[string]any{{"type": "run_finished", "status": "succeeded", "exit_code": 0.0, "duration_ms": 12.5, "steps": 3.0,
				"counts": counts(map[string]any{"ok": 2.0, "skipped": 1.0}), "unchanged": 1.0}},
		},
		{
			name: "diagnostic and run_finished failed, changes in place",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitFailed, resume: "rotplan resume p.hcl", err: reloadFailed, diags: append(reloadFailed.Diagnostics,
					&hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Deprecated argument", Detail: "use mode"}),
					report: &engine.Report{Duration: micros(1000), Steps: []engine.StepResult{
						{Addr: "write.a", Outcome: engine.Succeeded},
						{Addr: "reload.r", Outcome: engine.Failed, Err: reloadFailed},
						{Addr: "verify.v", Outcome: engine.NotRun},
					}}})
			},
			want: []map[string]any{
				{"type": "diagnostic", "severity": "error", "summary": "Step failed: reload.r", "detail": "exit status 1",
					"location": map[string]any{"file": "p.hcl", "line": 5.0, "column": 3.0}},
				{"type": "diagnostic", "severity": "warning", "summary": "Deprecated argument", "detail": "use mode"},
				{"type": "run_finished", "status": "failed", "exit_code": 1.0, "duration_ms": 1.0, "steps": 3.0,
					"counts": counts(map[string]any{"ok": 1.0, "failed": 1.0, "not run": 1.0}), "unchanged": 0.0, "resume_command": "rotplan resume p.hcl"},
			},
		},
		{
			name: "run_finished failed before any step ran",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitFailed, resume: "rotplan resume p.hcl", err: errors.New("no Vault address"), other: true,
					report: &engine.Report{Steps: []engine.StepResult{{Addr: "issue.a", Outcome: engine.NotRun}}}})
			},
			want: []map[string]any{
				{"type": "diagnostic", "severity": "error", "summary": "no Vault address", "detail": ""},
				{"type": "run_finished", "status": "failed", "exit_code": 1.0, "duration_ms": 0.0, "steps": 1.0,
					"counts": counts(map[string]any{"not run": 1.0}), "unchanged": 0.0},
			},
		},
		{
			name: "run_finished rolled back",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitRolledBack, resume: "rotplan resume p.hcl", err: reloadFailed, report: &engine.Report{
					Steps:         []engine.StepResult{{Addr: "write.a", Outcome: engine.Succeeded}, {Addr: "reload.r", Outcome: engine.Failed}},
					Rollback:      engine.RollbackComplete,
					RollbackSteps: []engine.StepResult{{Addr: "write.a", Outcome: engine.RolledBack}},
				}})
			},
			want: []map[string]any{{"type": "run_finished", "status": "rolled_back", "exit_code": 3.0, "duration_ms": 0.0, "steps": 2.0,
				"counts": counts(map[string]any{"ok": 1.0, "failed": 1.0}), "unchanged": 0.0,
				"rollback_counts": map[string]any{"rolled back": 1.0, "rollback failed": 0.0}}},
		},
		{
			name: "run_finished rollback incomplete",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitRollbackIncomplete, resume: "rotplan resume p.hcl", err: reloadFailed, report: &engine.Report{
					Steps: []engine.StepResult{
						{Addr: "write.a", Outcome: engine.Succeeded}, {Addr: "write.b", Outcome: engine.Succeeded}, {Addr: "reload.r", Outcome: engine.Failed},
					},
					Rollback:      engine.RollbackIncomplete,
					RollbackSteps: []engine.StepResult{{Addr: "write.a", Outcome: engine.RolledBack}, {Addr: "write.b", Outcome: engine.RollbackFailed}},
				}})
			},
			want: []map[string]any{{"type": "run_finished", "status": "rollback_incomplete", "exit_code": 4.0, "duration_ms": 0.0, "steps": 3.0,
				"counts": counts(map[string]any{"ok": 2.0, "failed": 1.0}), "unchanged": 0.0,
				"rollback_counts": map[string]any{"rolled back": 1.0, "rollback failed": 1.0}, "resume_command": "rotplan resume p.hcl"}},
		},
		{
			name: "run_finished interrupted",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitFailed, resume: "rotplan resume -var token=VALUE p.hcl", err: context.Canceled, report: &engine.Report{
					Interrupted: true,
					Steps:       []engine.StepResult{{Addr: "write.a", Outcome: engine.Succeeded}, {Addr: "reload.r", Outcome: engine.Interrupted}},
				}})
			},
			want: []map[string]any{{"type": "run_finished", "status": "interrupted", "exit_code": 1.0, "duration_ms": 0.0, "steps": 2.0,
				"counts": counts(map[string]any{"ok": 1.0, "interrupted": 1.0}), "unchanged": 0.0, "resume_command": "rotplan resume -var token=VALUE p.hcl"}},
		},
		{
			name: "superseded and warning before run_finished",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitOK, report: &engine.Report{
					Steps:      []engine.StepResult{{Addr: "issue.a", Outcome: engine.Succeeded}},
					Superseded: []string{"issue.a: certificate 1a:2b revoked"},
					Warnings:   []string{"issue.a: cannot revoke 3c:4d: permission denied"},
				}})
			},
			want: []map[string]any{
				{"type": "superseded", "message": "issue.a: certificate 1a:2b revoked"},
				{"type": "warning", "message": "issue.a: cannot revoke 3c:4d: permission denied"},
				{"type": "run_finished", "status": "succeeded", "exit_code": 0.0, "duration_ms": 0.0, "steps": 1.0,
					"counts": counts(map[string]any{"ok": 1.0}), "unchanged": 0.0},
			},
		},
		{
			name: "a resume that could not begin",
			act: func(v *jsonView) {
				v.end(runEnd{exit: exitInvalid, err: errors.New("the plan changed")})
			},
			want: []map[string]any{
				{"type": "diagnostic", "severity": "error", "summary": "the plan changed", "detail": ""},
				{"type": "run_finished", "status": "failed", "exit_code": 2.0, "duration_ms": 0.0, "steps": 0.0,
					"counts": counts(nil), "unchanged": 0.0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			v := newJSONView(&out)
			tt.act(v)
			v.flush()
			got := decodeEvents(t, out.String())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events:\n%s\nwant:\n%s", eventsText(got), eventsText(tt.want))
			}
		})
	}
}

// eventsText shows events one a line, for a failure message.
func eventsText(events []map[string]any) string {
	var b strings.Builder
	for _, e := range events {
		line, _ := json.Marshal(e)
		fmt.Fprintf(&b, "  %s\n", line)
	}
	return b.String()
}

// TestJSONViewKeepsTextAsItIs: < > & in a plan's names or an error are
// written as they are, not escaped for HTML.
func TestJSONViewKeepsTextAsItIs(t *testing.T) {
	var out bytes.Buffer
	v := newJSONView(&out)
	v.StepFinished(engine.StepResult{Addr: "reload.r", Outcome: engine.Failed, Err: failure("reload.r", "Step failed:", "exit status 1: <stdin> & more")})
	v.flush()
	if !strings.Contains(out.String(), `exit status 1: <stdin> & more"`) {
		t.Errorf("the error is not written as it is:\n%s", out.String())
	}
}

// writeRecorder keeps every Write apart, to check that each holds whole
// lines.
type writeRecorder struct {
	mu     sync.Mutex
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// text is everything written so far.
func (w *writeRecorder) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(bytes.Join(w.writes, nil))
}

// TestJSONViewConcurrentSteps: steps reporting from many goroutines at once
// (run with -race) make whole lines, each written whole, every event once,
// each step's step_started before its step_finished, whether events wait
// for the timer or fill the buffer, and one of them larger than the buffer.
func TestJSONViewConcurrentSteps(t *testing.T) {
	const goroutines, perGoroutine = 16, 150
	for round := range 5 {
		w := &writeRecorder{}
		v := newJSONView(w)
		v.begin(runStart{plan: "p.hcl", steps: goroutines * perGoroutine})
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range perGoroutine {
					addr := fmt.Sprintf(`reload.r["%d-%d"]`, g, i)
					v.StepStarted(addr)
					detail := strings.Repeat("x", (g*perGoroutine+i)%2000)
					if g == 0 && i == 0 {
						detail = strings.Repeat("y", maxPending+1000)
					}
					v.StepFinished(engine.StepResult{Addr: addr, Outcome: engine.Failed, Duration: micros(i), Err: failure(addr, "Step failed:", detail)})
				}
			})
		}
		wg.Wait()
		v.end(runEnd{exit: exitFailed, report: &engine.Report{}})

		for i, b := range w.writes {
			if len(b) == 0 || b[len(b)-1] != '\n' {
				t.Fatalf("round %d: write %d of %d does not end a line", round, i+1, len(w.writes))
			}
		}
		events := decodeEvents(t, w.text())
		if n, want := len(events), 2+2*goroutines*perGoroutine; n != want {
			t.Fatalf("round %d: %d events, want %d", round, n, want)
		}
		if events[0]["type"] != "run_started" || events[len(events)-1]["type"] != "run_finished" {
			t.Errorf("round %d: the stream does not begin with run_started and end with run_finished", round)
		}
		started, finished := map[string]bool{}, map[string]bool{}
		for _, e := range events[1 : len(events)-1] {
			step, _ := e["step"].(string)
			switch e["type"] {
			case "step_started":
				if started[step] {
					t.Fatalf("round %d: %s started twice", round, step)
				}
				started[step] = true
			case "step_finished":
				if !started[step] || finished[step] {
					t.Fatalf("round %d: %s finished before it started, or twice", round, step)
				}
				finished[step] = true
			default:
				t.Fatalf("round %d: unexpected event %v", round, e)
			}
		}
		if len(finished) != goroutines*perGoroutine {
			t.Errorf("round %d: %d steps finished, want %d", round, len(finished), goroutines*perGoroutine)
		}
	}
}

// TestJSONViewWritesWithoutEnd: begin writes at once, and an event is
// written by itself, without end or a buffer full of events after it, as
// a reader following a long step needs.
func TestJSONViewWritesWithoutEnd(t *testing.T) {
	w := &writeRecorder{}
	v := newJSONView(w)
	v.begin(runStart{plan: "p.hcl", steps: 1})
	if !strings.Contains(w.text(), `"type":"run_started"`) {
		t.Fatalf("begin did not write run_started: %q", w.text())
	}
	v.StepStarted("reload.slow")
	// Not a measure of the delay: a bound far past it, so that a view
	// that never writes fails rather than hangs.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.text(), `"step":"reload.slow"`) {
		if time.Now().After(deadline) {
			t.Fatalf("step_started was not written without end:\n%s", w.text())
		}
		time.Sleep(10 * time.Millisecond)
	}
	v.end(runEnd{report: &engine.Report{}})
	decodeEvents(t, w.text())
}

// TestRunJSONFlag: run -json and resume -json print events, run -dry-run
// -json the preview document, and what goes wrong before a run starts is
// text on stderr, with nothing on stdout.
func TestRunJSONFlag(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	if err := os.WriteFile(plan, []byte("reload \"noop\" {\n  command = [\"/bin/true\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.hcl")
	if err := os.WriteFile(invalid, []byte("reload \"noop\" {\n  command = nope\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	tests := []struct {
		name       string
		args       []string
		exit       int
		stdout     string // "events", "preview" or "" (nothing)
		wantStderr string
	}{
		{"run -json", []string{"run", "-json", "-state-dir", state, plan}, exitOK, "events", ""},
		{"-json after the plan", []string{"run", "-state-dir", state, plan, "-json"}, exitOK, "events", ""},
		{"run -dry-run -json", []string{"run", "-dry-run", "-json", "-state-dir", state, plan}, exitOK, "preview", ""},
		{"-json -detailed-exitcode", []string{"run", "-json", "-detailed-exitcode", "-state-dir", state, plan}, exitPlanChanges, "events", ""},
		{"resume -json, nothing to resume", []string{"resume", "-json", "-state-dir", state, plan}, exitOK, "", "nothing to resume"},
		{"run -json, an invalid plan", []string{"run", "-json", "-state-dir", state, invalid}, exitInvalid, "", "invalid.hcl:2:13: error:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := rotplan(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.exit || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("exit %d (want %d), stderr should hold %q\n%s%s", code, tt.exit, tt.wantStderr, stdout.String(), stderr.String())
			}
			switch tt.stdout {
			case "events":
				events := decodeEvents(t, stdout.String())
				var types []string
				for _, e := range events {
					types = append(types, e["type"].(string))
				}
				if want := []string{"run_started", "step_started", "step_finished", "run_finished"}; !reflect.DeepEqual(types, want) {
					t.Errorf("events %v, want %v", types, want)
				}
				// run_finished says the exit code rotplan exits with.
				if got := events[len(events)-1]["exit_code"]; got != float64(code) {
					t.Errorf("run_finished says exit_code %v, rotplan exited %d", got, code)
				}
			case "preview":
				var doc map[string]any
				if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil || doc["valid"] != true || doc["steps"] == nil {
					t.Errorf("not the preview document (%v):\n%s", err, stdout.String())
				}
			default:
				if stdout.Len() > 0 {
					t.Errorf("stdout should be empty:\n%s", stdout.String())
				}
			}
		})
	}
}
