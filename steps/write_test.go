package steps

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
)

// testKey is a real private key, made when the tests start so no key
// material is kept in the repository; testKeyBody is its base64 line, the
// text that would show if it leaked.
var testKey, testKeyBody = makeTestKey()

// makeTestKey makes a private key in PEM and returns it with its base64 line.
func makeTestKey() (string, string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		panic(err)
	}
	text := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	return text, strings.Split(text, "\n")[1]
}

// applyWrite validates and applies a write block and returns its outputs.
func applyWrite(t *testing.T, vals map[string]cty.Value) (cty.Value, string, error) {
	t.Helper()
	cfg := testConfig(t, (*Write)(nil).Spec(), vals)
	if err := (*Write)(nil).Validate(cfg); err != nil {
		return cty.NilVal, "", err
	}
	env, logs := testEnv(t)
	out, err := (*Write)(nil).Apply(context.Background(), env, cfg)
	if err == nil {
		wantOutputs(t, (*Write)(nil), out)
	}
	return out, logs.String(), err
}

// dirNames lists a directory, so a test can see that no temporary file was
// left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func wantOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	got := dirNames(t, dir)
	if strings.Join(got, "\n") != strings.Join(names, "\n") {
		t.Fatalf("directory %s holds %q, want exactly %q", dir, got, names)
	}
}

func statT(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestWriteModes(t *testing.T) {
	tests := []struct {
		name      string
		mode      cty.Value
		sensitive bool
		umask     int
		want      os.FileMode
	}{
		{"0600", cty.StringVal("0600"), false, 0o022, 0o600},
		{"0644 under strict umask", cty.StringVal("0644"), false, 0o077, 0o644},
		{"0640 under permissive umask", cty.StringVal("0640"), false, 0, 0o640},
		{"0640 sensitive", cty.StringVal("0640"), true, 0o027, 0o640},
		{"600 as HCL makes of the number 0600", cty.NumberIntVal(600), false, 0o022, 0o600},
		{"0400 read-only", cty.StringVal("0400"), true, 0o022, 0o400},
		{"0755", cty.StringVal("0755"), false, 0o777, 0o755},
		{"default plain under strict umask", cty.NullVal(cty.String), false, 0o077, 0o644},
		{"default sensitive under permissive umask", cty.NullVal(cty.String), true, 0, 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir() // before the umask, which may be 0777
			setUmask(t, tt.umask)
			path := filepath.Join(dir, "key.pem")
			content := cty.StringVal(testKey)
			if tt.sensitive {
				content = content.Mark("sensitive")
			}
			out, logs, err := applyWrite(t, map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": content,
				"mode":    tt.mode,
			})
			if err != nil {
				t.Fatal(err)
			}

			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode(); got != tt.want {
				t.Errorf("file mode is %v, want %v", got, tt.want)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != testKey {
				t.Errorf("file holds %q, want the content", got)
			}
			wantOnly(t, dir, "key.pem")

			sum := sha256.Sum256([]byte(testKey))
			want := cty.ObjectVal(map[string]cty.Value{
				"path":   cty.StringVal(path),
				"sha256": cty.StringVal(hex.EncodeToString(sum[:])),
				"size":   cty.NumberIntVal(int64(len(testKey))),
				"mode":   cty.StringVal(formatMode(tt.want)),
			})
			if !out.RawEquals(want) {
				t.Errorf("outputs are %#v, want %#v", out, want)
			}
			if out.ContainsMarked() {
				t.Errorf("outputs are marked: %#v", out)
			}
			if strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, testKeyBody) {
				t.Errorf("the log holds the content:\n%s", logs)
			}
			if !strings.Contains(logs, hex.EncodeToString(sum[:])) {
				t.Errorf("the log does not hold the digest:\n%s", logs)
			}
		})
	}
}

func TestWriteOverwrite(t *testing.T) {
	tests := []struct {
		name    string
		oldMode os.FileMode
		mode    string
	}{
		{"world-readable file replaced by a private one", 0o644, "0600"},
		{"private file replaced by a readable one", 0o600, "0644"},
		{"read-only file", 0o400, "0400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cert.pem")
			if err := os.WriteFile(path, []byte("old content, longer than the new one ........"), tt.oldMode); err != nil {
				t.Fatal(err)
			}
			before := statT(t, path)
			// A reader that has the old file open keeps reading the old
			// file: the new one replaces it, it is not written into it.
			reader, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()

			if _, _, err := applyWrite(t, map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal("new"),
				"mode":    cty.StringVal(tt.mode),
			}); err != nil {
				t.Fatal(err)
			}

			after := statT(t, path)
			if after.Ino == before.Ino {
				t.Errorf("inode %d did not change: the file was rewritten in place, not replaced", after.Ino)
			}
			if got, _ := os.ReadFile(path); string(got) != "new" {
				t.Errorf("file holds %q, want %q", got, "new")
			}
			if old, _ := io.ReadAll(reader); !strings.HasPrefix(string(old), "old content") {
				t.Errorf("a reader of the old file read %q", old)
			}
			if m, _ := parseMode(tt.mode); os.FileMode(after.Mode&0o777) != m {
				t.Errorf("mode is %o, want %s", after.Mode&0o777, tt.mode)
			}
			wantOnly(t, dir, "cert.pem")
		})
	}
}

func TestWriteRefusesNonRegularTarget(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the path to write
		want  string
	}{
		{
			name: "symlink to a file",
			setup: func(t *testing.T, dir string) string {
				if err := os.WriteFile(filepath.Join(dir, "real"), []byte("untouched"), 0o644); err != nil {
					t.Fatal(err)
				}
				link := filepath.Join(dir, "link")
				if err := os.Symlink("real", link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			want: "symbolic link",
		},
		{
			name: "dangling symlink",
			setup: func(t *testing.T, dir string) string {
				link := filepath.Join(dir, "link")
				if err := os.Symlink(filepath.Join(dir, "nowhere"), link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			want: "symbolic link",
		},
		{
			name: "directory",
			setup: func(t *testing.T, dir string) string {
				sub := filepath.Join(dir, "sub")
				if err := os.Mkdir(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				return sub
			},
			want: "not a regular file",
		},
		{
			name: "named pipe",
			setup: func(t *testing.T, dir string) string {
				fifo := filepath.Join(dir, "fifo")
				if err := syscall.Mkfifo(fifo, 0o600); err != nil {
					t.Fatal(err)
				}
				return fifo
			},
			want: "not a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tt.setup(t, dir)
			before := dirNames(t, dir)
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal("new"),
			})

			wantValid(t, (*Write)(nil).Validate(cfg))
			env, _ := testEnv(t)
			msg := wantAttrErr(t, (*Write)(nil).CheckHost(context.Background(), env, cfg), "path")
			if !strings.Contains(msg, tt.want) {
				t.Errorf("CheckHost error %q does not say %q", msg, tt.want)
			}
			_, err := (*Write)(nil).Apply(context.Background(), env, cfg)
			wantErrContains(t, err, path, tt.want)

			if fi, err := os.Lstat(path); err != nil || fi.Mode().IsRegular() {
				t.Errorf("%s was replaced by a regular file (err %v)", path, err)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "real")); err == nil && string(got) != "untouched" {
				t.Errorf("the symlink's target now holds %q", got)
			}
			wantOnly(t, dir, before...)
		})
	}
}

