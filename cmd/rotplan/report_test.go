package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
)

// TestReportSettingsError: a run whose settings block (vault) could not be
// set up shows the block's diagnostics and exits 1, in every view exactly
// as when the engine reported it as a step at the made-up address "vault".
func TestReportSettingsError(t *testing.T) {
	src := "vault {\n  auth {\n    method = \"ldap\"\n  }\n}\n"
	diags := hcl.Diagnostics{{
		Severity: hcl.DiagError, Summary: "Invalid Vault connection", Detail: `auth.method: "ldap" is not supported (use "cert" or "token")`,
		Subject: &hcl.Range{Filename: "p.hcl", Start: hcl.Pos{Line: 3, Column: 14, Byte: 31}, End: hcl.Pos{Line: 3, Column: 20, Byte: 37}},
	}}
	files := func() map[string]*hcl.File { return map[string]*hcl.File{"p.hcl": {Bytes: []byte(src)}} }
	show := func(err error, json bool) string {
		t.Helper()
		report := &engine.Report{Steps: []engine.StepResult{{Addr: "issue.a", Outcome: engine.NotRun}}}
		var out, stderr bytes.Buffer
		var v runView = newLineView(&out, &stderr, newDiagPrinter(&stderr, files, true))
		if json {
			v = newJSONView(&out)
		}
		if code := (&command{}).report(v, report, err, "rotplan resume p.hcl"); code != exitFailed {
			t.Errorf("exit %d, want %d", code, exitFailed)
		}
		return out.String() + stderr.String()
	}
	before := &engine.StepError{Addr: "vault", Diagnostics: diags}
	now := &engine.SettingsError{Block: "vault", Diagnostics: diags}
	if got, want := show(now, false), show(before, false); got != want {
		t.Errorf("the line view shows\n%s\nwant\n%s", got, want)
	}
	if got := show(now, false); !strings.Contains(got, "Invalid Vault connection") || !strings.Contains(got, `method = "ldap"`) {
		t.Errorf("the line view does not show the diagnostic with its source:\n%s", got)
	}
	if got, want := decodeEvents(t, show(now, true)), decodeEvents(t, show(before, true)); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", eventsText(got), eventsText(want))
	}
}
