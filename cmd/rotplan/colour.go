package main

import (
	"flag"
	"io"
	"os"

	"golang.org/x/term"
)

// palette paints words with ANSI colours for a terminal. Its zero value
// paints nothing, so that whatever is not known to go to a terminal (a
// log, a pipe, a golden file, JSON) stays plain text.
type palette struct{ on bool }

// ANSI SGR parameters of the palette's roles.
const (
	sgrGreen  = "32"
	sgrYellow = "33"
	sgrRed    = "31"
	sgrCyan   = "36"
	sgrDim    = "2"
	sgrBold   = "1;"
)

func (p palette) paint(sgr, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + sgr + "m" + s + "\x1b[0m"
}

// good paints what went as it should: a create, a run complete.
func (p palette) good(s string) string { return p.paint(sgrGreen, s) }

// caution paints what deserves a look: a replace, a warning, a rollback.
func (p palette) caution(s string) string { return p.paint(sgrYellow, s) }

// bad paints what went wrong: an error, a failure.
func (p palette) bad(s string) string { return p.paint(sgrBold+sgrRed, s) }

// check paints what only reads: a verify.
func (p palette) check(s string) string { return p.paint(sgrCyan, s) }

// faint paints what changes nothing.
func (p palette) faint(s string) string { return p.paint(sgrDim, s) }

// colours is the palette for what goes to w: colour on a terminal only, and
// not when the user said no, with -no-color or NO_COLOR (https://no-color.org:
// any value but the empty one). TERM=dumb, as Emacs' shell sets it, cannot
// show colour either.
func colours(w io.Writer, noColour bool) palette {
	if noColour || os.Getenv("NO_COLOR") != "" {
		return palette{}
	}
	_, ok := terminalWidth(w)
	return palette{on: ok}
}

// colourFlag registers -no-color, which every command that prints accepts.
func colourFlag(fs *flag.FlagSet, noColour *bool) {
	fs.BoolVar(noColour, "no-color", false, "print no colour, even on a terminal (as does NO_COLOR=1; see docs/cli.md)")
}

// terminal is a writer that says it is a terminal, and how wide: what a
// test gives to have rotplan print as on one.
type terminal interface {
	io.Writer
	terminalWidth() int
}

// defaultWidth is the width of a terminal that does not say (a pty no one
// sized).
const defaultWidth = 80

// terminalWidth reports whether w is a terminal that can show colour and a
// line rewritten in place, and how many columns it has.
func terminalWidth(w io.Writer) (width int, ok bool) {
	switch w := w.(type) {
	case terminal:
		return w.terminalWidth(), true
	case *os.File:
		fd := int(w.Fd())
		if !term.IsTerminal(fd) || os.Getenv("TERM") == "dumb" {
			return 0, false
		}
		if width, _, err := term.GetSize(fd); err == nil && width > 0 {
			return width, true
		}
		return defaultWidth, true
	}
	return 0, false
}
