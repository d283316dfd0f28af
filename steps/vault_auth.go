package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
)

// VaultAuth is the `vault_auth` step kind: it makes sure an auth method is
// enabled at a path, enabling it only when it is not.
//
//	vault_auth "cert" {
//	  path = "cert"
//	  type = "cert"
//	}
//
// A method of another type at that path is an error before anything
// changes: rotplan never replaces one. The rollback disables the method
// only when this run enabled it, which also removes whatever was
// configured under it since (the mappings later steps wrote, whose own
// rollbacks come first).
type VaultAuth struct{}

var (
	_ Step         = (*VaultAuth)(nil)
	_ SettingsUser = (*VaultAuth)(nil)
	_ Preparer     = (*VaultAuth)(nil)
	_ Planner      = (*VaultAuth)(nil)
	_ Rollbacker   = (*VaultAuth)(nil)
	_ Resumer      = (*VaultAuth)(nil)
	_ Summarizer   = (*VaultAuth)(nil)
)

// Settings implements SettingsUser.
func (*VaultAuth) Settings() Settings { return vaultBlock() }

// Spec implements Step.
func (*VaultAuth) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"path":        &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
		"type":        &hcldec.AttrSpec{Name: "type", Type: cty.String, Required: true},
		"description": &hcldec.AttrSpec{Name: "description", Type: cty.String},
	}
}

// Outputs implements Step: the mount path ("cert") and its accessor, as
// identity and templated policies name it.
func (*VaultAuth) Outputs() map[string]Output {
	return map[string]Output{
		"path":     {Type: cty.String},
		"type":     {Type: cty.String},
		"accessor": {Type: cty.String},
	}
}

func parseVaultAuth(cfg Config) (path, typ string, err error) {
	path, errPath := cfg.RequireString("path")
	if errPath == nil {
		path = strings.Trim(path, "/")
		errPath = vaultPathSegment(cfg, "path", path)
	}
	typ, errType := cfg.RequireString("type")
	return path, typ, joinErrors(errPath, errType)
}

// authMount is an auth method enabled at a path; nil when none is.
func authMount(ctx context.Context, env *Env, cfg Config, path string) (*vaultapi.AuthMount, error) {
	client, err := env.Vault(ctx)
	if err != nil {
		return nil, err
	}
	mounts, err := client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		what := vaultMessage(err)
		if isForbidden(err) {
			what = "permission denied: the token's policies must allow read on sys/auth"
		}
		return nil, attrErr(cfg.Path("path"), "listing the auth methods: %s", what)
	}
	return mounts[path+"/"], nil
}

// checkAuth finds what is at the path and checks that the step may do
// what it will: nothing when the method is enabled, else enable it (and
// disable it on rollback), which takes sudo. A method of another type is
// an error.
func checkAuth(ctx context.Context, env *Env, cfg Config, path, typ string) (*vaultapi.AuthMount, error) {
	m, err := authMount(ctx, env, cfg, path)
	switch {
	case err != nil:
		return nil, err
	case m != nil && m.Type != typ:
		return m, attrErr(cfg.Path("type"), "auth/%s is a %s auth method, not %s; rotplan does not replace an auth method (disable it by hand first, if that is what you want)", path, m.Type, typ)
	case m != nil:
		return m, nil
	}
	client, _ := env.Vault(ctx)
	caps, err := client.Sys().CapabilitiesSelfWithContext(ctx, "sys/auth/"+path)
	if err != nil {
		return nil, attrErr(cfg.Path("path"), "asking Vault what the token may do at sys/auth/%s: %s", path, vaultMessage(err))
	}
	if !slices.Contains(caps, "root") && !(slices.Contains(caps, "sudo") && slices.Contains(caps, "update") && slices.Contains(caps, "delete")) {
		return nil, attrErr(cfg.Path("path"), "the token may not enable an auth method at auth/%s: enabling takes sudo and update on sys/auth/%s, and a rollback delete (it has %s)", path, path, strings.Join(caps, ", "))
	}
	env.plannedMount("auth/" + path + "/")
	return nil, nil
}

func authOutputs(path, typ, accessor string) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"path": cty.StringVal(path), "type": cty.StringVal(typ), "accessor": cty.StringVal(accessor),
	})
}

// Validate implements Step.
func (*VaultAuth) Validate(cfg Config) error {
	_, _, err := parseVaultAuth(cfg)
	return err
}

// Prepare implements Preparer: a method of another type at the path, or a
// token that may not enable one, stops the run before anything changes.
func (*VaultAuth) Prepare(ctx context.Context, env *Env, cfg Config) error {
	path, typ, err := parseVaultAuth(cfg)
	if err != nil {
		return nil // Validate reports it; unknown values wait for the run
	}
	_, err = checkAuth(ctx, env, cfg, path, typ)
	return err
}

