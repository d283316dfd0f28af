package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// precheckPlan writes a configuration, tests it as `nginx -t` would (a
// verify command check), and reloads only once the test passed. The test
// and the reload are scripts: no nginx is needed.
const precheckPlan = `
write "conf" {
  path    = "site.conf"
  content = "${var.content}\n"
}

verify "conf_test" {
  depends_on = [write.conf]
  command {
    argv = ["/bin/sh", "-c", "grep -qx ok site.conf || { echo 'site.conf:1: [emerg] unknown directive' >&2; exit 1; }"]
  }
}

reload "site" {
  depends_on = [verify.conf_test]
  command    = ["/bin/sh", "-c", "echo reloaded > reloaded.txt"]
}

variable "content" {}
`

// TestConfigTestStopsTheReload: a configuration test that fails stops the
// run before the reload, which never runs, and the write is rolled back;
// the error shows the test's exit status and output. One that passes lets
// the reload run.
func TestConfigTestStopsTheReload(t *testing.T) {
	t.Run("test fails", func(t *testing.T) {
		dir := planDir(t, precheckPlan, map[string]string{"site.conf": "ok\n"})
		res := runIn(t, dir, nil, "run", "-var", "content=broken", "plan.hcl")
		if res.exit != exitRolledBack {
			t.Fatalf("exit %d, want %d (rolled back)\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
		}
		for _, want := range []string{"verify.conf_test", "exit status 1", "site.conf:1: [emerg] unknown directive", "argv"} {
			if !strings.Contains(res.stdout+res.stderr, want) {
				t.Errorf("the output lacks %q:\n%s%s", want, res.stdout, res.stderr)
			}
		}
		if got := mustRead(t, filepath.Join(dir, "site.conf")); got != "ok\n" {
			t.Errorf("site.conf holds %q after the rollback, want the original", got)
		}
		if _, err := os.Stat(filepath.Join(dir, "reloaded.txt")); !os.IsNotExist(err) {
			t.Errorf("the reload ran (reloaded.txt: %v)", err)
		}
	})
	t.Run("test passes", func(t *testing.T) {
		dir := planDir(t, precheckPlan, map[string]string{"site.conf": "old\n"})
		res := runIn(t, dir, nil, "run", "-var", "content=ok", "plan.hcl")
		if res.exit != 0 {
			t.Fatalf("exit %d, want 0\n%s%s", res.exit, res.stdout, res.stderr)
		}
		if got := mustRead(t, filepath.Join(dir, "reloaded.txt")); got != "reloaded\n" {
			t.Errorf("reloaded.txt holds %q: the reload did not run", got)
		}
		if got := mustRead(t, filepath.Join(dir, "site.conf")); got != "ok\n" {
			t.Errorf("site.conf holds %q", got)
		}
	})
}
