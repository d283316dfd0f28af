package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/dag"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// Rollback outcomes.
const (
	// RolledBack is a completed step undone after another step failed.
	RolledBack Outcome = "rolled back"
	// RollbackFailed is a step whose undoing failed: what it changed is
	// still in place.
	RollbackFailed Outcome = "rollback failed"
)

// The state of a run's rollback, in Report.Rollback.
const (
	RollbackNone       = ""           // no rollback (success, interrupt, or -rollback=false)
	RollbackComplete   = "complete"   // every completed step was undone
	RollbackIncomplete = "incomplete" // some could not be; see Report.RollbackSteps
)

// RollbackObserver is an Observer that also hears about steps being undone.
type RollbackObserver interface {
	Observer
	RollbackStarted(addr string)
	RollbackFinished(result StepResult)
}

// hookSpec is the schema of a step's rollback block.
var hookSpec = hcldec.ObjectSpec{
	"command": &hcldec.AttrSpec{Name: "command", Type: cty.List(cty.String), Required: true},
	"timeout": &hcldec.AttrSpec{Name: "timeout", Type: cty.String},
}

const defaultHookTimeout = time.Minute

// rollbackHook is a rollback block evaluated.
type rollbackHook struct {
	argv    []string
	timeout time.Duration
}

func parseHook(cfg steps.Config) (rollbackHook, error) {
	var h rollbackHook
	argv, errCmd := cfg.StringList("command")
	if errCmd == nil && len(argv) == 0 {
		errCmd = &steps.AttrError{Path: "command", Err: errors.New("must name a program: an argv list such as [\"/usr/local/bin/notify\", \"rolled back\"]")}
	}
	if errCmd == nil && argv[0] == "" {
		errCmd = &steps.AttrError{Path: "command", Err: errors.New("the program name must not be empty")}
	}
	timeout, errTimeout := cfg.Duration("timeout", defaultHookTimeout)
	h.argv, h.timeout = argv, timeout
	return h, errors.Join(errCmd, errTimeout)
}

// validateHook checks a step's rollback block before the run.
func (p *Program) validateHook(n *node) hcl.Diagnostics {
	hook := n.step.RollbackHook
	if hook == nil {
		return nil
	}
	val, diags := hcldec.Decode(hook.Body, hookSpec, p.contextFor(n, nil))
	if diags.HasErrors() {
		return diags
	}
	cfg := steps.NewConfig(val)
	_, err := parseHook(cfg)
	if cfg.Sensitive("command") {
		err = errors.Join(err, &steps.AttrError{Path: "command",
			Err: errors.New("must not use sensitive values: they would show on a command line, and a resumed rollback no longer has them")})
	}
	return p.hookDiagnostics(n, err)
}

// hookDiagnostics locates errors in a rollback block, skipping what is not
// known before the run.
func (p *Program) hookDiagnostics(n *node, err error) hcl.Diagnostics {
	var diags hcl.Diagnostics
	var errs []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	for _, e := range errs {
		if e == nil || errors.Is(e, steps.ErrUnknown) {
			continue
		}
		subject := n.step.RollbackHook.DeclRange
		var attrErr *steps.AttrError
		if errors.As(e, &attrErr) {
			if rng, ok := argumentRange(n.step.RollbackHook.Body, attrErr.Path); ok {
				subject = rng
			}
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid rollback block in " + n.addr,
			Detail:   e.Error(),
			Subject:  subject.Ptr(),
		})
	}
	return diags
}

// backupRoot is where this run's steps keep what they replace: beside the
// journal, under backups/<run number>.
func (x *execution) backupRoot() string {
	x.backupsOnce.Do(func() {
		if x.opts.Journal == nil {
			return
		}
		x.backups = x.opts.Journal.BackupDir()
	})
	return x.backups
}

// stepEnv returns the Env a step runs in, with its own backup directory.
func (x *execution) stepEnv(addr string) *steps.Env {
	env := x.env.Named(addr)
	if n := x.p.nodes[addr]; n != nil {
		env = placed(env, n)
	}
	if root := x.backupRoot(); root != "" {
		env.Backups = filepath.Join(root, addr)
	}
	return env
}

// snapshot lets a kind save what it needs to undo the step, before the step
// changes anything.
func (x *execution) snapshot(ctx context.Context, env *steps.Env, n *node, cfg steps.Config) (map[string]string, error) {
	r, ok := n.kind.(steps.Rollbacker)
	if !ok || !x.opts.Rollback {
		return nil, nil
	}
	// A step carried out again on resume goes back to what was there before
	// the run, not to what its first attempt left.
	x.mu.Lock()
	earlier, taken := x.snapshots[n.addr]
	x.mu.Unlock()
	if taken {
		return earlier, nil
	}
	snap, err := r.Snapshot(ctx, env, cfg)
	if err != nil {
		return nil, fmt.Errorf("saving what is needed to undo the step: %w", err)
	}
	x.mu.Lock()
	x.snapshots[n.addr] = snap
	x.mu.Unlock()
	return snap, nil
}

