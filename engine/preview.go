package engine

import (
	"context"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Preview is what a run of the plan would do, found by reading the system
// and changing nothing: every step, in the order the run would reach it.
type Preview struct {
	Steps []StepPreview
	// Rollouts are the plan's rollouts, their batches in the order the run
	// takes them.
	Rollouts []Rollout
	// Diagnostics are every problem found, of every step: each would make
	// the run fail.
	Diagnostics hcl.Diagnostics
}

// StepPreview is what the run would do with one step.
type StepPreview struct {
	Addr, Kind, Name string
	// DeclRange is where the step is declared.
	DeclRange hcl.Range
	DependsOn []string
	Action    steps.Action
	// Reason says why, where the action alone does not ("612h left").
	Reason string
	// Skipped is set when the run would skip the step (see
	// steps.Conditional); Action is then steps.NoChange.
	Skipped bool
	// Certificates are the certificate files the step looks after, as
	// they are now (steps.CertificateHolder), when Options.Certificates
	// asks for them; they are read whether or not the step is due, since a
	// step not due still keeps them in place.
	Certificates []steps.CertificateFile
	// Arguments are the step's arguments as far as they are known before
	// the run; Now what it acts on looks like now.
	Arguments []Argument
	Now       []steps.Fact
	// Fields are what the step would change, field by field
	// (steps.Preview.Fields).
	Fields []steps.FieldChange
	// Observed is what the step acts on as it is now, for a saved plan to
	// compare (steps.Preview.Observed).
	Observed string
	// Diagnostics are the step's problems.
	Diagnostics hcl.Diagnostics
}

// Argument is one argument of a step as a preview shows it.
type Argument struct {
	// Name is the argument's name; in a nested block, prefixed with the
	// block's ("tls.address").
	Name string
	// Value is the argument's value, unmarked, when it is known and not
	// sensitive; cty.NilVal otherwise.
	Value cty.Value
	// Sensitive is set for a value computed from a secret: it is never
	// shown, known or not.
	Sensitive bool
	// KnownAfter names the kinds of the steps whose outputs the value waits
	// for ("issue"), when it is not known before the run.
	KnownAfter []string
}

// Count returns how many steps have the action.
func (pv *Preview) Count(a steps.Action) int {
	n := 0
	for _, s := range pv.Steps {
		if s.Action == a {
			n++
		}
	}
	return n
}

// Changes reports whether running the plan would change anything.
func (pv *Preview) Changes() bool {
	for _, s := range pv.Steps {
		if s.Action.Changes() {
			return true
		}
	}
	return false
}

// knownAfter marks, during a preview, the outputs of a step that are not
// known before the run, with the kind of that step. cty carries marks
// through expressions, so an argument computed from such an output says
// which kind of step it waits for. It never reaches a kind: Config takes
// the sensitive mark alone.
type knownAfter string

// Preview evaluates the plan as a run would, step by step in the run's
// order, and asks each kind what it would do (steps.Planner) and whether it
// is due (steps.Conditional), with every output not known before the run
// unknown. Nothing is written, issued, signalled or run, and no journal is
// kept. The environment the steps shared is closed at the end
// (steps.Env.Close), so that a login made for the preview does not outlive
// it. Only Log and Certificates of opts are used.
func (p *Program) Preview(ctx context.Context, opts Options) *Preview {
	x := p.newExecution(opts)
	pv := &Preview{Rollouts: p.Rollouts()}
	if err := x.connect(); err != nil {
		pv.Diagnostics = append(pv.Diagnostics, err.Diagnostics...)
		return pv
	}
	defer func() {
		if err := x.env.Close(context.WithoutCancel(ctx)); err != nil {
			x.opts.Log.Warn("the preview could not end its sessions", "error", err)
		}
	}()
	outputs := map[string]cty.Value{}
	skipped := map[string]string{}
	changes := map[string]bool{}
	for _, n := range p.order {
		sp := p.previewStep(ctx, x, n, outputs, skipped, changes)
		changes[sp.Addr] = sp.Action.Changes()
		pv.Steps = append(pv.Steps, sp)
		pv.Diagnostics = append(pv.Diagnostics, sp.Diagnostics...)
	}
	return pv
}

// previewStep previews one step and records its planned outputs, or that it
// is skipped, for the steps after it. changes says which steps before it
// change something.
func (p *Program) previewStep(ctx context.Context, x *execution, n *node, outputs map[string]cty.Value, skipped map[string]string, changes map[string]bool) StepPreview {
	addr := n.addr
	sp := StepPreview{
		Addr: addr, Kind: n.step.Kind, Name: strings.TrimPrefix(addr, n.step.Kind+"."), DeclRange: n.step.DeclRange,
		DependsOn: p.graph.DependsOn(addr), Action: steps.Replace,
	}
	if _, ok := n.kind.(steps.ReadOnly); ok {
		// Whatever its own preview finds, or when it has none, or its
		// arguments are wrong: a step that only reads changes nothing.
		sp.Action = steps.Check
	}
	outputs[addr] = plannedOutputs(n, cty.NilVal)
	evalCtx := p.contextFor(n, outputs)
	val, diags := n.base.dec.decode(evalCtx)
	sp.Diagnostics = append(sp.Diagnostics, diags...)
	if diags.HasErrors() {
		return sp
	}
	sp.Arguments = previewArguments("", val)
	if n.step.On != nil && n.host == nil {
		// Its host is wrong (said when compiling): looking here would
		// preview another machine.
		return sp
	}
	cfg := steps.NewConfig(sensitiveOnly(val))
	env := x.named(n)
	// A step on a host names files there: its kind reads them there.
	if holder, ok := n.kind.(steps.CertificateHolder); ok && x.opts.Certificates {
		sp.Certificates = holder.Certificates(ctx, env, cfg)
	}

	sk := p.skipsOf(n, skipped)
	skip, reason, err := p.skipDecision(ctx, env, n, cfg, sk)
	switch {
	case err != nil:
		sp.Diagnostics = append(sp.Diagnostics, p.stepDiagnostics(n, "Cannot tell whether due:", err)...)
		return sp
	case skip:
		sp.Action, sp.Reason, sp.Skipped = steps.NoChange, reason, true
		skipped[addr] = reason
		return sp
	}
	if err := n.kind.Validate(cfg); err != nil && err != steps.ErrUnknown {
		// The kind's preview would only find the same mistakes again.
		sp.Diagnostics = append(sp.Diagnostics, p.stepDiagnostics(n, "Invalid step", err)...)
		return sp
	}
	if diags := p.checkHost(ctx, env, n, cfg, "Would fail:"); diags.HasErrors() {
		sp.Diagnostics = append(sp.Diagnostics, diags...)
		return sp
	}
	planner, ok := n.kind.(steps.Planner)
	if !ok {
		sp.Reason = reason
		return sp
	}
	plan, err := planner.Plan(ctx, env, cfg)
	if err != nil {
		sp.Diagnostics = append(sp.Diagnostics, p.stepDiagnostics(n, "Cannot preview", err)...)
	}
	for _, problem := range plan.Problems {
		sp.Diagnostics = append(sp.Diagnostics, p.stepDiagnostics(n, "Would fail:", problem)...)
	}
	if plan.Action != "" {
		sp.Action = plan.Action
	}
	sp.Reason, sp.Now, sp.Observed, sp.Fields = plan.Reason, plan.Now, plan.Observed, plan.Fields
	env.PlanFiles(plan.Files)
	if sp.Action == steps.NoChange {
		// What the kind found in place is what the steps before it will
		// change (a chown of files the writes replace): it may well act.
		for _, dep := range sp.DependsOn {
			if changes[dep] {
				sp.Action, sp.Reason = steps.Replace, "after "+dep+", which changes what it acts on"
				break
			}
		}
	}
	if reason != "" { // due, and why
		sp.Reason = joinReasons(reason, sp.Reason)
	}
	outputs[addr] = plannedOutputs(n, plan.Outputs)
	return sp
}

func joinReasons(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; " + b
}

// plannedOutputs shapes what a step's preview knows of its outputs (NilVal:
// nothing) into its kind's output type: unknown where not known, marked
// with the kind's name (knownAfter), and sensitive where the kind says so.
func plannedOutputs(n *node, planned cty.Value) cty.Value {
	kind := n.kind
	attrs := map[string]cty.Value{}
	if planned != cty.NilVal && !planned.IsNull() && planned.IsKnown() {
		if conv, err := convert.Convert(planned, steps.OutputType(kind)); err == nil {
			attrs = conv.AsValueMap()
		}
	}
	for name, o := range kind.Outputs() {
		v, ok := attrs[name]
		if !ok {
			v = cty.UnknownVal(o.Type)
		}
		if !v.IsWhollyKnown() {
			v = v.Mark(knownAfter(n.step.Kind))
		}
		if o.Sensitive {
			v = v.Mark(plans.SensitiveMark)
		}
		attrs[name] = v
	}
	return cty.ObjectVal(attrs)
}

// sensitiveOnly keeps a value's sensitive marks and drops the preview's own.
func sensitiveOnly(v cty.Value) cty.Value {
	unmarked, pvm := v.UnmarkDeepWithPaths()
	var keep []cty.PathValueMarks
	for _, pm := range pvm {
		if pm.Marks.Has(plans.SensitiveMark) {
			keep = append(keep, cty.PathValueMarks{Path: pm.Path, Marks: cty.NewValueMarks(plans.SensitiveMark)})
		}
	}
	return unmarked.MarkWithPaths(keep)
}

// previewArguments lists the arguments of a decoded body (its nested blocks
// flattened, their names prefixed), sorted by name; null ones are left out.
func previewArguments(prefix string, val cty.Value) []Argument {
	if val.IsNull() || !val.IsKnown() || !val.Type().IsObjectType() {
		return nil
	}
	names := make([]string, 0, len(val.Type().AttributeTypes()))
	for name := range val.Type().AttributeTypes() {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []Argument
	for _, name := range names {
		v := val.GetAttr(name)
		if v.IsNull() {
			continue
		}
		if v.Type().IsObjectType() && v.IsKnown() && !v.IsMarked() {
			out = append(out, previewArguments(prefix+name+".", v)...)
			continue
		}
		out = append(out, previewArgument(prefix+name, v))
	}
	return out
}

func previewArgument(name string, v cty.Value) Argument {
	a := Argument{Name: name}
	unmarked, marks := v.UnmarkDeep()
	if _, ok := marks[plans.SensitiveMark]; ok {
		a.Sensitive = true
		return a
	}
	if unmarked.IsWhollyKnown() {
		if holdsPrivateKey(unmarked) {
			// Read with file() rather than from an issue step, a key is
			// not marked; it must not show in a preview all the same.
			a.Sensitive = true
			return a
		}
		a.Value = unmarked
		return a
	}
	for m := range marks {
		if k, ok := m.(knownAfter); ok {
			a.KnownAfter = append(a.KnownAfter, string(k))
		}
	}
	sort.Strings(a.KnownAfter)
	if len(a.KnownAfter) == 0 {
		a.KnownAfter = []string{"the run"}
	}
	return a
}

// holdsPrivateKey reports whether a value holds a PEM private key anywhere.
func holdsPrivateKey(v cty.Value) bool {
	found := false
	_ = cty.Walk(v, func(_ cty.Path, v cty.Value) (bool, error) {
		if v.Type() == cty.String && !v.IsNull() && v.IsKnown() && strings.Contains(v.AsString(), "PRIVATE KEY-----") {
			found = true
		}
		return !found, nil
	})
	return found
}
