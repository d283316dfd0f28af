package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// TestProcessStartOnItsHost: a process's start time is told from the boot
// time of the host whose /proc described it, not of the machine rotplan
// runs on.
func TestProcessStartOnItsHost(t *testing.T) {
	const btime = 1000000000 // 2001-09-09T01:46:40Z
	readFile := func(p string) ([]byte, error) {
		if p == "/proc/stat" {
			return []byte("cpu  1 2 3\nbtime " + strconv.Itoa(btime) + "\nprocesses 9\n"), nil
		}
		return os.ReadFile(p)
	}
	p, err := readProcessWith(os.Getpid(), readFile, os.Readlink)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Unix(btime, 0).Add(time.Duration(p.start) * time.Second / userHZ).UTC().Format(time.RFC3339)
	if got := factValue(p.facts(), "started"); got != want {
		t.Errorf("started %q, want %q (from the host's boot time)", got, want)
	}
}

// TestReloadOnHostAfterReboot: a journaled process from another boot of
// the host is not the process that has its pid now, even with the same
// start time: a rollback after a reboot signals a restart of the service
// (the same program as the same user), and refuses anything else.
func TestReloadOnHostAfterReboot(t *testing.T) {
	f, env, _ := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	r := (*Reload)(nil)
	marker, pidFile := filepath.Join(h.Home, "hups"), filepath.Join(h.Home, "svc.pid")
	// The service runs on the host, started over SSH.
	var pid int
	err := f.Controller.Do(func() error {
		return env.onHost(ctx, func(c *remote.Conn) error {
			res, err := c.Run(ctx, []string{"sh", "-c", `setsid sh -c 'trap "echo hup >> \"$1\"" HUP; while :; do sleep 0.05; done' sh "$1" </dev/null >/dev/null 2>&1 & echo $!`, "sh", marker})
			if err == nil {
				pid, err = strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("kill", "-KILL", strconv.Itoa(pid)).Run() })
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, r.Spec(), map[string]cty.Value{"pid_file": cty.StringVal(pidFile)})
	snap, err := r.Snapshot(ctx, env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	if snap["boot_id"] != strings.TrimSpace(string(bootID)) {
		t.Errorf("the snapshot's boot_id %q is not the host's %q", snap["boot_id"], bootID)
	}
	time.Sleep(100 * time.Millisecond) // the trap is set
	// Another boot, another program: not this process, however alike its
	// pid and start time.
	other := map[string]string{}
	for k, v := range snap {
		other[k] = v
	}
	other["boot_id"] = "00000000-0000-0000-0000-000000000000"
	other["exe"], other["comm"] = "/usr/sbin/nginx", "nginx"
	err = r.Rollback(ctx, env, cfg, cty.NilVal, other)
	wantErrContains(t, err, "nor a restart of it")
	// Another boot, the same program and user: a restart, signalled.
	other["exe"], other["comm"] = snap["exe"], snap["comm"]
	if err := r.Rollback(ctx, env, cfg, cty.NilVal, other); err != nil {
		t.Fatalf("a restart after a reboot: %v", err)
	}
	waitLines(t, marker, 1)

	// The kill is pinned on the host to the vetted process: another start
	// time or another boot, and nothing is sent.
	was := recordedProcess(snap)
	if was == nil {
		t.Fatalf("the snapshot %v does not read back", snap)
	}
	moved, rebooted := *was, *was
	moved.start++
	rebooted.bootID = "00000000-0000-0000-0000-000000000000"
	for what, p := range map[string]process{"another start": moved, "another boot": rebooted} {
		err := env.onHost(ctx, func(c *remote.Conn) error { return signalOnHost(ctx, c, p, "HUP") })
		wantErrContains(t, err, "refusing to signal it")
		if what == "another boot" {
			wantErrContains(t, err, "the host rebooted")
		}
	}
	if err := env.onHost(ctx, func(c *remote.Conn) error { return signalOnHost(ctx, c, *was, "HUP") }); err != nil {
		t.Fatal(err)
	}
	waitLines(t, marker, 2)
}
