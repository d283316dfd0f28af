package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// checkString asserts that AppendString(s) is valid JSON that decodes to what
// encoding/json's encoding of s decodes to.
func checkString(t *testing.T, s string) {
	t.Helper()
	got := AppendString([]byte("x"), s)
	if got[0] != 'x' {
		t.Fatalf("AppendString(%q) lost what was in the slice", s)
	}
	got = got[1:]
	if !json.Valid(got) {
		t.Fatalf("AppendString(%q) = %s: not valid JSON", s, got)
	}
	want, _ := json.Marshal(s)
	var g, w string
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if g != w {
		t.Fatalf("AppendString(%q) decodes to %q, encoding/json's to %q", s, g, w)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "new\nline\r\ttab", "\x00\x01\x1f\x7f",
		"<html> & 'amp'", "ünïcödé ✓ 𝄞", "\u2028\u2029", "bad \xff utf-8 \xe2\x82", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	} {
		checkString(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("seed \n \" \\ \xff ✓")
	f.Fuzz(checkString)
}

func TestAppendValueAsCtyJSON(t *testing.T) {
	for _, v := range []cty.Value{
		cty.StringVal("a \"pem\"\n"),
		cty.NumberIntVal(-42),
		cty.NumberFloatVal(1.5),
		cty.MustParseNumberVal("123456789012345678901234567890"),
		cty.MustParseNumberVal("0.1"),
		cty.True,
		cty.NullVal(cty.String),
		cty.ListVal([]cty.Value{cty.StringVal("b"), cty.StringVal("a")}),
		cty.ListValEmpty(cty.String),
		cty.SetVal([]cty.Value{cty.StringVal("z"), cty.StringVal("y")}),
		cty.TupleVal([]cty.Value{cty.StringVal("t"), cty.NumberIntVal(1)}),
		cty.MapVal(map[string]cty.Value{"k2": cty.StringVal("v2"), "k1": cty.StringVal("v1")}),
		cty.ObjectVal(map[string]cty.Value{
			"serial_number": cty.StringVal("1a:2b"),
			"expiration":    cty.NumberIntVal(1764000000),
			"ca_chain":      cty.ListVal([]cty.Value{cty.StringVal("pem1"), cty.StringVal("pem2")}),
			"nothing":       cty.NullVal(cty.List(cty.String)),
			"nested":        cty.ObjectVal(map[string]cty.Value{"b": cty.True, "a": cty.False}),
		}),
		cty.EmptyObjectVal,
	} {
		got, ok := AppendValue(nil, v)
		if !ok {
			t.Errorf("AppendValue(%#v) declined", v)
			continue
		}
		want, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("AppendValue(%#v)\n got %s\nwant %s", v, got, want)
		}
		back, err := ctyjson.Unmarshal(got, v.Type())
		if err != nil || !back.RawEquals(v) {
			t.Errorf("%s does not read back as %#v: %#v, %v", got, v, back, err)
		}
	}
}

func TestAppendValueDeclines(t *testing.T) {
	for _, v := range []cty.Value{
		cty.UnknownVal(cty.String),
		cty.StringVal("secret").Mark("sensitive"),
		cty.ObjectVal(map[string]cty.Value{"a": cty.UnknownVal(cty.String)}),
		cty.NullVal(cty.DynamicPseudoType),
	} {
		if got, ok := AppendValue([]byte("keep"), v); ok || string(got) != "keep" {
			t.Errorf("AppendValue(%#v) = %q, %v; want it to decline and leave the slice", v, got, ok)
		}
	}
}
