package main

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/internal/testweb"
)

const (
	// webHosts is how many nginx hosts the web fleet has, and batchSize
	// how many of them the rollout takes at a time: two batches.
	webHosts  = 4
	batchSize = 2
	// clusterHosts is the cluster's size: examples/cluster.hcl names
	// vault-1 to vault-3.
	clusterHosts = 3
	// bedTimeout bounds the start of both beds.
	bedTimeout = 2 * time.Minute
)

// fleetPart is issue 18's fleet work on two beds of hosts in network
// namespaces, each running its own sshd: a 3-node Vault cluster (Raft)
// rotated by examples/cluster.hcl, and nginx on four hosts, with leaves
// from the demo's Vault, rotated by examples/fleet.hcl. rotplan runs in
// each bed's controller namespace, as an operator on a controller would.
type fleetPart struct {
	d                  *demo
	clusterPlan        string
	webPlan            string
	clusterBed, webBed *testhosts.Fleet
	cluster            *testvault.Cluster
	web                *testweb.Web
}

// fleetMissing says in one line why the fleet part cannot run here, ""
// when it can: it needs root, the ip command, OpenSSH's sshd and nginx
// (network namespaces being permitted shows only when the beds start).
func fleetMissing(clusterPlan, webPlan string) string {
	if clusterPlan == "" || webPlan == "" {
		return "-cluster or -fleet is empty"
	}
	if err := testhosts.Check(""); err != nil {
		if os.Geteuid() != 0 {
			return "it needs root: hosts in network namespaces, each running sshd (and Vault or nginx); run `make demo` as root"
		}
		return err.Error()
	}
	if _, err := testvault.NginxBinary(); err != nil {
		return err.Error()
	}
	return ""
}

// fleet runs the fleet part, or says in one line why it is skipped; it
// returns the exit code. Whatever it started is stopped before it
// returns, interrupted or not, and its namespaces are gone.
func (d *demo) fleet(clusterPlan, webPlan string, skip bool) int {
	if why := fleetMissing(clusterPlan, webPlan); why != "" {
		fmt.Printf("SKIPPED: the fleet part (%s).\n", why)
		return 0
	}
	t0 := time.Now()
	p := &fleetPart{d: d, clusterPlan: clusterPlan, webPlan: webPlan}
	fmt.Printf("== The fleet: hosts in network namespaces, reached over SSH from a controller\n")
	fmt.Printf("Starting two beds (%s): a %d-node Vault cluster with Raft storage, one node a\n", d.base, clusterHosts)
	fmt.Printf("host; and nginx on %d hosts serving %s with leaves from the demo's Vault.\n", webHosts, testweb.ServerName)
	code := p.run(skip)
	if err := p.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: stopping the fleet beds: %v\n", err)
		code = max(code, 1)
	} else if p.clusterBed != nil || p.webBed != nil {
		fmt.Printf("The fleet beds are stopped; their network namespaces are gone.\n")
	}
	if d.ctx.Err() != nil {
		return 130
	}
	fmt.Printf("The fleet part took %s.\n", time.Since(t0).Round(time.Millisecond))
	if code == 0 && !skip && p.cluster != nil {
		fmt.Printf("OK: rotplan rotated the Vault cluster's listeners one node at a time, the standbys first, the cluster healthy with %d voters after; and the web fleet %d hosts at a time, each batch after the one before served its new certificates.\n", clusterHosts, batchSize)
	}
	fmt.Println()
	return code
}

