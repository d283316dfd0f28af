package engine

import (
	"fmt"
	"math/big"
	"sort"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// How a step block stands for its instances.
const (
	single  = iota // one instance, addressed kind.name
	counted        // count: kind.name[0], kind.name[1], ...
	keyed          // for_each: kind.name["key"], ...
)

// base is one step block of the plan and the instances it stands for, as
// for_each or count expand it.
type base struct {
	step      *plans.Step
	kind      steps.Step
	mode      int
	instances []*node          // in key order
	byKey     map[string]*node // by keyString
	// bodyDigest hashes the tokens of the block's body, once for all its
	// instances (see definitionHash).
	bodyDigest []byte
	// dec decodes the body for each instance.
	dec *decoder
	// outputs describes the kind's outputs.
	outputs *outputInfo
}

// keyString is the form of an instance key used to look it up: the decimal
// index for count, the string for for_each.
func keyString(key cty.Value) (string, bool) {
	key, _ = key.Unmark()
	if key.IsNull() || !key.IsKnown() {
		return "", false
	}
	switch key.Type() {
	case cty.String:
		return key.AsString(), true
	case cty.Number:
		bf := key.AsBigFloat()
		if i, acc := bf.Int64(); bf.IsInt() && acc == big.Exact {
			return strconv.FormatInt(i, 10), true
		}
	}
	return "", false
}

// instanceAddr is an instance's address: kind.name, kind.name[0] or
// kind.name["key"].
func instanceAddr(s *plans.Step, mode int, key string) string {
	switch mode {
	case counted:
		return s.Addr() + "[" + key + "]"
	case keyed:
		return s.Addr() + "[" + strconv.Quote(key) + "]"
	}
	return s.Addr()
}

// expand evaluates every step block's count or for_each, which may use
// variables and locals only (they must be known before the run), and adds
// one node per instance.
func (p *Program) expand() hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, b := range p.baseOrder {
		s := b.step
		keys, values, more := p.instanceKeys(b)
		diags = append(diags, more...)
		if more.HasErrors() {
			continue
		}
		b.byKey = make(map[string]*node, len(keys))
		unknown := unknownOutputs(b.kind) // shared: values are immutable
		for i, key := range keys {
			ks, _ := keyString(key)
			n := &node{step: s, kind: b.kind, base: b, uses: map[string]map[string]bool{}, reads: map[string]*readSet{}}
			n.addr = instanceAddr(s, b.mode, ks)
			if b.mode != single {
				n.key = key
				n.each = values[i]
				n.instanceVars = instanceVars(b.mode, key, values[i])
			}
			n.unknown = unknown
			b.instances = append(b.instances, n)
			b.byKey[ks] = n
			p.nodes[n.addr] = n
			p.graph.Add(n.addr)
		}
	}
	return diags
}

// instanceKeys returns the keys of a block's instances and, for for_each,
// the value of each.
func (p *Program) instanceKeys(b *base) (keys, values []cty.Value, diags hcl.Diagnostics) {
	s := b.step
	b.mode, keys, values, diags = p.expandBlock(s.Addr(), "step", s.ForEach, s.Count)
	return keys, values, diags
}