// Apply implements Step.
func (*VaultAuth) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	path, typ, err := parseVaultAuth(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	m, err := checkAuth(ctx, env, cfg, path, typ)
	if err != nil {
		return cty.NilVal, err
	}
	if m != nil {
		env.NoChange(fmt.Sprintf("a %s auth method is enabled at auth/%s", typ, path))
		return authOutputs(path, typ, m.Accessor), nil
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	opts := &vaultapi.EnableAuthOptions{Type: typ, Description: cfg.String("description")}
	if err := client.Sys().EnableAuthWithOptionsWithContext(ctx, path, opts); err != nil {
		return cty.NilVal, attrErr(cfg.Path("type"), "enabling a %s auth method at auth/%s: %s", typ, path, vaultMessage(err))
	}
	env.Log.Info("enabled Vault auth method", "path", path, "type", typ)
	if m, err = authMount(ctx, env, cfg, path); err != nil || m == nil {
		return cty.NilVal, fmt.Errorf("auth/%s was enabled but Vault does not list it: %v", path, err)
	}
	return authOutputs(path, typ, m.Accessor), nil
}

// Plan implements Planner.
func (*VaultAuth) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: Create}
	path, typ, err := parseVaultAuth(cfg)
	if err != nil {
		return pv, ctx.Err()
	}
	m, err := checkAuth(ctx, env, cfg, path, typ)
	switch {
	case err != nil:
		pv.Problems = append(pv.Problems, err)
		if m != nil {
			pv.Action = Replace
		}
	case m != nil:
		pv.Action, pv.Reason = NoChange, "already enabled"
		pv.Outputs = authOutputs(path, typ, m.Accessor)
		pv.Fields = []FieldChange{{Field: "auth/" + path, Action: NoChange, Planned: m.Type}}
		pv.Observed = m.Type + " " + m.Accessor
	default:
		pv.Fields = []FieldChange{{Field: "auth/" + path, Action: Create, Planned: typ}}
		pv.Observed = "absent"
	}
	return pv, ctx.Err()
}

// Snapshot implements Rollbacker: whether the method was enabled before.
func (*VaultAuth) Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	path, typ, err := parseVaultAuth(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	m, err := checkAuth(ctx, env, cfg, path, typ)
	if err != nil {
		return nil, err
	}
	snap := map[string]string{"path": path, "type": typ, "existed": "false"}
	if m != nil {
		snap["existed"], snap["accessor"] = "true", m.Accessor
	}
	return snap, nil
}

// Rollback implements Rollbacker: the method is disabled when this run
// enabled it, and left alone otherwise.
func (*VaultAuth) Rollback(ctx context.Context, env *Env, _ Config, _ cty.Value, snapshot map[string]string) error {
	path, existed, err := snapshotExisted("vault_auth", "path", snapshot)
	if err != nil {
		return err
	}
	if existed {
		return nil
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return fmt.Errorf("vault_auth: rolling back auth/%s: %w", path, err)
	}
	if err := client.Sys().DisableAuthWithContext(ctx, path); err != nil {
		return fmt.Errorf("vault_auth: rolling back: disabling auth/%s, which the run enabled: %s; run by hand: vault auth disable %s", path, vaultMessage(err), command.ShellWord(path))
	}
	env.Log.Info("disabled the Vault auth method the run enabled", "path", path)
	return nil
}

// Intent implements Resumer.
func (*VaultAuth) Intent(_ context.Context, _ *Env, cfg Config) (map[string]string, error) {
	path, typ, err := parseVaultAuth(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	return map[string]string{"path": path, "type": typ}, nil
}

// Done implements Resumer: a method of the intended type is enabled at the
// path.
func (*VaultAuth) Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error) {
	path, err := intentField(intent, "path")
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_auth: %w", err)
	}
	typ, err := intentField(intent, "type")
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_auth: %w", err)
	}
	m, err := authMount(ctx, env, Config{}, path)
	if err != nil || m == nil || m.Type != typ {
		return cty.NilVal, false, err
	}
	return authOutputs(path, typ, m.Accessor), true, nil
}

// Summary implements Summarizer.
func (*VaultAuth) Summary(outputs cty.Value) []Fact {
	p, ok := outputString(outputs, "path")
	t, ok2 := outputString(outputs, "type")
	if !ok || !ok2 {
		return nil
	}
	return []Fact{{Name: "auth", Value: t + " at auth/" + p}}
}
