package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The demo prints the commands it runs for an operator to copy: each
// argument must come out of a shell as it went in, and plain words stay
// as they are.
func TestShellJoin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		plain string // the exact line, when no word needs quoting
	}{
		{"plain", []string{"run", "-state-dir", "/x/.demo/state", "examples/agents.hcl"}, "run -state-dir /x/.demo/state examples/agents.hcl"},
		{"a var with a list", []string{"-var", `apps=["a", "b"]`}, ""},
		{"a single quote", []string{"it's"}, ""},
		{"a dollar", []string{"$HOME", "`id`"}, ""},
		{"empty", []string{""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := shellJoin(tc.args)
			if tc.plain != "" && line != tc.plain {
				t.Errorf("shellJoin(%#v) = %#v, want %#v", tc.args, line, tc.plain)
			}
			out, err := exec.Command("sh", "-c", `for a in `+line+`; do printf '%s\n' "$a"; done; printf 'END\n'`).Output()
			if err != nil {
				t.Fatalf("sh: %v", err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "END\n"), "\n")
			got = got[:len(got)-1]
			if strings.Join(got, "\x00") != strings.Join(tc.args, "\x00") || len(got) != len(tc.args) {
				t.Errorf("a shell reads %q as %#v, want %#v", line, got, tc.args)
			}
		})
	}
}
