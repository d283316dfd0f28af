package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// twoHundredSteps is a plan of 200 steps that needs no Vault: 100 files
// written, each then "reloaded" with true.
const twoHundredSteps = `
locals {
  names = toset([for i in range(100) : "f${i}"])
}

write "f" {
  for_each = local.names
  path     = "${each.key}.txt"
  content  = "x\n"
}

reload "r" {
  for_each = local.names
  command  = ["true", write.f[each.key].path]
}
`

var (
	// countLineRE matches the running count, at the start of a line.
	countLineRE = regexp.MustCompile(`[\r\n]\[[0-9,]+/200\]`)
	// colourRE matches an ANSI colour (SGR) sequence; controlRE any
	// control sequence.
	colourRE  = regexp.MustCompile("\x1b\\[[0-9;]*m")
	controlRE = regexp.MustCompile("\x1b\\[")
)

// scriptPath is util-linux's script(1), which runs a command on a
// pseudo-terminal; the test is skipped without it.
func scriptPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("script")
	if err != nil {
		t.Skip("skipped: no pseudo-terminal to run rotplan on: script(1) from util-linux (Debian's bsdutils) is not installed")
	}
	// BSD's script takes other options; util-linux's gives the command a
	// terminal.
	if err := exec.Command(path, "-qfec", "test -t 1", "/dev/null").Run(); err != nil {
		t.Skipf("skipped: %s -qfec does not run a command on a terminal (not util-linux's script?): %v", path, err)
	}
	return path
}

// runOnTerminal runs the rotplan binary in dir on a pseudo-terminal (stdout
// and stderr both), with TERM=xterm and NO_COLOR unset, then env; stdout is
// what the terminal received.
func runOnTerminal(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	words := []string{shellQuote(rotplanBin)}
	for _, a := range args {
		words = append(words, shellQuote(a))
	}
	cmd := exec.Command(scriptPath(t), "-qfec", strings.Join(words, " "), "/dev/null")
	cmd.Dir = dir
	cmd.Env = append(append(cleanEnv(), "TERM=xterm", "NO_COLOR="), env...)
	return runCmd(t, cmd, 3*time.Minute)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// TestProgressOnATerminal: on a terminal, a run of 200 steps shows a
// running count and a few lines, in colour unless told not to; piped, the
// same run prints the plain lines of a log, two per step, with no control
// sequences at all.
func TestProgressOnATerminal(t *testing.T) {
	scriptPath(t)
	tests := []struct {
		name   string
		env    []string
		args   []string
		count  bool // the running count shows
		colour bool
		lines  int // at most, on the terminal
	}{
		{"terminal", nil, nil, true, true, 3},
		{"NO_COLOR", []string{"NO_COLOR=1"}, nil, true, false, 3},
		{"-no-color", nil, []string{"-no-color"}, true, false, 3},
		{"-quiet", nil, []string{"-quiet"}, false, true, 1},
		{"TERM=dumb", []string{"TERM=dumb"}, nil, false, false, 402},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := planDir(t, twoHundredSteps, nil)
			res := runOnTerminal(t, dir, tt.env, append(append([]string{"run"}, tt.args...), "plan.hcl")...)
			out := res.stdout
			if res.exit != 0 {
				t.Fatalf("exit %d\n%q", res.exit, out)
			}
			if got := countLineRE.MatchString(out); got != tt.count {
				t.Errorf("running count shown: %v, want %v\n%q", got, tt.count, out)
			}
			if got := colourRE.MatchString(out); got != tt.colour {
				t.Errorf("colour: %v, want %v\n%q", got, tt.colour, out)
			}
			if n := strings.Count(out, "\n"); n > tt.lines {
				t.Errorf("%d lines for 200 steps, want at most %d\n%q", n, tt.lines, out)
			}
			if !strings.Contains(colourRE.ReplaceAllString(out, ""), "Rotation complete: 200 of 200 steps succeeded") {
				t.Errorf("no summary:\n%q", out)
			}
		})
	}
	t.Run("piped", func(t *testing.T) {
		dir := planDir(t, twoHundredSteps, nil)
		res := runIn(t, dir, []string{"TERM=xterm", "NO_COLOR="}, "run", "plan.hcl")
		if res.exit != 0 {
			t.Fatalf("exit %d\n%s%s", res.exit, res.stdout, res.stderr)
		}
		if controlRE.MatchString(res.stdout+res.stderr) || strings.Contains(res.stdout, "\r") {
			t.Errorf("control sequences in a pipe:\n%q", res.stdout+res.stderr)
		}
		if n := strings.Count(res.stdout, "\n"); n != 402 {
			t.Errorf("%d lines, want 402: the header, one as each step starts and ends, the summary\n%s", n, res.stdout)
		}
		for _, want := range []string{`write.f["f42"]               started`, `reload.r["f42"]              ok `} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("the plain lines lack %q:\n%s", want, res.stdout)
			}
		}
	})
}
