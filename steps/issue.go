package steps

import (
	"context"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Issue issues a certificate and its private key from a Vault PKI role
// (`<mount>/issue/<role>`): Vault generates the key.
//
//	issue "server" {
//	  mount       = "pki-prod"
//	  role        = "vault-server"
//	  common_name = "vault.prod.privsec.ch"
//	  ip_sans     = ["127.0.0.1"]
//	  ttl         = "720h"
//	}
//
// With revoke_superseded = true, a certificate issued by a run that was
// interrupted, and issued again when the run was resumed, is revoked once the
// resumed run has succeeded: nothing installs it any more, and its key may
// still lie in a half-written file.
//
// When the run is rolled back, the certificate is revoked unless
// revoke_on_rollback = false: the rollback puts the old files back, so
// nothing serves the new certificate, and its key lives on in no file the
// rotation keeps.
//
// Sign does the same with a key rotplan generates; what the two share is
// in pki.go (certificateKind).
type Issue struct{}

var (
	_ Step              = (*Issue)(nil)
	_ Preparer          = (*Issue)(nil)
	_ HostChecker       = (*Issue)(nil)
	_ Superseder        = (*Issue)(nil)
	_ Rollbacker        = (*Issue)(nil)
	_ Summarizer        = (*Issue)(nil)
	_ Planner           = (*Issue)(nil)
	_ Conditional       = (*Issue)(nil)
	_ CertificateHolder = (*Issue)(nil)
	_ SettingsUser      = (*Issue)(nil)
)

// Settings implements SettingsUser: an issue reaches Vault as the plan's
// vault block says.
func (*Issue) Settings() Settings { return vaultBlock() }

// Spec implements Step.
func (*Issue) Spec() hcldec.ObjectSpec { return certificateSpec() }

// Outputs implements Step. The private key is the one sensitive output.
func (*Issue) Outputs() map[string]Output { return certificateOutputs() }

// Validate implements Step.
func (*Issue) Validate(cfg Config) error {
	_, err := parseCertRequest(cfg)
	return err
}

// Apply implements Step: Vault issues the certificate and its key.
func (*Issue) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	req, err := parseCertRequest(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	issued, err := issueKind.obtain(ctx, env, cfg, req, req.arguments(), "", "")
	if err != nil {
		return cty.NilVal, err
	}
	return cty.ObjectVal(issued.outputs()), nil
}

// Prepare implements Preparer: Vault must be reachable and accept our
// credentials before any step of the run changes anything.
func (*Issue) Prepare(ctx context.Context, env *Env, _ Config) error {
	return issueKind.prepare(ctx, env)
}

// Due implements Conditional: renew_before and current (certificateKind.due).
func (*Issue) Due(_ context.Context, _ *Env, cfg Config) (Condition, error) {
	return issueKind.due(cfg)
}

// Plan implements Planner: the role must allow the request
// (certificateKind.plan). It issues nothing.
func (*Issue) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	return issueKind.plan(ctx, env, cfg)
}

// CheckHost implements HostChecker: the role must allow the request, once
// the Vault session is open (certificateKind.checkHost).
func (*Issue) CheckHost(ctx context.Context, env *Env, cfg Config) error {
	return issueKind.checkHost(ctx, env, cfg)
}

// Certificates implements CertificateHolder: the certificate at current.
func (*Issue) Certificates(_ context.Context, _ *Env, cfg Config) []CertificateFile {
	return issueKind.certificates(cfg)
}

// Supersede implements Superseder: it revokes a certificate an interrupted
// run issued when revoke_superseded says so (certificateKind.supersede).
func (*Issue) Supersede(ctx context.Context, env *Env, cfg Config, previous cty.Value) (string, error) {
	return issueKind.supersede(ctx, env, cfg, previous)
}

// Snapshot implements Rollbacker: what finds the certificate in Vault if
// its serial is never journaled (certificateKind.snapshot).
func (*Issue) Snapshot(ctx context.Context, _ *Env, cfg Config) (map[string]string, error) {
	return issueKind.snapshot(ctx, cfg)
}

// Rollback implements Rollbacker: it revokes the certificate unless
// revoke_on_rollback is false (certificateKind.rollback).
func (*Issue) Rollback(ctx context.Context, env *Env, cfg Config, outputs cty.Value, snapshot map[string]string) error {
	return issueKind.rollback(ctx, env, cfg, outputs, snapshot)
}

// Summary implements Summarizer: the serial and the expiry.
func (*Issue) Summary(outputs cty.Value) []Fact { return issueKind.summary(outputs) }