// expandBlock evaluates the for_each or count of a block (addr names it,
// block says what it is: "step", "host") to how it stands for its
// instances, their keys and, for for_each, the value of each.
func (p *Program) expandBlock(addr, block string, forEach, count hcl.Expression) (mode int, keys, values []cty.Value, diags hcl.Diagnostics) {
	expr, what := count, "count"
	if forEach != nil {
		expr, what = forEach, "for_each"
	}
	if expr == nil {
		return single, []cty.Value{cty.NilVal}, []cty.Value{cty.NilVal}, nil
	}
	mode = counted
	if forEach != nil {
		mode = keyed
	}
	bad := func(detail string) (int, []cty.Value, []cty.Value, hcl.Diagnostics) {
		return mode, nil, nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid " + what + " argument", Detail: detail, Subject: expr.Range().Ptr()}}
	}
	for _, tr := range expr.Variables() {
		if _, d := p.resolveRef(tr, false); d != nil {
			d.Detail += " The " + what + " of a " + block + " must be known before the run, so it may use variables and locals only."
			return mode, nil, nil, hcl.Diagnostics{d}
		}
	}
	ref := what + " " + metaRef(expr)
	if l, ok := p.metaKeys[ref]; ok && metaRef(expr) != "" {
		return mode, l.keys, l.values, nil
	}
	val, diags := expr.Value(p.baseContext())
	if d := plans.CheckValueSize(val, "The "+what+" of "+addr, expr.Range()); d != nil && !diags.HasErrors() {
		diags = append(diags, d)
	}
	if diags.HasErrors() {
		return mode, nil, nil, diags
	}
	defer func() {
		if !diags.HasErrors() && metaRef(expr) != "" {
			if p.metaKeys == nil {
				p.metaKeys = map[string]instanceList{}
			}
			p.metaKeys[ref] = instanceList{keys, values}
		}
	}()
	switch {
	case val.IsNull():
		return bad("The value is null: give a number for count, or a map or a set of strings for for_each.")
	case !val.IsWhollyKnown():
		return bad("The value is not known before the run.")
	case val.IsMarked():
		return bad("The value is sensitive: instance keys show in addresses, the journal and the preview.")
	}
	if mode == counted {
		if val.Type() != cty.Number {
			return bad(fmt.Sprintf("count must be a whole number, not %s.", val.Type().FriendlyName()))
		}
		bf := val.AsBigFloat()
		n, acc := bf.Int64()
		if !bf.IsInt() || acc != big.Exact || n < 0 || n > maxInstances {
			return bad(fmt.Sprintf("count must be a whole number from 0 to %d.", maxInstances))
		}
		for i := range n {
			keys = append(keys, cty.NumberIntVal(i))
			values = append(values, cty.NilVal)
		}
		return mode, keys, values, nil
	}
	ty := val.Type()
	switch {
	case ty.IsSetType() && ty.ElementType() == cty.String:
		for it := val.ElementIterator(); it.Next(); {
			_, v := it.Element()
			keys, values = append(keys, v), append(values, v)
		}
	case ty.IsMapType() || ty.IsObjectType():
		for it := val.ElementIterator(); it.Next(); {
			k, v := it.Element()
			keys, values = append(keys, k), append(values, v)
		}
	default:
		return bad(fmt.Sprintf("for_each must be a map, or a set of strings (toset([...])), not %s.", ty.FriendlyName()))
	}
	if len(keys) > maxInstances {
		return bad(fmt.Sprintf("for_each has %d elements; at most %d are allowed.", len(keys), maxInstances))
	}
	return mode, keys, values, nil
}

// metaRef names a count or for_each expression that is a plain reference
// (local.apps): blocks that expand over the same one share its instances'
// keys, since sorting a large set once per block would cost more than the
// rest of the expansion. "" for any other expression.
func metaRef(expr hcl.Expression) string {
	st, ok := expr.(*hclsyntax.ScopeTraversalExpr)
	if !ok {
		return ""
	}
	key := st.Traversal.RootName()
	for _, step := range st.Traversal[1:] {
		a, ok := step.(hcl.TraverseAttr)
		if !ok {
			return ""
		}
		key += "." + a.Name
	}
	return key
}

// instanceList is what a for_each or count value expands to.
type instanceList struct {
	keys, values []cty.Value
}

// maxInstances bounds how many instances one block may stand for: far more
// than a rotation has, and few enough that a typo (count = 1e9) is caught.
const maxInstances = 100000

// readSet is which instances of a block a step reads: all, or the keys.
type readSet struct {
	all  bool
	keys map[string]bool
}

func (r *readSet) add(key string) {
	if r.keys == nil {
		r.keys = map[string]bool{}
	}
	r.keys[key] = true
}

// indexedRef is a reference such as issue.leaf[each.key].private_key whose
// index the instance alone decides: key is what it evaluates to, attr the
// output read ("*": the whole object).
type indexedRef struct {
	key, attr string
}

// indexCandidate is, in a step block's body, a reference to a step block
// indexed by an expression that may be decided before the run, as in
// issue.leaf[each.key].private_key.
type indexCandidate struct {
	at      hcl.Pos // where the reference to the block starts
	keyExpr hclsyntax.Expression
	attr    string // the output read, "*" for the whole object
}

