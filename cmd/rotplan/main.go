package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/plans"
)

// Exit codes. They are part of rotplan's interface: scripts rely on them.
const (
	exitOK      = 0 // every step succeeded
	exitFailed  = 1 // a step failed and its changes were left in place, or the run was interrupted
	exitInvalid = 2 // invalid plan, variables or usage; nothing was changed
	// exitRolledBack: a step failed and every completed step was undone.
	exitRolledBack = 3
	// exitRollbackIncomplete: a step failed and some completed steps could
	// not be undone; the output says what to do by hand.
	exitRollbackIncomplete = 4
	// exitHostsFailed: every step was done except for hosts that failed
	// within their rollout's max_failures; their steps were undone.
	exitHostsFailed = 5
)

const usage = `Usage: rotplan [-chdir=DIR] <command> [options]

Commands:
  plan      Preview a run: what would change, read from the system, changing nothing.
  run       Carry out a rotation plan (-dry-run: the same as plan).
  resume    Finish the last run of a plan, after a crash, a kill or a failure.
  status    Show the last run of a plan, step by step.
  validate  Check a plan offline: syntax, types, references, cycles.
  graph     Print a plan's steps and their dependencies in Graphviz DOT.
  fmt       Rewrite plan files in canonical format.
  version   Print rotplan's version.
  help      Show this, or 'rotplan help COMMAND' for a command's options.

Examples:
  rotplan plan examples/prod.hcl
  rotplan run examples/prod.hcl
  rotplan graph examples/prod.hcl | dot -Tsvg > plan.svg

Global options:
  -chdir=DIR  Change to DIR first: the plan, its relative paths and the
              default state directory are then found from there.

Run 'rotplan <command> -h' for a command's options and examples.
`

// minProcs is the fewest Ps (goroutines running at once) rotplan runs with;
// see main.
const minProcs = 2

func main() {
	// rotplan's heap is small and short-lived; collecting it less often
	// leaves the CPU to Vault, with which it shares the host. The soft
	// limit makes the collector work harder before a large plan's heap
	// grows past it (GOMEMLIMIT overrides it).
	debug.SetGCPercent(400)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(100 << 20)
	}
	// A step spends most of its time in blocking system calls (fsync
	// above all). A thread blocked in one keeps its P until the runtime
	// takes it back, so with one P (one CPU, or a container limited to
	// one) every fsync stalls every other step meanwhile. A second P lets
	// the others run. More would not help: on one CPU, idle Ps spin
	// looking for work (4 Ps cost 45% more CPU per step than 1 when no
	// step blocks, 2 Ps 10%). GOMAXPROCS overrides it.
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, interrupts := catchInterrupts(os.Stderr, os.Exit)
	go interrupts.watch(sigs)
	stopProfile := startProfile(os.Getenv("ROTPLAN_CPUPROFILE"))
	code := rotplan(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	writeHeapProfile(os.Getenv("ROTPLAN_MEMPROFILE"))
	os.Exit(code)
}

// writeHeapProfile writes a heap profile (of what was allocated over the
// run) to path (ROTPLAN_MEMPROFILE); "" writes nothing.
func writeHeapProfile(path string) {
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "rotplan: ROTPLAN_MEMPROFILE: %v\n", err)
	}
}

// startProfile writes a CPU profile to path (ROTPLAN_CPUPROFILE), for
// finding where a run's time goes; "" profiles nothing.
func startProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "rotplan: ROTPLAN_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// chdir is the directory -chdir moved to, "" when none: the commands
// rotplan prints for later (resume) must move there too.
var chdir string

func rotplan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	args, code, ok := globalOptions(args, stderr)
	if !ok {
		return code
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitInvalid
	}
	switch args[0] {
	case "plan":
		return planCommand(ctx, args[1:], stdout, stderr)
	case "validate":
		return validateCommand(args[1:], stdout, stderr)
	case "graph":
		return graphCommand(args[1:], stdout, stderr)
	case "fmt":
		return fmtCommand(args[1:], stdout, stderr)
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "resume":
		return resumeCommand(ctx, args[1:], stdout, stderr)
	case "status":
		return statusCommand(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprint(stdout, readBuildInfo())
		return exitOK
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			return helpCommand(ctx, args[1], stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "rotplan: unknown command %q\n\n%s", args[0], usage)
		return exitInvalid
	}
}

