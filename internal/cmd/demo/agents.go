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
	"strings"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/steps"
)

// tokenWait bounds the wait for an agent's sink to hold a token issued for
// the certificate on disk; rotplan's own agent check has waited already,
// so this only covers a sink written a moment late.
const tokenWait = 60 * time.Second

// agentsPart is step 3 of the run in the demo: the seed's apps, each with
// a real Vault Agent, rotated by the agents plan.
type agentsPart struct {
	d       *demo
	plan    string
	apps    []*testvault.App
	before  map[string]agentState
	skipped string // why the part did not run; "" when it did
}

// agentState is what the demo sees of one app's agent from outside: the
// login certificate on disk, the serial the token in its sink was issued
// for (Vault's cert-auth metadata, looked up with the root client) and the
// agent's pid. The token itself is never kept or shown.
type agentState struct {
	pid         int
	certSerial  *big.Int
	tokenSerial *big.Int
}

// startAgents sets up the seed's apps and their agents, or, when not root,
// says why it cannot and returns a part that is skipped.
func (d *demo) startAgents(plan string) (*agentsPart, error) {
	p := &agentsPart{d: d, plan: plan, before: map[string]agentState{}}
	names := testvault.SeedApps()
	fmt.Printf("== The apps' Vault Agents, before step 3 of the run\n")
	if os.Geteuid() != 0 {
		p.skipped = "it needs root: system users for the apps, files owned by them, Vault Agents running as them"
		fmt.Printf("NOT ROOT: the agents part needs root (system users %s, files owned by them,\n", strings.Join(names, " and "))
		fmt.Printf("Vault Agents running as them). It is skipped; the control plane runs as usual.\n")
		fmt.Printf("Run `make demo` as root to see the agents rotated.\n\n")
		return p, nil
	}
	fmt.Printf("Setting up the apps %s: per app a system user, a home, the PKI role\n", strings.Join(names, " and "))
	fmt.Printf("agent-mtls-<app>, the policies, the cert-auth mapping auth/cert/certs/agent-<app>,\n")
	fmt.Printf("a login certificate and a real Vault Agent (the same vault binary) running as the app.\n")
	t0 := time.Now()
	apps, err := d.v.AddApps(d.ctx, names...)
	if err != nil {
		return nil, err
	}
	p.apps = apps
	fmt.Printf("The agents are logged in after %s.\n", time.Since(t0).Round(time.Millisecond))
	fmt.Printf("AGENTS BEFORE (token serial: the serial Vault's cert auth recorded when the agent logged in):\n")
	for _, a := range apps {
		s, err := d.agentState(d.ctx, a, nil)
		if err != nil {
			return nil, err
		}
		p.before[a.Name] = s
		fmt.Printf("  %-10s agent pid %d, its files under %s\n", a.Name, s.pid, a.Home)
		fmt.Printf("  %-10s agent.crt serial %s\n", "", serialHex(s.certSerial))
		fmt.Printf("  %-10s token     serial %s\n", "", serialHex(s.tokenSerial))
	}
	fmt.Println()
	return p, nil
}

