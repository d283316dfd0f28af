package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/steps"
)

// settle bounds how long the demo waits, after the run, for what it reads
// from outside to show the state on disk: rotplan's own checks have waited
// already, so this only covers a sink or a worker a moment late.
const settle = 60 * time.Second

// wholeRun is the demo as root: the seed's whole run (examples/everything.hcl)
// against the full bed: Vault, the apps' real Vault Agents, the edge
// proxy's real nginx and its agent.
type wholeRun struct {
	d     *demo
	plan  string
	apps  []*testvault.App
	proxy *testvault.Proxy
}

// startWholeRun sets up the apps and the edge proxy on top of Vault.
func (d *demo) startWholeRun(plan string) (*wholeRun, error) {
	w := &wholeRun{d: d, plan: plan}
	names := testvault.SeedApps()
	fmt.Printf("Setting up the apps %v (system users, PKI roles, policies, cert-auth mappings,\n", names)
	fmt.Printf("real Vault Agents running as them) and the edge proxy %s: a real nginx\n", testvault.ProxyUser)
	fmt.Printf("serving each app's leaf by SNI and the Vault edge, with its own Vault Agent.\n")
	t0 := time.Now()
	var err error
	if w.apps, err = d.v.AddApps(d.ctx, names...); err != nil {
		return nil, err
	}
	if w.proxy, err = d.v.StartProxy(d.ctx, names...); err != nil {
		return nil, err
	}
	fmt.Printf("The bed is up after %s: nginx on %s (master pid %d).\n\n", time.Since(t0).Round(time.Millisecond), w.proxy.HostPort, w.proxy.PID())
	return w, nil
}

// rotate runs the whole run and shows, per certificate, the serial a
// client saw before and sees after; every one must have changed and match
// its file. Then the healthcheck, from outside: seal status over mTLS,
// directly and through the Vault edge.
func (w *wholeRun) rotate(skip bool) int {
	d, v, p := w.d, w.d.v, w.proxy
	certs, err := v.Certificates()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	before, err := seen(d.ctx, certs, false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	pids := map[string]int{"vault": v.PID(), "nginx": p.PID()}
	fmt.Printf("== The whole run, steps 1 to 7 (%s)\n", w.plan)
	vars, err := v.EverythingPlanVars()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var flags []string
	for _, k := range keys {
		flags = append(flags, "-var", k+"="+vars[k])
	}
	fmt.Printf(`The harness's commands stand in for the seed's systemd user units
(vault_restart, proxy_restart, proxy_reload, agent_restart below): they ask
the harness to restart or reload the real process. Vault comes up sealed
after its restart, and its "unit" unseals it a moment later: running is
not ready, and the healthcheck waits for ready.
`)
	rotplanFailed := false
	var took time.Duration
	if skip {
		fmt.Printf("-skip-rotplan: not running rotplan.\n")
	} else {
		t0 := time.Now()
		rotplanFailed = !d.rotplanRun(d.local(), w.plan, filepath.Join(d.base, "state"), flags)
		took = time.Since(t0)
	}
	if d.ctx.Err() != nil {
		return 130
	}
	after, err := seen(d.ctx, certs, !skip)
	failed := rotplanFailed
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: %v\n", err)
		failed = true
	}
	fmt.Printf("CERTIFICATES, as a client sees them (serial before -> after):\n")
	for _, c := range certs {
		b, a := before[c.Name], after[c.Name]
		changed := b != nil && a != nil && a.Cmp(b) != 0
		fmt.Printf("  %-16s %s -> %s  new: %-5t  %s\n", c.Name, serialHex(b), serialHex(a), changed, c.How)
		if !skip && !changed {
			fmt.Fprintf(os.Stderr, "demo: FAILED: %s: the certificate a client sees did not change\n", c.Name)
			failed = true
		}
	}
	fmt.Printf("PROCESSES: Vault pid %d -> %d, nginx master pid %d -> %d (both restarted in step 6)\n",
		pids["vault"], v.PID(), pids["nginx"], p.PID())
	admin, key := filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "admin.key")
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	for _, h := range []struct {
		name string
		st   func() error
	}{
		{"directly at " + v.HostPort, func() error { return unsealed(v.SealStatus(ctx, admin, key)) }},
		{"through the Vault edge " + p.Addr, func() error { return unsealed(p.SealStatus(ctx, admin, key)) }},
	} {
		if err := h.st(); err != nil {
			fmt.Fprintf(os.Stderr, "demo: FAILED: vault status %s: %v\n", h.name, err)
			failed = true
			continue
		}
		fmt.Printf("HEALTH: vault status over mTLS %s: unsealed\n", h.name)
	}
	if took > 0 {
		fmt.Printf("The preview, the whole run and its status took %s.\n", took.Round(time.Millisecond))
	}
	fmt.Println()
	if failed {
		return 1
	}
	return 0
}

// seen reads the serial a client sees of every certificate; with settled,
// it waits until each is the one on disk.
func seen(ctx context.Context, certs []testvault.Certificate, settled bool) (map[string]*big.Int, error) {
	ctx, cancel := context.WithTimeout(ctx, settle)
	defer cancel()
	got := map[string]*big.Int{}
	for _, c := range certs {
		var s *big.Int
		var err error
		if settled {
			s, err = c.WaitSeen(ctx)
		} else {
			s, err = c.Seen(ctx)
		}
		if err != nil {
			return got, err
		}
		got[c.Name] = s
	}
	return got, nil
}

// unsealed says why a seal status is not a healthy Vault.
func unsealed(st *vaultapi.SealStatusResponse, err error) error {
	if err != nil {
		return err
	}
	if st.Sealed {
		return errors.New("Vault is sealed")
	}
	return nil
}

// serialHex formats a serial as steps.SerialHex does a certificate's, or
// "(none)".
func serialHex(n *big.Int) string {
	if n == nil {
		return "(none)"
	}
	return steps.SerialHex(&x509.Certificate{SerialNumber: n})
}
