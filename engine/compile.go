package engine

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rotplan/rotplan/internal/suggest"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/engine/dag"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Program is a plan checked and ready to apply: its variables and locals
// evaluated, its steps expanded into instances (for_each, count) and
// ordered, and every instance validated as far as the values known before
// the run allow.
type Program struct {
	plan   *plans.Plan
	kinds  steps.Registry
	funcs  map[string]function.Function
	vars   cty.Value // object of variable values
	locals cty.Value // object of local values
	graph  *dag.Graph
	// bases are the step blocks by address (kind.name), baseOrder in
	// source order; nodes their instances by instance address.
	bases     map[string]*base
	baseOrder []*base
	nodes     map[string]*node
	order     []*node
	// settings are the settings blocks the kinds use, by type, and
	// settingValues each evaluated (empty when the plan has none).
	settings      steps.Settings
	settingValues map[string]steps.Config
	// hosts are the plan's host blocks evaluated, by name (see hosts.go).
	hosts map[string]*hostBlock
	// rollouts are the plan's rollout blocks resolved, in source order;
	// rolloutEdges names the rollout that made each edge it added, by
	// {from, to} (see rollout.go).
	rollouts     []*rollout
	rolloutEdges map[[2]string]string
	// rolloutOf is the rollout each host instance in one is in.
	rolloutOf map[string]*rollout
	// planHash and varsHash identify what runs, for the journal;
	// varHashes each variable's value.
	planHash, varsHash string
	varHashes          map[string]string
	// invalid: Compile found errors; see Valid.
	invalid bool
	// metaKeys are the instances of for_each and count values that are
	// plain references, by reference (see metaRef).
	metaKeys map[string]instanceList
	// rank orders the steps ready to start (see ranks).
	rankOnce sync.Once
	rank     map[string]int
}

// node is one instance of a step block, together with its kind.
type node struct {
	step *plans.Step
	kind steps.Step
	base *base
	// addr is the instance's address: kind.name, kind.name[0] or
	// kind.name["key"].
	addr string
	// key is the instance's count index or for_each key (cty.NilVal for a
	// block without either), each its for_each value.
	key, each cty.Value
	// uses maps each instance this one refers to (not mere depends_on) to
	// the output attributes it reads; "*" stands for the whole object.
	uses map[string]map[string]bool
	// reads says which instances of each block (by block address) its body
	// and rollback block read: what its evaluation context must hold.
	reads map[string]*readSet
	// unknown stands for its outputs before it has run.
	unknown cty.Value
	// instanceVars are its count or each variables (see instanceVars).
	instanceVars map[string]cty.Value
	// definition is the instance's definition hash (see definitionHash).
	definition string
	// host is the host instance its `on` names, nil for a step that
	// runs where rotplan runs; hostAt is that instance's address, set
	// even when its block had errors.
	host   *hostInstance
	hostAt string
}

// readsSensitive reports whether n reads a sensitive output of the step dep.
func (n *node) readsSensitive(dep *node) bool {
	attrs := n.uses[dep.addr]
	for name, out := range dep.kind.Outputs() {
		if out.Sensitive && (attrs[name] || attrs["*"]) {
			return true
		}
	}
	return false
}

