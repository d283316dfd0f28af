package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// DefaultParallelism is how many steps run at once unless Options say.
const DefaultParallelism = 10

// Options configure Apply and Resume.
type Options struct {
	// Log receives the run's log lines; nil discards them.
	Log hclog.Logger
	// Observer, when set, hears about every step.
	Observer Observer
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

	// hostsFailed are the hosts that failed within their rollout's
	// max_failures, and rolloutFailures how many each rollout has had
	// (see hostFailed). Read and written on the walk's goroutine.
	hostsFailed     map[string]*HostFailure
	rolloutFailures map[string]int

	backupsOnce sync.Once
	backups     string // see backupRoot
}

func (p *Program) newExecution(opts Options) *execution {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
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
		unsettled: map[string]bool{}, hostsFailed: map[string]*HostFailure{}, rolloutFailures: map[string]int{},
	}
}

// Apply runs the program: it prepares every step (so that, for example, an
// unreachable service stops the run before anything has changed), then runs
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
	defer x.disconnect()
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

// connect makes the environment the steps share and has the plan's
// settings blocks set it up (steps.Setting.Open); the sessions they set up
// open on first use.
func (x *execution) connect() *SettingsError {
	env := steps.NewEnv(x.opts.Log)
	for _, typ := range keys(x.p.settings) {
		if err := x.p.settings[typ].Open(env, x.p.settingValues[typ]); err != nil {
			return &SettingsError{Block: typ, Diagnostics: x.p.settingsDiagnostics(typ, err)}
		}
	}
	x.env = env
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

// settingsDiagnostics locates an error in the settings block of type typ,
// at the argument to blame where the error names one.
func (p *Program) settingsDiagnostics(typ string, err error) hcl.Diagnostics {
	return hcl.Diagnostics{blockDiagnostic(p.plan.Settings[typ], p.settings[typ].Summary(), err)}
}

// blockDiagnostic is err, about the settings block (nil when the plan has
// none), as a diagnostic headed by summary, at the argument an
// *steps.AttrError names or else at the block.
func blockDiagnostic(block *plans.SettingsBlock, summary string, err error) *hcl.Diagnostic {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: err.Error()}
	if block != nil {
		d.Subject = block.DeclRange.Ptr()
		var attrErr *steps.AttrError
		if errors.As(err, &attrErr) {
			if rng, ok := argumentRange(block.Body, attrErr.Path); ok {
				d.Subject = rng.Ptr()
			}
		}
	}
	return d
}
