package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/zclconf/go-cty/cty"
)

func TestHostSettingsCheck(t *testing.T) {
	spec := hostSettings{}.Spec()
	base := map[string]cty.Value{
		"address":       cty.StringVal("10.0.0.1"),
		"known_hosts":   cty.StringVal("/etc/ssh/ssh_known_hosts"),
		"identity_file": cty.StringVal("/root/.ssh/id_ed25519"),
	}
	with := func(kv ...any) map[string]cty.Value {
		m := map[string]cty.Value{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(cty.Value)
		}
		return m
	}
	tests := []struct {
		name string
		vals map[string]cty.Value
		path string // the argument the error is on; "" for none
	}{
		{"valid", base, ""},
		{"agent alone", with("identity_file", cty.NullVal(cty.String), "agent", cty.True), ""},
		{"no way to log in", with("identity_file", cty.NullVal(cty.String)), "identity_file"},
		{"port 0", with("port", cty.NumberIntVal(0)), "port"},
		{"port too large", with("port", cty.NumberIntVal(65536)), "port"},
		{"relative known_hosts", with("known_hosts", cty.StringVal("known_hosts")), "known_hosts"},
		{"relative identity", with("identity_file", cty.StringVal("id")), "identity_file"},
		{"empty address", with("address", cty.StringVal("")), "address"},
		{"empty user", with("user", cty.StringVal("")), "user"},
		{"timeouts", with("connect_timeout", cty.StringVal("3s"), "keepalive_interval", cty.StringVal("1s"), "keepalive_count_max", cty.NumberIntVal(2)), ""},
		{"connect_timeout not a duration", with("connect_timeout", cty.StringVal("3")), "connect_timeout"},
		{"keepalive_interval 0", with("keepalive_interval", cty.StringVal("0s")), "keepalive_interval"},
		{"keepalive_count_max 0", with("keepalive_count_max", cty.NumberIntVal(0)), "keepalive_count_max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := hostSettings{}.Check(testConfig(t, spec, tt.vals))
			if tt.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantAttrErr(t, err, tt.path)
		})
	}
	h, err := readHost(`host.web["a"]`, testConfig(t, spec, base))
	if err != nil {
		t.Fatal(err)
	}
	if h.host.Port != 22 || h.host.User != "root" || h.host.Name != `host.web["a"]` {
		t.Errorf("defaults: %+v, want port 22, user root", h.host)
	}
	if h.cfg.ConnectTimeout != 0 || h.cfg.KeepAliveInterval != 0 || h.cfg.KeepAliveMax != 0 {
		t.Errorf("timeouts: %+v, want 0 (remote's defaults)", h.cfg)
	}
	h, err = readHost("h", testConfig(t, spec, with("connect_timeout", cty.StringVal("3s"), "keepalive_interval", cty.StringVal("1s"), "keepalive_count_max", cty.NumberIntVal(2))))
	if err != nil {
		t.Fatal(err)
	}
	if h.cfg.ConnectTimeout != 3*time.Second || h.cfg.KeepAliveInterval != time.Second || h.cfg.KeepAliveMax != 2 {
		t.Errorf("timeouts: %+v, want 3s, 1s and 2", h.cfg)
	}
}

// TestWriteOnHost carries out, previews, resumes and rolls back a write
// on a real sshd host of a testhosts bed, through the kind's methods.
func TestWriteOnHost(t *testing.T) {
	f, env, logged := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	// The hosts share this machine's file system; only the network is
	// theirs.
	p := filepath.Join(h.Home, "app.key")
	w := (*Write)(nil)
	cfgOf := func(content string, more map[string]cty.Value) Config {
		vals := map[string]cty.Value{
			"path":    cty.StringVal(p),
			"content": cty.StringVal(content).Mark("sensitive"),
			"mode":    cty.StringVal("0640"),
			"owner":   cty.StringVal("4242"),
			"group":   cty.StringVal("4343"),
		}
		for k, v := range more {
			vals[k] = v
		}
		return testConfig(t, w.Spec(), vals)
	}
	v1 := cfgOf("key-one\n", nil)

	// The connection is made from the bed's controller, and kept.
	if err := f.Controller.Do(func() error { return w.CheckHost(ctx, env, v1) }); err != nil {
		t.Fatal(err)
	}
	pv, err := w.Plan(ctx, env, v1)
	if err != nil || len(pv.Problems) != 0 || pv.Action != Create {
		t.Fatalf("preview: %+v, %v; want create", pv, err)
	}
	snap1, err := w.Snapshot(ctx, env, v1)
	if err != nil || snap1["existed"] != "false" {
		t.Fatalf("snapshot %v, %v", snap1, err)
	}
	intent1, err := w.Intent(ctx, env, v1)
	if err != nil {
		t.Fatal(err)
	}
	if _, done, err := w.Done(ctx, env, intent1); err != nil || done {
		t.Fatalf("done before the write: %t, %v", done, err)
	}
	out, err := w.Apply(ctx, env, v1)
	if err != nil {
		t.Fatal(err)
	}
	wantFile(t, p, "key-one\n", 0o640, 4242, 4343)
	got, done, err := w.Done(ctx, env, intent1)
	if err != nil || !done || !got.RawEquals(out) {
		t.Fatalf("done after the write: %t, %#v, %v; want %#v", done, got, err, out)
	}
	if pv, err := w.Plan(ctx, env, v1); err != nil || pv.Action != NoChange {
		t.Fatalf("preview after the write: %+v, %v; want no change", pv, err)
	}

	v2 := cfgOf("key-two\n", nil)
	snap2, err := w.Snapshot(ctx, env, v2)
	if err != nil || snap2["existed"] != "true" || !strings.HasPrefix(snap2["backup"], filepath.Join(h.Home, remoteBackupDir)+"/") {
		t.Fatalf("snapshot %v, %v; want a copy on the host", snap2, err)
	}
	if _, err := w.Apply(ctx, env, v2); err != nil {
		t.Fatal(err)
	}
	wantFile(t, p, "key-two\n", 0o640, 4242, 4343)
	if _, done, err := w.Done(ctx, env, intent1); err != nil || done {
		t.Fatalf("the first write is not done once replaced: %t, %v", done, err)
	}
	if err := w.Rollback(ctx, env, v2, cty.NilVal, snap2); err != nil {
		t.Fatal(err)
	}
	wantFile(t, p, "key-one\n", 0o640, 4242, 4343)
	if err := w.Rollback(ctx, env, v1, cty.NilVal, snap1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("the file the first write created is still there: %v", err)
	}
	if err := w.Rollback(ctx, env, v1, cty.NilVal, snap1); err != nil {
		t.Fatalf("a rollback run again: %v", err)
	}
	if strings.Contains(logged.String(), "key-one") || strings.Contains(logged.String(), "key-two") {
		t.Errorf("the content shows in the log:\n%s", logged)
	}

	// What a host cannot take.
	wantErrContains(t, w.CheckHost(ctx, env, cfgOf("x", map[string]cty.Value{"owner": cty.StringVal("rotplan-no-such-user")})), `no user "rotplan-no-such-user" on host.web["h1"]`)
	wantAttrErr(t, w.CheckHost(ctx, env, cfgOf("x", map[string]cty.Value{"path": cty.StringVal("app.key")})), "path")
	wantAttrErr(t, w.CheckHost(ctx, env, cfgOf("x", map[string]cty.Value{"path": cty.StringVal(filepath.Join(h.Home, "missing", "k"))})), "path")
	wantAttrErr(t, w.CheckHost(ctx, env, cfgOf("x", map[string]cty.Value{"trust_owner": cty.StringVal("0")})), "trust_owner")
}

