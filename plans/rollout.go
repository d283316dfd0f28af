package plans

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// RolloutBlock is the type of the blocks that order the hosts steps are
// for into batches.
const RolloutBlock = "rollout"

// Rollout is a `rollout "NAME" { ... }` block: host instances in groups,
// each group split into batches, kept as host references. Which instances
// a reference stands for (host.web: every instance, in key order) is known
// only once the host blocks are expanded, so the engine resolves them.
type Rollout struct {
	Name string
	// Groups are the groups of hosts in order (`hosts` is one group), each
	// a list of host references: host.NAME or host.NAME[KEY].
	Groups [][]hcl.Traversal
	// BatchSize is how many hosts a batch of a group holds; when Percent
	// is set instead, a batch holds that percentage of its group's hosts,
	// rounded down, and at least one.
	BatchSize, Percent int
	// Deferred are batch_size, max_failures and rollback, by name, when
	// they refer to variables or locals: the engine evaluates them and
	// sets the fields with Set. Constants are decoded here.
	Deferred map[string]hcl.Expression
	// MaxFailures is how many of its hosts may fail before the rollout
	// ends: a host that fails within it is rolled back alone and leaves
	// the rollout, which goes on. 0: the first failure ends it.
	MaxFailures int
	// Rollback is what a failure that ends the rollout undoes:
	// RollbackAll or RollbackFailedBatch.
	Rollback  string
	DeclRange hcl.Range
}

// The values of a rollout's rollback argument.
const (
	// RollbackAll: a failure that ends the rollout undoes every step the
	// run completed, its completed batches too, so that the fleet ends
	// on one version. The default.
	RollbackAll = "all"
	// RollbackFailedBatch: the rollout's completed batches, and the
	// steps they depend on, keep what they did; the rest of the run is
	// undone.
	RollbackFailedBatch = "failed_batch"
)

// rolloutSchema is what a rollout block holds.
var rolloutSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "hosts"}, {Name: "groups"}, {Name: "batch_size"}, {Name: "max_failures"}, {Name: "rollback"},
}}

// decodeRollout reads a rollout block. Its hosts are host references: what
// it orders must be known before anything is evaluated. batch_size,
// max_failures and rollback may also use variables and locals, which the
// engine evaluates (see Rollout.Deferred).
func decodeRollout(block *hcl.Block) (*Rollout, hcl.Diagnostics) {
	r := &Rollout{Name: block.Labels[0], BatchSize: 1, Rollback: RollbackAll, DeclRange: block.DefRange}
	if !hclsyntax.ValidIdentifier(r.Name) {
		return nil, hcl.Diagnostics{invalidName("rollout", r.Name, block.LabelRanges[0])}
	}
	content, diags := block.Body.Content(rolloutSchema)
	hosts, hasHosts := content.Attributes["hosts"]
	groups, hasGroups := content.Attributes["groups"]
	switch {
	case hasHosts && hasGroups:
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError,
			Summary: "Invalid combination of hosts and groups",
			Detail:  "A rollout has hosts (one group) or groups (a list of groups, in order), not both.",
			Subject: groups.NameRange.Ptr()})
	case hasHosts:
		g, more := rolloutHosts(hosts.Expr)
		diags = append(diags, more...)
		r.Groups = [][]hcl.Traversal{g}
	case hasGroups:
		exprs, more := hcl.ExprList(groups.Expr)
		diags = append(diags, more...)
		if len(exprs) == 0 && !more.HasErrors() {
			diags = append(diags, emptyRollout(groups.Expr.Range()))
		}
		for _, e := range exprs {
			g, more := rolloutHosts(e)
			diags = append(diags, more...)
			r.Groups = append(r.Groups, g)
		}
	default:
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError,
			Summary: "Missing hosts of rollout",
			Detail:  "A rollout names its hosts: hosts = [host.web[\"a\"], ...] or host.web, or groups = [[...], [...]].",
			Subject: block.DefRange.Ptr()})
	}
	for _, name := range []string{"batch_size", "max_failures", "rollback"} {
		attr, ok := content.Attributes[name]
		switch {
		case !ok:
		case len(attr.Expr.Variables()) > 0:
			if r.Deferred == nil {
				r.Deferred = map[string]hcl.Expression{}
			}
			r.Deferred[name] = attr.Expr
		default:
			v, more := attr.Expr.Value(nil)
			if more.HasErrors() {
				diags = append(diags, more...)
				continue
			}
			diags = append(diags, r.Set(name, v, attr.Expr.Range())...)
		}
	}
	return r, diags
}

