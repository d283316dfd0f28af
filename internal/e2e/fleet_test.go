package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/internal/testweb"
)

// fleetRun is examples/fleet.hcl set up for a testweb bed: the plan and
// its variables (the batch size asked for among them) in a directory of
// their own, where rotplan runs as an operator would, its state in the
// default ./.rotplan.
type fleetRun struct {
	w   *testweb.Web
	dir string
}

// newFleetRun copies examples/fleet.hcl into a new directory and writes
// its variables for w: batch hosts a batch, checking again every interval
// while nginx reloads.
func newFleetRun(t testing.TB, w *testweb.Web, batch int, interval string) *fleetRun {
	t.Helper()
	plan, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "fleet.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	vars := w.PlanVars(batch, interval)
	for name, content := range map[string][]byte{"plan.hcl": plan, "vars.hcl": []byte(vars)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &fleetRun{w: w, dir: dir}
}

// addVars adds extra (HCL: max_failures = 1) to the run's variables.
func (r *fleetRun) addVars(t testing.TB, extra string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(r.dir, "vars.hcl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
}

// rotplan runs the rotplan binary in the bed's controller, in the plan's
// directory, with Vault's environment (through the forwarder); a run or
// a resume keeps its state in the default directory, ./.rotplan.
func (r *fleetRun) rotplan(t testing.TB, ctx context.Context, command string) result {
	t.Helper()
	return r.start(t, ctx, rotplanBin, nil, command)()
}

// start starts bin (rotplanBin or crashBin) as rotplan does, with env
// added to Vault's environment; wait waits for it.
func (r *fleetRun) start(t testing.TB, ctx context.Context, bin string, env []string, command string) (wait func() result) {
	t.Helper()
	cmd := r.w.Fleet.Controller.Command(ctx, bin, command, "-var-file", "vars.hcl", "plan.hcl")
	cmd.Dir = r.dir
	cmd.Env = append(append(cleanEnv(), r.w.Environ()...), env...)
	return startCmd(t, cmd, 5*time.Minute)
}

// state is the run's state directory: the default one, in the plan's
// directory.
func (r *fleetRun) state() string { return filepath.Join(r.dir, ".rotplan") }

// fleetBatches is the sites in the rollout's batches of k: hosts in key
// order, as the rollout takes host.web's instances.
func fleetBatches(w *testweb.Web, k int) [][]*testweb.Site {
	sites := slices.Clone(w.Sites)
	slices.SortFunc(sites, func(a, b *testweb.Site) int { return strings.Compare(a.Host.Name, b.Host.Name) })
	var out [][]*testweb.Site
	for len(sites) > 0 {
		n := min(k, len(sites))
		out = append(out, sites[:n])
		sites = sites[n:]
	}
	return out
}

// servedSerials asks every site what it serves, from the controller.
func servedSerials(t *testing.T, ctx context.Context, w *testweb.Web) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range w.Sites {
		chain, err := w.Served(ctx, s)
		if err != nil {
			t.Fatalf("%s: %v", s.Host.Name, err)
		}
		out[s.Host.Name] = chain[0].SerialNumber.String()
	}
	return out
}

// watchServed polls, from the controller and until stop is closed, what
// every site serves, a round at a time, and returns the rounds: in each,
// host name to serial ("" when the poll failed). A round asks the last
// batch's hosts first, so that a round seeing a later batch's new
// certificate saw the earlier batches' afterwards, when they had theirs
// for longer still.
func watchServed(ctx context.Context, w *testweb.Web, batches [][]*testweb.Site, stop <-chan struct{}) func() []map[string]string {
	var order []*testweb.Site
	for i := len(batches) - 1; i >= 0; i-- {
		order = append(order, batches[i]...)
	}
	var rounds []map[string]string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			round := map[string]string{}
			for _, s := range order {
				if chain, err := w.Served(ctx, s); err == nil {
					round[s.Host.Name] = chain[0].SerialNumber.String()
				} else {
					round[s.Host.Name] = ""
				}
			}
			rounds = append(rounds, round)
		}
	}()
	return func() []map[string]string { wg.Wait(); return rounds }
}