// Compile evaluates the plan's variables (vars, from plans.ResolveVariables)
// and locals, builds the step graph and validates every step. Error
// diagnostics mean the plan must not run; nothing has been changed. The
// program is nil when the plan's structure is broken (a reference to
// nothing, a cycle); when only arguments are wrong it is returned, not
// Valid, for a preview or a graph.
func Compile(plan *plans.Plan, vars map[string]cty.Value, kinds steps.Registry) (*Program, hcl.Diagnostics) {
	p := &Program{
		plan:  plan,
		kinds: kinds,
		funcs: plans.Functions(plan.Dir),
		vars:  objectOf(vars),
		graph: dag.New(),
		bases: map[string]*base{},
		nodes: map[string]*node{},
	}
	p.planHash = plan.Hash
	p.varsHash = hashValue(p.vars)
	p.varHashes = make(map[string]string, len(vars))
	for name, v := range vars {
		p.varHashes[name] = hashValue(v)
	}
	var diags hcl.Diagnostics
	for _, s := range plan.Steps {
		kind, ok := kinds[s.Kind]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown step kind",
				Detail:   fmt.Sprintf("There is no step kind %q; the kinds are: %s.", s.Kind, strings.Join(kinds.Names(), ", ")),
				Subject:  s.DeclRange.Ptr(),
			})
			continue
		}
		b := &base{step: s, kind: kind, dec: newDecoder(kind.Spec(), s.Body), outputs: newOutputInfo(kind)}
		b.bodyDigest = bodyDigest(p.bodySource(s))
		p.bases[s.Addr()] = b
		p.baseOrder = append(p.baseOrder, b)
	}

	if diags.HasErrors() {
		return nil, diags
	}
	diags = append(diags, p.evalLocals()...)
	if diags.HasErrors() {
		return nil, diags
	}
	diags = append(diags, p.expand()...)
	if diags.HasErrors() {
		return nil, diags
	}
	diags = append(diags, p.connect()...)
	if diags.HasErrors() {
		return nil, diags
	}
	// Hosts are placed before the cycle check: a rollout's edges join
	// the steps for its hosts. Their errors alone leave the shape sound.
	placed := p.evalSettings()
	placed = append(placed, p.evalHosts()...)
	placed = append(placed, p.placeSteps()...)
	if more := p.connectRollouts(); more.HasErrors() {
		return nil, append(append(diags, placed...), more...)
	}
	for _, cycle := range p.graph.Cycles() {
		diags = append(diags, p.cycleDiagnostic(cycle))
	}
	if diags.HasErrors() {
		return nil, diags
	}
	for _, addr := range p.graph.Order() {
		p.order = append(p.order, p.nodes[addr])
	}
	diags = append(diags, placed...)
	diags = append(diags, p.validate()...)
	if diags.HasErrors() {
		// The plan's shape is sound (every reference resolves, no cycle),
		// so the program is returned for what needs only that: a preview
		// that reports every problem at once, a graph. It must not run.
		p.invalid = true
	}
	return p, diags
}

// Valid reports whether the program may run: Compile found no error. An
// invalid program (returned when only a settings block or step arguments
// are wrong) can be previewed and graphed, never applied or resumed.
func (p *Program) Valid() bool { return !p.invalid }

// Steps returns the step addresses in the order they will run.
func (p *Program) Steps() []string {
	out := make([]string, len(p.order))
	for i, n := range p.order {
		out[i] = n.addr
	}
	return out
}

// DependsOn returns the addresses of the steps a step waits for.
func (p *Program) DependsOn(addr string) []string { return p.graph.DependsOn(addr) }

// reference is what a traversal in a plan refers to.
type reference struct {
	root string // "var", "local" or a step kind
	name string // variable, local or step name
}

func (r reference) stepAddr() string { return r.root + "." + r.name }

// resolveRef checks that a traversal refers to something declared. Steps are
// allowed only when allowSteps is true (a step body, not a local).
func (p *Program) resolveRef(tr hcl.Traversal, allowSteps bool) (reference, *hcl.Diagnostic) {
	root := tr.RootName()
	bad := func(summary, detail string) (reference, *hcl.Diagnostic) {
		return reference{}, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: tr.SourceRange().Ptr()}
	}
	var name string
	if len(tr) > 1 {
		if attr, ok := tr[1].(hcl.TraverseAttr); ok {
			name = attr.Name
		}
	}
	_, isKind := p.kinds[root]
	switch {
	case root == "each" || root == "count":
		// Where they may be used is checked by checkInstanceRef.
		return reference{root: root, name: name}, nil
	case root == "var":
		if _, ok := p.plan.Variables[name]; !ok && name != "" {
			return bad("Reference to undeclared variable",
				fmt.Sprintf("There is no variable %q in this plan: declare it with a variable \"%s\" block.%s", name, name,
					didYouMean("var.", name, keys(p.plan.Variables))))
		}
	case root == "local":
		if _, ok := p.plan.Locals[name]; !ok && name != "" {
			return bad("Reference to undeclared local value",
				fmt.Sprintf("There is no local value %q in this plan's locals blocks.%s", name,
					didYouMean("local.", name, keys(p.plan.Locals))))
		}
	case isKind && !allowSteps:
		return bad("Invalid reference", fmt.Sprintf("Only var.* and local.* can be used here, not the step %s.%s.", root, name))
	case isKind:
		if name == "" {
			return bad("Invalid step reference", fmt.Sprintf("A step reference names the step: %s.NAME.OUTPUT.", root))
		}
		if _, ok := p.bases[root+"."+name]; !ok {
			return bad("Reference to undeclared step",
				fmt.Sprintf("There is no step %s.%s in this plan.%s", root, name, p.suggestStep(root, name)))
		}
	default:
		what := "var.*, local.*"
		if allowSteps {
			what += " or a step (" + strings.Join(p.kinds.Names(), ".NAME, ") + ".NAME)"
		}
		return bad("Unknown reference", fmt.Sprintf("%q is not something a plan can refer to: use %s.", root, what))
	}
	if name == "" {
		return bad("Invalid reference", fmt.Sprintf("Write %s.NAME.", root))
	}
	return reference{root: root, name: name}, nil
}

