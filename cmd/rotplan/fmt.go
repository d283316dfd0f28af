package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/rotplan/rotplan/internal/atomicfile"
	"github.com/rotplan/rotplan/plans"
)

const fmtUsage = `Usage: rotplan fmt [options] [FILE or DIR ...]

Rewrites plan and variable files in HCL's canonical layout, and prints the
name of each file it changed. With no argument it formats every *.hcl file in
the current directory; a directory stands for the *.hcl files in it (not its
subdirectories, nor files whose names start with a dot). A file already in
canonical form is never rewritten.

Every file is read and parsed before any is changed: if one is missing or has
a syntax error, the errors are printed and nothing is changed (exit 2).
A rewrite replaces the file in one step, keeping its permission bits, so a
crash leaves either the old file or the new one.

Exit status: 0 when every file is (now) formatted; 1 with -check when some
file is not, or when a rewrite failed; 2 for usage errors, missing files and
syntax errors.

Options:
`

// fmtSource is one file to format: what it holds now and its canonical form.
type fmtSource struct {
	path      string
	src       []byte
	formatted []byte
}

// changed reports whether formatting would alter the file.
func (s *fmtSource) changed() bool { return !bytes.Equal(s.src, s.formatted) }

func fmtCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fmt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "change nothing: list the files that are not formatted and exit 1 if there are any")
	diff := fs.Bool("diff", false, "also print a unified diff of each change")
	var noColour bool
	colourFlag(fs, &noColour)
	fs.Usage = func() {
		fmt.Fprint(stderr, fmtUsage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nExample:\n  rotplan fmt -check -diff examples\n")
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	paths, err := fmtPaths(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "rotplan fmt: %v\n", err)
		return exitInvalid
	}
	// Read and parse everything first, so that exit 2 keeps its meaning
	// everywhere in rotplan: nothing was changed.
	parser := hclparse.NewParser()
	out := newDiagPrinter(stderr, parser.Files, noColour)
	var sources []*fmtSource
	invalid := false
	for _, path := range paths {
		src, diags := plans.ReadSource(path)
		if !diags.HasErrors() {
			diags = plans.CheckNesting(src, path)
		}
		if diags.HasErrors() {
			out.print(diags)
			invalid = true
			continue
		}
		_, diags = parser.ParseHCL(src, path)
		out.print(diags)
		if diags.HasErrors() {
			invalid = true
			continue
		}
		// hclwrite formats tokens, not a syntax tree: only a file that
		// parses cleanly is known to keep its meaning.
		sources = append(sources, &fmtSource{path: path, src: src, formatted: hclwrite.Format(src)})
	}
	if invalid {
		return exitInvalid
	}
	code := exitOK
	for _, s := range sources {
		if !s.changed() {
			continue
		}
		if !*check {
			if err := replaceFile(s.path, s.formatted); err != nil {
				fmt.Fprintf(stderr, "rotplan fmt: %v\n", err)
				code = exitFailed
				continue
			}
		}
		fmt.Fprintln(stdout, s.path)
		if *diff {
			writeUnifiedDiff(stdout, s.path, s.src, s.formatted)
		}
		if *check {
			code = exitFailed
		}
	}
	return code
}

// fmtPaths expands the command line into the files to format, each once, in
// a stable order: the arguments' order, and by name within a directory.
func fmtPaths(args []string) ([]string, error) {
	if len(args) == 0 {
		args = []string{"."}
	}
	var paths []string
	seen := map[string]bool{}
	add := func(p string) {
		if c := filepath.Clean(p); !seen[c] {
			seen[c] = true
			paths = append(paths, p)
		}
	}
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if !info.Mode().IsRegular() {
				return nil, fmt.Errorf("%s is not a regular file", arg)
			}
			add(arg)
			continue
		}
		entries, err := os.ReadDir(arg)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			name := e.Name()
			// Dot files are editor locks and backups (and rotplan's own
			// temporary files), not plans.
			if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".hcl") {
				continue
			}
			p := filepath.Join(arg, name) // "a.hcl", not "./a.hcl", for "."
			if info, err := os.Stat(p); err != nil || !info.Mode().IsRegular() {
				continue
			}
			add(p)
		}
	}
	return paths, nil
}

