package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
)

// VaultWrite is the `vault_write` step kind: it makes sure a Vault path
// holds the fields a plan declares (a cert-auth mapping, a role, any
// path), writing them when Vault does not already hold those values.
//
//	vault_write "agent-ncprd1" {
//	  path = "auth/cert/certs/agent-ncprd1"
//	  data = {
//	    certificate          = file("ca.pem")
//	    allowed_common_names = ["agent-ncprd1.prod.privsec.ch"]
//	    token_policies       = ["pki-issue-ncprd1", "marker-cert-auth"]
//	    token_ttl            = "1h"
//	  }
//	}
//
// Only the declared fields are sent, so Vault keeps the others where a
// write updates (cert-auth mappings, roles); where a write replaces the
// whole entry (a KV version 1 secret) the others are gone, as with `vault
// write`. The step reads the path first: the preview compares field for
// field, the snapshot keeps the declared fields' previous values, and the
// rollback writes them back, or deletes the path when the step created it.
// Fields Vault keeps secret (see secretField) and fields computed from a
// sensitive value are never shown, logged or journaled; Vault does not
// return most of them, so a rollback could not restore one, and the step
// refuses to overwrite an existing path's secret field unless the run keeps
// no rollback (-rollback=false).
type VaultWrite struct{}

var (
	_ Step         = (*VaultWrite)(nil)
	_ SettingsUser = (*VaultWrite)(nil)
	_ Preparer     = (*VaultWrite)(nil)
	_ Planner      = (*VaultWrite)(nil)
	_ Rollbacker   = (*VaultWrite)(nil)
	_ Resumer      = (*VaultWrite)(nil)
	_ Summarizer   = (*VaultWrite)(nil)
)

// Settings implements SettingsUser: the step reaches Vault as the plan's
// vault block says.
func (*VaultWrite) Settings() Settings { return vaultBlock() }

// Spec implements Step.
func (*VaultWrite) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"path": &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
		"data": &hcldec.AttrSpec{Name: "data", Type: cty.DynamicPseudoType, Required: true},
	}
}

// Outputs implements Step: the path, for steps that must come after it.
func (*VaultWrite) Outputs() map[string]Output {
	return map[string]Output{"path": {Type: cty.String}}
}

// vaultWrite is a parsed vault_write block.
type vaultWrite struct {
	path string
	// fields are the declared fields as they go to Vault, by name; a
	// field not known yet is in unknown instead.
	fields  map[string]any
	unknown map[string]bool
	// secret are the fields never shown or journaled.
	secret map[string]bool
}