// globalOptions handles the options that come before the command:
// -chdir=DIR (or -chdir DIR) makes DIR the working directory before
// anything else, as Terraform's -chdir does, so that a timer or a script
// can run a plan with its relative paths from anywhere.
func globalOptions(args []string, stderr io.Writer) (rest []string, code int, ok bool) {
	if len(args) == 0 {
		return args, 0, true
	}
	dir, given := strings.CutPrefix(args[0], "-chdir=")
	switch {
	case args[0] == "-chdir" && len(args) > 1:
		dir, given, args = args[1], true, args[2:]
	case args[0] == "-chdir":
		fmt.Fprintln(stderr, "rotplan: -chdir needs a directory: rotplan -chdir=DIR COMMAND ...")
		return nil, exitInvalid, false
	case given:
		args = args[1:]
	default:
		return args, 0, true
	}
	if err := os.Chdir(dir); err != nil {
		fmt.Fprintf(stderr, "rotplan: -chdir: %v\n", err)
		return nil, exitInvalid, false
	}
	chdir = dir
	return args, 0, true
}

// command is what run and resume share: their flags, the plan and the state
// directory.
type command struct {
	name     string
	fs       *flag.FlagSet
	stdout   io.Writer
	stderr   io.Writer
	vars     varSources
	logLevel string
	stateDir string
	// stateDirGiven: -state-dir was on the command line, so a command
	// rotplan prints for later must give it too.
	stateDirGiven bool
	parallelism   int
	rollback      bool
	keepBackups   bool
	keepRuns      int
	json          bool // show the run as JSON events (jsonview.go)
	detailed      bool // run -detailed-exitcode: see detailedRunExit
	quiet         bool // -quiet: see peopleView
	noColour      bool
	// saved is the saved plan run was given (savedPath), nil for a plan.
	saved     *engine.SavedPlan
	savedPath string
	log       hclog.Logger
	logs      *logSink // where log lines go
	plan      string
}

func newCommand(name, help, example string, stdout, stderr io.Writer) *command {
	c := &command{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, stderr: stderr}
	c.fs.SetOutput(stderr)
	c.vars.register(c.fs)
	c.fs.StringVar(&c.logLevel, "log-level", "info", "log `LEVEL` on stderr: trace, debug, info, warn, error or off")
	colourFlag(c.fs, &c.noColour)
	c.parallelism = engine.DefaultParallelism
	c.fs.Usage = func() {
		fmt.Fprint(stderr, help)
		c.fs.PrintDefaults()
		fmt.Fprint(stderr, "\nExample:\n  "+example+"\n")
	}
	return c
}

// runFlags adds the options of the commands that carry a plan out.
func (c *command) runFlags() *command {
	c.fs.StringVar(&c.stateDir, "state-dir", "", "keep the journal, the lock and the backups in `DIR` (default: .rotplan beside the plan file; see docs/cli.md for plans in /etc)")
	c.fs.IntVar(&c.parallelism, "parallelism", engine.DefaultParallelism, "run at most `N` independent steps at once")
	c.fs.BoolVar(&c.rollback, "rollback", true, "when a step fails, undo every completed step (-rollback=false leaves them, for debugging)")
	c.fs.BoolVar(&c.keepBackups, "keep-backups", false, "keep the copies of replaced files in the state directory after the run")
	c.fs.IntVar(&c.keepRuns, "keep-runs", defaultKeepRuns, "keep the journals of the last `N` runs in the state directory (0: every run)")
	c.fs.BoolVar(&c.json, "json", false, "print the run's events on stdout as JSON, one object per line (see docs/cli.md)")
	c.fs.BoolVar(&c.quiet, "quiet", false, "print no progress: only failures, warnings and the summary (see docs/cli.md)")
	return c
}

// defaultKeepRuns is how many runs' journals a state directory keeps: a
// month of a daily timer.
const defaultKeepRuns = 30

