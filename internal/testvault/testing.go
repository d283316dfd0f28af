package testvault

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/testhosts"
)

// EnvBinary is the environment variable naming the Vault binary for tests.
const EnvBinary = "ROTPLAN_VAULT_BIN"

// StartT starts a harness Vault for a test, with the binary from
// ROTPLAN_VAULT_BIN. When the variable is unset the test is skipped, unless
// the CI variable is set (then it fails). The base directory is created with
// os.MkdirTemp (mode 0755, so the Vault user can traverse it) and Vault's log
// goes to vault.log in it. Cleanup stops Vault and removes the directory;
// when the test failed the directory is kept and its path and the tail of
// vault.log are logged.
func StartT(t testing.TB) *Vault {
	t.Helper()
	bin := binaryT(t)
	dir, err := os.MkdirTemp("", "rotplan-vault-*")
	if err != nil {
		t.Fatalf("testvault: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("testvault: %v", err)
	}
	logPath := filepath.Join(dir, "vault.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("testvault: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	v, err := Start(ctx, Options{Binary: bin, Dir: dir, Log: logFile})
	if err != nil {
		logFile.Close()
		t.Fatalf("testvault: starting Vault failed (dir %s kept): %v", dir, err)
	}
	t.Logf("testvault: Vault up in %s: prod listener %s (pid %d, user %s), bootstrap %s, dir %s",
		time.Since(start).Round(time.Millisecond), v.Addr, v.PID(), v.Owner, v.BootstrapAddr, dir)

	t.Cleanup(func() {
		if err := v.Stop(); err != nil {
			t.Errorf("testvault: stopping Vault: %v", err)
		}
		logFile.Close()
		if t.Failed() {
			t.Logf("testvault: test failed; keeping %s", dir)
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("testvault: tail of %s:\n%s", logPath, lastLines(string(b), 40))
			}
			agentLogs, _ := filepath.Glob(filepath.Join(dir, "log", "agent-*.log"))
			for _, p := range agentLogs {
				if b, err := os.ReadFile(p); err == nil {
					t.Logf("testvault: tail of %s:\n%s", p, lastLines(string(b), 20))
				}
			}
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("testvault: removing %s: %v", dir, err)
		}
	})
	return v
}

// binaryT returns the Vault binary ROTPLAN_VAULT_BIN names; when it is
// unset the test is skipped, unless the CI variable is set (then it fails).
func binaryT(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBinary)
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("testvault: %s is not set (required when CI is set): point it at a vault server binary", EnvBinary)
		}
		t.Skipf("testvault: %s is not set; skipping the test that needs a real Vault server (set it to a vault binary, e.g. /tmp/vault-build/vault)", EnvBinary)
	}
	return bin
}

// StartClusterT starts a Vault cluster on every host of f for a test (see
// [StartCluster]), with the binary from ROTPLAN_VAULT_BIN (skipped without
// it, as StartT is). Cleanup stops it; when the test failed the tail of
// every node's log is logged (the files stay with the fleet's directory).
func StartClusterT(t testing.TB, f *testhosts.Fleet) *Cluster {
	t.Helper()
	bin := binaryT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := StartCluster(ctx, f, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testvault: cluster of %d nodes on %s up in %s (user %s)", len(c.Nodes), f.Name, time.Since(start).Round(time.Millisecond), c.Owner)
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("testvault: stopping the cluster: %v", err)
		}
		if t.Failed() {
			for _, n := range c.Nodes {
				if b, err := os.ReadFile(n.Log); err == nil {
					t.Logf("testvault: tail of %s:\n%s", n.Log, lastLines(string(b), 30))
				}
			}
		}
	})
	return c
}

// ReadData reads path with c (the root client, say) for a test: the data
// Vault returns, or nil when nothing is there. An error fails the test.
func ReadData(t testing.TB, c *vaultapi.Client, path string) map[string]any {
	t.Helper()
	s, err := c.Logical().Read(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if s == nil {
		return nil
	}
	return s.Data
}
