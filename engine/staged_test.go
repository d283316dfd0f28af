package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
	"github.com/zclconf/go-cty/cty"
)

// stagedKind is a Resumer (its start record must be durable before it
// changes anything) that is also steps.Staged: Apply prepares, calls
// env.Commit, then "changes". It notes what the journal had made durable
// at each point.
type stagedKind struct {
	resumerKind
	journal *journal.Journal
	staged  bool
	// breakJournal puts /dev/null under the journal's file descriptor
	// before Commit: fsync fails there (EINVAL), as on a failing disk.
	breakJournal bool
	commits      error // what Commit returned
	// syncs before Apply's preparation and after Commit.
	before, after int
}

func (k *stagedKind) Apply(ctx context.Context, env *steps.Env, cfg steps.Config) (cty.Value, error) {
	k.before = k.journal.Stats().Syncs
	if k.breakJournal {
		if err := underFile(k.journal.Path(), "/dev/null"); err != nil {
			return cty.NilVal, err
		}
	}
	k.commits = env.Commit()
	k.after = k.journal.Stats().Syncs
	if k.commits != nil {
		return cty.NilVal, k.commits
	}
	return k.resumerKind.Apply(ctx, env, cfg)
}

type stagedOnly struct{ *stagedKind }

func (stagedOnly) Staged() {}

func runStaged(t *testing.T, k *stagedKind) (*Report, error) {
	t.Helper()
	var kind steps.Step = k
	if k.staged {
		kind = stagedOnly{k}
	}
	prog := compileWith(t, `w "a" { input = "x" }`, nil, steps.Registry{"w": kind})
	j, err := journal.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	k.journal = j
	opts := testOptions()
	opts.Journal = j
	return prog.Apply(context.Background(), opts)
}

// TestStagedCommit: the start record of a Staged kind becomes durable in
// Commit, not before Apply; for any other kind it is durable before Apply
// and Commit has nothing to wait for.
func TestStagedCommit(t *testing.T) {
	staged := &stagedKind{resumerKind: resumerKind{newWorld()}, staged: true}
	if _, err := runStaged(t, staged); err != nil {
		t.Fatal(err)
	}
	if staged.after != staged.before+1 {
		t.Errorf("staged: %d fsyncs before the preparation, %d after Commit; want Commit to make the start record durable", staged.before, staged.after)
	}

	plain := &stagedKind{resumerKind: resumerKind{newWorld()}}
	if _, err := runStaged(t, plain); err != nil {
		t.Fatal(err)
	}
	if plain.after != plain.before {
		t.Errorf("not staged: Commit synced (%d, then %d): the start record should have been durable before Apply", plain.before, plain.after)
	}
	// run_started and the step's start: two fsyncs before Apply.
	if plain.before != staged.before+1 {
		t.Errorf("fsyncs before Apply: %d not staged, %d staged; want the staged start record not yet synced", plain.before, staged.before)
	}
}

// TestStagedCommitFails: when the journal cannot make the start record
// durable, the step fails as the journal's failure, having changed nothing.
func TestStagedCommitFails(t *testing.T) {
	k := &stagedKind{resumerKind: resumerKind{newWorld()}, staged: true, breakJournal: true}
	_, err := runStaged(t, k)
	if err == nil || k.commits == nil {
		t.Fatalf("Apply: %v, Commit: %v; want both to fail", err, k.commits)
	}
	if len(k.applied) != 0 {
		t.Errorf("the step changed something after a failed Commit: %v", k.applied)
	}
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(se.Error(), "Cannot write the journal") {
		t.Errorf("error %v, want the journal's failure", err)
	}
}

// underFile replaces, in this process, the file descriptor open on path
// with one open on other.
func underFile(path, other string) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || target != path {
			continue
		}
		f, err := os.OpenFile(other, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		return syscall.Dup3(int(f.Fd()), fd, syscall.O_CLOEXEC)
	}
	return fmt.Errorf("no file descriptor open on %s", path)
}
