package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rotplan/rotplan/engine"
)

// screen is what a terminal shows once raw has been written to it: the
// lines, with \r going back to the start of the line and erase-line
// erasing the rest of it, colours dropped.
func screen(t *testing.T, raw string) []string {
	t.Helper()
	raw = sgrRE.ReplaceAllString(raw, "")
	lines := [][]rune{nil}
	col := 0
	for i := 0; i < len(raw); {
		cur := len(lines) - 1
		switch {
		case strings.HasPrefix(raw[i:], eraseLine):
			lines[cur] = lines[cur][:min(col, len(lines[cur]))]
			i += len(eraseLine)
			continue
		case raw[i] == '\x1b':
			t.Fatalf("unexpected control sequence at %q", raw[i:min(i+10, len(raw))])
		case raw[i] == '\r':
			col = 0
		case raw[i] == '\n':
			lines = append(lines, nil)
			col = 0
		default:
			r, size := utf8.DecodeRuneInString(raw[i:])
			if col < len(lines[cur]) {
				lines[cur][col] = r
			} else {
				lines[cur] = append(lines[cur], r)
			}
			col++
			i += size
			continue
		}
		i++
	}
	var out []string
	for _, l := range lines {
		out = append(out, string(l))
	}
	if out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func TestProgressLine(t *testing.T) {
	three := []string{`write.key["app812"]`, `write.crt["app811"]`, `issue.leaf["app813"]`}
	tests := []struct {
		name  string
		p     progress
		width int
		want  string
	}{
		{"nothing yet", progress{total: 2500}, 80, "[0/2,500]"},
		{"thousands, as many names as fit", progress{done: 1250, total: 2500, running: three}, 80,
			`[1,250/2,500] 3 running: write.key["app812"], write.crt["app811"] ...`},
		{"every name on a wide terminal", progress{done: 1250, total: 2500, running: three}, 120,
			`[1,250/2,500] 3 running: write.key["app812"], write.crt["app811"], issue.leaf["app813"]`},
		{"one running", progress{done: 12, total: 1000000, running: three[:1]}, 80,
			`[12/1,000,000] 1 running: write.key["app812"]`},
		{"skipped", progress{done: 10, total: 20, skipped: 4, running: []string{"reload.r"}}, 80,
			`[10/20] 4 skipped, 1 running: reload.r`},
		{"rolling back", progress{done: 7, total: 20, rollingBack: true, undone: 1234, running: three[:1]}, 80,
			`[rolling back, 1,234 undone] 1 running: write.key["app812"]`},
		{"narrow: the line is cut, never wrapped", progress{done: 1250, total: 2500, running: three}, 30,
			`[1,250/2,500] 3 running: writ`},
		{"not even the first name fits: it is cut", progress{done: 1, total: 9, running: three}, 35,
			`[1/9] 3 running: write.key["app812`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.line(tt.width)
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if n := len([]rune(got)); n >= tt.width {
				t.Errorf("%d columns on a terminal of %d: the line would wrap", n, tt.width)
			}
		})
	}
}

