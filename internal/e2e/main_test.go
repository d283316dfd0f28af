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

// rotplanBin is the rotplan binary under test, built once by TestMain.
var rotplanBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rotplan-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rotplanBin = filepath.Join(dir, "rotplan")
	build := exec.Command("go", "build", "-o", rotplanBin, "github.com/rotplan/rotplan/cmd/rotplan")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building rotplan:", err)
		os.Exit(1)
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, rotplanBin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if exitErr, ok := err.(*exec.ExitError); ok {
		res.exit = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("running rotplan: %v", err)
	}
	return res
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

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
