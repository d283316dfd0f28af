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

	"github.com/zclconf/go-cty/cty"
)

// TestReloadOnHost reloads on a real sshd host of a testhosts bed: a
// command run there, and a signal to the process a pid file there names,
// checked there; a rollback reloads again.
func TestReloadOnHost(t *testing.T) {
	f, env, _ := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	r := (*Reload)(nil)
	cfgOf := func(vals map[string]cty.Value) Config { return testConfig(t, r.Spec(), vals) }

	t.Run("command", func(t *testing.T) {
		marker := filepath.Join(h.Home, "reloaded")
		argv := cty.ListVal([]cty.Value{cty.StringVal("sh"), cty.StringVal("-c"), cty.StringVal(`echo reloaded >> "$1"`), cty.StringVal("sh"), cty.StringVal(marker)})
		cfg := cfgOf(map[string]cty.Value{"command": argv})
		if err := f.Controller.Do(func() error { return r.CheckHost(ctx, env, cfg) }); err != nil {
			t.Fatal(err)
		}
		snap, err := r.Snapshot(ctx, env, cfg)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Apply(ctx, env, cfg)
		if err != nil || out.GetAttr("at").AsString() == "" {
			t.Fatalf("apply: %#v, %v", out, err)
		}
		wantLines(t, marker, 1)
		if err := r.Rollback(ctx, env, cfg, out, snap); err != nil {
			t.Fatal(err)
		}
		wantLines(t, marker, 2)

		failing := cfgOf(map[string]cty.Value{"command": cty.ListVal([]cty.Value{cty.StringVal("sh"), cty.StringVal("-c"), cty.StringVal("echo boom >&2; exit 3")})})
		_, err = r.Apply(ctx, env, failing)
		wantErrContains(t, err, "exited with status 3", "boom", h.Addr.String())
		missing := cfgOf(map[string]cty.Value{"command": cty.ListVal([]cty.Value{cty.StringVal("no-such-program-rotplan")})})
		wantAttrErr(t, r.CheckHost(ctx, env, missing), "command")
	})

	t.Run("pid_file", func(t *testing.T) {
		dir := t.TempDir()
		marker, pidFile := filepath.Join(dir, "hups"), filepath.Join(dir, "svc.pid")
		svc := exec.Command("sh", "-c", `trap 'echo hup >> "$1"' HUP; echo ready > "$1.ready"; while :; do sleep 0.05; done`, "sh", marker)
		if err := svc.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Process.Kill(); svc.Wait() })
		waitFor(t, marker+".ready")
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(svc.Process.Pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		sh, err := filepath.EvalSymlinks("/bin/sh")
		if err != nil {
			t.Fatal(err)
		}
		expect := func(name, user string) cty.Value {
			return cty.ObjectVal(map[string]cty.Value{"executable": cty.NullVal(cty.String), "name": cty.StringVal(name), "user": cty.StringVal(user)})
		}
		cfg := cfgOf(map[string]cty.Value{"pid_file": cty.StringVal(pidFile), "expect": expect(filepath.Base(sh), "root")})
		if err := r.CheckHost(ctx, env, cfg); err != nil {
			t.Fatal(err)
		}
		pv, err := r.Plan(ctx, env, cfg)
		if err != nil || len(pv.Problems) != 0 || !strings.Contains(pv.Reason, "SIGHUP to pid "+strconv.Itoa(svc.Process.Pid)) {
			t.Fatalf("preview: %+v, %v", pv, err)
		}
		snap, err := r.Snapshot(ctx, env, cfg)
		if err != nil || snap["pid"] != strconv.Itoa(svc.Process.Pid) || snap["exe"] != sh {
			t.Fatalf("snapshot %v, %v", snap, err)
		}
		out, err := r.Apply(ctx, env, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if pid, _ := outputInt(out, "pid"); pid != int64(svc.Process.Pid) {
			t.Errorf("pid output %d, want %d", pid, svc.Process.Pid)
		}
		waitLines(t, marker, 1)
		if err := r.Rollback(ctx, env, cfg, out, snap); err != nil {
			t.Fatal(err)
		}
		waitLines(t, marker, 2)

		// What is refused, and nothing is sent.
		wrong := cfgOf(map[string]cty.Value{"pid_file": cty.StringVal(pidFile), "expect": expect("nginx", "root")})
		_, err = r.Apply(ctx, env, wrong)
		wantAttrErr(t, err, "expect.name")
		wantAttrErr(t, r.CheckHost(ctx, env, cfgOf(map[string]cty.Value{"pid_file": cty.StringVal(pidFile), "expect": expect(filepath.Base(sh), "no-such-user-rotplan")})), "expect.user")
		if err := os.Chmod(pidFile, 0o666); err != nil {
			t.Fatal(err)
		}
		_, err = r.Apply(ctx, env, cfg)
		wantErrContains(t, err, "writable by group or others")
		if err := os.WriteFile(pidFile, []byte("999999999\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = r.Apply(ctx, env, cfg)
		wantErrContains(t, err, "no process has pid 999999999")
		wantLines(t, marker, 2)
		wantAttrErr(t, r.CheckHost(ctx, env, cfgOf(map[string]cty.Value{"pid": cty.NumberIntVal(1)})), "pid")
	})
}

// wantLines checks that the file at p holds n lines.
func wantLines(t *testing.T, p string, n int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "\n"); got != n {
		t.Fatalf("%s holds %d lines, want %d", p, got, n)
	}
}

// waitLines waits until the file at p holds n lines (a signal handled by
// another process), failing once it holds more or a long while passed.
func waitLines(t *testing.T, p string, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(p)
		if got := strings.Count(string(b), "\n"); got >= n {
			wantLines(t, p, n)
			return
		}
	}
	wantLines(t, p, n)
}

// waitFor waits until the file at p exists.
func waitFor(t *testing.T, p string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	t.Fatalf("%s never appeared", p)
}
