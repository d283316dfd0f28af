package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestStateName(t *testing.T) {
	a, b := stateName("/etc/rotplan/prod.hcl"), stateName("/etc/rotplan-prod.hcl")
	if !strings.HasPrefix(a, "etc-rotplan-prod.hcl-") || len(a) != len("etc-rotplan-prod.hcl-")+8 {
		t.Errorf("stateName = %q, want etc-rotplan-prod.hcl- and 8 hex digits", a)
	}
	if a == b {
		t.Errorf("two plans share the state directory %q", a)
	}
	if strings.Contains(stateName("/srv/my plans/a.hcl"), " ") {
		t.Error("a space is kept in the state directory's name")
	}
}

func TestDefaultStateDir(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "prod.hcl")
	if got := defaultStateDir(plan); got != filepath.Join(dir, ".rotplan") {
		t.Errorf("a plan in a writable directory: %s, want .rotplan beside it", got)
	}
	for _, d := range []string{"/etc", "/etc/rotplan", "/etc/rotplan/sub"} {
		if !underEtc(d) {
			t.Errorf("underEtc(%q) = false", d)
		}
	}
	for _, d := range []string{"/etcetera", "/srv/etc", "/"} {
		if underEtc(d) {
			t.Errorf("underEtc(%q) = true", d)
		}
	}
	t.Setenv("ROTPLAN_STATE_HOME", "/var/lib/elsewhere")
	if got := stateHome(); got != "/var/lib/elsewhere" {
		t.Errorf("stateHome with ROTPLAN_STATE_HOME = %s", got)
	}
}