// prune removes the journals (and backups) of runs older than the last
// -keep-runs, once a run or a resume is over, with the state directory
// still locked.
func (c *command) prune() {
	removed, kept, err := engine.PruneRuns(c.stateDir, c.keepRuns)
	if len(removed) > 0 {
		c.log.Debug("removed the journals of old runs", "count", len(removed), "keep_runs", c.keepRuns)
	}
	for _, k := range kept {
		c.log.Info("kept an old run past -keep-runs", "run", k)
	}
	if err != nil {
		c.log.Warn("could not remove the journals of old runs", "error", err)
	}
}

// parse parses the flags; ok false means return code.
func (c *command) parse(args []string) (code int, ok bool) {
	if err := parseFlags(c.fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitInvalid, false
	}
	if c.fs.NArg() != 1 {
		fmt.Fprintf(c.stderr, "rotplan %s: give exactly one plan file\n", c.name)
		c.fs.Usage()
		return exitInvalid, false
	}
	if c.parallelism < 1 {
		fmt.Fprintf(c.stderr, "rotplan %s: -parallelism must be at least 1\n", c.name)
		return exitInvalid, false
	}
	if c.keepRuns < 0 {
		fmt.Fprintf(c.stderr, "rotplan %s: -keep-runs must be 0 (keep every run) or more\n", c.name)
		return exitInvalid, false
	}
	level := hclog.LevelFromString(c.logLevel)
	if level == hclog.NoLevel {
		fmt.Fprintf(c.stderr, "rotplan %s: unknown -log-level %q\n", c.name, c.logLevel)
		return exitInvalid, false
	}
	c.logs = &logSink{w: c.stderr}
	c.log = hclog.New(&hclog.LoggerOptions{Name: "rotplan", Level: level, Output: c.logs})
	c.plan = c.fs.Arg(0)
	c.stateDirGiven = c.stateDir != ""
	if c.stateDir == "" {
		c.stateDir = defaultStateDir(c.plan)
	}
	return 0, true
}

