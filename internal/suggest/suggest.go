package suggest

import (
	"sort"

	"github.com/agext/levenshtein"
)

// Closest returns the candidate closest to a misspelt name, for a "did you
// mean" hint, or "" when none is close: more than two edits away is
// another name, as hcl judges arguments and block types. Ties go to the
// first in sorted order, so the hint does not depend on map order.
func Closest(name string, candidates []string) string {
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	best, bestDist := "", 3
	for _, c := range sorted {
		if d := levenshtein.Distance(name, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}
