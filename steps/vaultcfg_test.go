package steps

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// The Vault configuration kinds against a real Vault: the steps use the
// admin identity's own connection (env.Vault); the root token's back door
// only inspects and sets up.

func strList(items ...string) cty.Value {
	vals := make([]cty.Value, len(items))
	for i, s := range items {
		vals[i] = cty.StringVal(s)
	}
	return cty.TupleVal(vals)
}

// attrPath returns the argument an error blames, "" when none.
func attrPath(err error) string {
	var ae *AttrError
	if errors.As(err, &ae) {
		return ae.Path
	}
	return ""
}

// vaultKind is what the Vault configuration kinds all are.
type vaultKind interface {
	Step
	Rollbacker
	Resumer
}

// snapshotAndApply takes the step's snapshot and intent, checks that it is
// not done yet, and applies it, as a run does.
func snapshotAndApply(t *testing.T, k vaultKind, env *Env, cfg Config) (map[string]string, map[string]string, cty.Value, error) {
	t.Helper()
	ctx := context.Background()
	snap, err := k.Snapshot(ctx, env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	intent, err := k.Intent(context.Background(), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, done, _ := k.Done(ctx, env, intent); done {
		t.Error("Done before Apply")
	}
	out, err := k.Apply(ctx, env, cfg)
	return snap, intent, out, err
}

func TestVaultConfigurationAgainstVault(t *testing.T) {
	v := testvault.StartT(t)
	ctx := context.Background()
	root := v.Root()
	newEnv := func(t *testing.T) (*Env, *strings.Builder) {
		env, logged := testEnv(t)
		return vaultEnv(env.Log, adminConnection(v)), logged
	}
	agentCert := func() string {
		d := testvault.ReadData(t, root, "auth/cert/certs/admin")
		return d["certificate"].(string)
	}()

	t.Run("vault_auth", func(t *testing.T) {
		k := &VaultAuth{}
		env, _ := newEnv(t)
		cfg := testConfig(t, k.Spec(), map[string]cty.Value{"path": cty.StringVal("cert2"), "type": cty.StringVal("cert")})
		pv, err := k.Plan(ctx, env, cfg)
		if err != nil || pv.Action != Create || len(pv.Problems) > 0 {
			t.Fatalf("Plan: %v %+v", err, pv)
		}
		if err := k.Prepare(ctx, env, cfg); err != nil {
			t.Fatal(err)
		}
		snap, err := k.Snapshot(ctx, env, cfg)
		if err != nil || snap["existed"] != "false" {
			t.Fatalf("Snapshot %v %v", snap, err)
		}
		out, err := k.Apply(ctx, env, cfg)
		if err != nil || env.NoChangeReason() != "" {
			t.Fatalf("Apply: %v (%q)", err, env.NoChangeReason())
		}
		auths, _ := root.Sys().ListAuth()
		if auths["cert2/"] == nil || auths["cert2/"].Type != "cert" || out.GetAttr("accessor").AsString() != auths["cert2/"].Accessor {
			t.Fatalf("cert2 not enabled as cert: %+v, outputs %#v", auths["cert2/"], out)
		}
		intent, _ := k.Intent(context.Background(), nil, cfg)
		if _, done, err := k.Done(ctx, env, intent); !done || err != nil {
			t.Errorf("Done after Apply: %v %v", done, err)
		}
		env2, _ := newEnv(t)
		if _, err := k.Apply(ctx, env2, cfg); err != nil || env2.NoChangeReason() == "" {
			t.Errorf("second Apply should change nothing: %v %q", err, env2.NoChangeReason())
		}
		if err := k.Rollback(ctx, env, cfg, out, snap); err != nil {
			t.Fatal(err)
		}
		auths, _ = root.Sys().ListAuth()
		if auths["cert2/"] != nil {
			t.Error("rollback left cert2 enabled, which the run enabled")
		}
		if _, done, _ := k.Done(ctx, env, intent); done {
			t.Error("Done after rollback")
		}

		// cert was there before: no change, and the rollback leaves it.
		cert := testConfig(t, k.Spec(), map[string]cty.Value{"path": cty.StringVal("cert"), "type": cty.StringVal("cert")})
		snap, err = k.Snapshot(ctx, env, cert)
		if err != nil || snap["existed"] != "true" {
			t.Fatalf("Snapshot of cert: %v %v", snap, err)
		}
		pv, _ = k.Plan(ctx, env, cert)
		if pv.Action != NoChange {
			t.Errorf("Plan of the enabled cert: %v", pv.Action)
		}
		if err := k.Rollback(ctx, env, cert, cty.NilVal, snap); err != nil {
			t.Fatal(err)
		}
		if auths, _ := root.Sys().ListAuth(); auths["cert/"] == nil {
			t.Fatal("rollback disabled cert auth, which was there before the run")
		}

		// Another type at the path: an error at type, before anything changes.
		wrong := testConfig(t, k.Spec(), map[string]cty.Value{"path": cty.StringVal("cert"), "type": cty.StringVal("approle")})
		if err := k.Prepare(ctx, env, wrong); attrPath(err) != "type" || !strings.Contains(err.Error(), "is a cert auth method") {
			t.Errorf("Prepare with another type: %v", err)
		}
		if pv, _ := k.Plan(ctx, env, wrong); len(pv.Problems) != 1 || attrPath(pv.Problems[0]) != "type" {
			t.Errorf("Plan with another type: %v", pv.Problems)
		}
	})

	t.Run("vault_policy", func(t *testing.T) {
		k := &VaultPolicy{}
		env, _ := newEnv(t)
		const before = "path \"secret/a\" {\n  capabilities = [\"read\"]\n}\n# trailing comment without newline"
		const after = "path \"secret/a\" {\n  capabilities = [\"read\", \"list\"]\n}\n"
		if err := root.Sys().PutPolicy("pki-issue-upd", before); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name    string
			existed bool
		}{{"pki-issue-upd", true}, {"pki-issue-new", false}} {
			t.Run(tt.name, func(t *testing.T) {
				cfg := testConfig(t, k.Spec(), map[string]cty.Value{"name": cty.StringVal(tt.name), "policy": cty.StringVal(after)})
				pv, err := k.Plan(ctx, env, cfg)
				wantAction := Create
				if tt.existed {
					wantAction = Replace
				}
				if err != nil || pv.Action != wantAction || len(pv.Problems) > 0 || len(pv.Fields) != 1 {
					t.Fatalf("Plan: %v %+v", err, pv)
				}
				snap, intent, out, err := snapshotAndApply(t, k, env, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := root.Sys().GetPolicy(tt.name); got != after {
					t.Fatalf("policy after Apply: %q", got)
				}
				if _, done, _ := k.Done(ctx, env, intent); !done {
					t.Error("not Done after Apply")
				}
				env2, _ := newEnv(t)
				if _, err := k.Apply(ctx, env2, cfg); err != nil || env2.NoChangeReason() == "" {
					t.Errorf("second Apply: %v %q", err, env2.NoChangeReason())
				}
				if pv, _ := k.Plan(ctx, env, cfg); pv.Action != NoChange {
					t.Errorf("Plan after Apply: %v", pv.Action)
				}
				if err := k.Rollback(ctx, env, cfg, out, snap); err != nil {
					t.Fatal(err)
				}
				got := testvault.ReadData(t, root, "sys/policies/acl/"+tt.name)
				switch {
				case tt.existed && (got == nil || got["policy"] != before):
					t.Errorf("rollback left %q, want the text before byte for byte", got["policy"])
				case !tt.existed && got != nil:
					t.Errorf("rollback left the policy the run created: %v", got)
				}
			})
		}
	})

	t.Run("vault_write", func(t *testing.T) {
		k := &VaultWrite{}
		const path = "auth/cert/certs/agent-upd"
		if _, err := root.Logical().Write(path, map[string]any{
			"certificate":          agentCert,
			"allowed_common_names": []string{"agent-upd.prod.privsec.ch"},
			"token_policies":       []string{"marker-cert-auth"},
			"token_ttl":            "30m",
			"display_name":         "before",
		}); err != nil {
			t.Fatal(err)
		}
		beforeUpd := testvault.ReadData(t, root, path)
		data := func(policies cty.Value, ttl string) cty.Value {
			return cty.ObjectVal(map[string]cty.Value{
				"certificate":          cty.StringVal(agentCert),
				"allowed_common_names": strList("agent-upd.prod.privsec.ch"),
				"token_policies":       policies,
				"token_ttl":            cty.StringVal(ttl),
			})
		}
		for _, tt := range []struct{ name, path string }{{"update", path}, {"create", "auth/cert/certs/agent-new"}} {
			t.Run(tt.name, func(t *testing.T) {
				env, logged := newEnv(t)
				before := testvault.ReadData(t, root, tt.path)
				cfg := testConfig(t, k.Spec(), map[string]cty.Value{
					"path": cty.StringVal(tt.path),
					"data": data(strList("pki-issue-upd", "marker-cert-auth"), "1h"),
				})
				if err := k.Validate(cfg); err != nil {
					t.Fatal(err)
				}
				if err := k.Prepare(ctx, env, cfg); err != nil {
					t.Fatal(err)
				}
				pv, err := k.Plan(ctx, env, cfg)
				if err != nil || len(pv.Problems) > 0 {
					t.Fatalf("Plan: %v %v", err, pv.Problems)
				}
				fields := map[string]FieldChange{}
				for _, f := range pv.Fields {
					fields[f.Field] = f
				}
				if before != nil {
					if pv.Action != Replace {
						t.Errorf("Plan action %v", pv.Action)
					}
					if f := fields["token_policies"]; f.Action != Replace || f.Now != `["marker-cert-auth"]` || f.Planned != `["pki-issue-upd", "marker-cert-auth"]` {
						t.Errorf("token_policies change %+v", f)
					}
					if f := fields["token_ttl"]; f.Action != Replace || f.Now != "1800" || f.Planned != `"1h"` {
						t.Errorf("token_ttl change %+v", f)
					}
					if f := fields["certificate"]; f.Action != NoChange || !strings.Contains(f.Planned, "serial") {
						t.Errorf("certificate change %+v", f)
					}
				} else if pv.Action != Create || fields["token_ttl"].Action != Create {
					t.Errorf("Plan of a new path: %v %+v", pv.Action, pv.Fields)
				}
				snap, intent, out, err := snapshotAndApply(t, k, env, cfg)
				if err != nil || env.NoChangeReason() != "" {
					t.Fatalf("Apply: %v %q", err, env.NoChangeReason())
				}
				got := testvault.ReadData(t, root, tt.path)
				if !reflect.DeepEqual(got["token_policies"], []any{"pki-issue-upd", "marker-cert-auth"}) || got["token_ttl"] != json.Number("3600") {
					t.Errorf("after Apply: policies %v ttl %v", got["token_policies"], got["token_ttl"])
				}
				if _, done, err := k.Done(ctx, env, intent); !done || err != nil {
					t.Errorf("not Done after Apply: %v", err)
				}
				// Vault's own forms: sorted policies, "60m" for 3600 seconds.
				same := testConfig(t, k.Spec(), map[string]cty.Value{
					"path": cty.StringVal(tt.path),
					"data": data(strList("marker-cert-auth", "pki-issue-upd", "pki-issue-upd"), "60m"),
				})
				env2, _ := newEnv(t)
				if _, err := k.Apply(ctx, env2, same); err != nil || env2.NoChangeReason() == "" {
					t.Errorf("Apply of what Vault has: %v %q", err, env2.NoChangeReason())
				}
				if pv, _ := k.Plan(ctx, env2, same); pv.Action != NoChange {
					t.Errorf("Plan of what Vault has: %v %+v", pv.Action, pv.Fields)
				}
				if err := k.Rollback(ctx, env, cfg, out, snap); err != nil {
					t.Fatal(err)
				}
				if after := testvault.ReadData(t, root, tt.path); !reflect.DeepEqual(after, before) {
					t.Errorf("after rollback:\n%#v\nwant as before the run:\n%#v", after, before)
				}
				if strings.Contains(logged.String(), "pki-issue-upd") {
					t.Error("field values were logged")
				}
			})
		}
		if !reflect.DeepEqual(testvault.ReadData(t, root, path), beforeUpd) {
			t.Error("the mapping is not as before")
		}
	})

	t.Run("secret field", func(t *testing.T) {
		k := &VaultWrite{}
		env, logged := newEnv(t)
		const secret = "s3cr3t-display-name"
		cfg := testConfig(t, k.Spec(), map[string]cty.Value{
			"path": cty.StringVal("auth/cert/certs/agent-sec"),
			"data": cty.ObjectVal(map[string]cty.Value{
				"certificate":  cty.StringVal(agentCert),
				"display_name": cty.StringVal(secret).Mark("sensitive"),
			}),
		})
		if err := k.Validate(cfg); err != nil {
			t.Fatal(err)
		}
		pv, err := k.Plan(ctx, env, cfg)
		if err != nil {
			t.Fatal(err)
		}
		intent, _ := k.Intent(context.Background(), nil, cfg)
		snap, err := k.Snapshot(ctx, env, cfg)
		if err != nil {
			t.Fatal(err)
		}
		out, err := k.Apply(ctx, env, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := testvault.ReadData(t, root, "auth/cert/certs/agent-sec"); got["display_name"] != secret {
			t.Fatalf("display_name not written: %v", got["display_name"])
		}
		if _, done, _ := k.Done(ctx, env, intent); done {
			t.Error("Done cannot check a secret field, and must not say it is done")
		}
		// Now the path exists: overwriting its secret field has no way back.
		if _, err := k.Snapshot(ctx, env, cfg); err == nil || !strings.Contains(err.Error(), "-rollback=false") {
			t.Errorf("Snapshot over an existing secret field: %v", err)
		}
		if err := k.Rollback(ctx, env, cfg, out, snap); err != nil {
			t.Fatal(err)
		}
		seen, _ := json.Marshal([]any{pv.Fields, pv.Now, pv.Observed, pv.Reason, intent, snap})
		for what, s := range map[string]string{"preview, intent or snapshot": string(seen), "log": logged.String()} {
			if strings.Contains(s, secret) {
				t.Errorf("the sensitive value is in the %s", what)
			}
		}
		for _, f := range pv.Fields {
			if f.Field == "display_name" && (!f.Sensitive || f.Now != "" || f.Planned != "") {
				t.Errorf("display_name in the preview: %+v", f)
			}
		}
	})

	t.Run("bad paths", func(t *testing.T) {
		k := &VaultWrite{}
		env, _ := newEnv(t)
		denied := testConfig(t, k.Spec(), map[string]cty.Value{
			"path": cty.StringVal("auth/cert/certs/admin"),
			"data": cty.ObjectVal(map[string]cty.Value{"token_ttl": cty.StringVal("1h")}),
		})
		if err := k.Prepare(ctx, env, denied); attrPath(err) != "path" || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("Prepare of a path the admin may not touch: %v", err)
		}
		if pv, _ := k.Plan(ctx, env, denied); len(pv.Problems) != 1 || attrPath(pv.Problems[0]) != "path" {
			t.Errorf("Plan of a denied path: %v", pv.Problems)
		}
		adminMissing := testConfig(t, k.Spec(), map[string]cty.Value{
			"path": cty.StringVal("auth/nosuch/certs/x"),
			"data": cty.ObjectVal(map[string]cty.Value{"token_ttl": cty.StringVal("1h")}),
		})
		if err := k.Prepare(ctx, env, adminMissing); attrPath(err) != "path" || !strings.Contains(err.Error(), "nothing mounted") {
			t.Errorf("Prepare of a path under no mount, as the admin: %v", err)
		}
		// A token that may write anywhere: the path has no handler.
		conn := adminConnection(v)
		conn.AuthMethod, conn.Token = "token", v.RootToken
		rootEnv := vaultEnv(env.Log, conn)
		missing := testConfig(t, k.Spec(), map[string]cty.Value{
			"path": cty.StringVal("auth/nosuch/certs/x"),
			"data": cty.ObjectVal(map[string]cty.Value{"token_ttl": cty.StringVal("1h")}),
		})
		if err := k.Prepare(ctx, rootEnv, missing); attrPath(err) != "path" || !strings.Contains(err.Error(), "nothing mounted") {
			t.Errorf("Prepare of a path with no handler: %v", err)
		}
		// ... unless a vault_auth step before it enables that method.
		auth := &VaultAuth{}
		if pv, _ := auth.Plan(ctx, rootEnv, testConfig(t, auth.Spec(), map[string]cty.Value{"path": cty.StringVal("nosuch"), "type": cty.StringVal("cert")})); pv.Action != Create {
			t.Fatalf("vault_auth Plan: %+v", pv)
		}
		if pv, _ := k.Plan(ctx, rootEnv, missing); pv.Action != Create || len(pv.Problems) > 0 {
			t.Errorf("Plan under a planned auth method: %v %v", pv.Action, pv.Problems)
		}
	})
}

func TestVaultWriteValidate(t *testing.T) {
	k := &VaultWrite{}
	for _, tt := range []struct {
		name string
		data cty.Value
		want string
	}{
		{"plain secret", cty.ObjectVal(map[string]cty.Value{"password": cty.StringVal("hunter2")}), "sensitive variable"},
		{"nested map", cty.ObjectVal(map[string]cty.Value{"x": cty.ObjectVal(map[string]cty.Value{"a": cty.True})}), "give a string"},
		{"not a map", cty.StringVal("x"), "map of fields"},
		{"empty", cty.EmptyObjectVal, "at least one"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, k.Spec(), map[string]cty.Value{"path": cty.StringVal("auth/userpass/users/u"), "data": tt.data})
			err := k.Validate(cfg)
			if err == nil || attrPath(err) != "data" || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want %q at data", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("the error quotes the secret")
			}
		})
	}
	ok := testConfig(t, k.Spec(), map[string]cty.Value{"path": cty.StringVal("auth/userpass/users/u"),
		"data": cty.ObjectVal(map[string]cty.Value{"password": cty.StringVal("hunter2").Mark("sensitive"), "token_ttl": cty.NumberIntVal(60)})})
	if err := k.Validate(ok); err != nil {
		t.Errorf("a sensitive password: %v", err)
	}
}