// given reports whether the flag was set on the command line.
func (c *command) given(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// resumeCommandLine is the command that finishes this plan's last run from
// the directory rotplan was started in: resume reads the run's variables
// from its journal, except the sensitive ones given on the command line,
// which must be given again (withheld).
func (c *command) resumeCommandLine(plan string, withheld []string) string {
	stateDir := ""
	if c.stateDirGiven {
		stateDir = c.stateDir
	}
	return resumeHint(plan, stateDir, withheld)
}

// resumeHint is the resume command for a plan, with -chdir when rotplan
// was given one, -state-dir when the state directory is not the default
// ("" when it is), and the sensitive variables to give again.
func resumeHint(plan, stateDir string, withheld []string) string {
	parts := []string{"rotplan"}
	if chdir != "" {
		parts = append(parts, "-chdir="+shellQuote(chdir))
	}
	parts = append(parts, "resume")
	if stateDir != "" {
		parts = append(parts, "-state-dir", shellQuote(stateDir))
	}
	for _, name := range withheld {
		parts = append(parts, "-var", name+"=VALUE")
	}
	return strings.Join(append(parts, shellQuote(plan)), " ")
}

// session is a plan compiled and its state directory locked.
type session struct {
	prog *engine.Program
	out  *diagPrinter
	lock *journal.Lock
	// last is the state directory's last run (nil when none), or lastErr
	// why it cannot be read.
	last    *engine.Run
	lastErr error
	// inputs are the variables as the journal keeps them.
	inputs *journal.Inputs
}

// asksDryRun reports whether run's arguments ask for -dry-run, for when they
// could not be parsed.
func asksDryRun(args []string) bool { return asksFlag(args, "dry-run") }

// asksFlag reports whether args set the boolean option name, for when they
// could not be parsed.
func asksFlag(args []string, name string) bool {
	for _, a := range args {
		switch strings.TrimLeft(a, "-") {
		case name, name + "=true", name + "=1":
			return strings.HasPrefix(a, "-")
		}
	}
	return false
}

// helpCommand prints a command's usage, options and examples on stdout.
func helpCommand(ctx context.Context, name string, stdout, stderr io.Writer) int {
	switch name {
	case "plan", "run", "resume", "status", "validate", "graph", "fmt":
		return rotplan(ctx, []string{name, "-h"}, stdout, stdout)
	case "version", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "rotplan help: unknown command %q\n\n%s", name, usage)
	return exitInvalid
}

// startParsed, once the flags are parsed, compiles the plan (printing any
// diagnostics), takes the state directory's lock and reads its last run.
// Nothing touches the state directory before the plan is known to be
// valid. ok false means return code; otherwise the caller releases the
// lock.
func (c *command) startParsed() (s *session, code int, ok bool) {
	parser := plans.NewParser()
	s = &session{out: c.vars.printer(c.stderr, parser, c.noColour)}
	l, diags := c.vars.load(parser, c.plan)
	s.out.print(diags)
	if diags.HasErrors() {
		return nil, exitInvalid, false
	}
	s.prog = l.Program
	s.inputs = c.vars.journaled(l)
	s.inputs.KeepBackups = c.keepBackups
	if err := journal.OpenStateDir(c.stateDir); err != nil {
		fmt.Fprintf(c.stderr, "rotplan %s: %v\n", c.name, err)
		return nil, exitInvalid, false
	}
	lock, err := journal.Acquire(c.stateDir, "rotplan "+c.name+" "+c.plan)
	if err != nil {
		fmt.Fprintf(c.stderr, "rotplan %s: %v\n", c.name, err)
		return nil, exitInvalid, false
	}
	s.lock = lock
	s.last, s.lastErr = engine.LoadRun(c.stateDir)
	return s, 0, true
}

// options are the engine options both commands use.
func (c *command) options(s *session, j *journal.Journal, observer engine.Observer) engine.Options {
	return engine.Options{Log: c.log, Observer: observer, Parallelism: c.parallelism, Journal: j, Version: readBuildInfo().short(),
		Rollback: c.rollback, KeepBackups: c.keepBackups, Inputs: s.inputs}
}

// report has the view show how the run ended and returns the exit code
// (before -detailed-exitcode, which runCommand applies).
// resume is the command that finishes the run, for when it did not.
func (c *command) report(v runView, report *engine.Report, err error, resume string) int {
	exit := exitCode(report, err)
	end := runEnd{report: report, err: err, resume: resume, exit: exit}
	if c.detailed { // what the view says is what rotplan will exit with
		end.exit = detailedRunExit(exit, report.Changed())
	}
	if err == nil { // why the hosts a rollout let fail did
		for _, s := range report.Steps {
			if s.Outcome == engine.Failed && s.Err != nil {
				end.diags = append(end.diags, s.Err.Diagnostics...)
			}
		}
	}
	if err != nil {
		stepErrs := engine.StepErrors(err)
		interrupted := map[string]bool{}
		for _, s := range report.Steps {
			interrupted[s.Addr] = s.Outcome == engine.Interrupted
		}
		for _, se := range stepErrs {
			if !interrupted[se.Addr] { // stopped by the operator: not an error
				end.diags = append(end.diags, se.Diagnostics...)
			}
		}
		// A settings block (vault) that could not be set up: nothing ran.
		var settingsErr *engine.SettingsError
		if errors.As(err, &settingsErr) {
			end.diags = append(end.diags, settingsErr.Diagnostics...)
		}
		end.other = len(stepErrs) == 0 && settingsErr == nil && report.Rollback == engine.RollbackNone
	}
	v.end(end)
	return exit
}

// exitCode is the exit code of a run that ended with report and err.
func exitCode(report *engine.Report, err error) int {
	switch {
	case err == nil && len(report.HostsFailed) > 0:
		return exitHostsFailed
	case err == nil:
		return exitOK
	case report.Rollback == engine.RollbackComplete:
		return exitRolledBack
	case report.Rollback == engine.RollbackIncomplete:
		return exitRollbackIncomplete
	}
	return exitFailed
}

const runUsage = `Usage: rotplan run [options] PLAN.hcl
       rotplan run [options] SAVED-PLAN

Carries out the plan: every step in dependency order, independent steps at
the same time. On a terminal it shows a running count and a line per
failure, in a pipe or a file a line as each step starts and ends (-quiet:
neither; see docs/cli.md), then a summary. After a failure no new step
starts. Every step is journaled in the state directory, so that 'rotplan
resume' can finish a run that was interrupted.

Given a plan saved by 'rotplan plan -out FILE', it runs exactly what was
reviewed: the same plan, variables and steps, on the system as the preview
found it. It previews again first, changing nothing, and refuses, naming
each difference, when anything changed (a certificate renewed since, a file
replaced, the plan edited). A saved plan carries its variables; only the
sensitive ones, never saved, are given again (-var or ROTPLAN_VAR_).

Options:
`

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("run", runUsage, "rotplan run -var-file prod.vars.hcl -var server_name=vault.prod.privsec.ch examples/prod.hcl", stdout, stderr).runFlags()
	fresh := c.fs.Bool("fresh", false, "start a new run even though the last one did not finish")
	dryRun := c.fs.Bool("dry-run", false, "only preview the run, as 'rotplan plan' does (with its -json and -detailed-exitcode)")
	c.fs.Lookup("json").Usage = "print the run's events on stdout as JSON, one object per line (see docs/cli.md); with -dry-run, the preview as JSON"
	// -detailed-exitcode (planFlags) also applies to a run: see
	// detailedRunExit.
	var pf planFlags
	pf.register(c)
	c.fs.Lookup("detailed-exitcode").Usage = "exit 0 when the run changed nothing, 2 when it changed something, 1 on an error that changed nothing " +
		"(3 and 4 as always); with -dry-run, as plan's"
	if code, ok := c.parse(args); !ok {
		if code == exitInvalid && (asksDryRun(args) || asksFlag(args, "detailed-exitcode")) {
			code = exitPlanError // as plan: 2 would read as "changes pending"
		}
		return code
	}
	if *dryRun {
		pf.json = c.json
		return c.previewParsed(ctx, &pf)
	}
	c.detailed = pf.detailed
	if code, ok := c.loadSaved(); !ok {
		if pf.detailed {
			return detailedRunExit(code, false)
		}
		return code
	}
	code, changed := c.run(ctx, *fresh)
	if pf.detailed {
		return detailedRunExit(code, changed)
	}
	return code
}

