package steps

import (
	"context"
	"os"
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (*Chown)(nil).Validate(testConfig(t, (*Chown)(nil).Spec(), tt.vals))
			if tt.wantPath == "" {
				wantValid(t, err)
				return
			}
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
