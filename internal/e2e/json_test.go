package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
)

// These tests run 'rotplan run -json' and 'rotplan resume -json' as a
// scheduler does, from the plan's directory, and read stdout as the event
// stream docs/cli.md describes.

// jsonEvent is one line of the event stream.
type jsonEvent map[string]any

// str is a string field of the event, "" when absent.
func (e jsonEvent) str(name string) string {
	s, _ := e[name].(string)
	return s
}

// num is a number field of the event, -1 when absent.
func (e jsonEvent) num(name string) float64 {
	if n, ok := e[name].(float64); ok {
		return n
	}
	return -1
}

// parseEvents reads a -json stdout: nothing but lines, each a JSON object
// with a type, an RFC 3339 UTC time and format_version 1, the first
// run_started and the last run_finished.
func parseEvents(t *testing.T, stdout string) []jsonEvent {
	t.Helper()
	if !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("stdout does not end with a whole line:\n%s", stdout)
	}
	var events []jsonEvent
	for i, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		var e jsonEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("stdout line %d is not a JSON object: %v\n%s", i+1, err, line)
		}
		if e.str("type") == "" || e.num("format_version") != 1 {
			t.Errorf("line %d lacks a type or format_version 1: %s", i+1, line)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.str("time")); err != nil || !strings.HasSuffix(e.str("time"), "Z") {
			t.Errorf("line %d: time %q is not RFC 3339 in UTC", i+1, e.str("time"))
		}
		events = append(events, e)
	}
	if events[0].str("type") != "run_started" || events[len(events)-1].str("type") != "run_finished" {
		t.Errorf("the stream should begin with run_started and end with run_finished:\n%s", stdout)
	}
	return events
}

// sequence is each event's type, with its step after a space when it has
// one: "step_finished write.a".
func sequence(events []jsonEvent) []string {
	var out []string
	for _, e := range events {
		s := e.str("type")
		if step := e.str("step"); step != "" {
			s += " " + step
		}
		out = append(out, s)
	}
	return out
}

// checkSequence compares the events' sequence with want.
func checkSequence(t *testing.T, events []jsonEvent, want []string) {
	t.Helper()
	if got := sequence(events); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// checkFields checks that the event has the fields given, with those
// values.
func checkFields(t *testing.T, e jsonEvent, want map[string]any) {
	t.Helper()
	for name, value := range want {
		if !reflect.DeepEqual(e[name], value) {
			t.Errorf("%s %s: %s = %#v, want %#v", e.str("type"), e.str("step"), name, e[name], value)
		}
	}
}

// absent checks that the event lacks the fields named.
func absent(t *testing.T, e jsonEvent, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, ok := e[name]; ok {
			t.Errorf("%s %s should have no %s: %v", e.str("type"), e.str("step"), name, e[name])
		}
	}
}

// chainPlan writes two files, then runs a command: one step after the
// other, so that the events come in one order.
const chainPlan = `
write "a" {
  path    = "a.txt"
  content = "a\n"
}

write "b" {
  depends_on = [write.a]
  path       = "b.txt"
  content    = "b\n"
}

reload "r" {
  depends_on = [write.b]
  command    = ["/bin/true"]
}
`

