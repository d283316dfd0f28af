package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

func stringList(ss ...string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vals := make([]cty.Value, len(ss))
	for i, s := range ss {
		vals[i] = cty.StringVal(s)
	}
	return cty.ListVal(vals)
}

func TestChown(t *testing.T) {
	requireRoot(t, "changing files' owner and group to another user's")
	owner, group, uid, gid := testOwner(t)
	tests := []struct {
		name             string
		owner, group     cty.Value
		wantUID, wantGID int // -1: unchanged (root's 0)
	}{
		{"owner and group by name", cty.StringVal(owner), cty.StringVal(group), uid, gid},
		{"owner and group by id", cty.StringVal(strconv.Itoa(uid)), cty.StringVal(strconv.Itoa(gid)), uid, gid},
		{"owner only", cty.StringVal(owner), cty.NullVal(cty.String), uid, -1},
		{"group only", cty.NullVal(cty.String), cty.StringVal(group), -1, gid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for _, name := range []string{"cert.pem", "key.pem"} {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(name), 0o640); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			sub := filepath.Join(dir, "certs")
			if err := os.Mkdir(sub, 0o750); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, sub)

			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(paths...),
				"owner": tt.owner,
				"group": tt.group,
			})
			if err := (*Chown)(nil).Validate(cfg); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			env, _ := testEnv(t)
			out, err := (*Chown)(nil).Apply(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			wantOutputs(t, (*Chown)(nil), out)
			want := cty.ObjectVal(map[string]cty.Value{
				"paths": stringList(paths...),
				"uid":   cty.NumberIntVal(int64(tt.wantUID)),
				"gid":   cty.NumberIntVal(int64(tt.wantGID)),
			})
			if !out.RawEquals(want) {
				t.Errorf("outputs are %#v, want %#v", out, want)
			}

			wantUID, wantGID := max(tt.wantUID, 0), max(tt.wantGID, 0)
			for _, p := range paths {
				st := statT(t, p)
				if int(st.Uid) != wantUID || int(st.Gid) != wantGID {
					t.Errorf("%s is owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, wantUID, wantGID)
				}
			}
		})
	}
}

func TestChownRefusesSymlink(t *testing.T) {
	tests := []struct {
		name  string
		order []string // the paths, symlink among them
	}{
		{"symlink alone", []string{"link"}},
		{"symlink after a file", []string{"file", "link"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "target")
			file := filepath.Join(dir, "file")
			for _, p := range []string{target, file} {
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			link := filepath.Join(dir, "link")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, name := range tt.order {
				paths = append(paths, filepath.Join(dir, name))
			}
			// Any owner would do to show the refusal; an id other than the
			// files' own shows nothing was changed.
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(paths...),
				"owner": cty.StringVal(strconv.Itoa(os.Geteuid() + 1)),
			})
			if err := (*Chown)(nil).Validate(cfg); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			env, _ := testEnv(t)
			_, err := (*Chown)(nil).Apply(context.Background(), env, cfg)
			wantErrContains(t, err, link, "symbolic link")
			for _, p := range []string{target, file, link} {
				if st := statT(t, p); int(st.Uid) != os.Geteuid() {
					t.Errorf("%s changed owner to %d although the step failed", p, st.Uid)
				}
			}
		})
	}
}

func TestChownMissingPath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
		"paths": stringList(missing),
		"group": cty.StringVal("0"),
	})
	// Validate does not look at the files: an earlier step may create them.
	if err := (*Chown)(nil).Validate(cfg); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	env, _ := testEnv(t)
	_, err := (*Chown)(nil).Apply(context.Background(), env, cfg)
	wantErrContains(t, err, missing)
}

