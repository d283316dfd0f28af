package plans

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

func evalWith(t *testing.T, dir, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return expr.Value(&hcl.EvalContext{Functions: Functions(dir)})
}

func TestFunctions(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ROTPLAN_FUNC_TEST", "set")
	t.Setenv("ROTPLAN_FUNC_TEST_EMPTY", "")
	tests := []struct {
		src  string
		want cty.Value
	}{
		{`file("ca.pem")`, cty.StringVal("PEM\n")},
		{`trimspace(file("ca.pem"))`, cty.StringVal("PEM")},
		{`fileexists("ca.pem")`, cty.True},
		{`fileexists("nope.pem")`, cty.False},
		{`env("ROTPLAN_FUNC_TEST")`, cty.StringVal("set")},
		{`env("ROTPLAN_FUNC_TEST_UNSET")`, cty.StringVal("")},
		{`env("ROTPLAN_FUNC_TEST", "fallback")`, cty.StringVal("set")},
		{`env("ROTPLAN_FUNC_TEST_UNSET", "fallback")`, cty.StringVal("fallback")},
		{`env("ROTPLAN_FUNC_TEST_EMPTY", "fallback")`, cty.StringVal("fallback")},
		{`format("%s:%d", "127.0.0.1", 22400)`, cty.StringVal("127.0.0.1:22400")},
		{`join(",", ["a", "b"])`, cty.StringVal("a,b")},
		{`trimprefix("https://h:1", "https://")`, cty.StringVal("h:1")},
		{`basename("/a/b.crt")`, cty.StringVal("b.crt")},
		{`dirname("/a/b.crt")`, cty.StringVal("/a")},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			got, diags := evalWith(t, dir, tt.src)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if !got.RawEquals(tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestFileErrorsAndSensitive(t *testing.T) {
	dir := t.TempDir()
	for _, src := range []string{`file("missing.pem")`, `file("/dev/zero")`, `file(".")`, `env("A", "b", "c")`} {
		if _, diags := evalWith(t, dir, src); !diags.HasErrors() {
			t.Errorf("%s should fail", src)
		}
	}
	got, diags := evalWith(t, dir, `upper(sensitive("k"))`)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if !got.HasMark(SensitiveMark) {
		t.Error("a value computed from sensitive() must stay marked")
	}
}