// TestWriteOnHostRemovesLeftovers: the temporary file a write cut short
// left on the host (rotplan killed between its create and its rename; it
// may hold a key) is removed by the write that replaces it, as a resume
// redoes it, and by a rollback that restores the file it replaced.
func TestWriteOnHostRemovesLeftovers(t *testing.T) {
	f, env, _ := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	p := filepath.Join(h.Home, "app.key")
	w := (*Write)(nil)
	cfgOf := func(content string) Config {
		return testConfig(t, w.Spec(), map[string]cty.Value{
			"path":    cty.StringVal(p),
			"content": cty.StringVal(content).Mark("sensitive"),
			"mode":    cty.StringVal("0600"),
		})
	}
	leftover := func() string {
		t.Helper()
		q := filepath.Join(h.Home, ".app.key.rotplan-tmp-0123456789abcdef")
		if err := os.WriteFile(q, []byte("half a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		return q
	}
	gone := func(q, after string) {
		t.Helper()
		if _, err := os.Lstat(q); !os.IsNotExist(err) {
			t.Errorf("after %s, the leftover %s is still there (%v)", after, q, err)
		}
	}
	if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := cfgOf("new\n")
	// The connection is made from the bed's controller, and kept.
	var snap map[string]string
	if err := f.Controller.Do(func() (err error) {
		snap, err = w.Snapshot(ctx, env, v)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	q := leftover()
	if _, err := w.Apply(ctx, env, v); err != nil {
		t.Fatal(err)
	}
	gone(q, "the write")
	q = leftover()
	if err := w.Rollback(ctx, env, v, cty.NilVal, snap); err != nil {
		t.Fatal(err)
	}
	gone(q, "the rollback")
	wantFile(t, p, "old\n", 0o600, 0, 0)
}

// testHostEnv starts a bed of one host and returns an Env for steps on
// it (host.web["h1"]), disconnected at the test's end, and its log.
func testHostEnv(t *testing.T) (*testhosts.Fleet, *Env, *strings.Builder) {
	t.Helper()
	f := testhosts.Start(t, 1)
	env, logged := testEnv(t)
	return f, onTestHost(t, f, env), logged
}

// onTestHost returns env on the first host of the bed f (host.web["h1"]),
// disconnected at the test's end.
func onTestHost(t *testing.T, f *testhosts.Fleet, env *Env) *Env {
	t.Helper()
	h := f.Hosts[0]
	hostCfg := testConfig(t, hostSettings{}.Spec(), map[string]cty.Value{
		"address":       cty.StringVal(h.Addr.String()),
		"port":          cty.NumberIntVal(int64(h.Port)),
		"known_hosts":   cty.StringVal(f.KnownHosts),
		"identity_file": cty.StringVal(f.ClientKey),
	})
	env = env.On(`host.web["h1"]`, hostCfg)
	t.Cleanup(func() { env.Disconnect() })
	return env
}

// wantFile checks a file's content, permission bits and owner.
func wantFile(t *testing.T, p, content string, mode os.FileMode, uid, gid int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	fuid, fgid, _ := fileOwner(fi)
	if string(b) != content || fi.Mode().Perm() != mode || fuid != uid || fgid != gid {
		t.Fatalf("%s: %q %v %d:%d, want %q %v %d:%d", p, b, fi.Mode().Perm(), fuid, fgid, content, mode, uid, gid)
	}
}