// TestTermViewLines drives the terminal view as the engine does: the
// status line counts, and only a failure, the resume's decisions, the
// rollback and the summary stay on the screen.
func TestTermViewLines(t *testing.T) {
	tty := &fakeTerminal{width: 80}
	var stderr bytes.Buffer
	v := newTermView(tty, &stderr, &diagPrinter{w: &stderr}, palette{})
	v.begin(runStart{plan: "p.hcl", steps: 2500})
	if raw := tty.String(); !strings.Contains(raw, "[0/2,500]") {
		t.Errorf("the count should show from the start:\n%q", raw)
	}
	v.Resuming([]engine.Decision{
		{Addr: "write.a", Action: engine.ActionSkip, Reason: "done"},
		{Addr: "write.b", Action: engine.ActionSkip, Reason: "done"},
		{Addr: "issue.x", Action: engine.ActionSkip, Reason: "skipped: not due"},
		{Addr: "write.c", Action: engine.ActionChecked, Reason: "the file is in place"},
		{Addr: "issue.y", Action: engine.ActionRedo, Reason: "it failed: boom"},
		{Addr: "write.d", Action: engine.ActionRun},
	})
	for i := range 1250 {
		addr := "write.ok[" + thousands(i) + "]"
		v.StepStarted(addr)
		v.StepFinished(engine.StepResult{Addr: addr, Outcome: engine.Succeeded})
	}
	v.StepStarted(`write.key["app812"]`)
	v.StepStarted("issue.y")
	v.redraw() // what the timer does
	if raw := tty.String(); !strings.Contains(raw, "\r[1,254/2,500] 1 skipped, 2 running: write.key[\"app812\"], issue.y"+eraseLine) {
		t.Errorf("no count line with the steps under way:\n%q", raw[max(len(raw)-300, 0):])
	}
	v.StepFinished(engine.StepResult{Addr: `write.key["app812"]`, Outcome: engine.Succeeded})
	v.StepStarted("verify.agent")
	v.StepFinished(engine.StepResult{Addr: "verify.agent", Outcome: engine.Succeeded, Duration: 3 * time.Second, Note: "passed 2.9s after the reload"})
	v.StepFinished(engine.StepResult{Addr: "issue.y", Outcome: engine.Failed})
	v.RollbackStarted("write.c")
	v.RollbackFinished(engine.StepResult{Addr: "write.c", Outcome: engine.RolledBack})
	report := &engine.Report{Rollback: engine.RollbackComplete, RollbackSteps: []engine.StepResult{{Addr: "write.c", Outcome: engine.RolledBack}}}
	v.end(runEnd{report: report, err: errors.New("issue.y failed"), resume: "rotplan resume p.hcl"})

	got := screen(t, tty.String())
	want := []string{
		"rotplan: running p.hcl: 2500 steps",
		"rotplan: 3 steps done earlier are not run again",
		"rotplan: 1 step skipped earlier stays skipped",
		"write.c                      done: the file is in place",
		"issue.y                      runs again: it failed: boom",
		"verify.agent                 ok       3s  passed 2.9s after the reload",
		"issue.y                      failed   0s",
		"write.c                      rolled back 0s",
		"Rotation FAILED and was ROLLED BACK: 1 steps undone, in 0s. The system is as it was before the run.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the screen shows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if sgrRE.MatchString(tty.String()) {
		t.Errorf("colour without a palette:\n%q", tty.String())
	}
}

// TestTermViewKeepsLogLinesApart: a log line on stderr erases the status
// line first and draws it again after.
func TestTermViewKeepsLogLinesApart(t *testing.T) {
	tty := &fakeTerminal{width: 80}
	v := newTermView(tty, tty, &diagPrinter{w: tty}, palette{})
	v.begin(runStart{plan: "p.hcl", steps: 3})
	v.StepStarted("reload.slow")
	v.redraw()
	log := v.besideStatus(tty)
	if _, err := log.Write([]byte("[WARN] rotplan: careful\n")); err != nil {
		t.Fatal(err)
	}
	want := "\r[0/3] 1 running: reload.slow" + eraseLine + carriageReturn + eraseLine + "[WARN] rotplan: careful\n[0/3] 1 running: reload.slow" + eraseLine
	if raw := tty.String(); !strings.HasSuffix(raw, want) {
		t.Errorf("got  %q\nwant it to end with %q", raw, want)
	}
	v.end(runEnd{})
	if got := screen(t, tty.String()); len(got) != 2 || got[1] != "[WARN] rotplan: careful" {
		t.Errorf("the screen shows %q: want the header and the log line, no status line", got)
	}
}

// runCountPlan runs countPlan in a directory of its own, with the output
// going to stdout and stderr, and returns the exit code.
func runCountPlan(t *testing.T, stdout, stderr io.Writer, args ...string) int {
	t.Helper()
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.hcl")
	if err := os.WriteFile(plan, []byte(countPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"run", "-var", "dir=" + dir}, args...)
	return rotplan(context.Background(), append(args, plan), stdout, stderr)
}

