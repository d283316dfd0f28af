package testvault

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/command"
)

// LeafDomain is the domain the "leaf" role issues under: APP.apps.privsec.ch.
const LeafDomain = "apps.privsec.ch"

// rotplanAdminPolicy is the policy mapped to the admin client certificate.
// LIST requests reach Vault with a trailing slash, so "pki-prod/certs/" is
// listed next to "pki-prod/certs".
const rotplanAdminPolicy = `# rotplan: rotate the Vault listener certificate through pki-prod.
path "pki-prod/issue/*" {
  capabilities = ["create", "update"]
}
path "pki-prod/sign/*" {
  capabilities = ["create", "update"]
}
path "pki-prod/revoke" {
  capabilities = ["update"]
}
path "pki-prod/roles/*" {
  capabilities = ["read", "list"]
}
path "pki-prod/certs" {
  capabilities = ["list"]
}
path "pki-prod/certs/" {
  capabilities = ["list"]
}
path "pki-prod/cert/*" {
  capabilities = ["read"]
}
path "sys/mounts" {
  capabilities = ["read"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# The agents (issue 16): Vault configuration steps (vault_auth,
# vault_policy, vault_write) enable cert auth methods (cert, or cert-e2e
# in a test; enabling needs sudo), upsert the agents' cert-auth mappings
# and their policies, not the admin's; the agent check looks up the token
# in an agent's sink to see which certificate it logged in with. The edge
# proxy's agent (issue 17) also reads the CA chain (pki-ca-read-proxyprod).
path "sys/auth" {
  capabilities = ["read"]
}
path "sys/auth/cert*" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}
path "auth/cert/certs/agent-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/policies/acl/pki-issue-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/policies/acl/pki-ca-read-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/policies/acl/marker-cert-auth" {
  capabilities = ["create", "read", "update", "delete"]
}
path "auth/token/lookup" {
  capabilities = ["update"]
}

# A Raft cluster's health (issue 18): the vault_cluster check reads the
# autopilot state between the nodes of a rollout.
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}
`

// bootstrap configures PKI, roles, policy and cert auth through the
// bootstrap listener and writes the initial certificates and operator files.
func (v *Vault) bootstrap(ctx context.Context) error {
	c, err := v.bootstrapClient()
	if err != nil {
		return err
	}
	c.SetToken(v.RootToken)
	v.rootClient = c
	p, err := setupPKI(ctx, c)
	if err != nil {
		return err
	}
	server, err := issue(ctx, c, "vault-server", map[string]any{
		"common_name": serverName,
		"ip_sans":     "127.0.0.1",
		"ttl":         "720h",
	})
	if err != nil {
		return err
	}
	return v.writeMaterial(p.rootPEM, p.admin, server)
}

// pkiSetup is what setupPKI made: the root CA's certificate, and the
// admin identity's certificate and key, issued through pki-prod.
type pkiSetup struct {
	rootPEM string
	admin   *issued
}

