package testchild

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// envName marks the child process and names the test it runs.
const envName = "ROTPLAN_TEST_CHILD"

// Run runs fn in a child process with its address space limited to
// memLimit bytes and returns what the child wrote on stdout and stderr,
// and whether it exited cleanly. In the child, Run calls fn and exits, so
// nothing after Run in the test runs there; fn reports by printing, and
// must not call t.Fatal (the parent would only see the exit status).
//
// The test must be a top-level test or subtest reached only by name: the
// child reruns the test binary with -test.run set to t.Name().
func Run(t *testing.T, memLimit uint64, fn func()) (output string, ok bool) {
	t.Helper()
	if os.Getenv(envName) == t.Name() {
		limit := &syscall.Rlimit{Cur: memLimit, Max: memLimit}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, limit); err != nil {
			os.Stderr.WriteString("testchild: setrlimit: " + err.Error() + "\n")
			os.Exit(3)
		}
		fn()
		os.Exit(0)
	}
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.count=1")
	cmd.Env = append(os.Environ(), envName+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, exited := err.(*exec.ExitError); !exited {
			t.Fatalf("starting the child process: %v", err)
		}
	}
	return string(out), err == nil
}

// Excerpt returns at most the first 2 KiB of a child's output, for a
// failure message: a stack overflow's goroutine dump runs to megabytes.
func Excerpt(out string) string {
	if len(out) > 2048 {
		return out[:2048] + "\n[...]"
	}
	return out
}
