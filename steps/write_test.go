package steps

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"
)

// testKey is a real private key, made when the tests start so no key
// material is kept in the repository; testKeyBody is its base64 line, the
// text that would show if it leaked.
var testKey, testKeyBody = func() (string, string) {
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
}()

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

			msg := wantAttrErr(t, (*Write)(nil).Validate(cfg), "path")
			if !strings.Contains(msg, tt.want) {
				t.Errorf("Validate error %q does not say %q", msg, tt.want)
			}
			env, _ := testEnv(t)
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
			msg := wantAttrErr(t, (*Write)(nil).Validate(cfg), "path")
			if !strings.Contains(msg, tt.want) {
				t.Errorf("Validate error %q does not say %q", msg, tt.want)
			}
			env, _ := testEnv(t)
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (*Write)(nil).Validate(testConfig(t, (*Write)(nil).Spec(), tt.vals))
			if tt.wantPath == "" {
				wantValid(t, err)
				return
			}
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
			f, err := createTemp(dir, "key.pem", tt.mode)
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
			if base := filepath.Base(f.Name()); !strings.HasPrefix(base, ".key.pem.rotplan-") {
				t.Errorf("temporary file is named %q", base)
			}
			// Even a mode without owner bits leaves a writable descriptor.
			if _, err := f.WriteString("content"); err != nil {
				t.Errorf("writing to the temporary file: %v", err)
			}

			g, err := createTemp(dir, "key.pem", tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if g.Name() == f.Name() {
				t.Errorf("two temporary files share the name %s", f.Name())
			}
		})
	}
}

func TestWriteCreateTempLongName(t *testing.T) {
	dir := t.TempDir()
	base := strings.Repeat("k", 250)
	f, err := createTemp(dir, base, 0o600)
	if err != nil {
		t.Fatalf("createTemp with a 250-byte name: %v", err)
	}
	f.Close()
	// The write itself must work too.
	if _, _, err := applyWrite(t, map[string]cty.Value{
		"path":    cty.StringVal(filepath.Join(dir, base)),
		"content": cty.StringVal("x"),
	}); err != nil {
		t.Fatal(err)
	}
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
	err := writeFileAtomic(hclog.NewNullLogger(), path, []byte(strings.Repeat("k", 4096)), 0o600, -1, -1)
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
			intent, err := (*Write)(nil).Intent(cfg)
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
			intent, err := (*Write)(nil).Intent(cfg)
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
			intent, err := (*Write)(nil).Intent(testConfig(t, (*Write)(nil).Spec(), tt.vals))
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
	with := func(key, val string) map[string]string {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		if val == "<delete>" {
			delete(m, key)
		} else {
			m[key] = val
		}
		return m
	}
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
