package jsonenc

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/zclconf/go-cty/cty"
)

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// with encoding/json; so do the escapes it makes, but for <, > and &.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but not valid JavaScript;
		// encoding/json escapes them, and so does this.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendValue appends v as cty/json's Marshal(v, v.Type()) writes it, for
// the types step outputs have: strings, numbers, bools, and lists, sets,
// tuples, maps and objects of them, null or not. ok is false, and b is
// returned as it was, for anything else (an unknown or marked value, a
// dynamic type, a capsule): the caller falls back to cty/json, which
// reports what is wrong.
func AppendValue(b []byte, v cty.Value) (_ []byte, ok bool) {
	out, ok := appendValue(b, v)
	if !ok {
		return b, false
	}
	return out, true
}

func appendValue(b []byte, v cty.Value) ([]byte, bool) {
	if !v.IsKnown() || v.IsMarked() {
		return b, false
	}
	ty := v.Type()
	if v.IsNull() {
		if ty == cty.DynamicPseudoType {
			return b, false
		}
		return append(b, "null"...), true
	}
	switch {
	case ty == cty.String:
		return AppendString(b, v.AsString()), true
	case ty == cty.Bool:
		return strconv.AppendBool(b, v.True()), true
	case ty == cty.Number:
		if i, acc := v.AsBigFloat().Int64(); acc == 0 {
			return strconv.AppendInt(b, i, 10), true
		}
		return append(b, v.AsBigFloat().Text('f', -1)...), true
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		b = append(b, '[')
		first := true
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if !first {
				b = append(b, ',')
			}
			first = false
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case ty.IsMapType():
		// The iterator yields the keys in order.
		b = append(b, '{')
		first := true
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if !first {
				b = append(b, ',')
			}
			first = false
			b = AppendString(b, k.AsString())
			b = append(b, ':')
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	case ty.IsObjectType():
		names := make([]string, 0, len(ty.AttributeTypes()))
		for name := range ty.AttributeTypes() {
			names = append(names, name)
		}
		slices.Sort(names)
		b = append(b, '{')
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, name)
			b = append(b, ':')
			var ok bool
			if b, ok = appendValue(b, v.GetAttr(name)); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	}
	return b, false
}