func TestWriteMissingParent(t *testing.T) {
	tests := []struct {
		name string
		path func(dir string) string
		want string
	}{
		{"parent does not exist", func(dir string) string { return filepath.Join(dir, "missing", "key.pem") }, "does not exist"},
		{"parent is a file", func(dir string) string { return filepath.Join(dir, "file", "key.pem") }, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			path := tt.path(dir)
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal("x"),
			})
			wantValid(t, (*Write)(nil).Validate(cfg))
			env, _ := testEnv(t)
			msg := wantAttrErr(t, (*Write)(nil).CheckHost(context.Background(), env, cfg), "path")
			if !strings.Contains(msg, tt.want) {
				t.Errorf("CheckHost error %q does not say %q", msg, tt.want)
			}
			_, err := (*Write)(nil).Apply(context.Background(), env, cfg)
			wantErrContains(t, err, path)
			wantOnly(t, dir, "file")
		})
	}
}

func TestWriteValidate(t *testing.T) {
	dir := t.TempDir()
	path := cty.StringVal(filepath.Join(dir, "key.pem"))
	key := cty.StringVal(testKey).Mark("sensitive")
	unknownKey := cty.UnknownVal(cty.String).Mark("sensitive")
	tests := []struct {
		name     string
		vals     map[string]cty.Value
		wantPath string // "" for no error
		wantMsg  string
	}{
		{"plain content, default mode", map[string]cty.Value{"path": path, "content": cty.StringVal("x")}, "", ""},
		{"0000", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("0000")}, "", ""},
		{"00640 with extra leading zero", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("00640")}, "", ""},
		{"0999", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("0999")}, "mode", "octal"},
		{"rw-r--r--", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("rw-r--r--")}, "mode", "octal"},
		{"01777 sticky", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("01777")}, "mode", "octal"},
		{"4755 setuid", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("4755")}, "mode", "octal"},
		{"empty mode", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("")}, "mode", "octal"},
		{"0x1a4", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("0x1a4")}, "mode", "octal"},
		{"negative", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.StringVal("-600")}, "mode", "octal"},
		{"fraction from a number", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "mode": cty.NumberFloatVal(600.5)}, "mode", "octal"},
		{"sensitive 0644", map[string]cty.Value{"path": path, "content": key, "mode": cty.StringVal("0644")}, "mode", "others"},
		{"sensitive 0604", map[string]cty.Value{"path": path, "content": key, "mode": cty.StringVal("0604")}, "mode", "others"},
		{"sensitive 0601", map[string]cty.Value{"path": path, "content": key, "mode": cty.StringVal("0601")}, "mode", "others"},
		{"unknown sensitive content 0644", map[string]cty.Value{"path": path, "content": unknownKey, "mode": cty.StringVal("0644")}, "mode", "others"},
		{"sensitive 0640", map[string]cty.Value{"path": path, "content": key, "mode": cty.StringVal("0640")}, "", ""},
		{"sensitive default", map[string]cty.Value{"path": path, "content": key}, "", ""},
		{"unknown content and path", map[string]cty.Value{"path": cty.UnknownVal(cty.String), "content": unknownKey}, "", ""},
		{"unknown mode", map[string]cty.Value{"path": path, "content": key, "mode": cty.UnknownVal(cty.String)}, "", ""},
		{"unknown owner", map[string]cty.Value{"path": path, "content": key, "owner": cty.UnknownVal(cty.String)}, "", ""},
		{"empty path", map[string]cty.Value{"path": cty.StringVal(""), "content": cty.StringVal("x")}, "path", "empty"},
		{"path with trailing slash", map[string]cty.Value{"path": cty.StringVal(dir + "/"), "content": cty.StringVal("x")}, "path", "directory"},
		{"path /", map[string]cty.Value{"path": cty.StringVal("/"), "content": cty.StringVal("x")}, "path", "directory"},
		{"relative path in the working directory", map[string]cty.Value{"path": cty.StringVal("rotplan-test-key.pem"), "content": cty.StringVal("x")}, "", ""},
		{"unknown user", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "owner": cty.StringVal("rotplan-no-such-user")}, "owner", `no such user "rotplan-no-such-user"`},
		{"unknown group", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "group": cty.StringVal("rotplan-no-such-group")}, "group", `no such group "rotplan-no-such-group"`},
		{"empty owner", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "owner": cty.StringVal("")}, "owner", "empty"},
		{"uid -1", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "owner": cty.StringVal("4294967295")}, "owner", "not a valid id"},
		{"numeric ids", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "owner": cty.StringVal("0"), "group": cty.StringVal("12345")}, "", ""},
		{"root by name", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "owner": cty.StringVal("root"), "group": cty.StringVal("root")}, "", ""},
		{"trust_owner by id", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "trust_owner": cty.StringVal("4242")}, "", ""},
		{"trust_owner not a name", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "trust_owner": cty.StringVal("a:b")}, "trust_owner", "not a user name"},
		{"trust_owner unknown user", map[string]cty.Value{"path": path, "content": cty.StringVal("x"), "trust_owner": cty.StringVal("rotplan-no-such-user")}, "trust_owner", `no such user "rotplan-no-such-user"`},
	}
	// Whether a user or group exists is the host's to say: CheckHost's.
	host := map[string]bool{"unknown user": true, "unknown group": true, "trust_owner unknown user": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err, fromHost := validateThenCheck(t, (*Write)(nil), testConfig(t, (*Write)(nil).Spec(), tt.vals))
			if tt.wantPath == "" {
				wantValid(t, err)
				return
			}
			wantFrom(t, fromHost, host[tt.name])
			msg := wantAttrErr(t, err, tt.wantPath)
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q does not say %q", msg, tt.wantMsg)
			}
			if strings.Contains(msg, "PRIVATE KEY") || strings.Contains(msg, testKeyBody) {
				t.Errorf("error %q holds the content", msg)
			}
		})
	}
	wantOnly(t, dir)
}

func TestWriteParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"0600", 0o600, true},
		{"600", 0o600, true},
		{"0644", 0o644, true},
		{"0", 0, true},
		{"777", 0o777, true},
		{"0777", 0o777, true},
		{"1000", 0, false},
		{"01777", 0, false},
		{"0999", 0, false},
		{"0o600", 0, false},
		{"+600", 0, false},
		{" 600", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseMode(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseMode(%q) = %o, %v; want %o, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if !tt.ok {
				return
			}
			if f := formatMode(got); len(f) != 4 || f[0] != '0' {
				t.Errorf("formatMode(%o) = %q, want the 0600 form", got, f)
			} else if back, err := parseMode(f); err != nil || back != got {
				t.Errorf("formatMode(%o) = %q reads back as %o, %v", got, f, back, err)
			}
		})
	}
}

// TestWriteCreateTemp checks the file a write puts the content in before it is
// renamed: whatever the final mode and the umask, it grants nothing to group
// or others while its owner and group are not yet final.
func TestWriteCreateTemp(t *testing.T) {
	tests := []struct {
		name  string
		mode  os.FileMode
		umask int
		want  os.FileMode
	}{
		{"0644 permissive umask", 0o644, 0, 0o600},
		{"0640 permissive umask", 0o640, 0, 0o600},
		{"0777 permissive umask", 0o777, 0, 0o700},
		{"0600 default umask", 0o600, 0o022, 0o600},
		{"0444", 0o444, 0, 0o400},
		{"0044 group and other only", 0o044, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir() // before the umask, which may be 0777
			setUmask(t, tt.umask)
			env, _ := testEnv(t)
			d := mustOpenDir(t, dir)
			f, name, err := createTemp(env, d, "key.pem", tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()

			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&0o077 != 0 || fi.Mode() != tt.want {
				t.Errorf("temporary file has mode %v before any content, want %v", fi.Mode(), tt.want)
			}
			if fi.Size() != 0 {
				t.Errorf("temporary file is not empty: %d bytes", fi.Size())
			}
			if filepath.Dir(f.Name()) != dir {
				t.Errorf("temporary file %s is not in %s", f.Name(), dir)
			}
			if name != ".key.pem.rotplan-tmp" || filepath.Base(f.Name()) != name {
				t.Errorf("temporary file is named %q (%s)", name, f.Name())
			}
			// Even a mode without owner bits leaves a writable descriptor.
			if _, err := f.WriteString("content"); err != nil {
				t.Errorf("writing to the temporary file: %v", err)
			}

			// A second write of the same file while this one is under
			// way must not take its temporary file.
			if g, _, err := createTemp(env, d, "key.pem", tt.mode); err == nil {
				g.Close()
				t.Errorf("a second temporary file for key.pem was created while the first is open")
			}
		})
	}
}

// withDir adds to a write snapshot's expected keys the identity of the
// directory of its path, as Snapshot records it.
func withDir(t *testing.T, want map[string]string) map[string]string {
	t.Helper()
	st := statT(t, filepath.Dir(want["path"]))
	want["dir_dev"] = strconv.FormatUint(st.Dev, 10)
	want["dir_ino"] = strconv.FormatUint(st.Ino, 10)
	return want
}

// mustOpenDir opens dir as a step would, trusting no one but root and the
// test's user.
func mustOpenDir(t *testing.T, dir string) *stepDir {
	t.Helper()
	d, err := openStepDir(dir, dirTrust{uid: -1})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestWriteCreateTempLongName(t *testing.T) {
	dir := t.TempDir()
	base := strings.Repeat("k", 250)
	env, _ := testEnv(t)
	f, _, err := createTemp(env, mustOpenDir(t, dir), base, 0o600)
	if err != nil {
		t.Fatalf("createTemp with a 250-byte name: %v", err)
	}
	f.Close()
	// The write itself must work too, and remove what the first left.
	if _, _, err := applyWrite(t, map[string]cty.Value{
		"path":    cty.StringVal(filepath.Join(dir, base)),
		"content": cty.StringVal("x"),
	}); err != nil {
		t.Fatal(err)
	}
	wantOnly(t, dir, base)
}

func TestWriteOwner(t *testing.T) {
	requireRoot(t, "setting a file's owner and group to another user's")
	owner, group, uid, gid := testOwner(t)
	tests := []struct {
		name             string
		owner, group     cty.Value
		wantUID, wantGID int
	}{
		{"owner and group by name", cty.StringVal(owner), cty.StringVal(group), uid, gid},
		{"owner and group by id", cty.StringVal(strconv.Itoa(uid)), cty.StringVal(strconv.Itoa(gid)), uid, gid},
		{"group only", cty.NullVal(cty.String), cty.StringVal(group), 0, gid},
		{"owner only", cty.StringVal(owner), cty.NullVal(cty.String), uid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setUmask(t, 0o022)
			dir := t.TempDir()
			path := filepath.Join(dir, "key.pem")
			if _, _, err := applyWrite(t, map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal(testKey).Mark("sensitive"),
				"mode":    cty.StringVal("0640"),
				"owner":   tt.owner,
				"group":   tt.group,
			}); err != nil {
				t.Fatal(err)
			}
			st := statT(t, path)
			if int(st.Uid) != tt.wantUID || int(st.Gid) != tt.wantGID {
				t.Errorf("file is owned by %d:%d, want %d:%d", st.Uid, st.Gid, tt.wantUID, tt.wantGID)
			}
			if st.Mode&0o7777 != 0o640 {
				t.Errorf("mode is %o, want 640 (chown must not undo the chmod)", st.Mode&0o7777)
			}
			wantOnly(t, dir, "key.pem")
		})
	}
}

func TestWriteOwnerChangeNoted(t *testing.T) {
	requireRoot(t, "creating a file owned by another user")
	owner, _, uid, _ := testOwner(t)
	tests := []struct {
		name     string
		oldUID   int
		owner    cty.Value
		wantUID  int
		wantNote bool
	}{
		{"owner not given, old file another user's", uid, cty.NullVal(cty.String), 0, true},
		{"owner given, old file another user's", uid, cty.StringVal("root"), 0, false},
		{"owner given and changed on purpose", 0, cty.StringVal(owner), uid, false},
		{"owner not given, same owner", 0, cty.NullVal(cty.String), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cert.pem")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, tt.oldUID, -1); err != nil {
				t.Fatal(err)
			}
			_, logs, err := applyWrite(t, map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal("new"),
				"owner":   tt.owner,
			})
			if err != nil {
				t.Fatal(err)
			}
			// The old owner is never carried over to the new file.
			if st := statT(t, path); int(st.Uid) != tt.wantUID {
				t.Errorf("the new file is owned by uid %d, want %d", st.Uid, tt.wantUID)
			}
			if got := strings.Contains(logs, "replaced a file owned by another user"); got != tt.wantNote {
				t.Errorf("noted: %v, want %v; log:\n%s", got, tt.wantNote, logs)
			}
		})
	}
}

