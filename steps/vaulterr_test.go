package steps

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

func TestVaultMessage(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"permission denied", &vaultapi.ResponseError{HTTPMethod: "GET", URL: "https://127.0.0.1:8200/v1/pki-prd/roles/x",
			StatusCode: 403, Errors: []string{"1 error occurred:\n\t* permission denied\n\n"}}, "permission denied (HTTP 403)"},
		{"wrapped", fmt.Errorf("reading: %w", &vaultapi.ResponseError{StatusCode: 400, Errors: []string{"unknown role: x", "other"}}),
			"unknown role: x; other (HTTP 400)"},
		{"no words", &vaultapi.ResponseError{StatusCode: 503}, "Service Unavailable (HTTP 503)"},
		{"not from Vault", errors.New("dial tcp 127.0.0.1:1: connection refused"), "dial tcp 127.0.0.1:1: connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := vaultMessage(tc.err)
			if got != tc.want {
				t.Errorf("vaultMessage = %q, want %q", got, tc.want)
			}
			if strings.Contains(got, "URL") {
				t.Errorf("the message shows the request URL: %q", got)
			}
		})
	}
}
