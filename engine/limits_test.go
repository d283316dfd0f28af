package engine

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testchild"
)

// doubling declares locals a0 to a{n}, each twice the one before, made by
// step from "local.a{i-1}", starting from a0.
func doubling(a0 string, n int, step string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "locals {\n  a0 = %s\n", a0)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  a%d = %s\n", i, strings.ReplaceAll(step, "PREV", fmt.Sprintf("local.a%d", i-1)))
	}
	return b.String() + "}\n"
}

// megabyte is a plan fragment whose local.a16 is a 1 MiB string.
var megabyte = doubling(`"0123456789abcdef"`, 16, `"${PREV}${PREV}"`)

// TestValuesTooLargeAreRefused evaluates plans whose values grow without
// bound, a few hundred bytes of source each: every one must be refused
// with a diagnostic in the plan, in bounded memory. Before the limits they
// ran the process out of memory, so each runs in a child process whose
// address space is bounded.
func TestValuesTooLargeAreRefused(t *testing.T) {
	list := "[" + strings.Repeat("1, ", 999) + "1]"
	nestedFor := fmt.Sprintf("[for a in %s: [for b in %s: [for c in %s: c]]]", list, list, list)
	tests := []struct {
		name, src, want string
		vars            map[string]string
	}{
		{"self-doubling strings", doubling(`"0123456789abcdef"`, 60, `"${PREV}${PREV}"`), "larger than 16 MiB", nil},
		{"self-doubling lists", doubling(`["0123456789abcdef"]`, 60, `concat(PREV, PREV)`), "larger than 16 MiB", nil},
		{"self-doubling tuples", doubling(`"0123456789abcdef"`, 60, `[PREV, PREV]`), "is larger than 16 MiB", nil},
		{"format width", "locals {\n  x = format(\"%0999999999d\", 1)\n}\n", "larger than 16 MiB", nil},
		{"formatlist width", "locals {\n  x = formatlist(\"%099999999d\", [1, 2, 3])\n}\n", "larger than 16 MiB", nil},
		{"join of a comprehension", megabyte + "locals {\n  x = join(\"\", [for i in range(1000): local.a16])\n}\n", "larger than 16 MiB", nil},
		{"join's separator", megabyte + "locals {\n  x = join(local.a16, range(1000))\n}\n", "larger than 16 MiB", nil},
		{"split", megabyte + "locals {\n  x = split(\"\", local.a16)\n}\n", "larger than 16 MiB", nil},
		{"replace", megabyte + "locals {\n  x = replace(local.a16, \"\", local.a16)\n}\n", "larger than 16 MiB", nil},
		{"indent", megabyte + "locals {\n  x = indent(100000000, replace(local.a16, \"a\", \"\\n\"))\n}\n", "larger than 16 MiB", nil},
		{"jsondecode nesting", doubling(`"[[[[[[[[[[[[[[[["`, 16, `"${PREV}${PREV}"`) + "locals {\n  x = jsondecode(local.a16)\n}\n", "more than 512 deep", nil},
		{"variable default", "variable \"v\" {\n  default = format(\"%0999999999d\", 1)\n}\n", "larger than 16 MiB", nil},
		{"step argument", megabyte + "rec \"r\" {\n  input = join(\"\", [for i in range(1000): local.a16])\n}\n", "larger than 16 MiB", nil},
		{"nested for expressions", "locals {\n  x = [for a in range(1000): [for b in range(1000): [for c in range(1000): c]]]\n}\n", "builds values larger than 16 MiB", nil},
		{"nested for expressions in -var", "variable \"v\" {\n  type = list(any)\n}\n", "builds values larger than 16 MiB", map[string]string{"v": nestedFor}},
		{"template repeating a value", megabyte + "locals {\n  x = \"" + strings.Repeat("${local.a16}", 4000) + "\"\n}\n", "builds values larger than 16 MiB", nil},
		{"locals nested in locals", doubling(`"x"`, 3000, `[PREV]`), "local.a513 nests lists, maps or objects more than 512 deep", nil},
		{"count", "rec \"r\" {\n  count = 100000000\n}\n", "count must be a whole number from 0 to 100000", nil},
		{"for_each", doubling(`["0123456789abcdef"]`, 18, `concat(PREV, PREV)`) + "rec \"r\" {\n  for_each = {for i in range(1000): tostring(i) => local.a18}\n}\n", "larger than 16 MiB", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := testchild.Run(t, 3<<30, func() {
				_, _, diags := compileSource(t, tt.src, tt.vars)
				for _, d := range diags {
					fmt.Printf("diagnostic: %s: %s: %s\n", d.Subject, d.Summary, d.Detail)
				}
			})
			if !ok {
				t.Fatalf("the child did not finish:\n%s", testchild.Excerpt(out))
			}
			where := "diagnostic: /" // in the plan file
			if tt.vars != nil {
				where = "diagnostic: <-var "
			}
			if !strings.Contains(out, where) || !strings.Contains(out, tt.want) {
				t.Fatalf("want a diagnostic in the plan saying %q, got:\n%s", tt.want, testchild.Excerpt(out))
			}
		})
	}
}

// TestLocalsCostLinearMemory compiles chains of 1,000 and 2,000 locals,
// each referring to the one before: twice the locals must cost about
// twice the memory, not four times. Each local was evaluated in a context
// holding every local before it, so a 4 MiB plan of locals took hours.
// (Bytes allocated, not time: they do not depend on the machine's load.)
func TestLocalsCostLinearMemory(t *testing.T) {
	allocated := func(n int) uint64 {
		t.Helper()
		src := doubling(`"x"`, n, `PREV`)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, _, diags := compileSource(t, src, nil); diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := allocated(1000), allocated(2000)
	if ratio := float64(large) / float64(small); ratio > 3 {
		t.Errorf("2,000 locals allocated %d bytes, %.1f times what 1,000 did (%d)", large, ratio, small)
	}
}
