package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testchild"
	"github.com/rotplan/rotplan/plans"
)

// TestOversizedInputIsRefused runs the commands that read files a user
// names on what rotplan must not read whole or parse: an endless device, a
// file over plans.MaxSourceSize, a plan nested 100,000 deep. Each must exit
// 2 with a message naming the file, in a child process under a memory
// limit: before the limits, the device was read until memory ran out and
// the nesting overflowed the stack.
func TestOversizedInputIsRefused(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.hcl")
	big := filepath.Join(dir, "big.hcl")
	deep := filepath.Join(dir, "deep.hcl")
	files := map[string]string{
		plan: "variable \"x\" {\n  default = 1\n}\n",
		big:  strings.Repeat("# "+strings.Repeat("-", 77)+"\n", plans.MaxSourceSize/80+1),
		deep: "locals {\n  x = " + strings.Repeat("(", 100_000) + "1" + strings.Repeat(")", 100_000) + "\n}\n",
	}
	for path, src := range files {
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"run a device", []string{"run", "/dev/zero"}, "/dev/zero is a device"},
		{"var file a device", []string{"validate", "-var-file", "/dev/zero", plan}, "/dev/zero is a device"},
		{"run a file too large", []string{"run", big}, "DIR/big.hcl is larger than 4 MiB"},
		{"fmt a file too large", []string{"fmt", "-check", big}, "DIR/big.hcl is larger than 4 MiB"},
		{"fmt a plan nested too deeply", []string{"fmt", "-check", deep}, "Expression nested too deeply"},
		{"validate a plan nested too deeply", []string{"validate", deep}, "Expression nested too deeply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := testchild.Run(t, 2<<30, func() {
				var stdout, stderr bytes.Buffer
				code := rotplan(context.Background(), append(tt.args, "-no-color"), &stdout, &stderr)
				// The child has a temporary directory of its own.
				fmt.Printf("exit %d\n%s", code, strings.ReplaceAll(stderr.String(), dir, "DIR"))
			})
			if !ok {
				t.Fatalf("the child did not finish:\n%s", testchild.Excerpt(out))
			}
			if !strings.Contains(out, "exit 2\n") || !strings.Contains(out, tt.want) {
				t.Fatalf("want exit 2 and %q, got:\n%s", tt.want, testchild.Excerpt(out))
			}
		})
	}
}

// TestFmtDiffOfALargeChange: fmt -diff of a plan every line of which
// changes (40,000 lines, 400 KB, far under plans.MaxSourceSize) finishes
// under the same memory limit. The diff rotplan once wrote by hand kept
// every round of its search, memory quadratic in the number of changed
// lines: 51 GB here, and it ran out.
func TestFmtDiffOfALargeChange(t *testing.T) {
	const lines = 40_000
	var src strings.Builder
	for i := range lines {
		fmt.Fprintf(&src, "x%06d=1\n", i)
	}
	path := filepath.Join(t.TempDir(), "wide.hcl")
	if err := os.WriteFile(path, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, ok := testchild.Run(t, 2<<30, func() {
		var stdout, stderr bytes.Buffer
		code := rotplan(context.Background(), []string{"fmt", "-check", "-diff", "-no-color", path}, &stdout, &stderr)
		fmt.Printf("exit %d, %d added lines\n%s", code, strings.Count(stdout.String(), "\n+x"), stderr.String())
	})
	if want := fmt.Sprintf("exit 1, %d added lines\n", lines); !ok || !strings.Contains(out, want) {
		t.Fatalf("the child did not finish with %q:\n%s", want, testchild.Excerpt(out))
	}
}
