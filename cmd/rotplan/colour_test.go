package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// fakeTerminal is a buffer that says it is a terminal, so that rotplan
// prints into it as on one.
type fakeTerminal struct {
	mu    sync.Mutex
	b     bytes.Buffer
	width int
}

// Write implements io.Writer.
func (f *fakeTerminal) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b.Write(p)
}

func (f *fakeTerminal) terminalWidth() int { return f.width }

// String is everything written, control sequences and all.
func (f *fakeTerminal) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b.String()
}

var _ terminal = (*fakeTerminal)(nil)

// output is where a test has rotplan print: a buffer, or a fakeTerminal.
type output interface {
	io.Writer
	String() string
}

// sgrRE matches a colour (an ANSI SGR sequence); csiRE any control
// sequence, erase-line included.
var (
	sgrRE = regexp.MustCompile("\x1b\\[[0-9;]*m")
	csiRE = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")
)

// countPlan is a plan of 40 steps that needs no Vault: 20 writes, each
// followed by a reload; the reload of the step named by var.fail fails.
const countPlan = `
variable "dir" {
  type = string
}

variable "fail" {
  type    = string
  default = ""
}

locals {
  names = toset([for i in range(20) : "f${i}"])
}

write "f" {
  for_each = local.names
  path     = "${var.dir}/${each.key}.txt"
  content  = "x\n"
}

reload "r" {
  for_each = local.names
  command  = [each.key == var.fail ? "false" : "true", write.f[each.key].path]
}
`

// TestColourRules: colour on a terminal only, and not with NO_COLOR set
// to anything or -no-color; on stdout (the preview's markers, the run's
// summary) and on stderr (a diagnostic's severity) each by its own
// terminal.
func TestColourRules(t *testing.T) {
	invalid := filepath.Join(t.TempDir(), "invalid.hcl")
	if err := os.WriteFile(invalid, []byte("write \"a\" {\n  path    = \"x\"\n  content = \"x\"\n  mode    = \"99\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	preview := func(t *testing.T, stdout, stderr io.Writer, flags ...string) int {
		t.Helper()
		dir := t.TempDir()
		plan := filepath.Join(dir, "plan.hcl")
		if err := os.WriteFile(plan, []byte(countPlan), 0o600); err != nil {
			t.Fatal(err)
		}
		return rotplan(context.Background(), append(append([]string{"plan", "-var", "dir=" + dir}, flags...), plan), stdout, stderr)
	}
	run := func(t *testing.T, stdout, stderr io.Writer, flags ...string) int {
		t.Helper()
		return runCountPlan(t, stdout, stderr, flags...)
	}
	validate := func(t *testing.T, stdout, stderr io.Writer, flags ...string) int {
		t.Helper()
		return rotplan(context.Background(), append(append([]string{"validate"}, flags...), invalid), stdout, stderr)
	}
	type command func(t *testing.T, stdout, stderr io.Writer, flags ...string) int
	tests := []struct {
		name     string
		command  command
		terminal bool   // stdout and stderr are terminals
		noColor  string // NO_COLOR
		flags    []string
		colour   bool
	}{
		{"plan on a terminal", preview, true, "", nil, true},
		{"plan in a pipe", preview, false, "", nil, false},
		{"plan with NO_COLOR", preview, true, "1", nil, false},
		{"plan with -no-color", preview, true, "", []string{"-no-color"}, false},
		{"plan -json on a terminal", preview, true, "", []string{"-json"}, false},
		{"run on a terminal", run, true, "", nil, true},
		{"run in a pipe", run, false, "", nil, false},
		{"run with NO_COLOR", run, true, "yes", nil, false},
		{"run with -no-color", run, true, "", []string{"-no-color"}, false},
		{"diagnostics on a terminal", validate, true, "", nil, true},
		{"diagnostics in a pipe", validate, false, "", nil, false},
		{"diagnostics with NO_COLOR", validate, true, "1", nil, false},
		{"diagnostics with -no-color", validate, true, "", []string{"-no-color"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tt.noColor)
			var stdout, stderr output = &bytes.Buffer{}, &bytes.Buffer{}
			if tt.terminal {
				stdout, stderr = &fakeTerminal{width: 80}, &fakeTerminal{width: 80}
			}
			tt.command(t, stdout, stderr, tt.flags...)
			out := stdout.String() + stderr.String()
			if got := sgrRE.MatchString(out); got != tt.colour {
				t.Errorf("colour %v, want %v:\n%q", got, tt.colour, out[:min(len(out), 400)])
			}
			if !tt.terminal && csiRE.MatchString(out) {
				t.Errorf("control sequences outside a terminal:\n%q", out)
			}
		})
	}
}

// TestPaletteWords: what each role paints, and that the zero palette
// paints nothing.
func TestPaletteWords(t *testing.T) {
	on := palette{on: true}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"create", paintAction(on, "create", "+"), "\x1b[32m+\x1b[0m"},
		{"replace", paintAction(on, "replace", "~"), "\x1b[33m~\x1b[0m"},
		{"no change", paintAction(on, "no-change", "="), "\x1b[2m=\x1b[0m"},
		{"check", paintAction(on, "check", "?"), "\x1b[36m?\x1b[0m"},
		{"error", on.bad("error"), "\x1b[1;31merror\x1b[0m"},
		{"off", palette{}.bad("error"), "error"},
		{"empty", on.good(""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

// TestNoColorFlag: every command that prints accepts -no-color.
func TestNoColorFlag(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	if err := os.WriteFile(plan, []byte("reload \"noop\" {\n  command = [\"true\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, command := range []string{"plan", "run", "resume", "validate", "status", "graph", "fmt"} {
		t.Run(command, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{command, "-no-color"}
			if command == "fmt" {
				args = append(args, "-check")
			}
			rotplan(context.Background(), append(args, plan), &stdout, &stderr)
			if strings.Contains(stderr.String(), "flag provided but not defined") {
				t.Errorf("%s does not accept -no-color:\n%s", command, stderr.String())
			}
		})
	}
}
