package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// secretMarker stands for a secret in the tests below: it must never be
// printed, whatever the error around it.
const secretMarker = "hvs.MARKER7f3a"

// sensitivePlan declares a sensitive list, a sensitive string and a plain
// number; extra is added to it (a local that reads a secret).
func sensitivePlan(extra string) string {
	return `variable "token" {
  type      = list(string)
  sensitive = true
  default   = []
}
variable "secret" {
  type      = string
  sensitive = true
  default   = "x"
}
variable "n" {
  type    = number
  default = 1
}
reload "r" {
  command = ["/bin/true"]
}
` + extra
}

// TestSensitiveValuesNeverPrinted gives a sensitive value in every way a
// variable can be given, with an error of each kind around it, to every
// command that prints diagnostics, as text and as JSON: the value never
// shows, while the error itself does.
func TestSensitiveValuesNeverPrinted(t *testing.T) {
	tests := []struct {
		name    string
		extra   string   // added to the plan
		varFile string   // the content of a -var-file, when not ""
		flags   []string // more arguments
		env     map[string]string
		want    string // the error shows, in stdout+stderr
	}{
		{name: "var file type mismatch", varFile: `token = "` + secretMarker + `"` + "\n", want: "Invalid value for variable"},
		{name: "var file element type mismatch", varFile: `token = ["a", {x = "` + secretMarker + `"}]` + "\n", want: "Invalid value for variable"},
		{name: "var file multi-line value", varFile: "token = [\n  \"a\",\n  {x = \"" + secretMarker + "\"},\n]\n", want: "Invalid value for variable"},
		{name: "var file unsupported attribute", varFile: `token = {a = 1}.` + secretMarker[4:] + "\n", want: "Unsupported attribute"},
		{name: "var file function call", varFile: `secret = ` + secretMarker[4:] + `("x")` + "\n", want: "Function calls not allowed"},
		{name: "var file error on a later line", varFile: "token = [\n  \"a\",\n  {a = 1}." + secretMarker[4:] + ",\n]\n", want: "Unsupported attribute"},
		{name: "var file duplicate", varFile: `secret = "a"` + "\n" + `secret = "` + secretMarker + `"` + "\n", want: "Attribute redefined"},
		{name: "var file syntax error", varFile: `secret = "` + secretMarker + `\q"` + "\n", want: "Invalid escape sequence"},
		{name: "var file misspelt name", varFile: `secrte = "` + secretMarker + `"` + "\n", want: "Value for undeclared variable"},
		{name: "var file block", varFile: `secret "` + secretMarker + `" {}` + "\n", want: "Unexpected \"secret\" block"},
		{name: "flag unsupported attribute", flags: []string{"-var", `token={a = 1}.` + secretMarker[4:]}, want: "Unsupported attribute"},
		{name: "flag type mismatch", flags: []string{"-var", `token={x = "` + secretMarker + `"}`}, want: "Invalid value for variable"},
		{name: "flag with a bad name", flags: []string{"-var", `9token=` + secretMarker}, want: "Invalid -var option"},
		{name: "env function call", env: map[string]string{"ROTPLAN_VAR_token": secretMarker[4:] + `("x")`}, want: "Function calls not allowed"},
		{name: "function error in a local", extra: "locals {\n  x = file(var.secret)\n}\n", flags: []string{"-var", "secret=" + secretMarker}, want: "Invalid function argument"},
		{name: "function error in a step", extra: "write \"w\" {\n  path    = \"/nonexistent/x\"\n  content = \"x\"\n  mode    = tonumber(var.secret)\n}\n",
			env: map[string]string{"ROTPLAN_VAR_secret": secretMarker}, want: "Invalid function argument"},
		{name: "a kind's error quotes the argument", extra: "write \"w\" {\n  path    = \"/nonexistent/x\"\n  content = \"x\"\n  mode    = var.secret\n}\n",
			flags: []string{"-var", "secret=" + secretMarker}, want: "Invalid step write.w"},
		{name: "template error", extra: "locals {\n  x = \"${var.secret}\" + 1\n}\n", varFile: `secret = "` + secretMarker + `"` + "\n", want: "Invalid operand"},
	}
	commands := [][]string{{"validate"}, {"plan"}, {"plan", "-json"}, {"run"}, {"run", "-json"}, {"graph"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			plan := filepath.Join(dir, "p.hcl")
			writeFile(t, plan, sensitivePlan(tt.extra))
			args := append([]string{}, tt.flags...)
			if tt.varFile != "" {
				vars := filepath.Join(dir, "v.hcl")
				writeFile(t, vars, tt.varFile)
				args = append(args, "-var-file", vars)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			for _, command := range commands {
				t.Run(strings.Join(command, " "), func(t *testing.T) {
					all := append(append([]string{}, command...), args...)
					if command[0] == "run" {
						all = append(all, "-state-dir", t.TempDir())
					}
					var stdout, stderr bytes.Buffer
					code := rotplan(context.Background(), append(all, plan), &stdout, &stderr)
					out := stdout.String() + stderr.String()
					if code == exitOK && command[0] != "graph" { // graph draws a plan whose arguments are wrong
						t.Errorf("exit 0, want an error:\n%s", out)
					}
					if strings.Contains(out, secretMarker) || strings.Contains(out, secretMarker[4:]) {
						t.Errorf("the sensitive value shows:\n%s", out)
					}
					if !strings.Contains(out, tt.want) {
						t.Errorf("the error %q does not show:\n%s", tt.want, out)
					}
				})
			}
		})
	}
}