func TestChownValidate(t *testing.T) {
	paths := stringList("/tmp/x")
	tests := []struct {
		name     string
		vals     map[string]cty.Value
		wantPath string // "" for no error
		wantMsg  string
	}{
		{"owner", map[string]cty.Value{"paths": paths, "owner": cty.StringVal("root")}, "", ""},
		{"group", map[string]cty.Value{"paths": paths, "group": cty.StringVal("root")}, "", ""},
		{"numeric ids", map[string]cty.Value{"paths": paths, "owner": cty.StringVal("4242"), "group": cty.StringVal("4242")}, "", ""},
		{"unknown paths", map[string]cty.Value{"paths": cty.UnknownVal(cty.List(cty.String)), "owner": cty.StringVal("root")}, "", ""},
		{"unknown owner", map[string]cty.Value{"paths": paths, "owner": cty.UnknownVal(cty.String)}, "", ""},
		{"neither owner nor group", map[string]cty.Value{"paths": paths}, "owner", "owner, group or both"},
		{"unknown group name", map[string]cty.Value{"paths": paths, "group": cty.StringVal("rotplan-no-such-group")}, "group", `no such group "rotplan-no-such-group"`},
		{"unknown user name", map[string]cty.Value{"paths": paths, "owner": cty.StringVal("rotplan-no-such-user")}, "owner", `no such user "rotplan-no-such-user"`},
		{"empty group", map[string]cty.Value{"paths": paths, "group": cty.StringVal("")}, "group", "empty"},
		{"no paths", map[string]cty.Value{"paths": stringList(), "owner": cty.StringVal("root")}, "paths", "at least one"},
		{"empty path", map[string]cty.Value{"paths": stringList("/tmp/x", ""), "owner": cty.StringVal("root")}, "paths", "empty"},
		{"null path", map[string]cty.Value{"paths": cty.ListVal([]cty.Value{cty.StringVal("/tmp/x"), cty.NullVal(cty.String)}), "owner": cty.StringVal("root")}, "paths", "null"},
	}
	// Whether a user or group exists is the host's to say: CheckHost's.
	host := map[string]bool{"unknown group name": true, "unknown user name": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err, fromHost := validateThenCheck(t, (*Chown)(nil), testConfig(t, (*Chown)(nil).Spec(), tt.vals))
			if tt.wantPath == "" {
				wantValid(t, err)
				return
			}
			wantFrom(t, fromHost, host[tt.name])
			msg := wantAttrErr(t, err, tt.wantPath)
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q does not say %q", msg, tt.wantMsg)
			}
		})
	}
}

func TestChownApplyUnknownGroup(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
		"paths": stringList(p),
		"group": cty.StringVal("rotplan-no-such-group"),
	})
	env, _ := testEnv(t)
	_, err := (*Chown)(nil).Apply(context.Background(), env, cfg)
	wantAttrErr(t, err, "group")
}

// chownDone calls Done and fails the test on an error.
func chownDone(t *testing.T, intent map[string]string) (cty.Value, bool) {
	t.Helper()
	env, _ := testEnv(t)
	out, ok, err := (*Chown)(nil).Done(context.Background(), env, intent)
	if err != nil {
		t.Fatalf("Done: %v", err)
	}
	if !ok && out != cty.NilVal {
		t.Errorf("Done returned outputs %#v with false", out)
	}
	return out, ok
}

