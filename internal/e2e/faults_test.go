package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResumeBeforeTheFirstRecord: a run killed before its first journal
// record reached the file (before it, or half way through writing it) did
// nothing. resume says there is no run to resume, changes nothing and exits
// 0, as the README's exit codes say of "nothing to resume"; the next run
// starts without -fresh.
func TestResumeBeforeTheFirstRecord(t *testing.T) {
	for _, fp := range []string{"before:1", "tear:1"} {
		t.Run(strings.ReplaceAll(fp, ":", "_"), func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			mark := filepath.Join(dir, "ran")
			plan := filepath.Join(dir, "touch.hcl")
			src := "reload \"touch\" {\n  command = [\"/bin/touch\", \"" + mark + "\"]\n}\n"
			if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			res := runBinary(t, crashBin, []string{"ROTPLAN_FAILPOINT=" + fp}, "run", "-state-dir", state, plan)
			if res.exit != -1 {
				t.Fatalf("ROTPLAN_FAILPOINT=%s: exit %d, want the run killed\n%s%s", fp, res.exit, res.stdout, res.stderr)
			}
			res = runRotplan(t, nil, "resume", "-state-dir", state, plan)
			if res.exit != 0 || !strings.Contains(res.stdout, "there is no run to resume in "+state) || !strings.Contains(res.stdout, "nothing was done") {
				t.Errorf("resume: exit %d, want 0 saying there is no run to resume and nothing was done\n%s%s", res.exit, res.stdout, res.stderr)
			}
			if _, err := os.Stat(mark); err == nil {
				t.Error("resume ran the step of a run that never started")
			}
			if res := runRotplan(t, nil, "run", "-state-dir", state, plan); res.exit != 0 {
				t.Errorf("the next run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
			}
		})
	}
}
