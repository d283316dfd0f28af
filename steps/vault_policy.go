package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
)

// VaultPolicy is the `vault_policy` step kind: it makes sure an ACL policy
// exists with the text a plan gives (`sys/policies/acl/<name>`).
//
//	vault_policy "pki-issue-ncprd1" {
//	  name   = "pki-issue-ncprd1"
//	  policy = <<-EOT
//	    path "pki-prod/issue/agent-mtls-ncprd1" {
//	      capabilities = ["update"]
//	    }
//	  EOT
//	}
//
// The text is compared byte for byte: Vault keeps it as written. The
// rollback puts the previous text back, byte for byte, or deletes a policy
// the run created. Policy texts are no secret; the snapshot journals the
// previous one.
type VaultPolicy struct{}

var (
	_ Step         = (*VaultPolicy)(nil)
	_ SettingsUser = (*VaultPolicy)(nil)
	_ Preparer     = (*VaultPolicy)(nil)
	_ Planner      = (*VaultPolicy)(nil)
	_ Rollbacker   = (*VaultPolicy)(nil)
	_ Resumer      = (*VaultPolicy)(nil)
	_ Summarizer   = (*VaultPolicy)(nil)
)

// Settings implements SettingsUser.
func (*VaultPolicy) Settings() Settings { return vaultBlock() }

// Spec implements Step.
func (*VaultPolicy) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"name":   &hcldec.AttrSpec{Name: "name", Type: cty.String, Required: true},
		"policy": &hcldec.AttrSpec{Name: "policy", Type: cty.String, Required: true},
	}
}

// Outputs implements Step: the policy's name, for the mappings that attach
// it.
func (*VaultPolicy) Outputs() map[string]Output {
	return map[string]Output{"name": {Type: cty.String}}
}

func parseVaultPolicy(cfg Config) (name, text string, err error) {
	name, errName := cfg.RequireString("name")
	if errName == nil {
		errName = vaultPathSegment(cfg, "name", name)
		if strings.Contains(name, "/") {
			errName = attrErr(cfg.Path("name"), "%q: a policy name holds no /", name)
		}
		if name == "root" {
			errName = attrErr(cfg.Path("name"), "Vault's root policy cannot be changed")
		}
	}
	text, errText := cfg.RequireString("policy")
	if cfg.Sensitive("policy") && errText == nil {
		errText = attrErr(cfg.Path("policy"), "a policy is no secret: rotplan shows and journals its text, so it must not be computed from a sensitive value")
	}
	return name, text, joinErrors(errName, errText)
}

func policyPath(name string) string { return "sys/policies/acl/" + name }

// currentPolicy reads a policy's text before the step changes it, with the
// checks of readVaultPath; ok is false when there is none.
func currentPolicy(ctx context.Context, env *Env, cfg Config, name string) (text string, ok bool, err error) {
	st, err := readVaultPath(ctx, env, cfg, "name", policyPath(name))
	if err != nil || st.data == nil {
		return "", false, err
	}
	text, ok = st.data["policy"].(string)
	if !ok {
		return "", false, attrErr(cfg.Path("name"), "Vault returned policy %s without its text", name)
	}
	return text, true, nil
}

// Validate implements Step.
func (*VaultPolicy) Validate(cfg Config) error {
	_, _, err := parseVaultPolicy(cfg)
	return err
}

// Prepare implements Preparer: the token may read and write the policy.
func (*VaultPolicy) Prepare(ctx context.Context, env *Env, cfg Config) error {
	name, _, err := parseVaultPolicy(cfg)
	if name == "" || (err != nil && err != ErrUnknown) {
		return nil
	}
	_, _, err = currentPolicy(ctx, env, cfg, name)
	return err
}

// Apply implements Step.
func (*VaultPolicy) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	name, text, err := parseVaultPolicy(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	out := cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(name)})
	cur, ok, err := currentPolicy(ctx, env, cfg, name)
	if err != nil {
		return cty.NilVal, err
	}
	if ok && cur == text {
		env.NoChange("policy " + name + " already has this text")
		return out, nil
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	if err := client.Sys().PutPolicyWithContext(ctx, name, text); err != nil {
		return cty.NilVal, attrErr(cfg.Path("policy"), "writing policy %s: %s", name, vaultMessage(err))
	}
	env.Log.Info("wrote Vault policy", "name", name, "sha256", shortDigest(text))
	return out, nil
}

// policyText describes a policy's text for a preview.
func policyText(s string) string {
	return fmt.Sprintf("(%d lines, sha256 %s)", strings.Count(strings.TrimRight(s, "\n"), "\n")+1, shortDigest(s))
}