// TestJSONEventsRun: a run that succeeds, then the same run again, which
// finds the files as it would leave them.
func TestJSONEventsRun(t *testing.T) {
	dir := planDir(t, chainPlan, nil)
	res := runIn(t, dir, nil, "run", "-json", "plan.hcl")
	if res.exit != 0 {
		t.Fatalf("exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	events := parseEvents(t, res.stdout)
	checkSequence(t, events, []string{
		"run_started",
		"step_started write.a", "step_finished write.a",
		"step_started write.b", "step_finished write.b",
		"step_started reload.r", "step_finished reload.r",
		"run_finished",
	})
	checkFields(t, events[0], map[string]any{"plan": "plan.hcl", "steps": 3.0})
	absent(t, events[0], "resumed", "variables")
	for _, e := range events {
		if e.str("type") == "step_finished" {
			checkFields(t, e, map[string]any{"outcome": "ok", "unchanged": false})
			absent(t, e, "error", "reason")
			if e.num("duration_ms") < 0 {
				t.Errorf("%s: duration_ms %v", e.str("step"), e["duration_ms"])
			}
		}
	}
	last := events[len(events)-1]
	checkFields(t, last, map[string]any{"status": "succeeded", "exit_code": 0.0, "steps": 3.0, "unchanged": 0.0,
		"counts": map[string]any{"ok": 3.0, "failed": 0.0, "not run": 0.0, "done": 0.0, "skipped": 0.0, "interrupted": 0.0}})
	absent(t, last, "resume_command", "rollback_counts")
	if got := mustRead(t, filepath.Join(dir, "b.txt")); got != "b\n" {
		t.Errorf("b.txt = %q", got)
	}

	res = runIn(t, dir, nil, "run", "-json", "plan.hcl")
	if res.exit != 0 {
		t.Fatalf("second run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	events = parseEvents(t, res.stdout)
	for _, e := range events {
		if e.str("type") == "step_finished" && strings.HasPrefix(e.str("step"), "write.") {
			checkFields(t, e, map[string]any{"outcome": "ok", "unchanged": true})
			if e.str("reason") == "" {
				t.Errorf("%s changed nothing and should say why", e.str("step"))
			}
		}
	}
	checkFields(t, events[len(events)-1], map[string]any{"status": "succeeded", "unchanged": 2.0})
}

// TestJSONEventsRollback: a failing run shows its failure with the step's
// place in the plan, then the rollback, and ends rolled back with exit
// code 3.
func TestJSONEventsRollback(t *testing.T) {
	dir := planDir(t, failingReloadPlan, map[string]string{"target.txt": "old\n"})
	res := runIn(t, dir, nil, "run", "-json", "plan.hcl")
	if res.exit != exitRolledBack {
		t.Fatalf("exit %d, want %d\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
	}
	if got := mustRead(t, filepath.Join(dir, "target.txt")); got != "old\n" {
		t.Errorf("target.txt holds %q after the rollback, want the old content", got)
	}
	events := parseEvents(t, res.stdout)
	checkSequence(t, events, []string{
		"run_started",
		"step_started write.f", "step_finished write.f",
		"step_started reload.x", "step_finished reload.x",
		"rollback_started write.f", "rollback_finished write.f",
		"diagnostic",
		"run_finished",
	})
	at := sourcePosition(t, failingReloadPlan, `reload "x"`)
	failed := events[4]
	checkFields(t, failed, map[string]any{"outcome": "failed", "unchanged": false})
	if !strings.HasPrefix(failed.str("error"), "plan.hcl:"+at+": ") || !strings.Contains(failed.str("error"), "/bin/false") {
		t.Errorf("the error should be at plan.hcl:%s and name the command: %q", at, failed.str("error"))
	}
	checkFields(t, events[6], map[string]any{"outcome": "rolled back"})
	diag := events[7]
	checkFields(t, diag, map[string]any{"severity": "error", "summary": "Step failed: reload.x"})
	loc, _ := diag["location"].(map[string]any)
	if got := fmt.Sprintf("%s:%v:%v", loc["file"], loc["line"], loc["column"]); got != "plan.hcl:"+at {
		t.Errorf("the diagnostic should be at plan.hcl:%s: %v", at, diag["location"])
	}
	last := events[len(events)-1]
	checkFields(t, last, map[string]any{"status": "rolled_back", "exit_code": 3.0,
		"rollback_counts": map[string]any{"rolled back": 1.0, "rollback failed": 0.0}})
	absent(t, last, "resume_command")
	if strings.Contains(res.stderr, "error:") {
		t.Errorf("the diagnostics are events; stderr should not repeat them:\n%s", res.stderr)
	}
}

// readyPlan writes a file, then checks that the file ready is there, which
// it is not until the test makes it.
const readyPlan = `
variable "greeting" {
  type = string
}

write "a" {
  path    = "a.txt"
  content = "${var.greeting}\n"
}

reload "ready" {
  depends_on = [write.a]
  command    = ["test", "-e", "ready"]
}
`

// TestJSONEventsResume: a failed run left in place gives the command that
// finishes it; that command, with -json, shows what the resume decided,
// runs only the failed step, and succeeds.
func TestJSONEventsResume(t *testing.T) {
	dir := planDir(t, readyPlan, nil)
	res := runIn(t, dir, nil, "run", "-json", "-rollback=false", "-var", "greeting=hello", "plan.hcl")
	if res.exit != 1 {
		t.Fatalf("run: exit %d, want 1\n%s%s", res.exit, res.stdout, res.stderr)
	}
	events := parseEvents(t, res.stdout)
	last := events[len(events)-1]
	checkFields(t, last, map[string]any{"status": "failed", "exit_code": 1.0, "resume_command": "rotplan resume plan.hcl"})
	absent(t, last, "rollback_counts")

	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	command := strings.Fields(last.str("resume_command"))
	if len(command) < 2 || command[0] != "rotplan" {
		t.Fatalf("resume_command %q is not a rotplan command", last.str("resume_command"))
	}
	res = runIn(t, dir, nil, append(command[1:], "-json")...)
	if res.exit != 0 {
		t.Fatalf("%s -json: exit %d\n%s%s", last.str("resume_command"), res.exit, res.stdout, res.stderr)
	}
	events = parseEvents(t, res.stdout)
	checkSequence(t, events, []string{
		"run_started",
		"resume_decision write.a", "resume_decision reload.ready",
		"step_started reload.ready", "step_finished reload.ready",
		"run_finished",
	})
	checkFields(t, events[0], map[string]any{"plan": "plan.hcl", "steps": 2.0, "variables": "-var greeting=hello"})
	if !strings.Contains(events[0].str("resumed"), "failed") {
		t.Errorf("run_started should describe the run resumed: %q", events[0].str("resumed"))
	}
	checkFields(t, events[1], map[string]any{"action": "skip", "reason": "done"})
	checkFields(t, events[2], map[string]any{"action": "redo"})
	if !strings.HasPrefix(events[2].str("reason"), "it failed: ") {
		t.Errorf("the redo should say the step failed: %q", events[2].str("reason"))
	}
	checkFields(t, events[4], map[string]any{"outcome": "ok"})
	last = events[len(events)-1]
	checkFields(t, last, map[string]any{"status": "succeeded", "exit_code": 0.0,
		"counts": map[string]any{"ok": 1.0, "failed": 0.0, "not run": 0.0, "done": 1.0, "skipped": 0.0, "interrupted": 0.0}})
	absent(t, last, "resume_command")
}

// TestJSONEventsVaultRotation runs the reference rotation with -json as a
// scheduler does: the listener serves the new certificate, every step
// succeeded, and no private key appears in the events.
func TestJSONEventsVaultRotation(t *testing.T) {
	v := testvault.StartT(t)
	dir := operatorDir(t, v)
	keys := []string{filepath.Join(v.AdminDir, "admin.key"), filepath.Join(v.ServerDir, "server.key")}
	var secrets []string
	for _, k := range keys {
		secrets = append(secrets, keyLines(t, k)...)
	}
	before := servedSerial(t, v)
	res := runIn(t, dir, v.Environ(), "run", "-json", "-var-file", "prod.vars.hcl", "prod.hcl")
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	checkRotated(t, v)
	if after := servedSerial(t, v); after == before {
		t.Errorf("the served serial %s did not change", after)
	}
	for _, k := range keys {
		secrets = append(secrets, keyLines(t, k)...)
	}
	if strings.Contains(res.stdout, "PRIVATE KEY") {
		t.Error("stdout holds a PEM private key")
	}
	for _, s := range secrets {
		if strings.Contains(res.stdout, s) {
			t.Fatalf("stdout holds a line of a private key")
		}
	}

	events := parseEvents(t, res.stdout)
	steps := int(events[0].num("steps"))
	started := map[string]bool{}
	finished := 0
	for _, e := range events {
		switch e.str("type") {
		case "step_started":
			started[e.str("step")] = true
		case "step_finished":
			finished++
			if !started[e.str("step")] || e.str("outcome") != "ok" {
				t.Errorf("%s: outcome %q, or finished before it started", e.str("step"), e.str("outcome"))
			}
		}
	}
	if steps == 0 || finished != steps {
		t.Errorf("%d steps finished, run_started said %d", finished, steps)
	}
	for _, issue := range []string{"issue.admin", "issue.server"} {
		if !started[issue] {
			t.Errorf("%s did not run", issue)
		}
	}
	checkFields(t, events[len(events)-1], map[string]any{"status": "succeeded", "exit_code": 0.0, "steps": float64(steps)})
}

// keyLines are the base64 lines of a PEM private key file: any of them in
// the output would be a leak.
func keyLines(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(mustRead(t, path), "\n") {
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no key", path)
	}
	return out
}
