package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/steps"
)

// fieldsPreview is a preview of one step whose kind said, field by field,
// what it would change.
func fieldsPreview() *engine.Preview {
	return &engine.Preview{Steps: []engine.StepPreview{{
		Addr: "vault_write.mapping", Kind: "vault_write", Name: "mapping", Action: steps.Replace,
		Fields: []steps.FieldChange{
			{Field: "token_policies", Action: steps.Replace, Now: `["a"]`, Planned: `["a", "b"]`},
			{Field: "token_ttl", Action: steps.Create, Planned: `"1h"`},
			{Field: "certificate", Action: steps.NoChange, Planned: "(certificate)"},
			{Field: "password", Action: steps.Replace, Sensitive: true},
		},
	}}}
}

func TestPreviewShowsFields(t *testing.T) {
	var buf bytes.Buffer
	writePreview(&buf, "agents.hcl", fieldsPreview(), palette{})
	want := `  fields:
    ~ token_policies: ["a"] -> ["a", "b"]
    + token_ttl: "1h"
    = certificate: (certificate)
    ~ password: (sensitive)
`
	if !strings.Contains(buf.String(), want) {
		t.Errorf("preview:\n%s\nlacks:\n%s", buf.String(), want)
	}
}

func TestPreviewJSONShowsFields(t *testing.T) {
	var buf bytes.Buffer
	writePreviewJSON(&buf, "agents.hcl", true, fieldsPreview(), nil)
	var doc struct {
		Steps []struct {
			Fields []map[string]any `json:"fields"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.Steps[0].Fields
	if len(got) != 4 {
		t.Fatalf("fields %v", got)
	}
	want := []map[string]any{
		{"field": "token_policies", "action": "replace", "now": `["a"]`, "planned": `["a", "b"]`},
		{"field": "token_ttl", "action": "create", "planned": `"1h"`},
		{"field": "certificate", "action": "no-change", "planned": "(certificate)"},
		{"field": "password", "action": "replace", "sensitive": true},
	}
	for i := range want {
		if a, b := jsonText(t, got[i]), jsonText(t, want[i]); a != b {
			t.Errorf("field %d: %s, want %s", i, a, b)
		}
	}
	// A step without fields has no "fields" key: the document only grows.
	buf.Reset()
	pv := fieldsPreview()
	pv.Steps[0].Fields = nil
	writePreviewJSON(&buf, "agents.hcl", true, pv, nil)
	if strings.Contains(buf.String(), `"fields"`) {
		t.Error("a step without fields should have no fields key")
	}
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
