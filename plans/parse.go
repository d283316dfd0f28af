package plans

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Parser reads plan and variable files and keeps their sources, so that
// diagnostics can be printed with the lines they point at.
type Parser struct {
	p *hclparse.Parser
}

// NewParser returns a Parser with no files loaded.
func NewParser() *Parser { return &Parser{p: hclparse.NewParser()} }

// Files returns every file read so far, by name, for diagnostic printing.
func (p *Parser) Files() map[string]*hcl.File { return p.p.Files() }

// metaArguments are the arguments every step block takes whatever its kind.
var metaArguments = []hcl.AttributeSchema{{Name: "depends_on"}, {Name: "for_each"}, {Name: "count"}, {Name: "on"}}

// instanceArguments are the meta-arguments of a labelled settings block.
var instanceArguments = []hcl.AttributeSchema{{Name: "for_each"}, {Name: "count"}}

// metaBlocks are the blocks any step may have, whatever its kind.
var metaBlocks = []hcl.BlockHeaderSchema{{Type: "rollback"}}

// LoadPlan reads and decodes a plan file. kinds are the step kinds' block
// type names; any other block type is an error. The returned plan is nil only
// when the file could not be read or parsed at all.
func (p *Parser) LoadPlan(path string, kinds []string) (*Plan, hcl.Diagnostics) {
	file, diags := p.parseSource(path)
	if file == nil || diags.HasErrors() {
		return nil, diags
	}
	isKind := map[string]bool{}
	schema := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
	}}
	isSettings := map[string]bool{}
	for _, t := range settingsTypes {
		isSettings[t] = true
		schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: t})
	}
	schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: HostBlock, LabelNames: []string{"name"}},
		hcl.BlockHeaderSchema{Type: RolloutBlock, LabelNames: []string{"name"}})
	for _, k := range kinds {
		isKind[k] = true
		schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: k, LabelNames: []string{"name"}})
	}
	content, more := file.Body.Content(schema)
	for _, d := range more {
		if d.Summary == "Unsupported block type" {
			d.Detail += fmt.Sprintf(" A plan holds variable, locals, %s, %s and %s blocks, and steps of the kinds %s.",
				strings.Join(settingsTypes, ", "), HostBlock, RolloutBlock, strings.Join(kinds, ", "))
		}
	}
	diags = append(diags, more...)

	plan := &Plan{
		Path:      path,
		Dir:       filepath.Dir(path),
		Hash:      fmt.Sprintf("%x", sha256.Sum256(file.Bytes)),
		Source:    file.Bytes,
		Variables: map[string]*Variable{},
		Locals:    map[string]*Local{},
		Settings:  map[string]*SettingsBlock{},
		Hosts:     map[string]*SettingsBlock{},
	}
	steps := map[string]*Step{}
	rollouts := map[string]*Rollout{}
	for _, block := range content.Blocks {
		switch {
		case block.Type == "variable":
			v, more := decodeVariable(block, plan.Dir)
			diags = append(diags, more...)
			if v == nil {
				continue
			}
			if prev, dup := plan.Variables[v.Name]; dup {
				diags = append(diags, duplicate("variable", v.Name, v.DeclRange, prev.DeclRange))
				continue
			}
			plan.Variables[v.Name] = v
		case block.Type == "locals":
			attrs, more := block.Body.JustAttributes()
			diags = append(diags, more...)
			for name, attr := range attrs {
				if prev, dup := plan.Locals[name]; dup {
					diags = append(diags, duplicate("local value", name, attr.NameRange, prev.DeclRange))
					continue
				}
				plan.Locals[name] = &Local{Name: name, Expr: attr.Expr, DeclRange: attr.NameRange}
			}
		case isSettings[block.Type]:
			if prev := plan.Settings[block.Type]; prev != nil {
				diags = append(diags, duplicate(block.Type+" block", "", block.DefRange, prev.DeclRange))
				continue
			}
			plan.Settings[block.Type] = &SettingsBlock{Type: block.Type, Body: block.Body, DeclRange: block.DefRange}
		case block.Type == HostBlock:
			h, more := decodeHost(block)
			diags = append(diags, more...)
			if h == nil {
				continue
			}
			if prev, dup := plan.Hosts[h.Name]; dup {
				diags = append(diags, duplicate("host", h.Name, h.DeclRange, prev.DeclRange))
				continue
			}
			plan.Hosts[h.Name] = h
		case block.Type == RolloutBlock:
			r, more := decodeRollout(block)
			diags = append(diags, more...)
			if r == nil {
				continue
			}
			if prev, dup := rollouts[r.Name]; dup {
				diags = append(diags, duplicate("rollout", r.Name, r.DeclRange, prev.DeclRange))
				continue
			}
			rollouts[r.Name] = r
			plan.Rollouts = append(plan.Rollouts, r)
		case isKind[block.Type]:
			s, more := decodeStep(block, isKind)
			diags = append(diags, more...)
			if s == nil {
				continue
			}
			if prev, dup := steps[s.Addr()]; dup {
				diags = append(diags, duplicate("step", s.Addr(), s.DeclRange, prev.DeclRange))
				continue
			}
			steps[s.Addr()] = s
			plan.Steps = append(plan.Steps, s)
		}
	}
	for _, s := range plan.Steps {
		if d := checkOn(s, plan.Hosts); d != nil {
			diags = append(diags, d)
		}
	}
	for _, r := range plan.Rollouts {
		diags = append(diags, checkRolloutHosts(r, plan.Hosts)...)
	}
	return plan, diags
}

