package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testweb"
)

// filesMeta is the mode and owner of a site's key and certificate files.
func filesMeta(t *testing.T, s *testweb.Site) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{s.KeyFile, s.CertFile} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d\n", filepath.Base(p), fi.Mode(), st.Uid, st.Gid)
	}
	return b.String()
}

// breakConfig makes `nginx -t` fail on s from now on, without touching the
// nginx that runs there: a directive nginx does not know, at the end of
// its configuration file.
func breakConfig(t *testing.T, s *testweb.Site) {
	t.Helper()
	f, err := os.OpenFile(s.ConfigFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\nrotplan_test_breaks_this;\n"); err != nil {
		t.Fatal(err)
	}
}

// signedSerials are the serials the journal says each host's sign got,
// by host name, in the order signed.
func signedSerials(t *testing.T, c *journal.Contents) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, rec := range c.Records {
		name, ok := strings.CutPrefix(rec.Step, `sign.web["`)
		if rec.Type != journal.StepSucceeded || !ok {
			continue
		}
		var o struct {
			Serial string `json:"serial_number"`
		}
		if err := json.Unmarshal(rec.Outputs, &o); err != nil || o.Serial == "" {
			t.Fatalf("%s: outputs %s: %v", rec.Step, rec.Outputs, err)
		}
		name = strings.TrimSuffix(name, `"]`)
		out[name] = append(out[name], o.Serial)
	}
	return out
}

// fleetFailure is a run of examples/fleet.hcl on four nginx hosts in
// batches of two, with the variables extra added, in which `nginx -t`
// fails on the host broken: what every host served and held before.
type fleetFailure struct {
	w       *testweb.Web
	r       *fleetRun
	ctx     context.Context
	batches [][]*testweb.Site
	broken  *testweb.Site
	before  map[string]string    // host name: serial served
	saved   map[string]siteFiles // host name: its files, and what it served
	res     result
	seen    []map[string]string // what a watcher saw during the run
}