// run starts the beds and rotates both; the caller stops the beds.
func (p *fleetPart) run(skip bool) int {
	d := p.d
	t0 := time.Now()
	if err := p.start(); err != nil {
		if errors.Is(err, testhosts.ErrDenied) {
			fmt.Printf("SKIPPED: the fleet part (%v).\n", testhosts.ErrDenied)
			return 0
		}
		if d.ctx.Err() != nil {
			return 130
		}
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Printf("Both beds are up after %s: the cluster on %s (controller %s), the web fleet on %s (controller %s).\n\n",
		time.Since(t0).Round(time.Millisecond), p.clusterBed.Subnet, p.clusterBed.Controller.Netns, p.webBed.Subnet, p.webBed.Controller.Netns)
	code := p.rotateCluster(skip)
	if d.ctx.Err() != nil {
		return 130
	}
	code = max(code, p.rotateWeb(skip))
	if d.ctx.Err() != nil {
		return 130
	}
	return code
}

// start brings up both beds at once: each its hosts first, then the
// cluster or nginx on them.
func (p *fleetPart) start() error {
	ctx, cancel := context.WithTimeout(p.d.ctx, bedTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var clusterErr, webErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.clusterBed, clusterErr = testhosts.StartFleet(ctx, testhosts.Options{Hosts: clusterHosts, Dir: filepath.Join(p.d.base, "cluster-bed")})
		if clusterErr == nil {
			p.cluster, clusterErr = testvault.StartCluster(ctx, p.clusterBed, p.d.vaultBin)
		}
	}()
	go func() {
		defer wg.Done()
		p.webBed, webErr = testhosts.StartFleet(ctx, testhosts.Options{Hosts: webHosts, Dir: filepath.Join(p.d.base, "web-bed")})
		if webErr == nil {
			p.web, webErr = testweb.StartWeb(ctx, p.webBed, p.d.v)
		}
	}()
	wg.Wait()
	return errors.Join(clusterErr, webErr)
}

// stop stops nginx, the cluster and both beds, then checks that none of
// the beds' namespaces is left.
func (p *fleetPart) stop() error {
	var errs []error
	if p.web != nil {
		errs = append(errs, p.web.Stop())
	}
	if p.cluster != nil {
		errs = append(errs, p.cluster.Stop())
	}
	for _, f := range []*testhosts.Fleet{p.clusterBed, p.webBed} {
		if f == nil {
			continue
		}
		errs = append(errs, f.Stop())
		for _, ns := range f.Namespaces() {
			if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
				errs = append(errs, fmt.Errorf("network namespace %s is left", ns))
			}
		}
	}
	return errors.Join(errs...)
}

// controllerEnv is the demo's environment without the VAULT_ variables of
// whoever runs it: the plans get their Vault from the variables, or from
// the environment added to it.
func controllerEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// writeVars writes a plan's variable file into the demo's directory.
func (p *fleetPart) writeVars(name, text string) (string, error) {
	path := filepath.Join(p.d.base, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", err
	}
	fmt.Printf("Plan variables written to %s.\n", path)
	return path, nil
}