func TestChownResume(t *testing.T) {
	requireRoot(t, "changing files' owner and group to another user's")
	owner, group, uid, gid := testOwner(t)
	tests := []struct {
		name         string
		owner, group cty.Value
		change       func(t *testing.T, paths []string) // after Apply; nil: none
		want         bool
	}{
		{"owner and group", cty.StringVal(owner), cty.StringVal(group), nil, true},
		{"owner only, group not checked", cty.StringVal(owner), cty.NullVal(cty.String), func(t *testing.T, paths []string) {
			if err := os.Lchown(paths[0], -1, gid); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"one file given back to root", cty.StringVal(owner), cty.StringVal(group), func(t *testing.T, paths []string) {
			if err := os.Lchown(paths[1], 0, -1); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"group changed", cty.NullVal(cty.String), cty.StringVal(group), func(t *testing.T, paths []string) {
			if err := os.Lchown(paths[0], -1, 0); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"one file removed", cty.StringVal(owner), cty.StringVal(group), func(t *testing.T, paths []string) {
			if err := os.Remove(paths[1]); err != nil {
				t.Fatal(err)
			}
		}, false},
		// The link itself is given the right owner, as is its target:
		// only its being a link can make Done say no.
		{"file replaced by a symlink", cty.StringVal(owner), cty.StringVal(group), func(t *testing.T, paths []string) {
			twin := paths[0] + ".twin"
			if err := os.Rename(paths[0], twin); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(twin, paths[0]); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(paths[0], uid, gid); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for _, name := range []string{"cert.pem", "key.pem"} {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(name), 0o640); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(paths...),
				"owner": tt.owner,
				"group": tt.group,
			})
			intent, err := (*Chown)(nil).Intent(context.Background(), nil, cfg)
			if err != nil {
				t.Fatalf("Intent: %v", err)
			}
			if _, ok := chownDone(t, intent); ok {
				t.Fatal("Done before Apply: got true, want false")
			}
			env, _ := testEnv(t)
			applied, err := (*Chown)(nil).Apply(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tt.change != nil {
				tt.change(t, paths)
			}
			out, ok := chownDone(t, intent)
			if ok != tt.want {
				t.Fatalf("Done: got %v, want %v", ok, tt.want)
			}
			if ok {
				wantOutputs(t, (*Chown)(nil), out)
				if !out.RawEquals(applied) {
					t.Errorf("Done returned %#v, Apply %#v", out, applied)
				}
			}
		})
	}
}

// TestChownResumeOwnFiles needs no root: files the test user already owns
// are "done" for a chown to that user, Apply or not.
func TestChownResumeOwnFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Geteuid())
	tests := []struct {
		name  string
		paths []string
		want  bool
	}{
		{"own file", []string{file}, true},
		{"missing file", []string{file, filepath.Join(dir, "missing")}, false},
		{"symlink", []string{link}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(tt.paths...),
				"owner": cty.StringVal(me),
			})
			intent, err := (*Chown)(nil).Intent(context.Background(), nil, cfg)
			if err != nil {
				t.Fatalf("Intent: %v", err)
			}
			if intent["uid"] != me || intent["gid"] != "-1" {
				t.Errorf("intent %v, want uid %s and gid -1", intent, me)
			}
			out, ok := chownDone(t, intent)
			if ok != tt.want {
				t.Fatalf("Done: got %v, want %v", ok, tt.want)
			}
			if ok {
				want := cty.ObjectVal(map[string]cty.Value{
					"paths": stringList(tt.paths...),
					"uid":   cty.NumberIntVal(int64(os.Geteuid())),
					"gid":   cty.NumberIntVal(-1),
				})
				if !out.RawEquals(want) {
					t.Errorf("Done returned %#v, want %#v", out, want)
				}
			}
		})
	}
}

func TestChownDoneMalformedIntent(t *testing.T) {
	tests := []struct {
		name    string
		intent  map[string]string
		wantErr string
	}{
		{"nil", nil, `no "paths"`},
		{"paths not JSON", map[string]string{"paths": "/etc/x", "uid": "0", "gid": "0"}, "not a JSON list"},
		{"paths not strings", map[string]string{"paths": "[1]", "uid": "0", "gid": "0"}, "not a JSON list"},
		{"no paths", map[string]string{"paths": "[]", "uid": "0", "gid": "0"}, "no path"},
		{"null paths", map[string]string{"paths": "null", "uid": "0", "gid": "0"}, "no path"},
		{"empty path", map[string]string{"paths": `["/a",""]`, "uid": "0", "gid": "0"}, "path 2 is empty"},
		{"no uid", map[string]string{"paths": `["/a"]`, "gid": "0"}, `no "uid"`},
		{"uid a name", map[string]string{"paths": `["/a"]`, "uid": "root", "gid": "0"}, "not an id"},
		{"gid negative", map[string]string{"paths": `["/a"]`, "uid": "0", "gid": "-2"}, "not an id"},
		{"neither", map[string]string{"paths": `["/a"]`, "uid": "-1", "gid": "-1"}, "neither owner nor group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv(t)
			out, ok, err := (*Chown)(nil).Done(context.Background(), env, tt.intent)
			wantErrContains(t, err, tt.wantErr)
			if ok || out != cty.NilVal {
				t.Errorf("Done returned %#v, %v with an error", out, ok)
			}
		})
	}
}

