package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/testvault"
)

// Exit codes of a failed run, as docs/cli.md documents them.
const (
	exitRolledBack         = 3
	exitRollbackIncomplete = 4
)

// editedPlan writes a copy of examples/prod.hcl with edits applied (each
// must match) and returns its path.
func editedPlan(t *testing.T, edits ...func(string) string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "prod.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	for i, edit := range edits {
		edited := edit(text)
		if edited == text {
			t.Fatalf("edit %d did not apply: examples/prod.hcl changed shape", i)
		}
		text = edited
	}
	plan := filepath.Join(t.TempDir(), "prod.hcl")
	if err := os.WriteFile(plan, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return plan
}

// wrongSNI makes check B verify a name the new certificate does not carry,
// and gives up quickly.
func wrongSNI(src string) string {
	return regexp.MustCompile(`(?s)(verify "check_b" \{.*?timeout    = )"30s"(.*?server_name   = )var\.server_name`).
		ReplaceAllString(src, `${1}"1s"${2}"vault.wrong.privsec.ch"`)
}

// withoutChown leaves the server files owned by root, so that Vault
// (running as vaultprod) cannot read its new key and keeps the old
// certificate: check B, which expects the new serial, times out.
func withoutChown(src string) string {
	src = regexp.MustCompile(`(?s)# Vault runs as vaultprod: it must own.*?chown "server_tls" \{.*?\n\}\n`).ReplaceAllString(src, "")
	src = strings.Replace(src, "depends_on = [chown.server_tls]",
		"depends_on = [write.server_key, write.server_crt, write.server_fullchain, write.server_ca_chain]", 1)
	return regexp.MustCompile(`(?s)(verify "check_b" \{.*?timeout    = )"30s"`).ReplaceAllString(src, `${1}"3s"`)
}

// fileState is what rollback must restore: bytes, mode and owner.
type fileState struct {
	data     []byte
	mode     os.FileMode
	uid, gid uint32
}

func rotatedFiles(v *testvault.Vault) []string {
	return []string{
		filepath.Join(v.AdminDir, "admin.key"), filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.AdminDir, "issuing_ca.pem"),
		filepath.Join(v.ServerDir, "server.key"), filepath.Join(v.ServerDir, "server.crt"),
		filepath.Join(v.ServerDir, "fullchain.crt"), filepath.Join(v.ServerDir, "ca_chain.pem"),
	}
}

func readFiles(t *testing.T, paths []string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		out[p] = fileState{data: data, mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
	}
	return out
}

// checkRestored compares the files and the served serial with before, and
// checks that the certificates the run issued are revoked.
func checkRestored(t *testing.T, v *testvault.Vault, state string, before map[string]fileState, servedBefore string) {
	t.Helper()
	after := readFiles(t, rotatedFiles(v))
	for p, b := range before {
		a := after[p]
		if !bytes.Equal(a.data, b.data) {
			t.Errorf("%s: content differs from before the run", p)
		}
		if a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
			t.Errorf("%s: mode %v owner %d:%d, before %v %d:%d", p, a.mode, a.uid, a.gid, b.mode, b.uid, b.gid)
		}
	}
	// The reload's rollback made Vault load the old files; it applies them
	// asynchronously.
	deadline := time.Now().Add(15 * time.Second)
	for servedSerial(t, v) != servedBefore && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := servedSerial(t, v); got != servedBefore {
		t.Errorf("Vault serves %s, before the run it served %s", got, servedBefore)
	}
	checkIssuedRevoked(t, v, state)
	run, err := engine.LoadRun(state)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != journal.StatusRolledBack || run.Unfinished() {
		t.Errorf("journal: run status %q, want %q", run.Status, journal.StatusRolledBack)
	}
	for addr, s := range run.Steps {
		if s.State == engine.StateSucceeded && !strings.HasPrefix(addr, "verify.") {
			t.Errorf("%s is still %s in the journal: it was not rolled back", addr, s.State)
		}
	}
	assertNoSecrets(t, v, []string{state})
	if entries, _ := os.ReadDir(filepath.Join(state, "backups")); len(entries) != 0 {
		t.Errorf("backups left after a clean rollback: %d", len(entries))
	}
}

