package engine

import (
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// TestDecoderSharesContent: one decoder serves every instance of a block,
// each with its own values, nested blocks included, and reports a mistake
// in the body to each of them.
func TestDecoderSharesContent(t *testing.T) {
	src := `
path = "/etc/${each.key}.crt"
extra = 1
key_pair {
  key_file = "/etc/${each.key}.key"
}
`
	f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	spec := hcldec.ObjectSpec{
		"path": &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
		"key_pair": &hcldec.BlockSpec{TypeName: "key_pair", Nested: hcldec.ObjectSpec{
			"key_file": &hcldec.AttrSpec{Name: "key_file", Type: cty.String, Required: true},
		}},
	}
	d := newDecoder(spec, f.Body)
	for _, key := range []string{"app1", "app2", "app1"} {
		ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
			"each": cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(key)}),
		}}
		val, diags := d.decode(ctx)
		if len(diags) != 1 || diags[0].Summary != "Unsupported argument" || diags[0].Subject.Start.Line != 3 {
			t.Errorf("%s: diagnostics %v, want the unsupported argument on line 3", key, diags)
		}
		if got := val.GetAttr("path").AsString(); got != "/etc/"+key+".crt" {
			t.Errorf("%s: path %q", key, got)
		}
		if got := val.GetAttr("key_pair").GetAttr("key_file").AsString(); got != "/etc/"+key+".key" {
			t.Errorf("%s: key_file %q", key, got)
		}
	}
	// Another schema is not answered from the shared content.
	other, diags := d.body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "extra"}}})
	if _, ok := other.Attributes["extra"]; !ok || len(other.Attributes) != 1 {
		t.Errorf("content for another schema: %v, %v", other.Attributes, diags)
	}
}

// TestObjectPlanAsHcldec: for every step kind rotplan has, and bodies right
// and wrong, objectPlan decodes to what hcldec.Decode does, with the same
// diagnostics.
func TestObjectPlanAsHcldec(t *testing.T) {
	bodies := []string{
		``,
		`path = "/x/y"
mode = "0600"
content = "c"`,
		`path = 7
mode = ["no"]
unknown_arg = 1`,
		`mount = "pki" 
role = "r"
common_name = "a.b"
alt_names = ["x", "y"]
ttl = "1h"`,
		`key_pair {
  cert_file = "/a"
  key_file = "/b"
}`,
		`key_pair {
  cert_file = "/a"
}
key_pair {
  key_file = "/b"
}`,
		`key_pair {
  cert_file = 1
  nonsense = true
}
tls {
  address = "127.0.0.1:1"
}`,
		`command = ["/bin/true"]
timeout = "x"
pid_file = var.nothing`,
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.EmptyObjectVal}}
	for name, kind := range steps.Default() {
		spec := kind.Spec()
		plan := planObject(spec)
		if plan == nil {
			t.Errorf("%s: its spec is not planned (hcldec decodes it); fine, but then this test checks nothing for it", name)
			continue
		}
		for i, src := range bodies {
			f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			want, wantDiags := hcldec.Decode(f.Body, spec, ctx)
			got, gotDiags := plan.decode(&contentBody{Body: f.Body}, ctx)
			if !got.RawEquals(want) {
				t.Errorf("%s, body %d: got %#v, hcldec %#v", name, i, got, want)
			}
			if g, w := diagSet(gotDiags), diagSet(wantDiags); !slices.Equal(g, w) {
				t.Errorf("%s, body %d: diagnostics\n got %q\nwant %q", name, i, g, w)
			}
		}
	}
}

func diagSet(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		out = append(out, d.Error())
	}
	slices.Sort(out)
	return out
}