// TestPlainValuesStillShown: a variable that is not sensitive keeps its
// source line under the error, and its detail.
func TestPlainValuesStillShown(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	writeFile(t, plan, sensitivePlan(""))
	vars := filepath.Join(dir, "v.hcl")
	writeFile(t, vars, `secret = "`+secretMarker+`"`+"\n"+`n = "twelve"`+"\n")
	var stdout, stderr bytes.Buffer
	code := rotplan(context.Background(), []string{"validate", "-var-file", vars, plan}, &stdout, &stderr)
	want := "   2 | n = \"twelve\"\n     |     ^^^^^^^^\n  The value for \"n\" does not fit its type number: a number is required.\n"
	if code != exitInvalid || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, stderr:\n%s\nwant it to contain:\n%s", code, stderr.String(), want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWithheldDetailsAreNotFolded: two errors whose details are withheld
// (they read a secret) have the same words, but not the same cause; each
// is printed with its own line.
func TestWithheldDetailsAreNotFolded(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	writeFile(t, plan, sensitivePlan("locals {\n  a = file(var.secret)\n  b = tonumber(var.secret)\n}\n"))
	var stdout, stderr bytes.Buffer
	code := rotplan(context.Background(), []string{"validate", "-var", "secret=" + secretMarker, plan}, &stdout, &stderr)
	for _, want := range []string{plan + ":19:12: error: Invalid function argument", plan + ":20:16: error: Invalid function argument"} {
		if code != exitInvalid || !strings.Contains(stderr.String(), want) {
			t.Errorf("exit %d, stderr lacks %q:\n%s", code, want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "The same for") || strings.Contains(stderr.String(), secretMarker) {
		t.Errorf("folded, or the secret shows:\n%s", stderr.String())
	}
}

// TestSnippetCountsCharacters: the caret is under the range however many
// bytes the characters before it on the line take.
func TestSnippetCountsCharacters(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{"ascii", `  content = "abc${issue.nope.certificate}"`, "                  ^^^^^^^^^^^^^^^^^^^^^^"},
		{"accents", `  content = "äöü${issue.nope.certificate}"`, "                  ^^^^^^^^^^^^^^^^^^^^^^"},
		{"combining accent", "  content = \"a\u0308bc${issue.nope.certificate}\"", "                  ^^^^^^^^^^^^^^^^^^^^^^"},
		{"tab and wide characters", "\tcontent = \"🔑鍵${issue.nope.certificate}\"", "\t                 ^^^^^^^^^^^^^^^^^^^^^^"},
		{"non-ascii in the range", `  content = "${issue.nope["é"].certificate}"`, "               ^^^^^^^^^^^^^^^^^^^^^^^^^^^"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			plan := filepath.Join(dir, "p.hcl")
			writeFile(t, plan, "write \"a\" {\n  path = \"x\"\n"+tt.line+"\n}\n")
			var out bytes.Buffer
			rotplan(context.Background(), []string{"validate", plan}, &out, &out)
			want := "   3 | " + tt.line + "\n     | " + tt.want + "\n"
			if !strings.Contains(out.String(), want) {
				t.Errorf("output:\n%s\nwant it to contain:\n%s", out.String(), want)
			}
		})
	}
}

// manyErrors returns a file of n lines and a diagnostic on each.
func manyErrors(n int) (*hcl.File, hcl.Diagnostics) {
	var src strings.Builder
	diags := make(hcl.Diagnostics, n)
	for i := range n {
		line := fmt.Sprintf("  bogus%d = 1\n", i)
		start := hcl.Pos{Line: i + 1, Column: 3, Byte: src.Len() + 2}
		end := hcl.Pos{Line: i + 1, Column: 3 + len(line) - 7, Byte: src.Len() + len(line) - 5}
		src.WriteString(line)
		diags[i] = &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unsupported argument",
			Detail: fmt.Sprintf("An argument named \"bogus%d\" is not expected here.", i), Subject: &hcl.Range{Filename: "p.hcl", Start: start, End: end}}
	}
	return &hcl.File{Bytes: []byte(src.String())}, diags
}

// TestPrinterReadsEachFileOnce: however many diagnostics point into a file,
// the printer takes it from the parser, and splits it into lines, once;
// printing n errors takes time in proportion to n.
func TestPrinterReadsEachFileOnce(t *testing.T) {
	file, diags := manyErrors(1000)
	reads := 0
	files := func() map[string]*hcl.File {
		reads++
		return map[string]*hcl.File{"p.hcl": file}
	}
	var out bytes.Buffer
	p := newDiagPrinter(&out, files, true)
	p.print(diags[:500])
	p.print(diags[500:])
	if reads != 1 {
		t.Errorf("the printer read the files %d times for 1,000 diagnostics in one file, want once", reads)
	}
	if want := "p.hcl:1000:3: error: Unsupported argument\n1000 |   bogus999 = 1\n     |   ^^^^^^^^\n"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks\n%s\ngot (end):\n%s", want, out.String()[out.Len()-300:])
	}
}

// BenchmarkPrintDiagnostics prints n errors, one per line of one file.
func BenchmarkPrintDiagnostics(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			file, diags := manyErrors(n)
			files := func() map[string]*hcl.File { return map[string]*hcl.File{"p.hcl": file} }
			for b.Loop() {
				newDiagPrinter(io.Discard, files, true).print(diags)
			}
		})
	}
}