func TestWriteUnknownOwnerApply(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
		"path":    cty.StringVal(filepath.Join(dir, "key.pem")),
		"content": cty.StringVal("x"),
		"owner":   cty.StringVal("rotplan-no-such-user"),
	})
	env, _ := testEnv(t)
	_, err := (*Write)(nil).Apply(context.Background(), env, cfg)
	wantAttrErr(t, err, "owner")
	wantOnly(t, dir)
}

// TestWriteFailureLeavesNothing makes the write of the content fail half way
// (a file size limit turns write(2) into EFBIG) and checks that the target
// is untouched and the temporary file is gone.
func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := statT(t, path)

	d := mustOpenDir(t, dir)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// The limit is process-wide: keep it for as short as possible.
	limit := old
	limit.Cur = 16
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Skipf("cannot lower the file size limit: %v", err)
	}
	err := writeFileAtomic(&Env{Log: hclog.NewNullLogger()}, d, "key.pem", []byte(strings.Repeat("k", 4096)), 0o600, -1, -1)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatalf("restoring the file size limit: %v", err)
	}

	wantErrContains(t, err, path, "file too large")
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("target holds %q after a failed write", got)
	}
	if after := statT(t, path); after.Ino != before.Ino {
		t.Errorf("target was replaced by a failed write")
	}
	wantOnly(t, dir, "key.pem")
}

// wantIntentHidesContent fails the test if any intent value holds the
// content, or the base64 line of the test key, which is what would leak.
func wantIntentHidesContent(t *testing.T, intent map[string]string, content string) {
	t.Helper()
	for k, v := range intent {
		if strings.Contains(v, content) || strings.Contains(v, testKeyBody) {
			t.Errorf("intent %q holds the content", k)
		}
	}
}

// writeDone calls Done and fails the test on an error.
func writeDone(t *testing.T, intent map[string]string) (cty.Value, bool) {
	t.Helper()
	env, _ := testEnv(t)
	out, ok, err := (*Write)(nil).Done(context.Background(), env, intent)
	if err != nil {
		t.Fatalf("Done: %v", err)
	}
	return out, ok
}

func TestWriteResume(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, path string) // after Apply; nil: none
		want   bool
	}{
		{"as written", nil, true},
		{"content changed", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.ToUpper(testKey)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"content cut short", func(t *testing.T, path string) {
			if err := os.Truncate(path, 10); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"mode changed", func(t *testing.T, path string) {
			if err := os.Chmod(path, 0o640); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"setgid added", func(t *testing.T, path string) {
			if err := os.Chmod(path, 0o600|os.ModeSetgid); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"parent replaced by a file", func(t *testing.T, path string) {
			dir := filepath.Dir(path)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		// The link points to an identical file, so only the link itself
		// can make Done say no.
		{"replaced by a symlink to the same content", func(t *testing.T, path string) {
			twin := path + ".twin"
			if err := os.Rename(path, twin); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(twin, path); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"replaced by a directory", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setUmask(t, 0o022)
			path := filepath.Join(t.TempDir(), "tls", "key.pem")
			if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal(testKey).Mark("sensitive"),
			})
			intent, err := (*Write)(nil).Intent(context.Background(), nil, cfg)
			if err != nil {
				t.Fatalf("Intent: %v", err)
			}
			wantIntentHidesContent(t, intent, testKey)
			if _, ok := intent["uid"]; ok {
				t.Errorf("intent has a uid although the block sets no owner: %v", intent)
			}
			if _, ok := writeDone(t, intent); ok {
				t.Fatal("Done before Apply: got true, want false")
			}

			env, _ := testEnv(t)
			applied, err := (*Write)(nil).Apply(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if intent["sha256"] != applied.GetAttr("sha256").AsString() || intent["mode"] != applied.GetAttr("mode").AsString() {
				t.Errorf("intent %v does not describe the outputs %#v", intent, applied)
			}
			if tt.change != nil {
				tt.change(t, path)
			}

			out, ok := writeDone(t, intent)
			if ok != tt.want {
				t.Fatalf("Done: got %v, want %v", ok, tt.want)
			}
			if ok {
				wantOutputs(t, (*Write)(nil), out)
				if !out.RawEquals(applied) {
					t.Errorf("Done returned %#v, Apply %#v", out, applied)
				}
			} else if out != cty.NilVal {
				t.Errorf("Done returned outputs %#v with false", out)
			}
		})
	}
}

func TestWriteResumeOwner(t *testing.T) {
	requireRoot(t, "giving a file to another user and group")
	owner, group, uid, gid := testOwner(t)
	tests := []struct {
		name             string
		owner, group     cty.Value
		chownTo          [2]int // after Apply; -1 leaves one as it is
		wantUID, wantGID string // in the intent; "" for absent
		want             bool
	}{
		{"owner and group as written", cty.StringVal(owner), cty.StringVal(group), [2]int{-1, -1}, strconv.Itoa(uid), strconv.Itoa(gid), true},
		{"owner changed back to root", cty.StringVal(owner), cty.StringVal(group), [2]int{0, -1}, strconv.Itoa(uid), strconv.Itoa(gid), false},
		{"group changed back to root", cty.StringVal(owner), cty.StringVal(group), [2]int{-1, 0}, strconv.Itoa(uid), strconv.Itoa(gid), false},
		{"group only, owner not checked", cty.NullVal(cty.String), cty.StringVal(group), [2]int{uid, -1}, "", strconv.Itoa(gid), true},
		{"group only, group changed", cty.NullVal(cty.String), cty.StringVal(group), [2]int{-1, 0}, "", strconv.Itoa(gid), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal(testKey).Mark("sensitive"),
				"mode":    cty.StringVal("0640"),
				"owner":   tt.owner,
				"group":   tt.group,
			})
			intent, err := (*Write)(nil).Intent(context.Background(), nil, cfg)
			if err != nil {
				t.Fatalf("Intent: %v", err)
			}
			if intent["uid"] != tt.wantUID || intent["gid"] != tt.wantGID {
				t.Errorf("intent has uid %q gid %q, want %q %q", intent["uid"], intent["gid"], tt.wantUID, tt.wantGID)
			}
			env, _ := testEnv(t)
			applied, err := (*Write)(nil).Apply(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(path, tt.chownTo[0], tt.chownTo[1]); err != nil {
				t.Fatal(err)
			}
			out, ok := writeDone(t, intent)
			if ok != tt.want {
				t.Fatalf("Done: got %v, want %v", ok, tt.want)
			}
			if ok && !out.RawEquals(applied) {
				t.Errorf("Done returned %#v, Apply %#v", out, applied)
			}
		})
	}
}

func TestWriteResumeOversized(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge")
	size := int64(maxResumeRead + 1)
	// Sparse: the size is there without the disk space.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	intent := map[string]string{
		"path": path, "sha256": strings.Repeat("0", 64),
		"size": strconv.FormatInt(size, 10), "mode": "0600",
	}
	if _, ok := writeDone(t, intent); ok {
		t.Error("Done: got true for a file over the read limit")
	}
}

func TestWriteIntentErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		vals     map[string]cty.Value
		wantPath string // "" for the internal error of an unknown value
	}{
		{"unknown content", map[string]cty.Value{"path": cty.StringVal(filepath.Join(dir, "f")), "content": cty.UnknownVal(cty.String)}, ""},
		{"unknown path", map[string]cty.Value{"path": cty.UnknownVal(cty.String), "content": cty.StringVal("x")}, ""},
		{"bad mode", map[string]cty.Value{"path": cty.StringVal(filepath.Join(dir, "f")), "content": cty.StringVal("x"), "mode": cty.StringVal("0999")}, "mode"},
		{"sensitive content readable by others", map[string]cty.Value{"path": cty.StringVal(filepath.Join(dir, "f")), "content": cty.StringVal("x").Mark("sensitive"), "mode": cty.StringVal("0644")}, "mode"},
		{"no such owner", map[string]cty.Value{"path": cty.StringVal(filepath.Join(dir, "f")), "content": cty.StringVal("x"), "owner": cty.StringVal("rotplan-no-such-user")}, "owner"},
		{"directory path", map[string]cty.Value{"path": cty.StringVal(dir + "/"), "content": cty.StringVal("x")}, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			intent, err := (*Write)(nil).Intent(context.Background(), nil, testConfig(t, (*Write)(nil).Spec(), tt.vals))
			if intent != nil {
				t.Errorf("got an intent %v along with the error", intent)
			}
			if tt.wantPath == "" {
				wantErrContains(t, err, "unknown")
				return
			}
			wantAttrErr(t, err, tt.wantPath)
		})
	}
}

func TestWriteDoneMalformedIntent(t *testing.T) {
	good := map[string]string{
		"path": filepath.Join(t.TempDir(), "f"), "sha256": strings.Repeat("ab", 32),
		"size": "3", "mode": "0600",
	}
	with := func(key, val string) map[string]string { return withField(good, key, val) }
	tests := []struct {
		name    string
		intent  map[string]string
		wantErr string
	}{
		{"nil", nil, `no "path"`},
		{"no path", with("path", "<delete>"), `no "path"`},
		{"empty path", with("path", ""), "path is empty"},
		{"no sha256", with("sha256", "<delete>"), `no "sha256"`},
		{"short sha256", with("sha256", "abcd"), "not a SHA-256"},
		{"upper-case sha256", with("sha256", strings.Repeat("AB", 32)), "not a SHA-256"},
		{"no size", with("size", "<delete>"), `no "size"`},
		{"negative size", with("size", "-1"), "not a byte count"},
		{"signed size", with("size", "+3"), "not a byte count"},
		{"size not a number", with("size", "3k"), "not a byte count"},
		{"no mode", with("mode", "<delete>"), `no "mode"`},
		{"mode out of range", with("mode", "4755"), "not a file mode"},
		{"uid not a number", with("uid", "root"), "not an id"},
		{"gid too large", with("gid", "4294967295"), "not a valid id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv(t)
			out, ok, err := (*Write)(nil).Done(context.Background(), env, tt.intent)
			wantErrContains(t, err, tt.wantErr)
			if ok || out != cty.NilVal {
				t.Errorf("Done returned %#v, %v with an error", out, ok)
			}
		})
	}
}

func TestWriteSummary(t *testing.T) {
	ty := OutputType((*Write)(nil))
	digest := strings.Repeat("ab", 32)
	full := cty.ObjectVal(map[string]cty.Value{
		"path": cty.StringVal("/etc/vault/tls/key.pem"), "sha256": cty.StringVal(digest),
		"size": cty.NumberIntVal(3), "mode": cty.StringVal("0600"),
	})
	tests := []struct {
		name    string
		outputs cty.Value
		want    []Fact
	}{
		{"all known", full, []Fact{{"path", "/etc/vault/tls/key.pem"}, {"sha256", digest}, {"mode", "0600"}}},
		{"null attributes", cty.ObjectVal(map[string]cty.Value{
			"path": cty.StringVal("/k"), "sha256": cty.NullVal(cty.String),
			"size": cty.NullVal(cty.Number), "mode": cty.UnknownVal(cty.String),
		}), []Fact{{"path", "/k"}}},
		{"marked attribute", cty.ObjectVal(map[string]cty.Value{
			"path": cty.StringVal("/k"), "sha256": cty.StringVal(digest).Mark("sensitive"),
			"size": cty.NumberIntVal(3), "mode": cty.StringVal("0600"),
		}), []Fact{{"path", "/k"}, {"mode", "0600"}}},
		{"null outputs", cty.NullVal(ty), nil},
		{"unknown outputs", cty.UnknownVal(ty), nil},
		{"no outputs", cty.NilVal, nil},
		{"not an object", cty.StringVal("x"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFacts(t, (*Write)(nil).Summary(tt.outputs), tt.want)
		})
	}
}

// oldKey is the private key a rotation replaces: what a snapshot keeps a
// copy of, and what must never show in a snapshot, an error or a log line.
var oldKey, oldKeyBody = makeTestKey()