func TestChownSummary(t *testing.T) {
	outputs := func(uid, gid cty.Value) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"paths": stringList("/k"), "uid": uid, "gid": gid})
	}
	tests := []struct {
		name    string
		outputs cty.Value
		want    []Fact
	}{
		{"owner and group", outputs(cty.NumberIntVal(65534), cty.NumberIntVal(65533)), []Fact{{"owner", "65534:65533"}}},
		{"owner only", outputs(cty.NumberIntVal(65534), cty.NumberIntVal(-1)), []Fact{{"owner", "65534"}}},
		{"group only", outputs(cty.NumberIntVal(-1), cty.NumberIntVal(65533)), []Fact{{"owner", ":65533"}}},
		{"null uid", outputs(cty.NullVal(cty.Number), cty.NumberIntVal(0)), nil},
		{"unknown gid", outputs(cty.NumberIntVal(0), cty.UnknownVal(cty.Number)), nil},
		{"fractional uid", outputs(cty.NumberFloatVal(1.5), cty.NumberIntVal(0)), nil},
		{"null outputs", cty.NullVal(OutputType((*Chown)(nil))), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFacts(t, (*Chown)(nil).Summary(tt.outputs), tt.want)
		})
	}
}

// chownFixture makes files and a directory to hand over, with the owners
// given (uid, gid pairs), and returns their paths.
func chownFixture(t *testing.T, owners ...[2]int) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, o := range owners {
		p := filepath.Join(dir, "file"+strconv.Itoa(i))
		if i == len(owners)-1 {
			if err := os.Mkdir(p, 0o750); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, []byte(p), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, o[0], o[1]); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// wantOwner fails the test unless path is owned by uid:gid.
func wantOwner(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if st := statT(t, path); int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s is owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

func TestChownRollback(t *testing.T) {
	requireRoot(t, "giving files to other users and back")
	_, _, nobody, nogroup := testOwner(t)
	tests := []struct {
		name         string
		owner, group cty.Value
	}{
		{"owner and group", cty.StringVal("4242"), cty.StringVal("4243")},
		{"owner only", cty.StringVal("4242"), cty.NullVal(cty.String)},
		{"group only", cty.NullVal(cty.String), cty.StringVal("4243")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := [][2]int{{nobody, nogroup}, {0, 0}, {nobody, 0}}
			paths := chownFixture(t, before...)
			// A path that a step creates between the snapshot and the
			// chown: it had no owner to go back to.
			later := filepath.Join(filepath.Dir(paths[0]), "later.pem")
			all := append(append([]string{}, paths...), later)
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(all...), "owner": tt.owner, "group": tt.group,
			})
			env, logs := testEnv(t)
			snap, err := (*Chown)(nil).Snapshot(context.Background(), env, cfg)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			dir := dirIdentity(t, filepath.Dir(paths[0]))
			want := fmt.Sprintf(`[{"path":%q,"uid":%d,"gid":%d,%s},{"path":%q,"uid":0,"gid":0,%s},{"path":%q,"uid":%d,"gid":0,%s},{"path":%q,"missing":true}]`,
				paths[0], nobody, nogroup, dir, paths[1], dir, paths[2], nobody, dir, later)
			if len(snap) != 1 || snap["owners"] != want {
				t.Errorf("snapshot %v,\nwant owners %s", snap, want)
			}
			for i, p := range paths {
				wantOwner(t, p, before[i][0], before[i][1]) // Snapshot changes nothing
			}

			if err := os.WriteFile(later, nil, 0o640); err != nil {
				t.Fatal(err)
			}
			out, err := (*Chown)(nil).Apply(context.Background(), env, cfg)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			laterSt := statT(t, later)
			for i := range 2 {
				if err := (*Chown)(nil).Rollback(context.Background(), env, cfg, out, snap); err != nil {
					t.Fatalf("Rollback (call %d): %v", i+1, err)
				}
			}
			for i, p := range paths {
				wantOwner(t, p, before[i][0], before[i][1])
			}
			// Left as Apply made it.
			wantOwner(t, later, int(laterSt.Uid), int(laterSt.Gid))
			if !strings.Contains(logs.String(), "restored owner") {
				t.Errorf("the log does not say which owners were restored:\n%s", logs)
			}
		})
	}
}