// decodeHost reads a `host "NAME" { ... }` block: its meta-arguments, and
// the rest of its body kept for the engine to evaluate with the schema
// the steps side gives.
func decodeHost(block *hcl.Block) (*SettingsBlock, hcl.Diagnostics) {
	h := &SettingsBlock{Type: HostBlock, Name: block.Labels[0], DeclRange: block.DefRange}
	if !hclsyntax.ValidIdentifier(h.Name) {
		return nil, hcl.Diagnostics{invalidName("host", h.Name, block.LabelRanges[0])}
	}
	content, remain, diags := block.Body.PartialContent(&hcl.BodySchema{Attributes: instanceArguments})
	h.Body = remain
	h.ForEach, h.Count, diags = instanceMeta(content, diags, "A host block")
	return h, diags
}

// instanceMeta reads the for_each and count meta-arguments of a block
// (what names the block in the error: "A step"), refusing both at once.
func instanceMeta(content *hcl.BodyContent, diags hcl.Diagnostics, what string) (forEach, count hcl.Expression, _ hcl.Diagnostics) {
	if attr, ok := content.Attributes["for_each"]; ok {
		forEach = attr.Expr
	}
	if attr, ok := content.Attributes["count"]; ok {
		count = attr.Expr
		if forEach != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid combination of count and for_each",
				Detail:   what + " may have count or for_each, not both.",
				Subject:  attr.NameRange.Ptr(),
			})
		}
	}
	return forEach, count, diags
}

// decodeOn reads a step's `on` meta-argument: host.NAME, host.NAME[KEY]
// or host.NAME[each.key].
func decodeOn(s *Step, attr *hcl.Attribute) hcl.Diagnostics {
	s.OnRange = attr.Expr.Range()
	isHost := map[string]bool{HostBlock: true}
	if tr, key, ok := instanceDependency(attr.Expr, isHost); ok {
		s.On, s.OnKey = tr, key
		return nil
	}
	tr, diags := hcl.AbsTraversalForExpr(attr.Expr)
	if diags.HasErrors() || len(tr) < 2 || len(tr) > 3 || tr.RootName() != HostBlock || !isIndex(tr[2:]) {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid on reference",
			Detail:   "on names the host a step is for: host.NAME, or host.NAME[KEY] for one instance of a host block with for_each or count (KEY may be each.key or count.index, for the instance of the same key as the step's).",
			Subject:  attr.Expr.Range().Ptr(),
		}}
	}
	if _, ok := tr[1].(hcl.TraverseAttr); !ok {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid on reference",
			Detail:   "Write a host reference as host.NAME, for example host.web.",
			Subject:  attr.Expr.Range().Ptr(),
		}}
	}
	s.On = tr
	return nil
}

