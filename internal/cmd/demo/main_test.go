package main

import "testing"

// The demo prints the commands it runs for an operator to copy: each
// argument must come out of a shell as it went in.
func TestShellJoin(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plain", []string{"run", "-state-dir", "/x/.demo/state", "examples/agents.hcl"}, "run -state-dir /x/.demo/state examples/agents.hcl"},
		{"a var with a list", []string{"-var", `apps=["a", "b"]`}, `-var 'apps=["a", "b"]'`},
		{"a single quote", []string{"it's"}, `'it'"'"'s'`},
		{"empty", []string{""}, "''"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := shellJoin(tc.args); got != tc.want {
				t.Errorf("shellJoin(%#v) = %#v, want %#v", tc.args, got, tc.want)
			}
		})
	}
}
