package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// diagPrinter prints diagnostics as compilers do, "file:line:col: error:
// summary", then the source line with the range underlined, then the detail.
// (hcl's DiagnosticTextWriter shows no column, which operators and editors
// need to jump to the spot.)
type diagPrinter struct {
	w     io.Writer
	files func() map[string]*hcl.File
	// pal paints the severity, when w is a terminal.
	pal palette
}

// newDiagPrinter prints diagnostics on w, in colour when w is a terminal
// and noColour is false (see colours).
func newDiagPrinter(w io.Writer, files func() map[string]*hcl.File, noColour bool) *diagPrinter {
	return &diagPrinter{w: w, files: files, pal: colours(w, noColour)}
}

func (p *diagPrinter) print(diags hcl.Diagnostics) {
	for _, f := range foldDiagnostics(diags) {
		d := f.diag
		severity := p.pal.bad("error")
		if d.Severity == hcl.DiagWarning {
			severity = p.pal.caution("warning")
		}
		switch {
		case d.Subject == nil:
			fmt.Fprintf(p.w, "rotplan: %s: %s\n", severity, d.Summary)
		case d.Subject.Start.Line == 0: // not in a file: a -var flag
			fmt.Fprintf(p.w, "%s: %s: %s\n", d.Subject.Filename, severity, d.Summary)
		default:
			s := d.Subject
			fmt.Fprintf(p.w, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, severity, d.Summary)
			p.snippet(*s)
		}
		if d.Detail != "" {
			fmt.Fprintf(p.w, "  %s\n", strings.ReplaceAll(d.Detail, "\n", "\n  "))
		}
		if len(f.same) > 0 {
			fmt.Fprintf(p.w, "  The same for %s.\n", f.describeSame())
		}
		fmt.Fprintln(p.w)
	}
}

// folded is a diagnostic and the others that say the same thing (same
// severity, same detail) of other steps: one cause, reported once.
type folded struct {
	diag *hcl.Diagnostic
	// same are the summaries of the others, or of the steps they are about
	// when the summaries differ only in the step.
	same []string
}

// foldDiagnostics folds diagnostics that give the same detail into the
// first of them, in order: a directory missing behind 500 steps is one
// problem, not 1,500 errors. Diagnostics without a detail are kept apart.
func foldDiagnostics(diags hcl.Diagnostics) []*folded {
	type key struct {
		severity hcl.DiagnosticSeverity
		detail   string
	}
	var out []*folded
	seen := map[key]*folded{}
	for _, d := range diags {
		k := key{d.Severity, d.Detail}
		if f, ok := seen[k]; ok && d.Detail != "" {
			f.same = append(f.same, d.Summary)
			continue
		}
		f := &folded{diag: d}
		seen[k] = f
		out = append(out, f)
	}
	return out
}

// maxSameNamed is how many of the folded diagnostics' steps, or of the
// steps that did not run, are named.
const maxSameNamed = 3

// describeSame names the steps a folded diagnostic stands for as well:
// "write.crt["app1"], write.crt["app2"] and 1,497 more steps".
func (f *folded) describeSame() string {
	prefix := func(s string) string { return s[:strings.LastIndex(s, " ")+1] }
	names := slices.Clone(f.same)
	if p := prefix(f.diag.Summary); p != "" && !slices.ContainsFunc(names, func(s string) bool { return prefix(s) != p }) {
		for i, s := range names {
			names[i] = strings.TrimPrefix(s, p)
		}
	}
	return nameSome(names)
}

// nameSome names the first few of names and counts the others: "a, b and
// c", "a, b, c and 1,497 more".
func nameSome(names []string) string {
	if len(names) <= maxSameNamed {
		if len(names) == 1 {
			return names[0]
		}
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	more := len(names) - maxSameNamed
	return fmt.Sprintf("%s and %s more", strings.Join(names[:maxSameNamed], ", "), thousands(more))
}

// thousands writes n with commas: 1,497.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// snippet prints the first source line of a range and underlines the range.
func (p *diagPrinter) snippet(r hcl.Range) {
	file, ok := p.files()[r.Filename]
	if !ok || file == nil || r.Start.Line < 1 {
		return
	}
	lines := strings.Split(string(file.Bytes), "\n")
	if r.Start.Line > len(lines) {
		return
	}
	line := strings.TrimRight(lines[r.Start.Line-1], "\r")
	start := min(max(r.Start.Column-1, 0), len(line))
	end := len(line)
	if r.End.Line == r.Start.Line {
		end = min(max(r.End.Column-1, start+1), len(line))
	}
	pad := strings.Map(func(c rune) rune {
		if c == '\t' {
			return '\t'
		}
		return ' '
	}, line[:start])
	gutter := fmt.Sprintf("%4d | ", r.Start.Line)
	fmt.Fprintf(p.w, "%s%s\n", gutter, line)
	fmt.Fprintf(p.w, "%s%s%s\n", strings.Repeat(" ", len(gutter)-2)+"| ", pad, strings.Repeat("^", max(end-start, 1)))
}