// detailedRunExit is run's exit code under -detailed-exitcode, for a timer
// that must tell a run that rotated something from one that had nothing
// due: 0 nothing changed, 2 something changed, 1 any error that changed
// nothing (2 would read as "rotated"); 3 and 4 as without it.
func detailedRunExit(code int, changed bool) int {
	switch {
	case code == exitOK && changed:
		return exitPlanChanges
	case code == exitInvalid:
		return exitPlanError
	}
	return code
}

// run carries out the plan once the flags are parsed; changed says whether
// a run that succeeded changed anything.
func (c *command) run(ctx context.Context, fresh bool) (code int, changed bool) {
	stderr := c.stderr
	s, code, ok := c.startParsed()
	if !ok {
		return code, false
	}
	defer s.lock.Release()
	prog, out, last, err := s.prog, s.out, s.last, s.lastErr
	switch {
	case err != nil && !fresh:
		fmt.Fprintf(stderr, "rotplan run: %v\n", err)
		return exitInvalid, false
	case err == nil && last != nil && last.Unfinished() && !fresh && !prog.IsPlanOf(last):
		fmt.Fprintf(stderr, "rotplan run: the last run in %s, of another plan (%s), did not finish (%s).\n"+
			"A state directory holds one plan's runs: finish that one with %s,\n"+
			"or give this plan its own -state-dir.\n",
			c.stateDir, last.Info.Plan, describeRun(last), c.resumeCommandLine(last.Info.Plan, withheldOf(last)))
		return exitInvalid, false
	case err == nil && last != nil && last.Unfinished() && !fresh:
		fmt.Fprintf(stderr, "rotplan run: the last run of this plan did not finish (%s).\n"+
			"Finish it with:       %s\n"+
			"or start afresh: the same command with -fresh.\n",
			describeRun(last), c.resumeCommandLine(c.plan, withheldOf(last)))
		return exitInvalid, false
	}
	// From here on the run journals and changes things: an interrupt
	// stops it in order (see interrupts).
	defer windDown(ctx)()
	if c.saved != nil && !c.checkSaved(ctx, s) {
		return exitInvalid, false
	}
	j, err := journal.Create(c.stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "rotplan run: cannot start the journal: %v\n", err)
		return exitInvalid, false
	}
	v := c.view(out)
	v.begin(runStart{plan: c.plan, steps: len(prog.Steps())})
	report, err := prog.Apply(ctx, c.options(s, j, v))
	// A run stopped before it began (no Vault address, say) leaves no
	// journal behind.
	_, cerr := j.CloseEmpty()
	err = journalClosed(err, cerr)
	c.logJournal(j, report)
	code = c.report(v, report, err, c.resumeCommandLine(c.plan, s.inputs.Withheld))
	c.prune()
	return code, report.Changed()
}

