package engine

import (
	"context"
	"fmt"

	"github.com/rotplan/rotplan/steps"
)

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
