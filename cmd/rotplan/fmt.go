package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aymanbagabas/go-udiff"
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
	path = filepath.ToSlash(path)
	diff, err := udiff.ToUnified("old/"+path, "new/"+path, string(a), udiff.Lines(string(a), string(b)), diffContext)
	if err != nil {
		panic(err) // the edits were computed from a: they always apply
	}
	io.WriteString(w, diff)
}

// diffContext is how many unchanged lines surround each change in a diff.
const diffContext = 3