// setupPKI configures, with c (the root token's), the root CA at pki, the
// intermediate at pki-prod, the roles admin-client, vault-server (for
// serverName and IP SANs) and leaf, the policy rotplan-admin and cert
// auth mapping the admin certificate to it, and issues that certificate.
func setupPKI(ctx context.Context, c *vaultapi.Client) (*pkiSetup, error) {
	sys := c.Sys()
	lg := c.Logical()

	// Root CA at pki.
	if err := sys.MountWithContext(ctx, "pki", &vaultapi.MountInput{
		Type:        "pki",
		Description: "rotplan test root CA",
	}); err != nil {
		return nil, fmt.Errorf("mount pki: %w", err)
	}
	if err := sys.TuneMountWithContext(ctx, "pki", vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}); err != nil {
		return nil, fmt.Errorf("tune pki: %w", err)
	}
	s, err := lg.WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{
		"common_name": "rotplan test root CA",
		"issuer_name": "root",
		"ttl":         "87600h",
		"key_type":    "ec",
		"key_bits":    256,
	})
	if err != nil {
		return nil, fmt.Errorf("generate root: %w", err)
	}
	rootPEM, err := strField(s, "certificate")
	if err != nil {
		return nil, fmt.Errorf("generate root: %w", err)
	}

	// Intermediate at pki-prod, signed by the root.
	if err := sys.MountWithContext(ctx, "pki-prod", &vaultapi.MountInput{
		Type:        "pki",
		Description: "rotplan test prod intermediate CA",
	}); err != nil {
		return nil, fmt.Errorf("mount pki-prod: %w", err)
	}
	if err := sys.TuneMountWithContext(ctx, "pki-prod", vaultapi.MountConfigInput{MaxLeaseTTL: "43800h"}); err != nil {
		return nil, fmt.Errorf("tune pki-prod: %w", err)
	}
	s, err = lg.WriteWithContext(ctx, "pki-prod/intermediate/generate/internal", map[string]any{
		"common_name": "rotplan test prod intermediate CA",
		"key_type":    "ec",
		"key_bits":    256,
	})
	if err != nil {
		return nil, fmt.Errorf("generate intermediate CSR: %w", err)
	}
	csr, err := strField(s, "csr")
	if err != nil {
		return nil, fmt.Errorf("generate intermediate CSR: %w", err)
	}
	s, err = lg.WriteWithContext(ctx, "pki/root/sign-intermediate", map[string]any{
		"csr":         csr,
		"common_name": "rotplan test prod intermediate CA",
		"ttl":         "43800h",
		"format":      "pem",
	})
	if err != nil {
		return nil, fmt.Errorf("sign intermediate: %w", err)
	}
	intPEM, err := strField(s, "certificate")
	if err != nil {
		return nil, fmt.Errorf("sign intermediate: %w", err)
	}
	if _, err := lg.WriteWithContext(ctx, "pki-prod/intermediate/set-signed", map[string]any{
		"certificate": joinPEM(intPEM, rootPEM),
	}); err != nil {
		return nil, fmt.Errorf("set-signed intermediate: %w", err)
	}

	// Roles.
	if _, err := lg.WriteWithContext(ctx, "pki-prod/roles/admin-client", map[string]any{
		"allowed_domains":    []string{adminCN},
		"allow_bare_domains": true,
		"enforce_hostnames":  false,
		"client_flag":        true,
		"server_flag":        false,
		"ttl":                "720h",
		"max_ttl":            "720h",
	}); err != nil {
		return nil, fmt.Errorf("role admin-client: %w", err)
	}
	if _, err := lg.WriteWithContext(ctx, "pki-prod/roles/vault-server", map[string]any{
		"allowed_domains":    []string{serverName},
		"allow_bare_domains": true,
		"allow_subdomains":   false,
		"allow_ip_sans":      true,
		"server_flag":        true,
		"client_flag":        false,
		"max_ttl":            "720h",
	}); err != nil {
		return nil, fmt.Errorf("role vault-server: %w", err)
	}

	// Leaf certificates for agents and app servers (the seed's next part):
	// EC P-256, under apps.privsec.ch.
	if _, err := lg.WriteWithContext(ctx, "pki-prod/roles/leaf", map[string]any{
		"allowed_domains":  []string{LeafDomain},
		"allow_subdomains": true,
		"server_flag":      true,
		"client_flag":      false,
		"key_type":         "ec",
		"key_bits":         256,
		"max_ttl":          "720h",
	}); err != nil {
		return nil, fmt.Errorf("role leaf: %w", err)
	}

	// Policy and cert auth.
	if err := sys.PutPolicyWithContext(ctx, "rotplan-admin", rotplanAdminPolicy); err != nil {
		return nil, fmt.Errorf("policy rotplan-admin: %w", err)
	}
	if err := sys.EnableAuthWithOptionsWithContext(ctx, "cert", &vaultapi.EnableAuthOptions{Type: "cert"}); err != nil {
		return nil, fmt.Errorf("enable cert auth: %w", err)
	}
	if _, err := lg.WriteWithContext(ctx, "auth/cert/certs/admin", map[string]any{
		"display_name":         "admin",
		"certificate":          joinPEM(intPEM, rootPEM),
		"allowed_common_names": []string{adminCN},
		"token_policies":       []string{"rotplan-admin"},
		"token_ttl":            "1h",
	}); err != nil {
		return nil, fmt.Errorf("cert auth role admin: %w", err)
	}

	// The admin identity, issued through pki-prod.
	admin, err := issue(ctx, c, "admin-client", map[string]any{
		"common_name": adminCN,
		"ttl":         "720h",
	})
	if err != nil {
		return nil, err
	}
	return &pkiSetup{rootPEM: rootPEM, admin: admin}, nil
}

// issued is a certificate issued by pki-prod.
type issued struct {
	cert, key, issuingCA string
	caChain              []string
}