// rollback undoes every completed step, and every unsettled one (see
// execution.unsettled), but those it keeps (see keptByRollouts): first, in
// reverse dependency order (independent ones concurrently), every step
// whose kind is not RestoreAware; then the RestoreAware ones (reloads) in
// dependency order, so that they act on the restored system. A step's
// rollback block runs after its kind's inverse. A failure does not stop
// the others.
func (x *execution) rollback(ctx context.Context) {
	keep, hosts := x.keptByRollouts()
	x.report.KeptHosts = hosts
	for _, n := range x.p.order {
		if keep[n.addr] {
			x.report.Kept = append(x.report.Kept, n.addr)
		}
	}
	x.report.Rollback = RollbackComplete
	if !x.undoAll(ctx, func(n *node) bool { return !keep[n.addr] }, "") {
		x.report.Rollback = RollbackIncomplete
	}
}

// undoHost undoes the steps for host, which failed and left the run, as
// the rollback undoes a run's steps, while the run goes on. It fails when
// any could not be undone.
func (x *execution) undoHost(ctx context.Context, host string) error {
	if !x.undoAll(ctx, func(n *node) bool { return n.hostAt == host }, host) {
		return fmt.Errorf("%s failed, and its steps could not all be undone (see the rollback's failures): the run cannot go on without it", host)
	}
	return nil
}

// undoAll undoes, as rollback says, the steps it selects that changed
// something and are not undone yet; host, when set, is the failed host
// they are undone for (see journal.Record.Host). It reports whether every
// one of them was undone.
func (x *execution) undoAll(ctx context.Context, selects func(*node) bool, host string) bool {
	var early, late []*node
	x.mu.Lock()
	for _, n := range x.p.order {
		addr := n.addr
		if _, done := x.outputs[addr]; (!done && !x.unsettled[addr]) || x.rolledBack[addr] || !selects(n) {
			continue
		}
		_, undoable := n.kind.(steps.Rollbacker)
		if !undoable && n.step.RollbackHook == nil {
			continue
		}
		if _, ok := n.kind.(steps.RestoreAware); ok {
			late = append(late, n)
		} else {
			early = append(early, n)
		}
	}
	x.mu.Unlock()
	// Going back, a step is undone once every step that depends on it,
	// directly or through steps with nothing to undo, has been; the late
	// ones then go forward, on the restored system.
	x.undoSteps(ctx, early, true, host)
	x.undoSteps(ctx, late, false, host)
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, n := range append(early, late...) {
		if !x.rolledBack[n.addr] {
			return false
		}
	}
	return true
}

// keptByRollouts are the steps a rollback leaves in place for the rollouts
// with rollback = "failed_batch": the steps for the hosts of each batch
// that completed, every step for its hosts done (a host that failed
// within max_failures aside: it was undone already), and every step those
// depend on, but the steps of such a host. hosts are those batches' hosts.
func (x *execution) keptByRollouts() (keep map[string]bool, hosts []string) {
	p := x.p
	on := map[string][]*node{}
	for _, n := range p.order {
		if n.hostAt != "" {
			on[n.hostAt] = append(on[n.hostAt], n)
		}
	}
	keep = map[string]bool{}
	var keepWithDeps func(addr string)
	keepWithDeps = func(addr string) {
		// A host that failed within max_failures was undone: a later
		// batch, which waited for it, does not keep its steps.
		if keep[addr] || x.failedHost(p.nodes[addr].hostAt) != nil {
			return
		}
		keep[addr] = true
		for _, dep := range p.graph.DependsOn(addr) {
			keepWithDeps(dep)
		}
	}
	for _, r := range p.rollouts {
		if r.block.Rollback != plans.RollbackFailedBatch {
			continue
		}
		for _, batch := range r.batches {
			complete := true
			var these, theseHosts []string
			for _, host := range batch {
				if x.failedHost(host) != nil {
					continue
				}
				theseHosts = append(theseHosts, host)
				for _, n := range on[host] {
					// Done, not settled: a resume holds every step an
					// earlier process started unsettled (it may have
					// changed something), done since or not.
					_, done := x.outputs[n.addr]
					_, skipped := x.skipped[n.addr]
					if !done && !skipped {
						complete = false
					}
					these = append(these, n.addr)
				}
			}
			if !complete {
				break // and no later batch started
			}
			for _, addr := range these {
				keepWithDeps(addr)
			}
			hosts = append(hosts, theseHosts...)
		}
	}
	return keep, hosts
}

