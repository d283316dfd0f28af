package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/steps"
)

// marker marks a directory created by the demo; only such directories (or
// empty ones) are removed.
const marker = ".rotplan-demo"

func main() {
	os.Exit(run())
}

// demo is one run of the demo: the harness Vault, the rotplan binary and
// the directory everything lives in.
type demo struct {
	ctx        context.Context
	v          *testvault.Vault
	rotplanBin string
	vaultBin   string
	base       string
}

func run() int {
	vaultBin := flag.String("vault", os.Getenv(testvault.EnvBinary), "vault server binary (default $"+testvault.EnvBinary+")")
	rotplanBin := flag.String("rotplan", "", "rotplan binary")
	dir := flag.String("dir", ".demo", "demo directory (removed and recreated)")
	plan := flag.String("plan", "examples/prod.hcl", "rotplan plan that rotates the control plane")
	everything := flag.String("everything", "examples/everything.hcl", "rotplan plan of the whole run, with the apps' agents and the edge proxy (needs root and nginx; \"\": control plane only)")
	clusterPlan := flag.String("cluster", "examples/cluster.hcl", "rotplan plan of the 3-node Vault cluster, run in the fleet part (needs root, OpenSSH and network namespaces; \"\": no fleet part)")
	webPlan := flag.String("fleet", "examples/fleet.hcl", "rotplan plan of the nginx fleet, run in the fleet part (\"\": no fleet part)")
	skip := flag.Bool("skip-rotplan", false, "only bring Vault (and the agents) up and check them; do not run rotplan")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: demo -vault BIN -rotplan BIN [-dir .demo] [-plan examples/prod.hcl] [-everything examples/everything.hcl] [-cluster examples/cluster.hcl] [-fleet examples/fleet.hcl] [-skip-rotplan]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		return 2
	}
	if *vaultBin == "" {
		fmt.Fprintln(os.Stderr, "demo: -vault is required")
		return 2
	}
	if *rotplanBin == "" && !*skip {
		fmt.Fprintln(os.Stderr, "demo: -rotplan is required (or -skip-rotplan)")
		return 2
	}
	if !*skip {
		var err error
		if *rotplanBin, err = exec.LookPath(*rotplanBin); err != nil {
			fmt.Fprintf(os.Stderr, "demo: rotplan binary: %v\n", err)
			return 2
		}
		for _, p := range []string{*plan, *everything, *clusterPlan, *webPlan} {
			if p == "" {
				continue
			}
			if _, err := os.Stat(p); err != nil {
				fmt.Fprintf(os.Stderr, "demo: plan: %v\n", err)
				return 2
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	base, err := testvault.PrepareDir(*dir, marker)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}

	fmt.Printf("== rotplan demo\n")
	fmt.Printf("Starting a production-like Vault in %s (log: %s).\n", base, filepath.Join(base, "vault.log"))
	t0 := time.Now()
	v, err := testvault.Start(ctx, testvault.Options{Binary: *vaultBin, Dir: base})
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	d := &demo{ctx: ctx, v: v, rotplanBin: *rotplanBin, vaultBin: *vaultBin, base: base}
	code := d.run(t0, *plan, *everything, *skip)
	if ctx.Err() == nil {
		code = max(code, d.fleet(*clusterPlan, *webPlan, *skip))
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "demo: interrupted")
		code = 130
	}

	// Vault stops the agents first; then nothing the demo started may
	// remain.
	if err := v.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: stopping vault: %v\n", err)
		code = max(code, 1)
	}
	left, err := leftovers(base)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo: looking for processes left behind: %v\n", err)
		code = max(code, 1)
	case len(left) > 0:
		fmt.Fprintf(os.Stderr, "demo: FAILED: processes left behind:\n  %s\n", strings.Join(left, "\n  "))
		code = max(code, 1)
	default:
		fmt.Printf("Everything the demo started is stopped; no process of it is left.\n")
	}
	return code
}

