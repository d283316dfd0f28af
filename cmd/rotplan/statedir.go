package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// defaultStateDir is where a plan's journal, lock and backups live when
// -state-dir does not say: .rotplan beside the plan file, as long as that
// is a place for state. A plan in /etc (configuration, which backups of
// private keys have no business in) or in a directory rotplan cannot
// write to (a read-only checkout) keeps its state in a directory of its
// own under /var/lib/rotplan when run as root, else under
// $XDG_STATE_HOME/rotplan (~/.local/state/rotplan). A .rotplan already
// beside the plan is used wherever it is, so that an unfinished run is
// never lost from sight.
func defaultStateDir(plan string) string {
	beside := filepath.Join(filepath.Dir(plan), ".rotplan")
	if _, err := os.Lstat(beside); err == nil {
		return beside
	}
	abs, err := filepath.Abs(plan)
	if err != nil {
		return beside
	}
	dir := filepath.Dir(abs)
	if !underEtc(dir) && syscall.Access(dir, 2 /* W_OK */) == nil {
		return beside
	}
	return filepath.Join(stateHome(), stateName(abs))
}

// underEtc reports whether dir is /etc or below it, symlinks resolved.
func underEtc(dir string) bool {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return dir == "/etc" || strings.HasPrefix(dir, "/etc/")
}

// stateHome is where rotplan keeps the state of plans that cannot keep it
// beside them; ROTPLAN_STATE_HOME (absolute) says elsewhere, for packages
// with their own layout.
func stateHome() string {
	if x := os.Getenv("ROTPLAN_STATE_HOME"); filepath.IsAbs(x) {
		return x
	}
	if os.Geteuid() == 0 {
		return "/var/lib/rotplan"
	}
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "rotplan")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "rotplan-state")
	}
	return filepath.Join(home, ".local", "state", "rotplan")
}

// stateName names a plan's state directory after its absolute path, in a
// form people can read, with a short digest of the path so that two plans
// never share one: /etc/rotplan/prod.hcl -> etc-rotplan-prod.hcl-1a2b3c4d.
func stateName(abs string) string {
	sum := sha256.Sum256([]byte(abs))
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '-'
		}
		return r
	}, strings.TrimPrefix(abs, "/"))
	return name + "-" + hex.EncodeToString(sum[:4])
}