// rollbackEnv returns a test Env whose run keeps backups, in a directory
// made 0700 as the engine makes it, and that directory.
func rollbackEnv(t *testing.T) (*Env, *strings.Builder, string) {
	t.Helper()
	env, logs := testEnv(t)
	env.Backups = filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(env.Backups, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(env.Backups, 0o700); err != nil {
		t.Fatal(err)
	}
	return env, logs, env.Backups
}

// wantNoKey fails the test if text holds any of the test keys, or anything
// that looks like PEM key material.
func wantNoKey(t *testing.T, what, text string) {
	t.Helper()
	for _, secret := range []string{"PRIVATE KEY", testKeyBody, oldKeyBody} {
		if strings.Contains(text, secret) {
			t.Errorf("%s holds key material (%q):\n%s", what, secret[:min(len(secret), 16)], text)
		}
	}
}

// wantSnapshotHidesContent fails the test if a snapshot value holds key
// material.
func wantSnapshotHidesContent(t *testing.T, snap map[string]string) {
	t.Helper()
	for k, v := range snap {
		wantNoKey(t, "snapshot "+k, v)
	}
}

// fileState is what a rollback must put back: content, mode with the
// setuid, setgid and sticky bits, owner and group.
type fileState struct {
	content  string
	mode     os.FileMode
	uid, gid int
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, _ := fileOwner(fi)
	return fileState{string(b), fi.Mode(), uid, gid}
}

func TestWriteRollback(t *testing.T) {
	const none = "\x00none" // no file before the write
	tests := []struct {
		name       string
		old        string
		oldMode    os.FileMode
		otherOwner bool // the old file belongs to nobody (needs root)
	}{
		{"certificate replaced", "-----BEGIN CERTIFICATE-----\nold\n-----END CERTIFICATE-----\n", 0o644, false},
		{"private key replaced", oldKey, 0o600, false},
		{"empty file replaced", "", 0o640, false},
		{"setgid file keeps its setgid bit", "old", 0o640 | os.ModeSetgid, false},
		{"key of another user replaced", oldKey, 0o640, true},
		{"file that did not exist removed", none, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.otherOwner {
				requireRoot(t, "giving the old file to another user")
			}
			setUmask(t, 0o022)
			dir := t.TempDir()
			path := filepath.Join(dir, "server.key")
			var before fileState
			if tt.old != none {
				if err := os.WriteFile(path, []byte(tt.old), 0o600); err != nil {
					t.Fatal(err)
				}
				if tt.otherOwner {
					_, _, uid, gid := testOwner(t)
					if err := os.Lchown(path, uid, gid); err != nil {
						t.Fatal(err)
					}
				}
				// After the chown, which clears setgid.
				if err := os.Chmod(path, tt.oldMode); err != nil {
					t.Fatal(err)
				}
				before = stateOf(t, path)
			}

			env, logs, backups := rollbackEnv(t)
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path":    cty.StringVal(path),
				"content": cty.StringVal(testKey).Mark("sensitive"),
			})
			snap, err := (*Write)(nil).Snapshot(context.Background(), env, cfg)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			wantSnapshotHidesContent(t, snap)

			if tt.old == none {
				want := withDir(t, map[string]string{"existed": "false", "path": path})
				if !maps.Equal(snap, want) {
					t.Errorf("snapshot %v, want %v", snap, want)
				}
				wantOnly(t, backups)
			} else {
				want := map[string]string{
					"existed": "true",
					"path":    path,
					"backup":  filepath.Join(backups, "server.key"),
					"sha256":  contentDigest([]byte(tt.old)),
					"mode":    chmodMode(tt.oldMode),
					"uid":     strconv.Itoa(before.uid),
					"gid":     strconv.Itoa(before.gid),
				}
				if want = withDir(t, want); !maps.Equal(snap, want) {
					t.Errorf("snapshot %v,\nwant %v", snap, want)
				}
				wantOnly(t, backups, "server.key")
				backup := stateOf(t, snap["backup"])
				if backup.content != tt.old {
					t.Error("the backup does not hold the old content")
				}
				if backup.mode != 0o600 || backup.uid != os.Geteuid() {
					t.Errorf("the backup has mode %v and uid %d, want -rw------- and %d", backup.mode, backup.uid, os.Geteuid())
				}
			}
			if fi, err := os.Stat(backups); err != nil || fi.Mode() != os.ModeDir|0o700 {
				t.Errorf("the backup directory is %v (%v), want drwx------ as it was", fi.Mode(), err)
			}
			if tt.old != none && stateOf(t, path) != before {
				t.Error("Snapshot changed the file")
			}

			if _, err := (*Write)(nil).Apply(context.Background(), env, cfg); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := stateOf(t, path); got.content != testKey {
				t.Fatal("Apply did not write the new key")
			}

			// Twice: a rollback interrupted part way runs again.
			for i := range 2 {
				if err := (*Write)(nil).Rollback(context.Background(), env, cfg, cty.NilVal, snap); err != nil {
					t.Fatalf("Rollback (call %d): %v", i+1, err)
				}
			}

			if tt.old == none {
				if _, err := os.Lstat(path); !os.IsNotExist(err) {
					t.Errorf("the file the write created is still there (%v)", err)
				}
				wantOnly(t, dir)
			} else {
				if got := stateOf(t, path); got != before {
					t.Errorf("after rollback: mode %v owner %d:%d content restored %v; want mode %v owner %d:%d",
						got.mode, got.uid, got.gid, got.content == tt.old, before.mode, before.uid, before.gid)
				}
				wantOnly(t, dir, "server.key")
				wantOnly(t, backups, "server.key") // kept: the engine decides when it goes
				if !strings.Contains(logs.String(), "restored the file the write replaced") || !strings.Contains(logs.String(), snap["sha256"]) {
					t.Errorf("the log does not say what was restored:\n%s", logs)
				}
			}
			wantNoKey(t, "the log", logs.String())
		})
	}
}

func TestWriteSnapshotBackup(t *testing.T) {
	tests := []struct {
		name  string
		umask int
	}{
		{"default umask", 0o022},
		{"umask that takes the owner's bits", 0o277},
		{"umask that takes nothing", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _, backups := rollbackEnv(t)
			// Two files of the same name, the first backed up twice: every
			// copy gets a name of its own.
			var paths []string
			for _, sub := range []string{"a", "b"} {
				dir := filepath.Join(t.TempDir(), sub)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(dir, "server.key")
				if err := os.WriteFile(p, []byte(sub), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			paths = append(paths, paths[0])
			setUmask(t, tt.umask)
			wantNames := []string{"server.key", "server.key.1", "server.key.2"}
			wantContent := []string{"a", "b", "a"}
			for i, p := range paths {
				cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
					"path": cty.StringVal(p), "content": cty.StringVal("new"),
				})
				snap, err := (*Write)(nil).Snapshot(context.Background(), env, cfg)
				if err != nil {
					t.Fatalf("Snapshot of %s: %v", p, err)
				}
				if want := filepath.Join(backups, wantNames[i]); snap["backup"] != want {
					t.Errorf("backup %s, want %s", snap["backup"], want)
				}
				got := stateOf(t, snap["backup"])
				if got.content != wantContent[i] || got.mode != 0o600 {
					t.Errorf("backup %s holds %q with mode %v, want %q with -rw-------", snap["backup"], got.content, got.mode, wantContent[i])
				}
			}
			wantOnly(t, backups, wantNames...)
		})
	}
}