// checkOn refuses a step whose `on` names a host block the plan lacks.
func checkOn(s *Step, hosts map[string]*SettingsBlock) *hcl.Diagnostic {
	if s.On == nil {
		return nil
	}
	return undeclaredHost(s.On[1].(hcl.TraverseAttr).Name, hosts, s.OnRange)
}

// undeclaredHost refuses a reference, at subject, to a host block the plan
// lacks; nil when it has it.
func undeclaredHost(name string, hosts map[string]*SettingsBlock, subject hcl.Range) *hcl.Diagnostic {
	if _, ok := hosts[name]; ok {
		return nil
	}
	detail := fmt.Sprintf("There is no host %q in this plan: declare it with a host \"%s\" block.", name, name)
	if len(hosts) > 0 {
		names := make([]string, 0, len(hosts))
		for n := range hosts {
			names = append(names, n)
		}
		sort.Strings(names)
		detail += " The hosts are: " + strings.Join(names, ", ") + "."
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared host", Detail: detail, Subject: subject.Ptr()}
}

func duplicate(what, name string, at, prev hcl.Range) *hcl.Diagnostic {
	if name != "" {
		name = fmt.Sprintf(" %q", name)
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Duplicate %s", what),
		Detail:   fmt.Sprintf("The %s%s was already declared at %s. Names must be unique.", what, name, prev),
		Subject:  at.Ptr(),
	}
}

func invalidName(what, name string, at hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Invalid %s name", what),
		Detail:   fmt.Sprintf("%q is not a valid name: use letters, digits, underscores and dashes, starting with a letter.", name),
		Subject:  at.Ptr(),
	}
}

func decodeVariable(block *hcl.Block, dir string) (*Variable, hcl.Diagnostics) {
	v := &Variable{Name: block.Labels[0], Type: cty.DynamicPseudoType, DeclRange: block.DefRange}
	if !hclsyntax.ValidIdentifier(v.Name) {
		return nil, hcl.Diagnostics{invalidName("variable", v.Name, block.LabelRanges[0])}
	}
	content, diags := block.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"},
	}})
	if attr, ok := content.Attributes["type"]; ok {
		ty, more := typeexpr.TypeConstraint(attr.Expr)
		diags = append(diags, more...)
		if !more.HasErrors() {
			v.Type = ty
		}
	}
	if attr, ok := content.Attributes["description"]; ok {
		diags = append(diags, decodeLiteral(attr, cty.String, func(val cty.Value) { v.Description = val.AsString() })...)
	}
	if attr, ok := content.Attributes["sensitive"]; ok {
		diags = append(diags, decodeLiteral(attr, cty.Bool, func(val cty.Value) { v.Sensitive = val.True() })...)
	}
	if attr, ok := content.Attributes["default"]; ok {
		// Defaults may call functions (env("VAULT_CACERT")) but not refer to
		// other values: they are known before anything is evaluated.
		val, more := attr.Expr.Value(&hcl.EvalContext{Functions: Functions(dir)})
		if d := CheckValueSize(val, fmt.Sprintf("The default of variable %q", v.Name), attr.Expr.Range()); d != nil && !more.HasErrors() {
			more = append(more, d)
		}
		diags = append(diags, more...)
		if !more.HasErrors() {
			conv, err := convert.Convert(val, v.Type)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid default value for variable",
					Detail:   fmt.Sprintf("The default for variable %q does not fit its type: %s.", v.Name, err),
					Subject:  attr.Expr.Range().Ptr(),
				})
			} else {
				v.Default = conv
			}
		}
	}
	return v, diags
}

// decodeLiteral evaluates an attribute that may hold only a constant.
func decodeLiteral(attr *hcl.Attribute, ty cty.Type, set func(cty.Value)) hcl.Diagnostics {
	val, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		return diags
	}
	conv, err := convert.Convert(val, ty)
	if err != nil || conv.IsNull() {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid %s", attr.Name),
			Detail:   fmt.Sprintf("%s must be a %s constant.", attr.Name, ty.FriendlyName()),
			Subject:  attr.Expr.Range().Ptr(),
		}}
	}
	set(conv)
	return nil
}

