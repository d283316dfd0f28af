// Package jsonenc appends JSON to byte slices, for what rotplan writes by
// the thousand in a large run (journal records and the step outputs they
// hold), where encoding/json's reflection and cty's JSON encoder showed in
// the profiles. Readers decode it with encoding/json and cty/json as
// before: it is plain JSON, with strings escaped as encoding/json escapes
// them (HTML characters aside, which it leaves as they are).
package jsonenc
