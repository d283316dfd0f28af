package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine/dag"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Outcome is how a step ended.
type Outcome string

// The outcomes of a step.
const (
	Succeeded Outcome = "ok"
	Failed    Outcome = "failed"
	// NotRun is a step that did not start because another step failed or
	// the run was interrupted.
	NotRun Outcome = "not run"
	// Done is a step a resumed run did not carry out again: an earlier
	// attempt did it.
	Done Outcome = "done"
	// Skipped is a step that was not due (see steps.Conditional), or all of
	// whose dependencies were skipped. It changed nothing.
	Skipped Outcome = "skipped"
	// Interrupted is a step that was under way when the run was
	// interrupted, and did not finish. Resume carries it out again.
	Interrupted Outcome = "interrupted"
)

// DefaultParallelism is how many steps run at once unless Options say.
const DefaultParallelism = 10

// StepResult is what happened to one step.
type StepResult struct {
	Addr     string
	Outcome  Outcome
	Duration time.Duration
	// Err is set when Outcome is Failed.
	Err *StepError
	// Reason says why a step was skipped, or why a step that succeeded
	// changed nothing (Unchanged).
	Reason string
	// Unchanged: the step succeeded and found the system already as it
	// would leave it (steps.Env.NoChange), so it changed nothing.
	Unchanged bool
	// Changed: the step succeeded and changed something; false for a step
	// that only reads (steps.ReadOnly) or found nothing to change.
	Changed bool
}

// Report is the result of Apply or Resume: every step, in the order the run
// reached them (steps done earlier first, steps not run last), and the whole
// run's duration.
type Report struct {
	Steps    []StepResult
	Duration time.Duration
	// Decisions say, for a resumed run, what became of each step and why.
	Decisions []Decision
	// Superseded are notes on results a resumed run replaced (certificates
	// issued by the interrupted run), and Warnings what the operator must
	// look at although the run succeeded.
	Superseded []string
	Warnings   []string
	// Rollback says whether the completed steps were undone after a
	// failure (RollbackComplete, RollbackIncomplete) or not (RollbackNone);
	// RollbackSteps what became of each.
	Rollback      string
	RollbackSteps []StepResult
	// Interrupted: the run was cancelled (Ctrl-C, SIGTERM) before it
	// finished. Nothing was rolled back; resume finishes it.
	Interrupted bool
}

// Count returns how many steps ended with the outcome.
func (r *Report) Count(o Outcome) int {
	n := 0
	for _, s := range r.Steps {
		if s.Outcome == o {
			n++
		}
	}
	return n
}

// Changed reports whether any step changed something.
func (r *Report) Changed() bool {
	if r == nil {
		return false
	}
	for _, s := range r.Steps {
		if s.Changed {
			return true
		}
	}
	return false
}

// Unchanged returns how many steps succeeded without changing anything.
func (r *Report) Unchanged() int {
	n := 0
	for _, s := range r.Steps {
		if s.Outcome == Succeeded && s.Unchanged {
			n++
		}
	}
	return n
}

// Observer hears about steps as they start and end, to show progress.
// Calls come from the goroutines that run the steps, concurrently.
type Observer interface {
	StepStarted(addr string)
	StepFinished(result StepResult)
}

// ResumeObserver is an Observer that also hears, before a resumed run
// starts any step, what the resume decided for each step.
type ResumeObserver interface {
	Observer
	Resuming(decisions []Decision)
}

