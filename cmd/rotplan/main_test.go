package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files (make golden)")

// durationRE matches the durations progress lines show, which differ from
// run to run.
var durationRE = regexp.MustCompile(`\b[0-9]+(\.[0-9]+)?(ns|µs|ms|s)\b`)

// TestDiagnosticsGolden renders the diagnostics of the bad-input plans and
// compares them, with the exit code, to golden files. Plans that need a live
// system (an unreachable Vault) are left to the end-to-end tests.
func TestDiagnosticsGolden(t *testing.T) {
	plans, _ := filepath.Glob("../../internal/e2e/testdata/*.hcl")
	if len(plans) == 0 {
		t.Fatal("no plans")
	}
	for _, plan := range plans {
		name := strings.TrimSuffix(filepath.Base(plan), ".hcl")
		if name == "unreachable-vault" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := rotplan(context.Background(), []string{"run", "-var", "dir=testdata", "-state-dir", t.TempDir(), plan}, &stdout, &stderr)
			got := fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", code, stdout.String(), stderr.String())
			got = durationRE.ReplaceAllString(got, "DURATION")
			if strings.Contains(got, "\x1b") {
				t.Fatalf("control sequences in the output: it is not on a terminal, and golden files hold plain text\n%q", got)
			}
			checkGolden(t, name, got)
		})
	}
}

// checkGolden compares got with testdata/golden/NAME.txt, or, with
// -update (make golden), rewrites that file.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", "golden", name+".txt")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run make golden)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run make golden if the change is intended)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		exit int
		want string // in stdout+stderr
	}{
		{"no arguments", nil, exitInvalid, "Usage: rotplan"},
		{"unknown command", []string{"rotate"}, exitInvalid, `unknown command "rotate"`},
		{"help", []string{"help"}, exitOK, "Commands:"},
		{"version", []string{"version"}, exitOK, "rotplan "},
		{"run help", []string{"run", "-h"}, exitOK, "-var-file"},
		{"run without a plan", []string{"run"}, exitInvalid, "give exactly one plan file"},
		{"run with two plans", []string{"run", "a.hcl", "b.hcl"}, exitInvalid, "give exactly one plan file"},
		{"bad log level", []string{"run", "-log-level", "loud", "a.hcl"}, exitInvalid, `unknown -log-level "loud"`},
		{"malformed -var", []string{"run", "-var", "novalue", "../../examples/prod.hcl"}, exitInvalid, "Invalid -var option"},
		{"undeclared -var", []string{"run", "-var", "nope=1", "../../examples/prod.hcl"}, exitInvalid, "Value for undeclared variable"},
		{"missing plan file", []string{"run", "testdata/does-not-exist.hcl"}, exitInvalid, "does-not-exist.hcl"},
		{"resume help", []string{"resume", "-h"}, exitOK, "-force"},
		{"status help", []string{"status", "-h"}, exitOK, "-json"},
		{"status without a plan", []string{"status"}, exitInvalid, "give exactly one plan file"},
		{"zero parallelism", []string{"run", "-parallelism", "0", "a.hcl"}, exitInvalid, "-parallelism must be at least 1"},
		{"missing var file", []string{"run", "-var-file", "testdata/none.hcl", "../../examples/prod.hcl"}, exitInvalid, "none.hcl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := rotplan(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.exit {
				t.Errorf("exit %d, want %d", code, tt.exit)
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestSnippetUnderlinesTheRange(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	src := "write \"a\" {\n\tpath    = \"x\"\n\tcontent = issue.nope.certificate\n}\n"
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code := rotplan(context.Background(), []string{"run", plan}, &out, &out)
	want := plan + ":3:12: error: Reference to undeclared step\n" +
		"   3 | \tcontent = issue.nope.certificate\n" +
		"     | \t          ^^^^^^^^^^^^^^^^^^^^^^\n"
	if code != exitInvalid || !strings.Contains(out.String(), want) {
		t.Errorf("exit %d, output:\n%s\nwant it to contain:\n%s", code, out.String(), want)
	}
}

// TestStateCommandsWithoutARun: resume has nothing to finish and says so;
// status reports that there is no run, as a table and as JSON.
func TestStateCommandsWithoutARun(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	if err := os.WriteFile(plan, []byte("reload \"noop\" {\n  command = [\"/bin/true\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	tests := []struct {
		name string
		args []string
		exit int
		want string
	}{
		{"resume", []string{"resume", "-state-dir", state, plan}, exitOK, "there is no run to resume in " + state},
		{"status", []string{"status", "-state-dir", state, plan}, exitOK, "No run recorded in " + state},
		{"status json", []string{"status", "-json", "-state-dir", state, plan}, exitOK, `"status": "none"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := rotplan(context.Background(), tt.args, &stdout, &stderr)
			if out := stdout.String() + stderr.String(); code != tt.exit || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s", code, tt.exit, tt.want, out)
			}
		})
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("resume should have created the state directory 0700: %v", err)
	}
}

// TestStateDirectoryOfAnotherPlan: two plans beside each other share the
// default state directory; neither may resume, or run over, the other's
// unfinished run.
func TestStateDirectoryOfAnotherPlan(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.hcl"), filepath.Join(dir, "b.hcl")
	if err := os.WriteFile(a, []byte("reload \"fails\" {\n  command = [\"/bin/false\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("reload \"noop\" {\n  command = [\"/bin/true\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := rotplan(context.Background(), []string{"run", "-rollback=false", "-log-level", "off", a}, &out, &out); code != exitFailed {
		t.Fatalf("run a.hcl: exit %d, want %d\n%s", code, exitFailed, out.String())
	}
	for _, command := range []string{"run", "resume"} {
		out.Reset()
		code := rotplan(context.Background(), []string{command, b}, &out, &out)
		if code != exitInvalid || !strings.Contains(out.String(), "another plan") || !strings.Contains(out.String(), a) {
			t.Errorf("%s b.hcl over a.hcl's unfinished run: exit %d\n%s", command, code, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".rotplan", "lock")); err != nil {
		t.Errorf("the default state directory is .rotplan beside the plan: %v", err)
	}
}
