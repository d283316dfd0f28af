package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/rotplan/rotplan/engine/dag"
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
