package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// rotplanBin is the rotplan binary under test, built once by TestMain;
// crashBin is the same built with the failpoints tag, which kills itself at a
// journal record when ROTPLAN_FAILPOINT says so.
var rotplanBin, crashBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rotplan-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rotplanBin = filepath.Join(dir, "rotplan")
	crashBin = filepath.Join(dir, "rotplan-failpoints")
	for _, b := range [][]string{
		// -buildvcs=auto: the binary knows its commit, as make build's does.
		{"build", "-buildvcs=auto", "-o", rotplanBin, "github.com/rotplan/rotplan/cmd/rotplan"},
		{"build", "-tags", "failpoints", "-o", crashBin, "github.com/rotplan/rotplan/cmd/rotplan"},
	} {
		build := exec.Command("go", b...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building rotplan:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the rotplan binary did.
type result struct {
	exit           int
	stdout, stderr string
}

// runRotplan runs the binary with args and extra environment entries, in
// the repository root so that examples/ paths work.
func runRotplan(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runBinary(t, rotplanBin, env, args...)
}

// runBinary runs a rotplan binary in the repository root, so that
// examples/ paths work; a run killed by a signal has exit -1.
func runBinary(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(cleanEnv(), env...)
	return runCmd(t, cmd, 3*time.Minute)
}

// runCmd runs a prepared command with a time limit and collects its exit
// code and output.
func runCmd(t testing.TB, cmd *exec.Cmd, limit time.Duration) result {
	t.Helper()
	return startCmd(t, cmd, limit)()
}

// startCmd starts a prepared command with a time limit; wait, called
// from the test's goroutine, waits for it and collects its exit code and
// output.
func startCmd(t testing.TB, cmd *exec.Cmd, limit time.Duration) (wait func() result) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("running rotplan: %v", err)
	}
	timer := time.AfterFunc(limit, func() { _ = cmd.Process.Kill() })
	return func() result {
		t.Helper()
		err := cmd.Wait()
		timer.Stop()
		res := result{stdout: stdout.String(), stderr: stderr.String()}
		if exitErr, ok := err.(*exec.ExitError); ok {
			res.exit = exitErr.ExitCode()
		} else if err != nil {
			t.Fatalf("running rotplan: %v", err)
		}
		return res
	}
}

// cleanEnv is the test's environment without VAULT_* variables, so that a
// developer's own Vault settings cannot leak into a test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if len(kv) >= 6 && kv[:6] == "VAULT_" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// startBinary starts a rotplan binary in the repository root without waiting
// for it.
func startBinary(ctx context.Context, t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}