// indexCandidates finds the candidates of a body once per block: walking
// the syntax tree for each of thousands of instances is what would cost.
func (p *Program) indexCandidates(body hcl.Body) []indexCandidate {
	syn, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var out []indexCandidate
	attrs := map[hcl.Pos]string{}
	_ = hclsyntax.VisitAll(syn, func(node hclsyntax.Node) hcl.Diagnostics {
		switch e := node.(type) {
		case *hclsyntax.RelativeTraversalExpr:
			// Visited before its source, the index expression.
			if ie, ok := e.Source.(*hclsyntax.IndexExpr); ok && len(e.Traversal) > 0 {
				if st, ok := ie.Collection.(*hclsyntax.ScopeTraversalExpr); ok {
					if a, ok := e.Traversal[0].(hcl.TraverseAttr); ok {
						attrs[st.SrcRange.Start] = a.Name
					}
				}
			}
		case *hclsyntax.IndexExpr:
			st, ok := e.Collection.(*hclsyntax.ScopeTraversalExpr)
			if !ok || len(st.Traversal) != 2 {
				return nil
			}
			if _, isKind := p.kinds[st.Traversal.RootName()]; !isKind {
				return nil
			}
			for _, tr := range e.Key.Variables() {
				switch tr.RootName() {
				case "var", "local", "each", "count":
				default:
					return nil // decided by a step's output: not known before the run
				}
			}
			attr := attrs[st.SrcRange.Start]
			if attr == "" {
				attr = "*"
			}
			out = append(out, indexCandidate{at: st.SrcRange.Start, keyExpr: e.Key, attr: attr})
		}
		return nil
	})
	return out
}

// indexedRefs evaluates a block's candidates for one instance: the
// references to a step block whose index the instance's each, count,
// variables and locals decide, by where the reference to the block starts.
// Those depend on one instance; any other reference to a block with
// instances depends on all of them.
func (p *Program) indexedRefs(n *node, candidates []indexCandidate) map[hcl.Pos]indexedRef {
	if len(candidates) == 0 {
		return nil
	}
	out := make(map[hcl.Pos]indexedRef, len(candidates))
	ctx := p.instanceContext(n)
	for _, c := range candidates {
		key, diags := c.keyExpr.Value(ctx)
		if ks, ok := keyString(key); ok && !diags.HasErrors() {
			out[c.at] = indexedRef{key: ks, attr: c.attr}
		}
	}
	return out
}

// connectRef adds the dependency of instance n on what the traversal tr
// names (a step reference of the body: edge is true; of a rollback block:
// it only needs the value) and notes which outputs it reads.
func (p *Program) connectRef(n *node, ref reference, tr hcl.Traversal, indexed map[hcl.Pos]indexedRef, edge bool) *hcl.Diagnostic {
	b := p.bases[ref.stepAddr()]
	rs := n.reads[ref.stepAddr()]
	if rs == nil {
		rs = &readSet{}
		n.reads[ref.stepAddr()] = rs
	}
	use := func(dep *node, attr string) {
		if !edge {
			return
		}
		p.graph.Connect(n.addr, dep.addr)
		if n.uses[dep.addr] == nil {
			n.uses[dep.addr] = map[string]bool{}
		}
		n.uses[dep.addr][attr] = true
	}
	attrAt := func(i int) string {
		if len(tr) > i {
			if a, ok := tr[i].(hcl.TraverseAttr); ok {
				return a.Name
			}
		}
		return "*"
	}
	if b.mode == single {
		rs.add("")
		use(b.instances[0], attrAt(2))
		return nil
	}
	key, attr, precise := "", "", false
	if len(tr) > 2 {
		if ix, ok := tr[2].(hcl.TraverseIndex); ok {
			key, precise = keyString(ix.Key)
			attr = attrAt(3)
			if !precise {
				return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid instance key",
					Detail: fmt.Sprintf("%s is indexed by a step's count (a number) or for_each (a string) key.", ref.stepAddr()), Subject: tr.SourceRange().Ptr()}
			}
		}
	} else if ir, ok := indexed[tr.SourceRange().Start]; ok {
		key, attr, precise = ir.key, ir.attr, true
	}
	if !precise {
		rs.all = true
		for _, dep := range b.instances {
			use(dep, "*")
		}
		return nil
	}
	dep, ok := b.byKey[key]
	if !ok {
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared instance",
			Detail:  fmt.Sprintf("%s has no instance %s.%s", ref.stepAddr(), instanceAddr(b.step, b.mode, key), p.instanceHint(b)),
			Subject: tr.SourceRange().Ptr()}
	}
	rs.add(key)
	use(dep, attr)
	return nil
}

