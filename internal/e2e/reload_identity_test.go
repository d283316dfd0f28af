package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
)

// TestReloadRefusesUnrelatedProcess: a reload whose pid file names a
// process that is not the service (a sleep here, which SIGHUP would kill)
// is refused by plan and by the run's preflight, before anything changes,
// and the process is not signalled: when the plan says what it expects to
// signal, and by default when the pid file could have been written by
// someone other than root or the process's own user.
func TestReloadRefusesUnrelatedProcess(t *testing.T) {
	tests := []struct {
		name   string
		expect string                             // the reload's expect block, or ""
		setup  func(t *testing.T, pidFile string) // changes the pid file
		want   []string                           // in the stderr of plan and run
	}{
		{
			name:   "expected name",
			expect: `expect { name = "vault" }`,
			want:   []string{"expect.name", `"sleep"`, `not "vault"`},
		},
		{
			name:   "expected executable",
			expect: `expect { executable = "/usr/local/bin/vault" }`,
			want:   []string{"expect.executable", "sleep", "/usr/local/bin/vault"},
		},
		{
			name:   "expected user",
			expect: `expect { user = "nobody" }`,
			want:   []string{"expect.user", "uid 0 (root)", "nobody"},
		},
		{
			name: "pid file writable by others",
			setup: func(t *testing.T, pidFile string) {
				t.Helper()
				if err := os.Chmod(pidFile, 0o666); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"pid_file", "writable by group or others"},
		},
		{
			name: "pid file owned by another user",
			setup: func(t *testing.T, pidFile string) {
				t.Helper()
				if os.Geteuid() != 0 {
					t.Skip("needs root: gives the pid file to another user (run the tests as root)")
				}
				if err := testvault.GiveToStranger(pidFile); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"pid_file", "owned by uid", "rotplan-stranger"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "expected user" && os.Geteuid() != 0 {
				t.Skip("needs root: the sleep must run as root, not as the expected user")
			}
			sleep := exec.Command("sleep", "600")
			if err := sleep.Start(); err != nil {
				t.Fatal(err)
			}
			waited := false
			t.Cleanup(func() {
				if !waited {
					sleep.Process.Kill()
					sleep.Wait()
				}
			})
			dir := planDir(t, `
write "marker" {
  path    = "${path_here}/marker.txt"
  content = "written\n"
}

reload "svc" {
  depends_on = [write.marker]
  pid_file   = "${path_here}/svc.pid"
  `+tt.expect+`
}
`, map[string]string{"svc.pid": strconv.Itoa(sleep.Process.Pid) + "\n"})
			plan := filepath.Join(dir, "plan.hcl")
			src := strings.ReplaceAll(mustRead(t, plan), "${path_here}", dir)
			if err := os.WriteFile(plan, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, filepath.Join(dir, "svc.pid"))
			}

			for _, command := range []string{"plan", "run"} {
				res := runIn(t, dir, nil, command, "plan.hcl")
				if res.exit != 1 {
					t.Errorf("%s: exit %d, want 1 (refused before any step ran)\n%s%s", command, res.exit, res.stdout, res.stderr)
				}
				for _, s := range tt.want {
					if !strings.Contains(res.stderr, s) {
						t.Errorf("%s: stderr does not say %q\n%s", command, s, res.stderr)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "marker.txt")); err == nil {
				t.Error("the run wrote marker.txt although its preflight refused the reload")
			}
			// Had it been sent SIGHUP, the sleep would have died of it.
			sleep.Process.Signal(syscall.SIGTERM)
			sleep.Wait()
			waited = true
			if ws := sleep.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
				t.Errorf("the sleep the pid file names ended with %s, want killed by the test's SIGTERM: rotplan signalled it", sleep.ProcessState)
			}
		})
	}
}
