package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
)

// Exit codes. They are part of rotplan's interface: scripts rely on them.
const (
	exitOK      = 0 // every step succeeded
	exitFailed  = 1 // a step failed, or the run was interrupted
	exitInvalid = 2 // invalid plan, variables or usage; nothing was changed
)

const usage = `Usage: rotplan <command> [options]

Commands:
  run       Carry out a rotation plan.
  version   Print rotplan's version.

Run 'rotplan <command> -h' for a command's options.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := rotplan(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func rotplan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitInvalid
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "rotplan %s\n", version)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "rotplan: unknown command %q\n\n%s", args[0], usage)
		return exitInvalid
	}
}

// listFlag collects a repeatable flag.
type listFlag []string

// String implements flag.Value.
func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value: each use of the flag adds a value.
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const runUsage = `Usage: rotplan run [options] PLAN.hcl

Carries out the plan: every step in dependency order, one progress line as
each starts and ends, and a summary. The first failure stops the run.

Options:
`

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var vars, varFiles listFlag
	fs.Var(&vars, "var", "set a variable: `NAME=VALUE` (repeatable; wins over -var-file)")
	fs.Var(&varFiles, "var-file", "read variables from an HCL `FILE` of NAME = VALUE lines (repeatable)")
	logLevel := fs.String("log-level", "info", "log `LEVEL` on stderr: trace, debug, info, warn, error or off")
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nExample:\n  rotplan run -var-file prod.vars.hcl -var server_name=vault.prod.privsec.ch examples/prod.hcl\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "rotplan run: give exactly one plan file")
		fs.Usage()
		return exitInvalid
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		fmt.Fprintf(stderr, "rotplan run: unknown -log-level %q\n", *logLevel)
		return exitInvalid
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "rotplan", Level: level, Output: stderr})

	parser := plans.NewParser()
	out := &diagPrinter{w: stderr, files: parser.Files}
	prog, diags := load(parser, fs.Arg(0), vars, varFiles)
	out.print(diags)
	if diags.HasErrors() {
		return exitInvalid
	}

	progress := newProgress(stdout)
	fmt.Fprintf(stdout, "rotplan: running %s: %d steps\n", fs.Arg(0), len(prog.Steps()))
	report, err := prog.Apply(ctx, engine.Options{Log: log, Observer: progress})
	progress.summary(report, err)
	if err != nil {
		var stepErr *engine.StepError
		if errors.As(err, &stepErr) {
			out.print(stepErr.Diagnostics)
		} else {
			fmt.Fprintf(stderr, "Error: %v\n", err)
		}
		return exitFailed
	}
	return exitOK
}

// load reads the plan and the variables and compiles them.
func load(parser *plans.Parser, path string, vars, varFiles []string) (*engine.Program, hcl.Diagnostics) {
	kinds := steps.Default()
	plan, diags := parser.LoadPlan(path, kinds.Names())
	inputs := plans.Inputs{}
	for _, f := range varFiles {
		diags = append(diags, parser.LoadVarFile(f, inputs)...)
	}
	for _, v := range vars {
		diags = append(diags, inputs.AddFlag(v)...)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	values, more := plans.ResolveVariables(plan, inputs)
	diags = append(diags, more...)
	if diags.HasErrors() {
		return nil, diags
	}
	prog, more := engine.Compile(plan, values, kinds)
	return prog, append(diags, more...)
}

// diagPrinter prints diagnostics as compilers do, "file:line:col: error:
// summary", then the source line with the range underlined, then the detail.
// (hcl's DiagnosticTextWriter shows no column, which operators and editors
// need to jump to the spot.)
type diagPrinter struct {
	w     io.Writer
	files func() map[string]*hcl.File
}

func (p *diagPrinter) print(diags hcl.Diagnostics) {
	for _, d := range diags {
		severity := "error"
		if d.Severity == hcl.DiagWarning {
			severity = "warning"
		}
		if d.Subject == nil {
			fmt.Fprintf(p.w, "rotplan: %s: %s\n", severity, d.Summary)
		} else {
			s := d.Subject
			fmt.Fprintf(p.w, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, severity, d.Summary)
			p.snippet(*s)
		}
		if d.Detail != "" {
			fmt.Fprintf(p.w, "  %s\n", strings.ReplaceAll(d.Detail, "\n", "\n  "))
		}
		fmt.Fprintln(p.w)
	}
}

// snippet prints the first source line of a range and underlines the range.
func (p *diagPrinter) snippet(r hcl.Range) {
	file, ok := p.files()[r.Filename]
	if !ok || file == nil || r.Start.Line < 1 {
		return
	}
	lines := strings.Split(string(file.Bytes), "\n")
	if r.Start.Line > len(lines) {
		return
	}
	line := strings.TrimRight(lines[r.Start.Line-1], "\r")
	start := min(max(r.Start.Column-1, 0), len(line))
	end := len(line)
	if r.End.Line == r.Start.Line {
		end = min(max(r.End.Column-1, start+1), len(line))
	}
	pad := strings.Map(func(c rune) rune {
		if c == '\t' {
			return '\t'
		}
		return ' '
	}, line[:start])
	gutter := fmt.Sprintf("%4d | ", r.Start.Line)
	fmt.Fprintf(p.w, "%s%s\n", gutter, line)
	fmt.Fprintf(p.w, "%s%s%s\n", strings.Repeat(" ", len(gutter)-2)+"| ", pad, strings.Repeat("^", max(end-start, 1)))
}