// TestFleetBatchesOfTwo rotates four nginx hosts with examples/fleet.hcl
// (batches of two), rotplan running in the bed's controller: `rotplan
// plan` lists the batches; after the run every host serves, to a client
// in the controller, the certificate in its files, a new one, whose key
// is in the key file (0600 root, the certificate 0644 root, as asked
// over SSH); a watcher polling the hosts during the run never saw a
// later batch serve its new certificate before an earlier one; the
// journal shows each batch starting after the previous batch's TLS
// checks passed; each key was made on its host (Vault's audit log has one
// CSR per host, for the key in its file, and no private key nor any line
// of those keys); and no key or token is in the output or the state.
func TestFleetBatchesOfTwo(t *testing.T) {
	w := testweb.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vaultUser, err := user.Lookup(w.Vault.Owner)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(vaultUser.Uid)
	gid, _ := strconv.Atoi(vaultUser.Gid)
	audit := enableRawAudit(t, ctx, w.Vault.Root(), w.Vault.Dir, uid, gid)
	r := newFleetRun(t, w, 2, "50ms")
	batches := fleetBatches(w, 2)

	res := r.rotplan(t, ctx, "plan")
	if res.exit != 0 {
		t.Fatalf("plan: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	for i, b := range batches {
		var hosts []string
		for _, s := range b {
			hosts = append(hosts, fmt.Sprintf("host.web[%q]", s.Host.Name))
		}
		want := fmt.Sprintf("rollout web: batch %d/%d: %s", i+1, len(batches), strings.Join(hosts, ", "))
		if !strings.Contains(res.stdout, want) {
			t.Errorf("plan does not list %q:\n%s", want, res.stdout)
		}
	}

	before := servedSerials(t, ctx, w)
	stop := make(chan struct{})
	rounds := watchServed(ctx, w, batches, stop)
	res = r.rotplan(t, ctx, "run")
	close(stop)
	seen := rounds()
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	after := servedSerials(t, ctx, w)

	// Every host serves a new certificate, the one in its files, with
	// the key in its key file; the files are root's, as asked.
	var keyLines []string
	for _, s := range w.Sites {
		name := s.Host.Name
		if after[name] == before[name] {
			t.Errorf("%s still serves serial %s", name, before[name])
		}
		servesItsFiles(t, ctx, w, s)
		script := fmt.Sprintf("stat -c '%%n %%a %%u:%%g' %s %s", s.KeyFile, s.CertFile)
		out, err := w.Fleet.Controller.Command(ctx, "ssh", "-F", w.Fleet.SSHConfig, name, script).CombinedOutput()
		want := fmt.Sprintf("%s 600 0:0\n%s 644 0:0\n", s.KeyFile, s.CertFile)
		if err != nil || string(out) != want {
			t.Errorf("%s: files %q (%v), want %q", name, out, err, want)
		}
		keyLines = append(keyLines, pemBodyLines(t, s.KeyFile)...)
	}

	between := checkBatchOrder(t, seen, before, batches)
	t.Logf("the watcher polled the fleet %d times during the run; %d polls saw the first batch changed and the last not", len(seen), between)

	// The journal: every step of a batch started after every TLS check of
	// the batch before passed.
	c := readJournal(t, r.state())
	at := map[string]int{} // step_succeeded of a check, step_started of anything: record index
	for i, rec := range c.Records {
		switch rec.Type {
		case journal.StepStarted:
			if _, ok := at["start "+rec.Step]; !ok {
				at["start "+rec.Step] = i
			}
		case journal.StepSucceeded:
			at["ok "+rec.Step] = i
		}
	}
	for j := 1; j < len(batches); j++ {
		for _, s := range batches[j] {
			for _, step := range []string{"sign.web", "verify.config", "reload.nginx", "verify.served"} {
				started, ok := at[fmt.Sprintf("start %s[%q]", step, s.Host.Name)]
				if !ok {
					t.Errorf("the journal has no start of %s[%q]", step, s.Host.Name)
					continue
				}
				for _, early := range batches[j-1] {
					passed, ok := at[fmt.Sprintf("ok verify.served[%q]", early.Host.Name)]
					if !ok || passed > started {
						t.Errorf("%s[%q] (batch %d) started before verify.served[%q] (batch %d) passed", step, s.Host.Name, j+1, early.Host.Name, j)
					}
				}
			}
		}
	}

	// The keys were made on the hosts: Vault signed one CSR per host, for
	// the key now in the host's file, and never saw a key.
	signs := audit.keyStayedOut(t, keyLines)
	if len(signs) != len(w.Sites) {
		t.Errorf("Vault signed %d CSRs; want one per host, %d", len(signs), len(w.Sites))
	}
	for _, s := range signs {
		if want := "pki-prod/sign/" + testvault.LeafRole(testweb.App); s.path != want {
			t.Errorf("a CSR was signed at %s, not %s", s.path, want)
		}
	}
	for _, site := range w.Sites {
		files, err := testvault.ReadCertificates(site.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(slices.DeleteFunc(slices.Clone(signs), func(s signRequest) bool { return !samePublicKey(files[0], s.csr) })); n != 1 {
			t.Errorf("%s: Vault signed %d CSRs for the key in its file; want 1", site.Host.Name, n)
		}
	}

	// And rotplan's journal: each host's sign ran there, its key made at
	// the host's key file.
	keyPaths := map[string]string{}
	for _, site := range w.Sites {
		keyPaths[fmt.Sprintf("sign.web[%q]", site.Host.Name)] = site.KeyFile
	}
	keysMadeOnHosts(t, c, keyPaths)

	// No key, no token: not in the output, not in the state.
	noSecrets(t, r.dir, append([]string{"PRIVATE KEY", "hvs.", "hvb.", w.Vault.RootToken}, keyLines...), res)
}

// servesItsFiles checks, from the controller, that s serves (TLS, SNI
// ServerName, verified to the root) the chain in its certificate file,
// for ServerName, and that the key file holds the leaf's key.
func servesItsFiles(t *testing.T, ctx context.Context, w *testweb.Web, s *testweb.Site) {
	t.Helper()
	name := s.Host.Name
	chain, err := w.Served(ctx, s)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	files, err := testvault.ReadCertificates(s.CertFile)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if len(files) != len(chain) {
		t.Errorf("%s serves %d certificates, its file holds %d", name, len(chain), len(files))
	}
	for i := range min(len(files), len(chain)) {
		if !files[i].Equal(chain[i]) {
			t.Errorf("%s serves %s (serial %s) as certificate %d, its file holds %s (serial %s)", name, chain[i].Subject, chain[i].SerialNumber, i, files[i].Subject, files[i].SerialNumber)
		}
	}
	if chain[0].Subject.CommonName != testweb.ServerName {
		t.Errorf("%s serves a certificate for %q", name, chain[0].Subject.CommonName)
	}
	if _, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile); err != nil {
		t.Errorf("%s: the key file does not hold the certificate's key: %v", name, err)
	}
}

// checkBatchOrder checks the rounds of a watcher (watchServed): no round
// saw a host of a later batch serve a new certificate (one not in before)
// while a host of an earlier batch served its old one. It returns how
// many rounds saw the first batch changed and the last not.
func checkBatchOrder(t *testing.T, seen []map[string]string, before map[string]string, batches [][]*testweb.Site) (between int) {
	t.Helper()
	changed := func(round map[string]string, s *testweb.Site) bool {
		serial := round[s.Host.Name]
		return serial != "" && serial != before[s.Host.Name]
	}
	for _, round := range seen {
		for j := 1; j < len(batches); j++ {
			if !slices.ContainsFunc(batches[j], func(s *testweb.Site) bool { return changed(round, s) }) {
				continue
			}
			for _, early := range batches[:j] {
				for _, s := range early {
					if round[s.Host.Name] != "" && !changed(round, s) {
						t.Errorf("a poll saw batch %d serve new certificates while %s (batch before) served its old one: %v", j+1, s.Host.Name, round)
					}
				}
			}
		}
		if slices.ContainsFunc(batches[0], func(s *testweb.Site) bool { return changed(round, s) }) &&
			!slices.ContainsFunc(batches[len(batches)-1], func(s *testweb.Site) bool { return changed(round, s) }) {
			between++
		}
	}
	return between
}

// noSecrets checks that none of secrets is in the results' output or in a
// file under dir.
func noSecrets(t *testing.T, dir string, secrets []string, results ...result) {
	t.Helper()
	for _, res := range results {
		for _, bad := range secrets {
			if strings.Contains(res.stdout+res.stderr, bad) {
				t.Errorf("rotplan's output shows a secret (%.12s…)", bad)
			}
		}
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, bad := range secrets {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s holds a secret (%.12s…)", p, bad)
			}
		}
		return nil
	})
}
