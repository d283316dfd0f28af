package steps

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A vault_status check asks Vault for its seal status over (m)TLS with
// the given client certificate, and fails if Vault is sealed or
// unreachable.
type sealStatusCheck struct {
	endpoint
}

var (
	_ check    = sealStatusCheck{}
	_ detailed = sealStatusCheck{}
)

// parseSealStatus reads a vault_status block.
func parseSealStatus(c Config) (check, []error) {
	e, errs := parseEndpoint(c, false)
	return sealStatusCheck{e}, errs
}

// attempt asks with a client of its own, so the TLS handshake, client
// certificate included, is made anew on each attempt.
func (s sealStatusCheck) attempt(ctx context.Context, _ *Env, _ time.Duration) (checkResult, error) {
	client, addr, err := s.vaultClient()
	if err != nil {
		return checkResult{}, err
	}
	defer client.CloneConfig().HttpClient.CloseIdleConnections()
	status, err := client.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return checkResult{}, fmt.Errorf("vault status at %s%s: %w", addr, s.via(), err)
	}
	if status.Sealed {
		return checkResult{vaultVersion: status.Version}, errors.New("Vault is sealed")
	}
	return checkResult{vaultVersion: status.Version}, nil
}

// nowFact implements check.
func (sealStatusCheck) nowFact(res checkResult) string {
	if res.vaultVersion == "" {
		return ""
	}
	return "Vault " + res.vaultVersion + ", unsealed"
}