// replaceFile replaces the contents of path with data so that a crash leaves
// either the old file or the new one, never a truncated mix: it writes a
// temporary file beside the target, with the target's permission bits,
// syncs it, and renames it over the target.
func replaceFile(path string, data []byte) error {
	// Rename would replace a symbolic link with a regular file; replace
	// what it points at instead.
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	info, err := os.Stat(target)
	if err != nil {
		return err
	}
	return atomicfile.Write(target, data, info.Mode().Perm())
}

// writeUnifiedDiff prints the change from a to b in unified format with three
// lines of context, as diff -u does.
func writeUnifiedDiff(w io.Writer, path string, a, b []byte) {
	al, bl := splitLines(a), splitLines(b)
	ops := diffLines(al, bl)
	const context = 3
	fmt.Fprintf(w, "--- old/%s\n+++ new/%s\n", filepath.ToSlash(path), filepath.ToSlash(path))
	// ops[i] for i in [start, end) make one hunk: changes no more than
	// 2*context equal lines apart, with up to context equal lines around.
	for i := 0; i < len(ops); {
		for i < len(ops) && ops[i].kind == ' ' {
			i++
		}
		if i == len(ops) {
			break
		}
		start := max(i-context, 0)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j + 1
			} else if j-end >= 2*context {
				break
			}
		}
		end = min(end+context, len(ops))
		var aStart, aLen, bStart, bLen int
		aStart, bStart = ops[start].a, ops[start].b
		for _, op := range ops[start:end] {
			if op.kind != '+' {
				aLen++
			}
			if op.kind != '-' {
				bLen++
			}
		}
		fmt.Fprintf(w, "@@ -%s +%s @@\n", hunkRange(aStart, aLen), hunkRange(bStart, bLen))
		for _, op := range ops[start:end] {
			line := op.line
			fmt.Fprintf(w, "%c%s", op.kind, line)
			if !strings.HasSuffix(line, "\n") {
				fmt.Fprint(w, "\n\\ No newline at end of file\n")
			}
		}
		i = end
	}
}

// hunkRange formats one side of a hunk header; start is 0-based. As in GNU
// diff, an empty side names the line before it.
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// splitLines splits after each newline, keeping it, so that a missing final
// newline shows in the diff.
func splitLines(s []byte) []string {
	if len(s) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(s), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// diffOp is one line of a diff: ' ' kept, '-' removed, '+' added; a and b
// are the 0-based positions it is at, or would be at, in each side.
type diffOp struct {
	kind rune
	line string
	a, b int
}

// diffLines returns a shortest edit script from a to b, by Myers' O(ND)
// algorithm. It keeps each round's frontier to walk back through, O(D²)
// memory in all, which plan files are short enough to afford.
func diffLines(a, b []string) []diffOp {
	n, m := len(a), len(b)
	// v[maxD+1+k] is how far along a the furthest path on diagonal k = x-y
	// has got; frontiers[d] holds diagonals -d-1..d+1 of v before round d,
	// all that walking back through round d reads.
	maxD := n + m
	v := make([]int, 2*maxD+3)
	var frontiers [][]int
	for d := 0; d <= maxD; d++ {
		frontiers = append(frontiers, slices.Clone(v[maxD-d:maxD+d+3]))
		done := false
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[maxD+k] < v[maxD+k+2]) {
				x = v[maxD+k+2] // down from diagonal k+1: add b[y-1]
			} else {
				x = v[maxD+k] + 1 // right from diagonal k-1: remove a[x-1]
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[maxD+k+1] = x
			if x >= n && y >= m {
				done = true
				break
			}
		}
		if done {
			break
		}
	}
	var ops []diffOp
	x, y := n, m
	for d := len(frontiers) - 1; d >= 0; d-- {
		at := func(k int) int { return frontiers[d][k+d+1] }
		k := x - y
		prevK := k - 1
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			prevK = k + 1
		}
		prevX, prevY := 0, 0
		if d > 0 {
			prevX = at(prevK)
			prevY = prevX - prevK
		}
		for x > prevX && y > prevY {
			x, y = x-1, y-1
			ops = append(ops, diffOp{' ', a[x], x, y})
		}
		if d == 0 {
			break
		}
		if x == prevX {
			y--
			ops = append(ops, diffOp{'+', b[y], x, y})
		} else {
			x--
			ops = append(ops, diffOp{'-', a[x], x, y})
		}
	}
	slices.Reverse(ops)
	return ops
}
