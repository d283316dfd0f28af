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

	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/steps"
)

// marker marks a directory created by the demo; only such directories (or
// empty ones) are removed.
const marker = ".rotplan-demo"

func main() {
	os.Exit(run())
}

func run() int {
	vaultBin := flag.String("vault", os.Getenv(testvault.EnvBinary), "vault server binary (default $"+testvault.EnvBinary+")")
	rotplanBin := flag.String("rotplan", "", "rotplan binary")
	dir := flag.String("dir", ".demo", "demo directory (removed and recreated)")
	plan := flag.String("plan", "examples/prod.hcl", "rotplan plan to run")
	skip := flag.Bool("skip-rotplan", false, "only bring Vault up and check it; do not run rotplan")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: demo -vault BIN -rotplan BIN [-dir .demo] [-plan examples/prod.hcl] [-skip-rotplan]\n")
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
		if _, err := os.Stat(*plan); err != nil {
			fmt.Fprintf(os.Stderr, "demo: plan: %v\n", err)
			return 2
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
	defer func() {
		if err := v.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "demo: stopping vault: %v\n", err)
		}
	}()
	fmt.Printf("Vault is up after %s, running as %s (pid %d, pid file %s).\n\n",
		time.Since(t0).Round(time.Millisecond), v.Owner, v.PID(), v.PIDFile)
	fmt.Printf(`Vault's PKI (root CA at pki/, intermediate at pki-prod/) issued the
certificate its own production listener serves. That listener requires a
client certificate (admin cert in %s, cert auth -> policy
rotplan-admin); the operator trusts only the root CA (%s).
rotplan will issue a new server certificate through Vault, install it in
%s and send SIGHUP to Vault so that it reloads it.

`, v.AdminDir, v.RootCAFile, v.ServerDir)
	fmt.Printf("Production listener: %s (SNI %s)\n", v.Addr, v.ServerName)

	before, err := servedLeaf(ctx, v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Printf("BEFORE: served serial %s, NotAfter %s\n\n", steps.SerialHex(before), before.NotAfter.UTC().Format(time.RFC3339))

	varFile := filepath.Join(base, "prod.vars.hcl")
	if err := v.WriteVarFile(varFile); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Printf("Plan variables written to %s.\n", varFile)

	rotplanFailed := false
	if *skip {
		fmt.Printf("-skip-rotplan: not running rotplan.\n")
	} else {
		args := []string{"run", "-state-dir", filepath.Join(base, "state"), "-var-file", varFile, *plan}
		fmt.Printf("Environment added for rotplan:\n")
		for _, kv := range v.Environ() {
			fmt.Printf("  %s\n", kv)
		}
		// First the preview an operator would read before rotating.
		planArgs := []string{"plan", "-var-file", varFile, *plan}
		fmt.Printf("\n$ %s %s\n", *rotplanBin, strings.Join(planArgs, " "))
		preview := exec.CommandContext(ctx, *rotplanBin, planArgs...)
		preview.Env = append(os.Environ(), v.Environ()...)
		preview.Stdout, preview.Stderr = os.Stdout, os.Stderr
		if err := preview.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "\ndemo: rotplan plan failed: %v\n", err)
			rotplanFailed = true
		}

		fmt.Printf("\n$ %s %s\n", *rotplanBin, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, *rotplanBin, args...)
		cmd.Env = append(os.Environ(), v.Environ()...)
		cmd.Stdin = os.Stdin
		cmd.Stdout = os.Stdout
		cmd.Stderr = os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 15 * time.Second
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "\ndemo: rotplan failed: %v\n", err)
			rotplanFailed = true
		}
		fmt.Println()
		// What the journal says about the run, as an operator would look.
		statusArgs := []string{"status", "-state-dir", filepath.Join(base, "state"), *plan}
		fmt.Printf("$ %s %s\n", *rotplanBin, strings.Join(statusArgs, " "))
		status := exec.CommandContext(ctx, *rotplanBin, statusArgs...)
		status.Stdout, status.Stderr = os.Stdout, os.Stderr
		if err := status.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "demo: rotplan status failed: %v\n", err)
			rotplanFailed = true
		}
		fmt.Println()
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "demo: interrupted")
		return 130
	}

	after, err := servedLeaf(ctx, v)
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
	fmt.Printf("served != BEFORE:     %t\n", changed)

	switch {
	case rotplanFailed:
		return 1
	case *skip:
		if !matches {
			fmt.Fprintln(os.Stderr, "demo: served certificate does not match server.crt")
			return 1
		}
		fmt.Println("OK (Vault part only)")
		return 0
	case !changed:
		fmt.Fprintln(os.Stderr, "demo: FAILED: the served certificate did not change")
		return 1
	case !matches:
		fmt.Fprintln(os.Stderr, "demo: FAILED: the served certificate is not the one in server.crt")
		return 1
	}
	fmt.Println("OK: rotplan rotated the Vault listener certificate.")
	return 0
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