// names returns every declared field, sorted.
func (w vaultWrite) names() []string {
	var out []string
	for n := range w.fields {
		out = append(out, n)
	}
	for n := range w.unknown {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func parseVaultWrite(cfg Config) (vaultWrite, error) {
	w := vaultWrite{fields: map[string]any{}, unknown: map[string]bool{}, secret: map[string]bool{}}
	var errs []error
	path, err := cfg.RequireString("path")
	if err == nil {
		path = strings.Trim(path, "/")
		if strings.ContainsAny(path, " ?#") || strings.Contains(path, "..") {
			err = attrErr(cfg.Path("path"), "%q is not a Vault path", path)
		}
	}
	w.path = path
	errs = append(errs, err)

	data := cfg.Value("data")
	ty := data.Type()
	switch {
	case data.IsNull():
		errs = append(errs, attrErr(cfg.Path("data"), "must give the fields to write"))
	case !data.IsKnown():
		errs = append(errs, ErrUnknown)
	case !(ty.IsObjectType() || ty.IsMapType()):
		errs = append(errs, attrErr(cfg.Path("data"), "must be a map of fields, as in { token_ttl = \"1h\" }"))
	case data.LengthInt() == 0:
		errs = append(errs, attrErr(cfg.Path("data"), "must give at least one field"))
	default:
		for it := data.ElementIterator(); it.Next(); {
			k, v := it.Element()
			name := k.AsString()
			sensitive := cfg.SensitiveKey("data", name)
			if sensitive || secretField(name) {
				w.secret[name] = true
			}
			if name == "" {
				errs = append(errs, attrErr(cfg.Path("data"), "a field name is empty"))
				continue
			}
			if secretField(name) && !sensitive {
				errs = append(errs, attrErr(cfg.Path("data"), "field %s is one Vault keeps secret: give its value from a sensitive variable (variable { sensitive = true }), so that rotplan never shows or journals it", name))
				continue
			}
			if !v.IsWhollyKnown() {
				w.unknown[name] = true
				errs = append(errs, ErrUnknown)
				continue
			}
			x, err := fieldValue(v)
			if err != nil {
				if sensitive {
					err = errors.New("has a value of the wrong type")
				}
				errs = append(errs, attrErr(cfg.Path("data"), "field %s %v", name, err))
				continue
			}
			w.fields[name] = x
		}
	}
	return w, joinErrors(errs...)
}

// Validate implements Step.
func (*VaultWrite) Validate(cfg Config) error {
	_, err := parseVaultWrite(cfg)
	return err
}

// Prepare implements Preparer: before anything changes, the path must be
// one the run's token may read and write (see readVaultPath).
func (*VaultWrite) Prepare(ctx context.Context, env *Env, cfg Config) error {
	w, err := parseVaultWrite(cfg)
	if w.path == "" || (err != nil && err != ErrUnknown) {
		return nil // Validate reports it; an unknown path waits for the run
	}
	_, err = readVaultPath(ctx, env, cfg, "path", w.path)
	return err
}

// matches reports whether what a path holds already has every declared
// field. A secret field cannot be compared (Vault does not return it), so
// a write that declares one never matches.
func (w vaultWrite) matches(data map[string]any) bool {
	if data == nil || len(w.unknown) > 0 {
		return false
	}
	for name, want := range w.fields {
		cur, ok := data[name]
		if w.secret[name] || !ok || !sameField(cur, want) {
			return false
		}
	}
	return true
}

// Apply implements Step.
func (*VaultWrite) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	w, err := parseVaultWrite(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	st, err := readVaultPath(ctx, env, cfg, "path", w.path)
	if err != nil {
		return cty.NilVal, err
	}
	out := cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(w.path)})
	if w.matches(st.data) {
		env.NoChange("Vault already has these values at " + w.path)
		return out, nil
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	if _, err := client.Logical().WriteWithContext(ctx, w.path, w.fields); err != nil {
		return cty.NilVal, attrErr(cfg.Path("path"), "writing %s: %s", w.path, vaultMessage(err))
	}
	env.Log.Info("wrote Vault path", "path", w.path, "fields", strings.Join(w.names(), ","))
	return out, nil
}

// Plan implements Planner: field for field, what the path holds now and
// what the step would leave there.
func (*VaultWrite) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: Replace}
	w, err := parseVaultWrite(cfg)
	if w.path == "" || (err != nil && err != ErrUnknown) {
		return pv, ctx.Err()
	}
	pv.Outputs = cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(w.path)})
	st, err := readVaultPath(ctx, env, cfg, "path", w.path)
	if err != nil {
		pv.Problems = append(pv.Problems, err)
		return pv, ctx.Err()
	}
	pv.Fields, pv.Action = w.fieldChanges(st.data)
	switch {
	case st.data == nil:
		pv.Action = Create
		pv.Now = []Fact{{Name: "path", Value: w.path + ": nothing there now"}}
		if st.mountMissing {
			pv.Now[0].Value += " (its auth method is enabled by an earlier step)"
		}
		pv.Observed = "absent"
		return pv, ctx.Err()
	case pv.Action == NoChange:
		pv.Reason = "Vault already has these values"
	}
	var secrets []string
	for name := range w.secret {
		secrets = append(secrets, name)
	}
	if len(secrets) > 0 {
		sort.Strings(secrets)
		pv.Now = append(pv.Now, Fact{Name: "rollback", Value: fmt.Sprintf("cannot restore the previous value of %s (secret): the run refuses to overwrite it unless -rollback=false", strings.Join(secrets, ", "))})
	}
	pv.Observed = w.observe(st.data)
	return pv, ctx.Err()
}

// fieldChanges compares every declared field with what the path holds,
// and says whether any changes.
func (w vaultWrite) fieldChanges(data map[string]any) ([]FieldChange, Action) {
	action := NoChange
	var out []FieldChange
	for _, name := range w.names() {
		fc := FieldChange{Field: name}
		cur, there := data[name]
		switch {
		case w.secret[name] && data == nil:
			fc.Action, fc.Sensitive = Create, true
		case w.secret[name]:
			// Vault does not return most secrets: it is written again.
			fc.Action, fc.Sensitive = Replace, true
		case w.unknown[name]:
			fc.Action, fc.Planned = Replace, "(known after the run)"
			if there {
				fc.Now = fieldText(cur)
			} else {
				fc.Action = Create
			}
		case !there:
			fc.Action, fc.Planned = Create, fieldText(w.fields[name])
		case sameField(cur, w.fields[name]):
			fc.Action, fc.Planned = NoChange, fieldText(cur)
		default:
			fc.Action, fc.Now, fc.Planned = Replace, fieldText(cur), fieldText(w.fields[name])
		}
		if fc.Action != NoChange {
			action = Replace
		}
		out = append(out, fc)
	}
	return out, action
}

// observe is what the path holds of the declared fields, for a saved plan
// to compare: a digest of their values, secrets left out.
func (w vaultWrite) observe(data map[string]any) string {
	if data == nil {
		return "absent"
	}
	kept := map[string]any{}
	for _, name := range w.names() {
		if v, ok := data[name]; ok && !w.secret[name] {
			kept[name] = v
		}
	}
	b, _ := json.Marshal(kept)
	return "fields sha256=" + shortDigest(string(b))
}

