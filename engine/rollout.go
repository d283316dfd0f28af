package engine

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/plans"
)

// A rollout orders hosts, not steps: its batches become ordinary graph
// edges, every step for a host of batch i+1 depending on every step for
// the hosts of batch i (directly or through the steps of its batch), so
// that the walker, the journal, resume and the rollback need nothing of
// the order. A failure in a batch leaves the next batch's steps waiting
// for a dependency that failed, so none starts, and the rollback undoes
// every step that completed, in every batch, or, with rollback =
// "failed_batch", all but the completed batches (see keptByRollouts).
//
// A rollout with max_failures lets that many of its hosts fail: the walk
// takes a host that fails out of the run (see execution.hostFailed), undoes
// its steps alone, and releases what waits for them, so that the next
// batch starts once the others of the batch passed.

// rollout is a rollout block resolved: its host instances' addresses in
// batches, in order.
type rollout struct {
	block   *plans.Rollout
	batches [][]string
}

// tolerates reports whether the rollout lets hosts fail (max_failures).
func (r *rollout) tolerates() bool { return r.block.MaxFailures > 0 }

// Rollout is one rollout of a program: its name and its batches in order,
// each the addresses of its host instances (host.web["a"]); how many hosts
// may fail (max_failures), and what a failure that ends it undoes
// (plans.RollbackAll or plans.RollbackFailedBatch).
type Rollout struct {
	Name        string
	Batches     [][]string
	MaxFailures int
	Rollback    string
}

// Rollouts returns the program's rollouts in the plan's order.
func (p *Program) Rollouts() []Rollout {
	out := make([]Rollout, len(p.rollouts))
	for i, r := range p.rollouts {
		out[i] = Rollout{Name: r.block.Name, Batches: r.batches, MaxFailures: r.block.MaxFailures, Rollback: r.block.Rollback}
	}
	return out
}

// connectRollouts resolves every rollout's hosts, splits its groups into
// batches and adds the edges between consecutive batches. A rollout
// naming a host block that had errors is left out: they were said.
func (p *Program) connectRollouts() hcl.Diagnostics {
	var diags hcl.Diagnostics
	p.rolloutEdges = map[[2]string]string{}
	p.rolloutOf = map[string]*rollout{}
	taken := map[string]membership{} // host instance address -> where it is in a rollout
	for _, block := range p.plan.Rollouts {
		r, more := p.resolveRollout(block, taken)
		diags = append(diags, more...)
		if r != nil {
			p.rollouts = append(p.rollouts, r)
			for _, batch := range r.batches {
				for _, addr := range batch {
					p.rolloutOf[addr] = r
				}
			}
		}
	}
	if diags.HasErrors() {
		return diags
	}
	on := map[string][]*node{} // the steps for each host instance
	for _, b := range p.baseOrder {
		for _, n := range b.instances {
			if n.hostAt != "" {
				on[n.hostAt] = append(on[n.hostAt], n)
			}
		}
	}
	if diags = p.checkTolerant(on); diags.HasErrors() {
		return diags
	}
	for _, r := range p.rollouts {
		var before []*node // the last steps of the last batch that has any
		for _, batch := range r.batches {
			var these []*node
			for _, addr := range batch {
				these = append(these, on[addr]...)
			}
			if len(these) == 0 {
				continue
			}
			first, last := p.ends(these)
			for _, n := range first {
				for _, dep := range before {
					p.graph.Connect(n.addr, dep.addr)
					p.rolloutEdges[[2]string{n.addr, dep.addr}] = r.block.Name
				}
			}
			before = last
		}
	}
	return diags
}

// checkTolerant refuses, in a rollout that lets hosts fail, a step that
// depends on a step for one of its hosts without being for that host too
// (on holds the steps for each host instance): once the host failed and
// left the run, it could never start, and the run could not end.
func (p *Program) checkTolerant(on map[string][]*node) hcl.Diagnostics {
	var diags hcl.Diagnostics
	said := map[[2]string]bool{} // {step, host}
	for _, r := range p.rollouts {
		if !r.tolerates() {
			continue
		}
		for _, batch := range r.batches {
			for _, host := range batch {
				for _, n := range on[host] {
					for _, addr := range p.graph.Dependents(n.addr) {
						d := p.nodes[addr]
						if d.hostAt == host || said[[2]string{addr, host}] {
							continue
						}
						said[[2]string{addr, host}] = true
						where := "runs where rotplan runs"
						if d.hostAt != "" {
							where = "is for " + d.hostAt
						}
						diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError,
							Summary: "Step depends on a host that may fail",
							Detail: fmt.Sprintf("%s depends on %s, which is for %s, but %s. Rollout %q lets %d of its hosts fail (max_failures), and a host that fails leaves the run with none of its steps done, so %s could never run. Make it a step for %s (on), or drop the dependency.",
								addr, n.addr, host, where, r.block.Name, r.block.MaxFailures, addr, host),
							Subject: d.step.DeclRange.Ptr()})
					}
				}
			}
		}
	}
	return diags
}