// rolloutHosts reads one group: a list of host references, or one
// reference (host.web, every instance of it).
func rolloutHosts(expr hcl.Expression) ([]hcl.Traversal, hcl.Diagnostics) {
	exprs := []hcl.Expression{expr}
	if _, ok := expr.(*hclsyntax.TupleConsExpr); ok {
		var diags hcl.Diagnostics
		if exprs, diags = hcl.ExprList(expr); diags.HasErrors() {
			return nil, diags
		}
		if len(exprs) == 0 {
			return nil, hcl.Diagnostics{emptyRollout(expr.Range())}
		}
	}
	var out []hcl.Traversal
	var diags hcl.Diagnostics
	for _, e := range exprs {
		tr, more := hcl.AbsTraversalForExpr(e)
		ok := !more.HasErrors() && len(tr) >= 2 && len(tr) <= 3 && tr.RootName() == HostBlock
		if ok {
			_, ok = tr[1].(hcl.TraverseAttr)
		}
		if ok && len(tr) == 3 {
			ix, isIndex := tr[2].(hcl.TraverseIndex)
			ok = isIndex && (ix.Key.Type() == cty.String || ix.Key.Type() == cty.Number)
		}
		if !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError,
				Summary: "Invalid rollout host",
				Detail:  "A rollout's hosts are host references: host.NAME (every instance of the block, in key order) or host.NAME[KEY] with a literal KEY.",
				Subject: e.Range().Ptr()})
			continue
		}
		out = append(out, tr)
	}
	return out, diags
}

func emptyRollout(at hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Empty rollout group",
		Detail: "Each group of a rollout names at least one host.", Subject: at.Ptr()}
}

// Set sets batch_size, max_failures or rollback (name) from its value v,
// found at at. cty.NilVal stands for a value that could not be had.
func (r *Rollout) Set(name string, v cty.Value, at hcl.Range) hcl.Diagnostics {
	switch name {
	case "batch_size":
		return r.setBatchSize(v, at)
	case "max_failures":
		return r.setMaxFailures(v, at)
	}
	return r.setRollback(v, at)
}

// setMaxFailures: a whole number, 0 or more. A variable given on the
// command line is a string.
func (r *Rollout) setMaxFailures(v cty.Value, at hcl.Range) hcl.Diagnostics {
	if v != cty.NilVal && v.IsWhollyKnown() && !v.IsNull() {
		if n, err := convert.Convert(v, cty.Number); err == nil {
			if i, acc := n.AsBigFloat().Int64(); acc == big.Exact && i >= 0 && i <= 1<<30 {
				r.MaxFailures = int(i)
				return nil
			}
		}
	}
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid max_failures",
		Detail:  "max_failures is how many hosts of the rollout may fail, each rolled back alone, before a failure ends the rollout: a whole number, 0 (the default: the first failure ends it) or more.",
		Subject: at.Ptr()}}
}

// setRollback: RollbackAll or RollbackFailedBatch.
func (r *Rollout) setRollback(v cty.Value, at hcl.Range) hcl.Diagnostics {
	got := "that"
	if v != cty.NilVal && v.IsWhollyKnown() && !v.IsNull() && v.Type() == cty.String {
		switch s := v.AsString(); s {
		case RollbackAll, RollbackFailedBatch:
			r.Rollback = s
			return nil
		default:
			got = strconv.Quote(s)
		}
	}
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid rollback",
		Detail: fmt.Sprintf("rollback is what a failure that ends the rollout undoes: %q (the default: every step the run completed, so the fleet ends on one version) or %q (the batches that completed keep their new version); not %s.",
			RollbackAll, RollbackFailedBatch, got),
		Subject: at.Ptr()}}
}

// setBatchSize: a whole number of hosts, at least 1, or a percentage of
// the group, "25%", from 1 to 100.
func (r *Rollout) setBatchSize(v cty.Value, at hcl.Range) hcl.Diagnostics {
	bad := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid batch_size",
		Detail:  `batch_size is a whole number of hosts, at least 1, or a percentage of each group as a string from "1%" to "100%" (at least one host a batch).`,
		Subject: at.Ptr()}}
	if v == cty.NilVal || !v.IsWhollyKnown() || v.IsNull() {
		return bad
	}
	switch v.Type() {
	case cty.Number:
		n, acc := v.AsBigFloat().Int64()
		if acc != big.Exact || n < 1 || n > 1<<30 {
			return bad
		}
		r.BatchSize, r.Percent = int(n), 0
	case cty.String:
		s, isPercent := strings.CutSuffix(v.AsString(), "%")
		n, err := strconv.Atoi(s)
		switch {
		case err != nil:
			return bad
		case !isPercent: // "2": a variable given on the command line is a string
			if n < 1 || n > 1<<30 {
				return bad
			}
			r.BatchSize, r.Percent = n, 0
		case n < 1 || n > 100:
			return bad
		default:
			r.BatchSize, r.Percent = 0, n
		}
	default:
		return bad
	}
	return nil
}

// checkRolloutHosts refuses a rollout host naming a host block the plan
// lacks.
func checkRolloutHosts(r *Rollout, hosts map[string]*SettingsBlock) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, g := range r.Groups {
		for _, tr := range g {
			if d := undeclaredHost(tr[1].(hcl.TraverseAttr).Name, hosts, tr.SourceRange()); d != nil {
				diags = append(diags, d)
			}
		}
	}
	return diags
}