// Snapshot implements Rollbacker: whether the path held anything, and the
// declared fields' values as Vault returned them (journaled: never a
// secret). An existing path whose secret field the step would overwrite
// is refused: its value is in no snapshot, so a rollback would lose it.
func (*VaultWrite) Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	w, err := parseVaultWrite(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	st, err := readVaultPath(ctx, env, cfg, "path", w.path)
	if err != nil {
		return nil, err
	}
	snap := map[string]string{"path": w.path, "existed": "false"}
	if st.data == nil {
		return snap, nil
	}
	snap["existed"] = "true"
	previous := map[string]any{}
	var absent, secrets []string
	for _, name := range w.names() {
		v, ok := st.data[name]
		switch {
		case w.secret[name]:
			secrets = append(secrets, name)
		case !ok:
			absent = append(absent, name)
		default:
			previous[name] = v
		}
	}
	if len(secrets) > 0 {
		// At path: the data expression reads a secret, so an error there
		// would be shown without its words.
		return nil, attrErr(cfg.Path("path"), "%s already holds an entry, and rotplan keeps no copy of its secret field %s to put back on rollback; write it with -rollback=false, or by hand", w.path, strings.Join(secrets, ", "))
	}
	b, err := json.Marshal(previous)
	if err != nil {
		return nil, err
	}
	snap["previous"] = string(b)
	if len(absent) > 0 {
		b, _ := json.Marshal(absent)
		snap["absent"] = string(b)
	}
	return snap, nil
}

// Rollback implements Rollbacker: the declared fields get back the values
// the snapshot read, or the path is deleted when the step created it. A
// field that was not there before cannot be taken away by a write; it is
// left, with a warning.
func (*VaultWrite) Rollback(ctx context.Context, env *Env, _ Config, _ cty.Value, snapshot map[string]string) error {
	path, existed, err := snapshotExisted("vault_write", "path", snapshot)
	if err != nil {
		return err
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return fmt.Errorf("vault_write: rolling back %s: %w", path, err)
	}
	if !existed {
		if _, err := client.Logical().DeleteWithContext(ctx, path); err != nil {
			return fmt.Errorf("vault_write: rolling back: deleting %s, which the run created: %s; run by hand: vault delete %s", path, vaultMessage(err), command.ShellWord(path))
		}
		env.Log.Info("deleted Vault path the run created", "path", path)
		return nil
	}
	raw, err := snapshotField(snapshot, "previous")
	if err != nil {
		return fmt.Errorf("vault_write: rolling back %s: %w", path, err)
	}
	var previous map[string]any
	if err := decodeJournaled(raw, &previous); err != nil {
		return fmt.Errorf("vault_write: rolling back %s: the journaled previous values are not a JSON object: %w", path, err)
	}
	if absent, ok := snapshot["absent"]; ok {
		env.Log.Warn("fields the run added stay: a write cannot remove them", "path", path, "fields", absent)
	}
	if len(previous) == 0 {
		return nil
	}
	if _, err := client.Logical().WriteWithContext(ctx, path, previous); err != nil {
		return fmt.Errorf("vault_write: rolling back %s: writing back its previous fields: %s; the journal's snapshot of this step holds them", path, vaultMessage(err))
	}
	env.Log.Info("restored Vault path", "path", path)
	return nil
}

// Intent implements Resumer: the path and the declared fields, secrets by
// name only.
func (*VaultWrite) Intent(_ context.Context, _ *Env, cfg Config) (map[string]string, error) {
	w, err := parseVaultWrite(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	fields := map[string]any{}
	var secrets []string
	for name, v := range w.fields {
		if w.secret[name] {
			secrets = append(secrets, name)
			continue
		}
		fields[name] = v
	}
	for name := range w.secret {
		if _, ok := w.fields[name]; !ok {
			secrets = append(secrets, name)
		}
	}
	sort.Strings(secrets)
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	s, _ := json.Marshal(secrets)
	return map[string]string{"path": w.path, "fields": string(b), "secret_fields": string(s)}, nil
}

// Done implements Resumer: the write is done when Vault holds every
// declared field. One with a secret field is never found done (Vault does
// not return it), so it is written again.
func (*VaultWrite) Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error) {
	path, err := intentField(intent, "path")
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_write: %w", err)
	}
	raw, err := intentField(intent, "fields")
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_write: %w", err)
	}
	w := vaultWrite{path: path, secret: map[string]bool{}}
	if err := decodeJournaled(raw, &w.fields); err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_write: the journaled intent's fields are not a JSON object of fields")
	}
	var secrets []string
	if err := decodeJournaled(intent["secret_fields"], &secrets); err != nil || len(secrets) > 0 {
		return cty.NilVal, false, err
	}
	client, err := env.Vault(ctx)
	if err != nil {
		return cty.NilVal, false, err
	}
	secret, err := client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("vault_write: reading %s: %s", path, vaultMessage(err))
	}
	if secret == nil || !w.matches(secret.Data) {
		env.Log.Debug("vault_write not done", "path", path)
		return cty.NilVal, false, nil
	}
	return cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(path)}), true, nil
}

// Summary implements Summarizer.
func (*VaultWrite) Summary(outputs cty.Value) []Fact {
	if p, ok := outputString(outputs, "path"); ok {
		return []Fact{{Name: "path", Value: p}}
	}
	return nil
}
