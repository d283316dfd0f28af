package engine

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// hashValue returns the SHA-256, in hex, of a canonical encoding of v: the
// same value always hashes the same, unknown values hash as "unknown", and
// marks are ignored (a sensitive value enters the hash, never the journal).
func hashValue(v cty.Value) string {
	h := sha256.New()
	writeValue(h, v)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// writeValue writes a self-delimiting encoding of v: every string carries its
// length, every collection its brackets.
func writeValue(h hash.Hash, v cty.Value) {
	v, _ = v.Unmark()
	ty := v.Type()
	switch {
	case !v.IsKnown():
		h.Write([]byte{'?'})
	case v.IsNull():
		h.Write([]byte{'~'})
	case ty == cty.String:
		s := v.AsString()
		fmt.Fprintf(h, "s%d:%s", len(s), s)
	case ty == cty.Number:
		fmt.Fprintf(h, "n%s;", v.AsBigFloat().Text('g', -1))
	case ty == cty.Bool:
		h.Write([]byte(strconv.FormatBool(v.True())[:1]))
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		h.Write([]byte{'['})
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			writeValue(h, e)
		}
		h.Write([]byte{']'})
	case ty.IsMapType() || ty.IsObjectType():
		h.Write([]byte{'{'})
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			writeValue(h, k)
			writeValue(h, e)
		}
		h.Write([]byte{'}'})
	default: // capsules: plans have none
		fmt.Fprintf(h, "c%s;", ty.FriendlyName())
	}
}

// definitionHash identifies what a step is before the run: its address, what
// it waits for and its arguments evaluated with the outputs of other steps
// unknown. It changes when the step's block, or a variable or local it uses,
// changes.
func definitionHash(addr string, dependsOn []hcl.Traversal, val cty.Value) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s", len(addr), addr)
	for _, tr := range dependsOn {
		s := traversalString(tr)
		fmt.Fprintf(h, "d%d:%s", len(s), s)
	}
	writeValue(h, val)
	return fmt.Sprintf("%x", h.Sum(nil))
}

func traversalString(tr hcl.Traversal) string {
	s := tr.RootName()
	for _, step := range tr[1:] {
		if a, ok := step.(hcl.TraverseAttr); ok {
			s += "." + a.Name
		}
	}
	return s
}
