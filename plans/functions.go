package plans

import (
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// SensitiveMark is the cty mark carried by sensitive values (private keys,
// sensitive variables) and everything computed from them. Marked values are
// never printed, logged or journaled.
const SensitiveMark = "sensitive"

// Functions returns the functions a plan may call: the cty standard library
// under Terraform's names, plus file, fileexists, env, basename, dirname and
// sensitive. Relative paths given to file and fileexists are resolved
// against dir, the plan's directory. Every function is bounded (see
// MaxValueSize).
func Functions(dir string) map[string]function.Function {
	funcs := map[string]function.Function{
		"abs":             stdlib.AbsoluteFunc,
		"ceil":            stdlib.CeilFunc,
		"chomp":           stdlib.ChompFunc,
		"coalesce":        stdlib.CoalesceFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"csvdecode":       stdlib.CSVDecodeFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"flatten":         stdlib.FlattenFunc,
		"floor":           stdlib.FloorFunc,
		"format":          stdlib.FormatFunc,
		"formatdate":      stdlib.FormatDateFunc,
		"formatlist":      stdlib.FormatListFunc,
		"indent":          stdlib.IndentFunc,
		"join":            stdlib.JoinFunc,
		"jsondecode":      stdlib.JSONDecodeFunc,
		"jsonencode":      stdlib.JSONEncodeFunc,
		"keys":            stdlib.KeysFunc,
		"length":          stdlib.LengthFunc,
		"lookup":          stdlib.LookupFunc,
		"lower":           stdlib.LowerFunc,
		"max":             stdlib.MaxFunc,
		"merge":           stdlib.MergeFunc,
		"min":             stdlib.MinFunc,
		"parseint":        stdlib.ParseIntFunc,
		"range":           stdlib.RangeFunc,
		"regex":           stdlib.RegexFunc,
		"regexall":        stdlib.RegexAllFunc,
		"replace":         stdlib.ReplaceFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setunion":        stdlib.SetUnionFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"split":           stdlib.SplitFunc,
		"strrev":          stdlib.ReverseFunc,
		"substr":          stdlib.SubstrFunc,
		"timeadd":         stdlib.TimeAddFunc,
		"tolist":          stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":           stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"toset":           stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring":        stdlib.MakeToFunc(cty.String),
		"tonumber":        stdlib.MakeToFunc(cty.Number),
		"title":           stdlib.TitleFunc,
		"trim":            stdlib.TrimFunc,
		"trimprefix":      stdlib.TrimPrefixFunc,
		"trimspace":       stdlib.TrimSpaceFunc,
		"trimsuffix":      stdlib.TrimSuffixFunc,
		"upper":           stdlib.UpperFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,

		"file":       fileFunc(dir),
		"fileexists": fileExistsFunc(dir),
		"env":        envFunc,
		"basename":   pathFunc(filepath.Base),
		"dirname":    pathFunc(filepath.Dir),
		"sensitive":  sensitiveFunc,
	}
	for name, f := range funcs {
		funcs[name] = bounded(name, f)
	}
	return funcs
}

func resolve(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// maxFileSize bounds what file() reads: certificates and keys are small.
const maxFileSize = 16 << 20

func fileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads a UTF-8 text file; relative paths are relative to the plan.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			path := resolve(dir, args[0].AsString())
			// A device or a pipe could block forever or never end.
			fi, err := os.Stat(path)
			switch {
			case err != nil:
				return cty.NilVal, function.NewArgErrorf(0, "cannot read %s: %s", path, unwrapPathError(err))
			case !fi.Mode().IsRegular():
				return cty.NilVal, function.NewArgErrorf(0, "%s is not a regular file", path)
			case fi.Size() > maxFileSize:
				return cty.NilVal, function.NewArgErrorf(0, "%s is larger than %d MiB", path, maxFileSize>>20)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return cty.NilVal, function.NewArgErrorf(0, "cannot read %s: %s", path, unwrapPathError(err))
			}
			if !utf8.Valid(data) {
				return cty.NilVal, function.NewArgErrorf(0, "%s is not UTF-8 text", path)
			}
			return cty.StringVal(string(data)), nil
		},
	})
}

func fileExistsFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description: "Whether a file exists; relative paths are relative to the plan.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			_, err := os.Stat(resolve(dir, args[0].AsString()))
			return cty.BoolVal(err == nil), nil
		},
	})
}

// envFunc reads an environment variable ("" when unset), as Packer's env
// does, so variable defaults can follow VAULT_CACERT and friends. A second
// argument is the value when the variable is unset or empty:
// env("VAULT_ADDR", "https://127.0.0.1:8200").
var envFunc = function.New(&function.Spec{
	Description: "The value of an environment variable; when it is unset or empty, the second argument, or \"\".",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.String},
	Type: func(args []cty.Value) (cty.Type, error) {
		if len(args) > 2 {
			return cty.NilType, function.NewArgErrorf(2, "env takes a name and at most one default, not %d arguments", len(args))
		}
		return cty.String, nil
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if v := os.Getenv(args[0].AsString()); v != "" || len(args) == 1 {
			return cty.StringVal(v), nil
		}
		return args[1], nil
	},
})

func pathFunc(f func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(f(args[0].AsString())), nil
		},
	})
}

// sensitiveFunc marks a value sensitive, for secrets that come from files or
// variables rather than from a step's sensitive output.
var sensitiveFunc = function.New(&function.Spec{
	Description: "Marks a value as sensitive: it and what is computed from it are never shown.",
	Params: []function.Parameter{{
		Name: "value", Type: cty.DynamicPseudoType, AllowMarked: true,
		AllowUnknown: true, AllowNull: true, AllowDynamicType: true,
	}},
	Type: func(args []cty.Value) (cty.Type, error) { return args[0].Type(), nil },
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return args[0].Mark(SensitiveMark), nil
	},
})

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