// rotateCluster runs examples/cluster.hcl from the cluster bed's
// controller and checks from there, outside rotplan: every node's served
// certificate changed to the one in its tls.crt, the standbys changed
// first and the active node last, one node at a time (a watcher polls
// during the run), and autopilot says healthy with 3 voters after.
func (p *fleetPart) rotateCluster(skip bool) int {
	d, c := p.d, p.cluster
	fmt.Printf("== The Vault cluster, one node at a time (%s)\n", p.clusterPlan)
	fmt.Printf("Each node's listener certificate: standbys first, the active node last; each\n")
	fmt.Printf("node only once the one before serves its new certificate and autopilot is healthy.\n")
	active, err := c.Active(d.ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	// The order the plan promises: the standbys in node order, then the
	// active node.
	var order [][]string
	targets := map[string]target{}
	for _, n := range c.Nodes {
		role := "active"
		if n != active {
			role = "standby"
			order = append(order, []string{n.ID})
		}
		targets[n.ID] = target{
			label:  fmt.Sprintf("%-7s %s", role, n.HostPort),
			file:   n.CertFile,
			served: func(ctx context.Context) (*big.Int, error) { return testvault.LeafSerial(c.ServedChain(ctx, n)) },
		}
	}
	order = append(order, []string{active.ID})

	varFile, err := p.writeVars("cluster.vars.hcl", c.PlanVars())
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	op := operator{ns: p.clusterBed.Controller, env: controllerEnv()}
	code := p.rotate(op, p.clusterPlan, "cluster-state", varFile, order, targets, skip, "VAULT NODES", "SNI "+c.ServerName+", mTLS as admin")
	if d.ctx.Err() != nil {
		return 130
	}
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	st, err := c.Autopilot(ctx)
	if err == nil {
		err = c.Healthy(st)
	}
	if err == nil && len(st.Voters) != clusterHosts {
		err = fmt.Errorf("%d voters (%s), want %d", len(st.Voters), strings.Join(st.Voters, ", "), clusterHosts)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: autopilot after the run: %v\n", err)
		return 1
	}
	voters := slices.Sorted(slices.Values(st.Voters))
	fmt.Printf("AUTOPILOT after: healthy, %d voters (%s)\n\n", len(voters), strings.Join(voters, ", "))
	return code
}

// rotateWeb runs examples/fleet.hcl from the web bed's controller, in
// batches of batchSize, and checks from there: every host's served
// certificate changed to the one in its web.crt, and no host served its
// new one before every host of the batches before had theirs.
func (p *fleetPart) rotateWeb(skip bool) int {
	w := p.web
	fmt.Printf("== The web fleet, %d hosts at a time (%s)\n", batchSize, p.webPlan)
	fmt.Printf("Each host's leaf: Vault signs a key made on the controller; key and certificate\n")
	fmt.Printf("written on the host over SSH, nginx -t and a reload there; the next batch once\n")
	fmt.Printf("every host of this one serves its new certificate.\n")
	var names []string
	site := map[string]*testweb.Site{}
	for _, s := range w.Sites {
		names = append(names, s.Host.Name)
		site[s.Host.Name] = s
	}
	order := batches(names, batchSize)
	targets := map[string]target{}
	for i, b := range order {
		for _, n := range b {
			s := site[n]
			targets[n] = target{
				label:  fmt.Sprintf("batch %d  %s", i+1, s.HostPort),
				file:   s.CertFile,
				served: func(ctx context.Context) (*big.Int, error) { return testvault.LeafSerial(w.Served(ctx, s)) },
			}
		}
	}
	varFile, err := p.writeVars("fleet.vars.hcl", w.PlanVars(batchSize, "200ms"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Printf("Environment added for rotplan: Vault's, through a forwarder on the controller's loopback (%s).\n", w.VaultAddr)
	op := operator{ns: p.webBed.Controller, env: controllerEnv(w.Environ()...)}
	code := p.rotate(op, p.webPlan, "fleet-state", varFile, order, targets, skip, "NGINX HOSTS", "SNI "+testweb.ServerName)
	fmt.Println()
	return code
}

// target is a certificate the demo reads from outside: what a client
// gets, and the file it must be after the run.
type target struct {
	label  string // the role or batch, and the address
	file   string
	served func(context.Context) (*big.Int, error)
}

// rotate reads what every target serves, runs the plan (plan, run,
// status) as op while a watcher polls the targets, reads them again and
// prints, in the order they changed, each one's serial before and after.
// It checks that each changed to the certificate in its file and that the
// watcher never saw a stage of order serve its new certificate before
// every earlier stage did.
func (p *fleetPart) rotate(op operator, plan, state, varFile string, order [][]string, targets map[string]target, skip bool, title, how string) int {
	d := p.d
	names := slices.Concat(order...)
	read := func() (map[string]*big.Int, error) {
		ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
		defer cancel()
		got := map[string]*big.Int{}
		for _, n := range names {
			s, err := targets[n].served(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			got[n] = s
		}
		return got, nil
	}
	before, err := read()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	failed := false
	var rounds []map[string]*big.Int
	if skip {
		fmt.Printf("-skip-rotplan: not running rotplan.\n")
	} else {
		// The last stage first in each round: a round that sees a stage
		// serve its new certificate reads the earlier ones after it.
		var polled []string
		for i := len(order) - 1; i >= 0; i-- {
			polled = append(polled, order[i]...)
		}
		finish := watch(d.ctx, polled, targets)
		failed = !d.rotplanRun(op, plan, filepath.Join(d.base, state), []string{"-var-file", varFile})
		rounds = finish()
	}
	if d.ctx.Err() != nil {
		return 130
	}
	after, err := read()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: %v\n", err)
		return 1
	}
	first, orderErr := changeOrder(order, before, rounds)
	shown := slices.Clone(names)
	slices.SortStableFunc(shown, func(a, b string) int { return first[a] - first[b] })
	fmt.Printf("%s, as a client in the controller sees them (%s), in the order they changed:\n", title, how)
	for i, n := range shown {
		t := targets[n]
		onDisk, err := certFile(t.file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
		changed := after[n].Cmp(before[n]) != 0
		matches := after[n].Cmp(onDisk.SerialNumber) == 0
		fmt.Printf("  %d. %-7s %s  %s -> %s  new: %-5t  == its file: %t\n", i+1, n, t.label, serialHex(before[n]), serialHex(after[n]), changed, matches)
		if !skip && !changed {
			fmt.Fprintf(os.Stderr, "demo: FAILED: %s: the certificate a client sees did not change\n", n)
			failed = true
		}
		if !matches {
			fmt.Fprintf(os.Stderr, "demo: FAILED: %s: the certificate a client sees is not the one in %s\n", n, t.file)
			failed = true
		}
	}
	if !skip {
		var stages []string
		for _, s := range order {
			stages = append(stages, strings.Join(s, " "))
		}
		fmt.Printf("ORDER, watched from the controller in %d rounds during the run: %s: %s\n", len(rounds), strings.Join(stages, ", then "), verdict(orderErr))
		if orderErr != nil {
			fmt.Fprintf(os.Stderr, "demo: FAILED: order: %v\n", orderErr)
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

// verdict is "held" or "NOT HELD".
func verdict(err error) string {
	if err != nil {
		return "NOT HELD"
	}
	return "held"
}

// watch polls every target, in the order of names, round after round, until
// the returned function is called; that returns the rounds, each a name's
// serial (nil when the poll failed: a handshake during a reload, say).
func watch(ctx context.Context, names []string, targets map[string]target) func() []map[string]*big.Int {
	ctx, cancel := context.WithCancel(ctx)
	var rounds []map[string]*big.Int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			round := map[string]*big.Int{}
			for _, n := range names {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				round[n], _ = targets[n].served(pctx)
				pcancel()
			}
			if ctx.Err() != nil {
				return // a round cut short says nothing
			}
			rounds = append(rounds, round)
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() []map[string]*big.Int {
		cancel()
		<-done
		return rounds
	}
}

// changeOrder checks rounds of observations against order, stages of
// names that must change one stage after another: no round saw a name
// serve another serial than before while a name of an earlier stage still
// served its serial of before. Failed polls (nil) say nothing, and neither
// does a name seen with its old serial after its new one: while nginx
// reloads, its old workers still answer until they are told to stop, and
// the next stage starts only after that. It returns for each name the
// first round that saw it changed (len(rounds) when none did: it changed
// after the last round), and the first violation.
func changeOrder(order [][]string, before map[string]*big.Int, rounds []map[string]*big.Int) (first map[string]int, err error) {
	first = map[string]int{}
	for _, n := range slices.Concat(order...) {
		first[n] = len(rounds)
	}
	for r, round := range rounds {
		var oldSeen []string // names of earlier stages seen serving their old serial
		for _, stage := range order {
			var newSeen []string
			for _, n := range stage {
				s := round[n]
				switch {
				case s == nil:
				case s.Cmp(before[n]) == 0:
					oldSeen = append(oldSeen, n)
				default:
					first[n] = min(first[n], r)
					newSeen = append(newSeen, n)
				}
			}
			if len(newSeen) > 0 {
				var earlier []string
				for _, o := range oldSeen {
					if !slices.Contains(stage, o) {
						earlier = append(earlier, o)
					}
				}
				if len(earlier) > 0 && err == nil {
					err = fmt.Errorf("round %d: %s served a new certificate while %s still served the old one", r+1, strings.Join(newSeen, " "), strings.Join(earlier, " "))
				}
			}
		}
	}
	return first, err
}

// batches cuts hosts into the rollout's batches of k: in key order, as a
// rollout takes a host block's instances.
func batches(hosts []string, k int) [][]string {
	hosts = slices.Sorted(slices.Values(hosts))
	var out [][]string
	for len(hosts) > 0 {
		n := min(k, len(hosts))
		out = append(out, hosts[:n])
		hosts = hosts[n:]
	}
	return out
}
