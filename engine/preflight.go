package engine

import (
	"context"
	"errors"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/steps"
)

// preflight lets the kinds that need something of the host
// (steps.HostChecker: a directory, a user, a program, a running process)
// look for it, for every step of nodes, with the values known before the
// run, before any step changes anything. Every problem found is returned,
// not only the first: one missing directory behind 500 steps is better
// seen with the rest.
func (x *execution) preflight(ctx context.Context, nodes []*node) error {
	p := x.p
	found := eachStep(nodes, func(n *node) hcl.Diagnostics {
		if _, ok := n.kind.(steps.HostChecker); !ok {
			return nil
		}
		cfg, _, diags := p.decode(n, p.contextFor(n, nil))
		if diags.HasErrors() {
			return diags
		}
		return p.checkHost(ctx, x.named(n), n, cfg, "Cannot run")
	})
	var errs []error
	for i, diags := range found {
		if diags.HasErrors() {
			errs = append(errs, &StepError{Addr: nodes[i].addr, Diagnostics: diags})
		}
	}
	return errors.Join(errs...)
}

// checkHost asks a step's kind, if it is a steps.HostChecker, whether the
// host has what the step needs; summary begins each diagnostic's summary.
func (p *Program) checkHost(ctx context.Context, env *steps.Env, n *node, cfg steps.Config, summary string) hcl.Diagnostics {
	hc, ok := n.kind.(steps.HostChecker)
	if !ok {
		return nil
	}
	err := hc.CheckHost(ctx, env, cfg)
	if err == steps.ErrUnknown { // fine so far; the rest just before it runs
		return nil
	}
	return p.stepDiagnostics(n, summary, err)
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
	if err := preparer.Prepare(ctx, placed(x.env, n), cfg); err != nil {
		return &StepError{Addr: n.addr, Diagnostics: x.p.stepDiagnostics(n, "Cannot run", err)}
	}
	return nil
}