func TestChownRollbackChanged(t *testing.T) {
	requireRoot(t, "giving files to other users and back")
	_, _, nobody, nogroup := testOwner(t)
	tests := []struct {
		name    string
		change  func(t *testing.T, paths []string) // after Apply
		wantErr string                             // "" for none
		wantLog string
	}{
		{"first file removed", func(t *testing.T, paths []string) {
			if err := os.Remove(paths[0]); err != nil {
				t.Fatal(err)
			}
		}, "", "the file is gone"},
		{"first file replaced by a symlink", func(t *testing.T, paths []string) {
			if err := os.Rename(paths[0], paths[0]+".twin"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(paths[0]+".twin", paths[0]); err != nil {
				t.Fatal(err)
			}
		}, "it is now a symbolic link; refusing to change it (check where it points first); run by hand: chown UID:GID PATH", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := [][2]int{{nobody, nogroup}, {nobody, 0}, {0, nogroup}}
			paths := chownFixture(t, before...)
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(paths...), "owner": cty.StringVal("4242"), "group": cty.StringVal("4243"),
			})
			env, logs := testEnv(t)
			snap, err := (*Chown)(nil).Snapshot(context.Background(), env, cfg)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			out, err := (*Chown)(nil).Apply(context.Background(), env, cfg)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			tt.change(t, paths)

			err = (*Chown)(nil).Rollback(context.Background(), env, cfg, out, snap)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Rollback: %v", err)
				}
			} else {
				r := strings.NewReplacer("UID", strconv.Itoa(nobody), "GID", strconv.Itoa(nogroup), "PATH", paths[0])
				wantErrContains(t, err, paths[0], r.Replace(tt.wantErr))
				if st := statT(t, paths[0]); st.Uid != 0 || st.Gid != 0 {
					t.Errorf("the refused link changed owner to %d:%d", st.Uid, st.Gid)
				}
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("the log does not say %q:\n%s", tt.wantLog, logs)
			}
			// The paths after the one that failed are restored all the same.
			for i := 1; i < len(paths); i++ {
				wantOwner(t, paths[i], before[i][0], before[i][1])
			}
		})
	}
}

// TestChownSnapshotOwnFiles needs no root: a snapshot of files the test
// user owns, and a rollback to that same owner, which chown(2) allows.
// dirIdentity is how a chown snapshot records the directory dir:
// "dir_dev":N,"dir_ino":N.
func dirIdentity(t *testing.T, dir string) string {
	t.Helper()
	st := statT(t, dir)
	return fmt.Sprintf(`"dir_dev":%d,"dir_ino":%d`, st.Dev, st.Ino)
}

func TestChownSnapshotOwnFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	uid, gid := os.Geteuid(), os.Getegid()
	id := dirIdentity(t, dir)
	tests := []struct {
		name    string
		paths   []string
		want    string // the owners, or the error
		wantErr bool
	}{
		{"own file", []string{file}, fmt.Sprintf(`[{"path":%q,"uid":%d,"gid":%d,%s}]`, file, uid, gid, id), false},
		{"missing file", []string{missing, file}, fmt.Sprintf(`[{"path":%q,"missing":true},{"path":%q,"uid":%d,"gid":%d,%s}]`, missing, file, uid, gid, id), false},
		{"symlink", []string{file, link}, "symbolic link", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(tt.paths...), "owner": cty.StringVal(strconv.Itoa(uid)),
			})
			env, _ := testEnv(t)
			snap, err := (*Chown)(nil).Snapshot(context.Background(), env, cfg)
			if tt.wantErr {
				wantErrContains(t, err, link, tt.want)
				return
			}
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if snap["owners"] != tt.want {
				t.Errorf("owners %s, want %s", snap["owners"], tt.want)
			}
			if err := (*Chown)(nil).Rollback(context.Background(), env, cfg, cty.NilVal, snap); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			if _, err := os.Lstat(missing); !os.IsNotExist(err) {
				t.Errorf("the rollback created %s (%v)", missing, err)
			}
		})
	}
}