// Options configure Apply and Resume.
type Options struct {
	// Log receives the run's log lines; nil discards them.
	Log hclog.Logger
	// Observer, when set, hears about every step.
	Observer Observer
	// Getenv supplies the VAULT_* defaults; nil means os.Getenv.
	Getenv func(string) string
	// Parallelism bounds how many steps run at once; 0 means
	// DefaultParallelism.
	Parallelism int
	// Journal, when set, receives the run's records. A run without one
	// cannot be resumed.
	Journal *journal.Journal
	// Version is rotplan's version, for the journal.
	Version string
	// Force lets Resume go on although the plan or the variables changed;
	// the steps whose definition changed are carried out again.
	Force bool
	// Rollback: when a step fails, undo every completed step (see
	// steps.Rollbacker). Kinds save what they replace before each step,
	// beside the journal, so it needs Journal.
	Rollback bool
	// KeepBackups keeps those copies after the run; by default they are
	// deleted once the run succeeded or was rolled back cleanly.
	KeepBackups bool
	// Inputs are the variables as the operator gave them, journaled so
	// that a resume can give them again; nil journals none.
	Inputs *journal.Inputs
	// Certificates has a preview read the certificate files steps look
	// after (steps.CertificateHolder) into StepPreview.Certificates, for
	// whoever exports their expiry; a preview without it reads none.
	Certificates bool
}

// execution is one Apply or Resume under way.
type execution struct {
	p       *Program
	opts    Options
	env     *steps.Env
	report  *Report
	start   time.Time
	todo    map[string]bool      // steps to carry out
	outputs map[string]cty.Value // outputs of the steps done so far
	// skipped holds why each skipped step was skipped. Skipped steps have
	// no outputs: steps that read them see unknown values.
	skipped map[string]string
	lazy    map[string]bool // steps to prepare just before they run
	// superseded holds, per step, the journaled outputs of earlier results
	// to hand to steps.Superseder once the run has succeeded.
	superseded map[string][]cty.Value

	mu sync.Mutex // guards snapshots and the rollback part of report
	// snapshots holds what each step saved to undo it (steps.Rollbacker).
	snapshots map[string]map[string]string
	// rolledBack are steps a resumed rollback finds undone already.
	rolledBack map[string]bool
	// unsettled are steps an earlier process of a resumed run started
	// and that may have changed something although no outputs of theirs
	// are known (see StepState.unsettled): a rollback undoes them too.
	unsettled map[string]bool

	backupsOnce sync.Once
	backups     string // see backupRoot
}

func (p *Program) newExecution(opts Options) *execution {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Parallelism < 1 {
		opts.Parallelism = DefaultParallelism
	}
	if opts.Journal == nil {
		opts.Rollback = false
	}
	return &execution{
		p: p, opts: opts, report: &Report{}, start: time.Now(),
		todo: map[string]bool{}, outputs: map[string]cty.Value{}, skipped: map[string]string{},
		lazy: map[string]bool{}, superseded: map[string][]cty.Value{},
		snapshots: map[string]map[string]string{}, rolledBack: map[string]bool{},
		unsettled: map[string]bool{},
	}
}

// Apply runs the program: it prepares every step (so that, for example, an
// unreachable Vault stops the run before anything has changed), then runs
// the steps in dependency order, independent ones concurrently. When a step
// fails no new step starts; the running ones finish, and the returned error
// holds every failure (see StepErrors).
func (p *Program) Apply(ctx context.Context, opts Options) (*Report, error) {
	x := p.newExecution(opts)
	if p.invalid {
		return x.noneRun(errInvalidProgram)
	}
	if err := x.connect(); err != nil {
		return x.noneRun(err)
	}
	for _, n := range p.order {
		x.todo[n.addr] = true
	}
	if err := x.prepare(ctx, p.order); err != nil {
		return x.noneRun(err)
	}
	if err := x.preflight(ctx, p.order); err != nil {
		return x.noneRun(err)
	}
	if err := x.record(journal.Record{Type: journal.RunStarted, Run: p.runInfo(opts)}); err != nil {
		return x.noneRun(err)
	}
	return x.finish(ctx, x.walk(ctx))
}

// errInvalidProgram refuses to run a program Compile found errors in.
var errInvalidProgram = errors.New("internal error: the plan has errors and must not run")

