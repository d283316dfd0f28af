package e2e

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBadInput runs each testdata plan that a user could get wrong. Each
// states, in its header comments, the exit code (`# exit: N`) and the
// diagnostic it must produce (`# want: LINE:COL: summary`). Each must leave
// the directory it would write to untouched.
func TestBadInput(t *testing.T) {
	for _, name := range []string{
		"missing-variable",
		"unknown-kind",
		"undefined-step",
		"cycle",
		"invalid-mode",
		"unknown-user",
		"unreachable-vault",
	} {
		t.Run(name, func(t *testing.T) {
			plan := filepath.Join("internal", "e2e", "testdata", name+".hcl")
			wantExit, wantDiag := expectations(t, filepath.Join("testdata", name+".hcl"))

			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "existing.txt"), []byte("untouched\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			before := digestTree(t, dir)

			args := []string{"run", "-var", "dir=" + dir, "-state-dir", t.TempDir()}
			if name == "unreachable-vault" {
				args = append(args, "-var", "vault_addr=https://"+closedPort(t))
			}
			res := runRotplan(t, nil, append(args, plan)...)

			if res.exit != wantExit {
				t.Errorf("exit code %d, want %d", res.exit, wantExit)
			}
			if want := plan + ":" + wantDiag; !strings.Contains(res.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
			}
			if got := digestTree(t, dir); got != before {
				t.Errorf("the directory changed:\nbefore:\n%s\nafter:\n%s", before, got)
			}
			if strings.Contains(res.stdout+res.stderr, "e2e-token-that-must-never-be-printed") {
				t.Error("the Vault token was printed")
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
			}
		})
	}
}

var headerRE = regexp.MustCompile(`^# (exit|want): (.*)$`)

func expectations(t *testing.T, path string) (exit int, diag string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exit = -1
	for sc := bufio.NewScanner(f); sc.Scan(); {
		m := headerRE.FindStringSubmatch(sc.Text())
		switch {
		case m == nil:
		case m[1] == "exit":
			if exit, err = strconv.Atoi(m[2]); err != nil {
				t.Fatalf("%s: bad exit header: %v", path, err)
			}
		case m[1] == "want":
			// "LINE:COL: summary" becomes "LINE:COL: error: summary".
			loc, summary, _ := strings.Cut(m[2], ": ")
			diag = loc + ": error: " + summary
		}
	}
	if exit < 0 || diag == "" {
		t.Fatalf("%s: needs # exit: and # want: header lines", path)
	}
	return exit, diag
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
