package plans

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
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

// ReadSource reads a plan or variable file through MaxSourceSize (see
// ReadLimited).
func ReadSource(path string) ([]byte, hcl.Diagnostics) {
	return ReadLimited(path, MaxSourceSize)
}

// ReadLimited reads a file a user gave rotplan to read (a plan, a
// variable file, a saved plan), up to limit bytes: a larger one is an
// error. A device (/dev/zero), a socket or a directory is refused; a pipe
// (-var-file <(...)) is read, up to the limit. Opening without blocking
// keeps a FIFO with no writer from hanging rotplan.
func ReadLimited(path string, limit int) ([]byte, hcl.Diagnostics) {
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
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return bad("Failed to read file", fmt.Sprintf("rotplan could not read %s: %s.", path, unwrapPathError(err)))
	}
	if len(b) > limit {
		return bad("File too large", fmt.Sprintf("%s is larger than %d MiB, the most rotplan reads of such a file. Check that this is the file you meant.", path, limit>>20))
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
	file, diags := p.p.ParseHCL(src, path)
	if file == nil {
		return nil, diags
	}
	if body, ok := file.Body.(*hclsyntax.Body); ok {
		meterExpressions(body)
	}
	return file, diags
}

// MaxValueSize bounds the size of any value a plan computes: a local, a
// variable's default, a function's arguments and result, a step's
// arguments, a for_each. Certificates, keys and lists of thousands of
// names take far less; every value is hashed, and some are journaled.
const MaxValueSize = 16 << 20

// elementSize is what ValueSize counts for each value besides the bytes of
// a string or a key: roughly what cty holds for it, so that a list of
// millions of empty strings counts as what it costs.
const elementSize = 16

// ValueSize estimates how many bytes v takes: the bytes of its strings and
// keys, and elementSize for every value in it. It stops counting once it
// passes limit, so that a value that shares one large part many times over
// (a list of a list, doubled 60 times) costs no more to measure than limit.
// A value nested more than MaxNesting deep counts as larger than limit.
func ValueSize(v cty.Value, limit int) int {
	size, deep := measure(v, limit)
	if deep {
		return limit + 1
	}
	return size
}

// measure returns ValueSize's estimate of v's size, and whether v nests
// collections more than MaxNesting deep; it stops at either bound. Only a
// chain of locals, each a list of the one before, makes such a value, and
// cty's operations on it cost its depth each: thousands of them took
// minutes.
func measure(v cty.Value, limit int) (size int, deep bool) {
	var walk func(v cty.Value, depth int)
	walk = func(v cty.Value, depth int) {
		v, _ = v.Unmark()
		size += elementSize
		if deep = deep || depth > MaxNesting; deep || size > limit || v.IsNull() || !v.IsKnown() {
			return
		}
		ty := v.Type()
		switch {
		case ty == cty.String:
			size += len(v.AsString())
		case ty.IsListType() || ty.IsSetType() || ty.IsTupleType() || ty.IsMapType() || ty.IsObjectType():
			for it := v.ElementIterator(); it.Next() && size <= limit && !deep; {
				k, e := it.Element()
				if kt := k.Type(); kt == cty.String && (ty.IsMapType() || ty.IsObjectType()) {
					size += len(k.AsString())
				}
				walk(e, depth+1)
			}
		}
	}
	walk(v, 0)
	return size, deep
}

// CheckValueSize returns a diagnostic when v, which what names ("local.x",
// "the argument content"), is larger than MaxValueSize or nested more than
// MaxNesting deep; nil otherwise.
func CheckValueSize(v cty.Value, what string, rng hcl.Range) *hcl.Diagnostic {
	switch size, deep := measure(v, MaxValueSize); {
	case deep:
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Value nested too deeply",
			Detail:   fmt.Sprintf("%s nests lists, maps or objects more than %d deep, the most rotplan holds.", what, MaxNesting),
			Subject:  rng.Ptr(),
		}
	case size > MaxValueSize:
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Value too large",
			Detail: fmt.Sprintf("%s is larger than %d MiB, the most rotplan holds in one value. "+
				"A value that refers to another twice, or repeats one in a for expression, doubles at every step: check the expression.", what, MaxValueSize>>20),
			Subject: rng.Ptr(),
		}
	}
	return nil
}

// errTooLarge is a function's error when its result would pass
// MaxValueSize.
var errTooLarge = fmt.Errorf("the result would be larger than %d MiB, the most rotplan holds in one value", MaxValueSize>>20)

// bounded wraps a function so that neither its arguments together nor its
// result pass MaxValueSize, and, for the functions whose result can be far
// larger than their arguments (estimates, by name), refuses before it
// builds such a result. Its parameters take every value, unknown and
// marked ones included, and pass them on to f unchanged: f keeps its own
// rules for those, and its refinements of unknown results.
func bounded(name string, f function.Function) function.Function {
	open := func(p function.Parameter) function.Parameter {
		p.AllowUnknown, p.AllowMarked, p.AllowNull, p.AllowDynamicType = true, true, true, true
		return p
	}
	params := make([]function.Parameter, len(f.Params()))
	for i, p := range f.Params() {
		params[i] = open(p)
	}
	var varParam *function.Parameter
	if vp := f.VarParam(); vp != nil {
		p := open(*vp)
		varParam = &p
	}
	estimate := estimates[name]
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      params,
		VarParam:    varParam,
		// The checks come before f's type, which some functions find by
		// doing the work (jsondecode decodes its argument).
		Type: func(args []cty.Value) (cty.Type, error) {
			total := 0
			for _, a := range args {
				if total += ValueSize(a, MaxValueSize); total > MaxValueSize {
					return cty.NilType, fmt.Errorf("the arguments are larger than %d MiB together, the most rotplan holds in one value", MaxValueSize>>20)
				}
			}
			if estimate != nil {
				known := make([]cty.Value, len(args))
				for i, a := range args {
					if known[i], _ = a.UnmarkDeep(); !known[i].IsWhollyKnown() || known[i].IsNull() {
						return f.ReturnTypeForValues(args) // nothing to estimate
					}
				}
				if err := estimate(known); err != nil {
					return cty.NilType, err
				}
			}
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			v, err := f.Call(args)
			if err == nil && ValueSize(v, MaxValueSize) > MaxValueSize {
				return cty.NilVal, errTooLarge
			}
			return v, err
		},
	})
}