// connect reads the Vault connection settings; the session itself opens on
// first use.
func (x *execution) connect() error {
	conn, err := steps.NewVaultConnection(x.p.vault, x.opts.Getenv)
	if err != nil {
		return &StepError{Addr: "vault", Diagnostics: x.p.vaultDiagnostics(err)}
	}
	x.env = steps.NewEnv(x.opts.Log, conn)
	return nil
}

// noneRun ends a run that changed nothing.
func (x *execution) noneRun(err error) (*Report, error) {
	for _, n := range x.p.order {
		x.report.Steps = append(x.report.Steps, StepResult{Addr: n.addr, Outcome: NotRun})
	}
	x.report.Duration = time.Since(x.start)
	return x.report, err
}

func (x *execution) record(r journal.Record) error {
	if x.opts.Journal == nil {
		return nil
	}
	return x.opts.Journal.Append(r)
}

// recordLazily journals a record that the next durable one will carry to
// disk (see journal.Journal.Write).
func (x *execution) recordLazily(r journal.Record) error {
	if x.opts.Journal == nil {
		return nil
	}
	return x.opts.Journal.Write(r)
}

func (p *Program) runInfo(opts Options) *journal.RunInfo {
	info := &journal.RunInfo{
		Plan: p.planPath(), PlanHash: p.planHash, VarsHash: p.varsHash, VarHashes: p.varHashes,
		Version: opts.Version, PID: os.Getpid(), Forced: opts.Force,
		Rollback: opts.Rollback, Inputs: opts.Inputs,
	}
	info.Dir, _ = os.Getwd()
	for _, n := range p.order {
		info.Steps = append(info.Steps, journal.StepDefinition{Step: n.addr, Definition: n.definition})
	}
	return info
}

// planPath is the plan file's absolute path, which identifies the plan a
// journal belongs to.
func (p *Program) planPath() string {
	if abs, err := filepath.Abs(p.plan.Path); err == nil {
		return abs
	}
	return p.plan.Path
}

