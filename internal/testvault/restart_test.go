package testvault

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pollUntil calls fn until it returns nil or a minute has passed; it
// fails the test with fn's last error then.
func pollUntil(t *testing.T, what string, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(cctx)
		ccancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// replaceServerCert issues a new listener certificate and writes it over
// the server files, as a rotation does; it returns the new leaf.
func replaceServerCert(t *testing.T, v *Vault) *x509.Certificate {
	t.Helper()
	s, err := v.Root().Logical().WriteWithContext(context.Background(), "pki-prod/issue/vault-server", map[string]any{
		"common_name": v.ServerName, "ip_sans": "127.0.0.1", "ttl": "720h",
	})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := s.Data["certificate"].(string), s.Data["private_key"].(string)
	ica := s.Data["issuing_ca"].(string)
	uid, gid := lookupOwner(t, v)
	for _, f := range []struct {
		name, data string
		mode       os.FileMode
	}{
		{"server.key", joinPEM(key), 0o600},
		{"server.crt", joinPEM(cert), 0o644},
		{"fullchain.crt", joinPEM(cert, ica), 0o644},
	} {
		if err := writeFileOwned(filepath.Join(v.ServerDir, f.name), []byte(f.data), f.mode, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return parsePEM(t, cert)[0]
}

// pidFileNames checks that Vault's pid file names pid.
func pidFileNames(v *Vault, pid int) error {
	b, err := os.ReadFile(v.PIDFile)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(pid) {
		return fmt.Errorf("pid file %s names %s, want %d", v.PIDFile, got, pid)
	}
	return nil
}

// servesOnDisk checks that Vault is unsealed on its production listener and
// serves the certificate in ServerDir/server.crt.
func servesOnDisk(ctx context.Context, v *Vault) error {
	st, err := v.SealStatus(ctx, filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key"))
	if err != nil {
		return err
	}
	if st.Sealed {
		return errors.New("sealed")
	}
	chain, err := v.ServedChain(ctx)
	if err != nil {
		return err
	}
	onDisk, err := ReadCertificates(filepath.Join(v.ServerDir, "server.crt"))
	if err != nil {
		return err
	}
	if !chain[0].Equal(onDisk[0]) {
		return fmt.Errorf("serves serial %s, server.crt has %s", chain[0].SerialNumber, onDisk[0].SerialNumber)
	}
	return nil
}

func TestVaultRestart(t *testing.T) {
	v := StartT(t)
	ctx := context.Background()

	t.Run("restart command", func(t *testing.T) {
		if fi, err := os.Stat(v.RestartCommand); err != nil || fi.Mode().Perm()&0o100 == 0 {
			t.Fatalf("restart command %s: %v", v.RestartCommand, err)
		}
		before, err := v.ServedChain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leaf := replaceServerCert(t, v)
		if leaf.Equal(before[0]) {
			t.Fatal("the new certificate is the served one")
		}
		old := v.PID()
		start := time.Now()
		out, err := exec.Command(v.RestartCommand).CombinedOutput()
		exited := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v: %s", v.RestartCommand, err, out)
		}
		pid := v.PID()
		if pid == old || pid == 0 {
			t.Fatalf("restart: pid %d, old %d", pid, old)
		}
		if !alive(pid) {
			t.Errorf("the new vault %d does not run", pid)
		}
		if alive(old) {
			t.Errorf("the old vault %d still runs", old)
		}
		// Running is not ready: poll as a client must.
		var first error
		pollUntil(t, "vault after the restart", func(ctx context.Context) error {
			err := servesOnDisk(ctx, v)
			if err == nil {
				err = pidFileNames(v, pid)
			}
			if first == nil {
				first = err
			}
			return err
		})
		t.Logf("%s exited after %s; the listener answered, unsealed, %s after it was run (first answer: %v)",
			filepath.Base(v.RestartCommand), exited.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), first)
		if chain, err := v.ServedChain(ctx); err != nil || !chain[0].Equal(leaf) {
			t.Errorf("the certificate replaced before the restart is not served: %v", err)
		}
		if err := v.WaitReady(ctx); err != nil {
			t.Error(err)
		}
		if v.PID() != pid {
			t.Errorf("PID() = %d, want %d", v.PID(), pid)
		}
	})

	t.Run("Restart", func(t *testing.T) {
		leaf := replaceServerCert(t, v)
		old := v.PID()
		pid, err := v.Restart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pid == old || pid != v.PID() || alive(old) {
			t.Fatalf("Restart: pid %d, PID() %d, old %d (alive %t)", pid, v.PID(), old, alive(old))
		}
		// Restart returns once Vault serves: no waiting here.
		if err := pidFileNames(v, pid); err != nil {
			t.Error(err)
		}
		if err := servesOnDisk(ctx, v); err != nil {
			t.Error(err)
		}
		if chain, err := v.ServedChain(ctx); err != nil || !chain[0].Equal(leaf) {
			t.Errorf("the certificate replaced before Restart is not served: %v", err)
		}
	})

	t.Run("failed unseal is reported", func(t *testing.T) {
		v.opMu.Lock()
		good := v.unsealKey
		v.unsealKey = hex.EncodeToString(make([]byte, 32))
		v.opMu.Unlock()
		defer func() {
			v.opMu.Lock()
			v.unsealKey = good
			v.opMu.Unlock()
		}()
		// The command reports only that the new process runs, as systemctl.
		if out, err := exec.Command(v.RestartCommand).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", v.RestartCommand, err, out)
		}
		bad := v.PID()
		err := v.WaitReady(ctx)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unsealing vault (pid %d)", bad)) {
			t.Fatalf("WaitReady after a failed unseal: %v", err)
		}
		log, rerr := os.ReadFile(filepath.Join(v.Dir, "vault.log"))
		if rerr != nil {
			t.Fatal(rerr)
		}
		if want := fmt.Sprintf("unsealing the restarted vault (pid %d) failed", bad); !strings.Contains(string(log), want) {
			t.Errorf("vault.log lacks %q", want)
		}

		// Once more, and the next Restart reports it although its own
		// process comes up well.
		if out, err := exec.Command(v.RestartCommand).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", v.RestartCommand, err, out)
		}
		bad = v.PID()
		pollUntil(t, "the background unseal to fail", func(context.Context) error {
			v.mu.Lock()
			defer v.mu.Unlock()
			select {
			case <-v.unsealing.done:
				return nil
			default:
				return errors.New("still unsealing")
			}
		})
		v.opMu.Lock()
		v.unsealKey = good
		v.opMu.Unlock()
		_, err = v.Restart(ctx)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unsealing vault (pid %d)", bad)) {
			t.Fatalf("Restart after a failed background unseal: %v", err)
		}
		if err := v.WaitReady(ctx); err != nil {
			t.Errorf("WaitReady once reported: %v", err)
		}
		if err := servesOnDisk(ctx, v); err != nil {
			t.Error(err)
		}
	})

	t.Run("start and stop", func(t *testing.T) {
		old := v.PID()
		if out, err := exec.Command(v.RestartCommand, "start").CombinedOutput(); err == nil || !strings.Contains(string(out), "runs already") {
			t.Errorf("start while running: %v: %s", err, out)
		}
		if out, err := exec.Command(v.RestartCommand, "stop").CombinedOutput(); err != nil {
			t.Fatalf("stop: %v: %s", err, out)
		}
		if alive(old) {
			t.Errorf("vault %d runs after stop", old)
		}
		if out, err := exec.Command(v.RestartCommand, "start").CombinedOutput(); err != nil {
			t.Fatalf("start: %v: %s", err, out)
		}
		if err := v.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if v.PID() == old {
			t.Error("start kept the old pid")
		}
	})

	// Last: stops everything.
	t.Run("stop leaves no vault", func(t *testing.T) {
		pid := v.PID()
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Errorf("vault %d runs after Stop", pid)
		}
		if _, err := os.Stat(v.ctl.ctlPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("restart FIFO after Stop: %v", err)
		}
		out, err := exec.Command(v.RestartCommand).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not running") {
			t.Errorf("restart command after Stop: %v: %s", err, out)
		}
		if _, err := v.Restart(ctx); err == nil {
			t.Error("Restart after Stop succeeded")
		}
		if alive(v.PID()) {
			t.Errorf("vault %d runs after Restart after Stop", v.PID())
		}
	})
}