// run is the demo between Vault's start and its stop: as root, the whole
// run (everything, when not "") against the full bed; otherwise the control
// plane alone (plan). Either is checked from outside. It returns the exit
// code.
func (d *demo) run(t0 time.Time, plan, everything string, skip bool) int {
	v := d.v
	fmt.Printf("Vault is up after %s, running as %s (pid %d, pid file %s).\n\n",
		time.Since(t0).Round(time.Millisecond), v.Owner, v.PID(), v.PIDFile)
	why := wholeRunMissing(everything)
	if why != "" {
		fmt.Printf("NOT THE WHOLE RUN: %s.\nThe control plane (steps 1 and 2) runs alone.\n\n", why)
		code := d.controlPlane(plan, skip)
		if d.ctx.Err() != nil {
			return 130
		}
		if code == 0 {
			fmt.Println("OK: rotplan rotated the Vault listener certificate.")
			fmt.Printf("SKIPPED: the whole run (%s).\n", why)
		}
		return code
	}
	w, err := d.startWholeRun(everything)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	code := w.rotate(skip)
	if d.ctx.Err() != nil {
		return 130
	}
	switch {
	case code != 0:
	case skip:
		fmt.Println("OK (the bed only)")
	default:
		fmt.Println("OK: rotplan rotated everything: the admin and listener certificates, the agents' login certificates and mappings, the apps' leaves behind nginx, the proxy's trust material; it restarted nginx and Vault, and the healthcheck passed directly and through the proxy.")
	}
	return code
}

// wholeRunMissing says why the whole run cannot be shown here, "" when it
// can: it needs root (system users, files owned by them, processes running
// as them) and nginx.
func wholeRunMissing(everything string) string {
	switch {
	case everything == "":
		return "-everything is empty"
	case os.Geteuid() != 0:
		return "it needs root: system users for the apps and the proxy, files owned by them, agents and nginx running as them; run `make demo` as root"
	}
	if _, err := testvault.NginxBinary(); err != nil {
		return err.Error()
	}
	return ""
}