// prepare gives each of the nodes whose kind can check its prerequisites the
// chance to do so before anything changes.
func (x *execution) prepare(ctx context.Context, nodes []*node) error {
	for _, n := range nodes {
		if err := x.prepareStep(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (x *execution) prepareStep(ctx context.Context, n *node) error {
	preparer, ok := n.kind.(steps.Preparer)
	if !ok {
		return nil
	}
	cfg, _, diags := x.p.decode(n, x.p.contextFor(n, nil))
	if diags.HasErrors() {
		return &StepError{Addr: n.addr, Diagnostics: diags}
	}
	if err := preparer.Prepare(ctx, x.env, cfg); err != nil {
		return &StepError{Addr: n.addr, Diagnostics: x.p.stepDiagnostics(n, "Cannot run", err)}
	}
	return nil
}

// ranks ranks, once per program, the steps ready to start together (see
// dag.Walker.Priority): the deepest first (the furthest from the steps that
// depend on nothing), then the first in run order. Deepest first finishes
// what a step started (the writes of an issued certificate) before
// starting more of the same, so that the work of many independent chains
// overlaps, as separate workers would make it, and Vault keeps being asked
// while files are written.
func (p *Program) ranks() map[string]int {
	p.rankOnce.Do(func() {
		p.rank = make(map[string]int, len(p.order))
		depth := make(map[string]int, len(p.order))
		for i, n := range p.order {
			d := 0
			for _, dep := range p.graph.DependsOn(n.addr) {
				d = max(d, depth[dep]+1)
			}
			depth[n.addr] = d
			p.rank[n.addr] = i - d*len(p.order)
		}
	})
	return p.rank
}

// walk carries out the steps in todo: every step whose dependencies are done
// starts, up to Parallelism at once. After a failure, or once ctx is
// cancelled, no new step starts; the running ones finish. A dependency on a
// step not in todo (done by an earlier attempt) holds nothing up.
func (x *execution) walk(ctx context.Context) error {
	p := x.p
	rank := p.ranks()
	var failures []error
	notStarted := dag.Walker{
		Parallelism: x.opts.Parallelism,
		Priority:    func(addr string) int { return rank[addr] },
		Visit:       func(addr string) bool { return x.todo[addr] },
		Stop:        func() bool { return len(failures) > 0 || ctx.Err() != nil },
	}.Walk(p.graph, func(addr string) dag.Task {
		// The walk's own goroutine, as each Done below: what the steps
		// done so far left is read and written there alone.
		n := p.nodes[addr]
		evalCtx, sk := p.contextFor(n, x.outputs), x.skipsOf(n)
		return func() dag.Done {
			res, out := x.runStep(ctx, n, evalCtx, sk)
			return func() bool {
				x.report.Steps = append(x.report.Steps, res)
				switch res.Outcome {
				case Succeeded:
					x.outputs[addr] = out
				case Skipped:
					x.skipped[addr] = res.Reason
				default:
					failures = append(failures, res.Err)
					if out != cty.NilVal {
						// It changed the system, but its success never
						// reached the journal: the rollback undoes it from
						// memory.
						x.outputs[addr] = out
					}
					return false
				}
				return true
			}
		}
	})
	if len(notStarted) > 0 {
		never := make(map[string]bool, len(notStarted))
		for _, addr := range notStarted {
			never[addr] = true
		}
		for _, n := range p.order {
			if never[n.addr] {
				x.report.Steps = append(x.report.Steps, StepResult{Addr: n.addr, Outcome: NotRun})
			}
		}
	}
	if len(failures) > 0 {
		return errors.Join(failures...)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run interrupted: %w", ctx.Err())
	}
	return nil
}

// skips is what the steps a step depends on tell about skipping it.
type skips struct {
	// allSkipped: it depends on at least one step, and every one of them
	// was skipped.
	allSkipped bool
	// read is a skipped step whose outputs it reads, "" when none, and
	// readWhy why it was skipped.
	read, readWhy string
}

func (x *execution) skipsOf(n *node) skips { return x.p.skipsOf(n, x.skipped) }

// skipsOf looks up what skipped says (step address → why it was skipped)
// of the steps n depends on.
func (p *Program) skipsOf(n *node, skipped map[string]string) skips {
	var s skips
	deps := p.graph.DependsOn(n.addr)
	s.allSkipped = len(deps) > 0
	for _, dep := range deps {
		why, ok := skipped[dep]
		if !ok {
			s.allSkipped = false
		} else if _, reads := n.uses[dep]; reads && s.read == "" {
			s.read, s.readWhy = dep, why
		}
	}
	return s
}

// skipDecision decides whether a step is skipped: by its kind's own
// condition when the block sets one (see steps.Conditional); else when every
// step it depends on was skipped, or when it reads the outputs of a skipped
// step, which has none (a check of a certificate that was not renewed is
// moot). reason says why, and for a step whose condition makes it due, why
// it is due.
func (p *Program) skipDecision(ctx context.Context, env *steps.Env, n *node, cfg steps.Config, s skips) (skip bool, reason string, err error) {
	if s.read != "" { // what it needs is not there, whatever else it says
		return true, fmt.Sprintf("it reads the outputs of %s, which was skipped (%s)", s.read, s.readWhy), nil
	}
	if c, ok := n.kind.(steps.Conditional); ok {
		cond, err := c.Due(ctx, env, cfg)
		if err != nil {
			return false, "", err
		}
		if cond.Set {
			return !cond.Due, cond.Reason, nil
		}
	}
	if s.allSkipped {
		return true, "every step it depends on was skipped", nil
	}
	return false, "", nil
}

// runStep carries out one step and journals its outcome.
func (x *execution) runStep(ctx context.Context, n *node, evalCtx *hcl.EvalContext, sk skips) (StepResult, cty.Value) {
	addr := n.addr
	if x.opts.Observer != nil {
		x.opts.Observer.StepStarted(addr)
	}
	began := time.Now()
	out, reason, stepErr := x.applyStep(ctx, n, evalCtx, sk)
	res := StepResult{Addr: addr, Outcome: Succeeded, Duration: time.Since(began)}
	switch {
	case stepErr == nil && out == cty.NilVal:
		res.Outcome, res.Reason = Skipped, reason
		if err := x.record(journal.Record{Type: journal.StepSkipped, Step: addr, Reason: reason}); err != nil {
			stepErr = x.journalError(n, err)
		}
	case stepErr == nil:
		_, readOnly := n.kind.(steps.ReadOnly)
		res.Unchanged, res.Reason = reason != "", reason
		res.Changed = !res.Unchanged && !readOnly
		stepErr = x.recordSuccess(n, out, res.Duration, false, reason)
	}
	// The step took until its outcome was durable; the journal holds how
	// long it took until then.
	res.Duration = time.Since(began)
	if stepErr != nil {
		res.Outcome, res.Err, res.Changed = Failed, stepErr, false
		if ctx.Err() != nil {
			res.Outcome = Interrupted
		}
		// The failure's own record may fail too; the run fails either way.
		_ = x.record(journal.Record{Type: journal.StepFailed, Step: addr, Error: stepErr.Error(), Duration: journal.Duration(res.Duration)})
	}
	if x.opts.Observer != nil {
		x.opts.Observer.StepFinished(res)
	}
	return res, out
}

// applyStep evaluates a step's body with the outputs known so far, decides
// whether it is due, checks it again now that every value is known, journals
// that it starts, applies it and returns its outputs, with the sensitive ones
// marked. A skipped step returns cty.NilVal and why it was skipped; a step
// that changed nothing its outputs and why (steps.Env.NoChange).
func (x *execution) applyStep(ctx context.Context, n *node, evalCtx *hcl.EvalContext, sk skips) (cty.Value, string, *StepError) {
	p := x.p
	addr := n.addr
	cfg, val, diags := p.decode(n, evalCtx)
	if diags.HasErrors() {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: diags}
	}
	env := x.stepEnv(addr)
	skip, reason, err := p.skipDecision(ctx, env, n, cfg, sk)
	switch {
	case err != nil:
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Cannot tell whether due:", err)}
	case skip:
		return cty.NilVal, reason, nil
	}
	if x.lazy[addr] {
		if err := x.prepareStep(ctx, n); err != nil {
			return cty.NilVal, "", err.(*StepError)
		}
	}
	if err := n.kind.Validate(cfg); err != nil {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Invalid step", err)}
	}
	if diags := p.checkHost(ctx, env, n, cfg, "Cannot run"); diags.HasErrors() {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: diags}
	}
	started := journal.Record{Type: journal.StepStarted, Step: addr, Inputs: hashValue(val)}
	if r, ok := n.kind.(steps.Resumer); ok {
		intent, err := r.Intent(cfg)
		if err != nil {
			return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Invalid step", err)}
		}
		started.Intent = intent
	}
	snap, err := x.snapshot(ctx, env, n, cfg)
	if err != nil {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err)}
	}
	started.Snapshot = snap
	_, readOnly := n.kind.(steps.ReadOnly)
	// A start with nothing in it that a resume or a rollback relies on
	// need not be durable: the step runs again unless it is recorded done,
	// started or not.
	durable := x.opts.Journal != nil && !readOnly && (len(started.Intent) > 0 || len(started.Snapshot) > 0)
	_, staged := n.kind.(steps.Staged)
	record := x.recordLazily
	if durable && !staged {
		record = x.record
	}
	if err := record(started); err != nil {
		return cty.NilVal, "", x.journalError(n, err)
	}
	var commitErr error
	if durable && staged {
		// Durable by the time the kind commits to its change: the
		// fsync overlaps what it prepares first.
		env = env.WithCommit(func() error {
			commitErr = x.opts.Journal.Flush()
			return commitErr
		})
	}
	out, err := n.kind.Apply(ctx, env, cfg)
	if commitErr != nil {
		return cty.NilVal, "", x.journalError(n, commitErr)
	}
	if err != nil {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err)}
	}
	out, err = conformOutputs(n, out)
	if err != nil {
		return cty.NilVal, "", &StepError{Addr: addr, Diagnostics: p.stepDiagnostics(n, "Step failed:", err)}
	}
	return out, env.NoChangeReason(), nil
}

