package engine

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/plans"
	"github.com/rotplan/rotplan/steps"
)

// fuzzMemory bounds the address space of a fuzzing worker: an input that
// makes rotplan take more (a value that doubles, a runaway recursion)
// kills the worker, and the fuzzer reports that input.
const fuzzMemory = 4 << 30

var limitWorker sync.Once

// FuzzCompile feeds arbitrary plan sources and variable files through
// parsing, variable resolution and compilation with the real step kinds:
// whatever the input, rotplan must answer with diagnostics that point into
// one of the two files, never panic, overflow its stack or run out of
// memory. (Validation only reads the system, so fuzzing it is safe.) make
// test fuzzes it for a short time.
func FuzzCompile(f *testing.F) {
	seeds, _ := filepath.Glob("../internal/e2e/testdata/*.hcl")
	more, _ := filepath.Glob("../plans/testdata/*.hcl")
	seeds = append(append(seeds, more...), "../examples/prod.hcl", "../examples/leaves.hcl")
	vars := []string{
		"",
		"dir = \"/tmp\"\n",
		"admin_dir = \"/tmp/a\"\nserver_dir = \"/tmp/s\"\nvault_addr = \"https://127.0.0.1:8200\"\nrenew_before = \"240h\"\n",
		"x = [for a in [1, 2]: [for b in [3, 4]: a * b]]\n",
		"x = " + strings.Repeat("(", 600) + "1" + strings.Repeat(")", 600) + "\n",
	}
	for i, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte(vars[i%len(vars)]))
	}
	f.Add([]byte(doubling(`"0123456789abcdef"`, 24, `"${PREV}${PREV}"`)), []byte(nil))
	f.Add([]byte("locals {\n  x = format(\"%099999999d\", 1)\n}\n"), []byte(nil))
	f.Add([]byte("variable \"x\" {\n  type = number\n}\n"), []byte("x = "+strings.Repeat("-", 1000)+"1\n"))
	kinds := steps.Default()
	f.Fuzz(func(t *testing.T, src, varSrc []byte) {
		if fl := flag.Lookup("test.fuzzworker"); fl != nil && fl.Value.String() == "true" {
			limitWorker.Do(func() {
				limit := &syscall.Rlimit{Cur: fuzzMemory, Max: fuzzMemory}
				if err := syscall.Setrlimit(syscall.RLIMIT_AS, limit); err != nil {
					t.Fatalf("setrlimit: %v", err)
				}
			})
		}
		dir := t.TempDir()
		path, varPath := filepath.Join(dir, "plan.hcl"), filepath.Join(dir, "vars.hcl")
		if err := os.WriteFile(path, src, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(varPath, varSrc, 0o600); err != nil {
			t.Fatal(err)
		}
		_, diags := Load(plans.NewParser(), Sources{Plan: path, VarFiles: []string{varPath}, Vars: []string{"dir=" + dir}}, kinds)
		for _, d := range diags {
			if d.Severity != hcl.DiagError {
				continue
			}
			if d.Subject == nil || (d.Subject.Filename != path && d.Subject.Filename != varPath && d.Subject.Filename != "<-var dir>") {
				t.Fatalf("error diagnostic %q (%s) points into no file given: %v", d.Summary, d.Detail, d.Subject)
			}
		}
	})
}