// rotate runs the agents plan as root with the harness's variables and
// checks from outside, per app, that the certificate changed, the agent was
// restarted and its token was issued for the new certificate.
func (p *agentsPart) rotate(skip bool) int {
	if p.skipped != "" {
		return 0
	}
	d := p.d
	fmt.Printf("== The apps' Vault Agents, step 3 of the run (%s)\n", p.plan)
	names := make([]string, len(p.apps))
	for i, a := range p.apps {
		names[i] = a.Name
	}
	vars := d.v.AgentPlanVars(names...)
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var flags []string
	for _, k := range keys {
		flags = append(flags, "-var", k+"="+vars[k])
	}
	fmt.Printf(`Per app, in parallel: a new login certificate from agent-mtls-<app>, its
files written as the app's user, cert auth, the policies and the mapping
in the declared state, the agent restarted (with the harness's command, as
systemctl --user restart in production: agent_restart below), then checks
that the app's files log in and that the agent logged in with the new
certificate.
`)

	rotplanFailed := false
	if skip {
		fmt.Printf("-skip-rotplan: not running rotplan.\n")
	} else {
		t0 := time.Now()
		rotplanFailed = !d.rotplanRun(p.plan, filepath.Join(d.base, "state-agents"), flags)
		fmt.Printf("Preview, run and status of the agents plan took %s.\n", time.Since(t0).Round(time.Millisecond))
	}
	if d.ctx.Err() != nil {
		return 130
	}

	failed := rotplanFailed
	fmt.Printf("AGENTS AFTER:\n")
	// One bound for all apps: their agents were restarted together.
	ctx, cancel := context.WithTimeout(d.ctx, tokenWait)
	defer cancel()
	for _, a := range p.apps {
		before := p.before[a.Name]
		cert, err := a.CertSerial()
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
		want := cert
		if skip {
			want = nil
		}
		t0 := time.Now()
		s, err := d.agentState(ctx, a, want)
		waited := time.Since(t0).Round(time.Millisecond)
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: FAILED: app %s: %v\n", a.Name, err)
			failed = true
		}
		changed := cert.Cmp(before.certSerial) != 0
		matches := s.tokenSerial != nil && s.tokenSerial.Cmp(cert) == 0
		restarted := s.pid != 0 && s.pid != before.pid
		fmt.Printf("  %-10s agent pid %d (restarted: %t)\n", a.Name, s.pid, restarted)
		fmt.Printf("  %-10s agent.crt serial %s (new: %t)\n", "", serialHex(cert), changed)
		fmt.Printf("  %-10s token     serial %s (== agent.crt: %t, checked after %s)\n", "", serialHex(s.tokenSerial), matches, waited)
		switch {
		case skip:
		case !changed:
			fmt.Fprintf(os.Stderr, "demo: FAILED: app %s: the agent's certificate did not change\n", a.Name)
			failed = true
		case !restarted:
			fmt.Fprintf(os.Stderr, "demo: FAILED: app %s: the agent was not restarted\n", a.Name)
			failed = true
		case !matches && err == nil:
			fmt.Fprintf(os.Stderr, "demo: FAILED: app %s: the agent's token was not issued for the new certificate\n", a.Name)
			failed = true
		}
	}
	fmt.Println()
	if failed {
		return 1
	}
	return 0
}

// agentState reads what the demo shows of a's agent. With want, it waits
// until the token in the sink was issued for the certificate with that
// serial; when ctx is done first it returns the last state seen and an
// error.
func (d *demo) agentState(ctx context.Context, a *testvault.App, want *big.Int) (agentState, error) {
	var s agentState
	var err error
	for {
		s, err = d.agentStateOnce(d.ctx, a) // once more when ctx is done
		if err == nil && (want == nil || s.tokenSerial.Cmp(want) == 0) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("the token in %s was issued for serial %s, not %s, within the %s the demo waits",
					a.SinkFile, serialHex(s.tokenSerial), serialHex(want), tokenWait)
			}
			return s, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *demo) agentStateOnce(ctx context.Context, a *testvault.App) (agentState, error) {
	s := agentState{pid: a.PID()}
	var err error
	if s.certSerial, err = a.CertSerial(); err != nil {
		return s, err
	}
	tok, err := a.Token()
	if err != nil {
		return s, err
	}
	if tok == "" {
		return s, fmt.Errorf("no token in %s", a.SinkFile)
	}
	info, err := d.v.LookupToken(ctx, tok)
	if err != nil {
		return s, err
	}
	dec := info.Meta["serial_number"]
	n, ok := new(big.Int).SetString(dec, 10)
	if !ok {
		return s, errors.New("the agent's token carries no serial_number: not a cert-auth login")
	}
	s.tokenSerial = n
	return s, nil
}

// serialHex formats a serial as steps.SerialHex does a certificate's, or
// "(none)".
func serialHex(n *big.Int) string {
	if n == nil {
		return "(none)"
	}
	return steps.SerialHex(&x509.Certificate{SerialNumber: n})
}