// instanceHint lists a few of a block's instance keys for an error.
func (p *Program) instanceHint(b *base) string {
	if len(b.instances) == 0 {
		return " It has no instances."
	}
	var keys []string
	for _, n := range b.instances {
		if len(keys) == 5 {
			keys = append(keys, "...")
			break
		}
		keys = append(keys, n.addr)
	}
	return fmt.Sprintf(" Its instances: %v.", keys)
}

// baseContext evaluates what may use variables and locals only.
func (p *Program) baseContext() *hcl.EvalContext {
	return &hcl.EvalContext{Variables: map[string]cty.Value{"var": p.vars, "local": p.locals}, Functions: p.funcs}
}

// instanceContext is baseContext with the instance's each or count.
func (p *Program) instanceContext(n *node) *hcl.EvalContext {
	ctx := p.baseContext()
	p.addInstanceVars(n, ctx.Variables)
	return ctx
}

func (p *Program) addInstanceVars(n *node, vars map[string]cty.Value) {
	for name, v := range n.instanceVars {
		vars[name] = v
	}
}

// instanceVars are the variables an instance of a block in mode has of its
// own: count.index, or each.key and each.value.
func instanceVars(mode int, key, each cty.Value) map[string]cty.Value {
	switch mode {
	case counted:
		return map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": key})}
	case keyed:
		return map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": key, "value": each})}
	}
	return nil
}

// contextFor builds the context an instance's body is evaluated in:
// variables, locals, its each or count, and the outputs of the steps it
// reads, from outputs (by instance address) where there, unknown where
// not. Only what the instance reads is built, so that a plan of many steps
// is not evaluated in time quadratic in their number.
func (p *Program) contextFor(n *node, outputs map[string]cty.Value) *hcl.EvalContext {
	vars := map[string]cty.Value{"var": p.vars, "local": p.locals}
	p.addInstanceVars(n, vars)
	byKind := map[string]map[string]cty.Value{}
	for addr, rs := range n.reads {
		b := p.bases[addr]
		if byKind[b.step.Kind] == nil {
			byKind[b.step.Kind] = map[string]cty.Value{}
		}
		byKind[b.step.Kind][b.step.Name] = b.value(rs, outputs)
	}
	for kind, named := range byKind {
		vars[kind] = cty.ObjectVal(named)
	}
	return &hcl.EvalContext{Variables: vars, Functions: p.funcs}
}

// value is what a reference to the block evaluates to: the outputs of its
// one instance; a tuple of its instances' outputs (count); an object of
// them by key (for_each), holding only the instances rs reads.
func (b *base) value(rs *readSet, outputs map[string]cty.Value) cty.Value {
	out := func(n *node) cty.Value {
		if v, ok := outputs[n.addr]; ok {
			return v
		}
		return n.unknown
	}
	switch b.mode {
	case single:
		return out(b.instances[0])
	case counted:
		if len(b.instances) == 0 {
			return cty.EmptyTupleVal
		}
		elems := make([]cty.Value, len(b.instances))
		for i, n := range b.instances {
			if rs.all || rs.keys[strconv.Itoa(i)] {
				elems[i] = out(n)
			} else {
				elems[i] = n.unknown
			}
		}
		return cty.TupleVal(elems)
	}
	attrs := map[string]cty.Value{}
	if rs.all {
		for _, n := range b.instances {
			ks, _ := keyString(n.key)
			attrs[ks] = out(n)
		}
	} else {
		keys := make([]string, 0, len(rs.keys))
		for k := range rs.keys {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			attrs[k] = out(b.byKey[k])
		}
	}
	return cty.ObjectVal(attrs)
}

// bodyVariables are the traversals of a step body with the kind's schema.
func bodyVariables(s *plans.Step, kind steps.Step) []hcl.Traversal {
	return hcldec.Variables(s.Body, kind.Spec())
}