// lineChanges counts the lines a new text adds and removes, as a diff
// would at most: lines of one not in the other, by count.
func lineChanges(old, new string) (added, removed int) {
	count := map[string]int{}
	for _, l := range strings.Split(old, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(new, "\n") {
		if count[l] > 0 {
			count[l]--
		} else {
			added++
		}
	}
	for _, n := range count {
		removed += n
	}
	return added, removed
}

// Plan implements Planner.
func (*VaultPolicy) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: Replace}
	name, text, err := parseVaultPolicy(cfg)
	if name == "" || (err != nil && err != ErrUnknown) {
		return pv, ctx.Err()
	}
	pv.Outputs = cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(name)})
	cur, ok, err := currentPolicy(ctx, env, cfg, name)
	if err != nil {
		pv.Problems = append(pv.Problems, err)
		return pv, ctx.Err()
	}
	planned := "(known after the run)"
	if cfg.Known("policy") {
		planned = policyText(text)
	}
	switch {
	case !ok:
		pv.Action, pv.Observed = Create, "absent"
		pv.Fields = []FieldChange{{Field: "policy", Action: Create, Planned: planned}}
		return pv, ctx.Err()
	case cfg.Known("policy") && cur == text:
		pv.Action, pv.Reason = NoChange, "the policy already has this text"
		pv.Fields = []FieldChange{{Field: "policy", Action: NoChange, Planned: planned}}
	default:
		pv.Fields = []FieldChange{{Field: "policy", Action: Replace, Now: policyText(cur), Planned: planned}}
		if cfg.Known("policy") {
			a, r := lineChanges(cur, text)
			pv.Reason = fmt.Sprintf("%d lines added, %d removed", a, r)
		}
	}
	pv.Observed = "sha256=" + shortDigest(cur)
	return pv, ctx.Err()
}

// Snapshot implements Rollbacker: the policy's previous text, or that
// there was none.
func (*VaultPolicy) Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	name, _, err := parseVaultPolicy(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	cur, ok, err := currentPolicy(ctx, env, cfg, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return map[string]string{"name": name, "existed": "false"}, nil
	}
	return map[string]string{"name": name, "existed": "true", "previous": cur}, nil
}

// Rollback implements Rollbacker.
func (*VaultPolicy) Rollback(ctx context.Context, env *Env, _ Config, _ cty.Value, snapshot map[string]string) error {
	name, existed, err := snapshotExisted("vault_policy", "name", snapshot)
	if err != nil {
		return err
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return fmt.Errorf("vault_policy: rolling back %s: %w", name, err)
	}
	if !existed {
		if err := client.Sys().DeletePolicyWithContext(ctx, name); err != nil {
			return fmt.Errorf("vault_policy: rolling back: deleting policy %s, which the run created: %s; run by hand: vault policy delete %s", name, vaultMessage(err), command.ShellWord(name))
		}
		env.Log.Info("deleted Vault policy the run created", "name", name)
		return nil
	}
	previous, err := snapshotField(snapshot, "previous")
	if err != nil {
		return fmt.Errorf("vault_policy: rolling back %s: %w", name, err)
	}
	if err := client.Sys().PutPolicyWithContext(ctx, name, previous); err != nil {
		return fmt.Errorf("vault_policy: rolling back %s: writing back its previous text: %s; the journal's snapshot of this step holds it", name, vaultMessage(err))
	}
	env.Log.Info("restored Vault policy", "name", name, "sha256", shortDigest(previous))
	return nil
}

// Intent implements Resumer: the name and the SHA-256 of the text.
func (*VaultPolicy) Intent(_ context.Context, _ *Env, cfg Config) (map[string]string, error) {
	name, text, err := parseVaultPolicy(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	sum := sha256.Sum256([]byte(text))
	return map[string]string{"name": name, "sha256": hex.EncodeToString(sum[:])}, nil
}

// Done implements Resumer: the policy has the intended text.
func (*VaultPolicy) Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error) {
	name, err := intentField(intent, "name")
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_policy: %w", err)
	}
	want, err := intentField(intent, "sha256")
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_policy: %w", err)
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return cty.NilVal, false, err
	}
	secret, err := client.Logical().ReadWithContext(ctx, policyPath(name))
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_policy: reading %s: %s", name, vaultMessage(err))
	}
	if secret == nil {
		return cty.NilVal, false, nil
	}
	text, _ := secret.Data["policy"].(string)
	sum := sha256.Sum256([]byte(text))
	if hex.EncodeToString(sum[:]) != want {
		return cty.NilVal, false, nil
	}
	return cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(name)}), true, nil
}

// Summary implements Summarizer.
func (*VaultPolicy) Summary(outputs cty.Value) []Fact {
	if n, ok := outputString(outputs, "name"); ok {
		return []Fact{{Name: "policy", Value: n}}
	}
	return nil
}
