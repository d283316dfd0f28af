package plans

import "github.com/agext/levenshtein"

// Suggest returns the candidate closest to a misspelt name, for a "did you
// mean" hint, or "" when none is close: more than two edits away is
// another name, as hcl judges arguments and block types.
func Suggest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(name, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}