// estimates refuse the calls of the functions whose result can be far
// larger than their arguments (known, not null, unmarked) when it would
// pass MaxValueSize, before the function builds it. The other functions
// return at most a small multiple of what they are given.
var estimates = map[string]func(args []cty.Value) error{
	"format": func(args []cty.Value) error {
		return tooLarge(formatSize(args[0].AsString()) + argsSize(args[1:]))
	},
	"formatlist": func(args []cty.Value) error {
		n := 1
		for _, a := range args[1:] {
			if ty := a.Type(); ty.IsListType() || ty.IsTupleType() || ty.IsSetType() {
				n = max(n, a.LengthInt())
			}
		}
		return tooLarge(saturatingMul(n, formatSize(args[0].AsString())) + argsSize(args[1:]))
	},
	"join": func(args []cty.Value) error {
		n := 0
		for _, l := range args[1:] {
			n += l.LengthInt()
		}
		return tooLarge(saturatingMul(n, len(args[0].AsString())) + argsSize(args[1:]))
	},
	"replace": func(args []cty.Value) error {
		s, sub, repl := args[0].AsString(), args[1].AsString(), args[2].AsString()
		return tooLarge(len(s) + saturatingMul(matches(s, sub, MaxValueSize/(len(repl)+elementSize)+1), len(repl)))
	},
	"indent": func(args []cty.Value) error {
		n, _ := args[0].AsBigFloat().Int64()
		s := args[1].AsString()
		return tooLarge(len(s) + saturatingMul(strings.Count(s, "\n"), int(min(max(n, 0), MaxValueSize+1))))
	},
	"split": func(args []cty.Value) error {
		s := args[1].AsString()
		return tooLarge(len(s) + saturatingMul(matches(s, args[0].AsString(), MaxValueSize/elementSize+1), elementSize))
	},
	"regexall": func(args []cty.Value) error {
		s := args[1].AsString()
		return tooLarge(len(s) + saturatingMul(matches(s, "/"+args[0].AsString()+"/", MaxValueSize/elementSize+1), elementSize*8))
	},
	"csvdecode": func(args []cty.Value) error {
		s := args[0].AsString()
		return tooLarge(len(s) + saturatingMul(strings.Count(s, ",")+strings.Count(s, "\n")+1, elementSize*4))
	},
	"jsondecode": func(args []cty.Value) error {
		s := args[0].AsString()
		if jsonDepth(s) > MaxNesting {
			return fmt.Errorf("the JSON nests arrays and objects more than %d deep, the most rotplan reads", MaxNesting)
		}
		return tooLarge(len(s) + saturatingMul(strings.Count(s, ",")+strings.Count(s, ":")+1, elementSize*2))
	},
}

// tooLarge is errTooLarge when size passes MaxValueSize.
func tooLarge(size int) error {
	if size > MaxValueSize {
		return errTooLarge
	}
	return nil
}

// formatSize is the length of a format string with the widths and
// precisions of its verbs added: format("%09999999d", 1) is ten million
// bytes long.
func formatSize(f string) int {
	size := len(f)
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		// Every number between the % and the verb's letter counts: the
		// width, the precision, an argument index.
		n := 0
		for i++; i < len(f) && f[i] != '%' && !('a' <= f[i] && f[i] <= 'z' || 'A' <= f[i] && f[i] <= 'Z'); i++ {
			if '0' <= f[i] && f[i] <= '9' {
				n = min(n*10+int(f[i]-'0'), MaxValueSize+1)
				continue
			}
			size, n = min(size+n, MaxValueSize+1), 0
		}
		size = min(size+n, MaxValueSize+1)
	}
	return size
}

// matches counts, up to limit, the places a replace or split with sub
// finds in s: sub is a regular expression when written /like this/ (as
// replace takes it), and "" matches between every two characters.
func matches(s, sub string, limit int) int {
	if len(sub) > 1 && sub[0] == '/' && sub[len(sub)-1] == '/' {
		re, err := regexp.Compile(sub[1 : len(sub)-1])
		if err != nil {
			return 0 // the function reports the error
		}
		return len(re.FindAllStringIndex(s, limit))
	}
	if sub == "" {
		return min(utf8.RuneCountInString(s)+1, limit)
	}
	return min(strings.Count(s, sub), limit)
}

// jsonDepth is how deep JSON text nests arrays and objects (cty decodes it
// recursively).
func jsonDepth(s string) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

func argsSize(args []cty.Value) int {
	size := 0
	for _, a := range args {
		size += ValueSize(a, MaxValueSize)
	}
	return size
}

// saturatingMul multiplies sizes, stopping just past MaxValueSize.
func saturatingMul(a, b int) int {
	if a != 0 && b > (MaxValueSize+1)/a {
		return MaxValueSize + 1
	}
	return a * b
}
