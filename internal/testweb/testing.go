package testweb

import (
	"context"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/rotplan/rotplan/internal/testvault"
)

// Start starts a fleet bed of n hosts for a test or benchmark: a Vault
// ([testvault.StartT]: skipped without ROTPLAN_VAULT_BIN), the hosts
// ([testhosts.Start]: skipped without root or sshd) and nginx on each
// (without nginx: as testhosts.Unavailable says). Everything stops when
// the test ends.
func Start(t testing.TB, n int) *Web {
	t.Helper()
	if _, err := testvault.NginxBinary(); err != nil {
		testhosts.Unavailable(t, err)
	}
	v := testvault.StartT(t)
	f := testhosts.Start(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	begin := time.Now()
	w, err := StartWeb(ctx, f, v)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testweb: nginx on %d hosts up in %s; Vault at %s from the controller", len(w.Sites), time.Since(begin).Round(time.Millisecond), w.VaultAddr)
	t.Cleanup(func() {
		if err := w.Stop(); err != nil {
			t.Errorf("%v", err)
		}
		if t.Failed() {
			for _, s := range w.Sites {
				t.Logf("testweb: %s: %s and %s", s.Host.Name, s.ErrorLog, s.LogFile)
			}
		}
	})
	return w
}