// recordSuccess journals a step's outcome without waiting for an fsync:
// whatever is appended durably after it carries it to disk first (records
// reach the file in order), and that comes before anything that relies on
// it. A dependent that changes something first appends its durable
// step_started; a failure that starts a rollback is durable; so is the end
// of the run. A success lost to a power failure before then only makes a
// resume carry the step out again, and nothing had yet used what it did
// (an issued certificate whose key never left memory). The exception is a
// success that resume checked on the system (checked): it is one of the
// resume's decisions, which are durable before anything runs.
func (x *execution) recordSuccess(n *node, out cty.Value, d time.Duration, checked bool, noChange string) *StepError {
	if x.opts.Journal == nil {
		return nil
	}
	raw, err := journalOutputs(n, out)
	if err != nil {
		return x.journalError(n, err)
	}
	rec := journal.Record{Type: journal.StepSucceeded, Step: n.addr, Outputs: raw, Duration: journal.Duration(d), Checked: checked}
	rec.Reason = noChange
	if s, ok := n.kind.(steps.Summarizer); ok {
		rec.Facts = s.Summary(out)
	}
	record := x.recordLazily
	if checked {
		record = x.record
	}
	if err := record(rec); err != nil {
		return x.journalError(n, err)
	}
	return nil
}

func (x *execution) journalError(n *node, err error) *StepError {
	return &StepError{Addr: n.addr, Diagnostics: hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Cannot write the journal",
		Detail:   err.Error() + ". The run stops: what it does must be recorded to be resumable.",
		Subject:  n.step.DeclRange.Ptr(),
	}}}
}

