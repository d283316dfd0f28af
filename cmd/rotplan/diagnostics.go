package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/plans"
	"golang.org/x/text/width"
)

// diagPrinter prints diagnostics as compilers do, "file:line:col: error:
// summary", then the source line with the range underlined, then the detail.
// (hcl's DiagnosticTextWriter shows no column, which operators and editors
// need to jump to the spot, and splits the whole source again for every
// diagnostic: 10,000 errors took minutes.)
type diagPrinter struct {
	w     io.Writer
	files func() map[string]*hcl.File
	// pal paints the severity, when w is a terminal.
	pal palette
	// hides reports whether a line of a file must not be shown, because a
	// secret may be written there (see varSources.hides); nil hides nothing.
	hides func(filename string, line int) bool
	// sources are the files met so far, each split into lines once.
	sources map[string]*source
}

// newDiagPrinter prints diagnostics on w, in colour when w is a terminal
// and noColour is false (see colours).
func newDiagPrinter(w io.Writer, files func() map[string]*hcl.File, noColour bool) *diagPrinter {
	return &diagPrinter{w: w, files: files, pal: colours(w, noColour), sources: map[string]*source{}}
}

func (p *diagPrinter) print(diags hcl.Diagnostics) {
	// One write at the end rather than several per diagnostic: stderr is
	// not buffered.
	w := bufio.NewWriter(p.w)
	defer w.Flush()
	for _, f := range foldDiagnostics(plans.WithoutSecrets(diags)) {
		d := f.diag
		severity := p.pal.bad("error")
		if d.Severity == hcl.DiagWarning {
			severity = p.pal.caution("warning")
		}
		switch {
		case d.Subject == nil:
			fmt.Fprintf(w, "rotplan: %s: %s\n", severity, d.Summary)
		case d.Subject.Start.Line == 0: // not in a file: a -var flag
			fmt.Fprintf(w, "%s: %s: %s\n", d.Subject.Filename, severity, d.Summary)
		default:
			s := d.Subject
			fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, severity, d.Summary)
			p.snippet(w, *s)
		}
		if d.Detail != "" {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(d.Detail, "\n", "\n  "))
		}
		if len(f.same) > 0 {
			fmt.Fprintf(w, "  The same for %s.\n", f.describeSame())
		}
		fmt.Fprintln(w)
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
// problem, not 1,500 errors. Diagnostics without a detail, or whose
// detail was withheld, are kept apart.
func foldDiagnostics(diags hcl.Diagnostics) []*folded {
	type key struct {
		severity hcl.DiagnosticSeverity
		detail   string
	}
	var out []*folded
	seen := map[key]*folded{}
	for _, d := range diags {
		k := key{d.Severity, d.Detail}
		if f, ok := seen[k]; ok && d.Detail != "" && d.Detail != plans.WithheldDetail {
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

// source is a file's text and where each of its lines starts.
type source struct {
	text   []byte
	starts []int // starts[i] is the offset of line i+1
}

// sourceOf returns the file named filename split into lines, nil when the
// printer was given no such file (a -var flag). Each file is split once,
// however many diagnostics point into it.
func (p *diagPrinter) sourceOf(filename string) *source {
	if src, ok := p.sources[filename]; ok {
		return src
	}
	var src *source
	if file := p.files()[filename]; file != nil {
		src = &source{text: file.Bytes, starts: []int{0}}
		for i, b := range file.Bytes {
			if b == '\n' {
				src.starts = append(src.starts, i+1)
			}
		}
	}
	p.sources[filename] = src
	return src
}

// line returns line n (from 1) without its end of line, and its offset.
func (s *source) line(n int) (text string, offset int, ok bool) {
	if n < 1 || n > len(s.starts) {
		return "", 0, false
	}
	offset = s.starts[n-1]
	end := len(s.text)
	if n < len(s.starts) {
		end = s.starts[n] - 1
	}
	return strings.TrimRight(string(s.text[offset:end]), "\r"), offset, true
}

// snippet prints the first source line of a range and underlines the range,
// or says why it does not when the line may hold a secret.
func (p *diagPrinter) snippet(w io.Writer, r hcl.Range) {
	src := p.sourceOf(r.Filename)
	if src == nil {
		return
	}
	line, offset, ok := src.line(r.Start.Line)
	if !ok {
		return
	}
	gutter := fmt.Sprintf("%4d | ", r.Start.Line)
	if p.hides != nil && p.hides(r.Filename, r.Start.Line) {
		fmt.Fprintf(w, "%s(not shown: it may hold a secret)\n", gutter)
		return
	}
	// Columns count characters, not bytes: the byte offsets say where the
	// range is in the line, however many bytes its characters take.
	start := byteInLine(r.Start, line, offset)
	end := len(line)
	if r.End.Line == r.Start.Line {
		end = max(byteInLine(r.End, line, offset), start)
	}
	carets := max(cells(line[start:end]), 1)
	fmt.Fprintf(w, "%s%s\n", gutter, line)
	fmt.Fprintf(w, "%s%s%s\n", strings.Repeat(" ", len(gutter)-2)+"| ", pad(line[:start]), strings.Repeat("^", carets))
}

// byteInLine is where pos falls in line, which starts at offset in the file:
// from pos.Byte, or, for a position that has none that fits (made up rather
// than parsed), from its column, counted in characters.
func byteInLine(pos hcl.Pos, line string, offset int) int {
	if b := pos.Byte - offset; b >= 0 && b <= len(line) && (pos.Byte != 0 || pos.Column <= 1) {
		return b
	}
	col := 1
	for i := range line {
		if col >= pos.Column {
			return i
		}
		col++
	}
	return len(line)
}

// pad is as wide as s on a terminal, so that a caret below lands below
// its character: a tab for a tab, and spaces for the others (see cells).
func pad(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteString(strings.Repeat(" ", cells(string(c))))
		}
	}
	return b.String()
}

// cells is how many places s takes on a terminal: none for a character
// drawn over the one before it (a combining accent, a zero width joiner),
// two for a wide one (CJK, most emoji), one for the others.
func cells(s string) int {
	n := 0
	for _, c := range s {
		switch {
		case unicode.In(c, unicode.Mn, unicode.Me, unicode.Cf):
		case width.LookupRune(c).Kind() == width.EastAsianWide || width.LookupRune(c).Kind() == width.EastAsianFullwidth:
			n += 2
		default:
			n++
		}
	}
	return n
}
