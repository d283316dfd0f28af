package plans

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxSourceSize bounds what rotplan reads of a plan file, a variable file
// or a saved plan: thousands of steps take a few hundred kilobytes, and
// parsing holds several times a file's size in memory.
const MaxSourceSize = 4 << 20

// MaxNesting bounds how deep a plan, a variable file or a -var value nests
// brackets, braces, parentheses, strings, template interpolations and
// directives, operators and indexes. HCL's parser and evaluator recurse
// once per level, and a Go stack that overflows kills the process; real
// plans nest a few levels.
const MaxNesting = 512

// ReadSource reads a file rotplan was given to parse (a plan, a variable
// file, a saved plan) through MaxSourceSize. A device (/dev/zero), a
// socket or a directory is refused; a pipe (-var-file <(...)) is read, up
// to the limit. Opening without blocking keeps a FIFO with no writer from
// hanging rotplan.
func ReadSource(path string) ([]byte, hcl.Diagnostics) {
	bad := func(summary, detail string) ([]byte, hcl.Diagnostics) {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   detail,
			Subject:  &hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos},
		}}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return bad("Failed to read file", fmt.Sprintf("rotplan could not open %s: %s.", path, unwrapPathError(err)))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return bad("Failed to read file", fmt.Sprintf("rotplan could not read %s: %s.", path, unwrapPathError(err)))
	}
	if mode := fi.Mode(); !mode.IsRegular() && mode&fs.ModeNamedPipe == 0 {
		return bad("Not a regular file", fmt.Sprintf("%s is %s, not a file: give rotplan the path of a plan or variable file.", path, fileType(mode)))
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSourceSize+1))
	if err != nil {
		return bad("Failed to read file", fmt.Sprintf("rotplan could not read %s: %s.", path, unwrapPathError(err)))
	}
	if len(b) > MaxSourceSize {
		return bad("File too large", fmt.Sprintf("%s is larger than %d MiB, the most rotplan reads of a plan or variable file. Check that this is the file you meant.", path, MaxSourceSize>>20))
	}
	return b, nil
}

// fileType names what a non-regular file is, for a diagnostic.
func fileType(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeCharDevice != 0, mode&fs.ModeDevice != 0:
		return "a device"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}

// nestFrame is one open bracket, brace, parenthesis, string or template
// sequence; chain counts the operators, dots and indexes since the last
// comma, "=" or line break in it, each of which is a level of recursion
// in HCL's parser or evaluator ((a + b) + c, -(-x), a ? b : (c ? ...),
// x[0][0]).
type nestFrame struct {
	open  hclsyntax.TokenType
	chain int
}

// CheckNesting refuses source (of a file, or a -var value) that nests
// deeper than MaxNesting, with a diagnostic at the token where the limit is
// crossed. It runs HCL's own scanner, which does not recurse, before the
// parser, which does. It over-counts rather than under-counts (every
// operator in a line adds one); lexical errors are left to the parser.
func CheckNesting(src []byte, filename string) hcl.Diagnostics {
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	stack := []nestFrame{{open: hclsyntax.TokenOBrace}} // the file's body
	depth := 0                                          // frames but the body's, chains and directives
	directives := 0                                     // %{if} and %{for} not ended yet
	prev := hclsyntax.TokenNil
	for i, tok := range tokens {
		top := &stack[len(stack)-1]
		switch tok.Type {
		case hclsyntax.TokenOBrack:
			if endsTerm(prev) { // an index, x[0]: one more level around x
				top.chain++
				depth++
			}
			fallthrough
		case hclsyntax.TokenOBrace, hclsyntax.TokenOParen, hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			stack = append(stack, nestFrame{open: tok.Type})
			depth++
			if tok.Type == hclsyntax.TokenTemplateControl && i+1 < len(tokens) && tokens[i+1].Type == hclsyntax.TokenIdent {
				// %{if} and %{for} nest until %{endif} and %{endfor}.
				switch string(tokens[i+1].Bytes) {
				case "if", "for":
					directives++
					depth++
				case "endif", "endfor":
					if directives > 0 {
						directives--
						depth--
					}
				}
			}
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenCQuote,
			hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			if len(stack) > 1 {
				depth -= 1 + top.chain
				stack = stack[:len(stack)-1]
			}
		case hclsyntax.TokenPlus, hclsyntax.TokenMinus, hclsyntax.TokenStar, hclsyntax.TokenSlash, hclsyntax.TokenPercent,
			hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual, hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq,
			hclsyntax.TokenGreaterThan, hclsyntax.TokenGreaterThanEq, hclsyntax.TokenAnd, hclsyntax.TokenOr,
			hclsyntax.TokenBang, hclsyntax.TokenQuestion, hclsyntax.TokenDot:
			top.chain++
			depth++
		case hclsyntax.TokenComma, hclsyntax.TokenEqual:
			depth -= top.chain
			top.chain = 0
		case hclsyntax.TokenNewline:
			// A line break ends an argument in a body or an object, not an
			// expression inside parentheses or brackets.
			if top.open == hclsyntax.TokenOBrace {
				depth -= top.chain
				top.chain = 0
			}
		}
		if tok.Type != hclsyntax.TokenComment && tok.Type != hclsyntax.TokenNewline {
			prev = tok.Type
		}
		if depth > MaxNesting {
			return hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Expression nested too deeply",
				Detail: fmt.Sprintf("Here the nesting of brackets, braces, parentheses, strings, templates, operators and indexes goes past %d levels, the most rotplan reads. "+
					"Split the expression into local values.", MaxNesting),
				Subject: tok.Range.Ptr(),
			}}
		}
	}
	return nil
}

// endsTerm reports whether a token of type t can end a term, so that a "["
// after it indexes the term rather than starting a tuple.
func endsTerm(t hclsyntax.TokenType) bool {
	switch t {
	case hclsyntax.TokenIdent, hclsyntax.TokenNumberLit, hclsyntax.TokenCParen, hclsyntax.TokenCBrack,
		hclsyntax.TokenCBrace, hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenStar:
		return true
	}
	return false
}

// parseSource reads and parses a plan or variable file, within the limits
// above.
func (p *Parser) parseSource(path string) (*hcl.File, hcl.Diagnostics) {
	src, diags := ReadSource(path)
	if diags.HasErrors() {
		return nil, diags
	}
	if diags := CheckNesting(src, path); diags.HasErrors() {
		return nil, diags
	}
	return p.p.ParseHCL(src, path)
}
