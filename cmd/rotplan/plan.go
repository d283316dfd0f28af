package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Exit codes of plan (and run -dry-run) with -detailed-exitcode. Without it,
// plan exits exitOK whether or not changes are pending.
const (
	exitPlanError   = 1 // invalid plan, or the run would fail
	exitPlanChanges = 2 // -detailed-exitcode: the run would change something
)

const planUsage = `Usage: rotplan plan [options] PLAN.hcl

Previews a run without changing anything: no file is written or chowned,
nothing is issued or written in Vault, no signal is sent and no command is
run. It reads the system as it is now and shows, per step in the order the
run takes them, what would happen:

  + create     something that is not there now appears
  ~ replace    something in place is replaced (a file, a certificate)
  = no change  already as the step would leave it, or not due (renew_before)
  ? check      the step only reads (verify)

Values not known until the run are shown as (known after KIND), secrets as
(sensitive). Every problem that would make the run fail is reported with
its file:line:col. Vault is logged in to (the token is revoked at the end)
and the roles are read, never used to issue.

Exit codes: 0 ok, 1 errors; with -detailed-exitcode 0 nothing to do,
1 errors, 2 changes pending.

Options:
`

// planFlags are the options of plan that run -dry-run shares.
type planFlags struct {
	metricsFile    string // plan's alone: see metrics.go
	json, detailed bool
	// out is where plan -out keeps the preview for 'rotplan run FILE'.
	out string
}

func (f *planFlags) register(c *command) {
	// run has a -json of its own, for its events (runFlags); with -dry-run
	// it asks for this one, and runCommand passes it on.
	if c.fs.Lookup("json") == nil {
		c.fs.BoolVar(&f.json, "json", false, "print the preview as JSON (see docs/cli.md for the format)")
	}
	c.fs.BoolVar(&f.detailed, "detailed-exitcode", false, "exit 0 when nothing would change, 2 when something would, 1 on errors")
}

func planCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("plan", planUsage, "rotplan plan -var-file prod.vars.hcl -out prod.plan examples/prod.hcl", stdout, stderr)
	var f planFlags
	c.fs.StringVar(&f.metricsFile, "metrics-file", "", metricsFileUsage)
	f.register(c)
	c.fs.StringVar(&f.out, "out", "", "keep the preview in `FILE` (no secrets, mode 0600) for 'rotplan run FILE', which runs exactly it or refuses")
	return c.preview(ctx, args, &f)
}

// preview parses the flags, compiles the plan and shows what a run would
// do. It never touches the state directory.
func (c *command) preview(ctx context.Context, args []string, f *planFlags) int {
	if code, ok := c.parse(args); !ok {
		if code == exitInvalid {
			code = exitPlanError
		}
		return code
	}
	return c.previewParsed(ctx, f)
}

// previewParsed is preview once the flags are parsed.
func (c *command) previewParsed(ctx context.Context, f *planFlags) int {
	parser := plans.NewParser()
	out := c.vars.printer(c.stderr, parser, c.noColour)
	l, diags := c.vars.load(parser, c.plan)
	prog := l.Program
	if prog == nil {
		if f.json {
			writePreviewJSON(c.stdout, c.plan, false, nil, diags)
		}
		out.print(diags)
		c.writePlanMetrics(f.metricsFile, nil, diags)
		return exitPlanError
	}
	// A program with wrong arguments is still previewed, so that every
	// problem shows at once; the preview validates each step again, with
	// more known, so the same error may come twice.
	// A preview logs in to Vault and revokes that token at the end: an
	// interrupt stops it in order (see interrupts).
	end := windDown(ctx)
	pv := prog.Preview(ctx, engine.Options{Log: c.log, Certificates: f.metricsFile != ""})
	end()
	if ctx.Err() != nil {
		fmt.Fprintf(c.stderr, "rotplan %s: interrupted; the preview is incomplete. Nothing was changed.\n", c.name)
		return exitPlanError
	}
	all := uniqueDiagnostics(append(diags, pv.Diagnostics...))
	if f.json {
		writePreviewJSON(c.stdout, c.plan, prog.Valid(), pv, all)
	} else {
		writePreview(c.stdout, c.plan, pv, colours(c.stdout, c.noColour))
	}
	out.print(all)
	if !c.writePlanMetrics(f.metricsFile, pv, all) && !all.HasErrors() {
		return exitPlanError // with errors, the switch says more
	}
	switch {
	case all.HasErrors():
		fmt.Fprintf(c.stderr, "rotplan %s: the run would fail: %s (above). Nothing was changed.\n", c.name, countErrors(all))
		return exitPlanError
	}
	if f.out != "" {
		if err := c.savePlan(f.out, l, pv); err != nil {
			fmt.Fprintf(c.stderr, "rotplan %s: %v\n", c.name, err)
			return exitPlanError
		}
	}
	if f.detailed && pv.Changes() {
		return exitPlanChanges
	}
	return exitOK
}

