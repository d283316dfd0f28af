package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
	sum := sha256.Sum256(appendValue(make([]byte, 0, 1024), v))
	return hex.EncodeToString(sum[:])
}

// appendValue appends a self-delimiting encoding of v: every string carries
// its length, every collection its brackets. The encoding is part of the
// journal's format (definition hashes are compared across runs): it must
// not change.
func appendValue(b []byte, v cty.Value) []byte {
	v, _ = v.Unmark()
	ty := v.Type()
	switch {
	case !v.IsKnown():
		return append(b, '?')
	case v.IsNull():
		return append(b, '~')
	case ty == cty.String:
		s := v.AsString()
		b = append(b, 's')
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		return append(b, s...)
	case ty == cty.Number:
		b = append(b, 'n')
		b = v.AsBigFloat().Append(b, 'g', -1)
		return append(b, ';')
	case ty == cty.Bool:
		if v.True() {
			return append(b, 't')
		}
		return append(b, 'f')
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		b = append(b, '[')
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			b = appendValue(b, e)
		}
		return append(b, ']')
	case ty.IsMapType() || ty.IsObjectType():
		b = append(b, '{')
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			b = appendValue(b, k)
			b = appendValue(b, e)
		}
		return append(b, '}')
	default: // capsules: plans have none
		b = append(b, 'c')
		b = append(b, ty.FriendlyName()...)
		return append(b, ';')
	}
}

// definitionHash identifies what a step instance is before the run: its
// address, the tokens of its block's body (bodyDigest: so an edited
// expression counts even where its value is still unknown, as in
// upper(issue.a.serial_number); comments and layout do not count) and its
// arguments evaluated with the outputs of other steps unknown (so a changed
// variable, local or for_each value counts).
func definitionHash(addr string, bodyDigest []byte, val cty.Value) string {
	b := make([]byte, 0, 1024)
	b = strconv.AppendInt(b, int64(len(addr)), 10)
	b = append(b, ':')
	b = append(b, addr...)
	b = append(b, bodyDigest...)
	sum := sha256.Sum256(appendValue(b, val))
	return hex.EncodeToString(sum[:])
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