// controlPlane runs the control-plane plan (steps 1 and 2 of the run: the
// admin certificate and the listener's) and checks from outside that the
// served certificate changed and is the one on disk.
func (d *demo) controlPlane(plan string, skip bool) int {
	v := d.v
	fmt.Printf("== The control plane, steps 1 and 2 of the run (%s)\n", plan)
	fmt.Printf(`Vault's PKI (root CA at pki/, intermediate at pki-prod/) issued the
certificate its own production listener serves. That listener requires a
client certificate (admin cert in %s, cert auth -> policy
rotplan-admin); the operator trusts only the root CA (%s).
rotplan will issue a new server certificate through Vault, install it in
%s and send SIGHUP to Vault so that it reloads it.
`, v.AdminDir, v.RootCAFile, v.ServerDir)

	fmt.Printf("Production listener: %s (SNI %s)\n", v.Addr, v.ServerName)

	before, err := servedLeaf(d.ctx, v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Printf("BEFORE: served serial %s, NotAfter %s\n\n", steps.SerialHex(before), before.NotAfter.UTC().Format(time.RFC3339))

	varFile := filepath.Join(d.base, "prod.vars.hcl")
	if err := v.WriteVarFile(varFile); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Printf("Plan variables written to %s.\n", varFile)

	rotplanFailed := false
	if skip {
		fmt.Printf("-skip-rotplan: not running rotplan.\n")
	} else {
		fmt.Printf("Environment added for rotplan:\n")
		for _, kv := range v.Environ() {
			fmt.Printf("  %s\n", kv)
		}
		state := filepath.Join(d.base, "state")
		rotplanFailed = !d.rotplanRun(d.local(), plan, state, []string{"-var-file", varFile})
	}
	if d.ctx.Err() != nil {
		return 130
	}

	after, err := servedLeaf(d.ctx, v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	onDisk, err := certFile(filepath.Join(v.ServerDir, "server.crt"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	changed := after.SerialNumber.Cmp(before.SerialNumber) != 0
	matches := after.SerialNumber.Cmp(onDisk.SerialNumber) == 0
	fmt.Printf("AFTER:  served serial %s, NotAfter %s\n", steps.SerialHex(after), after.NotAfter.UTC().Format(time.RFC3339))
	fmt.Printf("        server.crt     %s\n", steps.SerialHex(onDisk))
	fmt.Printf("served == server.crt: %t\n", matches)
	fmt.Printf("served != BEFORE:     %t\n\n", changed)

	switch {
	case rotplanFailed:
		return 1
	case !matches:
		fmt.Fprintln(os.Stderr, "demo: FAILED: the served certificate is not the one in server.crt")
		return 1
	case skip:
		return 0
	case !changed:
		fmt.Fprintln(os.Stderr, "demo: FAILED: the served certificate did not change")
		return 1
	}
	return 0
}

// operator is where the demo's operator runs rotplan: a network namespace
// (nil: the demo's own) and rotplan's environment.
type operator struct {
	ns  *testhosts.Namespace
	env []string
}

// local is the operator on this machine, with the harness Vault's
// environment (the admin identity).
func (d *demo) local() operator {
	return operator{env: append(os.Environ(), d.v.Environ()...)}
}

// rotplanRun shows what an operator would run: the preview, the run and
// the journal's status, as op. It reports whether all three succeeded.
func (d *demo) rotplanRun(op operator, plan, state string, vars []string) bool {
	ok := true
	planArgs := append(append([]string{"plan"}, vars...), plan)
	if err := d.rotplan(op, false, planArgs...); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: rotplan plan failed: %v\n", err)
		ok = false
	}
	runArgs := append(append([]string{"run", "-state-dir", state}, vars...), plan)
	if err := d.rotplan(op, true, runArgs...); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: rotplan run failed: %v\n", err)
		ok = false
	}
	fmt.Println()
	if err := d.rotplan(op, false, "status", "-state-dir", state, plan); err != nil {
		fmt.Fprintf(os.Stderr, "demo: rotplan status failed: %v\n", err)
		ok = false
	}
	fmt.Println()
	return ok
}

// rotplan runs the rotplan binary with args as op, its output on ours,
// after printing the command line (ip netns exec NS ... in a namespace).
// A run (interruptible) gets SIGINT when the demo is interrupted, and
// stops as it would at a terminal: the steps under way finish and the
// journal says how to resume. That SIGINT is its only one: rotplan runs
// in a process group of its own, so a ^C at the terminal reaches the demo
// alone (rotplan takes a second SIGINT as "stop at once", cutting short
// what was under way).
func (d *demo) rotplan(op operator, interruptible bool, args ...string) error {
	var cmd *exec.Cmd
	if op.ns != nil {
		cmd = op.ns.Command(d.ctx, d.rotplanBin, args...)
	} else {
		cmd = exec.CommandContext(d.ctx, d.rotplanBin, args...)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	fmt.Printf("\n$ %s\n", shellJoin(cmd.Args))
	cmd.Env = op.env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if interruptible {
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 15 * time.Second
	}
	return cmd.Run()
}

// shellJoin joins args as a shell would need them typed.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = testvault.ShellQuote(a)
	}
	return strings.Join(out, " ")
}

// leftovers lists the processes whose command line names dir: Vault and
// the agents run with their configuration below it.
func leftovers(dir string) ([]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var left []string
	for _, e := range entries {
		pid := e.Name()
		if pid == "" || pid[0] < '0' || pid[0] > '9' || pid == fmt.Sprint(os.Getpid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		cmdline := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
		if strings.Contains(cmdline, dir+string(filepath.Separator)) {
			left = append(left, pid+": "+cmdline)
		}
	}
	return left, nil
}

func servedLeaf(ctx context.Context, v *testvault.Vault) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	chain, err := v.ServedChain(ctx)
	if err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, errors.New("server sent no certificate")
	}
	return chain[0], nil
}

func certFile(path string) (*x509.Certificate, error) {
	certs, err := testvault.ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}
