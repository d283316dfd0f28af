package steps

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// Config is the evaluated body of one step block, as the kind's Spec decoded
// it. Values that depend on steps not yet run are unknown while the engine
// validates a plan; during Apply every value is known. Config remembers which
// arguments were computed from sensitive values, so a kind can be stricter
// with them (a file whose content is a private key must not be world-readable).
type Config struct {
	val       cty.Value
	sensitive map[string]bool
	// marked are the paths where a sensitive mark sits, map keys and
	// attributes alike joined by dots: SensitiveKey tells one key of a map
	// argument from its neighbours.
	marked map[string]bool
	prefix string
}

// NewConfig wraps an evaluated step body. The value may carry cty marks; they
// are removed here and remembered per argument.
func NewConfig(v cty.Value) Config {
	v, marks := v.UnmarkDeepWithPaths()
	sensitive := map[string]bool{}
	marked := map[string]bool{}
	for _, pm := range marks {
		marked[markedPath(pm.Path)] = true
		path := ""
		sensitive[path] = len(pm.Path) == 0 || sensitive[path]
		for _, step := range pm.Path {
			attr, ok := step.(cty.GetAttrStep)
			if !ok {
				break
			}
			if path != "" {
				path += "."
			}
			path += attr.Name
			sensitive[path] = true
		}
	}
	return Config{val: v, sensitive: sensitive, marked: marked}
}

// markedPath joins a cty path's attribute names and string keys with dots,
// stopping at any other step (a list index: the whole list counts).
func markedPath(p cty.Path) string {
	var parts []string
	for _, step := range p {
		switch s := step.(type) {
		case cty.GetAttrStep:
			parts = append(parts, s.Name)
		case cty.IndexStep:
			if s.Key.Type() != cty.String || !s.Key.IsKnown() || s.Key.IsNull() {
				return strings.Join(parts, ".")
			}
			parts = append(parts, s.Key.AsString())
		default:
			return strings.Join(parts, ".")
		}
	}
	return strings.Join(parts, ".")
}

// SensitiveKey reports whether one key (or attribute) of a map or object
// argument was computed from a sensitive value: its own value, or the
// argument, or a block it is in, as a whole. Unlike Sensitive, a
// sensitive neighbour does not make it so.
func (c Config) SensitiveKey(name, key string) bool {
	path := c.Path(name) + "." + key
	if c.marked[""] || c.marked[path] {
		return true
	}
	for p := range c.marked {
		if strings.HasPrefix(p, path+".") || strings.HasPrefix(path, p+".") {
			return true
		}
	}
	return false
}

// Path returns the full name of an argument, with the names of the nested
// blocks it is in: "tls.ca_file".
func (c Config) Path(name string) string { return c.prefix + name }