func issue(ctx context.Context, c *vaultapi.Client, role string, data map[string]any) (*issued, error) {
	s, err := c.Logical().WriteWithContext(ctx, "pki-prod/issue/"+role, data)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", role, err)
	}
	var out issued
	if out.cert, err = strField(s, "certificate"); err != nil {
		return nil, fmt.Errorf("issue %s: %w", role, err)
	}
	if out.key, err = strField(s, "private_key"); err != nil {
		return nil, fmt.Errorf("issue %s: %w", role, err)
	}
	if out.issuingCA, err = strField(s, "issuing_ca"); err != nil {
		return nil, fmt.Errorf("issue %s: %w", role, err)
	}
	raw, _ := s.Data["ca_chain"].([]any)
	for _, e := range raw {
		p, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("issue %s: ca_chain entry is %T", role, e)
		}
		out.caChain = append(out.caChain, p)
	}
	if len(out.caChain) == 0 {
		return nil, fmt.Errorf("issue %s: empty ca_chain", role)
	}
	return &out, nil
}

// writeMaterial writes the admin and server certificates and the operator's
// env files.
func (v *Vault) writeMaterial(rootPEM string, admin, server *issued) error {
	me, mg := os.Geteuid(), os.Getegid()
	files := append(adminFiles(v.AdminDir, admin),
		ownedFile{filepath.Join(v.ServerDir, "server.key"), joinPEM(server.key), 0o600, v.uid, v.gid},
		ownedFile{filepath.Join(v.ServerDir, "server.crt"), joinPEM(server.cert), 0o644, v.uid, v.gid},
		ownedFile{filepath.Join(v.ServerDir, "fullchain.crt"), joinPEM(server.cert, server.issuingCA), 0o644, v.uid, v.gid},
		ownedFile{filepath.Join(v.ServerDir, "ca_chain.pem"), joinPEM(server.caChain...), 0o644, v.uid, v.gid},
		ownedFile{v.RootCAFile, joinPEM(rootPEM), 0o644, me, mg},
		ownedFile{v.EnvFile, v.envFileContent(), 0o644, me, mg},
	)
	return writeFilesOwned(files)
}

// ownedFile is a file the harness writes, with its mode and owner.
type ownedFile struct {
	path     string
	data     string
	mode     os.FileMode
	uid, gid int
}

// adminFiles are the admin identity's files in dir (admin.key,
// admin.crt, issuing_ca.pem), the harness's own.
func adminFiles(dir string, admin *issued) []ownedFile {
	me, mg := os.Geteuid(), os.Getegid()
	return []ownedFile{
		{filepath.Join(dir, "admin.key"), joinPEM(admin.key), 0o600, me, mg},
		{filepath.Join(dir, "admin.crt"), joinPEM(admin.cert), 0o644, me, mg},
		{filepath.Join(dir, "issuing_ca.pem"), joinPEM(admin.issuingCA), 0o644, me, mg},
	}
}

// writeFilesOwned writes files in order (see writeFileOwned).
func writeFilesOwned(files []ownedFile) error {
	for _, f := range files {
		if err := writeFileOwned(f.path, []byte(f.data), f.mode, f.uid, f.gid); err != nil {
			return err
		}
	}
	return nil
}

func (v *Vault) envFileContent() string {
	var b strings.Builder
	b.WriteString("# Operator environment for the prod Vault listener (rotplan test harness). No token.\n")
	for _, kv := range v.Environ() {
		k, val, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s=%s\n", k, command.ShellWord(val))
	}
	return b.String()
}

// ShellQuote quotes s for a POSIX shell when needed, as the harness's
// generated commands do: for printing a command an operator may copy.
func ShellQuote(s string) string { return command.ShellWord(s) }

// joinPEM joins PEM blocks with exactly one newline between them and a
// trailing newline.
func joinPEM(pems ...string) string {
	parts := make([]string, 0, len(pems))
	for _, p := range pems {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "\n") + "\n"
}

func strField(s *vaultapi.Secret, key string) (string, error) {
	if s == nil || s.Data == nil {
		return "", fmt.Errorf("empty response (no %s)", key)
	}
	v, ok := s.Data[key].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("response has no %s", key)
	}
	return v, nil
}

// mkdirOwned creates path (and parents with 0755) and sets its mode and, when
// running as root, its owner.
func mkdirOwned(path string, mode os.FileMode, uid, gid int) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// writeFileOwned writes data to path through a temporary file in the same
// directory (write, chmod, chown when root, rename).
func writeFileOwned(path string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if os.Geteuid() == 0 {
		if err = f.Chown(uid, gid); err != nil {
			f.Close()
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ParseCertificates returns the certificates in PEM data, in order, skipping
// other block types. Data without a certificate is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificates")
	}
	return out, nil
}

// ReadCertificates returns the certificates in a PEM file, in order.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// loadPool reads PEM certificates from file into a new pool.
func loadPool(file string) (*x509.CertPool, error) {
	certs, err := ReadCertificates(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
