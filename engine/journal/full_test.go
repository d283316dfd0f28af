package journal

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rotplan/rotplan/internal/fullfs"
)

// TestCloseReportsLostRecords: records Write left in memory that Close
// cannot write (the state directory's filesystem is full) are an error,
// not a journal that silently ends early.
func TestCloseReportsLostRecords(t *testing.T) {
	dir := fullfs.Mount(t, 64<<10)
	j, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(Record{Type: RunStarted, Run: &RunInfo{Plan: "p.hcl"}}); err != nil {
		t.Fatal(err)
	}
	fullfs.Fill(t, dir)
	// Longer than a page: it cannot fit in the journal's last one.
	big := Record{Type: StepStarted, Step: "write.a", Intent: map[string]string{"path": strings.Repeat("x", 5000)}}
	if err := j.Write(big); err != nil {
		t.Fatalf("Write keeps the record in memory and cannot fail yet: %v", err)
	}
	err = j.Close()
	if err == nil || !strings.Contains(err.Error(), j.Path()) || !strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
		t.Errorf("Close = %v, want the journal's path and %q", err, syscall.ENOSPC.Error())
	}
}

// TestRecoverAfterSpaceIsFreed: a journal that could not be written keeps
// the records appended since in memory, refuses them meanwhile, and once
// space is freed Recover writes them all, in order, after the last whole
// record: the file reads cleanly, with no half record in the middle.
func TestRecoverAfterSpaceIsFreed(t *testing.T) {
	dir := fullfs.Mount(t, 64<<10)
	j, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	want := []Record{{Type: RunStarted, Run: &RunInfo{Plan: "p.hcl"}}}
	if err := j.Append(want[0]); err != nil {
		t.Fatal(err)
	}
	filler := fullfs.Fill(t, dir)
	// Longer than a page, so that a part of it fits in the journal's last
	// page and the rest finds no space.
	big := Record{Type: StepStarted, Step: "write.a", Intent: map[string]string{"path": strings.Repeat("x", 5000)}}
	for _, r := range []Record{big, {Type: StepFailed, Step: "write.a", Error: "journal"}, {Type: RollbackStarted, Step: "write.a"}} {
		want = append(want, r)
		if err := j.Append(r); err == nil {
			t.Fatalf("Append of %s on a full filesystem succeeded", r.Type)
		}
	}
	if err := j.Recover(); err == nil {
		t.Fatal("Recover succeeded on a filesystem that is still full")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := j.Recover(); err != nil {
		t.Fatalf("Recover once space is free: %v", err)
	}
	want = append(want, Record{Type: RunFinished, Status: StatusRolledBack})
	if err := j.Append(want[len(want)-1]); err != nil {
		t.Fatalf("Append after Recover: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("Close after Recover: %v", err)
	}
	c := mustRead(t, j.Path())
	if c.Torn != nil || !sameTypes(c.Records, want) {
		t.Errorf("journal holds %v (torn %v), want %v", types(c.Records), c.Torn, types(want))
	}
}

// TestAcquireReportsHolderWriteError: a lock whose holder cannot be written
// (a full filesystem) is an error, and the lock is not kept.
func TestAcquireReportsHolderWriteError(t *testing.T) {
	dir := fullfs.Mount(t, 64<<10)
	fullfs.Fill(t, dir)
	l, err := Acquire(dir, "run")
	if err == nil {
		l.Release()
		t.Fatal("Acquire succeeded although who holds the lock could not be written")
	}
	if path := filepath.Join(dir, "lock"); !strings.Contains(err.Error(), path) {
		t.Errorf("Acquire = %v, want it to name %s", err, path)
	}
	os.Remove(filepath.Join(dir, "filler"))
	l, err = Acquire(dir, "run")
	if err != nil {
		t.Fatalf("Acquire once space is free: %v (the failed Acquire kept the lock?)", err)
	}
	l.Release()
}