// newFleetFailure starts the bed of a fleetFailure, its sites' files and
// what they serve saved, and breaks `nginx -t` on the host at index
// broken in the batches' order; f.r is not set.
func newFleetFailure(t *testing.T, broken int) *fleetFailure {
	t.Helper()
	w := testweb.Start(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	f := &fleetFailure{w: w, ctx: ctx, batches: fleetBatches(w, 2)}
	f.broken = slices.Concat(f.batches...)[broken]
	f.saved = saveSites(t, ctx, w)
	f.before = map[string]string{}
	for name, saved := range f.saved {
		f.before[name] = saved.serial
	}
	breakConfig(t, f.broken)
	return f
}

func runFleetFailure(t *testing.T, broken int, extra string) *fleetFailure {
	t.Helper()
	f := newFleetFailure(t, broken)
	f.r = newFleetRun(t, f.w, 2, "50ms")
	f.r.addVars(t, extra)
	stop := make(chan struct{})
	rounds := watchServed(f.ctx, f.w, f.batches, stop)
	f.res = f.r.rotplan(t, f.ctx, "run")
	close(stop)
	f.seen = rounds()
	return f
}

// rotated checks that s serves a new certificate, the one in its files.
func (f *fleetFailure) rotated(t *testing.T, s *testweb.Site) {
	t.Helper()
	if serial := servedSerials(t, f.ctx, f.w)[s.Host.Name]; serial == f.before[s.Host.Name] {
		t.Errorf("%s still serves serial %s", s.Host.Name, serial)
	}
	servesItsFiles(t, f.ctx, f.w, s)
}

// restored checks that s serves its old certificate and holds its old
// files, byte for byte, mode and owner.
func (f *fleetFailure) restored(t *testing.T, s *testweb.Site) {
	t.Helper()
	name := s.Host.Name
	if serial := servedSerials(t, f.ctx, f.w)[name]; serial != f.before[name] {
		t.Errorf("%s serves serial %s, not its old %s", name, serial, f.before[name])
	}
	saved := f.saved[name]
	if !bytes.Equal([]byte(mustRead(t, s.KeyFile)), saved.key) || !bytes.Equal([]byte(mustRead(t, s.CertFile)), saved.cert) {
		t.Errorf("%s: its files' bytes are not as before the run", name)
	}
	if meta := filesMeta(t, s); meta != saved.meta {
		t.Errorf("%s: its files are\n%swere\n%s", name, meta, saved.meta)
	}
	servesItsFiles(t, f.ctx, f.w, s)
}

// without is the batches without the site s.
func without(batches [][]*testweb.Site, s *testweb.Site) [][]*testweb.Site {
	var out [][]*testweb.Site
	for _, b := range batches {
		out = append(out, slices.DeleteFunc(slices.Clone(b), func(x *testweb.Site) bool { return x == s }))
	}
	return out
}

// TestFleetHostFailsWithinMaxFailures: with max_failures = 1, h2's
// `nginx -t` fails in the first batch. h2 alone is rolled back (its files
// as before, byte for byte, its new certificate revoked, nginx never
// reloaded there), the second batch starts only once that is done, and
// every other host is rotated. rotplan exits 5, names the host and the
// step it failed at, shows nginx's error, and `rotplan status` says
// hosts_failed with exit 5 too.
func TestFleetHostFailsWithinMaxFailures(t *testing.T) {
	f := runFleetFailure(t, 1, "max_failures = 1\n")
	res := f.res
	broken := f.broken.Host.Name
	if res.exit != 5 {
		t.Fatalf("run: exit %d, want 5\n%s%s", res.exit, res.stdout, res.stderr)
	}
	out := res.stdout + res.stderr
	for _, want := range []string{
		fmt.Sprintf(`host.web["%s"] (rollout web) failed at verify.config["%s"]; its steps were undone`, broken, broken),
		"complete except for 1 host",
		`unknown directive "rotplan_test_breaks_this"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	for _, s := range f.w.Sites {
		if s == f.broken {
			f.restored(t, s)
		} else {
			f.rotated(t, s)
		}
	}
	checkBatchOrder(t, f.seen, f.before, without(f.batches, f.broken))

	// The journal: the host's failure, its sign undone as the host's,
	// before the second batch started; its certificate revoked.
	c := readJournal(t, f.r.state())
	at := map[string]int{}
	for i, rec := range c.Records {
		key := rec.Type + " " + rec.Step
		if _, ok := at[key]; !ok {
			at[key] = i
		}
		if rec.Type == journal.RollbackSucceeded && rec.Host != fmt.Sprintf(`host.web["%s"]`, broken) {
			t.Errorf("rollback record %s for %q, not the failed host's", rec.Step, rec.Host)
		}
	}
	undone, ok := at[fmt.Sprintf(`%s sign.web["%s"]`, journal.RollbackSucceeded, broken)]
	if _, failed := at[journal.HostFailed+fmt.Sprintf(` verify.config["%s"]`, broken)]; !ok || !failed {
		t.Fatalf("the journal lacks the host's failure or its undoing: %v", at)
	}
	for _, s := range f.batches[1] {
		if started := at[fmt.Sprintf(`%s sign.web["%s"]`, journal.StepStarted, s.Host.Name)]; started < undone {
			t.Errorf("sign.web[%q], of the second batch, started before the failed host was undone", s.Host.Name)
		}
	}
	serials := signedSerials(t, c)
	if len(serials[broken]) != 1 || !isRevoked(t, f.w.Vault, serials[broken][0]) {
		t.Errorf("%s's new certificate %v is not revoked", broken, serials[broken])
	}
	for _, s := range f.w.Sites {
		if s != f.broken && (len(serials[s.Host.Name]) != 1 || isRevoked(t, f.w.Vault, serials[s.Host.Name][0])) {
			t.Errorf("%s: certificates %v, want one, not revoked", s.Host.Name, serials[s.Host.Name])
		}
	}

	cmd := f.w.Fleet.Controller.Command(f.ctx, rotplanBin, "status", "plan.hcl")
	cmd.Dir = f.r.dir
	status := startCmd(t, cmd, time.Minute)()
	if status.exit != 5 || !strings.Contains(status.stdout+status.stderr, journal.StatusHostsFailed) {
		t.Errorf("status: exit %d, want 5 and %s:\n%s%s", status.exit, journal.StatusHostsFailed, status.stdout, status.stderr)
	}
	var keyLines []string
	for _, s := range f.w.Sites {
		keyLines = append(keyLines, pemBodyLines(t, s.KeyFile)...)
	}
	noSecrets(t, f.r.dir, append([]string{"PRIVATE KEY", "hvs.", "hvb.", f.w.Vault.RootToken}, keyLines...), res, status)
}

// TestFleetFailedBatchKept: with rollback = "failed_batch", h3's
// `nginx -t` fails in the second batch. The first batch keeps its new
// certificates; the second batch is rolled back, byte for byte, and what
// it was signed is revoked. rotplan exits 3 and names the hosts kept.
func TestFleetFailedBatchKept(t *testing.T) {
	f := runFleetFailure(t, 2, "rollback = \"failed_batch\"\n")
	res := f.res
	if res.exit != 3 {
		t.Fatalf("run: exit %d, want 3\n%s%s", res.exit, res.stdout, res.stderr)
	}
	var kept []string
	for _, s := range f.batches[0] {
		kept = append(kept, fmt.Sprintf(`host.web["%s"]`, s.Host.Name))
	}
	if want := "Kept, with their new version: " + strings.Join(kept, " and ") + "."; !strings.Contains(res.stdout+res.stderr, want) {
		t.Errorf("the output lacks %q:\n%s%s", want, res.stdout, res.stderr)
	}
	for _, s := range f.batches[0] {
		f.rotated(t, s)
	}
	for _, s := range f.batches[1] {
		f.restored(t, s)
	}
	checkBatchOrder(t, f.seen, f.before, f.batches)
	serials := signedSerials(t, readJournal(t, f.r.state()))
	for _, s := range f.w.Sites {
		first := slices.Contains(f.batches[0], s)
		for _, serial := range serials[s.Host.Name] {
			if isRevoked(t, f.w.Vault, serial) == first {
				t.Errorf("%s (first batch: %v): certificate %s revoked: %v", s.Host.Name, first, serial, !first)
			}
		}
		if first && len(serials[s.Host.Name]) != 1 {
			t.Errorf("%s: certificates %v, want one", s.Host.Name, serials[s.Host.Name])
		}
	}
	if len(serials[f.broken.Host.Name]) != 1 {
		t.Errorf("%s, whose check failed: certificates %v, want one", f.broken.Host.Name, serials[f.broken.Host.Name])
	}
}