// uniqueDiagnostics drops a diagnostic that repeats an earlier one: same
// place, same words.
func uniqueDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	type key struct {
		at, summary, detail string
	}
	seen := map[key]bool{}
	var out hcl.Diagnostics
	for _, d := range diags {
		k := key{summary: d.Summary, detail: d.Detail}
		if d.Subject != nil {
			k.at = d.Subject.String()
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

func errorsOf(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

// countErrors says how many errors there are, and how many causes when
// several say the same (see foldDiagnostics): "3 errors", "2 errors, in
// 2,000 steps".
func countErrors(diags hcl.Diagnostics) string {
	errs := errorsOf(diags)
	causes := len(foldDiagnostics(errs))
	s := fmt.Sprintf("%s %s", thousands(causes), plural(causes, "error", "errors"))
	if causes < len(errs) {
		s += fmt.Sprintf(", in %s steps", thousands(len(errs)))
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// markers are the preview's one-character actions.
var markers = map[steps.Action]string{
	steps.Create: "+", steps.Replace: "~", steps.NoChange: "=", steps.Check: "?",
}

// writePreview prints the preview for people, the markers painted with pal.
func writePreview(w io.Writer, plan string, pv *engine.Preview, pal palette) {
	marker := func(a steps.Action) string { return paintAction(pal, a, markers[a]) }
	fmt.Fprintf(w, "rotplan: preview of %s: %d steps, in the order the run takes them. Nothing is changed.\n", plan, len(pv.Steps))
	fmt.Fprintf(w, "  %s create   %s replace   %s no change   %s check only\n",
		marker(steps.Create), marker(steps.Replace), marker(steps.NoChange), marker(steps.Check))
	writeRollouts(w, pv.Rollouts)
	for _, s := range pv.Steps {
		fmt.Fprintln(w)
		head := fmt.Sprintf("%s %s: %s", marker(s.Action), s.Addr, actionWords(s.Action))
		if s.Reason != "" {
			head += ", " + s.Reason
		}
		fmt.Fprintf(w, "%s\n    at %s\n", head, location(s.DeclRange))
		if s.Skipped {
			continue // what it would have done does not matter
		}
		width := 0
		for _, a := range s.Arguments {
			width = max(width, len(a.Name))
		}
		for _, a := range s.Arguments {
			fmt.Fprintf(w, "    %-*s = %s\n", width, a.Name, argumentText(a))
		}
		if len(s.Fields) > 0 {
			fmt.Fprintln(w, "  fields:")
			for _, f := range s.Fields {
				fmt.Fprintf(w, "    %s %s\n", marker(f.Action), fieldText(f))
			}
		}
		if len(s.Now) > 0 {
			fmt.Fprintln(w, "  now:")
			width = 0
			for _, f := range s.Now {
				width = max(width, len(f.Name))
			}
			for _, f := range s.Now {
				fmt.Fprintf(w, "    %-*s  %s\n", width, f.Name, f.Value)
			}
		}
		if n := len(errorsOf(s.Diagnostics)); n > 0 {
			fmt.Fprintf(w, "  !! %d %s: see below\n", n, plural(n, "error", "errors"))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Plan: %d to create, %d to replace, %d unchanged, %d %s; %d %s.\n",
		pv.Count(steps.Create), pv.Count(steps.Replace), pv.Count(steps.NoChange),
		pv.Count(steps.Check), plural(pv.Count(steps.Check), "check", "checks"),
		len(errorsOf(pv.Diagnostics)), plural(len(errorsOf(pv.Diagnostics)), "error", "errors"))
}

// writeRollouts lists each rollout's batches in order, a line each
// (rollout web: batch 1/2: host.web["a"], host.web["b"]), then what a
// failure does.
func writeRollouts(w io.Writer, rollouts []engine.Rollout) {
	if len(rollouts) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, r := range rollouts {
		for i, b := range r.Batches {
			fmt.Fprintf(w, "rollout %s: batch %d/%d: %s\n", r.Name, i+1, len(r.Batches), strings.Join(b, ", "))
		}
		fmt.Fprintf(w, "rollout %s: %s\n", r.Name, onFailure(r))
	}
}

// onFailure says what a failure does to a rollout.
func onFailure(r engine.Rollout) string {
	s := "a failure ends it"
	if r.MaxFailures > 0 {
		s = fmt.Sprintf("up to %d %s may fail, each undone alone while it goes on; one more ends it", r.MaxFailures, plural(r.MaxFailures, "host", "hosts"))
	}
	if r.Rollback == plans.RollbackFailedBatch {
		return s + ", and the rollback keeps the batches that completed"
	}
	return s + ", and the rollback undoes every batch"
}

// fieldText writes a field change as "token_ttl: 3600 -> 7200", "field:
// value" for a new or unchanged one, "field: (sensitive)" for a secret.
func fieldText(f steps.FieldChange) string {
	switch {
	case f.Sensitive:
		return f.Field + ": (sensitive)"
	case f.Action == steps.Replace:
		return f.Field + ": " + f.Now + " -> " + f.Planned
	}
	return f.Field + ": " + f.Planned
}

// paintAction paints s in the colour of the action: green for what appears,
// yellow for what is replaced, dim for what stays, cyan for what is read.
func paintAction(pal palette, a steps.Action, s string) string {
	switch a {
	case steps.Create:
		return pal.good(s)
	case steps.Replace:
		return pal.caution(s)
	case steps.NoChange:
		return pal.faint(s)
	case steps.Check:
		return pal.check(s)
	}
	return s
}

func actionWords(a steps.Action) string {
	if a == steps.NoChange {
		return "no change"
	}
	return string(a)
}

func location(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// argumentText shows an argument's value as HCL would write it, long text
// by its size.
func argumentText(a engine.Argument) string {
	switch {
	case a.Sensitive:
		return "(sensitive)"
	case a.Value == cty.NilVal:
		return "(known after " + strings.Join(a.KnownAfter, ", ") + ")"
	}
	return valueText(a.Value)
}

func valueText(v cty.Value) string {
	ty := v.Type()
	switch {
	case v.IsNull():
		return "null"
	case ty == cty.String:
		s := v.AsString()
		if strings.Contains(s, "\n") {
			return fmt.Sprintf("(text, %d bytes, %d lines)", len(s), strings.Count(strings.TrimRight(s, "\n"), "\n")+1)
		}
		return strconv.Quote(s)
	case ty == cty.Number:
		return v.AsBigFloat().Text('f', -1)
	case ty == cty.Bool:
		return strconv.FormatBool(v.True())
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		var parts []string
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			parts = append(parts, valueText(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case ty.IsMapType() || ty.IsObjectType():
		var parts []string
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			parts = append(parts, k.AsString()+" = "+valueText(e))
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return v.GoString()
}

// previewJSON is the -json document. Its fields are documented in
// docs/cli.md and only ever added to; format_version changes if one changes
// meaning.
type previewJSON struct {
	FormatVersion int               `json:"format_version"`
	Plan          string            `json:"plan"`
	Valid         bool              `json:"valid"`
	Changes       bool              `json:"changes"`
	Summary       map[string]int    `json:"summary"`
	Steps         []stepPreviewJSON `json:"steps"`
	// Rollouts are left out for a plan without any.
	Rollouts []rolloutJSON    `json:"rollouts,omitempty"`
	Errors   []diagnosticJSON `json:"errors"`
	Warnings []diagnosticJSON `json:"warnings"`
}

type stepPreviewJSON struct {
	Address   string                  `json:"address"`
	Kind      string                  `json:"kind"`
	Name      string                  `json:"name"`
	Location  locationJSON            `json:"location"`
	DependsOn []string                `json:"depends_on"`
	Action    string                  `json:"action"`
	Reason    string                  `json:"reason"`
	Skipped   bool                    `json:"skipped"`
	Arguments map[string]argumentJSON `json:"arguments"`
	Now       []steps.Fact            `json:"now"`
	// Fields are left out for a kind that does not give them.
	Fields []steps.FieldChange `json:"fields,omitempty"`
	Errors []diagnosticJSON    `json:"errors"`
}

// rolloutJSON is a rollout: its batches in order, each the addresses of
// its hosts.
type rolloutJSON struct {
	Name        string     `json:"name"`
	Batches     [][]string `json:"batches"`
	MaxFailures int        `json:"max_failures"`
	Rollback    string     `json:"rollback"`
}

type argumentJSON struct {
	Value      json.RawMessage `json:"value,omitempty"`
	Sensitive  bool            `json:"sensitive,omitempty"`
	KnownAfter []string        `json:"known_after,omitempty"`
}

type locationJSON struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

type diagnosticJSON struct {
	Summary  string        `json:"summary"`
	Detail   string        `json:"detail"`
	Location *locationJSON `json:"location,omitempty"`
}

func diagnosticsJSON(diags hcl.Diagnostics, severity hcl.DiagnosticSeverity) []diagnosticJSON {
	out := []diagnosticJSON{}
	for _, d := range plans.WithoutSecrets(diags) {
		if d.Severity != severity {
			continue
		}
		dj := diagnosticJSON{Summary: d.Summary, Detail: d.Detail}
		if d.Subject != nil {
			dj.Location = &locationJSON{File: d.Subject.Filename, Line: d.Subject.Start.Line, Column: d.Subject.Start.Column}
		}
		out = append(out, dj)
	}
	return out
}

// writePreviewJSON prints the preview as JSON; pv is nil when the plan
// could not be previewed at all. valid is whether it compiled cleanly.
func writePreviewJSON(w io.Writer, plan string, valid bool, pv *engine.Preview, diags hcl.Diagnostics) {
	doc := previewJSON{
		FormatVersion: 1, Plan: plan, Valid: valid,
		Summary: map[string]int{"create": 0, "replace": 0, "no_change": 0, "check": 0, "errors": len(errorsOf(diags))},
		Steps:   []stepPreviewJSON{},
		Errors:  diagnosticsJSON(diags, hcl.DiagError), Warnings: diagnosticsJSON(diags, hcl.DiagWarning),
	}
	if pv != nil {
		for _, r := range pv.Rollouts {
			doc.Rollouts = append(doc.Rollouts, rolloutJSON{Name: r.Name, Batches: r.Batches, MaxFailures: r.MaxFailures, Rollback: r.Rollback})
		}
		doc.Changes = pv.Changes()
		doc.Summary["create"] = pv.Count(steps.Create)
		doc.Summary["replace"] = pv.Count(steps.Replace)
		doc.Summary["no_change"] = pv.Count(steps.NoChange)
		doc.Summary["check"] = pv.Count(steps.Check)
		for _, s := range pv.Steps {
			sj := stepPreviewJSON{
				Address: s.Addr, Kind: s.Kind, Name: s.Name,
				Location:  locationJSON{File: s.DeclRange.Filename, Line: s.DeclRange.Start.Line, Column: s.DeclRange.Start.Column},
				DependsOn: append([]string{}, s.DependsOn...),
				Action:    string(s.Action), Reason: s.Reason, Skipped: s.Skipped,
				Arguments: map[string]argumentJSON{},
				Now:       append([]steps.Fact{}, s.Now...),
				Fields:    s.Fields,
				Errors:    diagnosticsJSON(s.Diagnostics, hcl.DiagError),
			}
			for _, a := range s.Arguments {
				aj := argumentJSON{Sensitive: a.Sensitive, KnownAfter: a.KnownAfter}
				if !a.Sensitive && a.Value != cty.NilVal {
					if raw, err := ctyjson.Marshal(a.Value, a.Value.Type()); err == nil {
						aj.Value = raw
					}
				}
				sj.Arguments[a.Name] = aj
			}
			doc.Steps = append(doc.Steps, sj)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(doc)
}
