package engine

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/rotplan/rotplan/internal/jsonenc"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// conformOutputs checks that a kind returned what its Outputs promise and
// marks the sensitive attributes.
func conformOutputs(n *node, out cty.Value) (cty.Value, error) {
	info := n.base.outputs
	if !out.Type().Equals(info.typ) {
		conv, err := convert.Convert(out, info.typ)
		if err != nil {
			return cty.NilVal, fmt.Errorf("internal error: the step's outputs do not match its declared outputs: %v", err)
		}
		out = conv
	}
	if out.IsNull() || !out.IsWhollyKnown() {
		return cty.NilVal, fmt.Errorf("internal error: the step's outputs do not match its declared outputs: null or unknown")
	}
	if len(info.sensitive) == 0 {
		return out, nil
	}
	attrs := out.AsValueMap()
	for _, name := range info.sensitive {
		attrs[name] = attrs[name].Mark(plans.SensitiveMark)
	}
	return cty.ObjectVal(attrs), nil
}

// outputInfo is what the engine looks up in a kind's outputs for every step
// that runs, worked out once per block.
type outputInfo struct {
	typ cty.Type // the object type of the outputs
	// sensitive and journaled are the names of the sensitive outputs and
	// of the others, sorted.
	sensitive, journaled []string
}

func newOutputInfo(kind steps.Step) *outputInfo {
	info := &outputInfo{typ: steps.OutputType(kind)}
	for name, o := range kind.Outputs() {
		if o.Sensitive {
			info.sensitive = append(info.sensitive, name)
		} else {
			info.journaled = append(info.journaled, name)
		}
	}
	slices.Sort(info.sensitive)
	slices.Sort(info.journaled)
	return info
}

// journalOutputs encodes a step's outputs for the journal, without the
// sensitive ones. A value still marked sensitive is refused, as a safety net;
// kinds see their arguments unmarked, so it is each kind's duty never to copy
// a sensitive argument into an output it does not declare sensitive.
func journalOutputs(n *node, out cty.Value) (json.RawMessage, error) {
	names := n.base.outputs.journaled
	b := append(make([]byte, 0, 256), '{')
	for i, name := range names {
		v := out.GetAttr(name)
		if v.ContainsMarked() {
			return nil, fmt.Errorf("output %s is marked sensitive and cannot be journaled", name)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, name)
		b = append(b, ':')
		var ok bool
		if b, ok = jsonenc.AppendValue(b, v); !ok {
			// Not a type of value the fast path writes: cty/json
			// writes it, or says what is wrong with it.
			raw, err := ctyjson.Marshal(v, v.Type())
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", name, err)
			}
			b = append(b, raw...)
		}
	}
	return append(b, '}'), nil
}

// restoreOutputs reads journaled outputs back. The sensitive ones were never
// journaled: they come back unknown and marked, and Resume makes sure no
// step that runs reads them.
func restoreOutputs(kind steps.Step, raw json.RawMessage) (cty.Value, error) {
	types := map[string]cty.Type{}
	for name, o := range kind.Outputs() {
		if !o.Sensitive {
			types[name] = o.Type
		}
	}
	v, err := ctyjson.Unmarshal(raw, cty.Object(types))
	if err != nil {
		return cty.NilVal, err
	}
	attrs := v.AsValueMap()
	if attrs == nil {
		attrs = map[string]cty.Value{}
	}
	for name, o := range kind.Outputs() {
		if o.Sensitive {
			attrs[name] = cty.UnknownVal(o.Type).Mark(plans.SensitiveMark)
		}
	}
	return objectOf(attrs), nil
}