// finish supersedes what a resume replaced, once everything succeeded, and
// closes the run in the journal.
func (x *execution) finish(ctx context.Context, err error) (*Report, error) {
	status := journal.StatusSucceeded
	switch {
	case err == nil:
		x.supersede(ctx)
		x.removeBackups()
	case ctx.Err() != nil:
		status = journal.StatusInterrupted
		x.report.Interrupted = true
	case x.opts.Rollback:
		x.rollback(ctx)
		status = journal.StatusRolledBack
		if x.report.Rollback == RollbackIncomplete {
			status = journal.StatusRollbackIncomplete
		} else {
			x.removeBackups()
		}
	default:
		status = journal.StatusFailed
	}
	x.recoverJournal()
	if rerr := x.record(journal.Record{Type: journal.RunFinished, Status: status}); rerr != nil && err == nil {
		err = fmt.Errorf("the run succeeded but its end could not be journaled: %w", rerr)
	}
	x.report.Duration = time.Since(x.start)
	return x.report, err
}

// recoverJournal writes, once the run is over, what a journal that failed
// (a full disk) kept in memory since, now that the rollback may have freed
// space (its backups gone). When it still cannot, the run says that the
// journal does not show how it ended, and what to do.
func (x *execution) recoverJournal() {
	j := x.opts.Journal
	if j == nil || j.Err() == nil {
		return
	}
	if err := j.Recover(); err != nil {
		x.report.Warnings = append(x.report.Warnings, fmt.Sprintf(
			"the journal %s could not be written (%v): it does not show how the run ended. "+
				"What this run reports comes from what it knew in memory. Free space in %s, then start the next run with -fresh: "+
				"a resume would go by the journal alone", j.Path(), err, filepath.Dir(filepath.Dir(j.Path()))))
	}
}