func TestWriteSnapshotErrors(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, path string) // nil: nothing at path
		noBackups bool
		want      []string // nil: no error
	}{
		{"no backups, file there", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(oldKey), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, []string{"keeps no backups", "rolling back this write needs a copy"}},
		{"no backups, no file", nil, true, nil},
		{"symlink", func(t *testing.T, path string) {
			if err := os.Symlink("/etc/hostname", path); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"symbolic link"}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"not a regular file", "a directory"}},
		{"named pipe", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false, []string{"not a regular file", "a named pipe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, logs, backups := rollbackEnv(t)
			if tt.noBackups {
				env.Backups = ""
			}
			path := filepath.Join(t.TempDir(), "server.key")
			if tt.setup != nil {
				tt.setup(t, path)
			}
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path": cty.StringVal(path), "content": cty.StringVal(testKey).Mark("sensitive"),
			})
			snap, err := (*Write)(nil).Snapshot(context.Background(), env, cfg)
			wantOnly(t, backups)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				if want := withDir(t, map[string]string{"existed": "false", "path": path}); !maps.Equal(snap, want) {
					t.Errorf("snapshot %v, want %v", snap, want)
				}
				return
			}
			wantErrContains(t, err, append([]string{path}, tt.want...)...)
			wantNoKey(t, "the error", err.Error())
			wantNoKey(t, "the log", logs.String())
			if snap != nil {
				t.Errorf("got a snapshot %v along with the error", snap)
			}
		})
	}
}

// TestWriteRollbackBackupNotTrusted damages the copy a snapshot kept: the
// rollback must refuse to install it, leave the file as the write left it,
// and say how to restore it from another copy, without quoting any content.
func TestWriteRollbackBackupNotTrusted(t *testing.T) {
	damagedKey, damagedKeyBody := makeTestKey()
	tests := []struct {
		name   string
		damage func(t *testing.T, backup string)
		want   string
	}{
		{"content changed", func(t *testing.T, backup string) {
			if err := os.WriteFile(backup, []byte(damagedKey), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is damaged"},
		{"cut short", func(t *testing.T, backup string) {
			if err := os.Truncate(backup, 20); err != nil {
				t.Fatal(err)
			}
		}, "is damaged"},
		{"removed", func(t *testing.T, backup string) {
			if err := os.Remove(backup); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
		{"replaced by a symlink", func(t *testing.T, backup string) {
			twin := backup + ".twin"
			if err := os.Rename(backup, twin); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(twin, backup); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "server.key")
			if err := os.WriteFile(path, []byte(oldKey), 0o600); err != nil {
				t.Fatal(err)
			}
			env, logs, _ := rollbackEnv(t)
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path": cty.StringVal(path), "content": cty.StringVal(testKey).Mark("sensitive"),
			})
			snap, err := (*Write)(nil).Snapshot(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (*Write)(nil).Apply(context.Background(), env, cfg); err != nil {
				t.Fatal(err)
			}
			applied := stateOf(t, path)
			tt.damage(t, snap["backup"])

			err = (*Write)(nil).Rollback(context.Background(), env, cfg, cty.NilVal, snap)
			byHand := fmt.Sprintf("restore %s by hand from a copy you trust: install -m 0600 -o %d -g %d COPY %s",
				path, os.Geteuid(), os.Getegid(), path)
			wantErrContains(t, err, tt.want, byHand)
			for _, secret := range []string{damagedKeyBody, testKeyBody, oldKeyBody} {
				if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("the error or the log holds key material: %v", err)
				}
			}
			if stateOf(t, path) != applied {
				t.Error("a rollback from an untrusted backup changed the file")
			}
		})
	}
}

func TestWriteRollbackTargetChanged(t *testing.T) {
	tests := []struct {
		name    string
		existed bool
		change  func(t *testing.T, path string) // after Apply
		want    []string
	}{
		{"replaced by a directory", true, func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"not a regular file", "move it aside, then restore PATH by hand: install -m 0640 -o UID -g GID BACKUP PATH"}},
		{"replaced by a symlink", true, func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/hostname", path); err != nil {
				t.Fatal(err)
			}
		}, []string{"symbolic link", "move it aside, then restore PATH by hand: install -m 0640"}},
		{"parent directory gone", true, func(t *testing.T, path string) {
			if err := os.RemoveAll(filepath.Dir(path)); err != nil {
				t.Fatal(err)
			}
		}, []string{"no such file or directory", "; restore PATH by hand: install -m 0640 -o UID -g GID BACKUP PATH"}},
		{"created, now a directory", false, func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"did not exist before", "it is now a directory", "refusing to remove it", "by hand", "rm PATH"}},
		{"created, now a symlink", false, func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/hostname", path); err != nil {
				t.Fatal(err)
			}
		}, []string{"it is now a symbolic link", "refusing to remove it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "server.key")
			if tt.existed {
				if err := os.WriteFile(path, []byte(oldKey), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, 0o640); err != nil {
					t.Fatal(err)
				}
			}
			env, logs, _ := rollbackEnv(t)
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path": cty.StringVal(path), "content": cty.StringVal(testKey).Mark("sensitive"),
			})
			snap, err := (*Write)(nil).Snapshot(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (*Write)(nil).Apply(context.Background(), env, cfg); err != nil {
				t.Fatal(err)
			}
			tt.change(t, path)
			var before []string
			_, dirErr := os.Stat(dir)
			if dirErr == nil {
				before = dirNames(t, dir)
			}

			err = (*Write)(nil).Rollback(context.Background(), env, cfg, cty.NilVal, snap)
			r := strings.NewReplacer("PATH", path, "BACKUP", snap["backup"],
				"UID", strconv.Itoa(os.Geteuid()), "GID", strconv.Itoa(os.Getegid()))
			var want []string
			for _, w := range tt.want {
				want = append(want, r.Replace(w))
			}
			wantErrContains(t, err, want...)
			wantNoKey(t, "the error", err.Error())
			wantNoKey(t, "the log", logs.String())
			if dirErr != nil {
				return
			}
			if _, err := os.Lstat(path); err != nil {
				t.Errorf("the rollback removed what it refused to replace: %v", err)
			}
			wantOnly(t, dir, before...)
		})
	}
}