func TestFieldText(t *testing.T) {
	for _, tt := range []struct {
		v    any
		want string
	}{
		{[]any{"a,b", "c"}, `["a,b", "c"]`},
		{json.Number("3600"), "3600"},
		{"1h", `"1h"`},
		{true, "true"},
		{"two\nlines\n", "(text, 10 bytes, 2 lines, sha256 " + shortDigest("two\nlines\n") + ")"},
	} {
		if got := fieldText(tt.v); got != tt.want {
			t.Errorf("fieldText(%#v) = %s, want %s", tt.v, got, tt.want)
		}
	}
}

func TestSameField(t *testing.T) {
	for _, tt := range []struct {
		cur, want any
		same      bool
	}{
		{json.Number("3600"), "1h", true},
		{json.Number("3600"), "3600", true},
		{json.Number("3600"), json.Number("3600"), true},
		{json.Number("3600"), "2h", false},
		{[]any{"a", "b"}, []any{"b", "a", "a"}, true},
		{[]any{"a", "b"}, "b, a", true},
		{[]any{}, []any{}, true},
		{nil, []any{}, true},
		{[]any{"a"}, []any{"a", "b"}, false},
		{"text\n", "text", true},
		{true, true, true},
		{"true", true, true},
		{false, true, false},
	} {
		if got := sameField(tt.cur, tt.want); got != tt.same {
			t.Errorf("sameField(%#v, %#v) = %v", tt.cur, tt.want, got)
		}
	}
}