// supersede hands each result a resume replaced to its kind.
func (x *execution) supersede(ctx context.Context) {
	p := x.p
	for _, n := range p.order {
		addr := n.addr
		previous := x.superseded[addr]
		s, ok := n.kind.(steps.Superseder)
		if len(previous) == 0 || !ok {
			continue
		}
		cfg, _, diags := p.decode(n, p.contextFor(n, x.outputs))
		if diags.HasErrors() {
			x.report.Warnings = append(x.report.Warnings, fmt.Sprintf("%s: cannot deal with superseded results: %s", addr, diags.Error()))
			continue
		}
		for _, prev := range previous {
			note, err := s.Supersede(ctx, x.env.Named(addr), cfg, prev)
			if err != nil {
				x.report.Warnings = append(x.report.Warnings, fmt.Sprintf("%s: %v", addr, err))
				continue
			}
			raw, _ := journalOutputs(n, prev)
			x.report.Superseded = append(x.report.Superseded, addr+": "+note)
			if err := x.record(journal.Record{Type: journal.StepSuperseded, Step: addr, Note: note, Outputs: raw}); err != nil {
				x.report.Warnings = append(x.report.Warnings, fmt.Sprintf("%s: %s, but the journal could not record it: %v", addr, note, err))
			}
		}
	}
}

// StepErrors returns every *StepError in err (Apply and Resume join them).
func StepErrors(err error) []*StepError {
	var out []*StepError
	var walk func(error)
	walk = func(err error) {
		var se *StepError
		switch e := err.(type) {
		case nil:
		case *StepError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		default:
			if errors.As(err, &se) {
				out = append(out, se)
			}
		}
	}
	walk(err)
	return out
}

// conformOutputs checks that a kind returned what its Outputs promise and
// marks the sensitive attributes.
func conformOutputs(n *node, out cty.Value) (cty.Value, error) {
	info := n.base.outputs
	if !out.Type().Equals(info.typ) {
		conv, err := convert.Convert(out, info.typ)
		if err != nil {
			return cty.NilVal, fmt.Errorf("internal error: the step's outputs do not match its declared outputs: %v", err)
		}
		out = conv
	}
	if out.IsNull() || !out.IsWhollyKnown() {
		return cty.NilVal, fmt.Errorf("internal error: the step's outputs do not match its declared outputs: null or unknown")
	}
	if len(info.sensitive) == 0 {
		return out, nil
	}
	attrs := out.AsValueMap()
	for _, name := range info.sensitive {
		attrs[name] = attrs[name].Mark(plans.SensitiveMark)
	}
	return cty.ObjectVal(attrs), nil
}

// outputInfo is what the engine looks up in a kind's outputs for every step
// that runs, worked out once per block.
type outputInfo struct {
	typ cty.Type // the object type of the outputs
	// sensitive and journaled are the names of the sensitive outputs and
	// of the others, sorted.
	sensitive, journaled []string
}

func newOutputInfo(kind steps.Step) *outputInfo {
	info := &outputInfo{typ: steps.OutputType(kind)}
	for name, o := range kind.Outputs() {
		if o.Sensitive {
			info.sensitive = append(info.sensitive, name)
		} else {
			info.journaled = append(info.journaled, name)
		}
	}
	slices.Sort(info.sensitive)
	slices.Sort(info.journaled)
	return info
}

// vaultDiagnostics locates an error in the vault block's settings.
func (p *Program) vaultDiagnostics(err error) hcl.Diagnostics {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid Vault connection", Detail: err.Error()}
	if p.plan.Vault != nil {
		d.Subject = p.plan.Vault.DeclRange.Ptr()
		var attrErr *steps.AttrError
		if errors.As(err, &attrErr) {
			if rng, ok := argumentRange(p.plan.Vault.Body, attrErr.Path); ok {
				d.Subject = rng.Ptr()
			}
		}
	}
	return hcl.Diagnostics{d}
}
