package engine

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/customdecode"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// decoder decodes the body of one block for each of its instances. The
// kind's spec, and the body's content under the schema the spec implies,
// are worked out once and shared: a for_each over 10,000 keys would
// otherwise build the same spec, and match the same body against it, 10,000
// times over, at compile time and again as each instance runs.
type decoder struct {
	spec hcldec.ObjectSpec
	body hcl.Body
	// object decodes the spec as hcldec would, nil when the spec holds
	// something it does not know (see planObject).
	object *objectPlan
}

func newDecoder(spec hcldec.ObjectSpec, body hcl.Body) *decoder {
	return &decoder{spec: spec, body: &contentBody{Body: body}, object: planObject(spec)}
}

// decode evaluates the body with ctx, as hcldec.Decode does.
func (d *decoder) decode(ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	if d.object == nil {
		return hcldec.Decode(d.body, d.spec, ctx)
	}
	return d.object.decode(d.body, ctx)
}

// objectPlan decodes an ObjectSpec of AttrSpecs and BlockSpecs (of the
// same), which is what step kinds declare, exactly as hcldec.Decode does,
// but with the schema, the types and the null values of absent arguments
// worked out once rather than for every instance and every run of a step.
type objectPlan struct {
	schema *hcl.BodySchema
	attrs  []attrPlan  // by key
	blocks []blockPlan // by key
}

type attrPlan struct {
	key  string
	spec *hcldec.AttrSpec
	null cty.Value // its value when absent
}

type blockPlan struct {
	key    string
	spec   *hcldec.BlockSpec
	nested *objectPlan
	null   cty.Value // its value when absent
}

// planObject returns the plan for spec, or nil when spec holds a kind of
// spec, or a type with a custom decoder, that objectPlan does not
// reproduce: then hcldec decodes it.
func planObject(spec hcldec.ObjectSpec) *objectPlan {
	p := &objectPlan{schema: hcldec.ImpliedSchema(spec)}
	for _, key := range slices.Sorted(maps.Keys(spec)) {
		switch s := spec[key].(type) {
		case *hcldec.AttrSpec:
			if customdecode.CustomExpressionDecoderForType(s.Type) != nil {
				return nil
			}
			p.attrs = append(p.attrs, attrPlan{key: key, spec: s, null: cty.NullVal(s.Type.WithoutOptionalAttributesDeep())})
		case *hcldec.BlockSpec:
			nestedSpec, ok := s.Nested.(hcldec.ObjectSpec)
			if !ok {
				return nil
			}
			nested := planObject(nestedSpec)
			if nested == nil {
				return nil
			}
			p.blocks = append(p.blocks, blockPlan{key: key, spec: s, nested: nested,
				null: cty.NullVal(hcldec.ImpliedType(nestedSpec).WithoutOptionalAttributesDeep())})
		default:
			return nil
		}
	}
	return p
}

// decode is hcldec.Decode(body, spec, ctx) for the spec p was made from.
func (p *objectPlan) decode(body hcl.Body, ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	content, diags := body.Content(p.schema)
	if content == nil { // hcl's bodies never do this; hcldec would panic
		content = &hcl.BodyContent{MissingItemRange: body.MissingItemRange()}
	}
	vals := make(map[string]cty.Value, len(p.attrs)+len(p.blocks))
	for _, a := range p.attrs {
		attr, ok := content.Attributes[a.spec.Name]
		if !ok {
			// Content reported it if it is required.
			vals[a.key] = a.null
			continue
		}
		val, more := attr.Expr.Value(ctx)
		diags = append(diags, more...)
		conv, err := convert.Convert(val, a.spec.Type)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity:    hcl.DiagError,
				Summary:     "Incorrect attribute value type",
				Detail:      fmt.Sprintf("Inappropriate value for attribute %q: %s.", a.spec.Name, err.Error()),
				Subject:     attr.Expr.Range().Ptr(),
				Context:     hcl.RangeBetween(attr.NameRange, attr.Expr.Range()).Ptr(),
				Expression:  attr.Expr,
				EvalContext: ctx,
			})
			conv = cty.UnknownVal(a.spec.Type.WithoutOptionalAttributesDeep())
		}
		vals[a.key] = conv
	}
	for _, b := range p.blocks {
		var child *hcl.Block
		for _, candidate := range content.Blocks {
			if candidate.Type != b.spec.TypeName {
				continue
			}
			if child != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("Duplicate %s block", b.spec.TypeName),
					Detail: fmt.Sprintf("Only one block of type %q is allowed. Previous definition was at %s.",
						b.spec.TypeName, child.DefRange.String()),
					Subject: candidate.DefRange.Ptr(),
				})
				break
			}
			child = candidate
		}
		if child == nil {
			if b.spec.Required {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("Missing %s block", b.spec.TypeName),
					Detail:   fmt.Sprintf("A block of type %q is required here.", b.spec.TypeName),
					Subject:  content.MissingItemRange.Ptr(),
				})
			}
			vals[b.key] = b.null
			continue
		}
		val, more := b.nested.decode(child.Body, ctx)
		diags = append(diags, more...)
		vals[b.key] = val
	}
	return cty.ObjectVal(vals), diags
}

// contentBody is a body whose Content is asked for again and again with
// one schema (the one the block's spec implies): it is matched once, and the
// content, its nested blocks' bodies likewise wrapped, is shared by every
// caller (hcldec only reads it). A call with another schema is passed on.
// Safe for concurrent use.
type contentBody struct {
	hcl.Body
	once    sync.Once
	schema  *hcl.BodySchema
	content *hcl.BodyContent
	diags   hcl.Diagnostics
}

// Content implements hcl.Body.
func (b *contentBody) Content(schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	b.once.Do(func() {
		b.schema = schema
		b.content, b.diags = b.Body.Content(schema)
		if b.content == nil {
			return
		}
		blocks := make(hcl.Blocks, len(b.content.Blocks))
		for i, blk := range b.content.Blocks {
			c := *blk
			c.Body = &contentBody{Body: blk.Body}
			blocks[i] = &c
		}
		b.content.Blocks = blocks
	})
	if !sameSchema(b.schema, schema) {
		return b.Body.Content(schema)
	}
	return b.content, b.diags
}

// sameSchema reports whether two schemas ask for the same attributes and
// blocks, in whatever order (hcldec builds its schemas from maps).
func sameSchema(a, b *hcl.BodySchema) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil || len(a.Attributes) != len(b.Attributes) || len(a.Blocks) != len(b.Blocks) {
		return false
	}
	for _, x := range a.Attributes {
		found := false
		for _, y := range b.Attributes {
			if x == y {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, x := range a.Blocks {
		found := false
		for _, y := range b.Blocks {
			if x.Type == y.Type && slices.Equal(x.LabelNames, y.LabelNames) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
