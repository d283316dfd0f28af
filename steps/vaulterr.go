package steps

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/suggest"
)

// vaultMessage is the part of a Vault API error an operator needs: Vault's
// own words and the HTTP status ("permission denied (HTTP 403)"), not the
// client's dump of the request URL and nested error lists. Other errors
// (a refused connection) come back as they are.
func vaultMessage(err error) string {
	var resp *vaultapi.ResponseError
	if !errors.As(err, &resp) {
		return err.Error()
	}
	var words []string
	for _, e := range resp.Errors {
		for _, line := range strings.Split(e, "\n") {
			line = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), "*"))
			if line != "" && !strings.HasSuffix(line, "error occurred:") && !strings.HasSuffix(line, "errors occurred:") {
				words = append(words, line)
			}
		}
	}
	if len(words) == 0 {
		words = []string{http.StatusText(resp.StatusCode)}
	}
	return fmt.Sprintf("%s (HTTP %d)", strings.Join(words, "; "), resp.StatusCode)
}

// pkiError explains an error Vault gave for what it did ("reading
// pki/roles/web") under a PKI mount, at the argument that is wrong: the
// mount when Vault has no secrets engine there that the token can see
// (with the closest one it can), the role otherwise. A mistyped mount
// reads as "permission denied" to a token whose policy only covers the
// real one, so the mounts are asked for to tell the two apart.
func pkiError(ctx context.Context, client *vaultapi.Client, cfg Config, req certRequest, what string, err error) error {
	var resp *vaultapi.ResponseError
	denied := errors.As(err, &resp) && resp.StatusCode == http.StatusForbidden
	noRoute := strings.Contains(err.Error(), "no handler for route")
	if denied || noRoute {
		if mounts, ok := visibleMounts(ctx, client); ok && !slices.Contains(mounts, req.mount) {
			hint := ""
			if best := suggest.Closest(req.mount, mounts); best != "" {
				hint = fmt.Sprintf("; did you mean %q?", best)
			}
			return attrErr(cfg.Path("mount"), "Vault has no secrets engine mounted at %q that this token can see%s", req.mount, hint)
		}
	}
	if noRoute {
		return attrErr(cfg.Path("mount"), "Vault has no secrets engine mounted at %q", req.mount)
	}
	if denied {
		return attrErr(cfg.Path("role"), "%s: permission denied: the token's policies do not allow it", what)
	}
	return attrErr(cfg.Path("role"), "%s: %s", what, vaultMessage(err))
}

// visibleMounts lists the secrets engines the token can see, by path
// without the trailing slash. sys/internal/ui/mounts answers any token,
// for the mounts its policies reach; ok is false when Vault would not say.
func visibleMounts(ctx context.Context, client *vaultapi.Client) ([]string, bool) {
	secret, err := client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts")
	if err != nil || secret == nil {
		return nil, false
	}
	secrets, ok := secret.Data["secret"].(map[string]any)
	if !ok {
		return nil, false
	}
	var mounts []string
	for path := range secrets {
		mounts = append(mounts, strings.TrimSuffix(path, "/"))
	}
	return mounts, true
}
