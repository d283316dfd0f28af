package engine

import (
	"slices"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// decoder decodes the body of one block for each of its instances. The
// kind's spec, and the body's content under the schema the spec implies,
// are worked out once and shared: a for_each over 10,000 keys would
// otherwise build the same spec, and match the same body against it, 10,000
// times over, at compile time and again as each instance runs.
type decoder struct {
	spec hcldec.ObjectSpec
	body hcl.Body
}

func newDecoder(spec hcldec.ObjectSpec, body hcl.Body) *decoder {
	return &decoder{spec: spec, body: &contentBody{Body: body}}
}

// decode evaluates the body with ctx, as hcldec.Decode does.
func (d *decoder) decode(ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	return hcldec.Decode(d.body, d.spec, ctx)
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
