package steps

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// TestOwnerNamesOnHost: owner and group names of a write and a chown on a
// host are looked up there, in the check, the preview, the run and the
// resume's intent, once per host and name; a name the host does not know
// is an error on the argument naming the host and the name.
func TestOwnerNamesOnHost(t *testing.T) {
	requireRoot(t, "giving files to other users")
	f, env, _ := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	name, uid, gid, err := testvault.Stranger()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(h.Home, "named.pem")
	w := (*Write)(nil)
	wcfg := func(owner string) Config {
		return testConfig(t, w.Spec(), map[string]cty.Value{
			"path": cty.StringVal(p), "content": cty.StringVal("cert\n"), "mode": cty.StringVal("0640"),
			"owner": cty.StringVal(owner), "group": cty.StringVal(name),
		})
	}
	cfg := wcfg(name)
	if err := f.Controller.Do(func() error { return w.CheckHost(ctx, env, cfg) }); err != nil {
		t.Fatalf("CheckHost: %v", err)
	}
	if pv, err := w.Plan(ctx, env, cfg); err != nil || len(pv.Problems) != 0 || pv.Action != Create {
		t.Fatalf("preview: %+v, %v", pv, err)
	}
	out, err := w.Apply(ctx, env, cfg)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantFile(t, p, "cert\n", 0o640, uid, gid)
	if pv, err := w.Plan(ctx, env, cfg); err != nil || pv.Action != NoChange {
		t.Fatalf("preview after the write: %+v, %v; want no change", pv, err)
	}
	checkIntent(t, w, env, cfg, out, uid, gid)

	c := (*Chown)(nil)
	ccfg := func(owner string) Config {
		return testConfig(t, c.Spec(), map[string]cty.Value{
			"paths": cty.ListVal([]cty.Value{cty.StringVal(p)}), "owner": cty.StringVal(owner), "group": cty.StringVal("root"),
		})
	}
	if err := c.CheckHost(ctx, env, ccfg(name)); err != nil {
		t.Fatalf("chown CheckHost: %v", err)
	}
	if pv, err := c.Plan(ctx, env, ccfg(name)); err != nil || len(pv.Problems) != 0 || pv.Action != Replace {
		t.Fatalf("chown preview: %+v, %v", pv, err)
	}
	if out, err = c.Apply(ctx, env, ccfg(name)); err != nil {
		t.Fatalf("chown Apply: %v", err)
	}
	wantOwner(t, p, uid, 0)
	checkIntent(t, c, env, ccfg(name), out, uid, 0)

	// A name the host does not know.
	const missing = "rotplan-no-such-user"
	for what, err := range map[string]error{
		"write CheckHost": w.CheckHost(ctx, env, wcfg(missing)),
		"chown CheckHost": c.CheckHost(ctx, env, ccfg(missing)),
		"write Apply":     applyErr(w.Apply(ctx, env, wcfg(missing))),
		"chown Apply":     applyErr(c.Apply(ctx, env, ccfg(missing))),
	} {
		t.Run(what, func(t *testing.T) {
			wantAttrErr(t, err, "owner")
			wantErrContains(t, err, `no user "`+missing+`" on host.web["h1"]`)
		})
	}
	pv, err := w.Plan(ctx, env, wcfg(missing))
	if err != nil || len(pv.Problems) != 1 {
		t.Fatalf("preview with a missing owner: %+v, %v; want one problem", pv, err)
	}
	wantErrContains(t, pv.Problems[0], `no user "`+missing+`" on host.web["h1"]`)
	wantFile(t, p, "cert\n", 0o640, uid, 0) // as the chown left it
	// Each name was looked up once on the host, the missing one too.
	if n := len(env.hosts.ids); n != 4 {
		t.Errorf("%d names looked up on the host, want 4: %v", n, env.hosts.ids)
	}
}

// applyErr is Apply's error.
func applyErr(_ cty.Value, err error) error { return err }

// checkIntent checks that the resume's intent holds the ids the names have
// on the host, and that Done finds the step done with its outputs.
func checkIntent(t *testing.T, kind Resumer, env *Env, cfg Config, out cty.Value, uid, gid int) {
	t.Helper()
	ctx := context.Background()
	intent, err := kind.Intent(ctx, env, cfg)
	if err != nil {
		t.Fatalf("Intent: %v", err)
	}
	if intent["uid"] != strconv.Itoa(uid) || intent["gid"] != strconv.Itoa(gid) {
		t.Errorf("intent %v; want uid %d and gid %d", intent, uid, gid)
	}
	if got, done, err := kind.Done(ctx, env, intent); err != nil || !done || !got.RawEquals(out) {
		t.Errorf("Done = %t, %#v, %v; want %#v", done, got, err, out)
	}
	missing := testConfig(t, kind.(Step).Spec(), replaceOwner(cfg, "rotplan-no-such-user"))
	_, err = kind.Intent(ctx, env, missing)
	wantErrContains(t, err, `no user "rotplan-no-such-user" on host.web["h1"]`)
}

// replaceOwner is cfg's values with another owner.
func replaceOwner(cfg Config, owner string) map[string]cty.Value {
	vals := cfg.val.AsValueMap()
	vals["owner"] = cty.StringVal(owner)
	return vals
}
