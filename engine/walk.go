package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotplan/rotplan/engine/dag"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/zclconf/go-cty/cty"
)

// ranks ranks, once per program, the steps ready to start together (see
// dag.Walker.Priority): the deepest first (the furthest from the steps that
// depend on nothing), then the first in run order. Deepest first finishes
// what a step started (the writes of an issued certificate) before
// starting more of the same, so that the work of many independent chains
// overlaps, as separate workers would make it, and a service the first
// steps of each chain call keeps being asked while later ones write files.
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
//
// A failure on a host whose rollout lets it fail is not the run's: the
// host leaves the run (see hostFailed), its steps that have not started
// never do, and once none of its steps is running any more, the last one
// goes on with undoing them all (undoHost) before it releases what waits
// for it, so that the rollout's next batch starts on hosts the run is
// done with.
func (x *execution) walk(ctx context.Context) error {
	p := x.p
	rank := p.ranks()
	var failures []error
	running := map[string]int{}  // per host that may fail: its steps under way
	undoing := map[string]bool{} // hosts that failed whose steps are undone
	notStarted := dag.Walker{
		Parallelism: x.opts.Parallelism,
		Priority:    func(addr string) int { return rank[addr] },
		Visit:       func(addr string) bool { return x.todo[addr] },
		Stop:        func() bool { return len(failures) > 0 || ctx.Err() != nil },
	}.Walk(p.graph, func(addr string) dag.Task {
		// The walk's own goroutine, as each Done below: what the steps
		// done so far left is written there alone, under mu, since the
		// undoing of a failed host's steps reads it on a worker.
		n := p.nodes[addr]
		host := n.hostAt
		if f := x.failedHost(host); f != nil {
			x.report.Steps = append(x.report.Steps, StepResult{Addr: addr, Outcome: NotRun,
				Reason: fmt.Sprintf("%s failed at %s", host, f.Step)})
			return nil
		}
		mayFail := p.rolloutOf[host] != nil && p.rolloutOf[host].tolerates()
		if mayFail {
			running[host]++
		}
		evalCtx, sk := p.contextFor(n, x.outputs), x.skipsOf(n)
		return func() dag.Done {
			res, out := x.runStep(ctx, n, evalCtx, sk)
			return func() (bool, dag.Task) {
				x.report.Steps = append(x.report.Steps, res)
				ok := true
				x.mu.Lock() // a failed host's steps may be undone meanwhile
				switch res.Outcome {
				case Succeeded:
					x.outputs[addr] = out
				case Skipped:
					x.skipped[addr] = res.Reason
				default:
					ok = false
					if out != cty.NilVal {
						// It changed the system, but its success never
						// reached the journal: the rollback undoes it from
						// memory.
						x.outputs[addr] = out
					}
				}
				x.mu.Unlock()
				if mayFail {
					running[host]--
				}
				if !ok && (!mayFail || !x.hostFailed(ctx, n, res)) {
					failures = append(failures, res.Err)
					return false, nil
				}
				if !mayFail || x.failedHost(host) == nil || running[host] > 0 || undoing[host] {
					return true, nil
				}
				undoing[host] = true
				return false, func() dag.Done {
					err := x.undoHost(ctx, host)
					return func() (bool, dag.Task) {
						x.failedHost(host).RolledBack = err == nil
						if err != nil {
							failures = append(failures, err)
							return false, nil
						}
						return true, nil
					}
				}
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

// HostFailure is a host that failed within its rollout's max_failures:
// it left the run, and its steps were undone.
type HostFailure struct {
	// Host is the host instance (host.web["h3"]), Rollout its rollout.
	Host, Rollout string
	// Step is the step that failed first.
	Step string
	// RolledBack: every step for the host that changed something was
	// undone. False while that is under way, or when undoing failed (the
	// run then failed).
	RolledBack bool
}

// failedHost is the failure of host, when it failed and left the run; nil
// otherwise.
func (x *execution) failedHost(host string) *HostFailure {
	if host == "" {
		return nil
	}
	return x.hostsFailed[host]
}

// hostFailed takes the host of step n, which ended with res, out of the
// run when its rollout lets one more of its hosts fail, and says whether it
// did (a host already out stays out). It does not for an interrupted step,
// without a rollback to undo the host's steps, or when the journal cannot
// record it: the failure is then the run's.
func (x *execution) hostFailed(ctx context.Context, n *node, res StepResult) bool {
	host := n.hostAt
	if x.failedHost(host) != nil {
		return true
	}
	r := x.p.rolloutOf[host]
	name := r.block.Name
	if res.Outcome != Failed || ctx.Err() != nil || !x.opts.Rollback || x.rolloutFailures[name] >= r.block.MaxFailures {
		return false
	}
	if err := x.record(journal.Record{Type: journal.HostFailed, Step: n.addr, Host: host, Rollout: name}); err != nil {
		return false
	}
	x.rolloutFailures[name]++
	f := &HostFailure{Host: host, Rollout: name, Step: n.addr}
	x.hostsFailed[host] = f
	x.report.HostsFailed = append(x.report.HostsFailed, f)
	x.opts.Log.Warn("host failed; its steps are undone and the rollout goes on",
		"host", host, "step", n.addr, "rollout", name,
		"failed", x.rolloutFailures[name], "max_failures", r.block.MaxFailures)
	return true
}