func TestWriteRollbackMalformedSnapshot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.key")
	if err := os.WriteFile(path, []byte("current"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"existed": "true", "path": path, "backup": filepath.Join(dir, "backup"),
		"sha256": strings.Repeat("ab", 32), "mode": "0600", "uid": "0", "gid": "0",
	}
	with := func(key, val string) map[string]string { return withField(good, key, val) }
	tests := []struct {
		name     string
		snapshot map[string]string
		wantErr  string
	}{
		{"nil", nil, `no "path"`},
		{"empty path", with("path", ""), "path is empty"},
		{"no existed", with("existed", "<delete>"), `no "existed"`},
		{"existed yes", with("existed", "yes"), `neither "true" nor "false"`},
		{"no backup", with("backup", "<delete>"), `no "backup"`},
		{"relative backup", with("backup", "backups/server.key"), "not an absolute path"},
		{"no sha256", with("sha256", "<delete>"), `no "sha256"`},
		{"short sha256", with("sha256", "abcd"), "not a SHA-256"},
		{"no mode", with("mode", "<delete>"), `no "mode"`},
		{"mode not octal", with("mode", "0999"), "not a file mode"},
		{"mode too large", with("mode", "10000"), "not a file mode"},
		{"mode signed", with("mode", "+644"), "not a file mode"},
		{"uid unset", with("uid", "-1"), "not an id"},
		{"uid a name", with("uid", "root"), "not an id"},
		{"no gid", with("gid", "<delete>"), `no "gid"`},
		{"gid too large", with("gid", "4294967295"), "not a valid id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _, _ := rollbackEnv(t)
			err := (*Write)(nil).Rollback(context.Background(), env, Config{}, cty.NilVal, tt.snapshot)
			wantErrContains(t, err, "write: rolling back", tt.wantErr)
			if got, _ := os.ReadFile(path); string(got) != "current" {
				t.Errorf("a malformed snapshot changed the file: it holds %q", got)
			}
		})
	}
}

func TestChmodMode(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		want string
	}{
		{0o600, "0600"},
		{0o644, "0644"},
		{0, "0000"},
		{0o640 | os.ModeSetgid, "2640"},
		{0o755 | os.ModeSetuid, "4755"},
		{0o777 | os.ModeSticky, "1777"},
		{0o750 | os.ModeSetuid | os.ModeSetgid | os.ModeSticky, "7750"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := chmodMode(tt.mode); got != tt.want {
				t.Errorf("chmodMode(%v) = %q, want %q", tt.mode, got, tt.want)
			}
			if tt.mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) == 0 && chmodMode(tt.mode) != formatMode(tt.mode) {
				t.Errorf("chmodMode and formatMode differ on a plain mode %v", tt.mode)
			}
			if back, err := parseChmodMode(tt.want); err != nil || back != tt.mode {
				t.Errorf("parseChmodMode(%q) = %v, %v; want %v", tt.want, back, err, tt.mode)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/etc/vault/tls/server.key", "/etc/vault/tls/server.key"},
		{"pki-prod", "pki-prod"},
		{"/srv/my certs/a.pem", "'/srv/my certs/a.pem'"},
		{"/srv/$HOME/a.pem", "'/srv/$HOME/a.pem'"},
		{"it's", `'it'\''s'`},
		{"", "''"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := command.ShellWord(tt.in); got != tt.want {
				t.Errorf("command.ShellWord(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// TestWriteCommitFails: when Commit fails (the journal could not make the
// step's start durable), the write gives up before the rename: the target
// is untouched and no temporary file is left. Commit comes after the
// content is flushed.
func TestWriteCommitFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := statT(t, path)
	var temps []string
	env := (&Env{Log: hclog.NewNullLogger()}).WithCommit(func() error {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "key.pem" {
				b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
				temps = append(temps, e.Name()+"="+string(b))
			}
		}
		return errors.New("the journal failed")
	})
	err := writeFileAtomic(env, mustOpenDir(t, filepath.Dir(path)), filepath.Base(path), []byte("new"), 0o600, -1, -1)
	wantErrContains(t, err, "the journal failed")
	if len(temps) != 1 || !strings.HasSuffix(temps[0], "=new") {
		t.Errorf("at Commit the directory held %v besides the target; want the filled temporary file", temps)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("target holds %q after a failed commit", got)
	}
	if after := statT(t, path); after.Ino != before.Ino {
		t.Errorf("target was replaced after a failed commit")
	}
	wantOnly(t, dir, "key.pem")
}

// withField is a copy of m with key set to val, or deleted when val is
// "<delete>": the journaled maps the parsing tests spoil one field at a time.
func withField(m map[string]string, key, val string) map[string]string {
	m = maps.Clone(m)
	if val == "<delete>" {
		delete(m, key)
	} else {
		m[key] = val
	}
	return m
}

// TestWriteLeavesFileInPlace: a file that already has the content, mode
// and owner is left alone (same inode), and Apply says it changed nothing;
// one that differs in any of them is replaced.
func TestWriteLeavesFileInPlace(t *testing.T) {
	tests := []struct {
		name      string
		old       string
		oldMode   os.FileMode
		unchanged bool
	}{
		{"same content and mode", "same\n", 0o644, true},
		{"other content", "other\n", 0o644, false},
		{"other mode", "same\n", 0o600, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f.txt")
			if err := os.WriteFile(path, []byte(tt.old), tt.oldMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.oldMode); err != nil {
				t.Fatal(err)
			}
			before := statT(t, path)
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{
				"path": cty.StringVal(path), "content": cty.StringVal("same\n"), "mode": cty.StringVal("0644"),
			})
			env, _ := testEnv(t)
			if _, err := (*Write)(nil).Apply(context.Background(), env, cfg); err != nil {
				t.Fatal(err)
			}
			kept := statT(t, path).Ino == before.Ino
			if kept != tt.unchanged {
				t.Errorf("file kept in place: %v, want %v", kept, tt.unchanged)
			}
			if said := env.NoChangeReason() != ""; said != tt.unchanged {
				t.Errorf("Apply said it changed nothing: %v (%q), want %v", said, env.NoChangeReason(), tt.unchanged)
			}
			if got, _ := os.ReadFile(path); string(got) != "same\n" {
				t.Errorf("file holds %q", got)
			}
		})
	}
}
