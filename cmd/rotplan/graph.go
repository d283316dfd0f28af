package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/plans"
)

const graphUsage = `Usage: rotplan graph [options] PLAN.hcl

Prints the plan's steps and what each waits for as a Graphviz DOT graph on
stdout, for review or for 'dot -Tsvg'. An arrow goes from a step to each step
that waits for it, so the graph reads left to right in the order of the run.
The plan is compiled as 'rotplan run' would compile it, so it needs the same
variables, and it is checked the same way; nothing is run and Vault is not
contacted.

Exit status: 0 when the graph was printed; 2 when the plan or the variables
are invalid.

Options:
`

func graphCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("graph", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var vars varSources
	vars.register(fs)
	var noColour bool
	colourFlag(fs, &noColour)
	fs.Usage = func() {
		fmt.Fprint(stderr, graphUsage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nExample:\n  rotplan graph -var-file prod.vars.hcl examples/prod.hcl | dot -Tsvg > prod.svg\n")
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "rotplan graph: give exactly one plan file")
		fs.Usage()
		return exitInvalid
	}
	parser := plans.NewParser()
	out := vars.printer(stderr, parser, noColour)
	l, diags := vars.load(parser, fs.Arg(0))
	prog := l.Program
	if prog == nil {
		out.print(diags)
		return exitInvalid
	}
	// Wrong arguments (a directory missing on this machine) leave the
	// graph as it is: draw it, and say what is wrong as warnings.
	for _, d := range diags {
		d.Severity = hcl.DiagWarning
	}
	out.print(diags)
	writeDOT(stdout, prog)
	return exitOK
}

// writeDOT prints the program's step graph in Graphviz DOT. Nodes come in the
// order the steps run; edges point from a dependency to the step that waits
// for it, ordered by the dependency and then the waiting step, each in run
// order, so that the same plan always prints the same text.
func writeDOT(w io.Writer, prog *engine.Program) {
	steps := prog.Steps()
	position := make(map[string]int, len(steps))
	for i, addr := range steps {
		position[addr] = i
	}
	fmt.Fprintln(w, "digraph rotplan {")
	fmt.Fprintln(w, "  rankdir=LR;")
	for _, addr := range steps {
		kind, name, _ := strings.Cut(addr, ".")
		// Kind and name are escaped apart: the \n between them is DOT's
		// line break, not an escaped backslash.
		label := `"` + dotEscape(kind) + `\n` + dotEscape(name) + `"`
		fmt.Fprintf(w, "  %s [label=%s, shape=box];\n", dotQuote(addr), label)
	}
	type edge struct{ from, to string }
	var edges []edge
	for _, addr := range steps {
		for _, dep := range prog.DependsOn(addr) {
			edges = append(edges, edge{dep, addr})
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		a, b := edges[i], edges[j]
		if a.from != b.from {
			return position[a.from] < position[b.from]
		}
		return position[a.to] < position[b.to]
	})
	for _, e := range edges {
		fmt.Fprintf(w, "  %s -> %s;\n", dotQuote(e.from), dotQuote(e.to))
	}
	fmt.Fprintln(w, "}")
}

// dotQuote returns s as a DOT double-quoted ID. Always quoting keeps the
// addresses, which hold a dot and may hold dashes or non-ASCII letters, from
// being read as numerals, keywords or several tokens.
func dotQuote(s string) string { return `"` + dotEscape(s) + `"` }

// dotEscape escapes s for use inside a DOT double-quoted string. Plan names
// are identifiers today, but the graph must not break, or mean something
// else, if a name ever carries a quote, a backslash (an escape in DOT labels)
// or a line break.
func dotEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`).Replace(s)
}