// journalClosed is the error of a run whose journal closed with cerr: a
// run whose last records did not reach the disk did not succeed, whatever
// its steps did. An error the run already had says more (the journal's
// failure is among it).
func journalClosed(err, cerr error) error {
	if err == nil && cerr != nil {
		return fmt.Errorf("the run's last journal records did not reach the disk: %w", cerr)
	}
	return err
}

// withheldOf returns the sensitive variables a run was given on the
// command line, which its journal does not hold.
func withheldOf(r *engine.Run) []string {
	if r.Info.Inputs == nil {
		return nil
	}
	return r.Info.Inputs.Withheld
}

const resumeUsage = `Usage: rotplan resume [options] PLAN.hcl

Finishes the last run of the plan, after a crash, a kill, an interrupt or a
failure, so that it ends as an uninterrupted run would: steps already done
are skipped, a step that was under way is checked against the system, and a
key and its certificate always come from the same issuance.

The run's variables come from its journal: its -var-file files are read
again and its -var values given again, with its -rollback and
-keep-backups. Sensitive variables given with -var were not journaled and
must be given again. Variables given to resume come after the run's. If the
plan or the variables changed, resume lists the steps whose inputs changed
and stops, unless -force.

Options:
`

func resumeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("resume", resumeUsage, "rotplan resume examples/prod.hcl", stdout, stderr).runFlags()
	force := c.fs.Bool("force", false, "resume although the plan or the variables changed; changed steps run again")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.resumeInputs(); !ok {
		return code
	}
	s, code, ok := c.startParsed()
	if !ok {
		return code
	}
	defer s.lock.Release()
	defer windDown(ctx)() // as run's
	prog, out, last, err := s.prog, s.out, s.last, s.lastErr
	notice := stdout // where "nothing to resume" goes
	if c.json {      // stdout holds events only, and there are none
		notice = stderr
	}
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "rotplan resume: %v\n", err)
		return exitInvalid
	case last == nil:
		// No run, or one killed before its first record reached the
		// journal: either way nothing was done, so nothing is left to
		// finish.
		why := "it holds no run"
		if path, _ := journal.Last(c.stateDir); path != "" {
			why = "the last run stopped before its journal recorded anything"
		}
		fmt.Fprintf(notice, "rotplan: nothing to resume: there is no run to resume in %s (%s), so nothing was done.\n", c.stateDir, why)
		return exitOK
	case !last.Unfinished():
		fmt.Fprintf(notice, "rotplan: nothing to resume: the last run (%s) has nothing left to finish.\n", describeRun(last))
		return exitOK
	}
	if last.Torn != nil {
		c.log.Warn(last.Torn.Warning(last.Path))
	}
	if !prog.IsPlanOf(last) && !*force {
		fmt.Fprintf(stderr, "rotplan resume: refusing to resume: the last run in %s is of another plan file, %s.\n"+
			"Resume that plan, give this one its own -state-dir, or pass -force if the plan was moved.\n", c.stateDir, last.Info.Plan)
		return exitInvalid
	}
	if changes := prog.Changes(last); changes != nil && !*force {
		fmt.Fprintf(stderr, "rotplan resume: refusing to resume: %v.\n"+
			"Resume with the plan and variables of the run, or pass -force to carry the changed steps out again.\n", changes)
		return exitInvalid
	}
	j, err := engine.ReopenJournal(last)
	if err != nil {
		fmt.Fprintf(stderr, "rotplan resume: %v\n", err)
		return exitInvalid
	}
	v := c.view(out)
	opts := c.options(s, j, v)
	opts.Force = *force
	v.begin(runStart{plan: c.plan, steps: len(prog.Steps()), resumed: describeRun(last), vars: describeInputs(last.Info.Inputs)})
	report, err := prog.Resume(ctx, last, opts)
	err = journalClosed(err, j.Close())
	c.logJournal(j, report)
	if report == nil {
		v.end(runEnd{err: err, exit: exitInvalid})
		fmt.Fprintf(stderr, "rotplan resume: %v\n", err)
		return exitInvalid
	}
	code = c.report(v, report, err, c.resumeCommandLine(c.plan, s.inputs.Withheld))
	c.prune()
	return code
}

