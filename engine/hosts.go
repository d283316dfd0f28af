package engine

import (
	"fmt"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// What a step's `on` names: an instance of a labelled settings block (a
// host), evaluated here with the schema the kinds give and handed to the
// step's kind in its Env (steps.Env.On), never looked into. The engine
// knows a host's address in the plan and nothing else of it.

// hostBlock is one `host "NAME"` block and its instances.
type hostBlock struct {
	block *plans.SettingsBlock
	mode  int
	// byKey holds the instances that evaluated without error by
	// keyString (the key "" for a block without for_each or count);
	// declared and keys (in key order, for messages) every key.
	byKey    map[string]*hostInstance
	declared map[string]bool
	keys     []string
}

// hostInstance is one evaluated host: its address in the plan
// (host.web["a"]) and its block evaluated for it; reach hashes that value
// (where the host is and how it is reached: address, port, user), for the
// definition hash of the steps on it.
type hostInstance struct {
	addr  string
	cfg   steps.Config
	reach string
}

// hostAddr is a host instance's address, as instanceAddr is a step's.
func hostAddr(name string, mode int, key string) string {
	addr := plans.HostBlock + "." + name
	switch mode {
	case counted:
		return addr + "[" + key + "]"
	case keyed:
		return addr + "[" + strconv.Quote(key) + "]"
	}
	return addr
}

// named returns the Env of the step n: named after it, and on its host.
func (x *execution) named(n *node) *steps.Env { return placed(x.env.Named(n.addr), n) }

// placed returns env for the step n: on the host its `on` names, if any.
func placed(env *steps.Env, n *node) *steps.Env {
	if n.host == nil {
		return env
	}
	return env.On(n.host.addr, n.host.cfg)
}

// disconnect closes the connections to hosts the run made, at its end.
func (x *execution) disconnect() {
	if err := x.env.Disconnect(); err != nil && x.opts.Log != nil {
		x.opts.Log.Warn("closing the connections to hosts", "error", err)
	}
}

// evalHosts expands and evaluates the plan's host blocks, which may use
// variables, locals and their own each or count, with the schema the
// kinds give, and has the kinds Check each instance.
func (p *Program) evalHosts() hcl.Diagnostics {
	var diags hcl.Diagnostics
	p.hosts = map[string]*hostBlock{}
	setting, ok := p.settings[plans.HostBlock]
	for _, name := range keys(p.plan.Hosts) {
		block := p.plan.Hosts[name]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unsupported block type",
				Detail:   fmt.Sprintf("No step kind uses a %s block.", plans.HostBlock),
				Subject:  block.DeclRange.Ptr(),
			})
			continue
		}
		h, more := p.evalHost(block, setting)
		diags = append(diags, more...)
		if h != nil {
			p.hosts[name] = h
		}
	}
	return diags
}

