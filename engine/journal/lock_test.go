package journal

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
)

// lockHolderEnv, when set to a state directory, turns the test binary into a
// process that takes that directory's lock and keeps it until killed (see
// TestLockHolderProcess).
const lockHolderEnv = "ROTPLAN_TEST_LOCK_HOLDER"

func TestAcquireTwice(t *testing.T) {
	dir := t.TempDir()
	before := time.Now().Add(-time.Second)
	first, err := Acquire(dir, "run")
	if err != nil {
		t.Fatalf("first Acquire: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "lock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, %v; want mode 0600", fi, err)
	}
	second, err := Acquire(dir, "resume")
	var locked *LockedError
	if !errors.As(err, &locked) {
		second.Release()
		t.Fatalf("second Acquire = %v, want a *LockedError", err)
	}
	want := Holder{PID: os.Getpid(), Command: "run"}
	if locked.Dir != dir || locked.Holder.PID != want.PID || locked.Holder.Command != want.Command {
		t.Errorf("LockedError = %#v, want dir %s and holder %#v", locked, dir, want)
	}
	if since := locked.Holder.Since; since.Before(before) || since.After(time.Now()) {
		t.Errorf("Holder.Since = %v, want about now", since)
	}
	msg := locked.Error()
	for _, part := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "(run)"} {
		if !strings.Contains(msg, part) {
			t.Errorf("Error() = %q lacks %q", msg, part)
		}
	}

	if err := first.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := first.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	again, err := Acquire(dir, "resume")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	defer again.Release()
	// The new holder replaced the old one's details.
	_, err = Acquire(dir, "status")
	if !errors.As(err, &locked) || locked.Holder.Command != "resume" {
		t.Errorf("third Acquire = %v, want a *LockedError naming the resume", err)
	}
}

func TestLockedErrorWithoutHolder(t *testing.T) {
	e := &LockedError{Dir: "/var/lib/rotplan"}
	if msg := e.Error(); !strings.Contains(msg, "/var/lib/rotplan") || strings.Contains(msg, "pid") {
		t.Errorf("Error() = %q, want the directory and no pid", msg)
	}
}

func TestReleaseNil(t *testing.T) {
	var l *Lock
	if err := l.Release(); err != nil {
		t.Errorf("Release on nil: %v", err)
	}
}

func TestAcquireInMissingDirectory(t *testing.T) {
	_, err := Acquire(filepath.Join(t.TempDir(), "nope"), "run")
	var locked *LockedError
	if err == nil || errors.As(err, &locked) {
		t.Errorf("Acquire in a missing directory = %v, want an error other than *LockedError", err)
	}
}

func TestOpenStateDir(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string) // nil: the directory does not exist
		wantErr  string                         // "" for success
		wantMode os.FileMode                    // on success
	}{
		{"missing is created owner-only", nil, "", 0o700},
		{"owner only", mkdirMode(0o700), "", 0o700},
		{"readable by group", mkdirMode(0o750), "", 0o750},
		{"group writable", mkdirMode(0o770), "writable by group or others (mode 0770)", 0},
		{"world writable", mkdirMode(0o707), "writable by group or others (mode 0707)", 0},
		{"a file", func(t *testing.T, dir string) {
			t.Helper()
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a directory", 0},
		{"owned by another user", asStranger(mkdirMode(0o700), ""), "owned by uid", 0},
		{"runs writable by others", withSub(runsDir, 0o777, false), "runs is writable by group or others (mode 0777)", 0},
		{"runs owned by another user", withSub(runsDir, 0o700, true), "runs is owned by uid", 0},
		{"backups group writable", withSub("backups", 0o770, false), "backups is writable by group or others (mode 0770)", 0},
		{"backups owned by another user", withSub("backups", 0o700, true), "backups is owned by uid", 0},
		{"lock owned by another user", asStranger(mkdirMode(0o700), "lock"), "lock is owned by uid", 0},
		{"runs a symlink", func(t *testing.T, dir string) {
			t.Helper()
			mkdirMode(0o700)(t, dir)
			if err := os.Symlink(t.TempDir(), filepath.Join(dir, runsDir)); err != nil {
				t.Fatal(err)
			}
		}, "runs is a symbolic link", 0},
		{"runs and backups owner only", func(t *testing.T, dir string) {
			t.Helper()
			withSub(runsDir, 0o700, false)(t, dir)
			if err := os.Mkdir(filepath.Join(dir, "backups"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, "", 0o700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "parent", "state")
			if tt.setup != nil {
				if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
					t.Fatal(err)
				}
				tt.setup(t, dir)
			}
			err := OpenStateDir(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("OpenStateDir = %v, want an error naming %s with %q", err, dir, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenStateDir: %v", err)
			}
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() || fi.Mode().Perm() != tt.wantMode {
				t.Errorf("state directory mode %v, want a directory with %v", fi.Mode(), tt.wantMode)
			}
		})
	}
}

// withSub makes a state directory (0700) with the subdirectory sub, given
// mode, owned by another user when stranger is set.
func withSub(sub string, mode os.FileMode, stranger bool) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		mkdirMode(0o700)(t, dir)
		mkdirMode(mode)(t, filepath.Join(dir, sub))
		if stranger {
			chownToStranger(t, filepath.Join(dir, sub))
		}
	}
}

// asStranger runs setup, then gives dir (name "") or the file name in it
// (created if missing) to a user other than root and the test's own.
func asStranger(setup func(t *testing.T, dir string), name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		setup(t, dir)
		path := dir
		if name != "" {
			path = filepath.Join(dir, name)
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		chownToStranger(t, path)
	}
}

// chownToStranger gives path to the system user rotplan-stranger, created
// if missing; it needs root.
func chownToStranger(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: gives the state directory to another user (run the tests as root)")
	}
	if err := testvault.GiveToStranger(path); err != nil {
		t.Fatal(err)
	}
}

func mkdirMode(mode os.FileMode) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil { // Mkdir's mode is subject to umask
			t.Fatal(err)
		}
	}
}

// TestLockHolderProcess is not a test: run by TestLockOfKilledProcess in a
// child process, it takes the lock, says so, and waits to be killed.
func TestLockHolderProcess(t *testing.T) {
	dir := os.Getenv(lockHolderEnv)
	if dir == "" {
		t.Skip("helper process for TestLockOfKilledProcess")
	}
	if _, err := Acquire(dir, "child"); err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("locked\n")
	time.Sleep(time.Hour) // until SIGKILL
}

func TestLockOfKilledProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child said %q (%v), want it to hold the lock", line, err)
	}

	_, err = Acquire(dir, "run")
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("Acquire while the child holds the lock = %v, want a *LockedError", err)
	}
	if locked.Holder.PID != cmd.Process.Pid || locked.Holder.Command != "child" {
		t.Errorf("holder %#v, want pid %d running child", locked.Holder, cmd.Process.Pid)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	if err := cmd.Wait(); err == nil {
		t.Fatal("the child exited cleanly; want it killed")
	}
	l, err := Acquire(dir, "run")
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	defer l.Release()
	// The dead holder's details are replaced by ours.
	_, err = Acquire(dir, "status")
	if !errors.As(err, &locked) || locked.Holder.PID != os.Getpid() {
		t.Errorf("Acquire = %v, want a *LockedError naming this process", err)
	}
}