// isIndex reports whether rest is empty or one index step ([KEY]).
// instanceDependency reads a depends_on element kind.name[KEY] (or an on
// reference, host.NAME[KEY], with isKind holding "host") whose KEY
// is an expression of the step's own instance (each.key, count.index)
// rather than a literal: the step's traversal and the key expression.
func instanceDependency(expr hcl.Expression, isKind map[string]bool) (hcl.Traversal, hcl.Expression, bool) {
	ix, ok := expr.(*hclsyntax.IndexExpr)
	if !ok {
		return nil, nil, false
	}
	tr, diags := hcl.AbsTraversalForExpr(ix.Collection)
	if diags.HasErrors() || len(tr) != 2 || !isKind[tr.RootName()] {
		return nil, nil, false
	}
	if _, ok := tr[1].(hcl.TraverseAttr); !ok {
		return nil, nil, false
	}
	vars := ix.Key.Variables()
	if len(vars) == 0 {
		return nil, nil, false
	}
	for _, v := range vars {
		if root := v.RootName(); root != "each" && root != "count" {
			return nil, nil, false
		}
	}
	return tr, ix.Key, true
}

func isIndex(rest hcl.Traversal) bool {
	if len(rest) == 0 {
		return true
	}
	_, ok := rest[0].(hcl.TraverseIndex)
	return ok
}

func decodeStep(block *hcl.Block, isKind map[string]bool) (*Step, hcl.Diagnostics) {
	s := &Step{Kind: block.Type, Name: block.Labels[0], DeclRange: block.DefRange}
	if !hclsyntax.ValidIdentifier(s.Name) {
		return nil, hcl.Diagnostics{invalidName("step", s.Name, block.LabelRanges[0])}
	}
	content, remain, diags := block.Body.PartialContent(&hcl.BodySchema{Attributes: metaArguments, Blocks: metaBlocks})
	s.Body = remain
	for _, b := range content.Blocks {
		if s.RollbackHook != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate rollback block",
				Detail:   fmt.Sprintf("A step has at most one rollback block; %s has one at %s.", s.Addr(), s.RollbackHook.DeclRange),
				Subject:  b.DefRange.Ptr(),
			})
			continue
		}
		s.RollbackHook = &RollbackHook{Body: b.Body, DeclRange: b.DefRange}
	}
	s.ForEach, s.Count, diags = instanceMeta(content, diags, "A step")
	if attr, ok := content.Attributes["on"]; ok {
		diags = append(diags, decodeOn(s, attr)...)
	}
	if attr, ok := content.Attributes["depends_on"]; ok {
		exprs, more := hcl.ExprList(attr.Expr)
		diags = append(diags, more...)
		for _, expr := range exprs {
			if tr, key, ok := instanceDependency(expr, isKind); ok {
				if s.DependsOnKeys == nil {
					s.DependsOnKeys = map[int]hcl.Expression{}
				}
				s.DependsOnKeys[len(s.DependsOn)] = key
				s.DependsOn = append(s.DependsOn, tr)
				continue
			}
			tr, more := hcl.AbsTraversalForExpr(expr)
			if more.HasErrors() || len(tr) < 2 || len(tr) > 3 || !isKind[tr.RootName()] || !isIndex(tr[2:]) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid depends_on reference",
					Detail:   "Each depends_on element names a whole step, as kind.name (for example issue.admin) or kind.name[KEY] for one instance of a step with for_each or count (KEY may be each.key or count.index, for the instance of the same key), not one of its outputs.",
					Subject:  expr.Range().Ptr(),
				})
				continue
			}
			if _, ok := tr[1].(hcl.TraverseAttr); !ok {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid depends_on reference",
					Detail:   "Write a step reference as kind.name, for example issue.admin.",
					Subject:  expr.Range().Ptr(),
				})
				continue
			}
			s.DependsOn = append(s.DependsOn, tr)
		}
	}
	return s, diags
}