func TestChownRollbackMalformedSnapshot(t *testing.T) {
	tests := []struct {
		name    string
		owners  string // "<none>": no owners key
		wantErr string
	}{
		{"no owners", "<none>", `no "owners"`},
		{"not JSON", "/etc/x", "not a JSON list"},
		{"not a list", `{"path":"/a"}`, "not a JSON list"},
		{"unknown field", `[{"path":"/a","uid":0,"gid":0,"mode":"0600"}]`, "not a JSON list"},
		{"fractional uid", `[{"path":"/a","uid":0.5,"gid":0}]`, "not a JSON list"},
		{"null", "null", "no path"},
		{"empty list", "[]", "no path"},
		{"empty path", `[{"path":"","uid":0,"gid":0}]`, "path 1 is empty"},
		{"no gid", `[{"path":"/a","uid":0}]`, "lacks the uid or gid of /a"},
		{"no ids", `[{"path":"/a"}]`, "lacks the uid or gid of /a"},
		{"missing with an owner", `[{"path":"/a","missing":true,"uid":0}]`, "although it was missing"},
		{"negative uid", `[{"path":"/a","uid":-1,"gid":0}]`, "not a pair of ids"},
		{"uid too large", `[{"path":"/a","uid":4294967295,"gid":0}]`, "not a pair of ids"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := map[string]string{"owners": tt.owners}
			if tt.owners == "<none>" {
				snap = map[string]string{}
			}
			env, _ := testEnv(t)
			err := (*Chown)(nil).Rollback(context.Background(), env, Config{}, cty.NilVal, snap)
			wantErrContains(t, err, "chown: rolling back", tt.wantErr)
		})
	}
}

// immutable makes p immutable (chattr +i), so that not even root can give
// it another owner, until the test ends; it skips the test where the
// filesystem or the machine does not allow that.
func immutable(t *testing.T, p string) {
	t.Helper()
	if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
		t.Skipf("chattr +i %s: %v: %s (needed to make a chown fail as root)", p, err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", p).Run() })
}

// TestChownFailsPartWay: a chown whose second path cannot change owner
// (immutable) has changed the first: its error is a *UnsettledError, so
// that the engine's rollback gives the first path its old owner back, and
// the rollback from the snapshot does. A chown whose first path fails
// changed nothing, and says so with a plain error.
func TestChownFailsPartWay(t *testing.T) {
	requireRoot(t, "giving files to other users and back")
	_, _, nobody, nogroup := testOwner(t)
	paths := chownFixture(t, [2]int{nobody, nogroup}, [2]int{nobody, nogroup}, [2]int{0, 0})
	immutable(t, paths[1])
	env, _ := testEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		paths     []string
		unsettled bool
	}{
		{"the first path fails", []string{paths[1], paths[0]}, false},
		{"the second path fails", []string{paths[0], paths[1]}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, (*Chown)(nil).Spec(), map[string]cty.Value{
				"paths": stringList(tc.paths...), "owner": cty.StringVal("4242"), "group": cty.StringVal("4243"),
			})
			snap, err := (*Chown)(nil).Snapshot(ctx, env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = (*Chown)(nil).Apply(ctx, env, cfg)
			wantErrContains(t, err, "chown "+paths[1])
			var unsettled *UnsettledError
			if errors.As(err, &unsettled) != tc.unsettled {
				t.Fatalf("unsettled %t, want %t: %v", !tc.unsettled, tc.unsettled, err)
			}
			if tc.unsettled {
				wantOwner(t, paths[0], 4242, 4243) // what the rollback must undo
				if err := (*Chown)(nil).Rollback(ctx, env, cfg, cty.NilVal, snap); err != nil {
					t.Fatalf("Rollback: %v", err)
				}
			}
			wantOwner(t, paths[0], nobody, nogroup)
			wantOwner(t, paths[1], nobody, nogroup)
		})
	}
}