// evalHost evaluates every instance of one host block.
func (p *Program) evalHost(block *plans.SettingsBlock, setting steps.Setting) (*hostBlock, hcl.Diagnostics) {
	addr := plans.HostBlock + "." + block.Name
	mode, keyVals, values, diags := p.expandBlock(addr, "host", block.ForEach, block.Count)
	if diags.HasErrors() {
		return nil, diags
	}
	spec := setting.Spec()
	for _, tr := range hcldec.Variables(block.Body, spec) {
		ref, d := p.resolveRef(tr, false)
		if d == nil && (ref.root == "each" && mode != keyed || ref.root == "count" && mode != counted) {
			d = &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid reference",
				Detail:  "each.key and each.value can be used only in a block with for_each, count.index in one with count.",
				Subject: tr.SourceRange().Ptr()}
		}
		if d != nil {
			diags = append(diags, d)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	h := &hostBlock{block: block, mode: mode, byKey: make(map[string]*hostInstance, len(keyVals)), declared: map[string]bool{}}
	said := map[string]bool{} // the same mistake in every instance is said once
	for i, key := range keyVals {
		ks, _ := keyString(key)
		h.declared[ks] = true
		h.keys = append(h.keys, ks)
		ctx := p.baseContext()
		for name, v := range instanceVars(mode, key, values[i]) {
			ctx.Variables[name] = v
		}
		val, more := hcldec.Decode(block.Body, spec, ctx)
		for _, d := range more {
			if k := d.Subject.String() + d.Summary + d.Detail; !said[k] {
				said[k] = true
				diags = append(diags, d)
			}
		}
		if more.HasErrors() {
			continue
		}
		inst := &hostInstance{addr: hostAddr(block.Name, mode, ks), cfg: steps.NewConfig(val), reach: hashValue(val)}
		if err := setting.Check(inst.cfg); err != nil {
			d := blockDiagnostic(block, setting.Summary(), err)
			d.Detail = inst.addr + ": " + d.Detail
			diags = append(diags, d)
			continue
		}
		h.byKey[ks] = inst
	}
	return h, diags
}

// placeSteps finds the host instance each step with `on` is for, and
// refuses `on` for a kind that cannot run on a host.
func (p *Program) placeSteps() hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, b := range p.baseOrder {
		s := b.step
		if s.On == nil {
			continue
		}
		if _, ok := b.kind.(steps.HostRunner); !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError,
				Summary: fmt.Sprintf("%s cannot run on a host", s.Kind),
				Detail:  fmt.Sprintf("A %s step runs where rotplan runs: remove on from %s.", s.Kind, s.Addr()),
				Subject: s.OnRange.Ptr()})
			continue
		}
		h := p.hosts[s.On[1].(hcl.TraverseAttr).Name]
		if h == nil { // its block has errors, said already
			continue
		}
		said := map[string]bool{}
		for _, n := range b.instances {
			inst, addr, d := h.instanceFor(n)
			switch {
			case d != nil && !said[d.Detail]:
				said[d.Detail] = true
				diags = append(diags, d)
			case d == nil:
				n.host, n.hostAt = inst, addr
			}
		}
	}
	return diags
}

// instanceFor is the host instance n's `on` names, and its address: the
// whole block when it has no for_each or count, the literal key of
// host.NAME[KEY], or the key of host.NAME[each.key] evaluated for n. A nil
// instance with no diagnostic means the instance's block had errors, said
// already.
func (h *hostBlock) instanceFor(n *node) (*hostInstance, string, *hcl.Diagnostic) {
	s := n.step
	name := plans.HostBlock + "." + h.block.Name
	key := ""
	if len(s.On) == 2 && s.OnKey == nil {
		if h.mode != single {
			return nil, "", &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid on reference",
				Detail:  fmt.Sprintf("%s has for_each or count: name one of its instances, as %s[KEY] or %s[each.key].", name, name, name),
				Subject: s.OnRange.Ptr()}
		}
	} else {
		val, _, d := dependencyKey(n, s.On, s.OnKey)
		if d != nil {
			d.Summary = "Invalid on reference"
			d.Detail = "The key of a host instance in on may be a literal, each.key or count.index."
			return nil, "", d
		}
		ks, d := h.instanceKey(val, s.OnRange)
		if d != nil {
			return nil, "", d
		}
		key = ks
	}
	return h.byKey[key], hostAddr(h.block.Name, h.mode, key), nil
}

// instanceKey is the key of the instance of h that key names, as a
// reference at subject does, or why there is none.
func (h *hostBlock) instanceKey(key cty.Value, subject hcl.Range) (string, *hcl.Diagnostic) {
	name := plans.HostBlock + "." + h.block.Name
	ks, ok := keyString(key)
	if ok && h.mode != single && h.declared[ks] {
		return ks, nil
	}
	detail := fmt.Sprintf("%s has no instance %s%s.", name, name, keyText(key))
	if h.mode == single {
		detail += " It has no for_each or count: write " + name + "."
	} else {
		detail += fmt.Sprintf(" Its keys: %q.", h.keys)
	}
	return "", &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared host instance",
		Detail: detail, Subject: subject.Ptr()}
}
