package remote

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOwnTargetAndChown: OwnTarget refuses a symbolic link, a file with
// another hard link and a missing file (fs.ErrNotExist), and passes a
// file and a directory; Chown changes owner, group or both.
func TestOwnTargetAndChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "server.key")
	linked := filepath.Join(dir, "linked")
	for _, p := range []string{file, linked} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(linked, filepath.Join(dir, "second")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "pointer")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"a symbolic link", filepath.Join(dir, "pointer"), "is a symbolic link; refusing to change its owner"},
		{"two hard links", linked, "has 2 hard links"},
		{"missing", filepath.Join(dir, "missing"), "file does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.OwnTarget(ctx, tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
			if (tc.name == "missing") != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %t", err, !(tc.name == "missing"))
			}
		})
	}
	for _, p := range []string{file, dir} {
		if _, err := c.OwnTarget(ctx, p); err != nil {
			t.Errorf("OwnTarget(%s): %v", p, err)
		}
	}
	for _, tc := range []struct{ uid, gid, wantUID, wantGID int }{
		{4242, 4343, 4242, 4343},
		{4244, -1, 4244, 4343},
		{-1, 4345, 4244, 4345},
	} {
		if err := c.Chown(ctx, file, tc.uid, tc.gid); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(file, &st); err != nil {
			t.Fatal(err)
		}
		if int(st.Uid) != tc.wantUID || int(st.Gid) != tc.wantGID {
			t.Errorf("chown %d:%d left %d:%d, want %d:%d", tc.uid, tc.gid, st.Uid, st.Gid, tc.wantUID, tc.wantGID)
		}
	}
	if err := c.Chown(ctx, file, -1, -1); err == nil {
		t.Error("a chown of neither owner nor group passed")
	}
}

// TestLookupID: names are looked up on the host; a name it does not know
// is fs.ErrNotExist, named with the host.
func TestLookupID(t *testing.T) {
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	for _, db := range []string{"passwd", "group"} {
		if id, err := c.LookupID(ctx, db, "root"); err != nil || id != 0 {
			t.Errorf("%s root: %d, %v", db, id, err)
		}
	}
	_, err := c.LookupID(ctx, "passwd", "rotplan-no-such-user")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `no user "rotplan-no-such-user" on `+c.Host().String()) {
		t.Errorf("a missing user: %v", err)
	}
	for _, bad := range []string{"", "-n", "a:b"} {
		if _, err := c.LookupID(ctx, "group", bad); err == nil {
			t.Errorf("%q looked up", bad)
		}
	}
}

// TestInstall: a temporary file a command made beside the target is
// renamed over it with its owner and mode; one not named as a temporary
// file of the target is refused and left alone.
func TestInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	s := startSSHD(t, 1)
	c := s.dial(t)
	ctx := context.Background()
	dir := t.TempDir()
	target := filepath.Join(dir, "server.key")
	tmp := strings.Replace(TempPattern(target), "XXXXXXXXXXXX", "abcdefabcdef", 1)
	if err := os.WriteFile(tmp, []byte("key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Install(ctx, tmp, target, 0o640, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	checkFile(t, target, "key\n", 0o640, 4242, 4343)
	if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary file is still there: %v", err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Install(ctx, other, target, 0o600, -1, -1); err == nil || !strings.Contains(err.Error(), "is not a temporary file of it") {
		t.Errorf("installing %s: %v", other, err)
	}
	checkFile(t, target, "key\n", 0o640, 4242, 4343)
	checkFile(t, other, "x\n", 0o600, 0, 0)
}