// TestRollbackWhenCheckBFails: the new server certificate does not carry the
// name check B verifies. Everything is put back, verified from outside.
func TestRollbackWhenCheckBFails(t *testing.T) {
	r := newRotation(t)
	plan := editedPlan(t, wrongSNI)
	before := readFiles(t, rotatedFiles(r.v))
	served := servedSerial(t, r.v)
	state := t.TempDir()
	res := runRotplan(t, r.v.Environ(), r.argsFor(plan, "run", state)...)
	if res.exit != exitRolledBack {
		t.Fatalf("exit %d, want %d (rolled back)\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
	}
	t.Logf("stdout:\n%s", res.stdout)
	if !strings.Contains(res.stdout, "ROLLED BACK") || !strings.Contains(res.stderr, "check_b") {
		t.Errorf("the output should name the failed check and say it rolled back:\n%s%s", res.stdout, res.stderr)
	}
	checkRestored(t, r.v, state, before, served)
	if _, err := r.v.SealStatus(context.Background(), filepath.Join(r.v.AdminDir, "admin.crt"), filepath.Join(r.v.AdminDir, "admin.key")); err != nil {
		t.Errorf("vault status with the restored admin certificate: %v", err)
	}
}

// TestRollbackWhenVaultCannotReadItsKey: without the chown, Vault keeps the
// old certificate after SIGHUP, check B times out, and rollback restores.
func TestRollbackWhenVaultCannotReadItsKey(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: Vault must run as vaultprod, unable to read a root-owned key")
	}
	r := newRotation(t)
	plan := editedPlan(t, withoutChown)
	before := readFiles(t, rotatedFiles(r.v))
	served := servedSerial(t, r.v)
	state := t.TempDir()
	res := runRotplan(t, r.v.Environ(), r.argsFor(plan, "run", state)...)
	if res.exit != exitRolledBack {
		t.Fatalf("exit %d, want %d\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "check_b") {
		t.Errorf("check B should be the failure:\n%s", res.stderr)
	}
	checkRestored(t, r.v, state, before, served)
}

// TestKillDuringRollback kills rotplan at every boundary of the rollback in
// turn, before and after each record; resume finishes the rollback with the
// same end state.
func TestKillDuringRollback(t *testing.T) {
	r := newRotation(t)
	plan := editedPlan(t, wrongSNI)

	// A first failed run says where the rollback's records are.
	state := t.TempDir()
	if res := runRotplan(t, r.v.Environ(), r.argsFor(plan, "run", state)...); res.exit != exitRolledBack {
		t.Fatalf("exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	recs := readJournal(t, state).Records
	first := -1
	for i, rec := range recs {
		if rec.Type == journal.RollbackStarted {
			first = i + 1 // failpoints count from 1
			break
		}
	}
	if first < 0 {
		t.Fatal("no rollback in the journal")
	}
	// after:N kills once record N is durable; before:N with the undoing
	// done but not recorded.
	var failpoints []string
	for n := first; n < len(recs); n++ {
		failpoints = append(failpoints, fmt.Sprintf("after:%d", n), fmt.Sprintf("before:%d", n+1))
	}
	for _, fp := range failpoints {
		t.Run(fp, func(t *testing.T) {
			before := readFiles(t, rotatedFiles(r.v))
			served := servedSerial(t, r.v)
			state := t.TempDir()
			res := runBinary(t, crashBin, append(r.v.Environ(), "ROTPLAN_FAILPOINT="+fp), r.argsFor(plan, "run", state)...)
			if res.exit != -1 {
				t.Fatalf("not killed: exit %d\n%s", res.exit, res.stderr)
			}
			res = runRotplan(t, r.v.Environ(), r.argsFor(plan, "resume", state)...)
			if res.exit != exitRolledBack {
				t.Fatalf("resume: exit %d, want %d\n%s%s", res.exit, exitRolledBack, res.stdout, res.stderr)
			}
			checkRestored(t, r.v, state, before, served)
		})
	}
}

// checkIssuedRevoked checks that every certificate the journal in state
// says the run issued is revoked in Vault, and returns how many there
// were; a journal without one is an error.
func checkIssuedRevoked(t *testing.T, v *testvault.Vault, state string) int {
	t.Helper()
	issued := 0
	for _, rec := range readJournal(t, state).Records {
		if rec.Type != journal.StepSucceeded || !strings.HasPrefix(rec.Step, "issue.") {
			continue
		}
		var out struct {
			Serial string `json:"serial_number"`
		}
		if err := json.Unmarshal(rec.Outputs, &out); err != nil {
			t.Fatal(err)
		}
		issued++
		if !isRevoked(t, v, out.Serial) {
			t.Errorf("%s issued %s, which is not revoked", rec.Step, out.Serial)
		}
	}
	if issued == 0 {
		t.Error("the journal shows no issued certificate")
	}
	return issued
}