func (p *Program) suggestStep(kind, name string) string {
	var same, names []string
	for _, s := range p.plan.Steps {
		if s.Kind == kind {
			same = append(same, s.Addr())
			names = append(names, s.Name)
		}
	}
	if len(same) == 0 {
		return fmt.Sprintf(" The plan has no %s steps.", kind)
	}
	if hint := didYouMean(kind+".", name, names); hint != "" {
		return hint
	}
	return " Steps of that kind: " + strings.Join(same, ", ") + "."
}

// didYouMean suggests the candidate closest to a misspelt name, as hcl
// does for arguments and block types: " Did you mean var.dir?", or "" when
// none is close.
func didYouMean(prefix, name string, candidates []string) string {
	best := suggest.Closest(name, candidates)
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %s%s?", prefix, best)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// evalLocals evaluates locals in dependency order; they may refer to
// variables and to each other, not to steps.
func (p *Program) evalLocals() hcl.Diagnostics {
	var diags hcl.Diagnostics
	g := dag.New()
	names := make([]string, 0, len(p.plan.Locals))
	for name := range p.plan.Locals {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		return p.plan.Locals[names[i]].DeclRange.Start.Byte < p.plan.Locals[names[j]].DeclRange.Start.Byte
	})
	for _, name := range names {
		g.Add(name)
	}
	for _, name := range names {
		for _, tr := range p.plan.Locals[name].Expr.Variables() {
			ref, d := p.resolveRef(tr, false)
			if d != nil {
				diags = append(diags, d)
				continue
			}
			if ref.root == "local" {
				g.Connect(name, ref.name)
			}
		}
	}
	for _, cycle := range g.Cycles() {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cycle between local values",
			Detail:   "These local values refer to each other: local." + strings.Join(cycle, ", local.") + ".",
			Subject:  p.plan.Locals[cycle[0]].DeclRange.Ptr(),
		})
	}
	if diags.HasErrors() {
		return diags
	}
	values := map[string]cty.Value{}
	for _, name := range g.Order() {
		// Only the locals it refers to: every local before it would make
		// the locals cost the square of their number.
		refs := map[string]cty.Value{}
		for _, dep := range g.DependsOn(name) {
			refs[dep] = values[dep]
		}
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": p.vars, "local": objectOf(refs)},
			Functions: p.funcs,
		}
		expr := p.plan.Locals[name].Expr
		v, more := expr.Value(ctx)
		diags = append(diags, more...)
		if d := plans.CheckValueSize(v, "local."+name, expr.Range()); d != nil {
			// Locals that refer to it would only be larger.
			return append(diags, d)
		}
		values[name] = v
	}
	p.locals = objectOf(values)
	return diags
}

// connect adds the graph's edges, per instance: one for each instance its
// body refers to, and one for each depends_on entry.
func (p *Program) connect() hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, b := range p.baseOrder {
		s := b.step
		vars := bodyVariables(s, b.kind)
		var hookVars []hcl.Traversal
		var hookCandidates []indexCandidate
		if s.RollbackHook != nil {
			hookVars = hcldec.Variables(s.RollbackHook.Body, hookSpec)
			hookCandidates = p.indexCandidates(s.RollbackHook.Body)
		}
		candidates := p.indexCandidates(s.Body)
		said := map[string]bool{} // the same mistake in every instance is said once
		for _, n := range b.instances {
			add := func(d *hcl.Diagnostic) {
				if d == nil {
					return
				}
				if k := d.Subject.String() + d.Summary + d.Detail; !said[k] {
					said[k] = true
					diags = append(diags, d)
				}
			}
			p.connectVars(n, vars, p.indexedRefs(n, candidates), true, add)
			// A rollback block runs when the run goes back, so what it
			// refers to orders nothing going forward: it may name the step
			// itself, or steps after it.
			p.connectVars(n, hookVars, p.indexedRefs(n, hookCandidates), false, add)
			for i, tr := range s.DependsOn {
				ref, d := p.resolveRef(tr, true)
				if d != nil {
					add(d)
					continue
				}
				target := p.bases[ref.stepAddr()]
				keyExpr, ofInstance := s.DependsOnKeys[i]
				if len(tr) == 3 || ofInstance {
					key, subject, d := dependencyKey(n, tr, keyExpr)
					if d != nil {
						add(d)
						continue
					}
					ks, ok := keyString(key)
					dep := target.byKey[ks]
					if !ok || target.mode == single || dep == nil {
						add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared instance",
							Detail:  fmt.Sprintf("%s has no instance %s%s.%s", ref.stepAddr(), ref.stepAddr(), keyText(key), p.instanceHint(target)),
							Subject: subject.Ptr()})
						continue
					}
					p.graph.Connect(n.addr, dep.addr)
					continue
				}
				for _, dep := range target.instances {
					p.graph.Connect(n.addr, dep.addr)
				}
			}
		}
	}
	return diags
}

