package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		wantVars   []string
		wantCheck  bool
		wantArgs   []string
		wantErrors bool
	}{
		{"options first", []string{"-var", "a=1", "-check", "p.hcl"}, []string{"a=1"}, true, []string{"p.hcl"}, false},
		{"options after the plan", []string{"p.hcl", "-var", "a=1", "-check"}, []string{"a=1"}, true, []string{"p.hcl"}, false},
		{"options around the plan", []string{"-var", "a=1", "p.hcl", "-var", "b=2"}, []string{"a=1", "b=2"}, false, []string{"p.hcl"}, false},
		{"several positionals", []string{"a", "-check", "b"}, nil, true, []string{"a", "b"}, false},
		{"after --", []string{"-check", "--", "-odd.hcl", "-var"}, nil, true, []string{"-odd.hcl", "-var"}, false},
		{"plan then --", []string{"p.hcl", "--", "-x"}, nil, false, []string{"p.hcl", "-x"}, false},
		{"unknown option after the plan", []string{"p.hcl", "-nope"}, nil, false, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var vars listFlag
			fs.Var(&vars, "var", "")
			check := fs.Bool("check", false, "")
			err := parseFlags(fs, tc.args)
			if tc.wantErrors {
				if err == nil {
					t.Fatalf("parseFlags(%q) = nil, want an error", tc.args)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tc.args, err)
			}
			if !slices.Equal(vars, tc.wantVars) || *check != tc.wantCheck || !slices.Equal(fs.Args(), tc.wantArgs) {
				t.Errorf("parseFlags(%q): vars %q check %v args %q; want %q %v %q", tc.args, vars, *check, fs.Args(), tc.wantVars, tc.wantCheck, tc.wantArgs)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plan.hcl":           "plan.hcl",
		"/etc/rotplan/a.hcl": "/etc/rotplan/a.hcl",
		"my plan.hcl":        "'my plan.hcl'",
		"it's":               `'it'\''s'`,
		"":                   "''",
		"a=b,c":              "a=b,c",
		"$HOME":              "'$HOME'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
