package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
	"golang.org/x/sys/unix"
)

// strangerUID owns the directories of another user in these tests. No
// passwd entry is needed to own a file, so the tests create no user.
const strangerUID = 4242

// rootsFile is what the tests put in root's directory: a step sent there
// through a directory it should not have trusted would change it.
const rootsFile = "root's file\n"

// dirBed is a tree under a fresh directory: etc, root's directory with
// server.key holding rootsFile, and home/svc/tls, where the steps work.
type dirBed struct {
	base, etc, svc, tls string
}

// newDirBed makes the tree, every directory root's and 0755.
func newDirBed(t *testing.T) dirBed {
	t.Helper()
	requireRoot(t, "giving directories to another user")
	setUmask(t, 0o022)
	base := t.TempDir()
	b := dirBed{base: base, etc: filepath.Join(base, "etc"), svc: filepath.Join(base, "home", "svc"), tls: filepath.Join(base, "home", "svc", "tls")}
	for _, d := range []string{b.etc, b.tls} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(b.etc, "server.key"), []byte(rootsFile), 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// repoint moves tls aside (to tls.moved) and puts a symbolic link to etc
// in its place, as the user owning svc could.
func (b dirBed) repoint(t *testing.T) {
	t.Helper()
	if err := os.Rename(b.tls, b.tls+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(b.etc, b.tls); err != nil {
		t.Fatal(err)
	}
}

// wantRootsFileUntouched fails unless etc/server.key is as newDirBed left it.
func (b dirBed) wantRootsFileUntouched(t *testing.T) {
	t.Helper()
	p := filepath.Join(b.etc, "server.key")
	if got := readFile(t, p); got != rootsFile {
		t.Errorf("%s was changed: it holds %q", p, got)
	}
	if st := statT(t, p); st.Uid != 0 || st.Mode&0o777 != 0o600 {
		t.Errorf("%s is now owned by %d with mode %o, want root's and 0600", p, st.Uid, st.Mode&0o777)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func chownT(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func chmodT(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// unsafeDirCases are layouts in which a step must refuse to work in
// home/svc/tls, and what the refusal must say.
var unsafeDirCases = []struct {
	name  string
	setup func(t *testing.T, b dirBed)
	want  []string
}{
	{"target directory is a symbolic link to root's", func(t *testing.T, b dirBed) {
		os.RemoveAll(b.tls)
		if err := os.Symlink(b.etc, b.tls); err != nil {
			t.Fatal(err)
		}
	}, []string{"tls is a symbolic link", "give the directory's real path"}},
	{"a directory higher up is a symbolic link", func(t *testing.T, b dirBed) {
		if err := os.Rename(b.svc, b.svc+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(b.svc+".real", b.svc); err != nil {
			t.Fatal(err)
		}
	}, []string{"svc is a symbolic link", "svc.real/tls"}},
	{"parent belongs to another user", func(t *testing.T, b dirBed) {
		chownT(t, b.svc, strangerUID)
	}, []string{"svc belongs to uid 4242", "chown root", `trust_owner = "4242"`}},
	{"target directory belongs to another user", func(t *testing.T, b dirBed) {
		chownT(t, b.tls, strangerUID)
	}, []string{"tls belongs to uid 4242"}},
	{"parent writable by its group", func(t *testing.T, b dirBed) {
		chmodT(t, b.svc, 0o775)
	}, []string{"svc is writable by group 0", "chmod go-w"}},
	{"target directory writable by everyone", func(t *testing.T, b dirBed) {
		chmodT(t, b.tls, 0o777)
	}, []string{"tls is writable by every user"}},
}

// safeDirCases are layouts a step works in.
var safeDirCases = []struct {
	name  string
	setup func(t *testing.T, b dirBed)
	trust string
}{
	{"root's all the way", func(*testing.T, dirBed) {}, ""},
	{"sticky directory writable by everyone, as /tmp", func(t *testing.T, b dirBed) {
		chmodT(t, b.svc, os.ModeSticky|0o777)
	}, ""},
	{"another user's, named by trust_owner", func(t *testing.T, b dirBed) {
		chownT(t, b.svc, strangerUID)
		chownT(t, b.tls, strangerUID)
	}, "4242"},
}

// TestWriteRefusesUnsafeDirectory: a write whose directory is reached
// through a symbolic link, or that someone other than root or rotplan's
// user could rename or replace, is refused by CheckHost (the preflight),
// by the preview and by Apply, and root's file behind the link is left
// alone.
func TestWriteRefusesUnsafeDirectory(t *testing.T) {
	for _, tt := range unsafeDirCases {
		t.Run(tt.name, func(t *testing.T) {
			b := newDirBed(t)
			tt.setup(t, b)
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path":    cty.StringVal(filepath.Join(b.tls, "server.key")),
				"content": cty.StringVal(testKey).Mark("sensitive"),
			})
			env, logs := testEnv(t)
			ctx := context.Background()
			wantErr := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error, want a refusal", what)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: %v\nwant it to say %q", what, err, w)
					}
				}
			}
			wantErr("CheckHost", (*Write)(nil).CheckHost(ctx, env, cfg))
			pv, err := (*Write)(nil).Plan(ctx, NewEnv(nil), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(pv.Problems) == 0 {
				t.Fatal("Plan: no problem, want the refusal")
			}
			wantErr("Plan", pv.Problems[0])
			_, err = (*Write)(nil).Apply(ctx, NewEnv(nil), cfg)
			wantErr("Apply", err)
			b.wantRootsFileUntouched(t)
			if strings.Contains(logs.String(), testKeyBody) {
				t.Error("the key is in the log")
			}
		})
	}
}

// TestWriteSafeDirectory: the layouts that are safe are written in.
func TestWriteSafeDirectory(t *testing.T) {
	for _, tt := range safeDirCases {
		t.Run(tt.name, func(t *testing.T) {
			b := newDirBed(t)
			tt.setup(t, b)
			vals := map[string]cty.Value{
				"path":    cty.StringVal(filepath.Join(b.tls, "server.key")),
				"content": cty.StringVal("new\n"),
			}
			if tt.trust != "" {
				vals["trust_owner"] = cty.StringVal(tt.trust)
			}
			cfg := testConfig(t, (*Write)(nil).Spec(), vals)
			env, _ := testEnv(t)
			if err := (*Write)(nil).CheckHost(context.Background(), env, cfg); err != nil {
				t.Fatalf("CheckHost: %v", err)
			}
			if _, err := (*Write)(nil).Apply(context.Background(), env, cfg); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := readFile(t, filepath.Join(b.tls, "server.key")); got != "new\n" {
				t.Errorf("server.key holds %q", got)
			}
		})
	}
}

// snapshotKeyWrite returns the config of a write of testKey to key, and
// its snapshot taken in env.
func snapshotKeyWrite(t *testing.T, env *Env, key string) (Config, map[string]string) {
	t.Helper()
	cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
		"path":    cty.StringVal(key),
		"content": cty.StringVal(testKey).Mark("sensitive"),
	})
	snap, err := (*Write)(nil).Snapshot(context.Background(), env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, snap
}

// TestWriteRollbackDirectoryReplaced: the directory a write changed is
// moved away and another put at its path (a link to root's directory, or
// a directory of its own) before the rollback. A rollback in the same
// process works in the directory the write changed, through the
// descriptor it kept; one in a later process (a resume) refuses, keeps
// the backup and says how to restore by hand. Root's file is never
// touched.
func TestWriteRollbackDirectoryReplaced(t *testing.T) {
	tests := []struct {
		name        string
		laterRun    bool
		replaceWith string // "link" or "dir"
		want        []string
	}{
		{"same process, link to root's directory", false, "link", nil},
		{"same process, another directory", false, "dir", nil},
		{"later process, link to root's directory", true, "link", []string{"tls is a symbolic link", "install -m 0600", "DIR/server.key"}},
		{"later process, another directory", true, "dir", []string{"is not the one the step changed", "install -m 0600"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newDirBed(t)
			key := filepath.Join(b.tls, "server.key")
			if err := os.WriteFile(key, []byte("old key\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			env, _, backups := rollbackEnv(t)
			cfg, snap := snapshotKeyWrite(t, env, key)
			ctx := context.Background()
			if _, err := (*Write)(nil).Apply(ctx, env, cfg); err != nil {
				t.Fatal(err)
			}
			switch tt.replaceWith {
			case "link":
				b.repoint(t)
			case "dir":
				if err := os.Rename(b.tls, b.tls+".moved"); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(b.tls, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			rbEnv := env
			if tt.laterRun {
				rbEnv, _, _ = rollbackEnv(t)
			}
			err := (*Write)(nil).Rollback(ctx, rbEnv, cfg, cty.NilVal, snap)
			b.wantRootsFileUntouched(t)
			moved := filepath.Join(b.tls+".moved", "server.key")
			if !tt.laterRun {
				if err != nil {
					t.Fatalf("Rollback: %v", err)
				}
				if got := readFile(t, moved); got != "old key\n" {
					t.Errorf("the directory the write changed holds %q, want the old key back", got)
				}
				return
			}
			if err == nil {
				t.Fatal("Rollback in a later process went ahead in a directory that is not the one the write changed")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Rollback: %v\nwant it to say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testKeyBody) {
				t.Error("the error holds the key")
			}
			if _, err := os.Stat(snap["backup"]); err != nil {
				t.Errorf("the backup is gone: %v", err)
			}
			if entries, _ := os.ReadDir(backups); len(entries) == 0 {
				t.Error("no backup kept")
			}
			if tt.replaceWith == "dir" {
				if _, err := os.Lstat(key); err == nil {
					t.Errorf("the rollback restored into the directory that took the changed one's place")
				}
			}
		})
	}
}

// TestChownRefusesUnsafeDirectory: a chown of a file reached through a
// symbolic link or a directory another user could replace, or of a file
// with another hard link, is refused before anything changes, and root's
// file keeps its owner.
func TestChownRefusesUnsafeDirectory(t *testing.T) {
	cases := append([]struct {
		name  string
		setup func(t *testing.T, b dirBed)
		want  []string
	}{}, unsafeDirCases...)
	cases = append(cases, struct {
		name  string
		setup func(t *testing.T, b dirBed)
		want  []string
	}{"a hard link to root's file", func(t *testing.T, b dirBed) {
		os.Remove(filepath.Join(b.tls, "server.key"))
		if err := os.Link(filepath.Join(b.etc, "server.key"), filepath.Join(b.tls, "server.key")); err != nil {
			t.Fatal(err)
		}
	}, []string{"2 hard links"}})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			b := newDirBed(t)
			if err := os.WriteFile(filepath.Join(b.tls, "server.key"), []byte("svc's key\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, b)
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": cty.ListVal([]cty.Value{cty.StringVal(filepath.Join(b.tls, "server.key"))}),
				"owner": cty.StringVal("4242"),
			})
			ctx := context.Background()
			env, _ := testEnv(t)
			var errs []string
			if !strings.Contains(tt.name, "hard link") { // a file is no matter for the preflight
				if err := (*Chown)(nil).CheckHost(ctx, env, cfg); err != nil {
					errs = append(errs, "CheckHost: "+err.Error())
				} else {
					t.Error("CheckHost: no error")
				}
				pv, err := (*Chown)(nil).Plan(ctx, NewEnv(nil), cfg)
				if err != nil || len(pv.Problems) == 0 {
					t.Errorf("Plan: %v, problems %v, want the refusal", err, pv.Problems)
				} else {
					errs = append(errs, "Plan: "+pv.Problems[0].Error())
				}
			}
			if _, err := (*Chown)(nil).Apply(ctx, NewEnv(nil), cfg); err != nil {
				errs = append(errs, "Apply: "+err.Error())
			} else {
				t.Error("Apply: no error")
			}
			for _, e := range errs {
				for _, w := range tt.want {
					if !strings.Contains(e, w) {
						t.Errorf("%s\nwant it to say %q", e, w)
					}
				}
			}
			b.wantRootsFileUntouched(t)
		})
	}
}

// TestChownRollbackDirectoryReplaced: as for a write, a chown rolled back
// by a later process refuses to work in a directory that took the place
// of the one it changed, and says what to run by hand.
func TestChownRollbackDirectoryReplaced(t *testing.T) {
	b := newDirBed(t)
	p := filepath.Join(b.tls, "server.key")
	if err := os.WriteFile(p, []byte("svc's key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
		"paths": cty.ListVal([]cty.Value{cty.StringVal(p)}),
		"owner": cty.StringVal("4242"),
	})
	ctx := context.Background()
	env, _ := testEnv(t)
	snap, err := (*Chown)(nil).Snapshot(ctx, env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (*Chown)(nil).Apply(ctx, env, cfg); err != nil {
		t.Fatal(err)
	}
	b.repoint(t)
	later, _ := testEnv(t)
	err = (*Chown)(nil).Rollback(ctx, later, cfg, cty.NilVal, snap)
	if err == nil || !strings.Contains(err.Error(), "tls is a symbolic link") || !strings.Contains(err.Error(), "chown 0:0 DIR/server.key") {
		t.Errorf("Rollback: %v, want a refusal naming the link and the command to run by hand", err)
	}
	b.wantRootsFileUntouched(t)
	// The same process rolls back through the directory it kept.
	if err := (*Chown)(nil).Rollback(ctx, env, cfg, cty.NilVal, snap); err != nil {
		t.Fatalf("Rollback in the same process: %v", err)
	}
	if st := statT(t, filepath.Join(b.tls+".moved", "server.key")); st.Uid != 0 {
		t.Errorf("the file the chown changed is owned by %d after the rollback, want root", st.Uid)
	}
	b.wantRootsFileUntouched(t)
}

// TestWriteRemovesLeftoverTemp: a write cut short leaves its temporary
// file (which may hold a key) under the name every write of that file
// uses; the next write of the file, and the rollback of the write, remove
// it. One that another write holds open is not touched.
func TestWriteRemovesLeftoverTemp(t *testing.T) {
	tests := []struct {
		name   string
		then   string // "apply", "rollback" (of a file that was not there) or "restore"
		locked bool
	}{
		{"the next write", "apply", false},
		{"the rollback of a new file", "rollback", false},
		{"the rollback of a replaced file", "restore", false},
		{"a write under way is left alone", "apply", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setUmask(t, 0o022)
			dir := t.TempDir()
			key := filepath.Join(dir, "server.key")
			if tt.then == "restore" {
				if err := os.WriteFile(key, []byte("old key\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env, _, _ := rollbackEnv(t)
			cfg, snap := snapshotKeyWrite(t, env, key)
			ctx := context.Background()
			if tt.then != "apply" {
				if _, err := (*Write)(nil).Apply(ctx, env, cfg); err != nil {
					t.Fatal(err)
				}
			}
			// What a write killed after filling its temporary file leaves.
			leftover := filepath.Join(dir, ".server.key.rotplan-tmp")
			if err := os.WriteFile(leftover, []byte(testKey), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.locked {
				f, err := os.Open(leftover)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			switch tt.then {
			case "apply":
				_, err = (*Write)(nil).Apply(ctx, env, cfg)
			default:
				err = (*Write)(nil).Rollback(ctx, env, cfg, cty.NilVal, snap)
			}
			if tt.locked {
				if err == nil || !strings.Contains(err.Error(), "held by a write under way") {
					t.Errorf("Apply: %v, want it to say another write is under way", err)
				}
				if _, err := os.Stat(leftover); err != nil {
					t.Errorf("the temporary file of a write under way was removed: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(leftover); err == nil {
				t.Errorf("%s is still there", leftover)
			}
			for _, name := range dirNames(t, dir) {
				if strings.Contains(name, "rotplan-") {
					t.Errorf("a temporary file is left: %s", name)
				}
			}
		})
	}
}