// dependencyKey is the key of the instance a depends_on entry of n names:
// the literal of kind.name[KEY], or keyExpr (each.key, count.index)
// evaluated for n; subject is where the entry is.
func dependencyKey(n *node, tr hcl.Traversal, keyExpr hcl.Expression) (key cty.Value, subject hcl.Range, d *hcl.Diagnostic) {
	if keyExpr == nil {
		return tr[2].(hcl.TraverseIndex).Key, tr.SourceRange(), nil
	}
	subject = hcl.RangeBetween(tr.SourceRange(), keyExpr.Range())
	val, diags := keyExpr.Value(&hcl.EvalContext{Variables: n.instanceVars})
	if diags.HasErrors() || !val.IsWhollyKnown() || val.IsNull() {
		detail := "The key of an instance in depends_on may be each.key or count.index, of a step with for_each or count."
		if more := diagsDetail(diags); more != "" {
			detail += " " + more
		}
		return cty.NilVal, subject, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid depends_on reference",
			Detail: detail, Subject: keyExpr.Range().Ptr()}
	}
	return val, subject, nil
}

// keyText writes an instance key as in an address: [0] or ["app"].
func keyText(key cty.Value) string {
	switch key.Type() {
	case cty.String:
		return fmt.Sprintf("[%q]", key.AsString())
	case cty.Number:
		return "[" + key.AsBigFloat().Text('f', -1) + "]"
	}
	return "[?]"
}

// diagsDetail is what diags say, in a line, or "" when they say nothing.
func diagsDetail(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		parts = append(parts, d.Summary+": "+d.Detail)
	}
	return strings.Join(parts, "; ")
}

// connectVars resolves the traversals of a body of instance n and, for
// those that name steps, connects n to them (edge: in the graph too, not
// only in what n reads).
func (p *Program) connectVars(n *node, vars []hcl.Traversal, indexed map[hcl.Pos]indexedRef, edge bool, add func(*hcl.Diagnostic)) {
	for _, tr := range vars {
		ref, d := p.resolveRef(tr, true)
		if d == nil {
			d = p.checkInstanceRef(n, ref, tr)
		}
		if d != nil {
			add(d)
			continue
		}
		if _, isKind := p.kinds[ref.root]; isKind {
			add(p.connectRef(n, ref, tr, indexed, edge))
		}
	}
}

// checkInstanceRef refuses each.* outside a step with for_each and
// count.* outside a step with count.
func (p *Program) checkInstanceRef(n *node, ref reference, tr hcl.Traversal) *hcl.Diagnostic {
	bad := func(detail string) *hcl.Diagnostic {
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid reference", Detail: detail, Subject: tr.SourceRange().Ptr()}
	}
	switch {
	case ref.root == "each" && (n.base.mode != keyed || (ref.name != "key" && ref.name != "value")):
		return bad("each.key and each.value can be used only in a step with for_each.")
	case ref.root == "count" && (n.base.mode != counted || ref.name != "index"):
		return bad("count.index can be used only in a step with count.")
	}
	return nil
}

func (p *Program) cycleDiagnostic(cycle []string) *hcl.Diagnostic {
	var where []string
	for _, addr := range cycle {
		where = append(where, fmt.Sprintf("  %s (declared at %s)", addr, location(p.nodes[addr].step.DeclRange)))
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Dependency cycle between steps: " + strings.Join(cycle, ", "),
		Detail: "These steps depend on each other through references or depends_on, so none of them can run first:\n" +
			strings.Join(where, "\n") + p.rolloutHint(cycle),
		Subject: p.nodes[cycle[0]].step.DeclRange.Ptr(),
	}
}

