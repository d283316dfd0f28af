package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/rotplan/rotplan/internal/testvault"
)

// clusterBed is the 3-node Vault cluster on a fleet, and a directory
// holding examples/cluster.hcl as plan.hcl, which rotplan runs from
// inside the fleet's controller.
type clusterBed struct {
	f   *testhosts.Fleet
	c   *testvault.Cluster
	dir string
}

func startClusterBed(t *testing.T) *clusterBed {
	t.Helper()
	f := testhosts.Start(t, 3)
	c := testvault.StartClusterT(t, f)
	plan, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "cluster.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return &clusterBed{f: f, c: c, dir: planDir(t, string(plan), nil)}
}

// run writes the plan's variables (the bed's, then extra lines) and runs
// rotplan with args and -var-file vars.hcl plan.hcl, in the controller.
func (b *clusterBed) run(t *testing.T, ctx context.Context, extra string, args ...string) result {
	t.Helper()
	vars := b.c.PlanVars() + extra + "\n"
	if err := os.WriteFile(filepath.Join(b.dir, "vars.hcl"), []byte(vars), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := b.f.Controller.Command(ctx, rotplanBin, append(args, "-var-file", "vars.hcl", "plan.hcl")...)
	cmd.Dir = b.dir
	cmd.Env = cleanEnv()
	return runCmd(t, cmd, 3*time.Minute)
}

// served is the serial number node n serves now, from the controller.
func (b *clusterBed) served(ctx context.Context, n *testvault.Node) (*big.Int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	chain, err := b.c.ServedChain(ctx, n)
	if err != nil {
		return nil, err
	}
	return chain[0].SerialNumber, nil
}

// onDisk is the serial of the certificate in node n's tls.crt.
func onDisk(t *testing.T, n *testvault.Node) *big.Int {
	t.Helper()
	certs, err := testvault.ReadCertificates(n.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0].SerialNumber
}

// observation is what the watcher saw of a node at one instant: the
// serial it served (nil when the handshake failed).
type observation struct {
	at     time.Time
	serial *big.Int
}

// health is one reading of the autopilot state: nil when healthy with
// every node a healthy voter.
type health struct {
	at      time.Time
	problem error
}

// clusterWatcher polls, from outside rotplan, what every node serves and
// what autopilot says, for as long as a run lasts.
type clusterWatcher struct {
	mu     sync.Mutex
	seen   map[string][]observation
	health []health
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

func watchCluster(ctx context.Context, b *clusterBed) *clusterWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &clusterWatcher{seen: map[string][]observation{}, stop: cancel}
	for _, n := range b.c.Nodes {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for ctx.Err() == nil {
				serial, _ := b.served(ctx, n)
				if ctx.Err() != nil {
					return
				}
				w.mu.Lock()
				w.seen[n.ID] = append(w.seen[n.ID], observation{time.Now(), serial})
				w.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			st, err := b.c.Autopilot(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = b.c.Healthy(st)
			}
			w.mu.Lock()
			w.health = append(w.health, health{time.Now(), err})
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// sees waits until the watcher has seen node id serve serial: the last
// node changes just before the run ends, maybe between two of its polls.
func (w *clusterWatcher) sees(ctx context.Context, id string, serial *big.Int) {
	for ctx.Err() == nil {
		w.mu.Lock()
		seen := w.seen[id]
		last := len(seen) > 0 && seen[len(seen)-1].serial != nil && seen[len(seen)-1].serial.Cmp(serial) == 0
		w.mu.Unlock()
		if last {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the watcher and waits for its pollers.
func (w *clusterWatcher) finish() {
	w.stop()
	w.wg.Wait()
}

// change is when node id was first seen serving another serial than old,
// and when it was last seen serving old before that; ok is false when it
// never changed, or went back to old after.
func (w *clusterWatcher) change(id string, old, new *big.Int) (lastOld, firstNew time.Time, err error) {
	for _, o := range w.seen[id] {
		switch {
		case o.serial == nil:
		case o.serial.Cmp(old) == 0:
			if !firstNew.IsZero() {
				return lastOld, firstNew, fmt.Errorf("%s served its old serial again after its new one", id)
			}
			lastOld = o.at
		case o.serial.Cmp(new) == 0:
			if firstNew.IsZero() {
				firstNew = o.at
			}
		default:
			return lastOld, firstNew, fmt.Errorf("%s served serial %x, neither its old %x nor its new %x", id, o.serial, old, new)
		}
	}
	if firstNew.IsZero() || lastOld.IsZero() {
		return lastOld, firstNew, fmt.Errorf("%s was not seen serving its old serial, then its new one (%d observations)", id, len(w.seen[id]))
	}
	return lastOld, firstNew, nil
}

// runEvents reads the JSON events of a run: when each step finished or
// started, by "step_started issue.x" / "step_finished issue.x".
func runEvents(t *testing.T, stdout string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var e struct {
			Type, Step, Outcome string
			Time                time.Time
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("an event that is not JSON: %q: %v", sc.Text(), err)
		}
		if e.Step != "" {
			out[e.Type+" "+e.Step] = e.Time
		}
	}
	return out
}

// TestClusterRotated runs examples/cluster.hcl in the controller against
// the 3-node cluster: every node ends serving its new certificate (over
// TLS with SNI, from the controller, the one in its files), and a watcher
// outside rotplan saw the nodes change one at a time, the standbys first,
// the active node last, with autopilot healthy and every voter there all
// along, and between each node and the next. Each node's key was made on
// the node: Vault's audit log has one CSR per node, for the key in its
// file, and no private key, nor any line of those keys; nor have
// rotplan's output and state.
func TestClusterRotated(t *testing.T) {
	begin := time.Now()
	b := startClusterBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bedUp := time.Since(begin)
	audit := b.audit(t, ctx)

	// The preview lists the batches in order.
	res := b.run(t, ctx, "", "plan")
	wantBatches := "rollout vault: batch 1/3: host.vault[\"vault-2\"]\nrollout vault: batch 2/3: host.vault[\"vault-3\"]\nrollout vault: batch 3/3: host.vault[\"vault-1\"]\n"
	if res.exit != 0 || !strings.Contains(res.stdout, wantBatches) {
		t.Fatalf("plan: exit %d, want the batches in order:\n%s\n%s%s", res.exit, wantBatches, res.stdout, res.stderr)
	}

	old := map[string]*big.Int{}
	for _, n := range b.c.Nodes {
		s, err := b.served(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		old[n.ID] = s
	}
	w := watchCluster(ctx, b)
	start := time.Now()
	res = b.run(t, ctx, "", "run", "-json")
	t.Logf("bed up in %s; the run took %s", bedUp.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if res.exit != 0 {
		w.finish()
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	for _, n := range b.c.Nodes {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		w.sees(wctx, n.ID, onDisk(t, n))
		cancel()
	}
	w.finish()

	// Every node serves the certificate in its files, a new one for its
	// address and the name.
	for _, n := range b.c.Nodes {
		s, err := b.served(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if disk := onDisk(t, n); s.Cmp(disk) != 0 || s.Cmp(old[n.ID]) == 0 {
			t.Errorf("%s serves %x; its tls.crt holds %x, its old serial was %x", n.ID, s, disk, old[n.ID])
		}
		var st syscall.Stat_t
		if err := syscall.Stat(n.KeyFile, &st); err != nil || st.Mode&0o777 != 0o600 || int(st.Uid) != b.c.UID {
			t.Errorf("%s: key mode %o owner %d (%v), want 0600 and the vault user", n.ID, st.Mode&0o777, st.Uid, err)
		}
	}

	// The order, as seen from outside: each node changed while the next
	// still served its old certificate, standbys first.
	events := runEvents(t, res.stdout)
	order := []string{"vault-2", "vault-3", "vault-1"}
	type seen struct{ lastOld, firstNew time.Time }
	changes := map[string]seen{}
	for _, id := range order {
		n := b.c.Nodes[slices.IndexFunc(b.c.Nodes, func(n *testvault.Node) bool { return n.ID == id })]
		lastOld, firstNew, err := w.change(id, old[id], onDisk(t, n))
		if err != nil {
			t.Fatal(err)
		}
		changes[id] = seen{lastOld, firstNew}
		if sighup, ok := events[fmt.Sprintf("step_finished reload.vault[%q]", id)]; ok {
			t.Logf("%s served its new certificate between %s and %s after its reload step finished (it sends SIGHUP, then ends), as the watcher saw it",
				id, lastOld.Sub(sighup).Round(time.Millisecond), firstNew.Sub(sighup).Round(time.Millisecond))
		}
	}
	for i := 1; i < len(order); i++ {
		prev, next := changes[order[i-1]], changes[order[i]]
		if !next.lastOld.After(prev.firstNew) {
			t.Errorf("%s changed no later than %s: it was last seen old at %s, %s first seen new at %s",
				order[i], order[i-1], next.lastOld.Format(time.StampMicro), order[i-1], prev.firstNew.Format(time.StampMicro))
		}
		// rotplan's word: the next node's first step, its sign, started
		// after the checks of the node before it passed.
		passed := events[fmt.Sprintf("step_finished verify.cluster[%q]", order[i-1])]
		started := events[fmt.Sprintf("step_started sign.listener[%q]", order[i])]
		if passed.IsZero() || !started.After(passed) {
			t.Errorf("sign.listener[%q] started at %s, before verify.cluster[%q] passed at %s", order[i], started, order[i-1], passed)
		}
		// Autopilot was read healthy between the two.
		between := false
		for _, h := range w.health {
			if h.at.After(prev.firstNew) && h.at.Before(next.firstNew) && h.problem == nil {
				between = true
			}
		}
		if !between {
			t.Errorf("no healthy autopilot reading between %s's change and %s's", order[i-1], order[i])
		}
	}
	// And healthy all along, every voter there.
	for _, h := range w.health {
		if h.problem != nil {
			t.Errorf("at %s, during the run: %v", h.at.Format(time.StampMicro), h.problem)
		}
	}
	if active, err := b.c.Active(ctx); err != nil || active != b.c.Nodes[0] {
		t.Errorf("the active node after the run: %v, %v; want vault-1", active, err)
	}
	t.Logf("watcher: %d autopilot readings, %d/%d/%d TLS observations", len(w.health), len(w.seen["vault-1"]), len(w.seen["vault-2"]), len(w.seen["vault-3"]))

	// The keys were made on the nodes: Vault saw one CSR per node, for
	// the key now in the node's file, and never a key; rotplan's output
	// and state hold none either.
	var keyLines []string
	for _, n := range b.c.Nodes {
		keyLines = append(keyLines, pemBodyLines(t, n.KeyFile)...)
	}
	signs := audit.keyStayedOut(t, keyLines)
	b.signedFor(t, signs, b.c.Nodes)
	for _, n := range b.c.Nodes {
		if _, err := tls.LoadX509KeyPair(n.CertFile, n.KeyFile); err != nil {
			t.Errorf("%s: the key file does not hold the certificate's key: %v", n.ID, err)
		}
		certs, err := testvault.ReadCertificates(n.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range signs {
			if slices.ContainsFunc(s.csr.IPAddresses, func(ip net.IP) bool { return ip.String() == n.Host.Addr.String() }) && !samePublicKey(certs[0], s.csr) {
				t.Errorf("%s: its certificate is not for the key of the CSR Vault signed for it", n.ID)
			}
		}
	}
	keyPaths := map[string]string{}
	for _, n := range b.c.Nodes {
		keyPaths[fmt.Sprintf("sign.listener[%q]", n.ID)] = n.KeyFile
	}
	keysMadeOnHosts(t, readJournal(t, filepath.Join(b.dir, ".rotplan")), keyPaths)
	b.noSecrets(t, res.stdout+res.stderr, keyLines)
}

// audit enables a raw file audit device on the cluster (see
// enableRawAudit), its log in the controller's Vault directory.
func (b *clusterBed) audit(t *testing.T, ctx context.Context) *vaultAudit {
	t.Helper()
	root, err := b.c.Root(b.c.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	return enableRawAudit(t, ctx, root, b.c.Dir, b.c.UID, b.c.GID)
}

// signedFor fails the test unless the sign requests are exactly one for
// each of the nodes, to pki-prod/sign/vault-server, each CSR for the
// node's address.
func (b *clusterBed) signedFor(t *testing.T, signs []signRequest, nodes []*testvault.Node) {
	t.Helper()
	var got, want []string
	for _, s := range signs {
		var ips []string
		for _, ip := range s.csr.IPAddresses {
			ips = append(ips, ip.String())
		}
		got = append(got, s.path+" "+strings.Join(ips, ","))
	}
	for _, n := range nodes {
		want = append(want, "pki-prod/sign/vault-server "+n.Host.Addr.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Vault signed CSRs for %q; want one for each of %q", got, want)
	}
}

// noSecrets fails the test when the output or any file of the plan's
// directory (the state among them) holds a private key, a token or a
// line of the keys.
func (b *clusterBed) noSecrets(t *testing.T, out string, keyLines []string) {
	t.Helper()
	secrets := append([]string{"PRIVATE KEY", b.c.RootToken, "hvs."}, keyLines...)
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("the output holds a secret (%.12s…)", secret)
		}
	}
	filepath.Walk(b.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		content := mustRead(t, p)
		for _, secret := range secrets {
			if strings.Contains(content, secret) {
				t.Errorf("%s holds a secret (%.12s…)", p, secret)
			}
		}
		return nil
	})
}

// keyFile is a node's key file as the test found it: content, mode and
// owner.
type keyFile struct {
	content  string
	mode     uint32
	uid, gid uint32
}

func readKeyFile(t *testing.T, path string) keyFile {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return keyFile{mustRead(t, path), st.Mode & 0o7777, st.Uid, st.Gid}
}

// pkiSerials lists the serials pki-prod has issued.
func pkiSerials(t *testing.T, ctx context.Context, b *clusterBed) []string {
	t.Helper()
	root, err := b.c.Root(b.c.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	s, err := root.Logical().ListWithContext(ctx, "pki-prod/certs")
	if err != nil || s == nil {
		t.Fatalf("listing pki-prod/certs: %v", err)
	}
	var out []string
	for _, k := range s.Data["keys"].([]any) {
		out = append(out, k.(string))
	}
	return out
}

// TestClusterSecondNodeFails runs examples/cluster.hcl with the second
// node's new key given to root, mode 0600: Vault there cannot read it, so
// its SIGHUP keeps the old certificate and the node's tls check fails.
// rotplan exits 3; that node and the first are rolled back (files as
// before, byte for byte, mode and owner; Vault reloaded again), the active
// node was never touched, every node serves its old certificate, the
// cluster is healthy with every voter, the certificates signed are
// exactly the first two nodes' (the active node's turn never came, so its
// CSR never reached Vault) and both are revoked, and no key or token is in
// the output, the state or Vault's audit log.
func TestClusterSecondNodeFails(t *testing.T) {
	b := startClusterBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	old := map[string]*big.Int{}
	keys := map[string]keyFile{}
	certs := map[string]string{}
	for _, n := range b.c.Nodes {
		s, err := b.served(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		old[n.ID] = s
		keys[n.ID] = readKeyFile(t, n.KeyFile)
		certs[n.ID] = mustRead(t, n.CertFile)
	}
	before := pkiSerials(t, ctx, b)
	audit := b.audit(t, ctx)

	start := time.Now()
	res := b.run(t, ctx, "key_owner = { \"vault-3\" = \"0\" }\ncheck_timeout = \"3s\"", "run")
	t.Logf("the failed run and its rollback took %s:\n%s", time.Since(start).Round(time.Millisecond), res.stdout)
	out := res.stdout + res.stderr
	if res.exit != 3 {
		t.Fatalf("run: exit %d, want 3 (rolled back)\n%s", res.exit, out)
	}
	if !strings.Contains(out, `verify.served["vault-3"]`) || !strings.Contains(out, "still failing") {
		t.Errorf("the output does not say vault-3's check failed:\n%s", out)
	}

	for _, n := range b.c.Nodes {
		// The rollback's SIGHUP has been sent; Vault takes it at once, but
		// not within the signal: wait until the node serves its old serial.
		var s *big.Int
		var err error
		for range 100 {
			if s, err = b.served(ctx, n); err == nil && s.Cmp(old[n.ID]) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil || s.Cmp(old[n.ID]) != 0 {
			t.Errorf("%s serves %x (%v), want its old %x", n.ID, s, err, old[n.ID])
		}
		if got := readKeyFile(t, n.KeyFile); got != keys[n.ID] {
			t.Errorf("%s: the key file is not as before (mode %o owner %d:%d, same content %t; was mode %o owner %d:%d)",
				n.ID, got.mode, got.uid, got.gid, got.content == keys[n.ID].content, keys[n.ID].mode, keys[n.ID].uid, keys[n.ID].gid)
		}
		if mustRead(t, n.CertFile) != certs[n.ID] {
			t.Errorf("%s: tls.crt is not as before", n.ID)
		}
	}
	// The active node was never touched: its steps never started.
	for _, step := range []string{`sign.listener["vault-1"]`, `reload.vault["vault-1"]`} {
		if strings.Contains(res.stdout, step) {
			t.Errorf("%s started:\n%s", step, res.stdout)
		}
	}
	// vault-3 refused its new key, as its log says.
	if log := mustRead(t, b.c.Nodes[2].Log); !strings.Contains(log, "permission denied") {
		t.Errorf("vault-3's log does not say it could not read its key:\n%s", log)
	}
	if err := b.c.WaitHealthy(ctx); err != nil {
		t.Error(err)
	}
	st, err := b.c.Autopilot(ctx)
	if err != nil || len(st.Voters) != 3 || !st.Healthy {
		t.Errorf("autopilot after the rollback: %v, %v", st, err)
	}
	if active, err := b.c.Active(ctx); err != nil || active != b.c.Nodes[0] {
		t.Errorf("the active node: %v, %v; want vault-1", active, err)
	}

	// Vault signed vault-2's and vault-3's CSRs, made on those nodes, and
	// no other: vault-1's turn never came.
	signs := audit.keyStayedOut(t, nil)
	b.signedFor(t, signs, b.c.Nodes[1:])

	// The certificates the run got are exactly those two, for those
	// nodes' addresses and the keys of their CSRs, and both are revoked.
	root, err := b.c.Root(b.c.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	var issued []string
	for _, serial := range pkiSerials(t, ctx, b) {
		if slices.Contains(before, serial) {
			continue
		}
		data := testvault.ReadData(t, root, "pki-prod/cert/"+serial)
		if rt, _ := data["revocation_time"].(json.Number); rt == "" || rt == "0" {
			t.Errorf("the certificate %s the run issued is not revoked (revocation_time %v)", serial, data["revocation_time"])
		}
		block, _ := pem.Decode([]byte(data["certificate"].(string)))
		if block == nil {
			t.Fatalf("pki-prod/cert/%s: no PEM certificate", serial)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		issued = append(issued, strings.Join(ips, ","))
		if !slices.ContainsFunc(signs, func(s signRequest) bool { return samePublicKey(c, s.csr) }) {
			t.Errorf("the certificate %s (for %v) is for no key whose CSR Vault signed", serial, ips)
		}
	}
	slices.Sort(issued)
	want := []string{b.c.Nodes[1].Host.Addr.String(), b.c.Nodes[2].Host.Addr.String()}
	slices.Sort(want)
	t.Logf("the run got certificates for %v, all revoked", issued)
	if !slices.Equal(issued, want) {
		t.Errorf("the run got certificates for %v; want exactly vault-2's and vault-3's, %v", issued, want)
	}

	// No key, no token, in the output or the state directory.
	b.noSecrets(t, out, nil)
}