// undoSteps runs rollbackStep for nodes (in run order), up to Parallelism at
// a time, each once every one of them it waits for has been handled,
// successfully or not: in reverse, those that depend on it; else those it
// depends on; directly or through steps not among nodes. host is
// rollbackStep's.
func (x *execution) undoSteps(ctx context.Context, nodes []*node, reverse bool, host string) {
	position := make(map[string]int, len(nodes))
	for i, n := range nodes {
		position[n.addr] = i
	}
	dag.Walker{
		Reverse:     reverse,
		Parallelism: x.opts.Parallelism,
		Priority:    func(addr string) int { return position[addr] },
		Visit: func(addr string) bool {
			_, ok := position[addr]
			return ok
		},
		Through: true,
	}.Walk(x.p.graph, func(addr string) dag.Task {
		n := x.p.nodes[addr]
		return func() dag.Done {
			x.rollbackStep(ctx, n, host)
			return nil
		}
	})
}

// rollbackStep undoes one step and journals the outcome; host, when set, is
// the failed host it is undone for.
func (x *execution) rollbackStep(ctx context.Context, n *node, host string) {
	addr := n.addr
	if o, ok := x.opts.Observer.(RollbackObserver); ok {
		o.RollbackStarted(addr)
	}
	began := time.Now()
	// A journal that cannot record the rollback (a full disk: the very
	// failure that may have stopped the run) does not stop it: the step
	// is undone from what the run knows in memory, and the journal gets
	// the records if it recovers (see recoverJournal).
	_ = x.record(journal.Record{Type: journal.RollbackStarted, Step: addr, Host: host})
	err := x.undo(ctx, n)
	res := StepResult{Addr: addr, Outcome: RolledBack, Duration: time.Since(began)}
	if err != nil {
		res.Outcome = RollbackFailed
		res.Err = &StepError{Addr: addr, Diagnostics: x.p.stepDiagnostics(n, "Rollback failed:", err)}
		_ = x.record(journal.Record{Type: journal.RollbackFailed, Step: addr, Error: err.Error(), Duration: journal.Duration(res.Duration), Host: host})
	} else {
		_ = x.record(journal.Record{Type: journal.RollbackSucceeded, Step: addr, Duration: journal.Duration(res.Duration), Host: host})
	}
	x.mu.Lock()
	x.rolledBack[addr] = err == nil
	x.report.RollbackSteps = append(x.report.RollbackSteps, res)
	x.mu.Unlock()
	if o, ok := x.opts.Observer.(RollbackObserver); ok {
		o.RollbackFinished(res)
	}
}

// undo runs the kind's inverse, then the step's rollback block.
func (x *execution) undo(ctx context.Context, n *node) error {
	addr := n.addr
	x.mu.Lock()
	evalCtx := x.p.contextFor(n, x.outputs)
	outputs, known := x.outputs[addr]
	snap, hasSnap := x.snapshots[addr]
	x.mu.Unlock()
	if !known {
		// An unsettled step: it may have changed something, but what
		// it returned was lost with the process that ran it.
		outputs = unknownOutputs(n.kind)
	}
	if r, ok := n.kind.(steps.Rollbacker); ok {
		if !hasSnap {
			return errors.New("nothing was saved to undo it with (the run had -rollback=false); undo it by hand")
		}
		cfg, _, diags := x.p.decode(n, evalCtx)
		if diags.HasErrors() {
			return diags
		}
		if err := r.Rollback(ctx, x.stepEnv(addr), cfg, outputs, snap); err != nil {
			return err
		}
	}
	hook := n.step.RollbackHook
	if hook == nil {
		return nil
	}
	val, diags := hcldec.Decode(hook.Body, hookSpec, evalCtx)
	if diags.HasErrors() {
		return diags
	}
	h, err := parseHook(steps.NewConfig(val))
	if errors.Is(err, steps.ErrUnknown) {
		return errors.New("rollback block: its command uses the outputs of a step that did not complete")
	}
	if err != nil {
		return fmt.Errorf("rollback block: %w", err)
	}
	if _, err := command.Run(ctx, h.argv, h.timeout); err != nil {
		return fmt.Errorf("rollback block command %q: %w", h.argv[0], err)
	}
	return nil
}

// removeBackups deletes the run's backups once they are no longer needed.
func (x *execution) removeBackups() {
	root := x.backupRoot()
	if root == "" || x.opts.KeepBackups {
		return
	}
	if err := os.RemoveAll(root); err != nil {
		x.report.Warnings = append(x.report.Warnings, fmt.Sprintf("cannot remove the backups in %s: %v", root, err))
	}
}