// evalSettings evaluates the plan's settings blocks (see steps.Setting),
// which may use variables and locals, with the schemas the kinds give, and
// has each check what it says by itself.
func (p *Program) evalSettings() hcl.Diagnostics {
	p.settings = p.kinds.Settings()
	p.settingValues = make(map[string]steps.Config, len(p.settings))
	var diags hcl.Diagnostics
	for _, typ := range keys(p.plan.Settings) {
		if _, ok := p.settings[typ]; !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unsupported block type",
				Detail:   fmt.Sprintf("No step kind uses a %s block.", typ),
				Subject:  p.plan.Settings[typ].DeclRange.Ptr(),
			})
		}
	}
	for _, typ := range keys(p.settings) {
		diags = append(diags, p.evalSetting(typ)...)
	}
	return diags
}

// evalSetting evaluates the settings block of one type.
func (p *Program) evalSetting(typ string) hcl.Diagnostics {
	block := p.plan.Settings[typ]
	if block == nil {
		p.settingValues[typ] = steps.NewConfig(cty.EmptyObjectVal)
		return nil
	}
	setting := p.settings[typ]
	spec := setting.Spec()
	var diags hcl.Diagnostics
	for _, tr := range hcldec.Variables(block.Body, spec) {
		if _, d := p.resolveRef(tr, false); d != nil {
			diags = append(diags, d)
		}
	}
	if diags.HasErrors() {
		return diags
	}
	val, more := hcldec.Decode(block.Body, spec, p.baseContext())
	diags = append(diags, more...)
	if more.HasErrors() {
		return diags
	}
	cfg := steps.NewConfig(val)
	p.settingValues[typ] = cfg
	if err := setting.Check(cfg); err != nil {
		diags = append(diags, p.settingsDiagnostics(typ, err)...)
	}
	return diags
}

// validate evaluates every step body with the outputs of all steps unknown,
// and lets each kind check what is known.
func (p *Program) validate() hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, d := range eachStep(p.order, p.validateStep) {
		diags = append(diags, d...)
	}
	return diags
}

// eachStep calls check for every node and returns what it found for each,
// in the nodes' order. Each step is checked on its own, so a large plan's
// are checked on every CPU.
func eachStep(nodes []*node, check func(*node) hcl.Diagnostics) []hcl.Diagnostics {
	found := make([]hcl.Diagnostics, len(nodes))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), len(nodes)/validateChunk+1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := int(next.Add(validateChunk)) - validateChunk
				if start >= len(nodes) {
					return
				}
				for i := start; i < min(start+validateChunk, len(nodes)); i++ {
					found[i] = check(nodes[i])
				}
			}
		}()
	}
	wg.Wait()
	return found
}

// validateChunk is how many steps a checking goroutine takes at a time.
const validateChunk = 64

// validateStep evaluates one step with the outputs of the steps before it
// unknown, records its definition hash, and has its kind check what is
// known.
func (p *Program) validateStep(n *node) hcl.Diagnostics {
	cfg, val, diags := p.decode(n, p.contextFor(n, nil))
	if diags.HasErrors() {
		return diags
	}
	where := n.addr
	if n.host != nil { // a step moved to another host, or its host elsewhere, is another step
		where += " on " + n.host.addr + " " + n.host.reach
	}
	n.definition = definitionHash(where, n.base.bodyDigest, val)
	err := n.kind.Validate(cfg)
	if err == steps.ErrUnknown { // fine so far; the rest is checked at apply time
		err = nil
	}
	diags = append(diags, p.stepDiagnostics(n, "Invalid step", err)...)
	return append(diags, p.validateHook(n)...)
}

// decode evaluates a step's body with the kind's schema. It returns the
// value too, marks and all, for hashing.
func (p *Program) decode(n *node, ctx *hcl.EvalContext) (steps.Config, cty.Value, hcl.Diagnostics) {
	val, diags := n.base.dec.decode(ctx)
	if d := plans.CheckValueSize(val, "The arguments of "+n.addr+" together", n.step.DeclRange); d != nil {
		return steps.NewConfig(cty.DynamicVal), cty.DynamicVal, append(diags, d)
	}
	return steps.NewConfig(val), val, diags
}

// unknownOutputs stands for a step's outputs before it has run: every
// attribute unknown, the sensitive ones already marked so that values
// computed from them are known to be sensitive.
func unknownOutputs(kind steps.Step) cty.Value {
	attrs := map[string]cty.Value{}
	for name, out := range kind.Outputs() {
		v := cty.UnknownVal(out.Type)
		if out.Sensitive {
			v = v.Mark(plans.SensitiveMark)
		}
		attrs[name] = v
	}
	return cty.ObjectVal(attrs)
}

func objectOf(m map[string]cty.Value) cty.Value {
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

// location formats where a range starts as "file:line:col".
func location(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
