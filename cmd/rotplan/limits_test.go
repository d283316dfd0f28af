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