func (c Config) attr(name string) cty.Value {
	if c.val.IsNull() || !c.val.IsKnown() || !c.val.Type().IsObjectType() || !c.val.Type().HasAttribute(name) {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	return c.val.GetAttr(name)
}

// Known reports whether an argument's value is wholly known.
func (c Config) Known(name string) bool { return c.attr(name).IsWhollyKnown() }

// Set reports whether an argument was given (is not null). An unknown value
// counts as given.
func (c Config) Set(name string) bool { return !c.attr(name).IsNull() }

// Sensitive reports whether an argument's value was computed from a
// sensitive value, or sits in a block or body that was marked as a whole.
func (c Config) Sensitive(name string) bool {
	path := c.Path(name)
	if c.sensitive[""] {
		return true
	}
	for {
		if c.sensitive[path] {
			return true
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return false
		}
		path = path[:i]
	}
}

// Value returns an argument's value, unmarked (see Sensitive and
// SensitiveKey for what was marked); null when it is absent.
func (c Config) Value(name string) cty.Value { return c.attr(name) }

// String returns a string argument, or "" when it is null or unknown.
func (c Config) String(name string) string {
	v := c.attr(name)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

// StringList returns a list-of-strings argument; null gives nil. A null
// element is an error (it is a mistake in the plan, never something to skip),
// and an unknown value yields ErrUnknown.
func (c Config) StringList(name string) ([]string, error) {
	v := c.attr(name)
	if v.IsNull() {
		return nil, nil
	}
	if !v.IsWhollyKnown() {
		return nil, ErrUnknown
	}
	if !(v.Type().IsListType() || v.Type().IsSetType() || v.Type().IsTupleType()) {
		return nil, attrErr(c.Path(name), "must be a list of strings")
	}
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || e.Type() != cty.String {
			return nil, attrErr(c.Path(name), "element %d must be a string, not null", len(out)+1)
		}
		out = append(out, e.AsString())
	}
	return out, nil
}

// Int returns a whole-number argument. Null gives 0 and false; an unknown
// value yields ErrUnknown; a fraction or a number out of int64 range is an
// error.
func (c Config) Int(name string) (int64, bool, error) {
	v := c.attr(name)
	if v.IsNull() {
		return 0, false, nil
	}
	if !v.IsKnown() {
		return 0, true, ErrUnknown
	}
	if v.Type() != cty.Number {
		return 0, true, attrErr(c.Path(name), "must be a number")
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact {
		return 0, true, attrErr(c.Path(name), "%s is not a whole number", bf.Text('g', -1))
	}
	return n, true, nil
}

// Bool returns a bool argument, def when it is null. An unknown value yields
// ErrUnknown.
func (c Config) Bool(name string, def bool) (bool, error) {
	v := c.attr(name)
	if v.IsNull() {
		return def, nil
	}
	if !v.IsKnown() {
		return false, ErrUnknown
	}
	if v.Type() != cty.Bool {
		return false, attrErr(c.Path(name), "must be true or false")
	}
	return v.True(), nil
}

// Block returns the nested block of that type, and false when it is absent.
func (c Config) Block(name string) (Config, bool) {
	v := c.attr(name)
	if v.IsNull() || !v.IsKnown() {
		return Config{}, false
	}
	return Config{val: v, sensitive: c.sensitive, marked: c.marked, prefix: c.Path(name) + "."}, true
}

// RequireString returns a string argument that must be given and non-empty.
// An unknown value yields ErrUnknown, so Validate can skip it.
func (c Config) RequireString(name string) (string, error) {
	if !c.Known(name) {
		return "", ErrUnknown
	}
	s := c.String(name)
	if s == "" {
		return "", attrErr(c.Path(name), "must not be empty")
	}
	return s, nil
}

// Duration parses a duration argument such as "720h" or "1m30s", with def
// used when the argument is null. An unknown value yields ErrUnknown.
func (c Config) Duration(name string, def time.Duration) (time.Duration, error) {
	if !c.Set(name) {
		return def, nil
	}
	if !c.Known(name) {
		return 0, ErrUnknown
	}
	s := c.String(name)
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, attrErr(c.Path(name), "%q is not a duration (examples: \"720h\", \"30s\")", s)
	}
	if d <= 0 {
		return 0, attrErr(c.Path(name), "%q must be positive", s)
	}
	return d, nil
}

// joinErrors joins every real problem (errors that are neither nil nor
// ErrUnknown). When there is none but some value was unknown, it returns
// ErrUnknown: Validate may return that (the engine takes it to mean "nothing
// wrong with what is known"), and Apply, where every value must be known,
// turns it into an internal error with mustBeKnown.
func joinErrors(errs ...error) error {
	var kept []error
	unknown := false
	for _, err := range errs {
		switch {
		case err == ErrUnknown:
			unknown = true
		case err != nil:
			kept = append(kept, err)
		}
	}
	if len(kept) == 0 && unknown {
		return ErrUnknown
	}
	return errors.Join(kept...)
}

// mustBeKnown turns ErrUnknown into an internal error for Apply, where every
// value must be known.
func mustBeKnown(err error) error {
	if err == ErrUnknown {
		return fmt.Errorf("internal error: a value is still unknown at apply time")
	}
	return err
}

// outputAttr returns one attribute of a step's outputs if it can be shown in
// a Fact: the outputs may come from a journal or from an engine that marked
// the sensitive ones, so a missing, null or unknown attribute is skipped
// rather than trusted, and a marked one is skipped because it was computed
// from a secret.
func outputAttr(outputs cty.Value, name string) (cty.Value, bool) {
	if outputs == cty.NilVal || outputs.IsMarked() || outputs.IsNull() || !outputs.IsKnown() {
		return cty.NilVal, false
	}
	if ty := outputs.Type(); !ty.IsObjectType() || !ty.HasAttribute(name) {
		return cty.NilVal, false
	}
	v := outputs.GetAttr(name)
	if v.ContainsMarked() || v.IsNull() || !v.IsWhollyKnown() {
		return cty.NilVal, false
	}
	return v, true
}

// outputString returns a string attribute of a step's outputs for a Fact;
// false when outputAttr would skip it or it is not a string.
func outputString(outputs cty.Value, name string) (string, bool) {
	v, ok := outputAttr(outputs, name)
	if !ok || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

// outputInt returns a whole-number attribute of a step's outputs for a Fact;
// false when outputAttr would skip it or it is not a whole int64.
func outputInt(outputs cty.Value, name string) (int64, bool) {
	v, ok := outputAttr(outputs, name)
	if !ok || v.Type() != cty.Number {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact {
		return 0, false
	}
	return n, true
}

// outputStrings returns a list-of-strings attribute of a step's outputs for
// a Fact; false when outputAttr would skip it, or it is not a list of
// strings or holds a null.
func outputStrings(outputs cty.Value, name string) ([]string, bool) {
	v, ok := outputAttr(outputs, name)
	if !ok || !(v.Type().IsListType() || v.Type().IsTupleType()) {
		return nil, false
	}
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || e.Type() != cty.String {
			return nil, false
		}
		out = append(out, e.AsString())
	}
	return out, true
}