// ends are the first steps of a batch (those that wait for no other step
// of it) and its last (those no other step of it waits for). Every step of
// a batch leads, through steps of the batch, from a first one and to a last
// one, so edges from the next batch's first steps to this one's last make
// every step of the next wait for every step of this one, with far fewer
// edges than from every step to every step.
func (p *Program) ends(batch []*node) (first, last []*node) {
	in := make(map[string]bool, len(batch))
	for _, n := range batch {
		in[n.addr] = true
	}
	inBatch := func(addrs []string) bool {
		for _, a := range addrs {
			if in[a] {
				return true
			}
		}
		return false
	}
	for _, n := range batch {
		if !inBatch(p.graph.DependsOn(n.addr)) {
			first = append(first, n)
		}
		if !inBatch(p.graph.Dependents(n.addr)) {
			last = append(last, n)
		}
	}
	return first, last
}

// membership is where a host instance was named in a rollout.
type membership struct {
	rollout string
	at      hcl.Range
}

// resolveRollout finds the host instances of a rollout's groups and splits
// each group into batches. taken holds the instances earlier rollouts, and
// this one so far, named.
func (p *Program) resolveRollout(block *plans.Rollout, taken map[string]membership) (*rollout, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	if len(block.Deferred) > 0 {
		evaluated := *block // the plan's block stays as parsed
		for _, name := range keys(block.Deferred) {
			expr := block.Deferred[name]
			v, more := expr.Value(p.baseContext())
			if !more.HasErrors() {
				more = evaluated.Set(name, v, expr.Range())
			}
			diags = append(diags, more...)
		}
		if diags.HasErrors() {
			return nil, diags
		}
		block = &evaluated
	}
	r := &rollout{block: block}
	for _, group := range block.Groups {
		var hosts []string
		for _, tr := range group {
			h := p.hosts[tr[1].(hcl.TraverseAttr).Name]
			if h == nil { // undeclared, or its block has errors: said already
				return nil, diags
			}
			addrs, d := h.rolloutInstances(tr)
			if d != nil {
				diags = append(diags, d)
				continue
			}
			for _, addr := range addrs {
				if prev, dup := taken[addr]; dup {
					diags = append(diags, inTwoRollouts(addr, block.Name, prev, tr.SourceRange()))
					continue
				}
				taken[addr] = membership{block.Name, tr.SourceRange()}
				hosts = append(hosts, addr)
			}
		}
		size := block.BatchSize
		if block.Percent > 0 {
			size = max(1, len(hosts)*block.Percent/100)
		}
		for len(hosts) > 0 {
			n := min(size, len(hosts))
			r.batches = append(r.batches, hosts[:n:n])
			hosts = hosts[n:]
		}
	}
	return r, diags
}

// rolloutInstances are the addresses of the instances a rollout's host
// reference names: host.NAME[KEY] one, host.NAME every one, in key order.
func (h *hostBlock) rolloutInstances(tr hcl.Traversal) ([]string, *hcl.Diagnostic) {
	if len(tr) == 3 {
		key, d := h.instanceKey(tr[2].(hcl.TraverseIndex).Key, tr.SourceRange())
		if d != nil {
			return nil, d
		}
		return []string{hostAddr(h.block.Name, h.mode, key)}, nil
	}
	if h.mode == single {
		return []string{hostAddr(h.block.Name, single, "")}, nil
	}
	out := make([]string, len(h.keys))
	for i, k := range h.keys {
		out[i] = hostAddr(h.block.Name, h.mode, k)
	}
	return out, nil
}

// inTwoRollouts refuses a host instance named a second time, in the same
// rollout or another.
func inTwoRollouts(addr, name string, prev membership, at hcl.Range) *hcl.Diagnostic {
	if prev.rollout == name {
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate host in rollout",
			Detail:  fmt.Sprintf("%s is already in rollout %q, at %s: a host is in one batch.", addr, name, location(prev.at)),
			Subject: at.Ptr()}
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Host in two rollouts",
		Detail:  fmt.Sprintf("%s is already in rollout %q, at %s: a host instance is in at most one rollout.", addr, prev.rollout, location(prev.at)),
		Subject: at.Ptr()}
}

// rolloutHint says which rollouts' order is part of a cycle among the
// steps of cycle, or "" when none is.
func (p *Program) rolloutHint(cycle []string) string {
	names := map[string]bool{}
	for _, from := range cycle {
		for _, to := range cycle {
			if name, ok := p.rolloutEdges[[2]string{from, to}]; ok {
				names[name] = true
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	list := keys(names)
	return fmt.Sprintf("\nThe order of rollout %q is part of this cycle: every step for a host of a batch waits for every step for the hosts of the batches before it, so a step for an earlier batch cannot depend on a step for a later one.",
		strings.Join(list, `", "`))
}