// view returns how run and resume show the run.
func (c *command) view(out *diagPrinter) runView {
	if c.json {
		return newJSONView(c.stdout)
	}
	if v := c.peopleView(out); v != nil { // -quiet, or a terminal
		return v
	}
	return newLineView(c.stdout, c.stderr, out)
}

// resumeInputs gives resume the variables and options of the run it
// finishes, from the run's journal, so that the operator need not remember
// them. It reads the journal without locking the state directory: the
// first record, which says what the run was given, never changes.
func (c *command) resumeInputs() (code int, ok bool) {
	last, err := engine.LoadRun(c.stateDir)
	if err != nil || last == nil || last.Info.Inputs == nil {
		return 0, true // startParsed says what is wrong, under the lock
	}
	in := last.Info.Inputs
	if missing := c.vars.resumeWith(in); len(missing) > 0 {
		fmt.Fprintf(c.stderr, "rotplan resume: the run was given the sensitive %s %s with -var, and the journal does not hold %s.\n"+
			"Give %s again: %s\n",
			plural(len(missing), "variable", "variables"), strings.Join(missing, ", "), plural(len(missing), "its value", "their values"),
			plural(len(missing), "it", "them"), c.resumeCommandLine(c.plan, missing))
		return exitInvalid, false
	}
	if !c.given("rollback") {
		c.rollback = last.Info.Rollback
	}
	if !c.given("keep-backups") {
		c.keepBackups = in.KeepBackups
	}
	return 0, true
}

const validateUsage = `Usage: rotplan validate [options] PLAN.hcl

Checks a plan offline, as terraform validate does: syntax, types,
references (with "did you mean" suggestions), dependency cycles and every
step's arguments (formats, how they go together) as far as they are known
before the run. It reads the plan and its variables only, so it gives the
same answer on a laptop or a CI runner as on the target host: whether the
host has the directories, users, pid files and programs the plan names is
for 'rotplan plan' and the run's preflight to say. It never contacts Vault
and changes nothing. Exit code 0 when the plan is valid, 2 when it is not.

Options:
`

func validateCommand(args []string, stdout, stderr io.Writer) int {
	c := newCommand("validate", validateUsage, "rotplan validate -var-file prod.vars.hcl examples/prod.hcl", stdout, stderr)
	if code, ok := c.parse(args); !ok {
		return code
	}
	parser := plans.NewParser()
	out := c.vars.printer(stderr, parser, c.noColour)
	l, diags := c.vars.load(parser, c.plan)
	out.print(diags)
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "rotplan validate: %s is not valid: %s.\n", c.plan, countErrors(diags))
		return exitInvalid
	}
	fmt.Fprintf(stdout, "rotplan validate: %s is valid: %d steps.\n", c.plan, len(l.Program.Steps()))
	return exitOK
}

// logJournal logs, at debug level, what journaling cost the run: the time
// callers waited for appends, as a share of the time the steps took (a
// figure for benchmarks: the run's own records count too, so it can pass
// 100 % when the steps took next to no time).
func (c *command) logJournal(j *journal.Journal, report *engine.Report) {
	st := j.Stats()
	var steps time.Duration
	if report != nil {
		for _, s := range report.Steps {
			steps += s.Duration
		}
	}
	share := 0.0
	if steps > 0 {
		share = 100 * float64(st.Waited) / float64(steps)
	}
	c.log.Debug("journal", "path", j.Path(), "records", st.Records, "fsyncs", st.Syncs,
		"append_wait", st.Waited.Round(time.Microsecond), "step_time", steps.Round(time.Microsecond),
		"share", fmt.Sprintf("%.2f%%", share))
}

// describeRun says in a few words when a run started and where it got to.
func describeRun(r *engine.Run) string {
	total := len(r.Steps)
	state := "did not finish"
	if r.Status != "" {
		state = r.Status
	}
	return fmt.Sprintf("started %s by pid %d, %s, %d of %d steps succeeded",
		r.Started.Local().Format("2006-01-02 15:04:05"), r.Info.PID, state, r.Count(engine.StateSucceeded), total)
}