// TestRunOnATerminal runs a plan through the command line with stdout on a
// (fake) terminal: a successful step leaves no line behind, a failed one
// does, and so does the summary.
func TestRunOnATerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	tests := []struct {
		name string
		args []string
		exit int
		want []string // lines on the screen, in order
	}{
		{"success", nil, exitOK, []string{
			"rotplan: running ", "Rotation complete: 40 of 40 steps succeeded in ",
		}},
		{"failure", []string{"-var", "fail=f3", "-rollback=false"}, exitFailed, []string{
			"rotplan: running ", `reload.r["f3"]               failed`, "Rotation FAILED: ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tty := &fakeTerminal{width: 100}
			var stderr bytes.Buffer
			if code := runCountPlan(t, tty, &stderr, tt.args...); code != tt.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.exit, tty.String(), stderr.String())
			}
			raw := tty.String()
			if !regexp.MustCompile(`[\r\n]\[[0-9]+/40\]`).MatchString(raw) {
				t.Errorf("no count line:\n%q", raw)
			}
			if !sgrRE.MatchString(raw) {
				t.Errorf("no colour on a terminal:\n%q", raw)
			}
			got := screen(t, raw)
			i := 0
			for _, line := range got {
				if i < len(tt.want) && strings.HasPrefix(line, tt.want[i]) {
					i++
				}
				if strings.Contains(line, " ok ") || strings.Contains(line, " started") {
					t.Errorf("a line for a step that succeeded stays on the screen: %q", line)
				}
			}
			if i < len(tt.want) {
				t.Errorf("the screen lacks %q (or has it out of order):\n%s", tt.want[i], strings.Join(got, "\n"))
			}
			if len(got) > 6 {
				t.Errorf("%d lines on the screen for 40 steps:\n%s", len(got), strings.Join(got, "\n"))
			}
			if tt.exit != exitOK && !strings.Contains(stderr.String(), `Step failed: reload.r["f3"]`) {
				t.Errorf("the failure's diagnostic should be on stderr:\n%s", stderr.String())
			}
		})
	}
}

// TestRunNotOnATerminal: in a pipe or a file, the output is the plain lines
// of a log: one as each step starts and ends, no control sequences.
func TestRunNotOnATerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	var stdout, stderr bytes.Buffer
	if code := runCountPlan(t, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("control characters in the plain output:\n%q", out)
	}
	if n := strings.Count(out, "\n"); n != 82 {
		t.Errorf("%d lines, want 82: the header, 2 per step, the summary\n%s", n, out)
	}
	if !strings.Contains(out, `reload.r["f3"]               started`) || !strings.Contains(out, `reload.r["f3"]               ok `) {
		t.Errorf("the plain lines are missing:\n%s", out)
	}
}

// TestQuiet: -quiet prints the summary and, on failure, the diagnostics;
// nothing per step, and no count even on a terminal.
func TestQuiet(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	tests := []struct {
		name     string
		terminal bool
		args     []string
		exit     int
		stdout   string // a regular expression for all of it
		stderr   string // one for all of stderr
	}{
		{"success", false, nil, exitOK,
			`^Rotation complete: 40 of 40 steps succeeded in [^\n]+\.\n$`, `^$`},
		{"success on a terminal", true, nil, exitOK,
			`^Rotation \x1b\[32mcomplete\x1b\[0m: 40 of 40 steps succeeded in [^\n]+\.\n$`, `^$`},
		{"failure left in place", false, []string{"-var", "fail=f3", "-rollback=false"}, exitFailed,
			`^Rotation FAILED: [^\n]+\.\nThe [0-9]+ completed steps were not rolled back: [^\n]+\n$`,
			`(?s)^[^\n]*plan.hcl:[0-9]+:1: error: Step failed: reload.r\["f3"\]\n.*`},
		{"failure rolled back", false, []string{"-var", "fail=f3"}, exitRolledBack,
			`^Rotation FAILED and was ROLLED BACK: [^\n]+\n$`,
			`(?s)^[^\n]*plan.hcl:[0-9]+:1: error: Step failed: reload.r\["f3"\]\n.*`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr output = &bytes.Buffer{}, &bytes.Buffer{}
			if tt.terminal {
				stdout = &fakeTerminal{width: 80}
			}
			code := runCountPlan(t, stdout, stderr, append([]string{"-quiet"}, tt.args...)...)
			if code != tt.exit {
				t.Errorf("exit %d, want %d", code, tt.exit)
			}
			if !regexp.MustCompile(tt.stdout).MatchString(stdout.String()) {
				t.Errorf("stdout:\n%q\nwant it to match %q", stdout.String(), tt.stdout)
			}
			if !regexp.MustCompile(tt.stderr).MatchString(stderr.String()) {
				t.Errorf("stderr:\n%q\nwant it to match %q", stderr.String(), tt.stderr)
			}
		})
	}
}
