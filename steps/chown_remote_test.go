package steps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// TestChownOnHost hands files over on a real sshd host of a testhosts
// bed, through the kind's methods: preview, snapshot, apply, done, and a
// rollback that gives the old owners back; and what it refuses there.
func TestChownOnHost(t *testing.T) {
	requireRoot(t, "giving files to other users and back")
	f, env, _ := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	key, cert, later := filepath.Join(h.Home, "app.key"), filepath.Join(h.Home, "app.crt"), filepath.Join(h.Home, "later.pem")
	for _, p := range []string{key, cert} {
		if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, 1001, 1002); err != nil {
			t.Fatal(err)
		}
	}
	c := (*Chown)(nil)
	cfgOf := func(more map[string]cty.Value) Config {
		vals := map[string]cty.Value{
			"paths": cty.ListVal([]cty.Value{cty.StringVal(key), cty.StringVal(cert), cty.StringVal(later)}),
			"owner": cty.StringVal("4242"),
			"group": cty.StringVal("4343"),
		}
		for k, v := range more {
			vals[k] = v
		}
		return testConfig(t, c.Spec(), vals)
	}
	cfg := cfgOf(nil)
	if err := f.Controller.Do(func() error { return c.CheckHost(ctx, env, cfg) }); err != nil {
		t.Fatal(err)
	}
	pv, err := c.Plan(ctx, env, cfg)
	if err != nil || len(pv.Problems) != 0 || pv.Action != Replace || !strings.Contains(pv.Observed, "app.key: 1001:1002") || !strings.Contains(pv.Observed, "later.pem: absent") {
		t.Fatalf("preview: %+v, %v", pv, err)
	}
	snap, err := c.Snapshot(ctx, env, cfg)
	if err != nil || snap["host"] != `host.web["h1"]` {
		t.Fatalf("snapshot %v, %v", snap, err)
	}
	intent, err := c.Intent(ctx, env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, done, err := c.Done(ctx, env, intent); err != nil || done {
		t.Fatalf("done before the chown: %t, %v", done, err)
	}
	// The file an earlier step writes, after the snapshot.
	if err := os.WriteFile(later, []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := c.Apply(ctx, env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{key, cert, later} {
		wantOwner(t, p, 4242, 4343)
	}
	if got, done, err := c.Done(ctx, env, intent); err != nil || !done || !got.RawEquals(out) {
		t.Fatalf("done after the chown: %t, %#v, %v; want %#v", done, got, err, out)
	}
	if pv, err := c.Plan(ctx, env, cfg); err != nil || pv.Action != NoChange {
		t.Fatalf("preview after the chown: %+v, %v; want no change", pv, err)
	}
	if err := c.Rollback(ctx, env, cfg, out, snap); err != nil {
		t.Fatal(err)
	}
	wantOwner(t, key, 1001, 1002)
	wantOwner(t, cert, 1001, 1002)
	wantOwner(t, later, 4242, 4343) // it had no owner before

	// What a host refuses: a link, a file with another hard link (and
	// none of the paths changes), a name, a relative path, trust_owner.
	link := filepath.Join(h.Home, "link.pem")
	if err := os.Symlink(key, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(h.Home, "hard.pem")
	if err := os.Link(cert, hard); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"a symbolic link", link, "is a symbolic link"},
		{"two hard links", cert, "has 2 hard links"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfgOf(map[string]cty.Value{"paths": cty.ListVal([]cty.Value{cty.StringVal(later), cty.StringVal(tc.path)}), "owner": cty.StringVal("7")})
			_, err := c.Apply(ctx, env, cfg)
			wantErrContains(t, err, tc.want)
			_, err = c.Snapshot(ctx, env, cfg)
			wantErrContains(t, err, tc.want)
			wantOwner(t, later, 4242, 4343)
			wantOwner(t, key, 1001, 1002)
		})
	}
	wantErrContains(t, c.CheckHost(ctx, env, cfgOf(map[string]cty.Value{"owner": cty.StringVal("rotplan-no-such-user")})), `no user "rotplan-no-such-user" on host.web["h1"]`)
	wantAttrErr(t, c.CheckHost(ctx, env, cfgOf(map[string]cty.Value{"paths": cty.ListVal([]cty.Value{cty.StringVal("app.key")})})), "paths")
	wantAttrErr(t, c.CheckHost(ctx, env, cfgOf(map[string]cty.Value{"paths": cty.ListVal([]cty.Value{cty.StringVal(filepath.Join(h.Home, "missing", "k"))})})), "paths")
	wantAttrErr(t, c.CheckHost(ctx, env, cfgOf(map[string]cty.Value{"trust_owner": cty.StringVal("0")})), "trust_owner")
}

// TestChownOnHostFailsPartWay: on a host as here, a chown whose second
// path cannot change owner (immutable) is unsettled, having changed the
// first, and the rollback from the snapshot gives the first its owner
// back, passing over the one never changed.
func TestChownOnHostFailsPartWay(t *testing.T) {
	requireRoot(t, "giving files to other users and back")
	f, env, _ := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	first, second := filepath.Join(h.Home, "first.pem"), filepath.Join(h.Home, "second.pem")
	for _, p := range []string{first, second} {
		if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, 1001, 1002); err != nil {
			t.Fatal(err)
		}
	}
	immutable(t, second)
	c := (*Chown)(nil)
	cfg := testConfig(t, c.Spec(), map[string]cty.Value{
		"paths": cty.ListVal([]cty.Value{cty.StringVal(first), cty.StringVal(second)}),
		"owner": cty.StringVal("4242"),
		"group": cty.StringVal("4343"),
	})
	var snap map[string]string
	err := f.Controller.Do(func() (err error) { // connects from the controller
		snap, err = c.Snapshot(ctx, env, cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Apply(ctx, env, cfg)
	var unsettled *UnsettledError
	if !errors.As(err, &unsettled) {
		t.Fatalf("Apply: %v; want an *UnsettledError", err)
	}
	wantOwner(t, first, 4242, 4343)
	if err := c.Rollback(ctx, env, cfg, cty.NilVal, snap); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	wantOwner(t, first, 1001, 1002)
	wantOwner(t, second, 1001, 1002)
}
