package engine

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rotplan/rotplan/plans"
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

// definitionHash identifies what a step instance is before the run: its
// address, the tokens of its block's body (bodyDigest: so an edited
// expression counts even where its value is still unknown, as in
// upper(issue.a.serial_number); comments and layout do not count) and its
// arguments evaluated with the outputs of other steps unknown (so a changed
// variable, local or for_each value counts).
func definitionHash(addr string, bodyDigest []byte, val cty.Value) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s", len(addr), addr)
	h.Write(bodyDigest)
	writeValue(h, val)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// bodyDigest hashes the tokens of a step block's body, without comments and
// newlines, once for all its instances.
func bodyDigest(body []byte) []byte {
	h := sha256.New()
	tokens, _ := hclsyntax.LexConfig(body, "", hcl.InitialPos)
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenComment, hclsyntax.TokenNewline, hclsyntax.TokenEOF:
			continue
		}
		fmt.Fprintf(h, "t%d:%d:%s", tok.Type, len(tok.Bytes), tok.Bytes)
	}
	return h.Sum(nil)
}

// bodySource returns the source bytes of a step's body.
func (p *Program) bodySource(s *plans.Step) []byte {
	body, ok := s.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	r := body.SrcRange
	if r.Start.Byte < 0 || r.End.Byte > len(p.plan.Source) || r.Start.Byte > r.End.Byte {
		return nil
	}
	return p.plan.Source[r.Start.Byte:r.End.Byte]
}
